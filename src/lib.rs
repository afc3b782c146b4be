//! flakesmith: scaffold, grow and build Nix flake repositories for custom NixOS images.
//!
//! Data flows one way: answers ([`model::Answers`]) → validated [`model::Project`] → rendered
//! [`render::Tree`] → plan against disk ([`sync`]) → apply. The binary is a thin shell over
//! [`cmd`].

pub mod model;
pub mod nix;
pub mod render;
