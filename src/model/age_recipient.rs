use std::{fmt, str::FromStr};

use serde::Serialize;

/// An age X25519 recipient (`age1…`), checked by the age crate itself so a typo is caught here
/// rather than by `sops` on the day a secret is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AgeRecipient(String);

impl AgeRecipient {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.starts_with("age1") {
            return Err(format!(
                "'{s}' is not an age recipient (expected 'age1…', as printed by `age-keygen -y` or `ssh-to-age`)"
            ));
        }
        age::x25519::Recipient::from_str(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|e| format!("'{s}' is not a valid age recipient: {e}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
