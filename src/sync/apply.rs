//! Writing to disk, all or nothing: a plan is applied by a journaled transaction
//! ([`super::txn`]), so an error or a crash part-way is rolled back. A new project (`init`) is
//! the same transaction into an empty directory.

use std::path::Path;

use anyhow::Result;

use super::{
    base::BASE_DIR,
    plan::{Action, Plan},
    txn::{self, FileChange, NewFile},
};
/// Suffix of the generated version written beside a file flakesmith must not overwrite.
pub const NEW_SUFFIX: &str = ".flakesmith-new";

/// Suffix of the user's text of flakesmith.yaml kept when the new answers had to be rewritten.
pub const OLD_SUFFIX: &str = ".flakesmith-old";

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
}

/// Applies a plan to an existing repo and records its new base, creating `new_files` (node
/// identities) in the same transaction.
pub fn apply_with(repo: &Path, plan: &Plan, new_files: &[NewFile]) -> Result<Applied> {
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
        }
    }
    for path in old_base.paths().filter(|p| plan.new_base.get(p).is_none()) {
        changes.push((base_rel(path), None));
    }
    if changes.is_empty() && new_files.is_empty() {
        return Ok(applied);
    }
    txn::run(repo, &changes, new_files)?;
    // Directories emptied by removals (a removed node's base copy) go too; best effort.
    for (path, file) in &changes {
        if file.is_none() {
            let mut dir = Path::new(path).parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                // rmdir removes no link and no directory with anything in it.
                if std::fs::remove_dir(repo.join(d)).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    Ok(applied)
}

fn base_rel(path: &str) -> String {
    format!("{BASE_DIR}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Tree;

    #[test]
    fn a_directory_emptied_by_removals_goes_and_one_with_a_file_left_stays() {
        let repo = tempfile::tempdir().unwrap();
        for file in ["gone/deeper/a.nix", "kept/b.nix", "kept/c.nix"] {
            let path = repo.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x\n").unwrap();
        }
        let plan = Plan {
            entries: vec![
                ("gone/deeper/a.nix".to_string(), Action::Delete),
                ("kept/b.nix".to_string(), Action::Delete),
            ],
            new_base: Tree::new(),
        };
        let applied = apply_with(repo.path(), &plan, &[]).unwrap();
        assert_eq!(applied.deleted, ["gone/deeper/a.nix", "kept/b.nix"]);
        assert!(!repo.path().join("gone").exists());
        assert!(!repo.path().join("kept/b.nix").exists());
        assert!(repo.path().join("kept/c.nix").exists());
    }
}
