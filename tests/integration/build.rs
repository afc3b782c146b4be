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
/// depend on the machine's nix.conf, no remote builders and no extra platforms. The test
/// derivations call the host's /bin/sh, so they build unsandboxed and as the invoking user (a fresh
/// Debian has neither /etc/nix/nix.conf nor the nixbld group).
fn flakesmith() -> Command {
    let mut command = Command::cargo_bin("flakesmith").unwrap();
    command.env(
        "NIX_CONFIG",
        "substituters =\nbuilders =\nextra-platforms =\nbuild-users-group =\nsandbox = false\n",
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
    assert!(fs_err::read_link(images.join("node1"))
        .unwrap()
        .starts_with("/nix/store"));
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

#[test]
fn aarch64_without_emulation_or_builder_names_each_fix() {
    let has_binfmt = fs_err::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("aarch64"))
        })
        .unwrap_or(false);
    if has_binfmt {
        eprintln!("skipped: this machine emulates aarch64, so nothing is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    flake(dir.path(), &[("aarch64-linux", "node1", "/bin/mkdir $out")]);
    let out = flakesmith()
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
    let has_binfmt = fs_err::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("aarch64"))
        })
        .unwrap_or(false);
    if has_binfmt {
        eprintln!("skipped: this machine emulates aarch64, so nothing is missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    flake(
        dir.path(),
        &[("aarch64-linux", "rk1-node1", "/bin/mkdir $out")],
    );
    let answers =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots/rk1-remote-builders/answers.yaml");
    fs_err::copy(answers, dir.path().join("flakesmith.yaml")).unwrap();
    let out = flakesmith()
        .args(["build", "--system", "aarch64-linux", "-C"])
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
}
