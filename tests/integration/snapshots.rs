//! Golden output: each snapshots/<case>/answers.yaml renders exactly snapshots/<case>/tree/.
//! A template change shows up here as a plain diff of generated files;
//! `UPDATE_SNAPSHOTS=1 cargo test --test integration snapshot` rewrites the trees.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flakesmith::render::Tree;
use similar::TextDiff;

use crate::support::{snapshot_cases, SnapshotCase};

#[test]
fn snapshots_match_the_rendered_trees() {
    let update = crate::support::updating_snapshots();
    let mut report = String::new();
    for case in snapshot_cases() {
        if update {
            rewrite(&case);
        } else {
            report.push_str(&compare(&case));
        }
    }
    assert!(
        report.is_empty(),
        "rendered output differs from snapshots/ (if intended, run \
         `UPDATE_SNAPSHOTS=1 cargo test --test integration snapshot` and commit the diff):\n\n{report}"
    );
}

/// path → (contents, executable) of a committed tree.
fn read_tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut files = BTreeMap::new();
    if !dir.exists() {
        return files;
    }
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(dir).unwrap();
            let relative = relative.to_string_lossy().replace('\\', "/");
            let executable = entry.metadata().unwrap().permissions().mode() & 0o111 != 0;
            files.insert(relative, (fs_err::read(entry.path()).unwrap(), executable));
        }
    }
    files
}

fn compare(case: &SnapshotCase) -> String {
    compare_tree(&case.name, &case.tree_dir(), &case.render())
}

/// A report of every difference between the tree committed in `dir` and `rendered`; empty when
/// they are the same. `name` prefixes each line.
pub fn compare_tree(name: &str, dir: &Path, rendered: &Tree) -> String {
    let committed = read_tree(dir);
    let snapshot_dir = dir
        .strip_prefix(crate::support::repo_root())
        .unwrap_or(dir)
        .display()
        .to_string();
    let mut report = String::new();
    for (path, file) in rendered.iter() {
        let Some((old, old_executable)) = committed.get(path) else {
            report.push_str(&format!("{name}: missing from the snapshot: {path}\n"));
            continue;
        };
        if *old != file.contents {
            let old = String::from_utf8_lossy(old);
            let new = String::from_utf8_lossy(&file.contents);
            let diff = TextDiff::from_lines(old.as_ref(), new.as_ref());
            let a = format!("{snapshot_dir}/{path}");
            let b = format!("rendered/{name}/{path}");
            report.push_str(&diff.unified_diff().header(&a, &b).to_string());
        }
        if *old_executable != file.executable {
            report.push_str(&format!(
                "{name}: {path} is {}executable in the snapshot, {}executable when rendered\n",
                if *old_executable { "" } else { "not " },
                if file.executable { "" } else { "not " },
            ));
        }
    }
    for path in committed.keys().filter(|p| rendered.get(p).is_none()) {
        report.push_str(&format!(
            "{name}: extra file in the snapshot (no longer rendered): {path}\n"
        ));
    }
    report
}

fn rewrite(case: &SnapshotCase) {
    write_tree(&case.tree_dir(), &case.render());
}

/// Replaces `dir` with exactly `tree`.
pub fn write_tree(dir: &Path, tree: &Tree) {
    if dir.exists() {
        fs_err::remove_dir_all(dir).unwrap();
    }
    for (path, file) in tree.iter() {
        let target = dir.join(path);
        fs_err::create_dir_all(target.parent().unwrap()).unwrap();
        fs_err::write(&target, &file.contents).unwrap();
        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(file.mode())).unwrap();
    }
}

#[test]
fn a_case_directory_without_answers_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    fs_err::create_dir(root.path().join("a-case")).unwrap();
    fs_err::copy(
        crate::support::repo_root().join("snapshots/rk1-default/answers.yaml"),
        root.path().join("a-case/answers.yaml"),
    )
    .unwrap();
    assert_eq!(
        crate::support::read_snapshot_cases(root.path())
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["a-case"]
    );
    fs_err::create_dir_all(root.path().join("forgotten/tree")).unwrap();
    let error = crate::support::read_snapshot_cases(root.path())
        .err()
        .unwrap();
    assert!(
        error.ends_with("/forgotten: not a snapshot case (a directory with answers.yaml); add answers.yaml or remove it"),
        "{error}"
    );
}

/// .ci/run with stand-ins for what it installs and runs (apt-get, npm, cargo, pip, mdbook: the real
/// ones would take minutes and the network); git is real. The stand-in cargo records whether it
/// saw UPDATE_SNAPSHOTS, and changes the checkout as `$CARGO_LEAVES` says, as an updating or
/// careless test run would.
#[test]
fn ci_run_compares_golden_files_and_fails_on_a_changed_work_tree() {
    let run = |leaves: &str| {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        fs_err::create_dir_all(repo.join(".ci")).unwrap();
        fs_err::copy(
            crate::support::repo_root().join(".ci/run"),
            repo.join(".ci/run"),
        )
        .unwrap();
        // .ci/run runs the README's test command as written.
        fs_err::copy(
            crate::support::repo_root().join("README.md"),
            repo.join("README.md"),
        )
        .unwrap();
        fs_err::write(repo.join("tracked.md"), "as committed\n").unwrap();
        let git = |args: &[&str]| {
            crate::support::run_ok(
                std::process::Command::new("git")
                    .current_dir(&repo)
                    .args(args),
            )
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example",
            "commit",
            "-qm",
            "c",
        ]);
        let bin = dir.path().join("bin");
        fs_err::create_dir(&bin).unwrap();
        let stub = |name: &str, body: &str| {
            let path = bin.join(name);
            fs_err::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // sudo would reset PATH to the real apt-get.
        stub("sudo", "exec \"$@\"");
        stub("apt-get", "exit 0");
        stub("npm", "exit 0");
        stub("python3", "exit 0");
        stub("mdbook", "exit 0");
        let log = dir.path().join("cargo.log");
        stub(
            "cargo",
            &format!(
                "echo \"$* UPDATE_SNAPSHOTS=${{UPDATE_SNAPSHOTS-unset}}\" >> '{}'\n\
                 case \"$CARGO_LEAVES\" in\n\
                 rewritten) echo rewritten > tracked.md ;;\n\
                 new) echo new > new-snapshot.txt ;;\n\
                 esac",
                log.display()
            ),
        );
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = std::process::Command::new("bash")
            .arg(repo.join(".ci/run"))
            .env("PATH", path)
            .env("UPDATE_SNAPSHOTS", "1")
            .env("CARGO_LEAVES", leaves)
            .output()
            .unwrap();
        let log = fs_err::read_to_string(&log).unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            log,
        )
    };

    let (status, stderr, log) = run("clean");
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(log, "test --locked UPDATE_SNAPSHOTS=unset\n");

    let (status, stderr, _) = run("rewritten");
    assert_eq!(status, Some(1));
    assert_eq!(
        stderr,
        ".ci/run: the tests changed the work tree:\n M tracked.md\n"
    );

    let (status, stderr, _) = run("new");
    assert_eq!(status, Some(1));
    assert_eq!(
        stderr,
        ".ci/run: the tests changed the work tree:\n?? new-snapshot.txt\n"
    );
}
