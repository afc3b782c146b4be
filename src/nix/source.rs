//! What flakesmith hands to Nix as the repository's flake.
//!
//! A git work tree goes as it is: Nix reads it as a git flake, which copies tracked files only,
//! and keys/ is git-ignored (a tracked key is refused here). A plain directory (`init --no-git`,
//! a tarball) would be copied into the world-readable store whole, keys/ included, so Nix gets
//! a filtered copy of it instead, made in a private temporary directory.

use std::{
    io::Write,
    path::{Component, Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{
    secrets::{private_key, KEYS_DIR},
    UsageError,
};

/// Top-level names never handed to Nix: private keys, flakesmith's own state (journal, base),
/// built images and `nix build` result links.
const NEVER_COPIED: &[&str] = &[KEYS_DIR, ".flakesmith", "images", ".git"];

/// The flake Nix evaluates for a repository, alive as long as this value.
pub struct FlakeSource {
    repo: PathBuf,
    copy: Option<tempfile::TempDir>,
}

impl FlakeSource {
    /// The directory to give Nix.
    pub fn path(&self) -> &Path {
        self.copy.as_ref().map_or(&self.repo, |c| c.path())
    }

    /// True when Nix gets a filtered copy (the repository is not a git work tree).
    pub fn is_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// Nix writes a missing or outdated flake.lock into the flake it evaluated: bring that
    /// back into the repository, as evaluating the repository itself would have.
    pub fn keep_lock_file(&self) -> Result<()> {
        let Some(copy) = &self.copy else {
            return Ok(());
        };
        let Ok(lock) = fs_err::read(copy.path().join("flake.lock")) else {
            return Ok(());
        };
        let target = self.repo.join("flake.lock");
        if fs_err::read(&target).ok().as_ref() == Some(&lock) {
            return Ok(());
        }
        let mut temp = tempfile::NamedTempFile::new_in(&self.repo)?;
        temp.write_all(&lock)?;
        temp.as_file().sync_all()?;
        temp.persist(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        Ok(())
    }
}

/// The flake for `repo` (canonical): the repository itself when Nix reads it through git, else
/// a filtered copy. Files skipped for holding a private key, and symlinks, are named on stderr.
pub fn flake_source(repo: &Path) -> Result<FlakeSource> {
    if is_git_flake(repo) {
        refuse_tracked_keys(repo)?;
        return Ok(FlakeSource {
            repo: repo.to_owned(),
            copy: None,
        });
    }
    // tempfile makes the directory 0700: the copy is as private as the repository's keys/ is.
    let copy = tempfile::Builder::new()
        .prefix("flakesmith-source-")
        .tempdir()?;
    copy_filtered(repo, copy.path())?;
    Ok(FlakeSource {
        repo: repo.to_owned(),
        copy: Some(copy),
    })
}

/// Nix (2.8 and later) reads a directory as a git flake when it or a parent holds `.git`.
fn is_git_flake(repo: &Path) -> bool {
    repo.ancestors().any(|dir| dir.join(".git").exists())
}

/// Files larger than this are not searched for keys (disk images, bootloader blobs).
const MAX_SCANNED_BYTES: u64 = 16 << 20;

/// A git flake is copied as git tracks it: refuses when that includes keys/ or any file holding
/// a private key.
fn refuse_tracked_keys(repo: &Path) -> Result<()> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["ls-files", "-z"])
        .output();
    // Without git, Nix cannot read the repository as a git flake either: it fails on its own.
    let Ok(output) = output else { return Ok(()) };
    let tracked = output
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let keys_dir = format!("{KEYS_DIR}/");
    for path in tracked {
        let why = if path.starts_with(&keys_dir) {
            "is tracked by git"
        } else {
            let full = repo.join(&path);
            let small = fs_err::symlink_metadata(&full)
                .is_ok_and(|m| m.is_file() && m.len() <= MAX_SCANNED_BYTES);
            let text = if small {
                fs_err::read(&full).ok()
            } else {
                None
            };
            match text {
                Some(bytes)
                    if private_key::find_complete(&String::from_utf8_lossy(&bytes)).is_some() =>
                {
                    "holds a private key and is tracked by git"
                }
                _ => continue,
            }
        };
        bail!(UsageError::new(format!(
            "{} {why}, so Nix would copy it into the world-readable store: `git rm --cached {}` (and move a key into keys/, which git ignores), then build again; `flakesmith check` lists every such file",
            crate::echo::quoted(&path),
            crate::render::shell_word(&path)
        )));
    }
    Ok(())
}

fn copy_filtered(repo: &Path, to: &Path) -> Result<()> {
    let walk = walkdir::WalkDir::new(repo)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let top = e
                .path()
                .strip_prefix(repo)
                .ok()
                .and_then(|p| match p.components().next() {
                    Some(Component::Normal(name)) => Some(name.to_string_lossy().into_owned()),
                    _ => None,
                });
            match top {
                Some(name) => !NEVER_COPIED.contains(&name.as_str()) && !name.starts_with("result"),
                None => true,
            }
        });
    for entry in walk {
        let entry = entry?;
        let relative = entry.path().strip_prefix(repo)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = to.join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs_err::create_dir(&target)?;
        } else if kind.is_symlink() {
            // A link may point at anything on this machine (~/.ssh); Nix would store the link,
            // and what the flake reads through it is not this repository's to give.
            eprintln!(
                "note: {} is a symbolic link: not handed to nix",
                relative.display()
            );
        } else if kind.is_file() {
            let bytes = fs_err::read(entry.path())?;
            if private_key::find_complete(&String::from_utf8_lossy(&bytes)).is_some() {
                eprintln!(
                    "note: {} holds a private key: not handed to nix",
                    relative.display()
                );
                continue;
            }
            fs_err::write(&target, &bytes)?;
            let mode = entry.metadata()?.permissions();
            fs_err::set_permissions(&target, mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_copied_without_keys_state_images_and_links() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        for dir in ["keys", ".flakesmith/txn", "images", "nodes", "result"] {
            fs_err::create_dir_all(r.join(dir)).unwrap();
        }
        fs_err::write(r.join("flake.nix"), "{ outputs = _: { }; }").unwrap();
        fs_err::write(r.join("nodes/n1.nix"), "{ }").unwrap();
        fs_err::write(r.join("keys/n1.age"), "AGE-SECRET-KEY-1…").unwrap();
        fs_err::write(r.join(".flakesmith/txn/journal"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("link")).unwrap();
        let source = flake_source(r).unwrap();
        assert!(source.is_copy());
        let mut copied: Vec<String> = walkdir::WalkDir::new(source.path())
            .min_depth(1)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                e.path()
                    .strip_prefix(source.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        copied.sort();
        assert_eq!(copied, ["flake.nix", "nodes", "nodes/n1.nix"]);
    }
}
