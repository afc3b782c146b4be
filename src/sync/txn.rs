//! All-or-nothing changes to an existing repo, surviving a crash part-way.
//!
//! A transaction first writes a journal (`.flakesmith/txn/journal`) naming every file it will
//! write or remove, every directory it will create, and where the backup of each existing file
//! goes. Only then does it touch the repo: new contents are written and synced under temporary
//! names beside their destinations (where disk-full and permission errors happen), every file
//! about to be replaced or removed is hard-linked into `.flakesmith/txn/`, and the renames and
//! removals run. Removing the journal is the commit point.
//!
//! Rolling back reads the same journal, whether the failure was an error in this process or a
//! crash: the next flakesmith run that opens the repo calls [`recover`] and finds the journal.
//! Every step of the rollback is idempotent, so a crash during recovery is recovered as well.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::apply::{sync_dir, sync_dirs, sync_files, write_unsynced};
use crate::render::TreeFile;

/// The transaction directory, relative to the repo root.
pub const TXN_DIR: &str = ".flakesmith/txn";
const JOURNAL: &str = "journal";

/// What an interrupted transaction is undone from. Paths are relative to the repo, `/`-separated.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// Directories the transaction creates, parents before children. Rolling back removes
    /// them with everything in them: they did not exist before.
    created_dirs: Vec<String>,
    /// Files the caller writes itself during the transaction ([`OwnWrites`]).
    #[serde(default)]
    created_files: Vec<String>,
    ops: Vec<Op>,
}

/// Files that must not pass through a staged temporary file (node identities, created 0600 from
/// their first byte): the caller writes them, inside the transaction, just before the renames.
/// Rolling back removes them. They must not exist yet.
pub struct OwnWrites<'a> {
    /// Relative to the repo.
    pub paths: Vec<String>,
    pub write: Box<dyn FnOnce() -> Result<()> + 'a>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Op {
    dest: String,
    /// The staged new contents; none for a removal.
    tmp: Option<String>,
    /// File name in the transaction directory of the original's backup; none when `dest` did not
    /// exist.
    backup: Option<String>,
}

/// One change: write `file` at `dest`, or remove `dest` (`None`). `dest` is relative to the repo.
pub type FileChange<'a> = (String, Option<&'a TreeFile>);

/// Applies all `changes` to `repo`, or none of them.
pub fn run(repo: &Path, changes: &[FileChange<'_>], own: Option<OwnWrites<'_>>) -> Result<()> {
    let txn_dir = repo.join(TXN_DIR);
    if txn_dir.join(JOURNAL).exists() {
        // The commands recover before they plan; reaching this means something else is
        // running a transaction on the same repo right now.
        bail!(
            "{} exists: another flakesmith run is changing this repo (or was interrupted: run `flakesmith diff` to roll it back)",
            txn_dir.display()
        );
    }
    if txn_dir.exists() {
        fs_err::remove_dir_all(&txn_dir)?;
    }
    let own_paths = own.as_ref().map_or(&[][..], |o| &o.paths[..]);
    let journal = journal_for(repo, changes, own_paths)?;
    write_journal(repo, &journal)?;
    match execute(repo, &journal, changes, own) {
        Ok(()) => {
            // The commit point: without the journal, nothing will be rolled back.
            fs_err::remove_file(txn_dir.join(JOURNAL))?;
            sync_dir(&txn_dir)?;
            fs_err::remove_dir_all(&txn_dir)?;
            Ok(())
        }
        Err(e) => match roll_back(repo, &journal) {
            Ok(()) => Err(e.context("the change was rolled back; the repo is as it was")),
            Err(r) => Err(e.context(format!(
                "rolling back failed too ({r:#}); the next flakesmith run in this repo retries the rollback"
            ))),
        },
    }
}

/// Rolls back a transaction that a crash interrupted, if there is one. Returns how many files it
/// put back (restored or removed); `None` when there was nothing to do.
pub fn recover(repo: &Path) -> Result<Option<usize>> {
    let txn_dir = repo.join(TXN_DIR);
    let journal_path = txn_dir.join(JOURNAL);
    if !journal_path.exists() {
        if txn_dir.exists() {
            // Committed (or never started) but not cleaned up: only backups are left.
            fs_err::remove_dir_all(&txn_dir)?;
        }
        return Ok(None);
    }
    let text = fs_err::read_to_string(&journal_path)?;
    let journal: Journal = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is damaged; restore the repo from git",
            journal_path.display()
        )
    })?;
    roll_back(repo, &journal)?;
    Ok(Some(journal.ops.len()))
}

fn journal_for(repo: &Path, changes: &[FileChange<'_>], own: &[String]) -> Result<Journal> {
    let mut journal = Journal {
        created_files: own.to_vec(),
        ..Journal::default()
    };
    let mut dirs = Vec::new();
    for path in own {
        missing_ancestors(repo, path, &mut dirs);
    }
    for (i, (dest, file)) in changes.iter().enumerate() {
        let dest_path = repo.join(dest);
        let exists = dest_path.symlink_metadata().is_ok();
        if file.is_none() && !exists {
            continue;
        }
        if file.is_some() {
            missing_ancestors(repo, dest, &mut dirs);
        }
        let tmp = file.map(|_| {
            let (dir, name) = match dest.rsplit_once('/') {
                Some((dir, name)) => (format!("{dir}/"), name),
                None => (String::new(), dest.as_str()),
            };
            format!("{dir}.{name}.flakesmith-tmp")
        });
        journal.ops.push(Op {
            dest: dest.clone(),
            tmp,
            backup: exists.then(|| i.to_string()),
        });
    }
    if !repo.join(".flakesmith").exists() {
        dirs.push(".flakesmith".into());
    }
    // Parents first; a parent is a prefix, so it sorts first.
    dirs.sort();
    dirs.dedup();
    journal.created_dirs = dirs;
    Ok(journal)
}

/// Every missing ancestor of `path`, so that rollback leaves no new directory behind.
fn missing_ancestors(repo: &Path, path: &str, dirs: &mut Vec<String>) {
    let mut parent = Path::new(path).parent();
    while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
        if !repo.join(p).exists() {
            dirs.push(p.to_string_lossy().replace('\\', "/"));
        }
        parent = p.parent();
    }
}

fn write_journal(repo: &Path, journal: &Journal) -> Result<()> {
    let txn_dir = repo.join(TXN_DIR);
    fs_err::create_dir_all(&txn_dir)?;
    let partial = txn_dir.join(format!("{JOURNAL}.partial"));
    let mut f = fs_err::File::create(&partial)?;
    f.write_all(serde_json::to_string_pretty(journal)?.as_bytes())?;
    f.sync_all()?;
    // Renamed into place so that a journal is never read half-written.
    fs_err::rename(&partial, txn_dir.join(JOURNAL))?;
    sync_dir(&txn_dir)?;
    Ok(())
}

fn execute(
    repo: &Path,
    journal: &Journal,
    changes: &[FileChange<'_>],
    own: Option<OwnWrites<'_>>,
) -> Result<()> {
    let txn_dir = repo.join(TXN_DIR);
    let contents = |dest: &str| {
        changes
            .iter()
            .find(|(d, _)| d == dest)
            .and_then(|(_, f)| *f)
            .expect("every staged op has contents")
    };
    let mut staged = Vec::new();
    for op in &journal.ops {
        if let Some(tmp) = &op.tmp {
            staged.push(write_unsynced(&repo.join(tmp), contents(&op.dest))?);
        }
    }
    // On disk before any of them replaces an original, or a power cut could leave empty files.
    sync_files(staged)?;
    crate::failpoint::hit("apply:staged")?;
    for op in &journal.ops {
        if let Some(backup) = &op.backup {
            let (dest, backup) = (repo.join(&op.dest), txn_dir.join(backup));
            fs_err::hard_link(&dest, &backup)
                .or_else(|_| fs_err::copy(&dest, &backup).map(|_| ()))?;
        }
    }
    sync_dir(&txn_dir)?;
    if let Some(own) = own {
        (own.write)()?;
    }
    for op in &journal.ops {
        // `FLAKESMITH_FAILPOINT=apply:rename#N` fails the Nth rename or removal (in-process
        // rollback); with `:abort` the process dies there, as in a crash (rollback on next run).
        crate::failpoint::hit("apply:rename")?;
        match &op.tmp {
            Some(tmp) => fs_err::rename(repo.join(tmp), repo.join(&op.dest))?,
            None => fs_err::remove_file(repo.join(&op.dest))?,
        }
    }
    let parents: std::collections::BTreeSet<PathBuf> = journal
        .ops
        .iter()
        .filter_map(|op| repo.join(&op.dest).parent().map(Path::to_path_buf))
        .collect();
    sync_dirs(parents.iter().map(PathBuf::as_path))
}

/// Undoes whatever part of `journal` happened, in reverse order. Safe to run more than once.
fn roll_back(repo: &Path, journal: &Journal) -> Result<()> {
    let txn_dir = repo.join(TXN_DIR);
    for op in journal.ops.iter().rev() {
        let dest = repo.join(&op.dest);
        if let Some(tmp) = &op.tmp {
            remove_if_exists(&repo.join(tmp))?;
        }
        match &op.backup {
            // The backup is taken before the destination changes, so when it exists it is the
            // original; when it does not, the destination was never touched.
            Some(backup) => {
                let backup = txn_dir.join(backup);
                if backup.exists() {
                    fs_err::rename(&backup, &dest)?;
                }
            }
            None => remove_if_exists(&dest)?,
        }
    }
    for file in &journal.created_files {
        remove_if_exists(&repo.join(file))?;
    }
    for dir in journal.created_dirs.iter().rev() {
        let path = repo.join(dir);
        if path == repo.join(".flakesmith") {
            continue; // holds the transaction directory until the very end
        }
        // It did not exist before the transaction, so all it holds came from it (a node
        // identity's keys/.gitignore, say).
        if path.exists() {
            fs_err::remove_dir_all(path)?;
        }
    }
    let parents: std::collections::BTreeSet<PathBuf> = journal
        .ops
        .iter()
        .filter_map(|op| repo.join(&op.dest).parent().map(Path::to_path_buf))
        .filter(|p| p.exists())
        .collect();
    sync_dirs(parents.iter().map(PathBuf::as_path))?;
    // Last: the journal goes only once everything it describes is undone.
    fs_err::remove_dir_all(&txn_dir)?;
    if journal.created_dirs.iter().any(|d| d == ".flakesmith") {
        let _ = std::fs::remove_dir(repo.join(".flakesmith"));
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("removing {}", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = walkdir::WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap())
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let bytes = if e.file_type().is_file() {
                    std::fs::read(e.path()).unwrap()
                } else {
                    b"<dir>".to_vec()
                };
                (rel, bytes)
            })
            .collect();
        out.sort();
        out
    }

    fn sample_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".flakesmith/base")).unwrap();
        std::fs::write(dir.path().join("a.nix"), "a\n").unwrap();
        std::fs::write(dir.path().join("gone.nix"), "gone\n").unwrap();
        dir
    }

    #[test]
    fn a_crash_part_way_is_rolled_back_by_recover() {
        let repo = sample_repo();
        let before = tree_of(repo.path());
        let new_a = TreeFile::text("a2\n");
        let new_b = TreeFile::text("b\n");
        let changes: Vec<FileChange> = vec![
            ("a.nix".into(), Some(&new_a)),
            ("nodes/deep/b.nix".into(), Some(&new_b)),
            ("gone.nix".into(), None),
        ];
        let journal = journal_for(repo.path(), &changes, &[]).unwrap();
        assert_eq!(journal.created_dirs, ["nodes", "nodes/deep"]);
        write_journal(repo.path(), &journal).unwrap();
        // Do by hand what execute does, stopping after two of the three steps.
        write_unsynced(
            &repo.path().join(journal.ops[0].tmp.as_ref().unwrap()),
            &new_a,
        )
        .unwrap();
        write_unsynced(
            &repo.path().join(journal.ops[1].tmp.as_ref().unwrap()),
            &new_b,
        )
        .unwrap();
        let txn = repo.path().join(TXN_DIR);
        std::fs::hard_link(repo.path().join("a.nix"), txn.join("0")).unwrap();
        std::fs::hard_link(repo.path().join("gone.nix"), txn.join("2")).unwrap();
        std::fs::rename(
            repo.path().join("nodes/deep/.b.nix.flakesmith-tmp"),
            repo.path().join("nodes/deep/b.nix"),
        )
        .unwrap();
        std::fs::rename(
            repo.path().join(".a.nix.flakesmith-tmp"),
            repo.path().join("a.nix"),
        )
        .unwrap();
        assert_ne!(tree_of(repo.path()), before);

        assert_eq!(recover(repo.path()).unwrap(), Some(3));
        assert_eq!(tree_of(repo.path()), before);
        assert_eq!(recover(repo.path()).unwrap(), None);
    }

    #[test]
    fn a_committed_transaction_leaves_no_trace() {
        let repo = sample_repo();
        let new_a = TreeFile::script("a2\n");
        run(
            repo.path(),
            &[("a.nix".into(), Some(&new_a)), ("gone.nix".into(), None)],
            None,
        )
        .unwrap();
        assert_eq!(std::fs::read(repo.path().join("a.nix")).unwrap(), b"a2\n");
        assert!(super::super::base::is_executable(
            &repo.path().join("a.nix")
        ));
        assert!(!repo.path().join("gone.nix").exists());
        assert!(!repo.path().join(TXN_DIR).exists());
    }
}
