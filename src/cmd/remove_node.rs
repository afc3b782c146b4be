//! `flakesmith remove-node`: the node out of the answers, then the repo re-rendered and merged.
//! A file of the node's that the user edited stays unless `--force`.

use anyhow::Result;

use super::{
    repo::{print_plan, print_updatekeys, report, Repo},
    Outcome,
};
use crate::{
    cli::RemoveNodeArgs,
    model::answers::SecretsMode,
    sync::{Action, PlanOptions},
};

pub fn run(args: RemoveNodeArgs) -> Result<Outcome> {
    let repo = Repo::open(&args.repo.dir)?;
    let mut answers = repo.answers.clone();
    let removed = answers.remove_node(&args.host)?;
    let emptied = answers.remove_empty_boards();
    let options = PlanOptions {
        delete_edited: args.force,
        ..Default::default()
    };
    let change = repo.prepare(&answers, options)?;
    change.check_answers_land()?;
    let plan = &change.plan;
    println!(
        "{} {} (board {}, slot {})",
        if args.dry_run {
            "Would remove"
        } else {
            "Removing"
        },
        removed.host,
        removed.board,
        removed.slot
    );
    for board in &emptied {
        println!(
            "{} board {} (BMC {}): no node is left on it (`add-node --board {} --bmc-host {}` brings it back)",
            if args.dry_run { "Would remove" } else { "Removing" },
            board.name,
            board.bmc_host,
            board.name,
            board.bmc_host
        );
    }
    print_plan(plan, false);
    let kept: Vec<&str> = plan
        .entries
        .iter()
        .filter(|(_, a)| *a == Action::KeepEdited)
        .map(|(p, _)| p.as_str())
        .collect();
    if args.dry_run {
        return Ok(Outcome::Success);
    }
    let applied = repo.apply(&change)?;
    let outcome = report(&applied);
    for path in kept {
        // The node is gone from the answers now, so no later command removes the file.
        println!(
            "kept {path}: you edited it; delete it yourself once you no longer need it (`remove-node --force` removes edited files with their node)"
        );
    }
    let identity = crate::secrets::identity_path(&repo.dir, &removed.host);
    if identity.exists() {
        // A secret of the user's, and the only way to read what was encrypted to the node.
        println!(
            "kept {}/{}.age, the node's age identity: delete it once nothing needs it",
            crate::secrets::KEYS_DIR,
            removed.host
        );
    }
    if change.project.secrets.mode == SecretsMode::Sops {
        print_updatekeys(
            &repo.dir,
            &format!(
                "stop encrypting to {}'s recipient (and rotate what it could read)",
                removed.host
            ),
        );
    }
    Ok(outcome)
}
