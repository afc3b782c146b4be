//! Writing to disk, all or nothing.
//!
//! A new project is assembled in a temporary directory beside its destination and renamed into
//! place, so a crash leaves either nothing or the whole project. An existing repo is changed by a
//! journaled transaction ([`super::txn`]): an error or a crash part-way is rolled back.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use super::{
    base::{base_path, BASE_DIR},
    plan::{Action, Plan},
    txn::{self, FileChange, OwnWrites},
};
use crate::render::{Tree, TreeFile};

/// Suffix of the generated version written beside a file flakesmith must not overwrite.
pub const NEW_SUFFIX: &str = ".flakesmith-new";

/// Suffix of the user's text of flakesmith.yaml kept when the new answers had to be rewritten.
pub const OLD_SUFFIX: &str = ".flakesmith-old";

/// Creates `dir` holding `tree`, its base record and `extra` user files (copied verbatim, not
/// recorded as generated). `dir` must not exist, or be empty.
pub fn create_project(dir: &Path, tree: &Tree, extra: &[(String, Vec<u8>)]) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".flakesmith-staging-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let mut written = Vec::new();
    for (path, file) in tree.iter() {
        written.push(write_unsynced(&staging.path().join(path), file)?);
        written.push(write_unsynced(&base_path(staging.path(), path), file)?);
    }
    for (path, bytes) in extra {
        written.push(write_unsynced(
            &staging.path().join(path),
            &TreeFile::text_bytes(bytes.clone()),
        )?);
    }
    sync_files(written)?;
    sync_dir(staging.path())?;
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
    sync_dir(&parent)?;
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

/// Applies a plan to an existing repo and records its new base.
pub fn apply(repo: &Path, plan: &Plan) -> Result<Applied> {
    apply_with(repo, plan, None)
}

/// [`apply`], with files the caller writes itself in the same transaction.
pub fn apply_with(repo: &Path, plan: &Plan, own: Option<OwnWrites<'_>>) -> Result<Applied> {
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
    if changes.is_empty() && own.is_none() {
        return Ok(applied);
    }
    txn::run(repo, &changes, own)?;
    // Directories emptied by removals (a removed node's base copy) go too; best effort.
    for (path, file) in &changes {
        if file.is_none() {
            let mut dir = Path::new(path).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                if std::fs::remove_dir(repo.join(d)).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    Ok(applied)
}

/// Writes `file` at `path` (creating its parents) without waiting for the disk: the caller syncs
/// the returned handle, usually together with others in [`sync_files`].
pub(super) fn write_unsynced(path: &Path, file: &TreeFile) -> Result<fs_err::File> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let mut f = fs_err::File::create(path)?;
    f.write_all(&file.contents)?;
    set_mode(path, file.mode())?;
    Ok(f)
}

/// Syncs files (or directories) to disk concurrently. On a journaling file system concurrent
/// fsyncs share journal commits, so a batch costs about what one file does instead of one
/// commit per file, which is most of the time `add-node` takes.
pub(super) fn sync_files(files: Vec<fs_err::File>) -> Result<()> {
    const THREADS: usize = 16;
    let per_thread = files.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(|f| f.sync_all())))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("fsync does not panic"))
    })?;
    Ok(())
}

/// [`sync_files`] for directories, so that the renames and removals in them are on disk.
pub(super) fn sync_dirs<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    #[cfg(unix)]
    sync_files(
        dirs.into_iter()
            .map(fs_err::File::open)
            .collect::<Result<_, _>>()?,
    )?;
    #[cfg(not(unix))]
    let _ = dirs;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<()> {
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs_err::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

fn base_rel(path: &str) -> String {
    format!("{BASE_DIR}/{path}")
}
