//! flakesmith: scaffold, grow and build Nix flake repositories for custom NixOS images.
//!
//! Data flows one way: answers ([`model::Answers`]) → validated [`model::Project`] → rendered
//! [`render::Tree`] → plan against disk (`sync`) → apply. The binary is a thin shell over
//! [`cmd`].

mod answer_files;
mod check;
pub mod cli;
pub mod cmd;
pub mod echo;
mod error;
mod failpoint;
mod git;
pub mod images;
pub mod model;
pub mod nix;
mod prompt;
pub mod render;
pub mod rockchip;
pub mod rockchip_fuzz;
pub mod rockchip_vendor;
pub mod secrets;
pub mod stamp;
mod sync;

pub use error::UsageError;

/// The exit code for an error: 2 when the user asked for something invalid, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let bad_input = error
        .chain()
        .any(|e| e.is::<UsageError>() || e.is::<model::InvalidAnswer>());
    if bad_input {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::Path};

    /// The top-level modules of this crate that the Rust files under `path` name (`crate::x`,
    /// or `x` in `use crate::{x, …}`).
    fn modules_used_by(path: &str) -> BTreeSet<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(path);
        let files: Vec<_> = if path.is_dir() {
            walkdir::WalkDir::new(&path)
                .into_iter()
                .map(|e| e.unwrap().into_path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
                .collect()
        } else {
            vec![path]
        };
        let single = regex::Regex::new(r"crate::(\w+)").unwrap();
        let group = regex::Regex::new(r"use crate::\{([^;]*)\};").unwrap();
        let mut used = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            used.extend(single.captures_iter(&text).map(|c| c[1].to_owned()));
            for c in group.captures_iter(&text) {
                // The names at the group's top level: depth 0 once the braces are counted.
                let mut depth = 0;
                let mut name = String::new();
                for ch in c[1].chars().chain([',']) {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            let module = name.trim().split("::").next().unwrap_or("").to_owned();
                            used.insert(module);
                            name.clear();
                        }
                        _ if depth == 0 => name.push(ch),
                        _ => {}
                    }
                }
            }
        }
        used
    }

    /// Data flows one way (answers → model → render → sync → apply; nix builds what was
    /// written): no module reaches back to one later in the flow, or to the commands.
    #[test]
    fn no_module_reaches_back_against_the_data_flow() {
        let rules: [(&str, &[&str]); 5] = [
            (
                "model",
                &["render", "sync", "nix", "cmd", "prompt", "check"],
            ),
            ("render", &["sync", "nix", "cmd", "prompt", "check"]),
            ("sync", &["nix", "cmd", "prompt", "check"]),
            ("nix", &["cmd", "prompt", "check"]),
            ("prompt.rs", &["cmd", "render", "sync", "nix", "check"]),
        ];
        let mut back = Vec::new();
        for (module, later) in rules {
            let used = modules_used_by(module);
            back.extend(
                later
                    .iter()
                    .filter(|m| used.contains(**m))
                    .map(|m| format!("{module} uses {m}")),
            );
        }
        assert!(back.is_empty(), "{back:#?}");
    }
}
