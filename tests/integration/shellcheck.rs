//! shellcheck reads every generated script, and the scripts' --help and --dry-run work.

use std::process::Command;

use crate::support::{all_variants, run_ok, Project, TestRepo};

#[test]
fn every_generated_script_passes_shellcheck() {
    let mut checked = 0;
    for (variant, tree) in all_variants() {
        let repo = TestRepo::from_tree(&tree);
        for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".sh")) {
            assert!(file.executable, "{variant}: {path} is not executable");
            let text = file.as_text().unwrap();
            assert!(
                text.starts_with("#!/usr/bin/env bash\n"),
                "{variant}: {path} shebang"
            );
            assert!(
                text.contains("\nset -euo pipefail\n"),
                "{variant}: {path} lacks set -euo pipefail"
            );
            let output = Command::new("shellcheck")
                .args(["--shell=bash", "--severity=style", "--external-sources"])
                .arg(repo.path().join(path))
                .output()
                .expect("shellcheck is installed");
            assert!(
                output.status.success(),
                "{variant}: shellcheck {path}:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} scripts checked");
}

#[test]
fn scripts_have_help_and_a_dry_run_that_prints_the_commands() {
    let tree = Project::default().with_nodes(6).render();
    let repo = TestRepo::from_tree(&tree);
    for script in ["build-all-images.sh", "deploy/rk1-deploy.sh"] {
        let help = run_ok(Command::new(repo.path().join(script)).arg("--help"));
        assert!(help.contains("--dry-run"), "{script} --help:\n{help}");
    }

    let build = run_ok(Command::new(repo.path().join("build-all-images.sh")).args([
        "--dry-run",
        "--identical",
        "--nix",
    ]));
    assert_eq!(
        build.trim(),
        "nix --extra-experimental-features nix-command\\ flakes build .#rk1-node1 .#rk1-node2 .#rk1-node3 .#rk1-node4 .#rk1-node5 .#rk1-node6 .#rk1",
        "one nix build for every image, flakes enabled for it (Debian's nix.conf does not)"
    );

    // Images where `nix build` leaves them (result, result-1, …), found by their names.
    repo.write("result/sd-image/nixos-rk1-node1.img", "image");
    repo.write("result-4/sd-image/nixos-rk1-node5.img", "image");
    let deploy = run_ok(
        Command::new(repo.path().join("deploy/rk1-deploy.sh"))
            .args([
                "--dry-run",
                "--no-post-deploy",
                "--node",
                "rk1-node5",
                "--node",
                "rk1-node1",
            ])
            .env("TPI_PASSWORD", "secret-not-printed"),
    );
    let root = repo.path().display();
    // sha256 of "image": without images/SHA256SUMS the script computes it for the BMC.
    let sha = "6105d6cc76af400325e94d588ce511be5bfdbb73b437dc51eca43917d7a43e3d";
    assert_eq!(
        deploy,
        format!(
            "tpi --host turingpi.local flash --node 1 --image-path {root}/result/sd-image/nixos-rk1-node1.img --sha256 {sha} \n\
             tpi --host turingpi.local power off --node 1 \n\
             tpi --host turingpi.local power on --node 1 \n\
             tpi --host turingpi2.local flash --node 1 --image-path {root}/result-4/sd-image/nixos-rk1-node5.img --sha256 {sha} \n\
             tpi --host turingpi2.local power off --node 1 \n\
             tpi --host turingpi2.local power on --node 1 \n"
        )
    );
    assert!(!deploy.contains("secret-not-printed"));

    let unknown = Command::new(repo.path().join("deploy/rk1-deploy.sh"))
        .args(["--dry-run", "--node", "nope"])
        .output()
        .unwrap();
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "an unknown node is bad input"
    );
}

#[test]
fn shellcheck_finds_an_unquoted_variable() {
    // The check above must be able to fail.
    let repo = TestRepo::from_tree(&Default::default());
    repo.write(
        "bad.sh",
        "#!/usr/bin/env bash\nset -euo pipefail\nx=\"$1\"\nrm $x\n",
    );
    let status = Command::new("shellcheck")
        .arg(repo.path().join("bad.sh"))
        .status()
        .unwrap();
    assert!(!status.success());
}
