//! The nixpkgs branch the images are built from, and the NixOS release it follows: the one place
//! that reads a release out of a branch name (the templates get it from here).

use std::fmt;

use serde::{ser::SerializeStruct, Serialize};

use super::answers::DEFAULT_STATE_VERSION;
use crate::echo::quoted;

/// The oldest release whose NixOS has what the generated images use (image.baseName,
/// system.build.images).
const OLDEST_RELEASE: (u32, u32) = (25, 5);

/// A branch or tag of github:NixOS/nixpkgs that the generated images can be built from.
///
/// Rendered as `{ name, release }`: `release` is "YY.MM" for a release branch (nixos-25.05,
/// release-25.11, nixos-25.05-small), none for unstable and other branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixpkgsBranch {
    name: String,
    release: Option<(u32, u32)>,
}

impl NixpkgsBranch {
    pub fn parse(branch: &str) -> Result<Self, String> {
        if branch.is_empty()
            || !branch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        {
            return Err(format!(
                "{} is not a branch name (letters, digits, '.', '_', '-', '/'; e.g. nixos-unstable or nixos-25.05)",
                quoted(branch)
            ));
        }
        let release = release_of(branch);
        if release.is_some_and(|r| r < OLDEST_RELEASE) {
            return Err(format!(
                "{branch} is older than nixos-25.05, which the generated images need (image.baseName, system.build.images); use nixos-25.05 or newer, or nixos-unstable"
            ));
        }
        Ok(Self {
            name: branch.to_owned(),
            release,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The (year, month) of the NixOS release this branch follows; none for unstable and others.
    pub fn release(&self) -> Option<(u32, u32)> {
        self.release
    }
}

/// The (year, month) of a `nixos-YY.MM[-small]` / `release-YY.MM` branch.
fn release_of(branch: &str) -> Option<(u32, u32)> {
    let version = branch
        .strip_prefix("nixos-")
        .or_else(|| branch.strip_prefix("release-"))?;
    let version = version.strip_suffix("-small").unwrap_or(version);
    let (year, month) = version.split_once('.')?;
    Some((year.parse().ok()?, month.parse().ok()?))
}

fn release_text((year, month): (u32, u32)) -> String {
    format!("{year:02}.{month:02}")
}

impl fmt::Display for NixpkgsBranch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for NixpkgsBranch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("NixpkgsBranch", 2)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("release", &self.release.map(release_text))?;
        st.end()
    }
}

/// `system.stateVersion`: the NixOS release (YY.MM) the machines were first installed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StateVersion(String);

impl StateVersion {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = matches!(s.as_bytes(), [a, b, b'.', c, d] if [a, b, c, d].iter().all(|x| x.is_ascii_digit()));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{} is not a NixOS release (YY.MM, e.g. 25.11: the release the machines were first installed with)",
                quoted(s)
            ))
        }
    }

    /// The release `branch` follows; unstable and other branches get DEFAULT_STATE_VERSION.
    pub fn of_branch(branch: &NixpkgsBranch) -> Self {
        branch
            .release
            .and_then(|r| Self::parse(&release_text(r)).ok())
            .unwrap_or_else(|| Self(DEFAULT_STATE_VERSION.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(s: &str) -> NixpkgsBranch {
        NixpkgsBranch::parse(s).unwrap()
    }

    #[test]
    fn a_branch_is_a_git_ref_of_nixos_25_05_or_newer_and_carries_its_release() {
        assert_eq!(branch("nixos-unstable").release(), None);
        assert_eq!(branch("nixpkgs-unstable").release(), None);
        assert_eq!(branch("nixos-25.05").release(), Some((25, 5)));
        assert_eq!(branch("nixos-25.05-small").release(), Some((25, 5)));
        assert_eq!(branch("release-25.11").release(), Some((25, 11)));
        assert_eq!(branch("nixos-26.05").as_str(), "nixos-26.05");
        for bad in ["", "nixos unstable", "nixos-25.05;rm", "a\nb"] {
            let e = NixpkgsBranch::parse(bad).unwrap_err();
            assert!(e.contains("is not a branch name (letters, digits"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for old in ["nixos-24.11", "release-24.05", "nixos-24.11-small"] {
            let e = NixpkgsBranch::parse(old).unwrap_err();
            assert!(e.contains("is older than nixos-25.05"), "{e}");
        }
    }

    #[test]
    fn the_template_sees_the_name_and_the_release() {
        let json = |s: &str| serde_json::to_value(branch(s)).unwrap();
        assert_eq!(
            json("nixos-25.05-small"),
            serde_json::json!({ "name": "nixos-25.05-small", "release": "25.05" })
        );
        assert_eq!(
            json("nixos-unstable"),
            serde_json::json!({ "name": "nixos-unstable", "release": null })
        );
    }

    #[test]
    fn a_state_version_is_yy_mm_and_follows_the_release_branch() {
        assert_eq!(StateVersion::parse("25.11").unwrap().as_str(), "25.11");
        for bad in ["unstable", "25.5", "2505", "25.05.1", ""] {
            let e = StateVersion::parse(bad).unwrap_err();
            assert!(e.contains("is not a NixOS release (YY.MM"), "{e}");
        }
        let of = |s: &str| StateVersion::of_branch(&branch(s)).to_string();
        assert_eq!(of("nixos-25.05"), "25.05");
        assert_eq!(of("release-25.11"), "25.11");
        // The -small channel follows its release too.
        assert_eq!(of("nixos-25.05-small"), "25.05");
        // Unstable follows the newest release, not an older one.
        assert_eq!(of("nixos-unstable"), DEFAULT_STATE_VERSION);
    }
}
