//! add-node, remove-node, diff and update on real generated repos, run as the user runs them:
//! the flakesmith binary against a directory, judged by exit code and by the files on disk.

use std::{collections::BTreeMap, os::unix::process::ExitStatusExt, path::Path, process::Command};

use crate::support::{assert_same_tree, expect, flakesmith, flakesmith_command, text, TestRepo};

fn inodes(root: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, e.metadata().unwrap().ino())
        })
        .collect()
}

/// Everything under `dir` whose contents mention `needle` (for "the deploy inventory lists it").
fn any_file_under_mentions(repo: &TestRepo, dir: &str, needle: &str) -> bool {
    repo.snapshot()
        .iter()
        .any(|(p, (_, b))| p.starts_with(dir) && text(b).contains(needle))
}

const SOPS_ENCRYPTED: &str = "example: ENC[AES256_GCM,data:9Xb3XQ==,iv:J6z5,tag:Qm9v,type:str]\nsops:\n    lastmodified: \"2026-01-01T00:00:00Z\"\n    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]\n    version: 3.9.4\n";

#[test]
fn no_updatekeys_step_while_the_secrets_are_the_unencrypted_placeholder() {
    // `sops updatekeys` refuses a file without sops metadata: no step to run yet.
    let repo = TestRepo::init(&["--nodes", "2"]);
    for args in [&["add-node"][..], &["remove-node", "rk1-node3"]] {
        let out = repo.run(args);
        expect(&out, 0);
        assert!(
            !text(&out.stdout).contains("updatekeys"),
            "{}",
            text(&out.stdout)
        );
    }
    repo.write("secrets/secrets.yaml", SOPS_ENCRYPTED);
    let out = repo.run(&["remove-node", "rk1-node2"]);
    expect(&out, 0);
    assert!(
        text(&out.stdout).contains(
            "Next: stop encrypting to rk1-node2's recipient (and rotate what it could read):\n  sops updatekeys secrets/secrets.yaml\n"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn add_node_keeps_user_edits_and_wires_the_node_everywhere() {
    let repo = TestRepo::init(&[]);
    repo.edit("common.nix", |t| format!("# site notes: keep me\n{t}"));
    repo.edit("nodes/rk1-node1.nix", |t| {
        format!("# node notes: keep me too\n{t}")
    });
    // flake.nix is one add-node re-renders (its host list grows): the user's edit and
    // flakesmith's change must both land, by the three-way merge.
    let flake_edit = |t: &str| t.replacen("{\n", "# site notes: pinned for the lab\n{\n", 1);
    repo.edit("flake.nix", flake_edit);
    let common = repo.read("common.nix");
    let node1 = repo.read("nodes/rk1-node1.nix");
    // Stand-in for a file sops encrypted (no sops here): the metadata `sops updatekeys` needs.
    repo.write("secrets/secrets.yaml", SOPS_ENCRYPTED);

    // A fifth node needs a second board; without a terminal its BMC host must be given.
    let out = repo.run(&["add-node", "--bmc-host", "turingpi-b.lan"]);
    expect(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rk1-node5"), "{stdout}");
    assert!(
        stdout.contains("sops updatekeys secrets/secrets.yaml"),
        "{stdout}"
    );

    assert_eq!(repo.read("common.nix"), common);
    assert_eq!(repo.read("nodes/rk1-node1.nix"), node1);
    assert!(repo.read("nodes/rk1-node5.nix").contains("rk1-node5"));
    let answers = flakesmith::model::Answers::from_yaml(&repo.read("flakesmith.yaml")).unwrap();
    let rendered = crate::support::Project::from_answers(answers).render();
    let rendered = rendered.get("flake.nix").unwrap().as_text().unwrap();
    assert!(rendered.contains("\"rk1-node5\""), "{rendered}");
    assert_eq!(repo.read("flake.nix"), flake_edit(rendered));
    // Its own age identity, and its recipient in .sops.yaml.
    let identity = repo.read("keys/rk1-node5.age");
    let recipient = identity
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("the identity file names its recipient");
    assert!(repo
        .read(".sops.yaml")
        .contains(&format!("&rk1-node5 {recipient}")));
    assert!(any_file_under_mentions(&repo, "deploy/", "rk1-node5"));
    let answers = repo.read("flakesmith.yaml");
    assert!(
        answers.contains("turingpi-b.lan") && answers.contains("rk1-node5"),
        "{answers}"
    );

    // The repo is now what flakesmith generates from its answers (with the edits merged in).
    expect(&repo.run(&["diff"]), 0);

    // Comments in the answers survive, even where add-node inserts next to them.
    repo.edit("flakesmith.yaml", |t| {
        t.replace("\nnodes:\n", "\n# rack by the window\nnodes:\n") + "# end\n"
    });

    // And again, onto the new board's next slot.
    expect(&repo.run(&["add-node", "--address", "10.0.0.16/24"]), 2); // no gateway in the answers
    expect(&repo.run(&["add-node", "big-one"]), 0);
    assert!(repo.read("flakesmith.yaml").contains("slot: 2"));
    assert!(repo.read("nodes/big-one.nix").contains("big-one"));
    let answers = repo.read("flakesmith.yaml");
    assert!(
        answers.contains("# rack by the window\nnodes:\n") && answers.ends_with("# end\n"),
        "{answers}"
    );
    assert_eq!(repo.read("common.nix"), common);
}

#[test]
fn add_node_count_fills_boards_and_writes_only_what_changes() {
    let repo = TestRepo::init(&["--nodes", "3"]);
    let before = repo.snapshot();
    let inodes_before = inodes(&repo.dir);
    let out = repo.run(&["add-node", "--count", "2", "--bmc-host", "tp2.lan"]);
    expect(&out, 0);
    let after = repo.snapshot();
    assert!(repo.read("nodes/rk1-node4.nix").contains("rk1-node4"));
    assert!(repo.read("nodes/rk1-node5.nix").contains("rk1-node5"));
    assert!(repo.read("flakesmith.yaml").contains("tp2.lan"));
    // Only files whose contents change are written: every other file keeps its inode.
    let inodes_after = inodes(&repo.dir);
    for (path, ino) in &inodes_before {
        if before.get(path) == after.get(path) {
            assert_eq!(
                Some(ino),
                inodes_after.get(path),
                "{path} was rewritten unchanged"
            );
        }
    }
    assert_eq!(
        before.get("nodes/rk1-node1.nix"),
        after.get("nodes/rk1-node1.nix")
    );
    assert!(!repo.dir.join(".flakesmith/txn").exists());
}

#[test]
fn update_merges_edits_and_marks_conflicts() {
    let repo = TestRepo::init(&[]);
    let zone_file = repo.file_containing("\"UTC\"");
    repo.edit("common.nix", |t| format!("# site notes: keep me\n{t}"));
    repo.edit("nodes/rk1-node2.nix", |t| format!("# node notes\n{t}"));
    repo.edit("flakesmith.yaml", |t| {
        t.replace("time-zone: UTC", "time-zone: Europe/Berlin")
    });

    let dry = repo.run(&["update", "--dry-run"]);
    expect(&dry, 0);
    assert!(
        text(&dry.stdout).contains(&zone_file),
        "{}",
        text(&dry.stdout)
    );
    let before_dry = repo.snapshot();
    assert_same_tree(&before_dry, &repo.snapshot());

    expect(&repo.run(&["update"]), 0);
    let zone = repo.read(&zone_file);
    assert!(
        zone.contains("\"Europe/Berlin\"") && !zone.contains("\"UTC\""),
        "{zone}"
    );
    assert!(repo
        .read("common.nix")
        .starts_with("# site notes: keep me\n"));
    assert!(repo
        .read("nodes/rk1-node2.nix")
        .starts_with("# node notes\n"));
    expect(&repo.run(&["diff"]), 0);

    // Now the user and the answers change the same line.
    repo.edit(&zone_file, |t| {
        t.replace("\"Europe/Berlin\"", "\"Europe/Paris\"")
    });
    repo.edit("flakesmith.yaml", |t| {
        t.replace("time-zone: Europe/Berlin", "time-zone: Asia/Tokyo")
    });
    let out = repo.run(&["update"]);
    expect(&out, 1);
    assert!(
        text(&out.stdout).contains(&format!("CONFLICT  {zone_file}")),
        "{}",
        text(&out.stdout)
    );
    // One file changed, one conflicted: counted in English.
    assert!(
        text(&out.stdout).contains("1 file written, 0 removed.")
            && text(&out.stderr).starts_with("1 file has conflicts"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let merged = repo.read(&zone_file);
    for marker in [
        "<<<<<<< yours",
        "=======",
        ">>>>>>> flakesmith (new)",
        "Europe/Paris",
        "Asia/Tokyo",
    ] {
        assert!(merged.contains(marker), "{marker} missing in:\n{merged}");
    }
    assert!(repo
        .read("common.nix")
        .starts_with("# site notes: keep me\n"));

    // Until the markers are resolved, diff (CI) does not pass, though update has nothing to do.
    let out = repo.run(&["diff"]);
    expect(&out, 1);
    assert!(
        text(&out.stderr).contains(&zone_file),
        "{}",
        text(&out.stderr)
    );
    // Nor does update call such a repo up to date.
    let out = repo.run(&["update"]);
    expect(&out, 1);
    assert!(
        text(&out.stderr).contains(&format!("{zone_file}: unresolved conflict markers")),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("Up to date"));
    repo.edit(&zone_file, |t| {
        t.lines()
            .filter(|l| {
                !l.starts_with("<<<<<<<")
                    && !l.starts_with("=======")
                    && !l.starts_with(">>>>>>>")
                    && !l.contains("Asia/Tokyo")
            })
            .map(|l| format!("{l}\n"))
            .collect()
    });
    expect(&repo.run(&["diff"]), 0);
    assert!(repo.read(&zone_file).contains("Europe/Paris"));
    let out = repo.run(&["update"]);
    expect(&out, 0);
    assert!(text(&out.stdout).contains("Up to date."));
}

#[test]
fn update_leaves_deleted_files_deleted_unless_asked() {
    let repo = TestRepo::init(&[]);
    std::fs::remove_file(repo.dir.join("README.md")).unwrap();
    repo.edit("flakesmith.yaml", |t| {
        t.replace("name: repo", "name: renamed")
    });
    let dry = repo.run(&["update", "--dry-run"]);
    assert!(
        text(&dry.stdout).contains("keep deleted  README.md"),
        "{}",
        text(&dry.stdout)
    );
    let out = repo.run(&["update"]);
    expect(&out, 0);
    assert!(!repo.dir.join("README.md").exists());
    // The file the update did not bring back is named, with the way to bring it back.
    assert!(
        text(&out.stdout).contains("kept deleted: README.md (--restore-deleted brings them back)"),
        "{}",
        text(&out.stdout)
    );
    expect(&repo.run(&["update", "--restore-deleted"]), 0);
    assert!(repo.read("README.md").contains("renamed"));
}

#[test]
fn remove_node_keeps_edited_files_unless_forced() {
    let repo = TestRepo::init(&[]);
    let out = repo.run(&["remove-node", "rk1-node4"]);
    expect(&out, 0);
    assert!(!repo.dir.join("nodes/rk1-node4.nix").exists());
    assert!(!repo.read(".sops.yaml").contains("rk1-node4"));
    assert!(
        repo.dir.join("keys/rk1-node4.age").exists(),
        "the identity is the user's to delete"
    );
    assert!(
        text(&out.stdout).contains("kept keys/rk1-node4.age"),
        "{}",
        text(&out.stdout)
    );
    assert!(!repo.read("flake.nix").contains("rk1-node4"));
    assert!(!repo
        .dir
        .join(".flakesmith/base/nodes/rk1-node4.nix")
        .exists());

    repo.edit("nodes/rk1-node3.nix", |t| format!("{t}# mine\n"));
    let out = repo.run(&["remove-node", "rk1-node3"]);
    expect(&out, 0);
    assert!(
        text(&out.stdout).contains("kept nodes/rk1-node3.nix"),
        "{}",
        text(&out.stdout)
    );
    assert!(repo.read("nodes/rk1-node3.nix").ends_with("# mine\n"));
    assert!(!repo.read("flake.nix").contains("rk1-node3"));

    repo.edit("nodes/rk1-node2.nix", |t| format!("{t}# mine\n"));
    expect(&repo.run(&["remove-node", "rk1-node2", "--force"]), 0);
    assert!(!repo.dir.join("nodes/rk1-node2.nix").exists());

    // Freed slots are reused; the name of a node whose file the user kept is not.
    let kept = repo.read("nodes/rk1-node3.nix");
    expect(&repo.run(&["add-node"]), 0);
    expect(&repo.run(&["add-node"]), 0);
    let answers = repo.read("flakesmith.yaml");
    assert!(
        answers.contains("host: rk1-node2") && answers.contains("host: rk1-node4"),
        "{answers}"
    );
    assert!(!answers.contains("host: rk1-node3"), "{answers}");
    assert_eq!(repo.read("nodes/rk1-node3.nix"), kept);
}

#[test]
fn diff_is_empty_on_a_fresh_repo_and_a_unified_diff_after_a_change() {
    let repo = TestRepo::init(&[]);
    let out = repo.run(&["diff"]);
    expect(&out, 0);
    assert!(out.stdout.is_empty());

    repo.edit("flakesmith.yaml", |t| {
        t.replace("time-zone: UTC", "time-zone: Europe/Berlin")
    });
    let before = repo.snapshot();
    let out = repo.run(&["diff"]);
    expect(&out, 1);
    let diff = text(&out.stdout);
    assert!(diff.contains("--- a/") && diff.contains("+++ b/"), "{diff}");
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("\"UTC\"")),
        "{diff}"
    );
    assert!(diff.contains("\"Europe/Berlin\""), "{diff}");
    assert_same_tree(&before, &repo.snapshot());

    // A repo written by a newer flakesmith: said once on stderr.
    repo.edit("flakesmith.yaml", |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("flakesmith-version:") {
                    "flakesmith-version: 99.0.0"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    });
    let out = repo.run(&["diff"]);
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("newer")).count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("99.0.0"), "{stderr}");
}

#[test]
fn add_node_on_a_board_that_does_not_exist_says_so() {
    // Board tp1 has free slots: the new board is the user's choice, not because tp1 is full.
    let repo = TestRepo::init(&["--nodes", "2"]);
    let out = repo.run(&["add-node", "--board", "tp9"]);
    expect(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("board 'tp9' does not exist yet") && !stderr.contains("full"),
        "{stderr}"
    );
    expect(
        &repo.run(&["add-node", "--board", "tp9", "--bmc-host", "tp9.lan"]),
        0,
    );
}

#[test]
fn bad_input_is_one_line_exit_2_and_changes_nothing() {
    let repo = TestRepo::init(&[]);
    let before = repo.snapshot();
    let cases: &[&[&str]] = &[
        &["remove-node", "no-such-node"],
        &["add-node", "--board", "tp1", "--slot", "2"],
        &["add-node", "--board", "tp1"],
        &["add-node", "--address", "10.0.0.300/24"],
        &["add-node", "rk1-node1"],
        &["add-node", "Bad_Name"],
        &["add-node", "--count", "0"],
        // A fifth node needs a second board: no terminal to ask, so its BMC host is required.
        &["add-node"],
        &["add-node", "--bmc-host", "not a host"],
        &["add-node", "--module", "jetson"],
    ];
    for args in cases {
        let out = repo.run(args);
        expect(&out, 2);
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert_same_tree(&before, &repo.snapshot());
    }
    let out = repo.run(&["add-node", "--module", "jetson"]);
    assert_eq!(
        text(&out.stderr),
        "error: --module: 'jetson' is not allowed (allowed: rk1, cm4)\n"
    );

    let answers = repo.read("flakesmith.yaml");
    repo.edit("flakesmith.yaml", |t| {
        t.replace(
            "  time-zone: UTC\n",
            "<<<<<<< yours\n  time-zone: UTC\n=======\n  time-zone: Asia/Tokyo\n>>>>>>> flakesmith (new)\n",
        )
    });
    let out = repo.run(&["update"]);
    expect(&out, 2);
    assert!(
        text(&out.stderr).contains("conflict markers"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1);
    repo.write("flakesmith.yaml", &answers);

    repo.edit("flakesmith.yaml", |t| t.replace("schema: 1", "schema: 99"));
    let before = repo.snapshot();
    for args in [
        &["diff"][..],
        &["update"],
        &["add-node", "--bmc-host", "x.lan"],
    ] {
        let out = repo.run(args);
        expect(&out, 2);
        assert!(
            text(&out.stderr).contains("newer flakesmith"),
            "{}",
            text(&out.stderr)
        );
        assert_same_tree(&before, &repo.snapshot());
    }

    // An answer that parses but is not allowed: every command names it in the file, check too.
    repo.write("flakesmith.yaml", &answers);
    repo.edit("flakesmith.yaml", |t| {
        t.replace("bmc-host: turingpi.local", "bmc-host: bad_host")
    });
    let before = repo.snapshot();
    for args in [
        &["check"][..],
        &["diff"],
        &["update"],
        &["add-node", "--dry-run"],
        &["remove-node", "rk1-node2"],
    ] {
        let out = repo.run(args);
        expect(&out, 2);
        assert!(
            text(&out.stderr).starts_with("error: flakesmith.yaml: boards[0].bmc-host: 'bad_host'"),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_same_tree(&before, &repo.snapshot());
    }

    let empty = tempfile::tempdir().unwrap();
    let out = flakesmith(empty.path(), &["diff"]);
    expect(&out, 2);
    assert!(text(&out.stderr).contains("flakesmith.yaml"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

/// A write interrupted part-way: once by an I/O error (rolled back at once), once by a crash
/// (the process exits between renames, as `kill -9` or a power cut would leave it; the next run
/// rolls back from the journal). Either way the repo ends byte-identical to before.
#[test]
fn an_interrupted_add_node_leaves_the_repo_unchanged() {
    let repo = TestRepo::init(&[]);
    repo.edit("common.nix", |t| format!("# mine\n{t}"));
    let before = repo.snapshot();

    let add = ["add-node", "--bmc-host", "b.lan"];
    let out = repo.run_env(&add, &[("FLAKESMITH_FAILPOINT", "apply:rename#3")]);
    expect(&out, 1);
    assert!(
        text(&out.stderr).contains("rolled back"),
        "{}",
        text(&out.stderr)
    );
    assert_same_tree(&before, &repo.snapshot());

    for step in [1, 2, 4, 7] {
        let failpoint = format!("apply:rename#{step}:abort");
        let out = repo.run_env(&add, &[("FLAKESMITH_FAILPOINT", &failpoint)]);
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{failpoint}: {}",
            text(&out.stderr)
        );
        assert_ne!(
            before,
            repo.snapshot(),
            "{failpoint}: the crash happened part-way"
        );
        assert!(repo.dir.join(".flakesmith/txn/journal").exists());
        // The new node's age identity is written inside the transaction, and undone with it.
        assert!(repo.dir.join("keys/rk1-node5.age").exists());
        if step == 1 {
            // What a crash leaves is git-ignored, so `git add -A` cannot commit it meanwhile.
            let git = |args: &[&str]| {
                Command::new("git")
                    .args(args)
                    .current_dir(&repo.dir)
                    .status()
                    .unwrap()
            };
            assert!(git(&["init", "--quiet"]).success());
            assert!(git(&["check-ignore", "--quiet", ".flakesmith/txn/journal"]).success());
            assert!(!git(&["check-ignore", "--quiet", ".flakesmith/base/flake.nix"]).success());
            std::fs::remove_dir_all(repo.dir.join(".git")).unwrap();
        }
        // Any command that opens the repo recovers first; diff then finds the repo as it was.
        let out = repo.run(&["diff"]);
        assert!(
            text(&out.stderr).contains("interrupted"),
            "{}",
            text(&out.stderr)
        );
        expect(&out, 0);
        assert_same_tree(&before, &repo.snapshot());
    }

    // A crash after staging, before any rename: only temporary files to clean up.
    let out = repo.run_env(&add, &[("FLAKESMITH_FAILPOINT", "apply:staged:abort")]);
    assert_eq!(out.status.signal(), Some(6));
    expect(&repo.run(&["diff"]), 0);
    assert_same_tree(&before, &repo.snapshot());

    // And the same change, uninterrupted, goes through.
    expect(&repo.run(&["add-node", "--bmc-host", "b.lan"]), 0);
    assert!(repo.dir.join("nodes/rk1-node5.nix").exists());
}

#[test]
fn a_multi_cloud_repo_without_rk1_has_no_nodes_to_add_or_remove() {
    let repo = TestRepo::init(&["--platform", "aws"]);
    let out = repo.run(&["add-node"]);
    expect(&out, 2);
    assert!(
        text(&out.stderr).contains("add rk1 to platforms"),
        "{}",
        text(&out.stderr)
    );
    let out = repo.run(&["remove-node", "rk1-node1"]);
    expect(&out, 2);
    assert!(
        text(&out.stderr).contains("no node 'rk1-node1' in flakesmith.yaml (it has no RK1 nodes)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn add_node_works_in_a_multi_cloud_repo_with_rk1() {
    let repo = TestRepo::init(&[
        "--layout",
        "multi-cloud",
        "--platform",
        "aws,rk1",
        "--nodes",
        "2",
    ]);
    let out = repo.run(&["add-node", "edge-3", "--board", "tp1", "--slot", "4"]);
    expect(&out, 0);
    assert!(repo.read("nodes/edge-3.nix").contains("edge-3"));
    assert!(repo.read("flake.nix").contains("edge-3"));
    assert!(repo.read("flakesmith.yaml").contains("slot: 4"));
    expect(&repo.run(&["diff"]), 0);
    expect(&repo.run(&["remove-node", "edge-3"]), 0);
    assert!(!repo.dir.join("nodes/edge-3.nix").exists());

    let cloud_only = TestRepo::init(&["--layout", "multi-cloud", "--platform", "aws"]);
    let out = cloud_only.run(&["add-node"]);
    expect(&out, 2);
    assert!(text(&out.stderr).contains("rk1"), "{}", text(&out.stderr));
}

/// The repo as a snapshot commits it: without flakesmith's own records under `.flakesmith/`, and
/// the vendored injector sources as one checksum file.
fn repo_tree(root: &Path) -> flakesmith::render::Tree {
    crate::support::digest_vendored_sources(files_of(root))
}

fn files_of(root: &Path) -> flakesmith::render::Tree {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".flakesmith")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let path = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let file = flakesmith::render::TreeFile {
                contents: std::fs::read(e.path()).unwrap(),
                executable: e.metadata().unwrap().permissions().mode() & 0o111 != 0,
            };
            (path, file)
        })
        .collect()
}

/// snapshots/add-node-*/: answers.yaml renders tree/ (checked with the other snapshots), and
/// `flakesmith add-node $(cat add-node.args)` on that repo gives after/, so a reviewer sees
/// exactly what add-node changes with `diff -r snapshots/<case>/tree snapshots/<case>/after`.
/// `UPDATE_SNAPSHOTS=1 cargo test --test integration snapshot` rewrites after/.
#[test]
fn add_node_snapshots_show_the_repo_before_and_after() {
    use crate::snapshots::{compare_tree, write_tree};
    let update = crate::support::updating_snapshots();
    let cases: Vec<_> = crate::support::snapshot_cases()
        .into_iter()
        .filter(|c| c.dir.join("add-node.args").is_file())
        .collect();
    assert!(cases.len() >= 3, "expected the add-node snapshot cases");
    let mut report = String::new();
    for case in cases {
        let tmp = tempfile::tempdir().unwrap();
        let answers = case.dir.join("answers.yaml");
        let init = [
            "init",
            "repo",
            "--no-git",
            "--answers",
            answers.to_str().unwrap(),
        ];
        expect(&flakesmith(tmp.path(), &init), 0);
        let repo = tmp.path().join("repo");
        if !update {
            // tree/ may be being rewritten by the snapshot test when updating.
            report.push_str(&compare_tree(
                &case.name,
                &case.tree_dir(),
                &repo_tree(&repo),
            ));
        }
        let args = std::fs::read_to_string(case.dir.join("add-node.args")).unwrap();
        let mut all = vec!["add-node", "-C", repo.to_str().unwrap()];
        all.extend(args.lines().filter(|l| !l.is_empty()));
        expect(&flakesmith(tmp.path(), &all), 0);
        let after = repo_tree(&repo);
        if update {
            write_tree(&case.dir.join("after"), &after);
        } else {
            report.push_str(&compare_tree(
                &format!("{} after add-node", case.name),
                &case.dir.join("after"),
                &after,
            ));
        }
    }
    assert!(
        report.is_empty(),
        "add-node's output differs from snapshots/*/after (if intended, run \
         `UPDATE_SNAPSHOTS=1 cargo test --test integration snapshot` and commit the diff):\n\n{report}"
    );
}

/// While one process holds the repo (here `flock(1)` stands in for a running flakesmith: both
/// take flock(2) on the repo directory), another refuses instead of rolling back its journal.
#[test]
fn a_second_run_in_a_locked_repo_is_refused() {
    let repo = TestRepo::init(&[]);
    let before = repo.snapshot();
    // --no-fork: flock(1) becomes the sleep, so killing it releases the lock.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&repo.dir)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock(1) from util-linux");
    // flock(1) takes the lock before it starts sleep; wait until it has.
    let locked = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "9"])
            .arg(&repo.dir)
            .arg("true")
            .status()
            .unwrap()
            .success()
    });
    assert!(locked, "flock did not take the lock");
    let out = repo.run(&["add-node", "--bmc-host", "b.lan"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    expect(&out, 2);
    assert!(
        text(&out.stderr).contains("another flakesmith"),
        "{}",
        text(&out.stderr)
    );
    assert_same_tree(&before, &repo.snapshot());
    expect(&repo.run(&["add-node", "--bmc-host", "b.lan"]), 0);
}

/// Without --bmc-host, in a terminal, add-node asks for the new board's BMC host (through a real
/// pseudo-terminal, as the user sees the prompt).
#[test]
fn add_node_asks_for_a_new_boards_bmc_host_in_a_terminal() {
    use expectrl::{Eof, Expect, Session};
    let repo = TestRepo::init(&[]);
    let mut command = flakesmith_command();
    command
        .args(["add-node", "-C"])
        .arg(&repo.dir)
        .env("TERM", "xterm");
    let mut session = Session::spawn(command).expect("spawn in a pty");
    session.set_expect_timeout(Some(std::time::Duration::from_secs(30)));
    session
        .expect("BMC host of the new Turing Pi 2 board tp2")
        .unwrap();
    // At a person's pace: a key sent before the prompt reads may be lost (tests/integration/interactive.rs).
    std::thread::sleep(std::time::Duration::from_millis(60));
    session.send("rack2-bmc.lan\r").unwrap();
    session.expect("rk1-node5").unwrap();
    session.expect(Eof).unwrap();
    let answers = repo.read("flakesmith.yaml");
    assert!(answers.contains("bmc-host: rack2-bmc.lan"), "{answers}");
    assert!(repo.dir.join("nodes/rk1-node5.nix").exists());
}

#[test]
fn remove_node_says_what_becomes_of_a_kept_file_and_drops_an_emptied_board() {
    let repo = TestRepo::init(&["--nodes", "5"]);
    assert!(repo
        .read("deploy/rk1-deploy.sh")
        .contains("turingpi2.local"));
    repo.edit("nodes/rk1-node5.nix", |t| format!("{t}# mine\n"));
    let out = repo.run(&["remove-node", "rk1-node5"]);
    expect(&out, 0);
    let said = text(&out.stdout);
    assert!(
        said.contains("kept nodes/rk1-node5.nix: you edited it; delete it yourself once you no longer need it"),
        "{said}"
    );
    assert!(!said.contains("(--force removes it)"), "{said}");
    assert!(
        said.contains("Removing board tp2 (BMC turingpi2.local): no node is left on it (`add-node --board tp2 --bmc-host turingpi2.local` brings it back)"),
        "{said}"
    );
    let answers = repo.read("flakesmith.yaml");
    assert!(
        !answers.contains("tp2") && !answers.contains("turingpi2.local"),
        "{answers}"
    );
    assert!(!repo
        .read("deploy/rk1-deploy.sh")
        .contains("turingpi2.local"));
    // The hint holds: the node is gone from the answers, so --force cannot reach it any more.
    expect(&repo.run(&["remove-node", "rk1-node5", "--force"]), 2);
    expect(
        &repo.run(&[
            "add-node",
            "--board",
            "tp2",
            "--bmc-host",
            "turingpi2.local",
        ]),
        0,
    );
    assert!(repo
        .read("flakesmith.yaml")
        .contains("bmc-host: turingpi2.local"));
}

/// `add-node --module cm4` in a git repository: the node lands in flakesmith.yaml as a CM4, and
/// the flake, evaluated in place as a git flake against the stand-in inputs (what a plain
/// `nix build .#cm4-node1` reads), gives it nixpkgs' aarch64 SD image (the Raspberry Pi firmware
/// in the FAT partition, no bootloader written in front of it, raw) and adds the identical `cm4`
/// image, while the RK1 nodes keep theirs. What the stand-ins cannot show: that the image boots a
/// CM4 (the firmware, U-Boot and kernel are nixpkgs'; see book/src/cm4.md).
#[test]
fn add_node_module_cm4_gives_the_node_the_cm4_image_in_the_git_flake() {
    use crate::nix_eval::{nix_with_stand_ins, stand_in_inputs};
    let tmp = tempfile::tempdir().unwrap();
    expect(
        &flakesmith(tmp.path(), &["init", "repo", "--yes", "--nodes", "2"]),
        0,
    );
    let repo = tmp.path().join("repo");
    let dir = repo.to_str().unwrap();
    let out = flakesmith(tmp.path(), &["add-node", "-C", dir, "--module", "cm4"]);
    expect(&out, 0);
    assert!(
        text(&out.stdout).contains("Adding cm4-node1 (cm4): board tp1, slot 3"),
        "{}",
        text(&out.stdout)
    );
    let answers = std::fs::read_to_string(repo.join("flakesmith.yaml")).unwrap();
    assert_eq!(answers.matches("module:").count(), 1, "{answers}");
    assert!(answers.contains("- host: cm4-node1\n  board: tp1\n  slot: 3\n  module: cm4\n"));

    let flake = std::fs::read_to_string(repo.join("flake.nix")).unwrap();
    let reference = format!("git+file://{}", repo.display());
    let out = crate::support::run_ok(&mut nix_with_stand_ins(
        &stand_in_inputs(&flake),
        &[
            "eval",
            "--json",
            &format!("{reference}#nixosConfigurations"),
            "--apply",
            "builtins.mapAttrs (_: c: { host = c.config.networking.hostName; \
             image = c.config.system.build.sdImage.name; \
             firmware = c.config.sdImage.populateFirmwareCommands; \
             offset = c.config.sdImage.firmwarePartitionOffset; \
             injects = builtins.match \".*rk-inject write.*\" c.config.sdImage.postBuildCommands != null; })",
        ],
    ));
    let machines: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&String> = machines.as_object().unwrap().keys().collect();
    assert_eq!(names, ["cm4", "cm4-node1", "rk1", "rk1-node1", "rk1-node2"]);
    for (name, host, module) in [
        ("cm4-node1", "cm4-node1", "cm4"),
        ("cm4", "", "cm4"),
        ("rk1-node2", "rk1-node2", "rk1"),
        ("rk1", "", "rk1"),
    ] {
        let m = &machines[name];
        assert_eq!(m["host"], host, "{name}: {m}");
        let file = if host.is_empty() { module } else { host };
        assert_eq!(m["image"], format!("nixos-{file}.img"), "{name}: {m}");
        let cm4 = module == "cm4";
        // The stand-in sd-image-aarch64.nix copies "raspberrypi-firmware"; the RK1 empties it.
        assert_eq!(
            m["firmware"]
                .as_str()
                .unwrap()
                .contains("raspberrypi-firmware"),
            cm4,
            "{name}: {m}"
        );
        assert_eq!(m["injects"], !cm4, "{name}: {m}");
        assert_eq!(m["offset"], if cm4 { 8 } else { 16 }, "{name}: {m}");
    }
}

/// The README and flake of a cluster name the compute modules its slots hold: a CM4 is not
/// counted as an RK1, and a cluster of CM4s only gets no rk-inject/ line and no RK1 bootloader
/// paragraph (its images have no bootloader in front of the partitions).
#[test]
fn the_readme_and_flake_name_the_modules_in_the_slots() {
    use crate::support::Project;
    let file = |tree: &flakesmith::render::Tree, path: &str| {
        tree.get(path).unwrap().as_text().unwrap().to_owned()
    };
    let mixed = Project::default()
        .with_nodes(3)
        .with_cm4(&["rk1-node3"])
        .render();
    let readme = file(&mixed, "README.md");
    assert!(
        readme.contains(
            "NixOS for 2 Turing RK1 nodes and 1 Raspberry Pi CM4 node on 1 Turing Pi 2 board,"
        ),
        "{readme}"
    );
    assert!(
        readme.contains("An RK1 image is a raw eMMC image") && readme.contains("A CM4 image is")
    );
    let flake = file(&mixed, "flake.nix");
    assert!(
        flake.contains("NixOS for Turing RK1 and Raspberry Pi CM4 nodes on Turing Pi 2 boards."),
        "{flake}"
    );

    let cm4_only = Project::default()
        .with_nodes(2)
        .with_cm4(&["rk1-node1", "rk1-node2"])
        .render();
    let readme = file(&cm4_only, "README.md");
    assert!(
        readme.contains("NixOS for 2 Raspberry Pi CM4 nodes on 1 Turing Pi 2 board,"),
        "{readme}"
    );
    for rk1_only in [
        "Turing RK1 node",
        "rk-inject",
        "ubootTuringRK1",
        "sector 64",
    ] {
        assert!(
            !readme.contains(rk1_only),
            "{rk1_only:?} in a CM4-only README: {readme}"
        );
    }
    assert!(cm4_only.get("rk-inject/Cargo.toml").is_none());
    let base = file(&cm4_only, "cm4-base.nix");
    assert!(!base.contains("RK1"), "a cluster without RK1s: {base}");
    let flake = file(&cm4_only, "flake.nix");
    assert!(
        flake.contains(": NixOS for Raspberry Pi CM4 nodes\";"),
        "{flake}"
    );
    assert!(!flake.contains("RK1 nodes"), "{flake}");
    // init's next steps: the first node's image is a CM4's.
    let project = flakesmith::model::Project::from_answers(
        Project::default()
            .with_nodes(2)
            .with_cm4(&["rk1-node1", "rk1-node2"])
            .answers(),
    )
    .unwrap();
    let steps = &flakesmith::model::machines(&project)[0].next_steps;
    assert_eq!(steps[0].what, "one CM4 node's eMMC image", "{steps:?}");
}

/// The help of the commands that act on Turing Pi 2 nodes does not call them all RK1s: a slot may
/// hold a CM4, and `stamp --all` stamps it too.
#[test]
fn the_node_commands_help_does_not_call_every_node_an_rk1() {
    let tmp = tempfile::tempdir().unwrap();
    let help = text(&flakesmith(tmp.path(), &["--help"]).stdout);
    for command in ["add-node", "remove-node"] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(command))
            .unwrap_or_else(|| panic!("{command} not in {help}"));
        assert!(!line.contains("RK1 node"), "{line}");
    }
    let stamp = text(&flakesmith(tmp.path(), &["stamp", "--help"]).stdout);
    assert!(!stamp.contains("every RK1 node"), "{stamp}");
    assert!(stamp.contains("cm4"), "{stamp}");
}

/// A multi-cloud README says which identical images build-all-images.sh leaves out: the script
/// skips `cm4` as well as `rk1` when a slot holds a CM4.
#[test]
fn the_multi_cloud_readme_names_every_identical_image_the_script_leaves_out() {
    use flakesmith::model::{Layout, Platform};
    let mut answers = crate::support::Project::default()
        .with_nodes(2)
        .with_cm4(&["rk1-node2"])
        .answers()
        .clone();
    answers.layout = Layout::MultiCloud;
    answers.platforms = vec![Platform::Aws, Platform::Rk1];
    let tree = crate::support::Project::from_answers(answers).render();
    let readme = tree.get("README.md").unwrap().as_text().unwrap();
    assert!(
        readme.contains("builds every image but `rk1` and `cm4` (name them to build them)."),
        "{readme}"
    );
    let script = tree.get("build-all-images.sh").unwrap().as_text().unwrap();
    assert!(script.contains("rk1 | cm4) ;;"), "{script}");
}
