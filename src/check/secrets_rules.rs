//! Rules about secrets: encrypted files, private keys, key file modes, sops recipients.

use std::collections::BTreeSet;

use anyhow::Result;

use super::{line_of, Finding, RepoFiles};
use crate::{
    model::{
        answers::{NodeRecipients, SecretsMode},
        Answers,
    },
    secrets::{private_key, SopsYaml, KEYS_DIR, SOPS_YAML},
};

const SECRETS_DIR: &str = "secrets/";

/// Files larger than this are not searched for keys (disk images, bootloader blobs).
const MAX_SCANNED_BYTES: u64 = 16 * 1024 * 1024;

/// A key file (an age identity, an SSH private key) is a few hundred bytes: a file in keys/, or
/// in a store copy of it, larger than this is not one and is not read (a hostile repository may
/// commit a file of gigabytes there).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Every file under secrets/ is sops-encrypted (empty and comment-only files hold nothing).
pub fn plaintext_secrets(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for path in files.files.iter().filter(|p| p.starts_with(SECRETS_DIR)) {
        let name = path.rsplit('/').next().unwrap_or(path);
        if name == ".gitkeep" || name.starts_with("README") {
            continue;
        }
        let text = files.read_text(path)?;
        if has_no_data(&text)
            || has_sops_metadata(path, &text)
            || is_generated_placeholder(files, path)?
        {
            continue;
        }
        findings.push(Finding::new(
            path.clone(),
            "not encrypted by sops (no sops metadata): plaintext secrets in git are readable by anyone with the repo, forever",
            format!("encrypt it in place with `sops --encrypt --in-place {path}` (rules in .sops.yaml), and rotate any secret it held if it was ever committed"),
        ));
    }
    Ok(findings)
}

/// No private key or age identity outside keys/, and nothing in keys/ tracked by git.
pub fn private_keys(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let keys_prefix = format!("{KEYS_DIR}/");
    for path in &files.files {
        let in_keys = path.starts_with(&keys_prefix);
        let tracked = files.is_tracked(path);
        if in_keys && tracked {
            findings.push(Finding::new(
                path.clone(),
                "tracked by git, but keys/ holds private keys",
                format!("`git rm --cached {path}`, keep keys/ in .gitignore, and replace the key if the commit was ever pushed"),
            ));
            continue;
        }
        if in_keys {
            if files.is_addable(path) {
                findings.push(Finding::new(
                    path.clone(),
                    "not ignored by git: the next `git add --all` would commit a private key",
                    "add `keys/` to .gitignore (flakesmith also writes keys/.gitignore containing `*`)",
                ));
            }
            continue;
        }
        let full = files.path(path);
        if fs_err::metadata(&full)?.len() > MAX_SCANNED_BYTES {
            continue;
        }
        let text = String::from_utf8_lossy(&fs_err::read(&full)?).into_owned();
        if let Some((kind, offset)) = private_key::find_complete(&text) {
            let fix = if tracked {
                format!("remove it from git (`git rm --cached {path}`), move it into keys/ if it is needed, and replace the key: it is in the history")
            } else {
                "move it into keys/ (git-ignored, 0600) if it is needed, or delete it".to_owned()
            };
            findings.push(Finding::new(
                format!("{path}:{}", line_of(&text, offset)),
                format!("contains {} outside keys/", kind.describe()),
                fix,
            ));
        }
    }
    Ok(findings)
}

/// Identities in keys/ are readable by their owner only.
pub fn key_permissions(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let keys_prefix = format!("{KEYS_DIR}/");
        for path in files.files.iter().filter(|p| p.starts_with(&keys_prefix)) {
            if path.ends_with("/.gitignore") {
                continue;
            }
            let mode = fs_err::metadata(files.path(path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                findings.push(Finding::new(
                    path.clone(),
                    format!("mode {mode:04o}: other users of this machine can read the key"),
                    format!("chmod 600 {path}"),
                ));
            }
        }
    }
    let _ = files;
    Ok(findings)
}

/// Deployment-keys mode: the deployment key is authorised by `deployment-key.nix` (the image
/// builds) only, so that switching a machine to its configuration removes it.
pub fn deployment_key_in_images_only(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    let Some(key) = answers.secrets.deployment_key.as_deref() else {
        return Ok(Vec::new());
    };
    if answers.secrets.mode != SecretsMode::DeploymentKeys {
        return Ok(Vec::new());
    }
    // The key material, without the comment, is what identifies it.
    let Some(material) = key.split_whitespace().nth(1) else {
        return Ok(Vec::new());
    };
    let mut findings = Vec::new();
    for path in files
        .with_extension(".nix")
        .filter(|p| *p != "deployment-key.nix")
    {
        let text = files.read_text(path)?;
        if let Some(offset) = text.find(material) {
            findings.push(Finding::new(
                format!("{path}:{}", line_of(&text, offset)),
                "authorises the deployment key in the configuration the machines keep running: switching to it after deploy does not remove the key",
                "authorise it in deployment-key.nix only (flake.nix adds that module to the image builds), then the switch after first boot (deploy/post-deploy.sh, or nixos-rebuild --target-host on cloud machines) removes it",
            ));
        }
    }
    Ok(findings)
}

/// Every node of flakesmith.yaml is a recipient of the sops rules.
pub fn sops_nodes(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    let rk1 = answers.has_slots();
    if answers.secrets.mode != SecretsMode::Sops || !rk1 || answers.nodes.is_empty() {
        return Ok(Vec::new());
    }
    if !files.files.iter().any(|p| p == SOPS_YAML) {
        return Ok(vec![Finding::new(
            SOPS_YAML,
            "missing, but flakesmith.yaml uses sops",
            "run `flakesmith update` to recreate it (with --restore-deleted if you deleted it)",
        )]);
    }
    let sops = SopsYaml::parse(&files.read_text(SOPS_YAML)?);
    let recipients = sops.node_recipients();
    let mut findings: Vec<Finding> = crate::secrets::nodes_without_identity(&files.root, answers)?
        .into_iter()
        .map(|host| {
            Finding::new(
                format!("keys/{host}.age"),
                format!("missing, but .sops.yaml encrypts to node {host}'s recipient: no one here can decrypt what is encrypted to it"),
                crate::secrets::without_identity_fix(&host),
            )
        })
        .collect();
    for node in &answers.nodes {
        let host = &node.host;
        let how = match answers.secrets.node_recipients {
            NodeRecipients::AgeKeys => format!(
                "run `flakesmith update` (it makes keys/{host}.age if missing and records its recipient), then `sops updatekeys` on each file in secrets/"
            ),
            NodeRecipients::SshHostKeys => format!(
                "after {host}'s first boot run `deploy/post-deploy.sh --host {host}` (it prints the ssh-to-age recipient of its host key), add `- &{host} age1…` under keys: and `- *{host}` to the rules, then `sops updatekeys` on each file in secrets/"
            ),
        };
        if !recipients.contains_key(host) {
            findings.push(Finding::new(
                SOPS_YAML,
                format!("node {host} has no age recipient (no `&{host}` anchor with an age1… key): it cannot decrypt its secrets"),
                how,
            ));
        } else if let Some(stale) = key_mismatch(files, answers, host, &recipients[host])? {
            findings.push(Finding::new(
                SOPS_YAML,
                format!("node {host}'s recipient is not the public key of keys/{host}.age ({stale}): the node will not decrypt what is encrypted to it"),
                format!("run `flakesmith update` (it records the recipient of keys/{host}.age), then `sops updatekeys` on each file in secrets/"),
            ));
        } else if !sops.aliases.contains(host) {
            findings.push(Finding::new(
                SOPS_YAML,
                format!("node {host} has a recipient but no creation rule uses it (`*{host}`): new secrets are not encrypted to it"),
                format!("add `- *{host}` to the age list of the rule for secrets/, then `sops updatekeys` on each file in secrets/"),
            ));
        }
    }
    Ok(findings)
}

/// flakesmith's own unencrypted placeholder, unmodified (byte for byte what its base record
/// says it generated): it holds no secret, and changing it in any way makes it a finding.
fn is_generated_placeholder(files: &RepoFiles, path: &str) -> Result<bool> {
    let base = files.path(crate::sync::BASE_DIR).join(path);
    if !base.is_file() {
        return Ok(false);
    }
    Ok(fs_err::read(base)? == fs_err::read(files.path(path))?)
}

/// Every sops file under secrets/ is encrypted to exactly the recipients that the first
/// `.sops.yaml` rule matching its path names (as sops picks it): a node added since the file was
/// last re-encrypted cannot read it, and a removed one still can.
pub fn sops_file_recipients(files: &RepoFiles, answers: &Answers) -> Result<Vec<Finding>> {
    if answers.secrets.mode != SecretsMode::Sops || !files.files.iter().any(|p| p == SOPS_YAML) {
        return Ok(Vec::new());
    }
    let text = files.read_text(SOPS_YAML)?;
    let config: serde_json::Value = match serde_yaml_ng::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Ok(vec![Finding::new(
                SOPS_YAML,
                format!("not valid YAML: {e}"),
                "fix the syntax (sops cannot read it either)",
            )])
        }
    };
    let names: std::collections::BTreeMap<String, String> = SopsYaml::parse(&text)
        .anchors
        .into_iter()
        .map(|(name, recipient)| (recipient, name))
        .collect();
    let name_of = |r: &str| match names.get(r) {
        Some(name) => format!("{name} ({})", abbreviate(r)),
        None => abbreviate(r),
    };
    let mut rules = Vec::new();
    for (i, rule) in config["creation_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pattern = rule["path_regex"].as_str().unwrap_or("");
        match regex::Regex::new(pattern) {
            Ok(regex) => rules.push((regex, rule_recipients(rule))),
            Err(e) => {
                return Ok(vec![Finding::new(
                    SOPS_YAML,
                    format!(
                        "creation_rules[{i}].path_regex is not a valid regular expression: {e}"
                    ),
                    "fix the pattern (sops uses Go's regexp syntax)",
                )])
            }
        }
    }
    let mut findings = Vec::new();
    for path in files.files.iter().filter(|p| p.starts_with(SECRETS_DIR)) {
        if !(path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json")) {
            continue;
        }
        let Ok(value) = serde_yaml_ng::from_str::<serde_json::Value>(&files.read_text(path)?)
        else {
            continue;
        };
        let Some(age) = value.get("sops").and_then(|s| s.get("age")) else {
            continue;
        };
        let actual: BTreeSet<String> = age
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["recipient"].as_str().map(str::to_owned))
            .collect();
        // sops compares the path relative to the directory of .sops.yaml.
        let Some((_, expected)) = rules.iter().find(|(regex, _)| regex.is_match(path)) else {
            findings.push(Finding::new(
                path.clone(),
                "no creation rule of .sops.yaml matches this file",
                "add a rule whose path_regex matches it, or move it to a path the rules cover",
            ));
            continue;
        };
        let missing: Vec<String> = expected.difference(&actual).map(|r| name_of(r)).collect();
        let extra: Vec<String> = actual.difference(expected).map(|r| name_of(r)).collect();
        if !missing.is_empty() {
            findings.push(Finding::new(
                path.clone(),
                format!(
                    "not encrypted to {}, which .sops.yaml lists for it: they cannot decrypt it",
                    missing.join(", ")
                ),
                format!("`sops updatekeys {path}`"),
            ));
        }
        if !extra.is_empty() {
            findings.push(Finding::new(
                path.clone(),
                format!("still encrypted to {}, which .sops.yaml no longer lists for it", extra.join(", ")),
                format!("`sops updatekeys {path}`, and rotate its secrets if that key may be in the wrong hands"),
            ));
        }
    }
    Ok(findings)
}

/// The age recipients of one creation rule: its `key_groups[*].age` lists and its `age` string.
fn rule_recipients(rule: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for group in rule["key_groups"].as_array().into_iter().flatten() {
        for r in group["age"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
        {
            out.insert(r.trim().to_owned());
        }
    }
    if let Some(list) = rule["age"].as_str() {
        out.extend(
            list.split(',')
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
        );
    }
    out
}

fn abbreviate(recipient: &str) -> String {
    match recipient.get(..12) {
        Some(start) if recipient.len() > 16 => format!("{start}…"),
        _ => recipient.to_owned(),
    }
}

/// In age-keys mode: the recipient of `keys/<host>.age` when it differs from the recorded one.
fn key_mismatch(
    files: &RepoFiles,
    answers: &Answers,
    host: &str,
    recorded: &crate::model::AgeRecipient,
) -> Result<Option<String>> {
    let path = crate::secrets::identity_path(&files.root, host);
    if answers.secrets.node_recipients != NodeRecipients::AgeKeys || !path.is_file() {
        return Ok(None);
    }
    let identity = crate::secrets::read_identity(&path, host)?;
    Ok((identity.recipient != *recorded).then(|| abbreviate(identity.recipient.as_str())))
}

fn has_no_data(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "{}")
}

/// What sops writes into every file it encrypts, per format.
pub(crate) fn has_sops_metadata(path: &str, text: &str) -> bool {
    let with_mac =
        |v: Option<&serde_json::Value>| v.and_then(|s| s.get("mac")).is_some_and(|m| m.is_string());
    if path.ends_with(".env") {
        return text
            .lines()
            .any(|l| l.trim_start().starts_with("sops_mac="));
    }
    if path.ends_with(".ini") {
        let mut in_sops = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_sops = line == "[sops]";
            } else if in_sops && line.starts_with("mac") {
                return true;
            }
        }
        return false;
    }
    // YAML is a superset of JSON; binary files are stored by sops as JSON `{data, sops}`.
    match serde_yaml_ng::from_str::<serde_json::Value>(text) {
        Ok(value) => with_mac(value.get("sops")),
        Err(_) => false,
    }
}

/// No identity of this repository's keys/ sits in the Nix store, where every user of the
/// machine can read it: a plain-directory repository evaluated by Nix (not by flakesmith) is
/// copied there whole, as `<hash>-source`, keys/ included.
pub fn keys_in_nix_store(files: &RepoFiles, _: &Answers) -> Result<Vec<Finding>> {
    let store = std::env::var_os("NIX_STORE_DIR")
        .map_or_else(|| "/nix/store".into(), std::path::PathBuf::from);
    keys_in_store_dir(files, &store)
}

/// [`keys_in_nix_store`] on the store at `store` (the tests make their own).
fn keys_in_store_dir(files: &RepoFiles, store: &std::path::Path) -> Result<Vec<Finding>> {
    let keys_prefix = format!("{KEYS_DIR}/");
    let mut secrets: Vec<(String, String)> = Vec::new();
    for path in files.files.iter().filter(|p| p.starts_with(&keys_prefix)) {
        let full = files.path(path);
        if fs_err::metadata(&full).map_or(true, |m| m.len() > MAX_KEY_FILE_BYTES) {
            continue;
        }
        let Ok(text) = fs_err::read_to_string(full) else {
            continue;
        };
        for fragment in private_key::find_fragments(&text) {
            let secret = text[fragment.start..fragment.end].trim().to_owned();
            // A bare prefix is in documentation everywhere; a key is long.
            if secret.len() >= 40 {
                secrets.push((path.clone(), secret));
            }
        }
    }
    if secrets.is_empty() {
        return Ok(Vec::new());
    }
    let Ok(entries) = fs_err::read_dir(store) else {
        return Ok(Vec::new());
    };
    let mut findings = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.contains("-source") || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // The repository's own keys/, or the keys/ of a repository one level down (a parent
        // directory evaluated as the flake).
        let mut dirs = vec![entry.path().join(KEYS_DIR)];
        if let Ok(children) = fs_err::read_dir(entry.path()) {
            dirs.extend(children.flatten().map(|c| c.path().join(KEYS_DIR)));
        }
        for dir in dirs {
            let Ok(keys) = std::fs::read_dir(&dir) else {
                continue;
            };
            for key in keys.flatten() {
                if !key.file_type().is_ok_and(|t| t.is_file())
                    || key
                        .metadata()
                        .map_or(true, |m| m.len() > MAX_KEY_FILE_BYTES)
                {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(key.path()) else {
                    continue;
                };
                if let Some((ours, _)) = secrets.iter().find(|(_, s)| text.contains(s.as_str())) {
                    let root = entry.path();
                    findings.push(Finding::new(
                        key.path().display().to_string(),
                        format!("holds the private key of {ours}, readable by every user of this machine (the repository was copied into the Nix store as a plain directory)"),
                        format!(
                            "`nix-store --query --roots {root}` shows what keeps it; remove those, then `nix-store --delete {root}`; and replace the key ({ours}), since anyone here may have read it",
                            root = root.display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::files::text_then_hole;

    #[test]
    fn sops_metadata_is_recognised_per_format() {
        assert!(has_sops_metadata(
            "a.yaml",
            "x: ENC[AES256_GCM,data:a]\nsops:\n  mac: ENC[x]\n  version: 3.9.0\n"
        ));
        assert!(!has_sops_metadata("a.yaml", "password: hunter2\n"));
        assert!(has_sops_metadata(
            "a.json",
            r#"{"data": "ENC[x]", "sops": {"mac": "ENC[y]"}}"#
        ));
        assert!(has_sops_metadata("a.env", "A=ENC[x]\nsops_mac=ENC[y]\n"));
        assert!(!has_sops_metadata("a.env", "A=plain\n"));
        assert!(has_no_data("# nothing yet\n\n"));
    }

    /// A whole OpenSSH private key block, as `find_complete` wants it.
    const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn a_file_of_16_mib_is_searched_for_keys_and_a_larger_one_is_not() {
        let (_dir, files) = RepoFiles::of(&[("at-bound.img", ""), ("above-bound.img", "")]);
        text_then_hole(&files.path("at-bound.img"), SSH_KEY, 16 * 1024 * 1024);
        text_then_hole(
            &files.path("above-bound.img"),
            SSH_KEY,
            16 * 1024 * 1024 + 1,
        );
        assert_eq!(
            private_keys(&files, &Answers::default()).unwrap(),
            vec![Finding::new(
                "at-bound.img:1",
                "contains an OpenSSH private key outside keys/",
                "move it into keys/ (git-ignored, 0600) if it is needed, or delete it",
            )]
        );
    }

    #[test]
    fn a_readme_or_gitkeep_under_secrets_is_not_a_plaintext_secret() {
        let (_dir, files) = RepoFiles::of(&[
            (
                "secrets/README.md",
                "Encrypt with `sops --encrypt --in-place`.\n",
            ),
            ("secrets/.gitkeep", "keeps the folder in git\n"),
            ("secrets/wifi.yaml", "password: hunter2\n"),
        ]);
        let findings = plaintext_secrets(&files, &Answers::default()).unwrap();
        let paths: Vec<&str> = findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["secrets/wifi.yaml"]);
    }

    #[test]
    fn a_missing_sops_yaml_is_named_as_missing() {
        let (_dir, files) = RepoFiles::of(&[("flakesmith.yaml", "schema: 1\n")]);
        assert_eq!(
            sops_nodes(&files, &Answers::default()).unwrap(),
            vec![Finding::new(
                ".sops.yaml",
                "missing, but flakesmith.yaml uses sops",
                "run `flakesmith update` to recreate it (with --restore-deleted if you deleted it)",
            )]
        );
    }

    #[test]
    fn nodes_left_in_the_answers_without_the_rk1_platform_need_no_recipients() {
        // Project::from_answers ignores the node list when no chosen platform has slots, and
        // so does the rule: a .sops.yaml without node anchors is no finding then.
        let answers = Answers {
            layout: crate::model::Layout::MultiCloud,
            platforms: vec![crate::model::Platform::Aws],
            ..Answers::default()
        };
        assert!(!answers.nodes.is_empty(), "the default answers list nodes");
        let (_dir, files) = RepoFiles::of(&[(".sops.yaml", "creation_rules: []\n")]);
        assert_eq!(sops_nodes(&files, &answers).unwrap(), Vec::new());
        let (_dir, files) = RepoFiles::of(&[("flakesmith.yaml", "schema: 1\n")]);
        assert_eq!(sops_nodes(&files, &answers).unwrap(), Vec::new());
    }

    const ADMIN: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    const NODE: &str = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj";
    const GONE: &str = "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg";

    const SOPS_YAML_TEXT: &str = "keys:\n  - &admin_1 age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n  - &n1 age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj\ncreation_rules:\n  - path_regex: secrets/.*\n    key_groups:\n      - age:\n          - *admin_1\n          - *n1\n";

    /// A file sops encrypted to `recipients`, as far as the rule reads it.
    fn encrypted_to(recipients: &[&str]) -> String {
        let age: Vec<serde_json::Value> = recipients
            .iter()
            .map(|r| serde_json::json!({"recipient": r, "enc": "-----BEGIN AGE ENCRYPTED FILE-----"}))
            .collect();
        serde_json::json!({"data": "ENC[AES256_GCM,data:x]", "sops": {"age": age, "mac": "ENC[y]"}})
            .to_string()
    }

    #[test]
    fn yml_and_json_secrets_are_checked_for_their_recipients() {
        let (_dir, files) = RepoFiles::of(&[
            (".sops.yaml", SOPS_YAML_TEXT),
            ("secrets/a.yml", &encrypted_to(&[ADMIN])),
            ("secrets/b.json", &encrypted_to(&[ADMIN, NODE, GONE])),
            ("secrets/c.yaml", &encrypted_to(&[ADMIN, NODE])),
        ]);
        assert_eq!(
            sops_file_recipients(&files, &Answers::default()).unwrap(),
            vec![
                Finding::new(
                    "secrets/a.yml",
                    "not encrypted to n1 (age1zvkyg2lq…), which .sops.yaml lists for it: they cannot decrypt it",
                    "`sops updatekeys secrets/a.yml`",
                ),
                Finding::new(
                    "secrets/b.json",
                    "still encrypted to age1lggyhqrw…, which .sops.yaml no longer lists for it",
                    "`sops updatekeys secrets/b.json`, and rotate its secrets if that key may be in the wrong hands",
                ),
            ]
        );
    }

    #[test]
    fn secret_recipients_are_not_judged_without_sops_or_without_sops_yaml() {
        let stale = encrypted_to(&[GONE]);
        // Deployment-keys mode: a .sops.yaml left behind rules nothing.
        let deployment_keys = Answers {
            secrets: crate::model::answers::SecretsAnswers {
                mode: SecretsMode::DeploymentKeys,
                ..Default::default()
            },
            ..Answers::default()
        };
        let (_dir, files) =
            RepoFiles::of(&[(".sops.yaml", SOPS_YAML_TEXT), ("secrets/a.yaml", &stale)]);
        assert_eq!(
            sops_file_recipients(&files, &deployment_keys).unwrap(),
            Vec::new()
        );
        // No .sops.yaml: sops_nodes names it missing; here there are no rules to compare with.
        let (_dir, files) = RepoFiles::of(&[("secrets/a.yaml", &stale)]);
        assert_eq!(
            sops_file_recipients(&files, &Answers::default()).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn a_rules_recipients_are_its_key_groups_and_its_comma_separated_age_list() {
        let rule = serde_json::json!({
            "path_regex": "secrets/.*",
            "key_groups": [{"age": [" age1b "]}],
            "age": "age1a, ,age1c,",
        });
        assert_eq!(
            rule_recipients(&rule),
            BTreeSet::from(["age1a".to_owned(), "age1b".to_owned(), "age1c".to_owned()])
        );
    }

    #[test]
    fn a_recipient_longer_than_16_characters_is_cut_to_12() {
        assert_eq!(abbreviate("age1abcdefghijkl"), "age1abcdefghijkl");
        assert_eq!(abbreviate("age1abcdefghijklm"), "age1abcdefgh…");
        assert_eq!(abbreviate(NODE), "age1zvkyg2lq…");
    }

    #[test]
    fn yaml_document_markers_and_empty_maps_hold_no_data() {
        assert!(has_no_data("---\n"));
        assert!(has_no_data("{}\n"));
        assert!(has_no_data("---\n# to be encrypted\n{}\n"));
        assert!(!has_no_data("---\npassword: hunter2\n"));
    }

    #[test]
    fn ini_files_have_sops_metadata_only_with_a_mac_in_the_sops_section() {
        assert!(has_sops_metadata(
            "a.ini",
            "[db]\npassword = ENC[AES256_GCM,data:x]\n[sops]\nversion = 3.9.0\nmac = ENC[y]\n"
        ));
        // A mac address is not sops' MAC, and a [sops] section without one is not sops' either.
        assert!(!has_sops_metadata(
            "a.ini",
            "[net]\nmac = 00:11:22:33:44:55\n"
        ));
        assert!(!has_sops_metadata(
            "a.ini",
            "[sops]\nversion = 3.9.0\n[db]\nmac = ENC[y]\n"
        ));
    }

    /// Stand-in age identity: `find_fragments` reads its shape, not its checksum.
    const AGE_SECRET: &str =
        "AGE-SECRET-KEY-1QQQSQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSKW9WS0";

    /// A store holding a copy of `keys/n1.age` of `len` bytes (its secret, then a hole) at
    /// `<store>/<entry>/keys/n1.age`.
    fn store_copy(store: &std::path::Path, entry: &str, len: u64) -> std::path::PathBuf {
        let key = store.join(entry).join("keys/n1.age");
        fs_err::create_dir_all(key.parent().unwrap()).unwrap();
        text_then_hole(&key, &format!("{AGE_SECRET}\n"), len);
        key
    }

    fn store_finding(key: &std::path::Path, root: &std::path::Path) -> Finding {
        let root = root.display();
        Finding::new(
            key.display().to_string(),
            "holds the private key of keys/n1.age, readable by every user of this machine (the repository was copied into the Nix store as a plain directory)",
            format!("`nix-store --query --roots {root}` shows what keeps it; remove those, then `nix-store --delete {root}`; and replace the key (keys/n1.age), since anyone here may have read it"),
        )
    }

    #[test]
    fn a_store_copy_of_64_kib_is_searched_for_keys_and_a_larger_one_is_not() {
        let (_dir, files) = RepoFiles::of(&[("keys/n1.age", &format!("{AGE_SECRET}\n"))]);
        let store = tempfile::tempdir().unwrap();
        let at_bound = store_copy(store.path(), "aaaa-source", 64 * 1024);
        store_copy(store.path(), "bbbb-source", 64 * 1024 + 1);
        assert_eq!(
            keys_in_store_dir(&files, store.path()).unwrap(),
            vec![store_finding(&at_bound, &store.path().join("aaaa-source"))]
        );
    }

    #[test]
    fn a_key_file_of_64_kib_is_read_and_a_larger_one_is_not() {
        // Its secret first, then a hole: the store copy is small, so only the repository's
        // side of the bound decides.
        for (len, found) in [(64 * 1024, true), (64 * 1024 + 1, false)] {
            let (_dir, files) = RepoFiles::of(&[("keys/n1.age", "")]);
            text_then_hole(&files.path("keys/n1.age"), &format!("{AGE_SECRET}\n"), len);
            let store = tempfile::tempdir().unwrap();
            let copy = store_copy(store.path(), "eeee-source", 100);
            let expected = if found {
                vec![store_finding(&copy, &store.path().join("eeee-source"))]
            } else {
                Vec::new()
            };
            assert_eq!(
                keys_in_store_dir(&files, store.path()).unwrap(),
                expected,
                "{len}"
            );
        }
    }

    #[test]
    fn only_source_directories_of_the_store_are_searched_for_keys() {
        let (_dir, files) = RepoFiles::of(&[("keys/n1.age", &format!("{AGE_SECRET}\n"))]);
        let store = tempfile::tempdir().unwrap();
        // A derivation's output may hold anything, a key included: only `-source` copies are
        // this repository.
        store_copy(store.path(), "cccc-deploy-tools", 100);
        let source = store_copy(store.path(), "dddd-source", 100);
        assert_eq!(
            keys_in_store_dir(&files, store.path()).unwrap(),
            vec![store_finding(&source, &store.path().join("dddd-source"))]
        );
    }
}
