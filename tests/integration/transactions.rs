//! Transactions and the file system against a hostile repository or an unlucky user: a journal
//! from git, planted symbolic links, a crash followed by the user's own repairs, files that
//! cannot be changed, few file descriptors. Each test runs the real binary on a real repo (and
//! real git) and checks the disk inside and outside the repo afterwards.

use std::{path::Path, process::Command};

use super::grow::{assert_same_tree, expect, text, tree_of, TestRepo};

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A directory outside the repo, beside it, with files an attack would reach.
fn outside_of(repo: &TestRepo) -> std::path::PathBuf {
    let dir = repo.dir.parent().unwrap().join("outside");
    std::fs::create_dir_all(dir.join("victim/sub")).unwrap();
    std::fs::write(dir.join("victim/file"), "the user's\n").unwrap();
    std::fs::write(dir.join("victim/sub/deep"), "the user's too\n").unwrap();
    std::fs::write(dir.join("target.nix"), "# someone else's file\n").unwrap();
    dir
}

#[track_caller]
fn one_line(stderr: &[u8]) -> String {
    let stderr = text(stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

/// Item 1 of issue 12: a journal committed to git (a pull request is enough) names absolute
/// paths and `..` paths outside the repo. `diff` and `check`, which CI runs on pull requests,
/// refuse it with one line and exit 2, and delete, move or create nothing, inside the repo or
/// out. The same journal untracked, but not written by this machine's flakesmith, is refused too.
#[test]
fn a_journal_from_git_is_refused_and_nothing_is_touched() {
    let repo = TestRepo::init(&[]);
    let outside = outside_of(&repo);
    let victim = outside.join("victim");
    // In the form the journal had before it was checked (so that this test shows what the old
    // code did with it): remove a file, then remove whole directories.
    let journal = serde_json::json!({
        "created_dirs": [victim.to_str().unwrap(), "../outside/victim/sub"],
        "created_files": ["../outside/target.nix"],
        "ops": [{"dest": victim.join("file").to_str().unwrap(), "tmp": null, "backup": null}],
    });
    std::fs::create_dir_all(repo.dir.join(".flakesmith/txn")).unwrap();
    repo.write(".flakesmith/txn/journal", &journal.to_string());
    git(&repo.dir, &["init", "--quiet"]);
    git(&repo.dir, &["add", "-A"]);
    // The generated .gitignore keeps it out; the attacker adds it anyway.
    git(&repo.dir, &["add", "--force", ".flakesmith/txn/journal"]);
    git(&repo.dir, &["commit", "--quiet", "-m", "hostile"]);
    let before = repo.snapshot();
    let outside_before = tree_of(&outside);

    for command in ["diff", "check", "update", "add-node"] {
        let out = repo.run(&[command]);
        expect(&out, 2);
        let stderr = one_line(&out.stderr);
        assert!(stderr.contains("tracked by git"), "{command}: {stderr}");
        assert_same_tree(&before, &repo.snapshot());
        assert_same_tree(&outside_before, &tree_of(&outside));
    }

    // Untracked, it still is no journal this machine wrote.
    git(
        &repo.dir,
        &["rm", "--quiet", "--cached", ".flakesmith/txn/journal"],
    );
    let before = repo.snapshot();
    let out = repo.run(&["diff"]);
    expect(&out, 2);
    let stderr = one_line(&out.stderr);
    assert!(
        stderr.contains("not written by flakesmith on this machine"),
        "{stderr}"
    );
    assert_same_tree(&before, &repo.snapshot());
    assert_same_tree(&outside_before, &tree_of(&outside));

    // As the message says: once it is gone, the repo works again.
    std::fs::remove_dir_all(repo.dir.join(".flakesmith/txn")).unwrap();
    expect(&repo.run(&["diff"]), 0);
}

/// Item 3 of issue 12: a link planted where a temporary file, a generated file or a directory
/// above one would be. add-node either works without following it or refuses (exit 2, one line,
/// nothing changed); the file outside the repo is never written or chmodded, and no generated
/// file ends as a link.
#[test]
fn planted_links_are_never_written_through() {
    use std::os::unix::fs::symlink;

    // The old fixed temporary name: names are random now, so the link is just a stray file.
    let repo = TestRepo::init(&[]);
    let outside = outside_of(&repo);
    let outside_before = tree_of(&outside);
    symlink(
        outside.join("target.nix"),
        repo.dir.join("nodes/.rk1-node5.nix.flakesmith-tmp"),
    )
    .unwrap();
    expect(&repo.run(&["add-node", "--bmc-host", "b.lan"]), 0);
    let made = repo.dir.join("nodes/rk1-node5.nix");
    assert!(made.symlink_metadata().unwrap().file_type().is_file());
    assert_same_tree(&outside_before, &tree_of(&outside));

    // A generated file add-node changes, itself a link out of the repo: refused, not read (its
    // target would be merged into the file), not replaced.
    for (what, plant) in [
        ("a generated file", "flake.nix"),
        ("a directory above one", "deploy"),
        ("the answers file", "flakesmith.yaml"),
    ] {
        let repo = TestRepo::init(&[]);
        let outside = outside_of(&repo);
        let target = if plant == "deploy" {
            let copy = outside.join("deploy");
            std::fs::rename(repo.dir.join("deploy"), &copy).unwrap();
            copy
        } else {
            let copy = outside.join(plant);
            std::fs::rename(repo.dir.join(plant), &copy).unwrap();
            copy
        };
        symlink(&target, repo.dir.join(plant)).unwrap();
        let before = repo.snapshot();
        let outside_before = tree_of(&outside);
        for command in [
            &["add-node", "--bmc-host", "b.lan"][..],
            &["update"],
            &["diff"],
        ] {
            let out = repo.run(command);
            expect(&out, 2);
            let stderr = one_line(&out.stderr);
            assert!(
                stderr.contains("symbolic link"),
                "{what}, {command:?}: {stderr}"
            );
            assert_same_tree(&before, &repo.snapshot());
            assert_same_tree(&outside_before, &tree_of(&outside));
        }
    }
}
