//! Nix: the syntax check of rendered files, the `nix build` driver, and what of a repository
//! Nix is given.

pub mod build;
pub mod log;
pub mod prereq;
pub mod source;
mod syntax;

pub use syntax::{check_syntax, check_text, SyntaxError};
