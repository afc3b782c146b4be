//! `flakesmith update`: re-render from flakesmith.yaml and merge the result with the user's edits.

use anyhow::Result;

use super::{
    repo::{print_plan, report, Repo},
    Outcome,
};
use crate::{cli::UpdateArgs, sync::PlanOptions};

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
    if change.plan.is_noop() {
        println!("Up to date.");
        return Ok(Outcome::Success);
    }
    Ok(report(&applied))
}
