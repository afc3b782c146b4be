//! Nix: the `nix build` driver, and what of a repository Nix is given.

pub mod build;
pub mod log;
pub mod prereq;
pub mod source;
