//! `flakesmith check`: lints a generated repository; exit 1 when something is found.

use anyhow::Result;

use super::{repo::Repo, Outcome};
use crate::{check, cli::CheckArgs};

pub fn run(args: CheckArgs) -> Result<Outcome> {
    // Opened like every command that reads a generated repo: locked, an interrupted change
    // rolled back, the answers read (or one line saying why not).
    let opened = Repo::open(&args.repo.dir)?;
    let repo = &opened.dir;
    let findings = check::check(repo, &opened.answers)?;
    for finding in &findings {
        println!("{finding}");
    }
    // `.` says nothing in a summary line; the directory's own name does.
    let name = fs_err::canonicalize(repo)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| repo.display().to_string());
    if findings.is_empty() {
        eprintln!("{name}: no findings");
        Ok(Outcome::Success)
    } else {
        eprintln!(
            "{}: {} finding{}",
            name,
            findings.len(),
            if findings.len() == 1 { "" } else { "s" }
        );
        Ok(Outcome::Findings)
    }
}
