//! `flakesmith init` as a user runs it: the real binary, in a temporary directory, with a HOME
//! of its own so the user's keys never leak into a test.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use assert_cmd::Command;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@example";

/// A scratch directory to run `flakesmith init` in.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn flakesmith(&self, args: &[&str]) -> Output {
        Command::cargo_bin("flakesmith")
            .unwrap()
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.path("home"))
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("NO_COLOR", "1")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap()
    }

    /// Every file below the scratch directory except HOME, for "nothing was written".
    fn listing(&self) -> Vec<String> {
        walkdir::WalkDir::new(self.dir.path())
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(self.dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .filter(|p| !p.is_empty() && p != "home")
            .collect()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: exit 2, one line naming the field, and nothing on disk.
fn assert_refused(scratch: &Scratch, args: &[&str], field: &str) {
    let before = scratch.listing();
    let out = scratch.flakesmith(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(field), "{args:?} should name {field}: {err}");
    assert_eq!(scratch.listing(), before, "{args:?} wrote something");
}

#[test]
fn yes_writes_a_whole_git_ready_repo() {
    let s = Scratch::new();
    let out = s.flakesmith(&["init", "my-cluster", "--yes", "--ssh-key", KEY]);
    assert!(out.status.success(), "{}", stderr(&out));
    let repo = s.path("my-cluster");
    for file in [
        "flake.nix",
        "common.nix",
        "rk1-base.nix",
        "nodes/rk1-node4.nix",
        "flakesmith.yaml",
        ".gitignore",
        "README.md",
    ] {
        assert!(repo.join(file).is_file(), "{file} missing");
    }
    assert!(
        repo.join(".flakesmith/base/flake.nix").is_file(),
        "base record missing"
    );
    assert!(repo.join(".git").is_dir(), "git init did not run");
    let answers = std::fs::read_to_string(repo.join("flakesmith.yaml")).unwrap();
    assert!(
        answers.contains(KEY) && answers.contains("schema: 1"),
        "{answers}"
    );
    // No staging directory is left beside the project.
    assert_eq!(
        s.listing().iter().filter(|p| !p.contains('/')).count(),
        1,
        "{:?}",
        s.listing()
    );
}

#[test]
fn bad_answers_are_refused_naming_the_field() {
    let s = Scratch::new();
    assert_refused(
        &s,
        &["init", "c", "--yes", "--hosts", "a,b,Node_3"],
        "--hosts: 'Node_3'",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--hosts", "a,b,a"],
        "--hosts: host 'a' is listed twice",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--ssh-key", "ssh-ed25519 AAAAnotakey"],
        "--ssh-key",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--age-recipient", "age2xyz"],
        "--age-recipient: 'age2xyz'",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--admin-user", "Root User"],
        "--admin-user: ",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--platform", "azure"],
        "--platform",
    );
    // Flags that the other answers make meaningless are refused, not dropped.
    assert_refused(
        &s,
        &[
            "init",
            "c",
            "--yes",
            "--secrets",
            "deployment-keys",
            "--age-recipient",
            "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq",
        ],
        "--age-recipient: only used with --secrets sops",
    );
    assert_refused(
        &s,
        &[
            "init",
            "c",
            "--yes",
            "--deployment-key",
            crate::support::DEPLOY_SSH_KEY,
        ],
        "--deployment-key: only used with",
    );
    assert_refused(
        &s,
        &[
            "init",
            "c",
            "--yes",
            "--layout",
            "rk1-cluster",
            "--platform",
            "aws",
        ],
        "--platform: ",
    );
    // An authorized_keys file with two keys: the answer holds one, and none is dropped unsaid.
    std::fs::write(
        s.path("two.pub"),
        format!(
            "{}\n{}\n",
            crate::support::ADMIN_SSH_KEY,
            crate::support::DEPLOY_SSH_KEY
        ),
    )
    .unwrap();
    assert_refused(
        &s,
        &[
            "init",
            "c",
            "--yes",
            "--secrets",
            "deployment-keys",
            "--deployment-key",
            s.path("two.pub").to_str().unwrap(),
        ],
        "holds 2 keys",
    );
}

#[test]
fn answers_files_are_checked_like_flags() {
    let s = Scratch::new();
    let write = |name: &str, text: &str| std::fs::write(s.path(name), text).unwrap();
    write("typo.yaml", "schema: 1\nadmin-usr: me\n");
    write("newer.yaml", "schema: 7\nsomething-new: true\n");
    write(
        "crowded.yaml",
        "schema: 1\nboards:\n  - name: tp1\n    bmc-host: turingpi.local\nnodes:\n  - {host: a, board: tp1, slot: 1}\n  - {host: b, board: tp1, slot: 1}\n",
    );
    write(
        "too-many.yaml",
        &format!(
            "schema: 1\nboards:\n  - name: tp1\n    bmc-host: turingpi.local\nnodes:\n{}",
            (1..=5)
                .map(|i| format!(
                    "  - {{host: n{i}, board: tp1, slot: {}}}\n",
                    (i - 1) % 4 + 1
                ))
                .collect::<String>()
        ),
    );
    assert_refused(&s, &["init", "c", "--answers", "typo.yaml"], "admin-usr");
    assert_refused(
        &s,
        &["init", "c", "--answers", "newer.yaml"],
        "newer flakesmith",
    );
    assert_refused(
        &s,
        &["init", "c", "--answers", "crowded.yaml"],
        "crowded.yaml: nodes[1].slot",
    );
    assert_refused(
        &s,
        &["init", "c", "--answers", "too-many.yaml"],
        "do not fit",
    );
}

#[test]
fn without_a_terminal_missing_answers_are_named_not_waited_for() {
    let s = Scratch::new();
    // stdin is not a terminal under the test harness (assert_cmd gives it no stdin).
    assert_refused(&s, &["init", "c", "--nodes", "3"], "--ssh-key");
    let out = s.flakesmith(&["init", "c", "--nodes", "3"]);
    let err = stderr(&out);
    assert!(
        err.contains("--admin-user") && !err.contains("--nodes"),
        "{err}"
    );
}

#[test]
fn dry_run_lists_files_and_writes_nothing() {
    let s = Scratch::new();
    let out = s.flakesmith(&["init", "c", "--yes", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.contains("flake.nix") && listing.contains("nodes/rk1-node1.nix"),
        "{listing}"
    );
    assert!(s.listing().is_empty(), "{:?}", s.listing());
}

#[test]
fn a_non_empty_directory_needs_force_and_force_keeps_user_files() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("c")).unwrap();
    std::fs::write(s.path("c/README.md"), "my notes\n").unwrap();
    std::fs::write(s.path("c/other.txt"), "keep me\n").unwrap();
    assert_refused(&s, &["init", "c", "--yes"], "not empty");

    let out = s.flakesmith(&["init", "c", "--yes", "--force", "--no-git"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(s.path("c/README.md")).unwrap(),
        "my notes\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("c/other.txt")).unwrap(),
        "keep me\n"
    );
    assert!(s.path("c/README.md.flakesmith-new").is_file());
    assert!(s.path("c/flake.nix").is_file());
}

#[test]
fn a_reader_that_goes_away_neither_panics_nor_leaves_a_repo_half_made() {
    // `flakesmith init c --yes | head -0`: the read end is closed before the first print.
    let s = Scratch::new();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flakesmith"))
        .args(["init", "c", "--yes", "--no-git"])
        .current_dir(s.path(""))
        .env("HOME", s.path("home"))
        .env("NO_COLOR", "1")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // Ended by SIGPIPE, as `git log | head` is: quietly.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
    // Every identity .sops.yaml names was written before anything was printed.
    let keys = std::fs::read_dir(s.path("c/keys"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "age")
        })
        .count();
    assert_eq!(keys, 4);
}

#[test]
fn a_crash_before_the_final_rename_leaves_no_project() {
    let s = Scratch::new();
    let out = Command::cargo_bin("flakesmith")
        .unwrap()
        .args(["init", "c", "--yes", "--no-git"])
        .current_dir(s.dir.path())
        .env("HOME", s.path("home"))
        .env("FLAKESMITH_FAILPOINT", "create-project:before-rename:abort")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!s.path("c").exists(), "a half-written project was left");
    assert_project_absent_or_whole(&s.path("c"));
}

fn assert_project_absent_or_whole(dir: &Path) {
    if dir.exists() {
        assert!(dir.join("flakesmith.yaml").is_file() && dir.join("flake.nix").is_file());
    }
}

#[test]
fn an_extracted_bootloader_blob_is_copied_into_the_repo() {
    let s = Scratch::new();
    std::fs::write(s.path("u-boot-rockchip.bin"), vec![0xa5; 4096]).unwrap();
    let out = s.flakesmith(&[
        "init",
        "c",
        "--yes",
        "--no-git",
        "--bootloader-blob",
        "u-boot-rockchip.bin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(s.path("c/rk1-bootloader.bin")).unwrap(),
        vec![0xa5; 4096]
    );
    let answers = std::fs::read_to_string(s.path("c/flakesmith.yaml")).unwrap();
    assert!(answers.contains("blob: rk1-bootloader.bin"), "{answers}");
    let flake_files = std::fs::read_to_string(s.path("c/rk1-base.nix")).unwrap()
        + &std::fs::read_to_string(s.path("c/flake.nix")).unwrap();
    assert!(
        flake_files.contains("rk1-bootloader.bin"),
        "the blob is not used"
    );
}

#[test]
fn version_completions_and_man_page() {
    let s = Scratch::new();
    let out = s.flakesmith(&["--version"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("flakesmith {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = s.flakesmith(&["completions", shell]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("add-node"),
            "{shell}"
        );
    }
    let out = s.flakesmith(&["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH flakesmith"));
    // One page documents every subcommand's options, and points to no page that is not installed.
    assert!(
        page.contains(".SH \"FLAKESMITH ADD-NODE\"")
            && page.contains("\\-\\-bmc\\-host")
            && page.contains("\\-\\-restore\\-deleted")
            && !page.contains("(1)\n"),
        "{page}"
    );
}

/// The "Next steps" lines: every `flakesmith build X` names an image the new flake has (never a
/// plain `nix build`, which fails where flakes are not enabled, as on Debian), every script
/// exists in the repo, and each chosen platform (and only those) has its build and deploy step.
fn next_steps(scratch: &Scratch, args: &[&str]) -> (Vec<String>, PathBuf) {
    let out = scratch.flakesmith(args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let steps: Vec<String> = stdout
        .split("Next steps:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no next steps:\n{stdout}"))
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    let repo = scratch.path(args[1]);
    let flake = std::fs::read_to_string(repo.join("flake.nix")).unwrap();
    for step in &steps {
        let command = step.split("  #").next().unwrap().trim();
        assert!(
            !command.starts_with("nix build"),
            "{step}: flakes may be off"
        );
        if let Some(image) = command.strip_prefix("flakesmith build ") {
            assert!(
                flake.contains(&format!("images.{image} = "))
                    || flake.contains(&format!("images.\"{image}\" = "))
                    || flake.contains(&format!("hosts = [\n        \"{image}\"")),
                "{step}: no such image in flake.nix"
            );
        }
        if let Some(script) = command.strip_prefix("./").and_then(|c| c.split(' ').next()) {
            assert!(
                repo.join(script).is_file(),
                "{step}: {script} does not exist"
            );
        }
    }
    (steps, repo)
}

#[test]
fn next_steps_name_each_chosen_platforms_build_and_deploy() {
    let scratch = Scratch::new();
    let (steps, _) = next_steps(
        &scratch,
        &[
            "init",
            "fleet",
            "--yes",
            "--ssh-key",
            KEY,
            "--platform",
            "aws,gcp,generic-x86_64",
            "--raw-efi",
        ],
    );
    let text = steps.join("\n");
    for wanted in [
        "flakesmith build aws ",
        "./deploy/aws-deploy.sh ",
        "flakesmith build gcp ",
        "./deploy/gcp-deploy.sh ",
        "flakesmith build generic-x86_64 ",
        "flakesmith build generic-x86_64-raw-efi ",
        "./build-all-images.sh ",
    ] {
        assert!(text.contains(wanted), "{wanted}:\n{text}");
    }
    for unwanted in ["rk1", "generic-arm64", "post-deploy", "eMMC"] {
        assert!(!text.contains(unwanted), "{unwanted}:\n{text}");
    }

    let (steps, _) = next_steps(&scratch, &["init", "cluster", "--yes", "--ssh-key", KEY]);
    let text = steps.join("\n");
    for wanted in [
        "flakesmith build rk1-node1 ",
        "./deploy/rk1-deploy.sh ",
        "./deploy/post-deploy.sh ",
    ] {
        assert!(text.contains(wanted), "{wanted}:\n{text}");
    }
    assert!(!text.contains("aws"), "{text}");
}

#[test]
fn without_a_terminal_options_with_safe_defaults_are_not_missing() {
    // --raw-efi and --open-exporter-port can only turn something on, so their questions cannot
    // be required without a terminal; the defaults stand.
    let s = Scratch::new();
    let out = s.flakesmith(&["init", "c", "--platform", "aws,generic-x86_64"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--ssh-key"), "{err}");
    for optional in [
        "--raw-efi",
        "--aws-image-format",
        "--temporary-password-hash",
        "--no-node-exporter",
    ] {
        assert!(!err.contains(optional), "{optional}: {err}");
    }
}

#[test]
fn generated_files_and_help_describe_the_modes_without_an_unseen_guide() {
    // A reader has the repository and flakesmith's help, not the guide flakesmith grew from:
    // "Option 1/2" and "the guide" mean nothing to them.
    let help = Command::cargo_bin("flakesmith")
        .unwrap()
        .args(["init", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut texts = vec![("flakesmith init --help".to_owned(), help)];
    for (case, tree) in crate::support::all_variants() {
        for (path, file) in tree.iter() {
            if let Some(text) = file.as_text() {
                texts.push((format!("{case}: {path}"), text.to_owned()));
            }
        }
    }
    for (name, text) in texts {
        for phrase in ["Option 1", "Option 2", "the guide", "guide's"] {
            assert!(!text.contains(phrase), "{name} speaks of {phrase:?}");
        }
    }
}
