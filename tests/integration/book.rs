//! The book: its CLI reference is kept equal to the clap definitions, and its links resolve.

use std::{collections::BTreeSet, path::Path};

use clap::CommandFactory;

const BOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/book/src");

/// The CLI reference as the clap definitions describe it.
fn cli_reference() -> String {
    let mut root = flakesmith::cli::Cli::command();
    root.build();
    let mut out = String::from(
        "# Command-line reference\n\n\
         This chapter is generated from flakesmith's own argument definitions, and a test fails when\n\
         they drift apart: `UPDATE_SNAPSHOTS=1 cargo test --test integration book` rewrites it.\n",
    );
    for sub in root.get_subcommands() {
        let name = sub.get_name();
        out.push_str(&format!("\n## flakesmith {name}\n\n"));
        if let Some(about) = sub.get_about() {
            out.push_str(&format!("{about}.\n\n"));
        }
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        out.push_str(&format!("```text\n{usage}\n```\n"));
        let args: Vec<_> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if args.is_empty() {
            continue;
        }
        out.push_str("\n| Argument | Description |\n| --- | --- |\n");
        for arg in args {
            let mut names = Vec::new();
            if let Some(short) = arg.get_short() {
                names.push(format!("-{short}"));
            }
            if let Some(long) = arg.get_long() {
                names.push(format!("--{long}"));
            }
            let value = arg
                .get_value_names()
                .map(|v| {
                    v.iter()
                        .map(|s| format!("<{s}>"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|_| arg.get_action().takes_values())
                .unwrap_or_default();
            let spelled = if names.is_empty() {
                value.clone()
            } else if value.is_empty() {
                names.join(", ")
            } else {
                format!("{} {value}", names.join(", "))
            };
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !possible.is_empty() && arg.get_action().takes_values() {
                help.push_str(&format!(" (one of {})", possible.join(", ")));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() && arg.get_action().takes_values() {
                help.push_str(&format!(" [default: {}]", defaults.join(",")));
            }
            out.push_str(&format!(
                "| `{}` | {} |\n",
                spelled.replace('|', "\\|"),
                help.replace('|', "\\|")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            ));
        }
    }
    out
}

#[test]
fn the_cli_reference_matches_the_clap_definitions() {
    let path = Path::new(BOOK).join("cli-reference.md");
    if let Err(diff) = check_cli_reference(&path, crate::support::updating_snapshots()) {
        panic!("the CLI reference is out of date (UPDATE_SNAPSHOTS=1 rewrites it):\n{diff}");
    }
}

/// Compares `path` with the reference the clap definitions give (a unified diff when they
/// differ), or, when `update`, rewrites it.
fn check_cli_reference(path: &Path, update: bool) -> Result<(), String> {
    let expected = cli_reference();
    if update {
        std::fs::write(path, &expected).unwrap();
        return Ok(());
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual == expected {
        return Ok(());
    }
    Err(similar::TextDiff::from_lines(&actual, &expected)
        .unified_diff()
        .header("book/src/cli-reference.md", "from the clap definitions")
        .to_string())
}

#[test]
fn a_stale_cli_reference_fails_unless_updating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli-reference.md");
    let stale = "# Command-line reference\n\n## flakesmith init\n";
    std::fs::write(&path, stale).unwrap();
    let diff = check_cli_reference(&path, false).expect_err("a stale reference is refused");
    assert!(diff.contains("+## flakesmith add-node"), "{diff}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        stale,
        "compared, not rewritten"
    );

    check_cli_reference(&path, true).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), cli_reference());
    check_cli_reference(&path, false).unwrap();
}

#[test]
fn only_update_snapshots_1_rewrites() {
    use crate::support::update_requested;
    use std::ffi::OsStr;
    assert!(update_requested(Some(OsStr::new("1"))));
    for value in ["0", "", "true", "yes", " 1"] {
        assert!(!update_requested(Some(OsStr::new(value))), "{value:?}");
    }
    assert!(!update_requested(None));
}

/// The anchor mdBook gives a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            ' ' => Some('-'),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

fn headings(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Relative links `](target)` outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    out.into_iter()
        .filter(|l| !l.contains("://") && !l.starts_with("mailto:"))
        .collect()
}

#[test]
fn every_link_in_the_book_resolves() {
    let mut broken = Vec::new();
    let summary = std::fs::read_to_string(Path::new(BOOK).join("SUMMARY.md")).unwrap();
    let mut pages: Vec<_> = walkdir::WalkDir::new(BOOK)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    for page in &pages {
        let name = page.strip_prefix(BOOK).unwrap().display().to_string();
        if name != "SUMMARY.md" && !summary.contains(&format!("({name})")) {
            broken.push(format!("{name} is not in SUMMARY.md"));
        }
        let text = std::fs::read_to_string(page).unwrap();
        for link in links(&text) {
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{name}: link to missing {link}"));
                continue;
            }
            if !fragment.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let target_text = std::fs::read_to_string(&target).unwrap();
                if !headings(&target_text).contains(fragment) {
                    broken.push(format!("{name}: no heading #{fragment} in {file}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links in the book:\n{}",
        broken.join("\n")
    );
}
