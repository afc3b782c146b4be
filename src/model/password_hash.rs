use std::fmt;

use serde::Serialize;

/// A crypt(3) hash as `users.users.<name>.initialHashedPassword` takes it. Plain text is refused
/// so that a password is never written into the repository or the Nix store readable as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn parse(h: &str) -> Result<Self, String> {
        const SCHEMES: [&str; 6] = ["$y$", "$gy$", "$7$", "$2b$", "$6$", "$5$"];
        let scheme_ok = SCHEMES.iter().any(|p| h.starts_with(p));
        // The passwd entry format forbids ':' and newlines.
        let chars_ok = h.len() >= 20 && !h.contains([':', '\n', ' ']);
        if scheme_ok && chars_ok {
            Ok(Self(h.to_owned()))
        } else {
            // Never echoed: what was given may be the password itself.
            Err("not a password hash: give the output of `mkpasswd -m yescrypt` or `openssl passwd -6` (starting $y$ or $6$), never the password itself".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hash_is_crypt_output_and_a_refusal_never_echoes_it() {
        for ok in [
            "$6$saltsalt$abcdefghijklmnopqrstuv",
            "$y$j9T$abcdefghijkl$mnopqrstuvwxyz0123456789",
        ] {
            assert_eq!(PasswordHash::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "hunter2hunter2hunter2",
            "$6$short",
            "$6$saltsalt$abc:defghijklmnopqrstuv",
            "$6$saltsalt$abc defghijklmnopqrstuv",
            "$1$saltsalt$abcdefghijklmnopqrstuv",
        ] {
            let e = PasswordHash::parse(bad).unwrap_err();
            assert!(
                e.starts_with("not a password hash: give the output of `mkpasswd"),
                "{e}"
            );
            assert!(!e.contains(bad), "echoed: {e}");
        }
    }
}
