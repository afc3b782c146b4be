//! The git index of a generated repository. A flake in a git work tree sees only the files git
//! knows (Nix copies the files `git ls-files` lists), so every command that writes or removes
//! generated files tells git about exactly those files, and about nothing else: never a file
//! git ignores (keys/), never a file of the user's.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

/// How new files enter the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `git add`: a new repository's first files, ready to commit.
    Contents,
    /// `git add --intent-to-add`: the flake sees the file, and `git diff` shows it as new, so
    /// the user reviews flakesmith's change before committing it.
    IntentToAdd,
}

/// What [`sync_index`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub added: usize,
    pub removed: usize,
    /// Generated files git ignores, and so the flake cannot see.
    pub ignored: Vec<String>,
}

/// The top of the git work tree `dir` is in; `None` when it is in none (or git is missing).
pub(crate) fn work_tree(dir: &Path) -> Option<PathBuf> {
    let out = git(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let top = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(top.trim_end_matches('\n')))
}

/// `git init` in `dir`.
pub(crate) fn init(dir: &Path) -> Result<()> {
    run(git(dir).args(["init", "--quiet"]))
}

/// Brings the index in line with the disk for `paths` (relative to `dir`, which is in a git
/// work tree): a path on disk that git does not track yet is added (unless git ignores it), a
/// path gone from disk that git tracks is removed from the index. Other paths are not touched.
pub(crate) fn sync_index(dir: &Path, paths: &[String], stage: Stage) -> Result<Synced> {
    work_tree(dir).context("not in a git work tree")?;
    let (present, gone): (Vec<&String>, Vec<&String>) = paths
        .iter()
        .partition(|p| dir.join(p).symlink_metadata().is_ok());
    let untracked = list(dir, &["--others"], &present)?;
    let addable = list(dir, &["--others", "--exclude-standard"], &present)?;
    let tracked_gone = list(dir, &["--cached"], &gone)?;
    if !addable.is_empty() {
        let mut add = git(dir);
        add.arg("add");
        if stage == Stage::IntentToAdd {
            add.arg("--intent-to-add");
        }
        run(add.arg("--").args(&addable))?;
    }
    if !tracked_gone.is_empty() {
        run(git(dir)
            .args(["rm", "--cached", "--quiet", "--"])
            .args(&tracked_gone))?;
    }
    let ignored = untracked
        .into_iter()
        .filter(|p| !addable.contains(p))
        .collect();
    Ok(Synced {
        added: addable.len(),
        removed: tracked_gone.len(),
        ignored,
    })
}

/// `git ls-files -z <which> -- <paths>`, relative to `dir`.
fn list(dir: &Path, which: &[&str], paths: &[&String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let out = git(dir)
        .args(["ls-files", "-z"])
        .args(which)
        .arg("--")
        .args(paths)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git ls-files: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// git in `dir`, taking paths literally (a generated name is never a glob).
fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("--literal-pathspecs").current_dir(dir);
    command
}

fn run(command: &mut Command) -> Result<()> {
    let out = command.output().context("running git")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
