//! Rules about git: a flake in a git work tree sees only the files git tracks.

use anyhow::Result;

use super::{Finding, RepoFiles};
use crate::{
    model::{answers::BLOB_FILE, Answers},
    render::shell_word,
};

/// Every generated file on disk (and the bootloader blob the Nix code names) is tracked by git,
/// at least with `--intent-to-add`: an untracked one is missing from the flake, and `nix build`
/// fails with "No such file" on it, or builds without it.
pub fn untracked_generated(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    if files.tracked.is_none() {
        return Ok(Vec::new());
    }
    let base = crate::sync::read_base(&files.root)?;
    let blob = (answers.bootloader.blob.as_deref() == Some(BLOB_FILE)).then_some(BLOB_FILE);
    let mut findings = Vec::new();
    for path in base.paths().chain(blob) {
        if files.path(path).is_file() && !files.is_tracked(path) {
            findings.push(Finding::new(
                path,
                "generated, but git does not track it, so the flake cannot see it",
                format!("git add {}", shell_word(path)),
            ));
        }
    }
    Ok(findings)
}
