use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flakesmith::cli::Cli::parse();
    match flakesmith::cmd::run(cli) {
        Ok(flakesmith::cmd::Outcome::Success) => ExitCode::SUCCESS,
        Ok(flakesmith::cmd::Outcome::Findings) => ExitCode::from(1),
        Ok(flakesmith::cmd::Outcome::Exit(code)) => ExitCode::from(code),
        Err(error) => {
            eprintln!(
                "{}: {error:#}",
                console::style("error").red().bold().for_stderr()
            );
            ExitCode::from(flakesmith::exit_code(&error))
        }
    }
}
