//! `flakesmith build` against real Nix (Debian's nix-bin) on small local derivations. There is no
//! nixpkgs here, so the "images" are `derivation { builder = "/bin/sh"; … }` outputs laid out like
//! the real ones (`$out/sd-image/<name>.img`, `$out/nix-support/image-info.json`); what this cannot
//! show is a real NixOS image build, its closure, or a remote builder at work.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command as StdCommand,
    time::{SystemTime, UNIX_EPOCH},
};

use assert_cmd::Command;

/// Every test gets derivations no other run has built, so nix really builds them.
fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// A flake whose `packages.<system>.<name>` are the given shell scripts, run by /bin/sh.
fn flake(dir: &Path, packages: &[(&str, &str, &str)]) {
    let nonce = nonce();
    let mut systems: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (system, name, script) in packages {
        systems.entry(system).or_default().push(format!(
            "      {name} = derivation {{ name = \"{name}\"; system = \"{system}\"; builder = \"/bin/sh\"; \
             args = [ \"-c\" ''\n        # {nonce}\n        {script}\n      '' ]; }};\n"
        ));
    }
    let mut text = String::from("{\n  outputs = { self }: {\n");
    for (system, attrs) in systems {
        text.push_str(&format!(
            "    packages.{system} = {{\n{}    }};\n",
            attrs.concat()
        ));
    }
    text.push_str("  };\n}\n");
    fs_err::write(dir.join("flake.nix"), text).unwrap();
}

/// An sd-image-like output holding `content`.
fn image_script(name: &str, content: &str) -> String {
    format!(
        "/bin/echo building {name}; /bin/mkdir -p $out/sd-image $out/nix-support; \
         /bin/echo {content} > $out/sd-image/{name}.img; /bin/echo '{{}}' > $out/nix-support/image-info.json"
    )
}

/// flakesmith with no binary cache (nothing is fetched from the network) and, so that tests do not
/// depend on the machine's nix.conf, no remote builders and no extra platforms (added to the
/// settings every test runs with: support::nix_config).
fn flakesmith() -> Command {
    let mut command = Command::from_std(crate::support::flakesmith_command());
    command.env(
        "NIX_CONFIG",
        crate::support::nix_config_with("substituters =\nbuilders =\nextra-platforms =\n"),
    );
    command
}

/// A `nix` on PATH that appends its arguments to `log` and runs the real nix: shows how many
/// times flakesmith called nix, and with what.
fn recording_nix(dir: &Path, log: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    let real = which("nix");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    fs_err::write(bin.join("nix"), script).unwrap();
    fs_err::set_permissions(bin.join("nix"), std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed"))
}

fn path_with(first: &Path) -> String {
    format!("{}:{}", first.display(), std::env::var("PATH").unwrap())
}

#[test]
fn builds_every_target_in_one_nix_build_and_writes_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fs_err::create_dir(&repo).unwrap();
    flake(
        &repo,
        &[
            ("x86_64-linux", "node1", &image_script("node1", "one")),
            ("x86_64-linux", "node2", &image_script("node2", "two")),
            ("x86_64-linux", "tool", "/bin/mkdir -p $out/bin"),
        ],
    );
    let log = dir.path().join("nix.log");
    let bin = recording_nix(dir.path(), &log);

    let out = flakesmith()
        .env("PATH", path_with(&bin))
        .args(["build", "-C"])
        .arg(&repo)
        .args(["node1", "node2", "tool"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // One evaluation, one build of all three derivations.
    let calls = fs_err::read_to_string(&log).unwrap();
    let builds: Vec<&str> = calls.lines().filter(|l| l.contains(" build ")).collect();
    let evals: Vec<&str> = calls.lines().filter(|l| l.contains(" eval ")).collect();
    assert_eq!(builds.len(), 1, "{calls}");
    assert_eq!(evals.len(), 1, "{calls}");
    assert_eq!(builds[0].matches(".drv").count(), 3, "{calls}");
    assert!(builds[0].contains("--log-format internal-json"), "{calls}");

    // Not a terminal: plain lines, not bars.
    assert!(stderr.contains("building node1 (target node1)"), "{stderr}");
    assert!(stderr.contains("built node2 (target node2)"), "{stderr}");

    // The summary table: target, image, size, time.
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("TARGET") && rows[0].contains("IMAGE") && rows[0].contains("SIZE"));
    assert!(
        rows.iter().any(|r| r.starts_with("node1")
            && r.contains("images/node1/sd-image/node1.img")
            && r.contains("4 B")),
        "{stdout}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("tool") && r.contains("no image file")),
        "{stdout}"
    );

    // GC roots and a manifest sha256sum accepts.
    let images = repo.join("images");
    // The link is the GC root; with the chroot store of a user without a daemon (support::
    // nix_config) the root is under .gcroots/ and the link points at the files under the store's
    // root.
    let gc_root = match images.join(".gcroots/node1").symlink_metadata() {
        Ok(_) => images.join(".gcroots/node1"),
        Err(_) => images.join("node1"),
    };
    let store_path = fs_err::read_link(&gc_root).unwrap();
    assert!(
        store_path.starts_with("/nix/store"),
        "{}",
        store_path.display()
    );
    assert!(
        fs_err::read_link(images.join("node1"))
            .unwrap()
            .ends_with(store_path.strip_prefix("/").unwrap()),
        "images/node1 shows the files of {}",
        store_path.display()
    );
    let sums = fs_err::read_to_string(images.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 2, "{sums}");
    assert!(sums.contains("  node1/sd-image/node1.img\n"), "{sums}");
    let check = StdCommand::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&images)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A second run builds nothing and says so.
    let again = flakesmith()
        .args(["build", "-C"])
        .arg(&repo)
        .arg("node1")
        .output()
        .unwrap();
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout
            .lines()
            .any(|r| r.starts_with("node1") && r.trim_end().ends_with("cached")),
        "{stdout}"
    );
}

#[test]
fn a_failed_target_is_named_with_its_log_and_the_others_still_build() {
    let dir = tempfile::tempdir().unwrap();
    flake(
        dir.path(),
        &[
            ("x86_64-linux", "good", &image_script("good", "ok")),
            (
                "x86_64-linux",
                "broken",
                "/bin/echo compiling; /bin/echo 'no space left on device' >&2; exit 3",
            ),
        ],
    );
    let out = flakesmith()
        .args(["build", "--all", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("broken failed; last lines of its log:"),
        "{stderr}"
    );
    assert!(stderr.contains("  > no space left on device"), "{stderr}");
    assert!(stderr.contains("1 of 2 targets failed: broken"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|r| r.starts_with("broken") && r.contains("FAILED")),
        "{stdout}"
    );
    // --keep-going: the good one is built, linked and checksummed.
    let sums = fs_err::read_to_string(dir.path().join("images/SHA256SUMS")).unwrap();
    assert!(sums.contains("good/sd-image/good.img"), "{sums}");
}

#[test]
fn unknown_targets_and_missing_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    flake(
        dir.path(),
        &[("x86_64-linux", "node1", &image_script("node1", "x"))],
    );
    let out = flakesmith()
        .args(["build", "-C"])
        .arg(dir.path())
        .arg("node9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no 'node9' in packages.x86_64-linux (available: node1)"),
        "{stderr}"
    );

    let out = flakesmith()
        .args(["build", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("or pass --all"));

    let out = flakesmith()
        .args(["build", "-C"])
        .arg(dir.path())
        .arg("bad\"name")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("images").exists());
}

#[test]
fn an_evaluation_error_is_one_line_with_nix_message_and_where_to_look() {
    // Stand-in for a flake nixpkgs cannot evaluate (here: a throw, as a failed assertion is).
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("flake.nix"),
        "{\n  outputs = { self }: {\n    packages.x86_64-linux.node1 = throw \"boom: no such option\";\n  };\n}\n",
    )
    .unwrap();
    let out = flakesmith()
        .args(["build", "-C"])
        .arg(dir.path())
        .arg("node1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("failed: boom: no such option (`nix flake check --show-trace"),
        "{stderr}"
    );
}

/// flakesmith, with a nix that lists no extra platforms and no remote builders (NIX_CONFIG
/// overrides nix.conf), so aarch64-linux is missing on any x86_64 machine, whether or not its
/// binfmt_misc has an aarch64 emulator: nix must list the platform too before it emulates.
fn without_emulation_or_builders() -> Command {
    let mut command = flakesmith();
    // Added to the settings every test runs with (support::nix_config), which pick the store.
    command.env(
        "NIX_CONFIG",
        crate::support::nix_config_with("extra-platforms =\nbuilders =\n"),
    );
    command
}

#[test]
fn aarch64_without_emulation_or_builder_names_each_fix() {
    let dir = tempfile::tempdir().unwrap();
    flake(dir.path(), &[("aarch64-linux", "node1", "/bin/mkdir $out")]);
    let out = without_emulation_or_builders()
        .args(["build", "--system", "aarch64-linux", "-C"])
        .arg(dir.path())
        .arg("node1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing prerequisites"), "{stderr}");
    assert!(stderr.contains("build aarch64-linux"), "{stderr}");
    for fix in [
        "boot.binfmt.emulatedSystems",
        "--builders 'ssh://nixbuilder@HOST aarch64-linux'",
        "build.foreign: cross",
    ] {
        assert!(stderr.contains(fix), "{fix} missing from {stderr}");
    }
    assert!(!stderr.contains("building node1"), "built anyway: {stderr}");
}

#[test]
fn missing_nix_is_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    flake(dir.path(), &[("x86_64-linux", "node1", "/bin/mkdir $out")]);
    let empty = tempfile::tempdir().unwrap();
    let out = flakesmith()
        .env("PATH", empty.path())
        .args(["build", "-C"])
        .arg(dir.path())
        .arg("node1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nix: not found on PATH"), "{stderr}");
    assert!(stderr.contains("install Nix"), "{stderr}");
}

#[test]
fn dry_run_prints_the_nix_command_with_builders_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    flake(dir.path(), &[("x86_64-linux", "node1", "/bin/mkdir $out")]);
    let out = flakesmith()
        .args([
            "build",
            "--dry-run",
            "--builders",
            "ssh://nixbuilder@rk1-node1 aarch64-linux",
            "-C",
        ])
        .arg(dir.path())
        .arg("node1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("--builders 'ssh://nixbuilder@rk1-node1 aarch64-linux'"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}#packages.x86_64-linux.node1",
            dir.path().canonicalize().unwrap().display()
        )),
        "{stdout}"
    );
    assert!(!dir.path().join("images").exists());

    // --all is spelled out as the flake's targets.
    let out = flakesmith()
        .args(["build", "--dry-run", "--all", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("#packages.x86_64-linux.node1'"), "{stdout}");
    assert!(!dir.path().join("images").exists());
}

#[test]
fn sign_key_signs_the_manifest_so_ssh_keygen_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fs_err::create_dir(&repo).unwrap();
    flake(
        &repo,
        &[("x86_64-linux", "node1", &image_script("node1", "signed"))],
    );
    let key = dir.path().join("release");
    let keygen = StdCommand::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "release", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());

    let out = flakesmith()
        .args(["build", "-C"])
        .arg(&repo)
        .arg("node1")
        .arg("--sign-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let images = repo.join("images");
    let public = fs_err::read_to_string(key.with_extension("pub")).unwrap();
    fs_err::write(
        dir.path().join("allowed_signers"),
        format!("release@example {public}"),
    )
    .unwrap();
    let verify = StdCommand::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(dir.path().join("allowed_signers"))
        .args([
            "-I",
            "release@example",
            "-n",
            "file",
            "-s",
            "SHA256SUMS.sig",
        ])
        .current_dir(&images)
        .stdin(
            fs_err::File::open(images.join("SHA256SUMS"))
                .unwrap()
                .into_parts()
                .0,
        )
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // A manifest changed after signing no longer verifies.
    fs_err::write(
        images.join("SHA256SUMS"),
        "0000  node1/sd-image/node1.img\n",
    )
    .unwrap();
    let verify = StdCommand::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(dir.path().join("allowed_signers"))
        .args([
            "-I",
            "release@example",
            "-n",
            "file",
            "-s",
            "SHA256SUMS.sig",
        ])
        .current_dir(&images)
        .stdin(
            fs_err::File::open(images.join("SHA256SUMS"))
                .unwrap()
                .into_parts()
                .0,
        )
        .output()
        .unwrap();
    assert!(!verify.status.success());
}

#[test]
fn rk1_remote_builders_are_offered_as_the_builders_fix() {
    let dir = tempfile::tempdir().unwrap();
    // As the generated flake has it with `foreign: emulated`: the x86_64-linux package set
    // holds the node's image, an aarch64-linux derivation.
    fs_err::write(
        dir.path().join("flake.nix"),
        format!(
            "{{\n  outputs = {{ self }}: {{\n    packages.x86_64-linux.rk1-node1 = derivation {{ name = \"rk1-node1\"; system = \"aarch64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"# {}\" ]; }};\n  }};\n}}\n",
            nonce()
        ),
    )
    .unwrap();
    let answers =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/rk1-remote-builders/answers.yaml");
    fs_err::copy(answers, dir.path().join("flakesmith.yaml")).unwrap();
    let out = without_emulation_or_builders()
        .args(["build", "--system", "x86_64-linux", "-C"])
        .arg(dir.path())
        .arg("rk1-node1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--builders 'ssh://nixbuilder@10.0.0.11 aarch64-linux /root/.ssh/nixbuilder 4 1 big-parallel ; ssh://nixbuilder@10.0.0.12 aarch64-linux"),
        "{stderr}"
    );
}

/// Both layouts' READMEs give the `--builders` value `flakesmith build` offers (one owner:
/// the model), with each node's static address or host name.
#[test]
fn the_readme_shows_the_builders_that_build_offers() {
    use flakesmith::model::{answers::Answers, Layout, Platform};
    let mut multi_cloud = Answers {
        layout: Layout::MultiCloud,
        platforms: vec![Platform::Aws, Platform::Rk1],
        ..Answers::default()
    };
    multi_cloud.network.gateway = Some("10.0.0.1".into());
    multi_cloud.nodes[1].address = Some("10.0.0.12/24".into());
    for mut answers in [Answers::default(), multi_cloud] {
        answers.build.rk1_remote_builders = true;
        let project = flakesmith::model::Project::from_answers(&answers).unwrap();
        let builders = project
            .build
            .rk1_builders
            .clone()
            .expect("remote builders on");
        let entries: Vec<&str> = builders.split(" ; ").collect();
        assert_eq!(entries.len(), answers.nodes.len(), "{builders}");
        for (entry, node) in entries.iter().zip(&answers.nodes) {
            let address = node
                .address
                .as_deref()
                .map_or(node.host.as_str(), |a| a.split('/').next().unwrap());
            assert_eq!(
                *entry,
                format!("ssh://nixbuilder@{address} aarch64-linux /root/.ssh/nixbuilder 4 1 big-parallel")
            );
        }
        let tree = crate::support::Project::from_answers(answers.clone()).render();
        let readme = String::from_utf8_lossy(&tree.get("README.md").unwrap().contents).into_owned();
        assert!(
            readme.contains(&format!("flakesmith build --all --builders '{builders}'")),
            "{:?}: {readme}",
            answers.layout
        );
    }
}

/// `build --all --dry-run` in a generated repository names the images the flake really has (here
/// nixpkgs cannot be fetched, so flakesmith.yaml says them), and a target or `--system` the
/// repository does not have is refused naming the argument and the choices.
#[test]
fn a_generated_repositorys_targets_and_systems_come_from_its_answers() {
    use crate::nix_eval::{nix_with_stand_ins, stand_in_inputs};
    for init_args in [
        vec!["--nodes", "2"],
        vec!["--layout", "multi-cloud", "--raw-efi", "--nodes", "1"],
    ] {
        let repo = crate::support::TestRepo::init(&init_args);
        let dir = repo.dir.to_str().unwrap();
        let out = flakesmith()
            .args([
                "build",
                "-C",
                dir,
                "--all",
                "--dry-run",
                "--system",
                "x86_64-linux",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains("<every target>"), "{stdout}");
        let shown: std::collections::BTreeSet<String> = stdout
            .split_whitespace()
            .filter_map(|w| {
                w.split_once("#packages.x86_64-linux.")
                    .map(|(_, n)| n.trim_end_matches('\'').to_owned())
            })
            .collect();
        // What the flake itself defines, evaluated by real Nix against the stand-in inputs.
        let overrides = stand_in_inputs(&repo.read("flake.nix"));
        let evaluated = crate::support::run_ok(&mut nix_with_stand_ins(
            &overrides,
            &[
                "eval",
                "--json",
                &format!("path:{dir}#packages.x86_64-linux"),
                "--apply",
                "builtins.attrNames",
            ],
        ));
        let evaluated: std::collections::BTreeSet<String> =
            serde_json::from_str(&evaluated).unwrap();
        assert_eq!(shown, evaluated, "{init_args:?}: {stdout}");

        let refused = |args: &[&str], says: &str| {
            let out = flakesmith()
                .args(["build", "-C", dir, "--dry-run"])
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
        };
        let first = evaluated.iter().next().unwrap().clone();
        refused(
            &["rk1-node9"],
            &format!("TARGET: 'rk1-node9' is not an image of this repository (flakesmith.yaml); choose from {first}"),
        );
        refused(
            &["--all", "--system", "riscv64-linux"],
            "--system: 'riscv64-linux' is not in build.systems of flakesmith.yaml; choose from x86_64-linux, aarch64-linux",
        );
    }
}

/// Every file under a `-source` store path (what nix names a flake's copied source) whose text
/// holds `secret`.
pub(crate) fn store_files_holding(secret: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/nix/store").unwrap().flatten() {
        if !entry.file_name().to_string_lossy().contains("-source") {
            continue;
        }
        for file in walkdir::WalkDir::new(entry.path()).follow_links(false) {
            let Ok(file) = file else { continue };
            if file.file_type().is_file()
                && file.metadata().is_ok_and(|m| m.len() < (1 << 20))
                && std::fs::read(file.path())
                    .is_ok_and(|b| String::from_utf8_lossy(&b).contains(secret))
            {
                found.push(file.into_path());
            }
        }
    }
    found
}

/// A fresh age identity in `repo/keys/<name>` (as init writes it); returns its secret line.
pub(crate) fn age_identity(repo: &Path, name: &str) -> String {
    let keys = repo.join("keys");
    fs_err::create_dir_all(&keys).unwrap();
    crate::support::run_ok(StdCommand::new("age-keygen").arg("-o").arg(keys.join(name)));
    fs_err::read_to_string(keys.join(name))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned()
}

#[test]
fn a_repository_without_git_reaches_nix_without_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fs_err::create_dir(&repo).unwrap();
    flake(
        &repo,
        &[("x86_64-linux", "node1", &image_script("node1", "one"))],
    );
    let secret = age_identity(&repo, "node1.age");
    // A key elsewhere too (a user's copy), and a symlink to one outside the repository.
    fs_err::write(repo.join("deploy-key.txt"), format!("{secret}\n")).unwrap();
    let outside = age_identity(dir.path(), "outside.age");
    std::os::unix::fs::symlink(dir.path().join("keys/outside.age"), repo.join("linked.age"))
        .unwrap();

    let out = flakesmith()
        .args(["build", "--all", "--dry-run", "-C"])
        .arg(&repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for key in [&secret, &outside] {
        assert_eq!(
            store_files_holding(key),
            Vec::<PathBuf>::new(),
            "a key reached the store"
        );
    }
    // --all was evaluated (the targets are spelled out), from a copy without the keys.
    assert!(stdout.contains("#packages.x86_64-linux.node1'"), "{stdout}");
    assert!(stdout.contains("git init && git add --all"), "{stdout}");
    assert!(
        stderr.contains("deploy-key.txt holds a private key: not handed to nix"),
        "{stderr}"
    );

    // And a real build, which evaluates and builds.
    let out = flakesmith()
        .args(["build", "node1", "-C"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.join("images/node1").exists());

    for key in [&secret, &outside] {
        assert_eq!(
            store_files_holding(key),
            Vec::<PathBuf>::new(),
            "a key reached the store"
        );
    }
}

#[test]
fn a_git_repository_that_tracks_a_key_is_not_handed_to_nix() {
    let dir = tempfile::tempdir().unwrap();
    flake(dir.path(), &[("x86_64-linux", "node1", "/bin/mkdir $out")]);
    let secret = age_identity(dir.path(), "node1.age");
    crate::support::run_ok(
        StdCommand::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["init", "-q"]),
    );
    crate::support::run_ok(
        StdCommand::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["add", "--all"]),
    );
    let out = flakesmith()
        .args(["build", "--all", "--dry-run", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'keys/node1.age' is tracked by git"),
        "{stderr}"
    );
    assert_eq!(store_files_holding(&secret), Vec::<PathBuf>::new());

    // A key committed anywhere else is refused too.
    crate::support::run_ok(
        StdCommand::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["rm", "-q", "--cached", "-r", "keys"]),
    );
    fs_err::write(dir.path().join("notes.txt"), format!("{secret}\n")).unwrap();
    crate::support::run_ok(
        StdCommand::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["add", "notes.txt"]),
    );
    let out = flakesmith()
        .args(["build", "--all", "--dry-run", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'notes.txt' holds a private key and is tracked by git"),
        "{stderr}"
    );
    assert_eq!(store_files_holding(&secret), Vec::<PathBuf>::new());
}

/// The identical image's digest is recorded for `flakesmith stamp`, and a later build of other
/// targets keeps it (SHA256SUMS lists only the last build's images).
#[test]
fn the_identical_images_digest_is_recorded_for_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    fs_err::create_dir(&repo).unwrap();
    flake(
        &repo,
        &[
            (
                "x86_64-linux",
                "rk1",
                &image_script("nixos-rk1", "identical"),
            ),
            ("x86_64-linux", "node1", &image_script("node1", "one")),
        ],
    );
    for target in ["rk1", "node1"] {
        let out = flakesmith()
            .args(["build", "-C"])
            .arg(&repo)
            .arg(target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let record: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(repo.join("images/identical-images.json")).unwrap(),
    )
    .unwrap();
    let images = record["images"].as_object().unwrap();
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        ["rk1"],
        "node images are not identical images"
    );
    assert_eq!(images["rk1"]["path"], "rk1/sd-image/nixos-rk1.img");
    let image = fs_err::read(repo.join("images/rk1/sd-image/nixos-rk1.img")).unwrap();
    use sha2::Digest;
    assert_eq!(
        images["rk1"]["sha256"],
        hex::encode(sha2::Sha256::digest(&image))
    );
    assert_eq!(images["rk1"]["size"], image.len());
    // The digest `flakesmith stamp` compares: of the bytes, reading only the data.
    let file = std::fs::File::open(repo.join("images/rk1/sd-image/nixos-rk1.img")).unwrap();
    assert_eq!(
        images["rk1"]["content"],
        flakesmith::stamp::record::content_digest(&file, image.len() as u64).unwrap()
    );
}
