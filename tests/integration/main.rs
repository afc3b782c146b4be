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
mod hostile;
mod init_cli;
mod inject;
mod interactive;
mod journey;
mod nix_args;
mod nix_eval;
mod nix_syntax;
mod nixos_options;
mod packaging;
mod rk_inject_call;
mod secrets;
mod shellcheck;
mod snapshots;
mod stamp;
mod support;
mod transactions;
mod upgrade;

/// Every process the tests start sees the same Nix settings (support::nix_config says which), and
/// finds mkfs.ext4, sfdisk, sshd and the other tools Debian puts in the sbin directories, which a
/// normal user's PATH lacks.
#[ctor::ctor(unsafe)]
fn configure_environment_for_tests() {
    let mut path = std::env::var("PATH").unwrap_or_default();
    for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !path.split(':').any(|d| d == dir) {
            path.push(':');
            path.push_str(dir);
        }
    }
    std::env::set_var("PATH", path);

    let mut config = std::env::var("NIX_CONFIG").unwrap_or_default();
    if !config.is_empty() && !config.ends_with('\n') {
        config.push('\n');
    }
    config.push_str(&support::nix_config());
    // Before main: no other thread exists yet.
    std::env::set_var("NIX_CONFIG", config);
}
