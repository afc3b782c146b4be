use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    default_sigpipe();
    let cli = match flakesmith::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // clap quotes a bad value whole; help and version go out as they are.
        Err(e) if e.use_stderr() => {
            let message = flakesmith::cli::invalid_choice(&e).unwrap_or_else(|| {
                flakesmith::echo::scrub_quoted(&e.render().to_string(), &['\''])
            });
            eprint!("{message}");
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => e.exit(),
    };
    match flakesmith::cmd::run(cli) {
        Ok(flakesmith::cmd::Outcome::Success) => ExitCode::SUCCESS,
        Ok(flakesmith::cmd::Outcome::Findings) => ExitCode::from(1),
        Ok(flakesmith::cmd::Outcome::Exit(code)) => ExitCode::from(code),
        Err(error) => {
            // Validators quote values through flakesmith::echo; this catches messages built
            // elsewhere (I/O errors naming a path, a tool's stderr) that may hold a key.
            eprintln!(
                "{}: {}",
                console::style("error").red().bold().for_stderr(),
                flakesmith::echo::scrub(&format!("{error:#}"))
            );
            ExitCode::from(flakesmith::exit_code(&error))
        }
    }
}

/// `flakesmith … | head`: when the reader goes away, end quietly as other Unix tools do (by
/// SIGPIPE), instead of Rust's default of ignoring the signal and panicking in the next
/// `println!`. No output is printed while a transaction renames files, so this cannot cut one
/// short; a crash there would be rolled back from the journal anyway.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: called first in main, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}
