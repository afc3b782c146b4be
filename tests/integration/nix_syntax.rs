//! Real Nix parses every generated `.nix` file (flakesmith itself checks with rnix; this is the
//! second opinion of the parser that will actually read them).

use std::process::Command;

use crate::support::{all_variants, run_ok, TestRepo};

#[test]
fn nix_instantiate_parses_every_generated_nix_file() {
    let mut parsed = 0;
    for (variant, tree) in all_variants() {
        let repo = TestRepo::from_tree(&tree);
        for path in tree.paths().filter(|p| p.ends_with(".nix")) {
            let output = Command::new("nix-instantiate")
                .arg("--parse")
                .arg(repo.path().join(path))
                .output()
                .expect("nix-instantiate (Debian nix-bin) is installed");
            assert!(
                output.status.success(),
                "{variant}: nix-instantiate --parse {path} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            parsed += 1;
        }
    }
    assert!(
        parsed > 20,
        "only {parsed} files parsed: were the variants rendered?"
    );
}

#[test]
fn a_syntax_error_is_caught_by_nix_instantiate() {
    // The check above must be able to fail.
    let repo = TestRepo::from_tree(&Default::default());
    repo.write("broken.nix", "{ a = ; }\n");
    let status = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(repo.path().join("broken.nix"))
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
    // And a file like the generated ones parses.
    run_ok(Command::new("nix-instantiate").args([
        "--parse",
        "--expr",
        "{ a = ./x/${\"y\"}.nix; }",
    ]));
}
