//! flakesmith: scaffold, grow and build Nix flake repositories for custom NixOS images.
//!
//! Data flows one way: answers ([`model::Answers`]) → validated [`model::Project`] → rendered
//! [`render::Tree`] → plan against disk ([`sync`]) → apply. The binary is a thin shell over
//! [`cmd`].

pub mod check;
pub mod cli;
pub mod cmd;
pub mod echo;
mod error;
mod failpoint;
mod git;
pub mod images;
pub mod model;
pub mod nix;
pub mod prompt;
pub mod render;
pub mod rockchip;
pub mod rockchip_fuzz;
pub mod rockchip_vendor;
pub mod secrets;
pub mod stamp;
pub mod sync;

pub use error::UsageError;

/// The exit code for an error: 2 when the user asked for something invalid, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let bad_input = error
        .chain()
        .any(|e| e.is::<UsageError>() || e.is::<model::InvalidAnswer>());
    if bad_input {
        2
    } else {
        1
    }
}
