//! The hostile repository: everything in a repository is input from whoever last pushed to it.
//! A repository is planted with what a pull request could carry (a crafted rollback journal,
//! symlinks wherever a generated file or its temporary goes, values that are private keys),
//! next to files flakesmith must never read or echo (keys/ identities, a fake ~/.ssh and sops
//! key through HOME); then every subcommand runs in it. Nothing outside the repository may
//! change, no secret may reach stdout or stderr, and none may reach the Nix store.
//!
//! book/src/security.md lists the attacks and what each proves.

use std::{
    collections::BTreeMap,
    os::unix::fs::{symlink, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sha2::{Digest, Sha256};

use crate::build::store_files_holding;
use crate::init_cli::assert_no_secret;
use crate::support::run_ok;

/// A scratch world: a repository, a sentinel tree beside it that must not change, and a HOME.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let world = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let outside = world.outside();
        std::fs::create_dir_all(outside.join("victim_dir/deep")).unwrap();
        for (name, text) in [
            ("victim.txt", "the user's file\n"),
            ("victim_dir/deep/data", "more of the user's data\n"),
            ("victim-mode.txt", "mode 0644, must stay so\n"),
            ("victim.img", "an image that is not the repo's\n"),
        ] {
            std::fs::write(outside.join(name), text).unwrap();
        }
        // A fake HOME with an SSH key pair and a sops age key, as a user has them.
        let ssh = world.home().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "user@host", "-f"])
                .arg(ssh.join("id_ed25519")),
        );
        let sops = world.home().join(".config/sops/age");
        std::fs::create_dir_all(&sops).unwrap();
        run_ok(
            Command::new("age-keygen")
                .arg("-o")
                .arg(sops.join("keys.txt")),
        );
        world
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    fn outside(&self) -> PathBuf {
        self.path("outside")
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn flakesmith(&self, args: &[&str]) -> Output {
        assert_cmd::Command::from_std(crate::support::flakesmith_command())
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.home())
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("NO_COLOR", "1")
            // No network, no cache, no builders: nix fails on the inputs after it has copied
            // whatever it was given, which is what this looks at.
            // Added to the settings every test runs with (support::nix_config).
            .env(
                "NIX_CONFIG",
                crate::support::nix_config_with(
                    "substituters =\nbuilders =\nextra-platforms =\nconnect-timeout = 1\n",
                ),
            )
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap()
    }

    /// Every secret a command could leak: the repo's node identities and HOME's keys.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for dir in [
            self.repo().join("keys"),
            self.home().join(".ssh"),
            self.home().join(".config/sops/age"),
        ] {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".pub") && name != ".gitignore" && entry.path().is_file() {
                    secrets.push(std::fs::read_to_string(entry.path()).unwrap());
                }
            }
        }
        secrets
    }
}

/// Type, mode and content (or link target) of everything under `root`, without following links.
fn tree_state(root: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.path().symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(e.path()).unwrap().display()
                )
            } else if meta.is_dir() {
                format!("dir {:o}", meta.permissions().mode())
            } else {
                format!(
                    "file {:o} {}",
                    meta.permissions().mode(),
                    hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap()))
                )
            };
            (
                e.path().strip_prefix(root).unwrap().display().to_string(),
                what,
            )
        })
        .collect()
}

/// No secret in the output, and none in the store.
fn assert_nothing_leaked(world: &World, what: &str, out: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in world.secrets() {
        assert_no_secret(&text, &secret, what);
    }
}

fn assert_no_secret_in_store(world: &World) {
    for secret in world.secrets() {
        for line in secret
            .lines()
            .filter(|l| l.len() >= 40 && !l.starts_with('#'))
        {
            let body = line.trim_start_matches("-----BEGIN OPENSSH PRIVATE KEY-----");
            assert_eq!(
                store_files_holding(body),
                Vec::<PathBuf>::new(),
                "a secret reached the store"
            );
        }
    }
}

/// A committed repository, made by flakesmith itself.
fn generated_repo(world: &World, extra: &[&str]) {
    let pub_key = world.home().join(".ssh/id_ed25519.pub");
    let mut args = vec!["init", "repo", "--yes", "--nodes", "3", "--ssh-key"];
    let pub_key = pub_key.to_str().unwrap().to_owned();
    args.push(&pub_key);
    args.extend_from_slice(extra);
    let out = world.flakesmith(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_leaked(world, "init", &out);
}

fn git(repo: &Path, args: &[&str]) {
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args),
    );
}

/// Every subcommand, in the repository as it stands; returns (command, output) pairs.
fn every_subcommand(world: &World) -> Vec<(String, Output)> {
    let repo = world.repo();
    let repo = repo.to_str().unwrap();
    let key = format!("{repo}/keys/rk1-node1.age");
    let outside_img = world.outside().join("victim.img");
    let outside_img = outside_img.to_str().unwrap();
    let answers = format!("{repo}/flakesmith.yaml");
    let runs: Vec<Vec<&str>> = vec![
        vec!["diff", "-C", repo],
        vec!["check", "-C", repo],
        vec!["add-node", "-C", repo, "rk1-node5"],
        vec!["add-node", "-C", repo],
        vec!["remove-node", "-C", repo, "rk1-node2"],
        vec!["update", "-C", repo],
        vec!["diff", "-C", repo],
        vec!["build", "--all", "--dry-run", "-C", repo],
        // A key where a public key or a loader is expected, and an image outside the repo.
        vec!["init", "--yes", "elsewhere", "--ssh-key", &key],
        vec!["init", "--yes", "elsewhere2", "--answers", &answers],
        vec!["remove-node", "-C", repo, &key],
        vec![
            "inject",
            "write",
            "--dry-run",
            "--image",
            outside_img,
            "--bootloader",
            &key,
        ],
        vec!["inject", "verify", "--image", &key],
    ];
    runs.into_iter()
        .map(|args| (args.join(" "), world.flakesmith(&args)))
        .collect()
}

#[test]
fn a_hostile_repository_leaks_no_secret_to_output_or_store() {
    let world = World::new();
    generated_repo(&world, &[]);
    let repo = world.repo();
    // Values that are secrets, committed into the answers a command reads.
    let identity = std::fs::read_to_string(repo.join("keys/rk1-node1.age")).unwrap();
    let secret = identity
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let answers = std::fs::read_to_string(repo.join("flakesmith.yaml")).unwrap();
    std::fs::write(
        repo.join("flakesmith.yaml"),
        answers.replacen(
            "nixpkgs-branch: nixos-unstable",
            &format!("nixpkgs-branch: {secret}"),
            1,
        ),
    )
    .unwrap();
    git(&repo, &["add", "--all"]);
    git(&repo, &["commit", "-qm", "hostile"]);
    let outside = tree_state(&world.outside());
    let home = tree_state(&world.home());

    for (what, out) in every_subcommand(&world) {
        assert_nothing_leaked(&world, &what, &out);
    }
    assert_no_secret_in_store(&world);
    assert_eq!(
        tree_state(&world.outside()),
        outside,
        "something outside the repo changed"
    );
    assert_eq!(tree_state(&world.home()), home, "HOME changed");

    // The same repository without git (--no-git, an unpacked archive): Nix gets a filtered copy.
    std::fs::remove_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join("flakesmith.yaml"), &answers).unwrap();
    let out = world.flakesmith(&["build", "--all", "--dry-run", "-C", repo.to_str().unwrap()]);
    assert_nothing_leaked(&world, "build --dry-run without git", &out);
    assert_no_secret_in_store(&world);
}

/// Plants a journal that names paths outside the repository, and symlinks out of it wherever a
/// generated file or its staged temporary goes.
fn plant_traps(world: &World) {
    let repo = world.repo();
    let outside = world.outside();
    let abs = |p: &str| outside.join(p).display().to_string();
    let journal = serde_json::json!({
        "created_dirs": ["../outside/victim_dir", abs("victim_dir")],
        "created_files": ["../outside/victim.txt", abs("victim-mode.txt")],
        "ops": [
            {"dest": "../outside/victim.txt", "tmp": "../outside/victim_dir/deep/data", "backup": null},
            {"dest": abs("victim.img"), "tmp": null, "backup": "../../outside/victim.txt"},
        ],
    });
    std::fs::create_dir_all(repo.join(".flakesmith/txn")).unwrap();
    std::fs::write(repo.join(".flakesmith/txn/journal"), journal.to_string()).unwrap();
    // Temporaries of files add-node, remove-node and update write, and files they create.
    for (link, target) in [
        ("nodes/.rk1-node5.nix.flakesmith-tmp", "victim.txt"),
        ("nodes/.rk1-node4.nix.flakesmith-tmp", "victim-mode.txt"),
        (".flakesmith-tmp-flakesmith.yaml", "victim.txt"),
        ("..flakesmith.yaml.flakesmith-tmp", "victim.txt"),
        ("..sops.yaml.flakesmith-tmp", "victim.txt"),
        ("deploy/.rk1-deploy.sh.flakesmith-tmp", "victim-mode.txt"),
        ("nodes/rk1-node5.nix", "victim_dir/deep/data"),
        ("keys/rk1-node5.age", "victim.txt"),
        ("keys/rk1-node4.age", "victim_dir/new.age"),
        ("README.md.flakesmith-new", "victim.txt"),
        ("flakesmith.yaml.flakesmith-new", "victim.txt"),
    ] {
        let at = repo.join(link);
        let _ = std::fs::remove_file(&at);
        symlink(outside.join(target), at).unwrap();
    }
    // A generated file that is itself a link out of the repository.
    std::fs::remove_file(repo.join("README.md")).unwrap();
    symlink(outside.join("victim.txt"), repo.join("README.md")).unwrap();
    git(&repo, &["add", "--all", "--force", "."]);
    git(&repo, &["reset", "-q", "keys"]);
    git(&repo, &["commit", "-qm", "traps"]);
}

#[test]
fn a_hostile_repository_changes_nothing_outside_it() {
    let world = World::new();
    generated_repo(&world, &[]);
    plant_traps(&world);
    let mut before = (tree_state(&world.outside()), tree_state(&world.home()));
    let mut changed_by = Vec::new();
    for (what, out) in every_subcommand(&world) {
        assert_nothing_leaked(&world, &what, &out);
        let now = (tree_state(&world.outside()), tree_state(&world.home()));
        if now != before {
            changed_by.push(what);
            before = now;
        }
    }
    assert_eq!(
        changed_by,
        Vec::<String>::new(),
        "these changed something outside the repo"
    );
    assert_no_secret_in_store(&world);
}
