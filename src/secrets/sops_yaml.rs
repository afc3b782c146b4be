//! Reading `.sops.yaml` for what flakesmith needs from it: the recipient behind each anchor
//! (`- &rk1-node1 age1…`) and which anchors the creation rules use (`- *rk1-node1`).
//!
//! YAML parsers resolve anchors and forget their names, so this reads the lines: it understands
//! the shape flakesmith generates and the usual hand-written variations of it, not all of YAML.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::Result;

use crate::model::{AgeRecipient, Hostname};

/// The sops configuration file at the root of a repo.
pub const SOPS_YAML: &str = ".sops.yaml";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SopsYaml {
    /// Anchor name → the value it anchors (a recipient, for the `keys:` list).
    pub anchors: BTreeMap<String, String>,
    /// Anchor names used as aliases anywhere (in practice: in `creation_rules`).
    pub aliases: BTreeSet<String>,
}

impl SopsYaml {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let code = strip_comment(line);
            let mut rest = code.trim_start();
            while let Some(r) = rest.strip_prefix("- ") {
                rest = r.trim_start();
            }
            if let Some(anchored) = rest.strip_prefix('&') {
                let (name, value) = anchored
                    .split_once(char::is_whitespace)
                    .unwrap_or((anchored, ""));
                out.anchors
                    .insert(name.to_owned(), unquote(value.trim()).to_owned());
            }
            let bytes = code.as_bytes();
            for (i, _) in code.match_indices('*') {
                let after_separator = i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'[' | b',');
                let name: String = code[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .collect();
                if after_separator && !name.is_empty() {
                    out.aliases.insert(name);
                }
            }
        }
        out
    }

    /// Node host → recipient, for anchors named after a host that hold a valid age recipient.
    /// Admin anchors (`admin_…`) never qualify: host names cannot contain `_`.
    pub fn node_recipients(&self) -> BTreeMap<String, AgeRecipient> {
        self.anchors
            .iter()
            .filter(|(name, _)| Hostname::parse(name).is_ok())
            .filter_map(|(name, value)| Some((name.clone(), AgeRecipient::parse(value).ok()?)))
            .collect()
    }
}

/// The node recipients recorded in `repo/.sops.yaml`; none when the file does not exist.
pub fn recorded_recipients(repo: &Path) -> Result<BTreeMap<String, AgeRecipient>> {
    // Not through a link: .sops.yaml is the repo's, like everything read from it.
    let Some(bytes) = crate::sync::inside::read_file(repo, SOPS_YAML)? else {
        return Ok(BTreeMap::new());
    };
    Ok(SopsYaml::parse(&String::from_utf8_lossy(&bytes)).node_recipients())
}

fn strip_comment(line: &str) -> &str {
    // A YAML comment starts with '#' at the start or after whitespace; recipients and anchor
    // names never contain '#'.
    let bytes = line.as_bytes();
    for (i, _) in line.match_indices('#') {
        if i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t' {
            return &line[..i];
        }
    }
    line
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_anchors_and_aliases() {
        let r = age::x25519::Identity::generate().to_public().to_string();
        let text = format!(
            "keys:\n  - &admin_1 {r} # me\n  - &rk1-node1 \"{r}\"\n  - &rk1-node2 age1notakey\n\
             creation_rules:\n  - path_regex: secrets/[^/]+\\.yaml$\n    key_groups:\n      - age:\n          - *admin_1\n          - *rk1-node1\n      - pgp: [*x, *y]\n"
        );
        let s = SopsYaml::parse(&text);
        assert_eq!(s.anchors.len(), 3);
        assert_eq!(
            s.aliases,
            ["admin_1", "rk1-node1", "x", "y"].map(String::from).into()
        );
        let nodes = s.node_recipients();
        assert_eq!(nodes.keys().collect::<Vec<_>>(), ["rk1-node1"]);
        assert_eq!(nodes["rk1-node1"].as_str(), r);
    }

    // cargo-mutants: the test above has one comment (after a space) and aliases only where
    // aliases go.
    #[test]
    fn comments_start_after_whitespace_and_aliases_after_a_separator() {
        let r = age::x25519::Identity::generate().to_public().to_string();
        let text = format!(
            "keys:\n  - &rk1-node1 {r} #space\n  - &rk1-node2 {r}\t#tab\n  - &rk1-node3 {r}#in-the-value\n\
             # *commented-out\ncreation_rules:\n  - path_regex: secrets/*.yaml\n    age: *rk1-node1,*rk1-node2\n"
        );
        let s = SopsYaml::parse(&text);
        assert_eq!(
            s.node_recipients().keys().collect::<Vec<_>>(),
            ["rk1-node1", "rk1-node2"]
        );
        assert_eq!(s.anchors["rk1-node3"], format!("{r}#in-the-value"));
        assert_eq!(
            s.aliases,
            ["rk1-node1", "rk1-node2"].map(String::from).into()
        );
    }
}
