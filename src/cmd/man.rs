//! `flakesmith man`: one page for the whole CLI.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_mangen::Man;

use super::Outcome;
use crate::cli::Cli;

/// clap_mangen's page lists the subcommands as `flakesmith-init(1)` and so on, pages nobody
/// installs; this one holds each subcommand's synopsis and options as sections of its own.
pub fn run() -> Result<Outcome> {
    let mut command = Cli::command();
    command.build();
    let man = Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        writeln!(page, ".SH \"FLAKESMITH {}\"", sub.get_name().to_uppercase())?;
        let sub_man = Man::new(sub.clone());
        let mut sections = Vec::new();
        sub_man.render_synopsis_section(&mut sections)?;
        sub_man.render_description_section(&mut sections)?;
        sub_man.render_options_section(&mut sections)?;
        // Subsections, so each subcommand's SYNOPSIS and OPTIONS sit under its own heading
        // instead of repeating top-level sections a reader would take for the whole CLI's.
        for line in String::from_utf8_lossy(&sections).lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(page, ".SS {heading}")?,
                None => writeln!(page, "{line}")?,
            }
        }
    }
    man.render_version_section(&mut page)?;
    std::io::stdout().lock().write_all(&page)?;
    Ok(Outcome::Success)
}
