//! `flakesmith update`: re-render from flakesmith.yaml and merge the result with the user's edits.

use anyhow::Result;

use super::{
    repo::{print_plan, print_unresolved, report, Repo},
    Outcome,
};
use crate::{
    cli::UpdateArgs,
    sync::{Action, PlanOptions},
};

pub fn run(args: UpdateArgs) -> Result<Outcome> {
    let repo = Repo::open(&args.repo.dir)?;
    let options = PlanOptions {
        restore_deleted: args.restore_deleted,
        ..Default::default()
    };
    if args.dry_run {
        let (_, plan) = repo.plan(&repo.answers, options)?;
        print_plan(&plan, true);
        return Ok(Outcome::Success);
    }
    let change = repo.prepare(&repo.answers, options)?;
    print_plan(&change.plan, false);
    // Applied even when no file changes: the base record may still need to catch up.
    let applied = repo.apply(&change)?;
    let outcome = if change.plan.is_noop() {
        Outcome::Success
    } else {
        report(&applied)
    };
    // Markers left by an earlier update are no change to make, but the repo is not finished.
    let unresolved: Vec<String> = repo
        .unresolved_conflicts(&change.plan)
        .into_iter()
        .filter(|path| !applied.conflicts.contains(path))
        .collect();
    if !unresolved.is_empty() {
        print_unresolved(&unresolved);
        return Ok(Outcome::Findings);
    }
    // Not a change, so not in the plan's output; said so the user knows why a file is missing.
    let deleted: Vec<&str> = change
        .plan
        .entries
        .iter()
        .filter(|(_, action)| *action == Action::KeepDeleted)
        .map(|(path, _)| path.as_str())
        .collect();
    if !deleted.is_empty() {
        println!(
            "kept deleted: {} (--restore-deleted brings them back)",
            deleted.join(", ")
        );
    }
    if change.plan.is_noop() {
        println!("Up to date.");
    }
    Ok(outcome)
}
