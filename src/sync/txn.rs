//! All-or-nothing changes to an existing repo, surviving a crash part-way.
//!
//! A transaction first writes a journal (`.flakesmith/txn/journal`) naming every file it will
//! write or remove, every directory it will create, and where the backup of each existing file
//! goes. Only then does it touch the repo: new contents are written under unpredictable
//! temporary names beside their destinations (where disk-full and permission errors happen),
//! every file about to be replaced or removed is hard-linked into `.flakesmith/txn/`, the file
//! system is synced once, and the renames and removals run. Removing the journal is the commit
//! point.
//!
//! Rolling back reads the same journal, whether the failure was an error in this process or a
//! crash: the next flakesmith run that opens the repo calls [`recover`] and finds the journal.
//! Every step of the rollback is idempotent, so a crash during recovery is recovered as well,
//! and a step that fails (an immutable file) does not stop the others.
//!
//! The journal lies in the repository, so it is untrusted input like the rest of it: a journal
//! committed to git could otherwise name any path on the machine. It is acted on only when this
//! machine's flakesmith wrote it for a transaction it started: before the journal is put in
//! place, the SHA-256 of its bytes (which include a random token) is recorded outside the
//! repository, in `$XDG_STATE_HOME/flakesmith/transactions/`, under the hash of the repo's
//! canonical path, and removed once the transaction is committed or rolled back. A record kept
//! beside the user's other state, rather than a MAC under a per-user key, also says that a
//! transaction is in flight here, cannot be replayed by copying a journal from another repo, and
//! needs no key to protect. Even then every path in it is checked to lie inside the repo
//! ([`super::inside`]), and a file is removed only if it still holds what the transaction wrote.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::inside;
use crate::{render::TreeFile, UsageError};

/// The transaction directory, relative to the repo root.
pub const TXN_DIR: &str = ".flakesmith/txn";
const JOURNAL: &str = "journal";
const JOURNAL_PARTIAL: &str = "journal.partial";
/// A journal is a few hundred bytes per file; anything near this is not one flakesmith wrote.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// What an interrupted transaction is undone from. Paths are relative to the repo, `/`-separated.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Journal {
    /// Random, so that no two journals are alike and temporary names cannot be guessed.
    token: String,
    /// Directories the transaction creates, parents before children. Rolling back removes each
    /// one if it is empty by then.
    created_dirs: Vec<String>,
    /// Files created in place, exclusively ([`NewFile`]).
    created_files: Vec<Created>,
    ops: Vec<Op>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Created {
    path: String,
    /// SHA-256 of the contents written: rolling back removes the file only if it still holds
    /// them, so a file the user put there after a crash is kept.
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Op {
    dest: String,
    /// The staged new contents; none for a removal.
    tmp: Option<String>,
    /// SHA-256 of the new contents, for a destination that did not exist before: rolling back
    /// removes it only if it still holds them.
    sha256: Option<String>,
    /// File name in the transaction directory of the original's backup; none when `dest` did not
    /// exist.
    backup: Option<String>,
}

/// A file that must not pass through a staged temporary file (a node identity, 0600 from its
/// first byte): created exclusively at its path, just before the renames. It must not exist yet.
/// A directory created for a private file (mode without group or other bits) is 0700.
pub struct NewFile {
    /// Relative to the repo.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl NewFile {
    fn is_private(&self) -> bool {
        self.mode & 0o077 == 0
    }
}

/// One change: write `file` at `dest`, or remove `dest` (`None`). `dest` is relative to the repo.
pub type FileChange<'a> = (String, Option<&'a TreeFile>);

/// Applies all `changes` and creates all `new_files` in `repo`, or none of them.
pub fn run(repo: &Path, changes: &[FileChange<'_>], new_files: &[NewFile]) -> Result<()> {
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    if txn_dir.join(JOURNAL).exists() {
        // The commands recover before they plan; reaching this means something else is
        // running a transaction on the same repo right now.
        bail!(
            "{} exists: another flakesmith run is changing this repo (or was interrupted: run `flakesmith diff` to roll it back)",
            txn_dir.display()
        );
    }
    clear_txn_dir(repo)?;
    let journal = journal_for(repo, changes, new_files)?;
    let record = Record::for_repo(repo)?;
    if let Err(e) = write_journal(repo, &journal, &record) {
        // Nothing in the repo changed yet: only what writing the journal left is taken back, so
        // that a failed `init` leaves its new directory empty.
        let _ = std::fs::remove_file(txn_dir.join(JOURNAL));
        let _ = clear_txn_dir(repo);
        remove_state_dir_if_made(repo, &journal);
        record.remove();
        return Err(e);
    }
    match execute(repo, &journal, changes, new_files) {
        Ok(()) => {
            // The commit point: without the journal, nothing will be rolled back.
            fs_err::remove_file(txn_dir.join(JOURNAL))?;
            sync_dir(&txn_dir)?;
            record.remove();
            clear_txn_dir(repo)?;
            Ok(())
        }
        Err(e) => match roll_back(repo, &journal) {
            Ok(()) => {
                record.remove();
                Err(e.context("the change was rolled back; the repo is as it was"))
            }
            Err(r) => Err(e.context(format!("{r:#}"))),
        },
    }
}

/// Rolls back a transaction that a crash interrupted, if there is one. Returns how many files it
/// put back (restored or removed); `None` when there was nothing to do.
///
/// A journal this machine's flakesmith did not write (committed to git, copied from elsewhere,
/// or changed since) is refused with a usage error, and nothing is touched.
pub fn recover(repo: &Path) -> Result<Option<usize>> {
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    if !txn_dir.exists() {
        return Ok(None);
    }
    refuse_if_tracked(repo)?;
    let Some(bytes) =
        inside::read_file_within(repo, &format!("{TXN_DIR}/{JOURNAL}"), MAX_JOURNAL_BYTES)?
    else {
        // Committed (or never started) but not cleaned up: only backups are left.
        clear_txn_dir(repo)?;
        return Ok(None);
    };
    let record = Record::for_repo(repo)?;
    if !record.vouches_for(&bytes) {
        return Err(UsageError::new(format!(
            "{TXN_DIR}/{JOURNAL} in {} was not written by flakesmith on this machine for a change it started (nothing in {}); nothing was rolled back: delete {TXN_DIR}/ if you did not run flakesmith here, or restore the repo from git",
            repo.display(),
            record.path.display()
        ))
        .into());
    }
    let journal = parse_journal(&bytes)
        .with_context(|| format!("{TXN_DIR}/{JOURNAL} is damaged; restore the repo from git"))?;
    roll_back(repo, &journal)?;
    record.remove();
    Ok(Some(journal.ops.len() + journal.created_files.len()))
}

fn parse_journal(bytes: &[u8]) -> Result<Journal> {
    let journal: Journal = serde_json::from_slice(bytes)?;
    // Checked even though this machine wrote it: a path is acted on only inside the repo.
    let paths = journal
        .created_dirs
        .iter()
        .chain(journal.created_files.iter().map(|c| &c.path))
        .chain(
            journal
                .ops
                .iter()
                .flat_map(|op| std::iter::once(&op.dest).chain(op.tmp.iter())),
        );
    for path in paths {
        inside::check_relative(path)?;
    }
    for backup in journal.ops.iter().filter_map(|op| op.backup.as_ref()) {
        if !is_backup_name(backup) {
            bail!("'{}' is not a backup's name", backup.escape_debug());
        }
    }
    Ok(journal)
}

/// Backups are named by number in the transaction directory.
fn is_backup_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 20 && name.bytes().all(|b| b.is_ascii_digit())
}

/// A journal from git is refused before anything else: git puts files there only when someone
/// committed them, and the transaction directory is ignored in every generated repo.
fn refuse_if_tracked(repo: &Path) -> Result<()> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["ls-files", "-z", "--", TXN_DIR])
        .stderr(std::process::Stdio::null())
        .output();
    // No git, or not a git repo: nothing is tracked.
    if out.is_ok_and(|o| o.status.success() && !o.stdout.is_empty()) {
        return Err(UsageError::new(format!(
            "{TXN_DIR}/ is tracked by git: a journal from git is never rolled back, and nothing was touched; remove it with `git rm -r --cached {TXN_DIR} && rm -r {TXN_DIR}` and commit"
        ))
        .into());
    }
    Ok(())
}

/// Empties and removes the transaction directory of what a finished transaction leaves (its
/// backups and a partial journal), and nothing else.
fn clear_txn_dir(repo: &Path) -> Result<()> {
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    let entries = match std::fs::read_dir(&txn_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", txn_dir.display())))
        }
    };
    let mut foreign = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| n == JOURNAL_PARTIAL || is_backup_name(n));
        if ours && !entry.file_type()?.is_dir() {
            fs_err::remove_file(entry.path())?;
        } else {
            foreign.get_or_insert(name);
        }
    }
    // Something else in the repo's transaction directory is bad input, like any refused file.
    if let Some(name) = foreign {
        return Err(UsageError::new(format!(
            "{TXN_DIR}/ holds files flakesmith did not put there ({}): move them out of the repo",
            name.to_string_lossy().escape_debug()
        ))
        .into());
    }
    fs_err::remove_dir(&txn_dir).with_context(|| format!("removing {TXN_DIR}/"))?;
    Ok(())
}

fn journal_for(repo: &Path, changes: &[FileChange<'_>], new_files: &[NewFile]) -> Result<Journal> {
    let token = inside::random_hex(16)?;
    let mut journal = Journal {
        token: token.clone(),
        ..Journal::default()
    };
    let mut dirs = Vec::new();
    for file in new_files {
        if inside::resolve(repo, &file.path)?
            .symlink_metadata()
            .is_ok()
        {
            bail!("{} exists already", file.path);
        }
        missing_ancestors(repo, &file.path, &mut dirs)?;
        journal.created_files.push(Created {
            path: file.path.clone(),
            sha256: sha256_hex(&file.contents),
        });
    }
    for (i, (dest, file)) in changes.iter().enumerate() {
        // Refuses a destination that is a link, or under one.
        let exists = inside::resolve(repo, dest)?.symlink_metadata().is_ok();
        if file.is_none() && !exists {
            continue;
        }
        if file.is_some() {
            missing_ancestors(repo, dest, &mut dirs)?;
        }
        let tmp = file.map(|_| {
            let (dir, name) = match dest.rsplit_once('/') {
                Some((dir, name)) => (format!("{dir}/"), name),
                None => (String::new(), dest.as_str()),
            };
            format!("{dir}.{name}.{token}-{i}.flakesmith-tmp")
        });
        journal.ops.push(Op {
            dest: dest.clone(),
            tmp,
            sha256: file.filter(|_| !exists).map(|f| sha256_hex(&f.contents)),
            backup: exists.then(|| i.to_string()),
        });
    }
    if inside::resolve(repo, ".flakesmith")?
        .symlink_metadata()
        .is_err()
    {
        dirs.push(".flakesmith".into());
    }
    // Parents first; a parent is a prefix, so it sorts first.
    dirs.sort();
    dirs.dedup();
    journal.created_dirs = dirs;
    Ok(journal)
}

/// Every missing ancestor of `path`, so that rollback leaves no new directory behind.
fn missing_ancestors(repo: &Path, path: &str, dirs: &mut Vec<String>) -> Result<()> {
    let mut parent = Path::new(path).parent();
    while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
        let rel = p.to_string_lossy().replace('\\', "/");
        if inside::resolve(repo, &rel)?.symlink_metadata().is_err() {
            dirs.push(rel);
        }
        parent = p.parent();
    }
    Ok(())
}

fn write_journal(repo: &Path, journal: &Journal, record: &Record) -> Result<()> {
    inside::create_dirs(repo, TXN_DIR, 0o755)?;
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    let bytes = serde_json::to_vec_pretty(journal)?;
    let partial = txn_dir.join(JOURNAL_PARTIAL);
    let file = inside::write_new(&partial, &bytes, 0o600)?;
    file.sync_all()?;
    drop(file);
    // Recorded outside the repo before the journal exists, so that every journal this run
    // leaves behind is one the next run will act on.
    record.write(&bytes)?;
    // Renamed into place so that a journal is never read half-written.
    fs_err::rename(&partial, txn_dir.join(JOURNAL))?;
    sync_dir(&txn_dir)?;
    Ok(())
}

fn execute(
    repo: &Path,
    journal: &Journal,
    changes: &[FileChange<'_>],
    new_files: &[NewFile],
) -> Result<()> {
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    let contents = |dest: &str| {
        changes
            .iter()
            .find(|(d, _)| d == dest)
            .and_then(|(_, f)| *f)
            .expect("every staged op has contents")
    };
    // Private files first, so that the directories they need are made private.
    for file in new_files.iter().filter(|f| f.is_private()) {
        if let Some((dir, _)) = file.path.rsplit_once('/') {
            inside::create_dirs(repo, dir, 0o700)?;
            inside::make_private_dir(&inside::resolve(repo, dir)?)?;
        }
    }
    for op in &journal.ops {
        if let Some(tmp) = &op.tmp {
            if let Some((dir, _)) = tmp.rsplit_once('/') {
                inside::create_dirs(repo, dir, 0o755)?;
            }
            let file = contents(&op.dest);
            // Exclusive and closed at once: no planted file is opened, and a thousand
            // staged files do not take a thousand descriptors.
            inside::write_new(&inside::resolve(repo, tmp)?, &file.contents, file.mode())?;
        }
    }
    crate::failpoint::hit("apply:staged")?;
    for op in &journal.ops {
        if let Some(backup) = &op.backup {
            let (dest, backup) = (inside::resolve(repo, &op.dest)?, txn_dir.join(backup));
            if std::fs::hard_link(&dest, &backup).is_err() {
                // A file system without hard links, or an immutable file: copy it.
                let bytes = inside::read_file(repo, &op.dest)?.unwrap_or_default();
                inside::write_new(&backup, &bytes, mode_of(&dest))?;
            }
        }
    }
    // Staged files and backups on disk before any of them replaces an original, or a power
    // cut could leave empty files. One sync of the file system, not one per file.
    sync_fs(repo)?;
    for file in new_files {
        if let Some((dir, _)) = file.path.rsplit_once('/') {
            inside::create_dirs(repo, dir, 0o755)?;
        }
        inside::write_new(
            &inside::resolve(repo, &file.path)?,
            &file.contents,
            file.mode,
        )?;
    }
    for op in &journal.ops {
        // `FLAKESMITH_FAILPOINT=apply:rename#N` fails the Nth rename or removal (in-process
        // rollback); with `:abort` the process dies there, as in a crash (rollback on next run).
        crate::failpoint::hit("apply:rename")?;
        let dest = inside::resolve(repo, &op.dest)?;
        match &op.tmp {
            Some(tmp) => fs_err::rename(inside::resolve(repo, tmp)?, dest)?,
            None => fs_err::remove_file(dest)?,
        }
    }
    sync_fs(repo)
}

/// Undoes whatever part of `journal` happened, in reverse order. Safe to run more than once. A
/// step that fails does not stop the others; the error names each path not put back, and the
/// journal stays for the next run to finish the rollback.
fn roll_back(repo: &Path, journal: &Journal) -> Result<()> {
    let txn_dir = inside::resolve(repo, TXN_DIR)?;
    let mut failed: Vec<String> = Vec::new();
    let mut note = |path: &str, e: anyhow::Error| failed.push(format!("{path} ({e:#})"));
    for op in journal.ops.iter().rev() {
        if let Some(tmp) = &op.tmp {
            if let Err(e) = remove_if(repo, tmp, |_| true) {
                note(tmp, e);
            }
        }
        let result = match &op.backup {
            // The backup is taken before the destination changes, so when it exists it is the
            // original; when it does not, the destination was never touched (or is restored).
            Some(backup) => restore(repo, &op.dest, &txn_dir.join(backup)),
            None => remove_if(repo, &op.dest, |bytes| {
                op.sha256.as_deref() == Some(&sha256_hex(bytes))
            }),
        };
        if let Err(e) = result {
            note(&op.dest, e);
        }
    }
    for file in &journal.created_files {
        if let Err(e) = remove_if(repo, &file.path, |bytes| sha256_hex(bytes) == file.sha256) {
            note(&file.path, e);
        }
    }
    for dir in journal.created_dirs.iter().rev() {
        if dir == ".flakesmith" {
            continue; // holds the transaction directory until the very end
        }
        // Only if empty: whatever else is in it is not the transaction's (identities the user
        // put back into a keys/ the transaction created, say).
        if let Err(e) = remove_empty_dir(repo, dir) {
            note(dir, e);
        }
    }
    if let Err(e) = sync_fs(repo) {
        note(".", e);
    }
    if !failed.is_empty() {
        bail!(
            "rolling back could not restore {}; everything else was rolled back. Remove the cause (an immutable file: `chattr -i`; a read-only directory) and run any flakesmith command in {} to finish the rollback",
            failed.join(", "),
            repo.display()
        );
    }
    // Last: the journal goes only once everything it describes is undone.
    fs_err::remove_file(txn_dir.join(JOURNAL))?;
    clear_txn_dir(repo)?;
    remove_state_dir_if_made(repo, journal);
    Ok(())
}

/// `.flakesmith` goes again, if nothing else is in it, when this transaction made it (a failed
/// `init` leaves its new directory empty).
fn remove_state_dir_if_made(repo: &Path, journal: &Journal) {
    if journal.created_dirs.iter().any(|d| d == ".flakesmith") {
        let _ = remove_empty_dir(repo, ".flakesmith");
    }
}

/// Puts the backup back at `dest`, unless `dest` still is the original (the same file, or the
/// same bytes): then the backup just goes.
fn restore(repo: &Path, dest: &str, backup: &Path) -> Result<()> {
    if backup.symlink_metadata().is_err() {
        return Ok(());
    }
    let dest_path = inside::resolve_parent(repo, dest)?;
    if same_file(&dest_path, backup) || read_plain(&dest_path)? == Some(fs_err::read(backup)?) {
        fs_err::remove_file(backup)?;
        return Ok(());
    }
    // rename() replaces dest itself, never what a link there points to.
    fs_err::rename(backup, &dest_path)?;
    Ok(())
}

/// A shortcut before comparing bytes: a backup that is a hard link of `dest` needs no reading.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (a.symlink_metadata(), b.symlink_metadata()) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    let _ = (a, b);
    false
}

/// The bytes of a regular file at `path`; `None` when missing or not a regular file (a link).
fn read_plain(path: &Path) -> Result<Option<Vec<u8>>> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_file() => Ok(Some(fs_err::read(path)?)),
        _ => Ok(None),
    }
}

/// Removes the regular file `repo/rel` if `ours` says its bytes are the transaction's.
fn remove_if(repo: &Path, rel: &str, ours: impl Fn(&[u8]) -> bool) -> Result<()> {
    let path = inside::resolve_parent(repo, rel)?;
    match read_plain(&path)? {
        Some(bytes) if ours(&bytes) => Ok(fs_err::remove_file(&path)?),
        _ => Ok(()),
    }
}

fn remove_empty_dir(repo: &Path, rel: &str) -> Result<()> {
    let path = inside::resolve_parent(repo, rel)?;
    match std::fs::remove_dir(&path) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::DirectoryNotEmpty
                    | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("removing {}", path.display()))),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// One function with a cfg block per platform, not two functions: cargo-mutants then mutates
// only code the tests compile.
fn mode_of(path: &Path) -> u32 {
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        path.symlink_metadata()
            .map_or(0o644, |m| m.permissions().mode() & 0o7777)
    };
    #[cfg(not(unix))]
    let mode = {
        let _ = path;
        0o644
    };
    mode
}

/// Makes a directory's entries (a rename, a new file) durable. Like [`sync_fs`], what it does
/// shows only after a power cut, so .cargo/mutants.toml leaves out the mutant that skips it.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs_err::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

/// Makes everything written to the file system that holds `dir` durable, in one call: on Linux
/// syncfs(2), which also reports write-back errors (since 5.8); elsewhere sync(2).
pub(super) fn sync_fs(dir: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let handle = fs_err::File::open(dir)?;
        // SAFETY: syncfs takes any open descriptor on the file system and touches no memory.
        if unsafe { libc::syncfs(handle.file().as_raw_fd()) } != 0 {
            return Err(anyhow::Error::new(std::io::Error::last_os_error())
                .context(format!("syncing the file system of {}", dir.display())));
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // SAFETY: sync takes no arguments and touches no memory.
        unsafe { libc::sync() };
        let _ = dir;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The record, outside the repo, that this machine started a transaction in a repo: the SHA-256
/// of the journal it wrote. See the module documentation for why.
struct Record {
    path: PathBuf,
}

impl Record {
    fn for_repo(repo: &Path) -> Result<Self> {
        let state = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
            // The XDG spec ignores a relative value.
            Some(dir) if dir.is_absolute() => dir,
            _ => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".local/state"),
                None => bail!("neither XDG_STATE_HOME nor HOME is set: flakesmith records the changes it is making under $XDG_STATE_HOME/flakesmith, so that it rolls back only its own"),
            },
        };
        let canonical = fs_err::canonicalize(repo)?;
        let key = sha256_hex(canonical.as_os_str().as_encoded_bytes());
        Ok(Self {
            path: state.join("flakesmith/transactions").join(key),
        })
    }

    fn write(&self, journal: &[u8]) -> Result<()> {
        let dir = self.path.parent().expect("the record is in a directory");
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        #[cfg(not(unix))]
        fs_err::create_dir_all(dir)?;
        let partial = dir.join(format!(".{}.partial", inside::random_hex(8)?));
        let file = inside::write_new(&partial, sha256_hex(journal).as_bytes(), 0o600)?;
        file.sync_all()?;
        fs_err::rename(&partial, &self.path)?;
        sync_dir(dir)
    }

    fn vouches_for(&self, journal: &[u8]) -> bool {
        std::fs::read(&self.path).is_ok_and(|recorded| recorded == sha256_hex(journal).as_bytes())
    }

    /// Best effort: a record left behind vouches only for a journal with the same random token.
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
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

    /// Writes the journal and does by hand the first steps of `execute`.
    fn start(repo: &Path, changes: &[FileChange<'_>]) -> Journal {
        let journal = journal_for(repo, changes, &[]).unwrap();
        write_journal(repo, &journal, &Record::for_repo(repo).unwrap()).unwrap();
        for op in &journal.ops {
            if let Some(tmp) = &op.tmp {
                let (_, f) = changes.iter().find(|(d, _)| *d == op.dest).unwrap();
                let dir = Path::new(tmp)
                    .parent()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                if !dir.is_empty() {
                    inside::create_dirs(repo, &dir, 0o755).unwrap();
                }
                inside::write_new(&repo.join(tmp), &f.unwrap().contents, 0o644).unwrap();
            }
        }
        journal
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
        let journal = start(repo.path(), &changes);
        assert_eq!(journal.created_dirs, ["nodes", "nodes/deep"]);
        let txn = repo.path().join(TXN_DIR);
        std::fs::hard_link(repo.path().join("a.nix"), txn.join("0")).unwrap();
        std::fs::hard_link(repo.path().join("gone.nix"), txn.join("2")).unwrap();
        for op in &journal.ops[..2] {
            let tmp = op.tmp.as_ref().unwrap();
            std::fs::rename(repo.path().join(tmp), repo.path().join(&op.dest)).unwrap();
        }
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
            &[],
        )
        .unwrap();
        assert_eq!(std::fs::read(repo.path().join("a.nix")).unwrap(), b"a2\n");
        assert!(super::super::base::is_executable(
            &repo.path().join("a.nix")
        ));
        assert!(!repo.path().join("gone.nix").exists());
        assert!(!repo.path().join(TXN_DIR).exists());
        assert!(!Record::for_repo(repo.path()).unwrap().path.exists());
    }

    const IDENTITY: &[u8] = b"ours\n";

    /// Writes the journal of `changes` and of a new identity keys/n1.age, makes the identity
    /// holding `on_disk` (what the transaction writes, or what the user put there after), and
    /// stops there, as a crash would.
    fn crash_after_the_identity(repo: &Path, changes: &[FileChange<'_>], on_disk: &[u8]) {
        let identity = NewFile {
            path: "keys/n1.age".into(),
            contents: IDENTITY.to_vec(),
            mode: 0o600,
        };
        let journal = journal_for(repo, changes, std::slice::from_ref(&identity)).unwrap();
        write_journal(repo, &journal, &Record::for_repo(repo).unwrap()).unwrap();
        inside::create_dirs(repo, "keys", 0o700).unwrap();
        inside::write_new(&repo.join("keys/n1.age"), on_disk, 0o600).unwrap();
    }

    /// Recover counts every file it put back: the changed ones and the new identities it removed.
    #[test]
    fn recover_counts_the_new_files_it_removes_with_the_changed_ones() {
        let repo = sample_repo();
        let before = tree_of(repo.path());
        let new_a = TreeFile::text("a2\n");
        let changes: Vec<FileChange> = vec![("a.nix".into(), Some(&new_a))];
        crash_after_the_identity(repo.path(), &changes, IDENTITY);

        assert_eq!(recover(repo.path()).unwrap(), Some(2));
        assert_eq!(tree_of(repo.path()), before);
    }

    /// A backup is named by a number in the transaction directory: a journal naming anything
    /// else (a path, an empty name, a number longer than any index) is damaged.
    #[test]
    fn a_journal_names_backups_by_number_only() {
        let journal = |backup: &str| {
            serde_json::json!({
                "token": "0",
                "created_dirs": [],
                "created_files": [],
                "ops": [{"dest": "a.nix", "tmp": null, "sha256": null, "backup": backup}],
            })
            .to_string()
        };
        for good in ["0", "17", "12345678901234567890"] {
            assert!(parse_journal(journal(good).as_bytes()).is_ok(), "{good}");
        }
        for bad in ["", "../a.nix", "1/2", "x", "123456789012345678901"] {
            let e = parse_journal(journal(bad).as_bytes()).unwrap_err();
            assert!(
                format!("{e}").contains("is not a backup's name"),
                "{bad}: {e}"
            );
        }
    }

    /// Clearing the transaction directory removes the backups and a partial journal, keeps
    /// anything else (then says so), and is an error, not "nothing to do", when it cannot read it.
    #[test]
    fn clearing_the_transaction_directory_removes_only_what_a_transaction_leaves() {
        let repo = sample_repo();
        let txn = repo.path().join(TXN_DIR);
        std::fs::create_dir_all(txn.join("5")).unwrap();
        for name in [JOURNAL_PARTIAL, "0", "17", "notes.txt"] {
            std::fs::write(txn.join(name), "x\n").unwrap();
        }
        let e = clear_txn_dir(repo.path()).unwrap_err();
        assert!(
            format!("{e:#}").contains("holds files flakesmith did not put there"),
            "{e:#}"
        );
        assert!(e.is::<UsageError>(), "{e:#}");
        let mut left: Vec<_> = std::fs::read_dir(&txn)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["5", "notes.txt"]);

        std::fs::remove_dir(txn.join("5")).unwrap();
        std::fs::remove_file(txn.join("notes.txt")).unwrap();
        clear_txn_dir(repo.path()).unwrap();
        assert!(!txn.exists());
        clear_txn_dir(repo.path()).unwrap();

        std::fs::write(&txn, "not a directory\n").unwrap();
        let e = clear_txn_dir(repo.path()).unwrap_err();
        assert!(format!("{e:#}").starts_with("reading "), "{e:#}");
    }

    /// Every journal carries its own random token, which its staged files are named by: a
    /// record a crashed run left behind never vouches for a later journal of the same changes.
    #[test]
    fn each_journal_has_its_own_token_and_names_its_staged_files_by_it() {
        let repo = sample_repo();
        let new_a = TreeFile::text("a2\n");
        let changes: Vec<FileChange> = vec![("a.nix".into(), Some(&new_a))];
        let first = journal_for(repo.path(), &changes, &[]).unwrap();
        let second = journal_for(repo.path(), &changes, &[]).unwrap();
        assert_eq!(first.token.len(), 32);
        assert_ne!(first.token, second.token);
        assert_eq!(
            first.ops[0].tmp.as_deref(),
            Some(format!(".a.nix.{}-0.flakesmith-tmp", first.token).as_str())
        );
        assert_ne!(
            serde_json::to_vec(&first).unwrap(),
            serde_json::to_vec(&second).unwrap()
        );
    }

    /// A rolled-back transaction that made `.flakesmith` (a repo without one, say an old one)
    /// takes it away again, also when it made no other directory.
    #[test]
    fn a_rollback_removes_the_state_directory_it_made() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("a.nix"), "a\n").unwrap();
        let before = tree_of(repo.path());
        let new_a = TreeFile::text("a2\n");
        let journal = start(repo.path(), &[("a.nix".into(), Some(&new_a))]);
        assert_eq!(journal.created_dirs, [".flakesmith"]);
        assert_eq!(recover(repo.path()).unwrap(), Some(1));
        assert_eq!(tree_of(repo.path()), before);
    }

    /// A hard link is the same file; two files with the same bytes are not.
    #[test]
    fn same_file_means_the_same_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, "x\n").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        std::fs::write(&c, "x\n").unwrap();
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &c));
        assert!(!same_file(&a, &dir.path().join("missing")));
    }

    /// A link put where a backed-up file was is replaced by the backup, never read through,
    /// even when what it points to holds the same bytes.
    #[test]
    fn a_link_in_place_of_a_backed_up_file_is_replaced_not_followed() {
        let repo = sample_repo();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("target");
        std::fs::write(&target, "a\n").unwrap();
        let backup = repo.path().join("backup");
        std::fs::write(&backup, "a\n").unwrap();
        std::fs::remove_file(repo.path().join("a.nix")).unwrap();
        std::os::unix::fs::symlink(&target, repo.path().join("a.nix")).unwrap();

        restore(repo.path(), "a.nix", &backup).unwrap();
        let meta = std::fs::symlink_metadata(repo.path().join("a.nix")).unwrap();
        assert!(meta.is_file(), "a.nix is a regular file again");
        assert_eq!(std::fs::read(repo.path().join("a.nix")).unwrap(), b"a\n");
        assert!(!backup.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"a\n");
    }

    /// A rollback removes a new file only while it holds what the transaction wrote: an
    /// identity the user put there after the crash stays.
    #[test]
    fn a_rollback_keeps_a_new_file_the_user_replaced() {
        let repo = sample_repo();
        crash_after_the_identity(repo.path(), &[], b"the user's\n");

        recover(repo.path()).unwrap();
        assert_eq!(
            std::fs::read(repo.path().join("keys/n1.age")).unwrap(),
            b"the user's\n"
        );
    }

    /// Removing a directory the transaction made: gone, not empty or not a directory is
    /// fine; any other failure (here an unwritable parent) is an error, which the rollback
    /// reports.
    #[test]
    fn a_directory_that_cannot_be_removed_is_an_error() {
        let repo = sample_repo();
        std::fs::create_dir_all(repo.path().join("parent/empty")).unwrap();
        std::fs::create_dir_all(repo.path().join("full/x")).unwrap();
        remove_empty_dir(repo.path(), "missing").unwrap();
        remove_empty_dir(repo.path(), "full").unwrap();
        remove_empty_dir(repo.path(), "a.nix").unwrap();
        assert!(repo.path().join("full/x").is_dir());

        let parent = repo.path().join("parent");
        let immutable = super::super::testing::Unwritable::set(&parent);
        let e = remove_empty_dir(repo.path(), "parent/empty").unwrap_err();
        assert!(format!("{e:#}").starts_with("removing "), "{e:#}");
        drop(immutable);
        remove_empty_dir(repo.path(), "parent/empty").unwrap();
        assert!(!repo.path().join("parent/empty").exists());
    }

    /// A backup copied (where no hard link can be made) keeps the original's permission bits,
    /// setuid and sticky ones included; a path that is gone reads as 0644.
    #[test]
    fn mode_of_is_the_permission_bits_of_the_file_itself() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x\n").unwrap();
        for mode in [0o751, 0o600, 0o1755] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(mode_of(&file), mode, "{mode:o}");
        }
        assert_eq!(mode_of(&dir.path().join("missing")), 0o644);
    }

    /// A journal larger than any flakesmith writes is refused before it is read whole.
    #[test]
    fn a_journal_too_large_to_be_ours_is_refused() {
        let repo = sample_repo();
        std::fs::create_dir_all(repo.path().join(TXN_DIR)).unwrap();
        let journal = std::fs::File::create(repo.path().join(TXN_DIR).join(JOURNAL)).unwrap();
        journal.set_len(MAX_JOURNAL_BYTES + 1).unwrap();
        let e = recover(repo.path()).unwrap_err();
        assert!(
            format!("{e:#}").contains("journal is larger than 67108864 bytes"),
            "{e:#}"
        );
    }

    /// A private new file (no group or other bits) gets a 0700 directory, made or tightened; a
    /// public one's directory is made as usual, 0755.
    #[test]
    fn the_directory_of_a_private_new_file_is_0700_and_of_a_public_one_0755() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let repo = sample_repo();
        std::fs::create_dir(repo.path().join("old")).unwrap();
        std::fs::set_permissions(
            repo.path().join("old"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let file = |path: &str, mode| NewFile {
            path: path.into(),
            contents: b"x\n".to_vec(),
            mode,
        };
        run(
            repo.path(),
            &[],
            &[
                file("keys/n1.age", 0o600),
                file("old/n2.age", 0o600),
                file("pub/n1.pub", 0o644),
            ],
        )
        .unwrap();
        assert_eq!(mode(&repo.path().join("keys")), 0o700);
        assert_eq!(mode(&repo.path().join("old")), 0o700);
        assert_eq!(mode(&repo.path().join("keys/n1.age")), 0o600);
        // Public ones as the umask leaves them (Linux's /proc/self/status says which).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        assert_eq!(mode(&repo.path().join("pub")), 0o755 & !umask);
    }

    /// A journal that names paths outside the repo, written as this machine's flakesmith would
    /// (the record vouches for it), is still refused: every path must lie inside the repo.
    #[test]
    fn a_vouched_for_journal_with_paths_outside_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("victim")).unwrap();
        std::fs::write(outside.path().join("victim/f"), "keep\n").unwrap();
        let victim = outside.path().join("victim");
        for path in [
            victim.to_str().unwrap().to_owned(),
            "../victim".into(),
            "a/../../victim".into(),
        ] {
            let repo = sample_repo();
            let text = serde_json::json!({
                "token": "0",
                "created_dirs": [path],
                "created_files": [{"path": format!("{path}/f"), "sha256": sha256_hex(b"keep\n")}],
                "ops": [{"dest": format!("{path}/f"), "tmp": null, "sha256": sha256_hex(b"keep\n"), "backup": null}],
            })
            .to_string();
            std::fs::create_dir_all(repo.path().join(TXN_DIR)).unwrap();
            std::fs::write(repo.path().join(TXN_DIR).join(JOURNAL), &text).unwrap();
            Record::for_repo(repo.path())
                .unwrap()
                .write(text.as_bytes())
                .unwrap();
            let e = recover(repo.path()).unwrap_err();
            assert!(format!("{e:#}").contains("not a path inside"), "{e:#}");
            assert_eq!(std::fs::read_to_string(victim.join("f")).unwrap(), "keep\n");
            Record::for_repo(repo.path()).unwrap().remove();
        }
    }
}
