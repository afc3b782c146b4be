//! The user's journey where flakesmith meets git and the user's own edits: real flakesmith
//! processes in real git repositories, judged by what git's index holds (a flake in a git work
//! tree sees only the files git tracks) and, in the journey test, by what real Nix sees when it
//! evaluates the flake in place.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::support::flakesmith;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn expect(o: &Output, want: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Runs git in `dir` (with an identity for commits); its stdout.
#[track_caller]
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_owned).collect()
}

/// `git ls-files <which>` in `dir`, relative to it.
fn ls_files(dir: &Path, which: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["ls-files"];
    args.extend_from_slice(which);
    lines(&git(dir, &args))
}

/// Every file under `dir` but .git and keys/ (git-ignored secrets), relative to it.
fn files_on_disk(dir: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("keys/"))
        .collect()
}

/// The index holds exactly the files on disk (keys/ aside): nothing generated is missing from
/// git, nothing removed is left in it.
#[track_caller]
fn assert_index_is_the_tree(repo: &Path, step: &str) {
    let tracked = ls_files(repo, &["--cached"]);
    assert_eq!(tracked, files_on_disk(repo), "{step}: git's index");
    assert!(
        tracked.iter().all(|p| !p.starts_with("keys/")),
        "{step}: keys/ staged"
    );
}

/// A fresh directory to run init in, and a HOME-free flakesmith.
struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// `flakesmith ARGS…` run in the scratch directory.
    fn run(&self, args: &[&str]) -> Output {
        flakesmith(self.tmp.path(), args)
    }

    /// `flakesmith SUBCOMMAND -C <dir> ARGS…`.
    fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all = vec![args[0], "-C", dir.to_str().unwrap()];
        all.extend_from_slice(&args[1..]);
        self.run(&all)
    }
}

#[test]
fn add_node_remove_node_and_update_keep_the_index_in_step_with_the_disk() {
    let s = Scratch::new();
    let out = expect(&s.run(&["init", "repo", "--yes", "--nodes", "4"]), 0);
    let repo = s.path("repo");
    assert!(
        out.contains(&format!(
            "git: initialised a repository in {} and staged",
            "repo"
        )),
        "{out}"
    );
    assert_index_is_the_tree(&repo, "init");
    git(&repo, &["commit", "--quiet", "-m", "init"]);

    // A new node's file, and a second board's worth of changes.
    let out = expect(&s.run_in(&repo, &["add-node", "--bmc-host", "tp2.lan"]), 0);
    assert!(
        out.contains("git: 2 new files added with --intent-to-add"),
        "{out}"
    );
    assert!(ls_files(&repo, &["--cached"]).contains("nodes/rk1-node5.nix"));
    assert_index_is_the_tree(&repo, "add-node");
    // Intent to add: the user reviews the new file with `git diff` before committing.
    assert!(git(&repo, &["diff", "--name-only"]).contains("nodes/rk1-node5.nix"));

    let out = expect(&s.run_in(&repo, &["remove-node", "rk1-node2"]), 0);
    assert!(out.contains("2 removed from the index"), "{out}");
    assert_index_is_the_tree(&repo, "remove-node");
    assert!(!git(&repo, &["status", "--porcelain"]).contains(" D "));

    // An answer changed by hand that adds a file (a second node back) and removes one.
    let answers = std::fs::read_to_string(repo.join("flakesmith.yaml")).unwrap();
    let answers = answers.replace("host: rk1-node3", "host: rk1-node9");
    std::fs::write(repo.join("flakesmith.yaml"), answers).unwrap();
    expect(&s.run_in(&repo, &["update"]), 0);
    assert!(ls_files(&repo, &["--cached"]).contains("nodes/rk1-node9.nix"));
    assert_index_is_the_tree(&repo, "update");
}

#[test]
fn check_names_a_generated_file_git_does_not_track() {
    let s = Scratch::new();
    expect(&s.run(&["init", "repo", "--yes"]), 0);
    let repo = s.path("repo");
    expect(&s.run_in(&repo, &["check"]), 0);
    git(&repo, &["rm", "--cached", "--quiet", "nodes/rk1-node2.nix"]);
    let out = s.run_in(&repo, &["check"]);
    assert_eq!(
        expect(&out, 1),
        "nodes/rk1-node2.nix: generated, but git does not track it, so the flake cannot see it — git add nodes/rk1-node2.nix\n"
    );
}

/// The bootloader blob is flake input only when the answers name it: untracked then, it is a
/// finding; a file of that name the answers do not name is the user's business.
#[test]
fn check_names_the_untracked_bootloader_blob_only_when_the_answers_use_it() {
    let s = Scratch::new();
    let payloads = crate::inject::fixtures::rk35_payloads(s.tmp.path());
    let blob = payloads.combined.to_str().unwrap();
    expect(
        &s.run(&["init", "with", "--yes", "--bootloader-blob", blob]),
        0,
    );
    let with = s.path("with");
    expect(&s.run_in(&with, &["check"]), 0);
    git(&with, &["rm", "--cached", "--quiet", "rk1-bootloader.bin"]);
    assert_eq!(
        expect(&s.run_in(&with, &["check"]), 1),
        "rk1-bootloader.bin: generated, but git does not track it, so the flake cannot see it — git add rk1-bootloader.bin\n"
    );

    expect(&s.run(&["init", "without", "--yes"]), 0);
    let without = s.path("without");
    std::fs::copy(&payloads.combined, without.join("rk1-bootloader.bin")).unwrap();
    expect(&s.run_in(&without, &["check"]), 0);
}
#[test]
fn init_in_an_existing_repository_stages_only_its_own_directory() {
    let s = Scratch::new();
    let parent = s.path("parent");
    std::fs::create_dir(&parent).unwrap();
    git(&parent, &["init", "--quiet"]);
    std::fs::write(parent.join("tracked.txt"), "v1\n").unwrap();
    git(&parent, &["add", "tracked.txt"]);
    git(&parent, &["commit", "--quiet", "-m", "mine"]);
    // The user's unrelated work in progress: a modified and an untracked file.
    std::fs::write(parent.join("tracked.txt"), "v2\n").unwrap();
    std::fs::write(parent.join("notes.txt"), "mine\n").unwrap();

    let out = expect(&flakesmith(&parent, &["init", "sub", "--yes"]), 0);
    let staged = lines(&git(&parent, &["diff", "--cached", "--name-only"]));
    let sub_files: BTreeSet<String> = files_on_disk(&parent.join("sub"))
        .into_iter()
        .map(|p| format!("sub/{p}"))
        .collect();
    assert_eq!(staged, sub_files, "only sub/ is staged");
    assert!(
        out.contains(&format!(
            "git: staged {} files in the existing repository {} (nothing committed)",
            sub_files.len(),
            parent.display()
        )),
        "{out}"
    );
    let status = lines(&git(
        &parent,
        &["status", "--porcelain", "--untracked-files=all"],
    ));
    assert!(status.contains(" M tracked.txt"), "{status:?}");
    assert!(status.contains("?? notes.txt"), "{status:?}");
    assert!(
        !parent.join("sub/.git").exists(),
        "no repository inside the repository"
    );
}

/// The edits the book invites in flakesmith.yaml: a comment, a changed answer, a flow-style list,
/// keys in another order.
fn edit_answers_by_hand(answers: &str) -> String {
    let edited = answers
        .replacen(
            "schema: 1\n",
            "schema: 1\n# rack 2, by the window: ask Sam before reflashing\n",
            1,
        )
        .replacen("admin-user: admin\n", "", 1)
        .replacen("name: ", "admin-user: ops\nname: ", 1)
        .replacen(
            "  nameservers: []\n",
            "  nameservers: [1.1.1.1, 9.9.9.9]\n",
            1,
        );
    assert_ne!(edited, answers);
    assert!(edited.contains("admin-user: ops\nname: "), "{edited}");
    assert!(
        edited.contains("nameservers: [1.1.1.1, 9.9.9.9]"),
        "{edited}"
    );
    edited
}

#[test]
fn update_keeps_the_users_flakesmith_yaml_byte_for_byte() {
    let repo = crate::support::TestRepo::init(&[]);
    let mine = edit_answers_by_hand(&repo.read("flakesmith.yaml"));
    repo.write("flakesmith.yaml", &mine);

    let out = expect(&repo.run(&["update"]), 0);
    assert!(!out.contains("flakesmith.yaml"), "{out}");
    assert_eq!(repo.read("flakesmith.yaml"), mine);
    // The answers did reach the generated files.
    assert!(
        repo.read("common.nix").contains("users.users.ops = {"),
        "admin-user: ops rendered"
    );
    expect(&repo.run(&["diff"]), 0);
    expect(&repo.run(&["update"]), 0);
    assert_eq!(repo.read("flakesmith.yaml"), mine);

    // A change of flakesmith's merges into the user's text: nothing of theirs is lost.
    expect(&repo.run(&["add-node", "--bmc-host", "tp2.lan"]), 0);
    let merged = repo.read("flakesmith.yaml");
    for kept in [
        "# rack 2, by the window: ask Sam before reflashing\n",
        "admin-user: ops\nname: ",
        "  nameservers: [1.1.1.1, 9.9.9.9]\n",
        "- host: rk1-node5\n",
        "bmc-host: tp2.lan\n",
    ] {
        assert!(merged.contains(kept), "{kept:?} in\n{merged}");
    }
    expect(&repo.run(&["remove-node", "rk1-node5"]), 0);
    let after = repo.read("flakesmith.yaml");
    assert!(!after.contains("rk1-node5"), "{after}");
    assert!(after.contains("# rack 2, by the window"), "{after}");
    expect(&repo.run(&["check"]), 0);
}

#[test]
fn a_change_that_meets_the_users_formatting_rewrites_flakesmith_yaml_and_keeps_their_text() {
    let repo = crate::support::TestRepo::init(&["--nodes", "2"]);
    // Every node on one line: add-node's new node cannot merge into that line.
    let answers = repo.read("flakesmith.yaml");
    let start = answers.find("nodes:\n").unwrap();
    let end = answers.find("state-version:").unwrap();
    let mine = format!(
        "{}nodes: [{{host: rk1-node1, board: tp1, slot: 1}}, {{host: rk1-node2, board: tp1, slot: 2}}]\n{}",
        &answers[..start],
        &answers[end..]
    );
    repo.write("flakesmith.yaml", &mine);
    expect(&repo.run(&["update"]), 0);
    assert_eq!(repo.read("flakesmith.yaml"), mine, "same answers: kept");

    let out = expect(&repo.run(&["add-node"]), 0);
    assert!(
        out.contains("rewrote flakesmith.yaml: the change did not merge into your formatting of it; your text is in flakesmith.yaml.flakesmith-old"),
        "{out}"
    );
    let now = repo.read("flakesmith.yaml");
    assert!(
        !now.contains("<<<<<<<") && !now.contains(">>>>>>>"),
        "{now}"
    );
    let answers = flakesmith::model::Answers::from_yaml(&now).unwrap();
    let hosts: Vec<&str> = answers.nodes.iter().map(|n| n.host.as_str()).collect();
    assert_eq!(hosts, ["rk1-node1", "rk1-node2", "rk1-node3"]);
    assert_eq!(repo.read("flakesmith.yaml.flakesmith-old"), mine);
    expect(&repo.run(&["update"]), 0);
    expect(&repo.run(&["check"]), 0);

    // Again, before the user dealt with the first kept text: that one is not overwritten.
    let answers = repo.read("flakesmith.yaml");
    let start = answers.find("nodes:\n").unwrap();
    let end = answers.find("state-version:").unwrap();
    let again = format!(
        "{}nodes: [{{host: rk1-node1, board: tp1, slot: 1}}, {{host: rk1-node2, board: tp1, slot: 2}}, {{host: rk1-node3, board: tp1, slot: 3}}]\n{}",
        &answers[..start],
        &answers[end..]
    );
    repo.write("flakesmith.yaml", &again);
    let out = expect(&repo.run(&["add-node"]), 0);
    assert!(
        out.contains("your text is in flakesmith.yaml.flakesmith-old.2"),
        "{out}"
    );
    assert_eq!(repo.read("flakesmith.yaml.flakesmith-old"), mine);
    assert_eq!(repo.read("flakesmith.yaml.flakesmith-old.2"), again);
}

/// What the flake at `<top>/<sub>` is, for Nix, evaluated in place as a git flake
/// (`git+file://<top>?dir=<sub>`, the same source a plain `nix build` there reads) against the
/// stand-in inputs: its machines must be exactly `hosts`, each with its own node file read (an
/// untracked one fails here as `nix build .#<host>` does), and the source Nix copied must hold
/// exactly the files on disk (keys/ aside), and nothing of the parent repository's untracked.
/// What the stand-ins cannot show: that the modules evaluate against real nixpkgs (see
/// nix_eval.rs).
#[track_caller]
fn assert_flake_sees(top: &Path, sub: &str, hosts: &[&str], step: &str) {
    use crate::nix_eval::{nix_with_stand_ins, stand_in_inputs};
    use crate::support::run_ok;
    let dir = top.join(sub);
    let overrides = stand_in_inputs(&std::fs::read_to_string(dir.join("flake.nix")).unwrap());
    let reference = format!("git+file://{}?dir={sub}", top.display());
    let out = run_ok(&mut nix_with_stand_ins(
        &overrides,
        &[
            "eval",
            "--json",
            &format!("{reference}#nixosConfigurations"),
            "--apply",
            "cs: builtins.mapAttrs (_: c: c.config.networking.hostName) cs",
        ],
    ));
    let machines: std::collections::BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    let mut want: std::collections::BTreeMap<String, String> = hosts
        .iter()
        .map(|h| (h.to_string(), h.to_string()))
        .collect();
    // The generic `rk1` configuration (one image for any node) has no host name of its own.
    want.insert("rk1".into(), String::new());
    assert_eq!(machines, want, "{step}: nixosConfigurations");

    let metadata = run_ok(&mut nix_with_stand_ins(
        &overrides,
        &["flake", "metadata", "--json", &reference],
    ));
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let source = crate::support::store_path_on_disk(Path::new(metadata["path"].as_str().unwrap()));
    assert_eq!(
        files_on_disk(&source.join(sub)),
        files_on_disk(&dir),
        "{step}: the files the flake sees"
    );
    assert!(!source.join("notes.txt").exists(), "{step}: notes.txt");
}

/// `git status` in the parent shows flakesmith's files (under `sub/`) and the user's untracked
/// notes.txt, nothing else; notes.txt is never staged.
#[track_caller]
fn assert_status_is_only_generated(top: &Path, sub: &str, step: &str) {
    let status = git(top, &["status", "--porcelain", "--untracked-files=all"]);
    for line in status.lines() {
        if line == "?? notes.txt" {
            continue;
        }
        assert!(
            !line.starts_with("??") && line[3..].starts_with(&format!("{sub}/")),
            "{step}: unrelated in git status: {line:?}\n{status}"
        );
    }
    assert!(status.contains("?? notes.txt"), "{step}: {status}");
    assert_index_is_the_tree(&top.join(sub), step);
}

/// init → add-node (a second board) → remove-node → hand edits of flakesmith.yaml and of a
/// generated file → diff → update, as a user walks it in their own git repository, each step a
/// real flakesmith process, the flake evaluated in place by real Nix after every step.
#[test]
fn the_journey_from_init_to_update_keeps_the_flake_and_git_in_step() {
    let s = Scratch::new();
    let top = s.path("infra");
    std::fs::create_dir(&top).unwrap();
    git(&top, &["init", "--quiet"]);
    std::fs::write(top.join("README"), "my infrastructure\n").unwrap();
    git(&top, &["add", "README"]);
    git(&top, &["commit", "--quiet", "-m", "start"]);
    std::fs::write(top.join("notes.txt"), "not for git\n").unwrap();
    let sub = "cluster";
    let dir = top.join(sub);

    let key = crate::support::ADMIN_SSH_KEY;
    expect(
        &flakesmith(
            &top,
            &["init", sub, "--yes", "--nodes", "4", "--ssh-key", key],
        ),
        0,
    );
    assert_status_is_only_generated(&top, sub, "init");
    assert_flake_sees(
        &top,
        sub,
        &["rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"],
        "init",
    );
    git(&top, &["commit", "--quiet", "-m", "cluster"]);

    expect(&flakesmith(&dir, &["add-node", "--bmc-host", "tp2.lan"]), 0);
    let five = [
        "rk1-node1",
        "rk1-node2",
        "rk1-node3",
        "rk1-node4",
        "rk1-node5",
    ];
    assert_status_is_only_generated(&top, sub, "add-node");
    assert_flake_sees(&top, sub, &five, "add-node");

    expect(&flakesmith(&dir, &["remove-node", "rk1-node2"]), 0);
    let four = ["rk1-node1", "rk1-node3", "rk1-node4", "rk1-node5"];
    assert_status_is_only_generated(&top, sub, "remove-node");
    assert_flake_sees(&top, sub, &four, "remove-node");

    let answers =
        edit_answers_by_hand(&std::fs::read_to_string(dir.join("flakesmith.yaml")).unwrap());
    std::fs::write(dir.join("flakesmith.yaml"), &answers).unwrap();
    let node1 = std::fs::read_to_string(dir.join("nodes/rk1-node1.nix")).unwrap()
        + "# the node with the serial cable\n";
    std::fs::write(dir.join("nodes/rk1-node1.nix"), &node1).unwrap();
    assert_status_is_only_generated(&top, sub, "hand edits");
    assert_flake_sees(&top, sub, &four, "hand edits");

    let out = flakesmith(&dir, &["diff"]);
    let diff = expect(&out, 1);
    assert!(diff.contains("+++ b/common.nix"), "{diff}");
    assert!(!diff.contains("flakesmith.yaml"), "{diff}");
    assert_status_is_only_generated(&top, sub, "diff");
    assert_flake_sees(&top, sub, &four, "diff");

    expect(&flakesmith(&dir, &["update"]), 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("flakesmith.yaml")).unwrap(),
        answers
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("nodes/rk1-node1.nix")).unwrap(),
        node1
    );
    assert!(std::fs::read_to_string(dir.join("common.nix"))
        .unwrap()
        .contains("users.users.ops = {"));
    assert_status_is_only_generated(&top, sub, "update");
    assert_flake_sees(&top, sub, &four, "update");
    expect(&flakesmith(&dir, &["check"]), 0);
}
