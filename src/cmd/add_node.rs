//! `flakesmith add-node`: a new node in the answers, then the repo re-rendered and merged.

use anyhow::Result;

use super::{
    repo::{print_plan, print_updatekeys, report, Repo},
    Outcome,
};
use crate::{
    cli::AddNodeArgs,
    model::{
        answers::{default_bmc_host, SecretsMode},
        NodeRequest, Placement,
    },
    prompt,
    sync::PlanOptions,
    UsageError,
};

pub fn run(args: AddNodeArgs) -> Result<Outcome> {
    if args.count == 0 {
        return Err(UsageError::new("--count: add at least 1 node").into());
    }
    let repo = Repo::open(&args.repo.dir)?;
    let mut answers = repo.answers.clone();
    let mut bmc_hosts = args.bmc_hosts.iter();
    let mut added: Vec<(Placement, Option<String>)> = Vec::new();
    // A node file on disk that no node owns (kept by remove-node) is not silently taken over.
    let avoid: Vec<String> = match fs_err::read_dir(repo.dir.join("nodes")) {
        Ok(entries) => entries
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".nix")
                    .map(str::to_owned)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    for _ in 0..args.count {
        let placement = answers.place_node(&NodeRequest {
            host: args.host.clone(),
            board: args.board.clone(),
            slot: args.slot,
            address: args.address.clone(),
            module: args.module,
            avoid: avoid.clone(),
        })?;
        let bmc_host = if placement.new_board {
            Some(new_board_bmc_host(
                &placement,
                args.board.is_some(),
                bmc_hosts.next(),
                answers.boards.len() + 1,
            )?)
        } else {
            None
        };
        answers.add_node(&placement, bmc_host.clone());
        added.push((placement, bmc_host));
    }
    if bmc_hosts.next().is_some() {
        return Err(UsageError::new(format!(
            "--bmc-host: {} given, but the new nodes need {} new board(s)",
            args.bmc_hosts.len(),
            added.iter().filter(|(p, _)| p.new_board).count()
        ))
        .into());
    }

    let change = repo.prepare(&answers, PlanOptions::default())?;
    change.check_answers_land()?;
    for (p, bmc) in &added {
        let board = match bmc {
            Some(bmc) => format!("new board {} (BMC {bmc})", p.board),
            None => format!("board {}", p.board),
        };
        let address = p.address.as_deref().unwrap_or("DHCP");
        println!(
            "{} {} ({}): {board}, slot {}, {address}",
            if args.dry_run { "Would add" } else { "Adding" },
            p.host,
            p.module,
            p.slot
        );
    }
    print_plan(&change.plan, false);
    if args.dry_run {
        for path in change.node_keys_to_make() {
            println!(
                "{:>13}  {path} (node age identity, 0600, git-ignored)",
                "create"
            );
        }
        return Ok(Outcome::Success);
    }
    let applied = repo.apply(&change)?;
    let outcome = report(&applied);
    if change.project.secrets.mode == SecretsMode::Sops {
        print_updatekeys(
            &repo.dir,
            "re-encrypt the secrets for the new recipient(s) in .sops.yaml",
        );
    }
    Ok(outcome)
}

/// A new board's BMC host: from --bmc-host, else asked, else (no terminal) an error saying so.
fn new_board_bmc_host(
    placement: &Placement,
    board_named: bool,
    given: Option<&String>,
    board_number: usize,
) -> Result<String> {
    if let Some(host) = given {
        return Ok(host.clone());
    }
    if prompt::can_ask() {
        return prompt::ask_bmc_host(&placement.board, &default_bmc_host(board_number));
    }
    // A board named with --board that does not exist is new by choice, not because the others are full.
    let why = if board_named {
        format!("board '{}' does not exist yet", placement.board)
    } else {
        format!(
            "{} needs a new Turing Pi 2 board ({}; the others are full)",
            placement.host, placement.board
        )
    };
    Err(UsageError::new(format!(
        "--bmc-host: {why}: give its BMC host with --bmc-host HOST"
    ))
    .into())
}
