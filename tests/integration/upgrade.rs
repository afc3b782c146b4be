//! Repositories made by an earlier flakesmith, brought up to date by this one.
//!
//! tests/fixtures/repos-0.1.0/<case>/ is what `flakesmith init --answers
//! snapshots/<case>/answers.yaml` of version 0.1.0 wrote (the base record under .flakesmith/
//! included). Its git-ignored keys/ (the node identities init made; test keys, nothing else holds
//! them) is kept beside it as <case>.keys/ (its .gitignore as `gitignore`), so that no .gitignore
//! hides it from this repository. The vendored rk-inject/ sources, the same in every case and in
//! each base record, are kept once as rk-inject.shared/. The user's repository is that tree
//! committed to git, keys/ in place (0600), with hand edits. `flakesmith update` must bring it to
//! exactly what this version's `init` writes for the same answers and node identities, which is
//! what snapshots/<case>/ shows, with the hand edits kept and flakesmith.yaml left as it was.

use std::{collections::BTreeMap, path::Path, process::Command};

use crate::support::{expect, flakesmith, text, tree_of};

/// Files a user edits by hand in each layout, and the line they add.
const EDITS: &[(&str, &str)] = &[
    ("common.nix", "  # site: keep the journal small"),
    ("common/base.nix", "  # site: keep the journal small"),
    ("nodes/rk1-node1.nix", "  # site: rack 2, left"),
];

/// The file a later release may change in a generated repo and an update merges, for which the
/// user's line is expected after the last line of this version's text.
fn with_edit(fresh: &[u8], line: &str) -> Vec<u8> {
    let fresh = text(fresh);
    let body = fresh
        .strip_suffix("}\n")
        .expect("a module ends with its closing brace");
    format!("{body}{line}\n}}\n").into_bytes()
}

fn edit(repo: &Path, path: &str, line: &str) {
    let file = repo.join(path);
    let old = std::fs::read(&file).unwrap();
    std::fs::write(&file, with_edit(&old, line)).unwrap();
}

fn git(repo: &Path, args: &[&str]) -> String {
    crate::support::run_ok(
        Command::new("git")
            .args([
                "-c",
                "user.name=Admin",
                "-c",
                "user.email=admin@example.org",
            ])
            .args(args)
            .current_dir(repo),
    )
}

/// The files of a repo as a user sees them: without .git, and without keys/ (fresh init below
/// reuses the repo's; `update` must not touch them, which the journey tests check).
fn files(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    tree_of(root)
        .into_iter()
        .filter(|(path, _)| {
            !path.is_empty()
                && path != ".git"
                && !path.starts_with(".git/")
                && path != "keys"
                && !path.starts_with("keys/")
        })
        .collect()
}

#[test]
fn update_brings_repos_of_0_1_0_to_this_versions_output_and_keeps_hand_edits() {
    let fixtures = crate::support::fixtures().join("repos-0.1.0");
    let mut cases: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // <case>.keys and rk-inject.shared go with the cases.
        .filter(|name| !name.contains('.'))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 3,
        "fixtures missing under {}",
        fixtures.display()
    );
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        crate::support::run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(fixtures.join(&case))
                .arg(&repo),
        );
        // The vendored injector 0.1.0 wrote into every repo and its base record, kept once.
        for place in ["rk-inject", ".flakesmith/base/rk-inject"] {
            crate::support::run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(fixtures.join("rk-inject.shared"))
                    .arg(repo.join(place)),
            );
        }
        let keys = fixtures.join(format!("{case}.keys"));
        if keys.exists() {
            crate::support::run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(&keys)
                    .arg(repo.join("keys")),
            );
            crate::support::run_ok(
                Command::new("chmod")
                    .args(["-R", "go-rwx"])
                    .arg(repo.join("keys")),
            );
            // Kept as `gitignore` in the fixture: its `*` would hide the folder from this repo.
            std::fs::rename(repo.join("keys/gitignore"), repo.join("keys/.gitignore")).unwrap();
        }
        let answers_before = std::fs::read(repo.join("flakesmith.yaml")).unwrap();
        git(&repo, &["init", "--quiet"]);
        git(&repo, &["add", "--all"]);
        git(
            &repo,
            &["commit", "--quiet", "-m", "made by flakesmith 0.1.0"],
        );
        let edited: Vec<(&str, &str)> = EDITS
            .iter()
            .copied()
            .filter(|(path, _)| repo.join(path).exists())
            .collect();
        assert!(!edited.is_empty(), "{case}: no hand-edited file exists");
        for (path, line) in &edited {
            edit(&repo, path, line);
        }

        let out = flakesmith(&repo, &["update"]);
        expect(&out, 0);
        assert!(
            !text(&out.stdout).contains("conflict"),
            "{case}: an update of an untouched generated region conflicted:\n{}",
            text(&out.stdout)
        );

        // What this version writes for the same answers and node identities.
        let fresh = tmp.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        if repo.join("keys").exists() {
            crate::support::run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(repo.join("keys"))
                    .arg(&fresh),
            );
        }
        let answers = repo.join("flakesmith.yaml");
        expect(
            &flakesmith(
                tmp.path(),
                &[
                    "init",
                    "fresh",
                    "--answers",
                    answers.to_str().unwrap(),
                    "--force",
                    "--no-git",
                ],
            ),
            0,
        );

        let updated = files(&repo);
        let mut expected = files(&fresh);
        // The user's answers file is theirs: update reads it and leaves it as it was (init
        // writes the state version it pinned, which the old file did not name).
        expected.get_mut("flakesmith.yaml").unwrap().1 = answers_before.clone();
        for (path, line) in &edited {
            let file = expected.get_mut(*path).unwrap();
            file.1 = with_edit(&file.1, line);
        }
        let differing: Vec<String> = expected
            .keys()
            .chain(updated.keys())
            .filter(|p| expected.get(*p) != updated.get(*p))
            .map(|p| match (expected.get(p), updated.get(p)) {
                (Some(_), None) => format!("{p} (missing after update)"),
                (None, Some(_)) => format!("{p} (left over after update)"),
                (Some(e), Some(u)) if e.0 != u.0 => format!("{p} (mode {:o}, not {:o})", u.0, e.0),
                _ => format!("{p} (contents)"),
            })
            .collect();
        assert!(
            differing.is_empty(),
            "{case}: after update the repo is not what this version generates, hand edits kept: {differing:?}"
        );

        // And that is the golden output: where the node identities do not show, the files are
        // snapshots/<case>/tree byte for byte (the snapshot test checks the rest of the render).
        let snapshot = crate::support::repo_root()
            .join("snapshots")
            .join(&case)
            .join("tree");
        for (path, (_, bytes)) in &updated {
            let golden = snapshot.join(path);
            if path.starts_with(".flakesmith/")
                || path.starts_with("rk-inject/src/rockchip/")
                || !golden.is_file()
                || path == ".sops.yaml"
                || path == "flakesmith.yaml"
                || edited.iter().any(|(p, _)| p == path)
            {
                continue;
            }
            assert!(
                std::fs::read(&golden).unwrap() == *bytes,
                "{case}: {path} after update differs from snapshots/{case}/tree/{path}"
            );
        }

        // Git knows every file the flake needs, and the hand edits are still unstaged changes.
        let status = git(&repo, &["status", "--porcelain", "--untracked-files=all"]);
        assert!(
            !status.lines().any(|l| l.starts_with("??")),
            "{case}: update left files git does not know:\n{status}"
        );
    }
}
