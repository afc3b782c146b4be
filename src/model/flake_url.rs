use std::fmt;

use serde::Serialize;

use crate::echo::quoted;

/// A flake reference (the personal "dots" input) that can be written into a Nix string as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FlakeUrl(String);

impl FlakeUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let scheme_ok = [
            "github:",
            "gitlab:",
            "sourcehut:",
            "git+",
            "path:",
            "https://",
            "http://",
            "tarball+",
            "file:",
            "flake:",
        ]
        .iter()
        .any(|p| s.starts_with(p));
        // Nothing that ends the Nix string or interpolates into it.
        let chars_ok = s
            .chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '\\' && c != '$');
        if scheme_ok && chars_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{} is not a flake URL (e.g. github:you/dots, git+https://…, path:/home/you/dots)",
                quoted(s)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlakeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flake_url_has_a_flake_scheme_and_nothing_that_escapes_a_nix_string() {
        for ok in [
            "github:you/dots",
            "git+https://example.org/dots.git?ref=main",
            "path:/home/you/dots",
        ] {
            assert_eq!(FlakeUrl::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "you/dots",
            "github:you/dots\"; x = \"",
            "github:you/${builtins.x}",
            "path:/a b",
            "github:a\\b",
        ] {
            let e = FlakeUrl::parse(bad).unwrap_err();
            assert!(e.contains("is not a flake URL (e.g. github:"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
