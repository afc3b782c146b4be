use std::fmt;

use serde::{Deserialize, Serialize};

use crate::echo::quoted;

/// A kind of image the multi-cloud layout can produce. `rk1-cluster` is the `Rk1` platform alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    Aws,
    Gcp,
    Rk1,
    GenericArm64,
    // kebab-case would make this "generic-x86-64"; the name users type is the Nix system's.
    #[serde(rename = "generic-x86_64")]
    GenericX86_64,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::Aws,
        Platform::Gcp,
        Platform::Rk1,
        Platform::GenericArm64,
        Platform::GenericX86_64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Platform::Aws => "aws",
            Platform::Gcp => "gcp",
            Platform::Rk1 => "rk1",
            Platform::GenericArm64 => "generic-arm64",
            Platform::GenericX86_64 => "generic-x86_64",
        }
    }

    /// The Nix system the images of this platform run on.
    pub fn system(self) -> &'static str {
        match self {
            Platform::Rk1 | Platform::GenericArm64 => "aarch64-linux",
            Platform::Aws | Platform::Gcp | Platform::GenericX86_64 => "x86_64-linux",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Platform::Aws => "AWS EC2 AMI (x86_64)",
            Platform::Gcp => "Google Compute Engine image (x86_64)",
            Platform::Rk1 => "Turing RK1 nodes on Turing Pi 2 boards (aarch64)",
            Platform::GenericArm64 => "generic aarch64 SD-card image",
            // The raw UEFI disk image is off unless asked for (--raw-efi, the next question).
            Platform::GenericX86_64 => {
                "generic x86_64 server: bootable ISO (a raw UEFI disk image is optional)"
            }
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "{} is not a platform (allowed: {})",
                    quoted(s),
                    Self::ALL.map(Platform::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_names_users_type() {
        for p in Platform::ALL {
            let yaml = serde_yaml_ng::to_string(&p).unwrap();
            assert_eq!(yaml.trim(), p.name());
            assert_eq!(serde_yaml_ng::from_str::<Platform>(p.name()).unwrap(), p);
        }
    }
}
