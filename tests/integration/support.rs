//! Test builders: a project described in a sentence, rendered in memory or written to a
//! temporary repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flakesmith::model::{
    answers::{BoardAnswers, ForeignBuild, NodeAnswers, NodeRecipients, SecretsMode},
    Answers,
};
use flakesmith::render::Tree;

/// Real keys made once with `ssh-keygen -t ed25519` and `age-keygen`; only the public halves.
pub const ADMIN_SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMyS912tw1l5eg1HEyWuK7UbFLlpcqa6nSGAArPLv+Wd admin@example";
pub const DEPLOY_SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPC1PgFvRk0igWAFdPjGLHr2cn2F0xgGi5pNbWVqR6/ deploy@example";
pub const ADMIN_AGE_RECIPIENT: &str =
    "age1ur8c0ddspyrwel4838hzzr0t8v35djjspg9ehs2tfwfmhxssauvqcj38vc";

/// `openssl passwd -6 -salt flakesmithdemo temporary-example`.
pub const TEMPORARY_PASSWORD_HASH: &str = "$6$flakesmithdemo$AevaT8Oejpadwd3M7v7u01SAzHSG6KXe7DC.ckIjzEY3kqfTgL7HwS.fARe2sV7l2DRBRRGCZ6joaitZklPgq0";

/// The Nix settings every process of this test binary runs with: set once in `NIX_CONFIG`, before
/// any test starts (main.rs), so that every `nix` the tests run, directly or through flakesmith
/// and the generated scripts, gets them. A fresh Debian's nix-bin has no nix.conf, no nixbld group
/// and no daemon:
/// - as root the store is /nix/store; builds run as root, unsandboxed (the test derivations call
///   the host's /bin/sh).
/// - as a normal user /nix/store is not writable, so Nix uses a store of its own under the target
///   directory (a chroot store; builds are sandboxed in a user namespace, with the host's /bin and
///   /usr visible for those test derivations). A user with a running nix-daemon keeps it.
///
/// And for everyone, no flake evaluation cache: tests evaluate the same generated flakes in
/// parallel, and Nix 2.8's cache (one SQLite file per flake) answered "busy", then gave wrong
/// results ("attribute 'packages.x86_64-linux.packages' is unexpectedly missing", a string's
/// .drv context "not in the Nix store") in full runs under load.
pub fn nix_config() -> String {
    format!("eval-cache = false\n{}", store_config())
}

fn store_config() -> String {
    let is_root = unsafe { libc::geteuid() } == 0;
    match chroot_store() {
        _ if is_root => "build-users-group =\nsandbox = false\n".to_owned(),
        Some(store) => {
            let host_paths: Vec<&str> = ["/bin", "/lib", "/lib64", "/usr"]
                .into_iter()
                .filter(|p| Path::new(p).exists())
                .collect();
            format!(
                "store = {}\nsandbox-paths = {}\n",
                store.display(),
                host_paths.join(" ")
            )
        }
        None => String::new(),
    }
}

/// The chroot store the tests give Nix: for a normal user without a nix-daemon, who cannot write
/// /nix/store.
fn chroot_store() -> Option<PathBuf> {
    let is_root = unsafe { libc::geteuid() } == 0;
    let has_daemon = Path::new("/nix/var/nix/daemon-socket/socket").exists();
    (!is_root && !has_daemon)
        .then(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("nix-chroot-store"))
}

/// The Nix settings every test runs with ([`nix_config`], already in `NIX_CONFIG`) and `extra`
/// after them, for a command that needs more.
pub fn nix_config_with(extra: &str) -> String {
    format!("{}{extra}", std::env::var("NIX_CONFIG").unwrap_or_default())
}

/// Where a store path's files are on this machine's disk: under the chroot store's root when the
/// tests gave Nix one (the product's mapping, which `flakesmith build` uses).
pub fn store_path_on_disk(store_path: &Path) -> PathBuf {
    flakesmith::nix::prereq::store_path_on_disk(chroot_store().as_deref(), store_path)
}

/// The repository this test binary belongs to.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// A project to render, built up in words: `Project::default().with_nodes(6).with_sops().render()`.
///
/// `default()` is flakesmith's default answers (a 4-node RK1 cluster on one board) plus one
/// fixed SSH key, so the output is deterministic and someone can log in.
#[derive(Debug, Clone)]
pub struct Project {
    answers: Answers,
}

impl Default for Project {
    fn default() -> Self {
        let answers = Answers {
            ssh_keys: vec![ADMIN_SSH_KEY.to_owned()],
            ..Answers::default()
        };
        Self { answers }
    }
}

impl Project {
    pub fn from_answers(answers: Answers) -> Self {
        Self { answers }
    }

    pub fn with_nodes(mut self, count: usize) -> Self {
        self.answers
            .set_node_count(count, flakesmith::model::answers::DEFAULT_HOST_PREFIX);
        self
    }

    pub fn with_sops(mut self) -> Self {
        self.answers.secrets.mode = SecretsMode::Sops;
        self.answers.secrets.deployment_key = None;
        self.answers.secrets.admin_age_recipients = vec![ADMIN_AGE_RECIPIENT.to_owned()];
        self
    }

    /// Nodes decrypt with their SSH host keys (ssh-to-age) rather than an age identity.
    pub fn with_ssh_host_key_recipients(mut self) -> Self {
        self.answers.secrets.node_recipients = NodeRecipients::SshHostKeys;
        self
    }

    pub fn with_deployment_key(mut self) -> Self {
        self.answers.secrets.mode = SecretsMode::DeploymentKeys;
        self.answers.secrets.deployment_key = Some(DEPLOY_SSH_KEY.to_owned());
        self
    }

    /// A console password the admin must change at first login (the hash of "temporary-example").
    pub fn with_temporary_password(mut self) -> Self {
        self.answers.temporary_password_hash = Some(TEMPORARY_PASSWORD_HASH.to_owned());
        self
    }

    pub fn with_dots(mut self, url: &str) -> Self {
        self.answers.dots = Some(url.to_owned());
        self
    }

    /// Static addresses 10.0.0.11, .12, … behind gateway 10.0.0.1.
    pub fn with_static_addresses(mut self) -> Self {
        self.answers.network.gateway = Some("10.0.0.1".into());
        for (i, node) in self.answers.nodes.iter_mut().enumerate() {
            node.address = Some(format!("10.0.0.{}/24", 11 + i));
        }
        self
    }

    pub fn with_bootloader_blob(mut self) -> Self {
        self.answers.bootloader.blob = Some("rk1-bootloader.bin".into());
        self
    }

    pub fn emulated(mut self) -> Self {
        self.answers.build.foreign = ForeignBuild::Emulated;
        self
    }

    pub fn built_on(mut self, systems: &[&str]) -> Self {
        self.answers.build.systems = systems.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn with_board(mut self, name: &str, bmc_host: &str) -> Self {
        self.answers.boards.push(BoardAnswers {
            name: name.into(),
            bmc_host: bmc_host.into(),
        });
        self
    }

    pub fn with_node(mut self, host: &str, board: &str, slot: u8) -> Self {
        self.answers.nodes.push(NodeAnswers {
            host: host.into(),
            board: board.into(),
            slot,
            address: None,
            module: Default::default(),
        });
        self
    }

    /// Puts a Raspberry Pi CM4 in these nodes' slots.
    pub fn with_cm4(mut self, hosts: &[&str]) -> Self {
        for node in &mut self.answers.nodes {
            if hosts.contains(&node.host.as_str()) {
                node.module = flakesmith::model::Module::Cm4;
            }
        }
        self
    }

    pub fn answers(&self) -> &Answers {
        &self.answers
    }

    /// Validates and renders; a failure is a test failure that names the cause.
    pub fn render(&self) -> Tree {
        let project = flakesmith::model::Project::from_answers(&self.answers)
            .unwrap_or_else(|e| panic!("test answers do not validate: {e}"));
        flakesmith::render::render(&project).unwrap_or_else(|e| panic!("render failed: {e}"))
    }
}

/// A case under snapshots/: its answers file, and the tree committed beside it.
pub struct SnapshotCase {
    pub name: String,
    pub dir: PathBuf,
    pub answers: Answers,
}

impl SnapshotCase {
    pub fn tree_dir(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// The rendered tree as it is committed: the vendored injector sources, which are
    /// `src/rockchip/` byte for byte (tests/integration/inject.rs checks that), stand in the
    /// snapshot as one SHA256SUMS file, so an injector change shows as a checksum line per
    /// generated repo rather than as the same source diff repeated in every case.
    pub fn render(&self) -> Tree {
        digest_vendored_sources(Project::from_answers(self.answers.clone()).render())
    }
}

/// Replaces `rk-inject/src/rockchip/*` with `rk-inject/src/rockchip/SHA256SUMS`.
pub fn digest_vendored_sources(tree: Tree) -> Tree {
    use sha2::{Digest, Sha256};
    const VENDORED: &str = "rk-inject/src/rockchip/";
    let mut sums = String::new();
    let mut out = Tree::new();
    for (path, file) in tree.iter() {
        match path.strip_prefix(VENDORED) {
            Some(name) => sums.push_str(&format!(
                "{}  {name}\n",
                hex::encode(Sha256::digest(&file.contents))
            )),
            None => out.insert(path, file.clone()),
        }
    }
    if !sums.is_empty() {
        out.insert(
            format!("{VENDORED}SHA256SUMS"),
            flakesmith::render::TreeFile::text(sums),
        );
    }
    out
}

/// Whether this run rewrites the golden files (snapshots/, book/src/cli-reference.md) instead
/// of comparing against them: only `UPDATE_SNAPSHOTS=1`, so a stray `UPDATE_SNAPSHOTS=0` or an
/// empty value still compares. .ci/run unsets it and fails on a changed work tree, since a
/// rewriting run passes whatever the output is.
pub fn updating_snapshots() -> bool {
    update_requested(std::env::var_os("UPDATE_SNAPSHOTS").as_deref())
}

pub fn update_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// Every snapshots/<case>/answers.yaml, in name order.
pub fn snapshot_cases() -> Vec<SnapshotCase> {
    let cases =
        read_snapshot_cases(&repo_root().join("snapshots")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cases.len() >= 3,
        "expected at least three snapshot cases, found {}",
        cases.len()
    );
    cases
}

/// The cases under `root`, in name order. Every entry must be a case directory with an
/// answers.yaml: one without is an error, not a case silently left out of every check.
pub fn read_snapshot_cases(root: &Path) -> Result<Vec<SnapshotCase>, String> {
    let mut cases = Vec::new();
    let entries = fs_err::read_dir(root).map_err(|e| e.to_string())?;
    for entry in entries {
        let dir = entry
            .map_err(|e| format!("{}: {e}", root.display()))?
            .path();
        let answers = dir.join("answers.yaml");
        if !answers.is_file() {
            return Err(format!(
                "{}: not a snapshot case (a directory with answers.yaml); add answers.yaml or remove it",
                dir.display()
            ));
        }
        let text = fs_err::read_to_string(&answers).map_err(|e| e.to_string())?;
        let answers =
            Answers::from_yaml(&text).map_err(|e| format!("{}: {e}", answers.display()))?;
        cases.push(SnapshotCase {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            dir,
            answers,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// The flakesmith binary these tests run.
pub const FLAKESMITH: &str = env!("CARGO_BIN_EXE_flakesmith");

/// An empty HOME (under the target directory), for runs that need no HOME of their own.
pub fn empty_home() -> PathBuf {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// `flakesmith` as every test runs it: HOME an empty directory, and nothing of the environment of
/// whoever runs the tests that would change what it does (SOPS_AGE_KEY_FILE, XDG_STATE_HOME, a
/// failpoint, colours). A test adds its own on top: a HOME with keys, a failpoint, NIX_CONFIG, a
/// time limit (`assert_cmd::Command::from_std`), a terminal (expectrl).
pub fn flakesmith_command() -> Command {
    let mut cmd = Command::new(FLAKESMITH);
    cmd.env("HOME", empty_home())
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("FLAKESMITH_FAILPOINT")
        .env_remove("XDG_STATE_HOME")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs flakesmith ([`flakesmith_command`]) in `dir`, stdin empty (no terminal).
pub fn flakesmith(dir: &Path, args: &[&str]) -> Output {
    flakesmith_env(dir, args, &[])
}

pub fn flakesmith_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = flakesmith_command();
    cmd.args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
pub fn expect(o: &Output, want: i32) {
    assert_eq!(
        code(o),
        want,
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// The temporary repository of the tests: `<tmp>/repo`, generated by `flakesmith init`
/// ([`TestRepo::init`]) or a rendered tree written as it is ([`TestRepo::from_tree`]); removed
/// when dropped.
pub struct TestRepo {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl TestRepo {
    /// `flakesmith init repo --yes --no-git ARGS…`, which must succeed.
    pub fn init(args: &[&str]) -> Self {
        let mut all = vec!["--no-git"];
        all.extend_from_slice(args);
        Self::init_with_git(&all)
    }

    /// As [`TestRepo::init`], without `--no-git`: a git repository of its own, init's files
    /// staged.
    pub fn init_with_git(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let mut all = vec!["init", "repo", "--yes"];
        all.extend_from_slice(args);
        expect(&flakesmith(tmp.path(), &all), 0);
        Self { _tmp: tmp, dir }
    }

    /// `tree` written to the repo as it is (no base record, no node identities, no git).
    pub fn from_tree(tree: &Tree) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("flakesmith-test-")
            .tempdir()
            .expect("a temporary directory");
        let dir = tmp.path().join("repo");
        fs_err::create_dir(&dir).unwrap();
        let repo = Self { _tmp: tmp, dir };
        for (path, file) in tree.iter() {
            repo.write(path, &file.contents);
            if file.executable {
                use std::os::unix::fs::PermissionsExt;
                fs_err::set_permissions(
                    repo.path().join(path),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            }
        }
        repo
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn has(&self, relative: &str) -> bool {
        self.dir.join(relative).exists()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs `flakesmith SUBCOMMAND -C <repo> ARGS…` from outside the repo, so that not even a
    /// core file of a simulated crash can land in it.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let dir = self.dir.to_str().unwrap();
        let mut all = vec![args[0], "-C", dir];
        all.extend_from_slice(&args[1..]);
        flakesmith_env(self._tmp.path(), &all, env)
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Writes `relative`, and the directories it needs.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.dir.join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, contents).unwrap();
    }

    pub fn edit(&self, path: &str, f: impl FnOnce(&str) -> String) {
        let new = f(&self.read(path));
        self.write(path, &new);
    }

    /// Every file and directory under the repo, with its bytes and mode.
    pub fn snapshot(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        tree_of(&self.dir)
    }

    /// The file in the repo (not flakesmith.yaml or the base record) whose text contains `needle`.
    pub fn file_containing(&self, needle: &str) -> String {
        self.snapshot()
            .into_iter()
            .find(|(p, (_, b))| {
                !p.starts_with(".flakesmith") && p != "flakesmith.yaml" && text(b).contains(needle)
            })
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("no generated file contains {needle}"))
    }
}

pub fn tree_of(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = e.metadata().unwrap();
            let bytes = if meta.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                b"<dir>".to_vec()
            };
            (rel, (meta.permissions().mode(), bytes))
        })
        .collect()
}

#[track_caller]
pub fn assert_same_tree(
    before: &BTreeMap<String, (u32, Vec<u8>)>,
    after: &BTreeMap<String, (u32, Vec<u8>)>,
) {
    let differing: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(differing.is_empty(), "the repo changed: {differing:?}");
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (is it installed? see .ci/run)"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The trees every check runs over: each snapshot case, plus variants the cases do not cover.
pub fn all_variants() -> Vec<(String, Tree)> {
    let mut trees: Vec<(String, Tree)> = snapshot_cases()
        .into_iter()
        .map(|case| (case.name.clone(), case.render()))
        .collect();
    let extra = [
        (
            "one-node-blob-sops",
            Project::default()
                .with_nodes(1)
                .with_sops()
                .with_bootloader_blob(),
        ),
        (
            "cross-x86-only",
            Project::default().built_on(&["x86_64-linux"]),
        ),
        (
            "ssh-host-key-recipients",
            Project::default()
                .with_sops()
                .with_ssh_host_key_recipients(),
        ),
        (
            "emulated-deployment-keys",
            Project::default().emulated().with_deployment_key(),
        ),
        (
            "temporary-password",
            Project::default().with_temporary_password(),
        ),
        (
            "eight-nodes-static",
            Project::default().with_nodes(8).with_static_addresses(),
        ),
        (
            "second-board-ipv6-bmc-dots",
            Project::default()
                .with_board("rack2", "fd00::2")
                .with_node("storage", "rack2", 3)
                .with_dots("git+https://example.org/dots.git"),
        ),
    ];
    trees.extend(
        extra
            .into_iter()
            .map(|(name, p)| (name.to_owned(), p.render())),
    );
    trees.extend(crate::cloud::variants());
    trees
}

/// `chattr +i` on files, undone when dropped (a panicking test included), so the
/// temporary directory can be removed.
pub struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    /// Root ignores permission bits, so an immutable file is the way to make a write or a rename
    /// fail for root too.
    /// It needs a file system with inode flags (ext4, xfs, btrfs); tmpfs and overlayfs lack them.
    pub fn set(path: &Path) -> Self {
        let out = Command::new("chattr").arg("+i").arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "chattr +i {}: {} (this test needs TMPDIR on ext4, xfs or btrfs)",
            path.display(),
            text(&out.stderr)
        );
        Self(vec![path.to_owned()])
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(path).status();
        }
    }
}
