//! The one integration-test binary: each module covers one area, with real tools where the
//! machine has them (Nix from Debian's nix-bin 2.8, shellcheck, …), and stand-ins only for what
//! is not on this machine (a BMC, nixpkgs; see tests/fixtures/README.md).

mod book;
mod build;
mod check;
mod cloud;
mod deploy;
mod deploy_journey;
mod grow;
mod init_cli;
mod inject;
mod interactive;
mod nix_args;
mod nix_eval;
mod nix_syntax;
mod nixos_options;
mod packaging;
mod rk_inject_call;
mod secrets;
mod shellcheck;
mod snapshots;
mod support;
