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
        Command::from_std(crate::support::flakesmith_command())
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
    // Node flags without a platform that has Turing Pi 2 nodes: refused, not dropped.
    for (flag, value) in [
        ("--nodes", "3"),
        ("--hosts", "a,b"),
        ("--host-prefix", "n"),
        ("--bmc-host", "tp.lan"),
    ] {
        assert_refused(
            &s,
            &[
                "init",
                "c",
                "--yes",
                "--layout",
                "multi-cloud",
                "--platform",
                "aws,orangepi-5-plus",
                flag,
                value,
            ],
            &format!("{flag}: only used with the rk1 platform"),
        );
    }
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
    let out = crate::support::flakesmith_command()
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
fn an_extracted_bootloader_blob_is_copied_into_the_repo() {
    let s = Scratch::new();
    let payloads = crate::inject::fixtures::rk35_payloads(s.dir.path());
    let blob = std::fs::read(&payloads.combined).unwrap();
    let out = s.flakesmith(&[
        "init",
        "c",
        "--yes",
        "--no-git",
        "--bootloader-blob",
        payloads.combined.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(s.path("c/rk1-bootloader.bin")).unwrap(), blob);
    let answers = std::fs::read_to_string(s.path("c/flakesmith.yaml")).unwrap();
    assert!(answers.contains("blob: rk1-bootloader.bin"), "{answers}");
    let flake_files = std::fs::read_to_string(s.path("c/rk1-base.nix")).unwrap()
        + &std::fs::read_to_string(s.path("c/flake.nix")).unwrap();
    assert!(
        flake_files.contains("rk1-bootloader.bin"),
        "the blob is not used"
    );
    let out = s.flakesmith(&["check", "-C", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Only a real RK1 loader is taken as the bootloader blob, checked by the code rk-inject runs;
/// anything else (a file named by mistake may be a secret) is refused naming the flag or field,
/// and not one line of it is echoed.
#[test]
fn the_bootloader_blob_must_be_an_rk1_loader_and_is_never_echoed() {
    use crate::inject::fixtures;
    let s = Scratch::new();
    let random = s.path("random.bin");
    std::fs::write(&random, fixtures::bytes(7, 65_536)).unwrap();
    let key = s.path("id_ed25519");
    fixtures::run(
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "secret-key-comment",
                "-f",
            ])
            .arg(&key),
    );
    let shadow = s.path("shadow");
    let shadow_text = "root:$6$saltsalt$Q9y6P8pVvJ8.hashhashhash:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n";
    std::fs::write(&shadow, shadow_text).unwrap();
    let payloads = fixtures::rk35_payloads(s.dir.path());
    let secrets: Vec<String> = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .chain(shadow_text.lines())
        .map(str::to_owned)
        .collect();
    let refused = |args: &[&str], field: &str, why: &str| {
        assert_refused(&s, args, field);
        let err = stderr(&s.flakesmith(args));
        assert!(err.contains(why), "{args:?}: {err}");
        for line in &secrets {
            assert!(!err.contains(line.as_str()), "echoed {line:?}: {err}");
        }
        assert!(!err.contains("PRIVATE") && !err.contains("root:"), "{err}");
    };
    let flag = |path: &std::path::Path| {
        vec![
            "init".to_owned(),
            "c".into(),
            "--yes".into(),
            "--bootloader-blob".into(),
            path.to_str().unwrap().into(),
        ]
    };
    for (path, why) in [
        (&random, "is not an RK1 loader: no RKNS header at byte 0"),
        (&key, "is not an RK1 loader: no RKNS header at byte 0"),
        (&shadow, "is not an RK1 loader: no RKNS header at byte 0"),
        // A real idbloader alone: no U-Boot at sector 16384.
        (&payloads.idbloader, "is not a whole RK1 loader"),
    ] {
        let args = flag(path);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&args, "--bootloader-blob: ", why);
    }
    // A loader whose stage no longer matches its header's SHA-256 (a damaged download).
    let mut damaged = std::fs::read(&payloads.combined).unwrap();
    damaged[4096] ^= 0xff;
    std::fs::write(s.path("damaged.bin"), &damaged).unwrap();
    let args = flag(&s.path("damaged.bin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&args, "--bootloader-blob: ", "SHA-256");

    // The same from an answers file, named by its file and field.
    std::fs::write(
        s.path("answers.yaml"),
        format!("schema: 1\nbootloader:\n  blob: {}\n", shadow.display()),
    )
    .unwrap();
    refused(
        &["init", "c", "--answers", "answers.yaml"],
        "answers.yaml: bootloader.blob: ",
        "no RKNS header",
    );

    // The in-repository name, where there is no repository yet: nothing to copy.
    std::fs::write(
        s.path("in-repo.yaml"),
        "schema: 1\nbootloader:\n  blob: rk1-bootloader.bin\n",
    )
    .unwrap();
    assert_refused(
        &s,
        &["init", "c", "--answers", "in-repo.yaml"],
        "in-repo.yaml: bootloader.blob: rk1-bootloader.bin is the copy in a repository",
    );

    // In a repository: only the copy init makes is read, and `check` checks it.
    let out = s.flakesmith(&["init", "r", "--yes", "--no-git"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answers = std::fs::read_to_string(s.path("r/flakesmith.yaml")).unwrap();
    let pointed = answers.replace("  blob: null", &format!("  blob: {}", shadow.display()));
    std::fs::write(s.path("r/flakesmith.yaml"), &pointed).unwrap();
    let out = s.flakesmith(&["update", "-C", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("flakesmith.yaml: bootloader.blob: "),
        "{}",
        stderr(&out)
    );
    let blob_answers = answers.replace("  blob: null", "  blob: rk1-bootloader.bin");
    std::fs::write(s.path("r/flakesmith.yaml"), blob_answers).unwrap();
    std::fs::copy(&key, s.path("r/rk1-bootloader.bin")).unwrap();
    let out = s.flakesmith(&["check", "-C", "r"]);
    let found = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        found.contains("rk1-bootloader.bin: is not an RK1 loader: no RKNS header at byte 0 ("),
        "{found}"
    );
    for line in &secrets {
        assert!(!found.contains(line.as_str()), "echoed {line:?}: {found}");
    }
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
                    || flake.contains(&format!("hosts = {{\n        \"{image}\" = ")),
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
fn node_counts_are_held_to_the_prompts_range() {
    let s = Scratch::new();
    assert_refused(
        &s,
        &["init", "c", "--yes", "--nodes", "1025"],
        "--nodes: 1025 nodes; a repository holds 1 to 1024",
    );
    assert_refused(
        &s,
        &["init", "c", "--yes", "--nodes", "0"],
        "--nodes: 0 nodes",
    );
    let hosts: Vec<String> = (1..=1025).map(|i| format!("n{i}")).collect();
    assert_refused(
        &s,
        &["init", "c", "--yes", "--hosts", &hosts.join(",")],
        "--hosts: 1025 nodes; a repository holds 1 to 1024",
    );
    let out = s.flakesmith(&["init", "c", "--yes", "--nodes", "1024", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn multi_cloud_with_yes_takes_every_platform_as_the_prompt_does() {
    let s = Scratch::new();
    let out = s.flakesmith(&[
        "init",
        "c",
        "--yes",
        "--no-git",
        "--layout",
        "multi-cloud",
        "--ssh-key",
        KEY,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answers = std::fs::read_to_string(s.path("c/flakesmith.yaml")).unwrap();
    assert!(
        answers.contains("platforms:\n- aws\n- gcp\n- rk1\n- generic-arm64\n- generic-x86_64\n"),
        "{answers}"
    );
    // A particular board (an Orange Pi) is opted into, not built for everyone.
    assert!(!answers.contains("orangepi"), "{answers}");
}

#[test]
fn scripted_init_can_answer_none_for_dots_and_the_bootloader_blob() {
    let s = Scratch::new();
    // No terminal and no --yes: every question needs its answer on the command line.
    let out = s.flakesmith(&[
        "init",
        "c",
        "--no-git",
        "--layout",
        "rk1-cluster",
        "--nodes",
        "1",
        "--bmc-host",
        "tp.lan",
        "--admin-user",
        "ops",
        "--ssh-key",
        KEY,
        "--secrets",
        "sops",
        "--nixpkgs-branch",
        "nixos-unstable",
        "--no-bootloader-blob",
        "--no-dots",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answers = std::fs::read_to_string(s.path("c/flakesmith.yaml")).unwrap();
    assert!(
        answers.contains("dots: null") && answers.contains("bootloader:\n  blob: null"),
        "{answers}"
    );
    // Without them, the refusal names both ways of answering.
    let out = s.flakesmith(&["init", "d", "--nodes", "1"]);
    let err = stderr(&out);
    assert!(
        err.contains("--dots (or --no-dots)")
            && err.contains("--bootloader-blob (or --no-bootloader-blob)"),
        "{err}"
    );
    let out = s.flakesmith(&["init", "d", "--yes", "--dots", "github:a/b", "--no-dots"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Private keys of every kind flakesmith recognises, made by the real tools, as (what the
/// message must call it, file name, the file's text).
fn real_private_keys(s: &Scratch) -> Vec<(&'static str, String, String)> {
    let mut keys = Vec::new();
    let age = s.path("node1.age");
    crate::support::run_ok(std::process::Command::new("age-keygen").arg("-o").arg(&age));
    keys.push(("an age private key", "node1.age".to_owned(), read(&age)));
    let ssh = s.path("id_ed25519");
    crate::support::run_ok(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
            .arg(&ssh),
    );
    keys.push((
        "an OpenSSH private key",
        "id_ed25519".to_owned(),
        read(&ssh),
    ));
    let pem = s.path("rsa.pem");
    crate::support::run_ok(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&pem),
    );
    keys.push(("a PEM private key", "rsa.pem".to_owned(), read(&pem)));
    keys
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Fails if any 12 characters of the secret part of `key` (its lines other than comments and
/// BEGIN/END markers, prefixes stripped) appear in `output`.
pub(crate) fn assert_no_secret(output: &str, key: &str, what: &str) {
    for line in key
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
    {
        let body = line.trim_start_matches("AGE-SECRET-KEY-1");
        let chars: Vec<char> = body.chars().collect();
        for window in chars.windows(12) {
            let piece: String = window.iter().collect();
            assert!(
                !output.contains(&piece) && !output.contains(&piece.to_lowercase()),
                "{what}: secret material '{piece}' was echoed:\n{output}"
            );
        }
    }
}

/// Refused (exit 2, one line naming `field`), nothing written, and no part of `key` echoed.
fn assert_refused_unechoed(s: &Scratch, args: &[&str], field: &str, key: &str) {
    let before = s.listing();
    let out = s.flakesmith(args);
    let err = stderr(&out);
    let what = format!("{:?}", &args[..args.len().min(6)]);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line: {err}");
    assert!(err.contains(field), "{what} should name {field}: {err}");
    assert_no_secret(&err, key, &what);
    assert_no_secret(&String::from_utf8_lossy(&out.stdout), key, &what);
    assert_eq!(s.listing(), before, "{what} wrote something");
}

#[test]
fn a_private_key_given_for_a_public_one_is_named_never_echoed() {
    let s = Scratch::new();
    for (kind, file, text) in real_private_keys(&s) {
        let secret_line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-") || l.starts_with("-----BEGIN"))
            .unwrap();
        let one_line: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        // A file of it, for --ssh-key and --deployment-key: named by its path and kind.
        for flag in [
            &["--ssh-key"][..],
            &["--secrets", "deployment-keys", "--deployment-key"],
        ] {
            let args: Vec<&str> = ["init", "c", "--yes"]
                .iter()
                .copied()
                .chain(flag.iter().copied())
                .chain([file.as_str()])
                .collect();
            assert_refused_unechoed(&s, &args, &format!("'{file}' holds {kind}"), &text);
        }
        // Its text (a line, the file joined into one line, the whole file) as the value of
        // every flag that takes a key or any other value.
        for value in [secret_line, one_line.as_str(), text.as_str()] {
            for flag in ["--ssh-key", "--age-recipient"] {
                assert_refused_unechoed(
                    &s,
                    &["init", "c", "--yes", &format!("{flag}={value}")],
                    &format!("{flag}: this is {kind}"),
                    &text,
                );
            }
            for flag in [
                "--name",
                "--admin-user",
                "--dots",
                "--nixpkgs-branch",
                "--hosts",
                "--platform",
            ] {
                let arg = format!("{flag}={value}");
                assert_refused_unechoed(&s, &["init", "c", "--yes", &arg], flag, &text);
            }
            // clap refuses this one itself, with its usual three lines.
            let out = s.flakesmith(&["init", "c", "--yes", &format!("--layout={value}")]);
            assert_eq!(out.status.code(), Some(2));
            if value == secret_line {
                let err = stderr(&out);
                assert!(err.contains(&format!("[{kind}, not shown]")), "{err}");
            }
            assert_no_secret(&stderr(&out), &text, "--layout");
        }
        // And in an answers file: as each key field, as any other field, as a value of the
        // wrong type (serde's message quotes it) and as a key (serde names it).
        let quoted_key = serde_json::to_string(&text).unwrap();
        for (yaml, field) in [
            (
                format!("ssh-keys: [{quoted_key}]\n"),
                "ssh-keys[0]: this is",
            ),
            (
                format!("secrets: {{mode: deployment-keys, deployment-key: {quoted_key}}}\n"),
                "secrets.deployment-key: this is",
            ),
            (
                format!("secrets: {{admin-age-recipients: [{quoted_key}]}}\n"),
                "secrets.admin-age-recipients[0]: this is",
            ),
            (format!("name: {quoted_key}\n"), "a.yaml: name: ["),
            (
                format!("nodes: [{{host: {quoted_key}, board: board1, slot: 1}}]\n"),
                "nodes[0].host",
            ),
            (
                format!("monitoring: {{node-exporter: {quoted_key}}}\n"),
                "monitoring",
            ),
            (format!("layout: {quoted_key}\n"), "layout"),
            (format!("{quoted_key}: 1\n"), "a.yaml: "),
        ] {
            std::fs::write(s.path("a.yaml"), &yaml).unwrap();
            assert_refused_unechoed(&s, &["init", "c", "--answers", "a.yaml"], field, &text);
        }
    }
}

#[test]
fn a_huge_or_control_laden_value_is_echoed_short_and_escaped() {
    let s = Scratch::new();
    // argv takes at most 128 KiB per argument; the answers file takes any length.
    let long = "x".repeat(120_000);
    let huge = "y".repeat(5 << 20);
    for args in [
        vec!["init", "c", "--yes", "--name", long.as_str()],
        vec!["init", "c", "--yes", "--layout", long.as_str()],
        vec!["init", "c", "--yes", "--age-recipient", long.as_str()],
        vec!["init", "c", "--yes", "--ssh-key", long.as_str()],
    ] {
        let out = s.flakesmith(&args);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            out.stderr.len() < 1000,
            "{} bytes: {}",
            out.stderr.len(),
            stderr(&out)
        );
        assert!(stderr(&out).contains("xxxxxx…"), "{}", stderr(&out));
    }
    for yaml in [
        format!("name: {huge}\n"),
        format!("layout: {huge}\n"),
        format!("monitoring: {{node-exporter: {huge}}}\n"),
        format!("{huge}: 1\n"),
    ] {
        std::fs::write(s.path("a.yaml"), &yaml).unwrap();
        let out = s.flakesmith(&["init", "c", "--answers", "a.yaml"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            out.stderr.len() < 2000,
            "{} bytes of stderr",
            out.stderr.len()
        );
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            stderr(&out)
        );
    }
    // A value cannot clear the terminal or forge a second line of output.
    let out = s.flakesmith(&["init", "c", "--yes", "--name", "a\nerror: fake\u{1b}[2J"]);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains('\u{1b}') && err.contains(r"\n"), "{err}");
}

#[test]
fn yes_without_an_ssh_key_warns_that_nobody_can_log_in() {
    let s = Scratch::new();
    // HOME has no ~/.ssh: no key is found.
    let out = s.flakesmith(&["init", "c", "--yes", "--no-git"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: no SSH key for the admin (none given with --ssh-key, none found in ~/.ssh): nobody can log in to these machines over SSH; add your public key under ssh-keys in c/flakesmith.yaml, then run `flakesmith update`"),
        "{}",
        stderr(&out)
    );
    let out = s.flakesmith(&["init", "d", "--yes", "--no-git", "--ssh-key", KEY]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn help_shows_one_default_for_the_repository() {
    let s = Scratch::new();
    for command in [
        "update",
        "diff",
        "check",
        "add-node",
        "remove-node",
        "build",
    ] {
        let out = s.flakesmith(&[command, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            help.matches("[default: the current directory]").count(),
            1,
            "{command}: {help}"
        );
        assert!(!help.contains("[default: .]"), "{command}: {help}");
        assert!(
            !help.contains("(default: the current directory)"),
            "{command}: {help}"
        );
    }
}

#[test]
fn no_git_warns_before_the_next_steps_run_nix() {
    let s = Scratch::new();
    let out = s.flakesmith(&["init", "c", "--yes", "--no-git", "--ssh-key", KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    // The next steps run nix (through the build script), so the warning comes with them.
    assert!(stdout.contains("./build-all-images.sh"), "{stdout}");
    assert!(
        stdout.contains("run `git init && git add --all` before any nix command"),
        "{stdout}"
    );
    // With git, no such line.
    let out = s.flakesmith(&["init", "d", "--yes", "--ssh-key", KEY]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("before any nix command"));
}

#[test]
fn generated_files_and_help_describe_the_modes_without_an_unseen_guide() {
    // A reader has the repository and flakesmith's help, not the guide flakesmith grew from:
    // "Option 1/2" and "the guide" mean nothing to them.
    let help = crate::support::flakesmith_command()
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

/// The node identities are git-ignored on purpose: init stages the generated files and says
/// nothing about the identities it leaves out of git.
#[test]
fn init_with_git_warns_about_nothing_it_generated() {
    let s = Scratch::new();
    let out = s.flakesmith(&["init", "c", "--yes", "--ssh-key", KEY]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("git: initialised a repository"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
