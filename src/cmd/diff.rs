//! `flakesmith diff`: what `update` would change, as a unified diff; exit 1 when anything.

use std::io::Write;

use anyhow::Result;

use super::{repo::Repo, Outcome};
use crate::{
    cli::DiffArgs,
    sync::{self, PlanOptions},
};

pub fn run(args: DiffArgs) -> Result<Outcome> {
    let repo = Repo::open(&args.repo.dir)?;
    let (_, plan) = repo.plan(&repo.answers, PlanOptions::default())?;
    let diff = sync::unified_diff(&repo.dir, &plan)?;
    // A closed pipe (`flakesmith diff | head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(diff.as_bytes());
    // A conflict `update` left is no difference to the render any more, but not a finished
    // repo either: CI must not pass with markers in it.
    let mut unresolved = 0;
    for (path, _) in &plan.entries {
        let Ok(text) = std::fs::read_to_string(repo.dir.join(path)) else {
            continue;
        };
        if sync::has_conflict_markers(&text) {
            eprintln!("{path}: unresolved conflict markers from an earlier update");
            unresolved += 1;
        }
    }
    Ok(if diff.is_empty() && unresolved == 0 {
        Outcome::Success
    } else {
        Outcome::Findings
    })
}
