//! One plain function per subcommand.

pub(crate) mod add_node;
pub(crate) mod build;
pub(crate) mod check;
pub(crate) mod diff;
pub(crate) mod init;
pub mod inject;
pub(crate) mod man;
pub(crate) mod remove_node;
pub(crate) mod repo;
pub(crate) mod stamp;
pub(crate) mod update;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// How a command that ran to completion wants the process to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Not an error, but not "nothing to report" either: `diff` found differences, `check`
    /// found problems, `update` left conflicts.
    Findings,
    /// A command that reports its own errors (the injector) and chose this exit code.
    Exit(u8),
}

pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Init(args) => init::run(*args),
        Command::Build(args) => build::run(args),
        Command::AddNode(args) => add_node::run(args),
        Command::RemoveNode(args) => remove_node::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Update(args) => update::run(args),
        Command::Check(args) => check::run(args),
        Command::Stamp(args) => stamp::run(args),
        Command::Inject(args) => Ok(match inject::run(&args.args) {
            0 => Outcome::Success,
            code => Outcome::Exit(u8::try_from(code).unwrap_or(1)),
        }),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                args.shell,
                &mut command,
                "flakesmith",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Success)
        }
        Command::Man => man::run(),
    }
}
