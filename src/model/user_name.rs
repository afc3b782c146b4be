use std::fmt;

use serde::Serialize;

use crate::echo::quoted;

/// The admin account flakesmith creates on every machine: a Linux user name that is not one
/// NixOS or its images already have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && (s.as_bytes()[0].is_ascii_lowercase() || s.starts_with('_'))
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "{} is not a user name (1-32 lowercase letters, digits, '_' or '-', starting with a letter)",
                quoted(s)
            ));
        }
        if s == "root" || s == "nixos" {
            return Err(format!(
                "'{s}' is reserved; choose the name of the admin account to create"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_is_a_lowercase_linux_name_and_not_reserved() {
        for ok in ["admin", "ops-1", "_svc", &"a".repeat(32)] {
            assert_eq!(UserName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Admin", "1admin", "ad min", "a;b", &"a".repeat(33)] {
            let e = UserName::parse(bad).unwrap_err();
            assert!(
                e.contains("is not a user name (1-32 lowercase letters"),
                "{e}"
            );
        }
        for reserved in ["root", "nixos"] {
            let e = UserName::parse(reserved).unwrap_err();
            assert!(e.contains("is reserved"), "{e}");
        }
    }
}
