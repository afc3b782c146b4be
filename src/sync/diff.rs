//! A plan as a unified diff: what `update` would do to each file, in git's format.

use std::{fmt::Write, path::Path};

use anyhow::Result;
use similar::TextDiff;

use super::{
    apply::NEW_SUFFIX,
    plan::{read_if_exists, Action, Plan},
};
use crate::render::TreeFile;

/// The unified diff from the repo on disk to the repo after applying `plan`; empty when the plan
/// changes nothing.
pub fn unified_diff(repo: &Path, plan: &Plan) -> Result<String> {
    let mut out = String::new();
    for (path, action) in &plan.entries {
        let (new_path, new) = match action {
            Action::Create(f)
            | Action::Update(f)
            | Action::Merge(f)
            | Action::Conflict(f)
            | Action::Rewrite { new: f, .. } => (path.clone(), Some(f)),
            // `update` leaves the user's file and writes the generated one beside it; showing
            // the difference between the two is what the user needs to decide.
            Action::KeepUserFile(f) => (format!("{path}{NEW_SUFFIX}"), Some(f)),
            Action::Delete => (path.clone(), None),
            Action::Unchanged | Action::KeepDeleted | Action::KeepEdited => continue,
        };
        let old = read_if_exists(repo, path)?;
        file_diff(&mut out, path, old.as_ref(), &new_path, new);
    }
    Ok(out)
}

fn file_diff(
    out: &mut String,
    old_path: &str,
    old: Option<&TreeFile>,
    new_path: &str,
    new: Option<&TreeFile>,
) {
    let mode = |f: &TreeFile| if f.executable { "100755" } else { "100644" };
    let _ = writeln!(out, "diff --git a/{old_path} b/{new_path}");
    match (old, new) {
        (None, Some(n)) => {
            let _ = writeln!(out, "new file mode {}", mode(n));
        }
        (Some(o), None) => {
            let _ = writeln!(out, "deleted file mode {}", mode(o));
        }
        (Some(o), Some(n)) if o.executable != n.executable => {
            let _ = writeln!(out, "old mode {}\nnew mode {}", mode(o), mode(n));
        }
        _ => {}
    }
    let a = if old.is_some() {
        format!("a/{old_path}")
    } else {
        "/dev/null".into()
    };
    let b = if new.is_some() {
        format!("b/{new_path}")
    } else {
        "/dev/null".into()
    };
    let empty = TreeFile::text("");
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    match (old.as_text(), new.as_text()) {
        (Some(o), Some(n)) => {
            if o != n {
                let diff = TextDiff::from_lines(o, n);
                let _ = write!(
                    out,
                    "{}",
                    diff.unified_diff().context_radius(3).header(&a, &b)
                );
            }
        }
        _ => {
            let _ = writeln!(out, "Binary files {a} and {b} differ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_deleted_and_changed_files_read_like_git() {
        let mut out = String::new();
        file_diff(
            &mut out,
            "x.nix",
            None,
            "x.nix",
            Some(&TreeFile::text("a\n")),
        );
        file_diff(
            &mut out,
            "y.sh",
            Some(&TreeFile::text("a\nb\n")),
            "y.sh",
            Some(&TreeFile::script("a\nc\n")),
        );
        file_diff(&mut out, "z", Some(&TreeFile::text("z\n")), "z", None);
        // Same mode: no mode lines.
        file_diff(
            &mut out,
            "w.nix",
            Some(&TreeFile::text("v\n")),
            "w.nix",
            Some(&TreeFile::text("w\n")),
        );
        assert_eq!(
            out,
            "diff --git a/x.nix b/x.nix\nnew file mode 100644\n--- /dev/null\n+++ b/x.nix\n@@ -0,0 +1 @@\n+a\n\
             diff --git a/y.sh b/y.sh\nold mode 100644\nnew mode 100755\n--- a/y.sh\n+++ b/y.sh\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\
             diff --git a/z b/z\ndeleted file mode 100644\n--- a/z\n+++ /dev/null\n@@ -1 +0,0 @@\n-z\n\
             diff --git a/w.nix b/w.nix\n--- a/w.nix\n+++ b/w.nix\n@@ -1 +1 @@\n-v\n+w\n"
        );
    }
}
