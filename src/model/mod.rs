//! Validated types: the answers file schema ([`Answers`]) and what it validates into ([`Project`]).

mod age_recipient;
pub mod answers;
mod board;
mod cluster;
mod error;
mod flake_url;
mod hostname;
mod layout;
mod machine;
mod nixpkgs_branch;
mod node;
mod password_hash;
mod platform;
mod project;
mod project_name;
mod ssh_public_key;
mod user_name;

pub use age_recipient::AgeRecipient;
pub use answers::{Answers, SCHEMA_VERSION};
pub use board::{check_host_or_ip, Board, BoardName};
pub use cluster::{NodeRequest, Placement};
pub use error::InvalidAnswer;
pub use flake_url::FlakeUrl;
pub use hostname::Hostname;
pub use layout::Layout;
pub use machine::{chosen, machines, DeployScript, Image, Machine, Step};
pub use nixpkgs_branch::{NixpkgsBranch, StateVersion};
pub use node::{Ipv4Cidr, Node, Slot};
pub use password_hash::PasswordHash;
pub use platform::Platform;
pub use project::{Aws, Bootloader, GenericX86_64, Monitoring, Project, Secrets, BUILD_SYSTEMS};
pub use project_name::ProjectName;
pub use ssh_public_key::SshPublicKey;
pub(crate) use ssh_public_key::SSH_PUBLIC_KEY_HINT;
pub use user_name::UserName;
