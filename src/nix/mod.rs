//! Nix: the syntax check of rendered files, and the `nix build` driver.

mod syntax;

pub use syntax::{check_syntax, check_text, SyntaxError};
