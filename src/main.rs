use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    default_sigpipe();
    let cli = match flakesmith::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // clap quotes a bad value whole; help and version go out as they are.
        Err(e) if e.use_stderr() => {
            eprint!(
                "{}",
                flakesmith::echo::scrub_quoted(
                    &one_line(&e).unwrap_or_else(|| e.render().to_string()),
                    &['\'']
                )
            );
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

/// A value outside a flag's choices (`--platform azure`) as one line naming the flag and what it
/// allows, like every other bad answer; clap's own rendering takes four.
fn one_line(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let refusal = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) => format!("is not one of {}", values.join(", ")),
        _ => "is not allowed".to_owned(),
    };
    // The flag first: a pasted value may run over several lines, which the scrubber cuts.
    let flag = flag.split(' ').next().unwrap_or(flag);
    Some(format!(
        "{}: {flag}: '{value}' {refusal}\n",
        console::style("error").red().bold().for_stderr()
    ))
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
