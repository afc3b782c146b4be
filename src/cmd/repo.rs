//! Opening a generated repository: what every command that changes one does first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    git,
    model::{Answers, InvalidAnswer, Project},
    render::{self, ANSWERS_FILE},
    secrets,
    sync::{self, Applied, Plan},
    UsageError,
};

/// A generated repo, locked against other flakesmith runs for as long as this lives.
pub struct Repo {
    pub dir: PathBuf,
    pub answers: Answers,
    _lock: fs_err::File,
}

impl Repo {
    /// Locks the repo, rolls back a transaction a crash interrupted, and reads its answers.
    pub fn open(dir: &Path) -> Result<Self> {
        // Never through a link: a planted flakesmith.yaml -> ~/.ssh/id_ed25519 is not read.
        let no_answers = std::fs::symlink_metadata(dir.join(ANSWERS_FILE)).is_err();
        // Without its answers only a directory a crashed `init` left has something to roll back.
        if no_answers && std::fs::symlink_metadata(dir.join(".flakesmith")).is_err() {
            return Err(not_a_repo(dir));
        }
        let lock = lock_and_recover(dir)?;
        if std::fs::symlink_metadata(dir.join(ANSWERS_FILE)).is_err() {
            return Err(not_a_repo(dir));
        }
        let bytes = sync::inside::read_file(dir, ANSWERS_FILE)?.unwrap_or_default();
        let text = String::from_utf8(bytes)
            .map_err(|_| InvalidAnswer::new(ANSWERS_FILE, "is not UTF-8 text"))?;
        if sync::has_conflict_markers(&text) {
            return Err(UsageError::new(format!(
                "{ANSWERS_FILE} has conflict markers from an earlier update: keep the answers you want, remove the <<<<<<< ======= >>>>>>> lines, and run the command again"
            ))
            .into());
        }
        let answers = Answers::from_yaml(&text).map_err(in_answers_file)?;
        // Checked here, not only when rendering, so that every command (`check` too, which
        // renders nothing) refuses answers the next `update` would refuse, naming the file.
        Project::from_answers(&answers).map_err(in_answers_file)?;
        if let Some(written_by) = answers.flakesmith_version.as_deref() {
            let running = env!("CARGO_PKG_VERSION");
            if is_newer(written_by, running) {
                eprintln!(
                    "note: {ANSWERS_FILE} was written by flakesmith {written_by}, newer than this one ({running}): what it generates may differ; upgrade flakesmith"
                );
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            answers,
            _lock: lock,
        })
    }

    /// Renders `answers` (this repo's, or changed ones) and plans bringing the repo to it, to
    /// look at only (`diff`, `--dry-run`): a node without an age identity yet shows as a
    /// placeholder in `.sops.yaml`, and none is made.
    pub fn plan(&self, answers: &Answers, options: sync::PlanOptions) -> Result<(Project, Plan)> {
        // Without the base every generated file would look like the user's own.
        sync::check_base(&self.dir)?;
        self.warn_nodes_without_identity(answers)?;
        let project = Project::new(answers, |secrets, nodes| {
            secrets::existing_node_recipients(&self.dir, secrets, nodes)
        })?;
        let plan = sync::plan(&self.dir, &render::render(&project)?, options)?;
        Ok((project, plan))
    }

    /// Like [`Repo::plan`], for a change that will be applied: a node that needs an age
    /// identity gets one (in memory until [`Repo::apply`]), and its recipient is rendered.
    pub fn prepare(&self, answers: &Answers, options: sync::PlanOptions) -> Result<Change> {
        // Without the base every generated file would look like the user's own.
        sync::check_base(&self.dir)?;
        self.warn_nodes_without_identity(answers)?;
        let mut node_keys = secrets::NodeKeys::default();
        let project = Project::new(answers, |secrets, nodes| {
            node_keys = secrets::NodeKeys::prepare(&self.dir, secrets, nodes)?;
            anyhow::Ok(node_keys.recipients())
        })?;
        let plan = sync::plan(&self.dir, &render::render(&project)?, options)?;
        Ok(Change {
            project,
            plan,
            node_keys,
        })
    }

    /// Applies the change in one transaction, node identities included: they are written
    /// (0600, never through a temporary file) just before the renames, and removed again if the
    /// transaction fails or is interrupted.
    pub fn apply(&self, change: &Change) -> Result<Applied> {
        let made = change.node_keys.new_paths();
        let new_files = change.node_keys.new_files(&self.dir);
        let old_base = sync::read_base(&self.dir)?;
        let applied = sync::apply_with(&self.dir, &change.plan, &new_files)?;
        secrets::report_made(&made);
        // The generated files, their base copies, and those of files no longer generated.
        let base_copies = old_base
            .paths()
            .chain(change.plan.new_base.paths())
            .map(|p| format!("{}/{p}", sync::BASE_DIR));
        let paths: Vec<String> = applied
            .written
            .iter()
            .chain(&applied.deleted)
            .cloned()
            .chain(base_copies)
            .collect();
        tell_git(&self.dir, &paths, git::Stage::IntentToAdd);
        Ok(applied)
    }

    /// Says, on stderr, which nodes have a recipient in .sops.yaml but no identity in keys/: a
    /// change goes ahead (a clone may lack keys/ for a while), but not in silence.
    fn warn_nodes_without_identity(&self, answers: &Answers) -> Result<()> {
        for host in secrets::nodes_without_identity(&self.dir, answers)? {
            eprintln!(
                "warning: keys/{host}.age is missing, but .sops.yaml encrypts to node {host}: {}",
                secrets::without_identity_fix(&host)
            );
        }
        Ok(())
    }

    /// Files of the plan that still hold conflict markers an earlier `update` wrote: no
    /// difference to the render any more, but not a finished repo either, so `diff` and `update`
    /// must not report it clean.
    pub fn unresolved_conflicts(&self, plan: &Plan) -> Vec<String> {
        plan.entries
            .iter()
            .map(|(path, _)| path)
            .filter(|path| {
                sync::inside::read_file(&self.dir, path)
                    .ok()
                    .flatten()
                    .is_some_and(|bytes| {
                        sync::has_conflict_markers(&String::from_utf8_lossy(&bytes))
                    })
            })
            .cloned()
            .collect()
    }
}

/// When `dir` is in a git work tree: `paths` (relative to `dir`) that flakesmith wrote go into the
/// index and those it removed leave it, so that the flake sees exactly the generated tree; says
/// what it did. Not being in a work tree is no error: there is nothing to tell.
pub(crate) fn tell_git(dir: &Path, paths: &[String], stage: git::Stage) -> Option<git::Synced> {
    git::work_tree(dir)?;
    match git::sync_index(dir, paths, stage) {
        Ok(synced) => {
            report_ignored(&synced);
            if stage == git::Stage::IntentToAdd && (synced.added > 0 || synced.removed > 0) {
                println!(
                    "git: {} added with --intent-to-add, {} removed from the index (nothing committed)",
                    count(synced.added, "new file"),
                    synced.removed
                );
            }
            Some(synced)
        }
        Err(e) => {
            eprintln!(
                "warning: could not update git's index ({e:#}); the flake sees only files git tracks: `flakesmith check` lists the ones to `git add`"
            );
            None
        }
    }
}

fn report_ignored(synced: &git::Synced) {
    if !synced.ignored.is_empty() {
        eprintln!(
            "warning: git ignores {}, so the flake cannot see it: change .gitignore or `git add -f` it",
            synced.ignored.join(", ")
        );
    }
}

/// After the recipients in .sops.yaml changed: `sops updatekeys` for each file under secrets/
/// that sops has encrypted. The generated placeholder is not encrypted yet, and sops refuses
/// it, so a repo with nothing encrypted gets no such step.
pub fn print_updatekeys(dir: &Path, why: &str) {
    let secrets_dir = dir.join("secrets");
    let mut encrypted: Vec<String> = walkdir::WalkDir::new(&secrets_dir)
        .follow_root_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let path = e
                .path()
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let text = fs_err::read_to_string(e.path()).ok()?;
            crate::check::has_sops_metadata(&path, &text).then_some(path)
        })
        .collect();
    if encrypted.is_empty() {
        return;
    }
    encrypted.sort();
    println!("Next: {why}:");
    for path in encrypted {
        println!("  sops updatekeys {}", crate::render::shell_word(&path));
    }
}

/// Names each file `update` left with conflict markers, on stderr.
pub fn print_unresolved(paths: &[String]) {
    for path in paths {
        eprintln!("{path}: unresolved conflict markers from an earlier update");
    }
}

/// `n` and the noun, plural unless `n` is 1: "1 file", "2 files".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A change ready to apply: the project it renders, the plan, and node identities to write.
pub struct Change {
    pub project: Project,
    pub plan: Plan,
    node_keys: secrets::NodeKeys,
}

impl Change {
    /// For a command that changes the answers (add-node, remove-node): refuses, before it says
    /// what it does, a change whose new answers would not land in flakesmith.yaml (a conflict
    /// with the user's edits), since the next `update` would then undo it.
    pub fn check_answers_land(&self) -> Result<()> {
        let action = self
            .plan
            .entries
            .iter()
            .find(|(path, _)| path == ANSWERS_FILE)
            .map(|(_, action)| action);
        match action {
            None
            | Some(
                sync::Action::Create(_)
                | sync::Action::Update(_)
                | sync::Action::Merge(_)
                // The new answers are written; the user's text is kept beside them.
                | sync::Action::Rewrite { .. }
                | sync::Action::Unchanged,
            ) => Ok(()),
            Some(other) => Err(UsageError::new(format!(
                "{ANSWERS_FILE}: the new answers would not be written to it ({}: your edits and this change touch the same lines); nothing was changed: make the change in {ANSWERS_FILE} by hand and run `flakesmith update`",
                other.label()
            ))
            .into()),
        }
    }

    /// The identities [`Repo::apply`] will write, relative to the repo.
    pub fn node_keys_to_make(&self) -> Vec<String> {
        self.node_keys.new_paths()
    }
}

/// An error in the answers, named as the field of flakesmith.yaml it is in.
fn in_answers_file(e: InvalidAnswer) -> InvalidAnswer {
    match e.field.as_str() {
        ANSWERS_FILE => e,
        field => InvalidAnswer::new(format!("{ANSWERS_FILE}: {field}"), e.message),
    }
}

fn not_a_repo(dir: &Path) -> anyhow::Error {
    UsageError::new(format!(
        "{} has no {ANSWERS_FILE}: not a flakesmith repo (create one with `flakesmith init`, or pass -C DIR)",
        dir.display()
    ))
    .into()
}

/// Locks the repo directory (see [`lock`]) and rolls back a transaction a crash interrupted.
pub(crate) fn lock_and_recover(dir: &Path) -> Result<fs_err::File> {
    let lock = lock(dir)?;
    if let Some(n) = sync::recover(dir)? {
        eprintln!(
            "note: an earlier flakesmith run in {} was interrupted; its change ({n} files) was rolled back",
            dir.display()
        );
    }
    Ok(lock)
}

/// Holds an exclusive lock on the repo directory, so that a second flakesmith run neither changes
/// the repo at the same time nor mistakes the first one's transaction for an interrupted one.
fn lock(dir: &Path) -> Result<fs_err::File> {
    let file = fs_err::File::open(dir)?;
    match file.file().try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(UsageError::new(format!(
            "another flakesmith is working in {}; wait for it to finish",
            dir.display()
        ))
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", dir.display()))
        }
    }
}

/// Whether version `a` is newer than `b` (numeric dotted versions; pre-release tags ignored).
fn is_newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.split(['-', '+'])
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    parse(a) > parse(b)
}

/// The plan's lines that change something (or all, with `all`), as `update --dry-run` shows them.
pub fn print_plan(plan: &Plan, all: bool) {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (path, action) in &plan.entries {
        if all || action.changes_disk() {
            let _ = writeln!(out, "{:>13}  {path}", action.label());
        }
    }
    // A reader that goes away (`| head`) ends the process by SIGPIPE (see main.rs).
    print!("{out}");
}

/// The summary after applying, and the exit outcome: conflicts are findings.
pub fn report(applied: &Applied) -> super::Outcome {
    for path in &applied.kept_beside {
        println!(
            "kept your {path}; flakesmith's version is in {path}{}",
            sync::NEW_SUFFIX
        );
    }
    for (path, kept) in &applied.rewritten {
        println!(
            "rewrote {path}: the change did not merge into your formatting of it; your text is in {kept} (copy your comments back, then delete it)"
        );
    }
    println!(
        "{} written, {} removed.",
        count(applied.written.len(), "file"),
        applied.deleted.len()
    );
    if applied.conflicts.is_empty() {
        super::Outcome::Success
    } else {
        eprintln!(
            "{} conflicts (your edits and flakesmith's change touch the same lines); resolve the <<<<<<< markers in:",
            match applied.conflicts.len() {
                1 => "1 file has".to_owned(),
                n => format!("{n} files have"),
            }
        );
        for path in &applied.conflicts {
            println!("CONFLICT  {path}");
        }
        super::Outcome::Findings
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_compare_numerically() {
        assert!(super::is_newer("0.10.0", "0.9.3"));
        assert!(super::is_newer("1.0.0", "0.99.0"));
        assert!(!super::is_newer("0.1.0", "0.1.0"));
        assert!(!super::is_newer("0.1.0-rc1", "0.1.0"));
    }
}
