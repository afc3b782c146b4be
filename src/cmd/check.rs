//! `flakesmith check`: lints a generated repository; exit 1 when something is found.

use anyhow::Result;

use super::Outcome;
use crate::{
    check,
    cli::CheckArgs,
    model::{Answers, InvalidAnswer},
    render::ANSWERS_FILE,
    UsageError,
};

pub fn run(args: CheckArgs) -> Result<Outcome> {
    let repo = &args.repo.dir;
    let answers_path = repo.join(ANSWERS_FILE);
    if !answers_path.is_file() {
        return Err(UsageError::new(format!(
            "{} is not a flakesmith repository (no {ANSWERS_FILE}); give its directory with -C DIR",
            repo.display()
        ))
        .into());
    }
    let answers = Answers::from_yaml(&fs_err::read_to_string(&answers_path)?)
        .map_err(|e| InvalidAnswer::new(format!("{ANSWERS_FILE}: {}", e.field), e.message))?;
    let findings = check::check(repo, &answers)?;
    for finding in &findings {
        println!("{finding}");
    }
    if findings.is_empty() {
        eprintln!("{}: no findings", repo.display());
        Ok(Outcome::Success)
    } else {
        eprintln!(
            "{}: {} finding{}",
            repo.display(),
            findings.len(),
            if findings.len() == 1 { "" } else { "s" }
        );
        Ok(Outcome::Findings)
    }
}
