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
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
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
