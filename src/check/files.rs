//! The files `check` looks at: everything in the repo but git's and flakesmith's own folders
//! and build output, and which of them git tracks.

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use walkdir::WalkDir;

use crate::error::UsageError;

/// The most `check` reads of one text file it parses: Nix files, secrets and .sops.yaml are
/// kilobytes, and a hostile repository may commit gigabytes under such a name.
const MAX_TEXT_BYTES: u64 = 16 << 20;

/// Folders that are not the user's sources: git's, flakesmith's base record (copies of
/// generated files, checked through the originals), cargo's and nix's build output.
const SKIPPED_DIRS: &[&str] = &[".git", ".flakesmith", "target", "result", ".direnv"];

pub struct RepoFiles {
    pub root: PathBuf,
    /// Regular files (symlinks are not followed), relative, `/`-separated, sorted.
    pub files: Vec<String>,
    /// What `git ls-files` lists; `None` when the repo is not a git work tree (or git is
    /// missing), in which case the "tracked by git" rules cannot say anything.
    pub tracked: Option<BTreeSet<String>>,
    /// Files git would add with `git add --all` (untracked and not ignored); `None` as above.
    pub addable: Option<BTreeSet<String>>,
}

impl RepoFiles {
    pub fn scan(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let walk = WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || !(e.file_type().is_dir()
                        && SKIPPED_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
            });
        for entry in walk {
            let entry = entry.with_context(|| format!("reading {}", root.display()))?;
            if entry.file_type().is_file() {
                let relative = entry
                    .path()
                    .strip_prefix(root)
                    .expect("walkdir stays below its root")
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push(relative);
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            files,
            tracked: git_files(root, &["--cached"]),
            addable: git_files(root, &["--others", "--exclude-standard"]),
        })
    }

    /// A repository of these files (path, text) in a new temporary directory, scanned as
    /// `check` scans one; not a git work tree. For the rules' unit tests.
    #[cfg(test)]
    pub(crate) fn of(files: &[(&str, &str)]) -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
        let files = Self::scan(dir.path()).unwrap();
        (dir, files)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn with_extension<'a>(&'a self, ext: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.files
            .iter()
            .map(String::as_str)
            .filter(move |p| p.ends_with(ext))
    }

    /// The text of a file the rules parse (Nix, sops files, .sops.yaml), read through a bound:
    /// a file over [`MAX_TEXT_BYTES`] is bad input, not something to hold in memory.
    pub fn read_text(&self, relative: &str) -> Result<String> {
        let file = fs_err::File::open(self.path(relative))?;
        let mut bytes = Vec::new();
        file.take(MAX_TEXT_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_TEXT_BYTES {
            return Err(UsageError::new(format!(
                "{relative}: larger than the {} MiB `flakesmith check` reads of a text file it parses",
                MAX_TEXT_BYTES >> 20
            ))
            .into());
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn is_tracked(&self, relative: &str) -> bool {
        self.tracked.as_ref().is_some_and(|t| t.contains(relative))
    }

    pub fn is_addable(&self, relative: &str) -> bool {
        self.addable.as_ref().is_some_and(|t| t.contains(relative))
    }
}

fn git_files(root: &Path, which: &[&str]) -> Option<BTreeSet<String>> {
    let inside = Command::new("git")
        .args(["rev-parse", "--show-prefix"])
        .current_dir(root)
        .output()
        .ok()?;
    if !inside.status.success() {
        return None;
    }
    // Paths relative to `root`, even when `root` is a folder inside a bigger work tree.
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .args(which)
        .args(["--", "."])
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(
        output
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    )
}

/// Writes `text` at the start of a file of `len` bytes at `path`, the rest a hole (reads as
/// zeros): a file of any size at the cost of its text. For the rules' unit tests.
#[cfg(test)]
pub(crate) fn text_then_hole(path: &Path, text: &str, len: u64) {
    fs_err::write(path, text).unwrap();
    let file = fs_err::File::options().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_file_of_16_mib_is_read_and_a_larger_one_is_bad_input() {
        let (_dir, files) = RepoFiles::of(&[("at.nix", ""), ("above.nix", "")]);
        text_then_hole(&files.path("at.nix"), "", MAX_TEXT_BYTES);
        text_then_hole(&files.path("above.nix"), "", MAX_TEXT_BYTES + 1);
        assert_eq!(
            files.read_text("at.nix").unwrap().len() as u64,
            MAX_TEXT_BYTES
        );
        let error = files.read_text("above.nix").unwrap_err();
        assert!(error.is::<UsageError>(), "{error:?}");
        assert_eq!(
            error.to_string(),
            "above.nix: larger than the 16 MiB `flakesmith check` reads of a text file it parses"
        );
    }
}
