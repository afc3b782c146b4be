//! The record of what flakesmith generated last time (`.flakesmith/base/<path>`): the common
//! ancestor of a three-way merge, kept in the repo so updates work without git history.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use walkdir::WalkDir;

use crate::render::{Tree, TreeFile};

/// Where the base copies live, relative to the repo root.
pub const BASE_DIR: &str = ".flakesmith/base";

pub fn base_path(repo: &Path, path: &str) -> PathBuf {
    repo.join(BASE_DIR).join(path)
}

/// Reads the recorded base of a repo; an empty tree when nothing was recorded.
pub fn read_base(repo: &Path) -> Result<Tree> {
    let root = repo.join(BASE_DIR);
    let mut tree = Tree::new();
    if !root.is_dir() {
        return Ok(tree);
    }
    for entry in WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(&root)
            .expect("walkdir stays below its root")
            .to_string_lossy()
            .replace('\\', "/");
        let contents = fs_err::read(entry.path())?;
        tree.insert(
            relative,
            TreeFile {
                contents,
                executable: is_executable(entry.path()),
            },
        );
    }
    Ok(tree)
}

#[cfg(unix)]
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub fn is_executable(_: &Path) -> bool {
    false
}
