//! The one integration-test binary: each module covers one area, with real tools where the
//! machine has them (Nix from Debian's nix-bin 2.8, shellcheck, …), and stand-ins only for what
//! is not on this machine (a BMC, nixpkgs; see tests/fixtures/README.md).

mod book;
mod build;
mod check;
mod cloud;
mod deploy;
mod grow;
mod init_cli;
mod inject;
mod interactive;
mod nix_eval;
mod nix_syntax;
mod nixos_options;
mod packaging;
mod rk_inject_call;
mod secrets;
mod shellcheck;
mod snapshots;
mod support;

/// Every process the tests start sees the same Nix settings (support::nix_config says which).
#[ctor::ctor(unsafe)]
fn configure_nix_for_tests() {
    let mut config = std::env::var("NIX_CONFIG").unwrap_or_default();
    if !config.is_empty() && !config.ends_with('\n') {
        config.push('\n');
    }
    config.push_str(&support::nix_config());
    // Before main: no other thread exists yet.
    std::env::set_var("NIX_CONFIG", config);
}
