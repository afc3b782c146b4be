use std::{fmt, str::FromStr};

use serde::Serialize;

use crate::{echo::quoted, secrets::private_key::private_key_in};

/// What to give instead of a private key or a typo.
pub(crate) const AGE_PUBLIC_KEY_HINT: &str =
    "the public key (age1…, printed by `age-keygen -y FILE`)";

/// An age X25519 recipient (`age1…`), checked by the age crate itself so a typo is caught here
/// rather than by `sops` on the day a secret is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AgeRecipient(String);

impl AgeRecipient {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(kind) = private_key_in(s) {
            return Err(format!(
                "this is {}, which must stay secret; give {AGE_PUBLIC_KEY_HINT}",
                kind.describe()
            ));
        }
        if !s.starts_with("age1") {
            return Err(format!(
                "{} is not an age recipient (expected 'age1…', as printed by `age-keygen -y` or `ssh-to-age`)",
                quoted(s)
            ));
        }
        age::x25519::Recipient::from_str(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|e| format!("{} is not a valid age recipient: {e}", quoted(s)))
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
