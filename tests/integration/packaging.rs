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

/// The README names only files a reader of the repository has, and the package metadata names no
/// repository URL: there is no public one yet, and a placeholder would send crates.io readers to
/// someone else's page (add the real one when it exists, and change this test).
#[test]
fn the_readme_and_the_package_point_only_at_what_exists() {
    let root = crate::support::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut named = Vec::new();
    for piece in readme.split('`').skip(1).step_by(2) {
        if piece.ends_with(".md") && !piece.contains(' ') {
            named.push(piece.to_owned());
        }
    }
    for link in readme.split("](").skip(1) {
        let target = link.split(')').next().unwrap();
        if !target.contains("://") {
            named.push(target.split('#').next().unwrap().to_owned());
        }
    }
    assert!(!named.is_empty());
    for path in named {
        assert!(
            root.join(&path).exists() || root.join("book/src").join(&path).exists(),
            "README.md names {path}, which the repository does not have"
        );
    }
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let package = cargo.split("\n[").next().unwrap();
    assert!(
        !package.contains("repository =") && !package.contains("homepage ="),
        "{package}"
    );
}
