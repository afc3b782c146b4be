//! Validated types: the answers file schema ([`Answers`]) and what it validates into ([`Project`]).

mod age_recipient;
pub mod answers;
mod board;
mod cluster;
mod error;
mod hostname;
mod layout;
mod machine;
mod node;
mod platform;
mod project;
mod ssh_public_key;

pub use age_recipient::AgeRecipient;
pub use answers::{Answers, SCHEMA_VERSION};
pub use board::{check_host_or_ip, Board};
pub use cluster::{NodeRequest, Placement};
pub use error::InvalidAnswer;
pub use hostname::Hostname;
pub use layout::Layout;
pub use machine::{chosen, machines, DeployScript, Image, Machine, Step};
pub use node::{Ipv4Cidr, Node};
pub use platform::Platform;
pub use project::{
    check_flake_url, check_nixpkgs_branch, check_password_hash, check_project_name,
    check_user_name, state_version_of_branch, Aws, Bootloader, GenericX86_64, Monitoring, Project,
    BUILD_SYSTEMS,
};
pub use ssh_public_key::SshPublicKey;
pub(crate) use ssh_public_key::SSH_PUBLIC_KEY_HINT;
