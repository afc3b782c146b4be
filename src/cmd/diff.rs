//! `flakesmith diff`: what `update` would change, as a unified diff; exit 1 when anything.

use anyhow::Result;

use super::{
    repo::{print_unresolved, Repo},
    Outcome,
};
use crate::{
    cli::DiffArgs,
    sync::{self, PlanOptions},
};

pub fn run(args: DiffArgs) -> Result<Outcome> {
    let repo = Repo::open(&args.repo.dir)?;
    let (_, plan) = repo.plan(&repo.answers, PlanOptions::default())?;
    let diff = sync::unified_diff(&repo.dir, &plan)?;
    print!("{diff}");
    let unresolved = repo.unresolved_conflicts(&plan);
    print_unresolved(&unresolved);
    Ok(if diff.is_empty() && unresolved.is_empty() {
        Outcome::Success
    } else {
        Outcome::Findings
    })
}
