use std::fmt;

use serde::{Deserialize, Serialize};

/// Which of the guide's two repository layouts is generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// RK1 nodes on Turing Pi 2 boards: flake.nix, common.nix, rk1-base.nix, nodes/.
    #[default]
    Rk1Cluster,
    /// Several platforms from one flake: common/, platforms/, deploy/.
    MultiCloud,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Rk1Cluster => "rk1-cluster",
            Layout::MultiCloud => "multi-cloud",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
