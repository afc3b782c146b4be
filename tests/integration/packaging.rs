//! flakesmith's own Nix packaging: real Nix parses it. (Building it needs nixpkgs, which is not
//! on this machine; what a parse cannot show is that the nixpkgs attributes it names exist.)

use std::process::Command;

#[test]
fn the_project_flake_and_package_parse_with_real_nix() {
    for file in ["flake.nix", "nix/package.nix"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file;
        let out = Command::new("nix-instantiate")
            .args(["--parse", &path])
            .output()
            .expect("nix-instantiate (Debian nix-bin) is installed");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_package_ships_what_the_binary_embeds() {
    // include_dir! embeds scaffolds/ and src/rockchip/ at build time; the Nix source filter must
    // carry them, or the packaged flakesmith would not compile.
    let package =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nix/package.nix")).unwrap();
    for needed in ["../src", "../scaffolds", "../build.rs", "../Cargo.lock"] {
        assert!(
            package.contains(needed),
            "nix/package.nix does not include {needed}"
        );
    }
}
