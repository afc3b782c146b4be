use std::fmt;

use serde::{Deserialize, Serialize};

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
    #[serde(rename = "orangepi-5-plus")]
    OrangePi5Plus,
}

impl Platform {
    pub const ALL: [Platform; 6] = [
        Platform::Aws,
        Platform::Gcp,
        Platform::Rk1,
        Platform::GenericArm64,
        Platform::GenericX86_64,
        Platform::OrangePi5Plus,
    ];

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The Nix system the images of this platform run on.
    pub fn system(self) -> &'static str {
        self.spec().system
    }

    pub fn describe(self) -> &'static str {
        self.spec().description
    }
}

/// `--platform`'s values and their help, from the names and descriptions above.
impl clap::ValueEnum for Platform {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.describe()))
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
