//! Transactions and the file system against a hostile repository or an unlucky user: a journal
//! from git, planted symbolic links, a crash followed by the user's own repairs, files that
//! cannot be changed, few file descriptors. Each test runs the real binary on a real repo (and
//! real git) and checks the disk inside and outside the repo afterwards.

use std::{path::Path, process::Command};

use crate::support::{
    assert_same_tree, expect, flakesmith, flakesmith_env, text, tree_of, Immutable, TestRepo,
};

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
    repo.write(".flakesmith/txn/journal", journal.to_string());
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

/// Item 4 of issue 12: in a clone without keys/, add-node crashes after making keys/ for the new
/// node's identity; before running flakesmith again the user restores the other nodes'
/// identities into that keys/. The rollback removes only the file the crashed run made, and
/// keys/ only if empty: every restored identity is kept, byte for byte.
#[test]
fn a_rollback_keeps_what_the_user_put_in_a_directory_it_created() {
    use std::os::unix::process::ExitStatusExt;

    let repo = TestRepo::init(&[]);
    let backup = repo.dir.parent().unwrap().join("backup");
    std::fs::rename(repo.dir.join("keys"), &backup).unwrap();
    let out = repo.run_env(
        &["add-node", "--bmc-host", "b.lan"],
        &[("FLAKESMITH_FAILPOINT", "apply:rename#2:abort")],
    );
    assert_eq!(out.status.signal(), Some(6), "{}", text(&out.stderr));
    assert!(repo.dir.join("keys/rk1-node5.age").exists());

    let mut restored = Vec::new();
    for entry in std::fs::read_dir(&backup).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".age") {
            std::fs::copy(backup.join(&name), repo.dir.join("keys").join(&name)).unwrap();
            restored.push(name);
        }
    }
    assert_eq!(restored.len(), 4);

    let out = repo.run(&["update"]);
    expect(&out, 0);
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    for name in &restored {
        assert_eq!(
            std::fs::read(repo.dir.join("keys").join(name)).unwrap(),
            std::fs::read(backup.join(name)).unwrap(),
            "{name}"
        );
    }
    // The crashed run's own identity went with the rest of its change.
    assert!(!repo.dir.join("keys/rk1-node5.age").exists());
    assert!(!repo.read("flakesmith.yaml").contains("rk1-node5"));
}

/// Item 10 of issue 12: a rename that fails, during the change or during its rollback, does not
/// stop the rollback. With README.md immutable (`chattr +i`) add-node fails and everything is
/// rolled back. With README.md made immutable after a crash that had already replaced it, the
/// rollback restores every other file, names README.md and says how to finish; once the cause is
/// gone, the next run finishes it.
#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root for chattr +i (CAP_LINUX_IMMUTABLE): run the suite as root, as CI does"
)]
fn a_rename_that_fails_does_not_stop_the_rollback() {
    use std::os::unix::process::ExitStatusExt;

    let repo = TestRepo::init(&[]);
    let before = repo.snapshot();
    let readme = repo.dir.join("README.md");
    let add = ["add-node", "--bmc-host", "b.lan"];

    let immutable = Immutable::set(&readme);
    let out = repo.run(&add);
    expect(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("README.md") && stderr.contains("rolled back"),
        "{stderr}"
    );
    drop(immutable);
    assert_same_tree(&before, &repo.snapshot());

    // Renames run in path order: .sops.yaml, README.md, then the crash.
    let out = repo.run_env(&add, &[("FLAKESMITH_FAILPOINT", "apply:rename#3:abort")]);
    assert_eq!(out.status.signal(), Some(6), "{}", text(&out.stderr));
    let changed_readme = repo.read("README.md");
    assert!(changed_readme.contains("rk1-node5"));
    let immutable = Immutable::set(&readme);
    let out = repo.run(&["diff"]);
    expect(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("could not restore README.md") && stderr.contains("chattr -i"),
        "{stderr}"
    );
    let mut after = repo.snapshot();
    assert_eq!(
        after.remove("README.md").unwrap().1,
        changed_readme.as_bytes()
    );
    after.retain(|path, _| !path.starts_with(".flakesmith/txn"));
    let mut expected = before.clone();
    expected.remove("README.md");
    assert_same_tree(&expected, &after);

    drop(immutable);
    let out = repo.run(&["diff"]);
    expect(&out, 0);
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert_same_tree(&before, &repo.snapshot());
}

/// Item 5 of issue 12: init fails at every file it opens in turn (strace's fault injection makes
/// the Nth `openat` fail with ENOSPC, as a full disk would). After each failure there is no
/// project, and after success every node recipient in .sops.yaml has its identity in keys/:
/// never a repo whose recipients nobody can decrypt for.
#[test]
fn init_failing_at_any_file_leaves_no_project_or_a_whole_one() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let dir = tmp.path().join("repo");
    let trace = tmp.path().join("trace");
    let init = |inject: Option<usize>| {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=openat", "-o"])
            .arg(&trace);
        if let Some(n) = inject {
            cmd.arg("-e")
                .arg(format!("inject=openat:error=ENOSPC:when={n}"));
        }
        cmd.args(["--", crate::support::FLAKESMITH])
            .args(["init", "repo", "--yes", "--no-git", "--nodes", "3"])
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env_remove("XDG_STATE_HOME")
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .expect("strace (Debian package strace)")
    };
    let whole = |dir: &Path| {
        let recorded = flakesmith::secrets::recorded_recipients(dir).unwrap();
        assert_eq!(recorded.len(), 3);
        for (host, recipient) in &recorded {
            let path = flakesmith::secrets::identity_path(dir, host);
            let identity = flakesmith::secrets::read_identity(&path, host).unwrap();
            assert_eq!(&identity.recipient, recipient, "{host}");
        }
    };
    expect(&init(None), 0);
    whole(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    // Every open of an identity, .sops.yaml, or anything after the last of the project's files
    // (where the old code wrote the identities), and every 8th open besides: each run takes a
    // while under strace.
    let trace = std::fs::read_to_string(&trace).unwrap();
    let opens: Vec<&str> = trace.lines().filter(|l| l.contains("openat(")).collect();
    let last_file = opens.iter().rposition(|l| l.contains("flake.nix")).unwrap();
    let chosen: Vec<usize> = (1..=opens.len())
        .filter(|&n| {
            let open = opens[n - 1];
            n % 8 == 0 || n > last_file || open.contains("keys/") || open.contains(".sops.yaml")
        })
        .collect();
    let mut failures = 0;
    for &n in &chosen {
        let out = init(Some(n));
        if !out.status.success() {
            failures += 1;
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("No space left on device"),
                "open #{n}: {stderr}"
            );
        }
        // No project, or the whole project: a failure after the rename (syncing the parent
        // directory) leaves a whole one.
        if dir.exists() {
            whole(&dir);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    // The injection reached the project's files and identities, not only the loader's.
    assert!(
        failures > 10,
        "only {failures} of {} opens failed",
        chosen.len()
    );
}

/// init goes through the transaction of the other commands, its node identities created in it.
/// An I/O error part-way is rolled back at once, and the directory init made goes too. A crash
/// part-way (after staging; between renames, when the identities are written but `.sops.yaml`
/// may not be) leaves a journal, which the next init there rolls back before it starts again:
/// then every recipient in `.sops.yaml` has its identity in keys/, and every identity its
/// recipient. Into a directory of the user's (`--force`), any command there rolls the crash
/// back, and the user's files are byte for byte as before.
#[test]
fn an_interrupted_init_is_rolled_back_node_identities_included() {
    use std::os::unix::process::ExitStatusExt;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let init = ["init", "repo", "--yes", "--no-git"];
    let whole = |dir: &Path| {
        let recorded = flakesmith::secrets::recorded_recipients(dir).unwrap();
        assert_eq!(recorded.len(), 4);
        for (host, recipient) in &recorded {
            let path = flakesmith::secrets::identity_path(dir, host);
            let identity = flakesmith::secrets::read_identity(&path, host).unwrap();
            assert_eq!(&identity.recipient, recipient, "{host}");
        }
        let identities = std::fs::read_dir(dir.join("keys"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "age")
            })
            .count();
        assert_eq!(identities, recorded.len());
    };

    let out = flakesmith_env(
        tmp.path(),
        &init,
        &[("FLAKESMITH_FAILPOINT", "apply:rename#3")],
    );
    expect(&out, 1);
    assert!(
        text(&out.stderr).contains("rolled back"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.exists(), "{:?}", tree_of(&dir).keys());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    for failpoint in [
        "apply:staged:abort",
        "apply:rename#1:abort",
        "apply:rename#9:abort",
        "apply:rename#40:abort",
    ] {
        let out = flakesmith_env(tmp.path(), &init, &[("FLAKESMITH_FAILPOINT", failpoint)]);
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{failpoint}: {}",
            text(&out.stderr)
        );
        assert!(dir.join(".flakesmith/txn/journal").exists(), "{failpoint}");
        if failpoint.starts_with("apply:rename") {
            // Written just before the renames: identities whose recipients may not be there yet.
            assert!(dir.join("keys/rk1-node1.age").exists(), "{failpoint}");
        }
        let out = flakesmith(tmp.path(), &init);
        expect(&out, 0);
        assert!(
            text(&out.stderr).contains("interrupted"),
            "{failpoint}: {}",
            text(&out.stderr)
        );
        whole(&dir);
        assert!(!dir.join(".flakesmith/txn").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("README.md"), "my notes\n").unwrap();
    std::fs::write(dir.join("plan.txt"), "my plan\n").unwrap();
    let before = tree_of(&dir);
    let force = ["init", "repo", "--yes", "--no-git", "--force"];
    let out = flakesmith_env(
        tmp.path(),
        &force,
        &[("FLAKESMITH_FAILPOINT", "apply:rename#9:abort")],
    );
    assert_eq!(out.status.signal(), Some(6), "{}", text(&out.stderr));
    assert_ne!(before, tree_of(&dir));
    // Not a repo yet, but the crash is rolled back by any command that opens the directory.
    let out = flakesmith(&dir, &["diff"]);
    expect(&out, 2);
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert_same_tree(&before, &tree_of(&dir));
    expect(&flakesmith(tmp.path(), &force), 0);
    whole(&dir);
    assert_eq!(std::fs::read(dir.join("README.md")).unwrap(), b"my notes\n");
}

/// Item 5 of issue 12, second half: a recipient in .sops.yaml whose identity is not in keys/ (a
/// crash of an older flakesmith, a lost file) is a finding of `check` naming the host and the
/// fix, and a warning of every command that renders; declaring the identities kept elsewhere
/// silences both for a checkout without keys/.
#[test]
fn a_recipient_without_its_identity_is_noticed() {
    let repo = TestRepo::init(&[]);
    std::fs::remove_file(repo.dir.join("keys/rk1-node2.age")).unwrap();

    let out = repo.run(&["check"]);
    expect(&out, 1);
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("keys/rk1-node2.age"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("restore keys/rk1-node2.age"), "{line}");
    for command in [
        &["update"][..],
        &["diff"],
        &["add-node", "--bmc-host", "b.lan"],
    ] {
        let out = repo.run(command);
        assert!(
            text(&out.stderr).contains("warning: keys/rk1-node2.age is missing"),
            "{command:?}: {}",
            text(&out.stderr)
        );
    }

    repo.edit("flakesmith.yaml", |t| {
        t.replace(
            "secrets:\n",
            "secrets:\n  node-identities-elsewhere: true\n",
        )
    });
    // Declared: a checkout without keys/ (CI) is fine, a keys/ with a gap still is not.
    let out = repo.run(&["check"]);
    assert!(
        text(&out.stdout).contains("keys/rk1-node2.age"),
        "{}",
        text(&out.stdout)
    );
    std::fs::remove_dir_all(repo.dir.join("keys")).unwrap();
    let out = repo.run(&["check"]);
    assert!(
        !text(&out.stdout).contains("keys/rk1-node"),
        "{}",
        text(&out.stdout)
    );
    let out = repo.run(&["diff"]);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

/// Item 6 of issue 12: with the base record missing, damaged or a link, add-node and remove-node
/// used to print "Adding …"/"Removing …" and exit 0 while the new answers went beside
/// flakesmith.yaml (so the next `update` undid the change). Now every command that changes the
/// repo refuses, in one line saying how to get the base back, and changes nothing; the rebuild it
/// names works.
#[test]
fn without_a_whole_base_record_a_command_refuses_and_says_how_to_rebuild_it() {
    use std::os::unix::fs::symlink;

    for damage in ["missing", "without flakesmith.yaml", "a link"] {
        let repo = TestRepo::init(&[]);
        let base = repo.dir.join(".flakesmith/base");
        match damage {
            "missing" => std::fs::remove_dir_all(&base).unwrap(),
            "without flakesmith.yaml" => {
                std::fs::remove_file(base.join("flakesmith.yaml")).unwrap()
            }
            _ => {
                let elsewhere = repo.dir.parent().unwrap().join("base");
                std::fs::rename(&base, &elsewhere).unwrap();
                symlink(&elsewhere, &base).unwrap();
            }
        }
        let before = repo.snapshot();
        for command in [
            &["add-node", "--bmc-host", "b.lan"][..],
            &["remove-node", "rk1-node4"],
            &["update"],
            &["diff"],
        ] {
            let out = repo.run(command);
            expect(&out, 2);
            let stderr = one_line(&out.stderr);
            let says_how = if damage == "a link" {
                "symbolic link"
            } else {
                "git checkout HEAD -- .flakesmith/base"
            };
            assert!(stderr.contains(says_how), "{damage}, {command:?}: {stderr}");
            assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
            assert_same_tree(&before, &repo.snapshot());
        }
    }

    // The rebuild the message names, then the change lands in flakesmith.yaml.
    let repo = TestRepo::init(&[]);
    std::fs::remove_dir_all(repo.dir.join(".flakesmith/base")).unwrap();
    let out = flakesmith(
        &repo.dir,
        &[
            "init",
            ".",
            "--force",
            "--no-git",
            "--answers",
            "flakesmith.yaml",
        ],
    );
    expect(&out, 0);
    expect(&repo.run(&["add-node", "--bmc-host", "b.lan"]), 0);
    assert!(repo.read("flakesmith.yaml").contains("rk1-node5"));
}

/// Item 6 of issue 12, the same promise when the base is whole: a change of the answers that
/// would conflict with the user's edit of flakesmith.yaml (a comment on a line the change is
/// next to) is refused before add-node says "Adding", instead of leaving conflict markers in the
/// one file every command needs to read.
#[test]
fn a_change_of_the_answers_that_meets_the_users_formatting_lands_and_keeps_their_text() {
    let repo = TestRepo::init(&[]);
    repo.edit("flakesmith.yaml", |t| {
        t.replace(
            "  bmc-host: turingpi.local\n",
            "  bmc-host: turingpi.local  # rack 1\n",
        )
    });
    let yours = repo.read("flakesmith.yaml");
    let out = repo.run(&["add-node", "--bmc-host", "b.lan"]);
    expect(&out, 0);
    // What it printed, it did: the node is in the answers, so the next update keeps it.
    assert!(
        text(&out.stdout).contains("Adding"),
        "{}",
        text(&out.stdout)
    );
    let answers = flakesmith::model::Answers::from_yaml(&repo.read("flakesmith.yaml")).unwrap();
    assert_eq!(answers.nodes.len(), 5);
    assert_eq!(repo.read("flakesmith.yaml.flakesmith-old"), yours);
    expect(&repo.run(&["update"]), 0);
    let answers = flakesmith::model::Answers::from_yaml(&repo.read("flakesmith.yaml")).unwrap();
    assert_eq!(answers.nodes.len(), 5);
}

/// Item 9 of issue 12: staged files used to stay open until synced, so a large init or update
/// ran out of file descriptors. A 1,000-node init, and an update that replaces every one of its
/// 3,000 files, both run under `ulimit -n 256` in a real shell.
#[test]
fn a_thousand_nodes_fit_in_256_file_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let limited = |args: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n 256 && exec \"$0\" {args}"))
            .arg(crate::support::FLAKESMITH)
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env_remove("XDG_STATE_HOME")
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .unwrap()
    };
    expect(&limited("init repo --yes --no-git --nodes 1000"), 0);
    let repo = tmp.path().join("repo");
    assert!(repo.join("nodes/rk1-node1000.nix").is_file());

    // Every generated file (but the answers) as flakesmith last wrote it, in an older version:
    // update replaces each one and its base copy (over 2,000 files), backing up each first.
    let base = repo.join(".flakesmith/base");
    let mut stale = 0;
    for entry in walkdir::WalkDir::new(&base) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(&base).unwrap();
        if !entry.file_type().is_file() || rel == Path::new("flakesmith.yaml") {
            continue;
        }
        std::fs::write(entry.path(), "# older\n").unwrap();
        std::fs::write(repo.join(rel), "# older\n").unwrap();
        stale += 1;
    }
    assert!(stale > 1000, "{stale}");
    let out = limited("update -C repo");
    expect(&out, 0);
    assert!(
        text(&out.stdout).contains(&format!("{stale} files written")),
        "{}",
        text(&out.stdout)
    );
    assert_ne!(
        std::fs::read(repo.join("nodes/rk1-node1000.nix")).unwrap(),
        b"# older\n"
    );
}

/// The record that this machine started a change goes under `$XDG_STATE_HOME/flakesmith` when
/// that is an absolute path, and under `$HOME/.local/state` otherwise (the XDG spec ignores a
/// relative value). The next run finds it there, rolls the crashed change back and removes it.
#[test]
fn the_transaction_record_lives_in_an_absolute_xdg_state_home_or_under_home() {
    use std::os::unix::process::ExitStatusExt;

    let repo = TestRepo::init(&[]);
    let before = repo.snapshot();
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    let records = |state: &Path| {
        std::fs::read_dir(state.join("flakesmith/transactions")).map_or(0, |d| d.count())
    };
    for (xdg, expected) in [
        (state.path().to_str().unwrap(), state.path().to_owned()),
        ("relative/state", home.path().join(".local/state")),
    ] {
        let env = [("HOME", home_str), ("XDG_STATE_HOME", xdg)];
        let crash = [
            env[0],
            env[1],
            ("FLAKESMITH_FAILPOINT", "apply:staged:abort"),
        ];
        let out = repo.run_env(&["add-node", "--bmc-host", "b.lan"], &crash);
        assert_eq!(out.status.signal(), Some(6), "{}", text(&out.stderr));
        assert_eq!(records(&expected), 1, "XDG_STATE_HOME={xdg}");

        let out = repo.run_env(&["diff"], &env);
        expect(&out, 0);
        assert!(
            text(&out.stderr).contains("interrupted"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(records(&expected), 0, "XDG_STATE_HOME={xdg}");
        assert_same_tree(&before, &repo.snapshot());
    }
}
