use std::fmt;

use serde::Serialize;

use crate::echo::quoted;

/// The project's name: the flake's description, the default directory, the deploy key's file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{} is not a project name (1-64 letters, digits, '-' or '_', starting with a letter)",
                quoted(s)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_name_is_letters_digits_dash_underscore_from_a_letter() {
        for ok in ["my-cluster", "a", "Lab_2", &"x".repeat(64)] {
            assert_eq!(ProjectName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "2lab",
            "-lab",
            "my cluster",
            "a/b",
            "../x",
            &"x".repeat(65),
        ] {
            let e = ProjectName::parse(bad).unwrap_err();
            assert!(e.contains("is not a project name (1-64 letters"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
