//! Writing to disk, all or nothing.
//!
//! A new project is assembled in a temporary directory beside its destination and renamed into
//! place, so a crash leaves either nothing or the whole project. An existing repo is changed by a
//! journaled transaction ([`super::txn`]): an error or a crash part-way is rolled back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{
    base::BASE_DIR,
    inside,
    plan::{Action, Plan},
    txn::{self, FileChange, NewFile},
};
use crate::render::Tree;

/// Suffix of the generated version written beside a file flakesmith must not overwrite.
pub const NEW_SUFFIX: &str = ".flakesmith-new";

/// Suffix of the user's text of flakesmith.yaml kept when the new answers had to be rewritten.
pub const OLD_SUFFIX: &str = ".flakesmith-old";

/// Creates `dir` holding `tree`, its base record and `extra` files of the user's (a bootloader
/// blob, node identities: created as they are, not recorded as generated). `dir` must not exist,
/// or be empty.
///
/// Everything is written into a fresh staging directory beside `dir`, the file system is synced
/// once (syncfs), and the staging directory is renamed into place: a crash leaves no project or
/// the whole project, without a sync per file or holding any file open.
pub fn create_project(dir: &Path, tree: &Tree, extra: &[NewFile]) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    // tempfile makes it 0700 with an unpredictable name; its contents are ours alone.
    let staging = tempfile::Builder::new()
        .prefix(".flakesmith-staging-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let root = staging.path();
    // The staging directory is new, 0700 and randomly named: nothing in it can be a planted
    // link, so paths are joined without the per-component checks a repo needs, and each
    // directory is made once.
    let mut made: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut write = |path: &str, contents: &[u8], mode: u32| -> Result<()> {
        inside::check_relative(path)?;
        if let Some((dir, _)) = path.rsplit_once('/') {
            if !made.contains(dir) {
                let dir_mode = if mode & 0o077 == 0 { 0o700 } else { 0o755 };
                inside::create_dirs(root, dir, dir_mode)?;
                let mut d = dir;
                loop {
                    made.insert(d.to_owned());
                    match d.rsplit_once('/') {
                        Some((parent, _)) => d = parent,
                        None => break,
                    }
                }
            }
        }
        inside::write_new(&root.join(path), contents, mode)?;
        Ok(())
    };
    // Private files first, so that the directories they need are made private.
    let (private, public): (Vec<_>, Vec<_>) = extra.iter().partition(|f| f.mode & 0o077 == 0);
    for file in private.into_iter().chain(public) {
        write(&file.path, &file.contents, file.mode)?;
    }
    for (path, file) in tree.iter() {
        write(path, &file.contents, file.mode())?;
        write(&format!("{BASE_DIR}/{path}"), &file.contents, file.mode())?;
    }
    txn::sync_fs(root)?;
    crate::failpoint::hit("create-project:before-rename")?;
    if dir.exists() {
        // Only an empty directory may be replaced; the caller checked, but a race must not cost
        // the user a file, and remove_dir refuses a non-empty directory.
        fs_err::remove_dir(dir).context("the target directory is no longer empty")?;
    }
    let staging = staging.keep();
    if let Err(e) = fs_err::rename(&staging, dir) {
        let _ = fs_err::remove_dir_all(&staging);
        return Err(e.into());
    }
    txn::sync_dir(&parent)?;
    Ok(())
}

/// What `apply` did, for the summary line.
#[derive(Debug, Default)]
pub struct Applied {
    pub written: Vec<String>,
    pub deleted: Vec<String>,
    pub conflicts: Vec<String>,
    /// Paths whose generated version was written beside the user's file.
    pub kept_beside: Vec<String>,
    /// Paths rewritten as flakesmith renders them, and where the user's text was kept
    /// ([`OLD_SUFFIX`], numbered when an earlier one is still there).
    pub rewritten: Vec<(String, String)>,
    /// Files of the base record (`.flakesmith/base/`) written or removed.
    pub base_written: usize,
}

/// Applies a plan to an existing repo and records its new base, creating `new_files` (node
/// identities) in the same transaction.
pub fn apply_with(repo: &Path, plan: &Plan, new_files: &[NewFile]) -> Result<Applied> {
    let mut changes: Vec<FileChange<'_>> = Vec::new();
    let mut applied = Applied::default();
    for (path, action) in &plan.entries {
        match action {
            Action::Create(f) | Action::Update(f) | Action::Merge(f) => {
                changes.push((path.clone(), Some(f)));
                applied.written.push(path.clone());
            }
            Action::Conflict(f) => {
                changes.push((path.clone(), Some(f)));
                applied.written.push(path.clone());
                applied.conflicts.push(path.clone());
            }
            Action::Rewrite { new, yours } => {
                // Never over an earlier kept text the user has not dealt with yet.
                let kept = std::iter::once(format!("{path}{OLD_SUFFIX}"))
                    .chain((2..).map(|n| format!("{path}{OLD_SUFFIX}.{n}")))
                    .find(|p| repo.join(p).symlink_metadata().is_err())
                    .expect("some name is free");
                changes.push((path.clone(), Some(new)));
                changes.push((kept.clone(), Some(yours)));
                applied.written.push(path.clone());
                applied.rewritten.push((path.clone(), kept));
            }
            Action::KeepUserFile(f) => {
                changes.push((format!("{path}{NEW_SUFFIX}"), Some(f)));
                applied.kept_beside.push(path.clone());
            }
            Action::Delete => {
                changes.push((path.clone(), None));
                applied.deleted.push(path.clone());
            }
            Action::Unchanged | Action::KeepDeleted | Action::KeepEdited => {}
        }
    }
    // The base record changes with the files, in the same transaction, and only where it changes.
    let old_base = super::base::read_base(repo)?;
    for (path, file) in plan.new_base.iter() {
        if old_base.get(path) != Some(file) {
            changes.push((base_rel(path), Some(file)));
            applied.base_written += 1;
        }
    }
    for path in old_base.paths().filter(|p| plan.new_base.get(p).is_none()) {
        changes.push((base_rel(path), None));
        applied.base_written += 1;
    }
    if changes.is_empty() && new_files.is_empty() {
        return Ok(applied);
    }
    txn::run(repo, &changes, new_files)?;
    // Directories emptied by removals (a removed node's base copy) go too; best effort.
    for (path, file) in &changes {
        if file.is_none() {
            let mut dir = Path::new(path).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                // rmdir removes no link and no directory with anything in it.
                if std::fs::remove_dir(repo.join(d)).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    Ok(applied)
}

fn base_rel(path: &str) -> String {
    format!("{BASE_DIR}/{path}")
}
