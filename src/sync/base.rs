//! The record of what flakesmith generated last time (`.flakesmith/base/<path>`): the common
//! ancestor of a three-way merge, kept in the repo so updates work without git history.

use std::path::Path;

use anyhow::{Context, Result};
use walkdir::WalkDir;

use super::inside;
use crate::{
    render::{Tree, TreeFile, ANSWERS_FILE},
    UsageError,
};

/// Where the base copies live, relative to the repo root.
pub const BASE_DIR: &str = ".flakesmith/base";

/// Reads the recorded base of a repo; an empty tree when nothing was recorded. A link anywhere
/// in it is refused: its target would be merged into the repo's files.
pub fn read_base(repo: &Path) -> Result<Tree> {
    let root = inside::resolve(repo, BASE_DIR)?;
    let mut tree = Tree::new();
    if !root.is_dir() {
        return Ok(tree);
    }
    for entry in WalkDir::new(&root)
        .follow_root_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        if !entry.file_type().is_file() {
            return Err(damaged(format!(
                "{} is not a regular file",
                entry
                    .path()
                    .strip_prefix(repo)
                    .unwrap_or(entry.path())
                    .display()
            )));
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

/// Checks that the repo's base record is there and whole: without it every generated file looks
/// like the user's own, and a change would land beside flakesmith.yaml instead of in it.
pub fn check_base(repo: &Path) -> Result<()> {
    let base = read_base(repo)?;
    let Some(answers) = base.get(ANSWERS_FILE) else {
        return Err(damaged(if base.is_empty() {
            format!("{BASE_DIR}/ is missing")
        } else {
            format!("{BASE_DIR}/ has no {ANSWERS_FILE}")
        }));
    };
    let text = String::from_utf8_lossy(&answers.contents);
    if crate::model::Answers::from_yaml(&text).is_err() {
        return Err(damaged(format!(
            "{BASE_DIR}/{ANSWERS_FILE} is not an answers file"
        )));
    }
    Ok(())
}

/// The error for a base record that cannot be used, with the two ways to get one back.
fn damaged(what: String) -> anyhow::Error {
    UsageError::new(format!(
        "{what}: it records what flakesmith generated, to tell your edits from its own; nothing was changed. Restore it with `git checkout HEAD -- {BASE_DIR}`, or rebuild it from the answers, in the repo, with `flakesmith init . --force --answers {ANSWERS_FILE}` (your files are kept; where one differs, flakesmith's version goes beside it)"
    ))
    .into()
}

// One function with a cfg block per platform, not two functions: cargo-mutants then mutates
// only code the tests compile.
pub fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    #[cfg(not(unix))]
    let executable = {
        let _ = path;
        false
    };
    executable
}
