//! Nix: the syntax check of rendered files, and the `nix build` driver.

pub mod build;
pub mod log;
pub mod prereq;
mod syntax;

pub use syntax::{check_syntax, check_text, SyntaxError};
