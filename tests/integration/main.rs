//! flakesmith's integration tests: one binary, one module per area.
//!
//! Real tools wherever they exist here: Nix (Debian's nix-bin 2.8) parses and evaluates what
//! flakesmith generates, shellcheck reads the generated scripts. Stand-ins only for what is not
//! on this machine (nixpkgs; see tests/fixtures/README.md).

mod book;
mod grow;
mod init_cli;
mod interactive;
mod nix_eval;
mod nix_syntax;
mod nixos_options;
mod packaging;
mod rk_inject_call;
mod shellcheck;
mod snapshots;
mod support;
