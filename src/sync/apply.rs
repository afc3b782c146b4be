//! Writing to disk, all or nothing.
//!
//! A new project is assembled in a temporary directory beside its destination and renamed into
//! place, so a crash leaves either nothing or the whole project. An existing repo is changed in
//! two phases: every new file is first written and synced under a temporary name next to its
//! destination (where disk-full and permission errors happen), then the renames run; if one of
//! them fails, the files already replaced are restored from hard-linked backups.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::{
    base::base_path,
    plan::{Action, Plan},
};
use crate::render::{Tree, TreeFile};

/// Suffix of the generated version written beside a file flakesmith must not overwrite.
pub const NEW_SUFFIX: &str = ".flakesmith-new";

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
    for (path, file) in tree.iter() {
        write_file(&staging.path().join(path), file)?;
        write_file(&base_path(staging.path(), path), file)?;
    }
    for (path, bytes) in extra {
        write_file(&staging.path().join(path), &TreeFile::text_bytes(bytes.clone()))?;
    }
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
}

/// Applies a plan to an existing repo and records its new base.
pub fn apply(repo: &Path, plan: &Plan) -> Result<Applied> {
    let mut writes: Vec<(PathBuf, &TreeFile)> = Vec::new();
    let mut deletes: Vec<PathBuf> = Vec::new();
    let mut applied = Applied::default();
    for (path, action) in &plan.entries {
        match action {
            Action::Create(f) | Action::Update(f) | Action::Merge(f) => {
                writes.push((repo.join(path), f));
                applied.written.push(path.clone());
            }
            Action::Conflict(f) => {
                writes.push((repo.join(path), f));
                applied.written.push(path.clone());
                applied.conflicts.push(path.clone());
            }
            Action::KeepUserFile(f) => {
                writes.push((repo.join(format!("{path}{NEW_SUFFIX}")), f));
                applied.kept_beside.push(path.clone());
            }
            Action::Delete => {
                deletes.push(repo.join(path));
                applied.deleted.push(path.clone());
            }
            Action::Unchanged | Action::KeepDeleted | Action::KeepEdited => {}
        }
    }
    // The base record changes with the files, in the same transaction.
    let old_base = super::base::read_base(repo)?;
    let base_files: Vec<(PathBuf, TreeFile)> = plan
        .new_base
        .iter()
        .filter(|(p, f)| old_base.get(p) != Some(*f))
        .map(|(p, f)| (base_path(repo, p), f.clone()))
        .collect();
    writes.extend(base_files.iter().map(|(p, f)| (p.clone(), f)));
    deletes.extend(
        old_base
            .paths()
            .filter(|p| plan.new_base.get(p).is_none())
            .map(|p| base_path(repo, p)),
    );
    Transaction::stage(repo, &writes, &deletes)?.commit()?;
    Ok(applied)
}

/// Staged writes and deletes, committed by renames, rolled back on failure.
struct Transaction {
    backup_dir: PathBuf,
    /// (temporary file, destination)
    staged: Vec<(PathBuf, PathBuf)>,
    deletes: Vec<PathBuf>,
}

impl Transaction {
    fn stage(repo: &Path, writes: &[(PathBuf, &TreeFile)], deletes: &[PathBuf]) -> Result<Self> {
        let backup_dir = repo.join(".flakesmith").join("txn");
        if backup_dir.exists() {
            bail!(
                "{} exists: an earlier flakesmith run was interrupted; restore its files from there (they are hard links of the originals) and remove it",
                backup_dir.display()
            );
        }
        let mut staged = Vec::new();
        let result = (|| -> Result<()> {
            for (dest, file) in writes {
                let parent = dest.parent().expect("destinations are inside the repo");
                fs_err::create_dir_all(parent)?;
                let tmp = parent.join(format!(
                    ".{}.flakesmith-tmp",
                    dest.file_name().unwrap().to_string_lossy()
                ));
                staged.push((tmp.clone(), dest.clone()));
                write_file(&tmp, file)?;
            }
            Ok(())
        })();
        let txn = Self {
            backup_dir,
            staged,
            deletes: deletes.to_vec(),
        };
        if let Err(e) = result {
            txn.discard();
            return Err(e);
        }
        Ok(txn)
    }

    fn commit(self) -> Result<()> {
        fs_err::create_dir_all(&self.backup_dir)?;
        let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let result = (|| -> Result<()> {
            let targets = self
                .staged
                .iter()
                .map(|(tmp, dest)| (Some(tmp), dest))
                .chain(self.deletes.iter().map(|d| (None, d)));
            for (i, (tmp, dest)) in targets.enumerate() {
                let backup = if dest.exists() {
                    let b = self.backup_dir.join(i.to_string());
                    fs_err::hard_link(dest, &b)
                        .or_else(|_| fs_err::copy(dest, &b).map(|_| ()))?;
                    Some(b)
                } else {
                    None
                };
                crate::failpoint::hit("apply:rename")?;
                match tmp {
                    Some(tmp) => fs_err::rename(tmp, dest)?,
                    None => fs_err::remove_file(dest)?,
                }
                done.push((dest.clone(), backup));
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (dest, backup) in done.into_iter().rev() {
                match backup {
                    Some(b) => {
                        let _ = fs_err::rename(&b, &dest);
                    }
                    None => {
                        let _ = fs_err::remove_file(&dest);
                    }
                }
            }
            self.discard();
            let _ = fs_err::remove_dir_all(&self.backup_dir);
            return Err(e.context("the change was rolled back; the repo is as it was"));
        }
        fs_err::remove_dir_all(&self.backup_dir)?;
        for (_, dest) in &self.staged {
            if let Some(parent) = dest.parent() {
                let _ = sync_dir(parent);
            }
        }
        Ok(())
    }

    fn discard(&self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn write_file(path: &Path, file: &TreeFile) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let mut f = fs_err::File::create(path)?;
    f.write_all(&file.contents)?;
    set_mode(path, file.mode())?;
    f.sync_all()?;
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

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs_err::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}
