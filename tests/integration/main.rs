//! flakesmith's integration tests: one binary, one module per area.
//!
//! Real tools wherever they exist here: Nix (Debian's nix-bin 2.8) parses and evaluates what
//! flakesmith generates, shellcheck reads the generated scripts. Stand-ins only for what is not
//! on this machine (nixpkgs; see tests/fixtures/README.md).

mod check;
mod nix_eval;
mod nix_syntax;
mod nixos_options;
mod rk_inject_call;
mod secrets;
mod shellcheck;
mod snapshots;
mod support;
