//! `flakesmith check`: lints a generated repository. One function per rule, each returning
//! [`Finding`]s; a finding names the file (and line, when there is one), the problem and the fix.
//!
//! The rules read files as they are on disk (and ask git which of them it tracks), so a repo's
//! own CI can run `flakesmith check` on a checkout.

mod files;
mod git_rules;
mod nix_rules;
mod secrets_rules;
mod stamp_rules;

use std::{fmt, path::Path};

use anyhow::Result;

pub use files::RepoFiles;
pub(crate) use secrets_rules::has_sops_metadata;

use crate::model::Answers;

/// One problem: `path: problem — fix`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Relative to the repo root, with `:line` when the problem has a line.
    pub path: String,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    pub fn new(
        path: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — {}", self.path, self.problem, self.fix)
    }
}

/// One rule: it reads the repo and the answers, and returns what it found.
pub type Rule = fn(&RepoFiles, &Answers) -> Result<Vec<Finding>>;

/// Every rule, in the order their findings are listed.
pub const RULES: &[(&str, Rule)] = &[
    ("nix-syntax", nix_rules::nix_syntax),
    ("plaintext-secrets", secrets_rules::plaintext_secrets),
    ("private-keys", secrets_rules::private_keys),
    ("key-permissions", secrets_rules::key_permissions),
    ("ssh-auth", nix_rules::ssh_auth),
    ("plaintext-passwords", nix_rules::plaintext_passwords),
    ("keys-in-store", nix_rules::keys_in_store),
    ("keys-in-nix-store", secrets_rules::keys_in_nix_store),
    ("rk3588-firmware-offset", nix_rules::rk3588_firmware_offset),
    ("bootloader-blob", nix_rules::bootloader_blob),
    (
        "deployment-key",
        secrets_rules::deployment_key_in_images_only,
    ),
    ("sops-nodes", secrets_rules::sops_nodes),
    ("sops-file-recipients", secrets_rules::sops_file_recipients),
    ("git-untracked", git_rules::untracked_generated),
    ("stamped-images", stamp_rules::stamped_images),
];

/// Runs every rule on `repo`, whose answers are `answers` (its flakesmith.yaml).
pub fn check(repo: &Path, answers: &Answers) -> Result<Vec<Finding>> {
    let files = RepoFiles::scan(repo)?;
    let mut findings = Vec::new();
    for (_, rule) in RULES {
        findings.extend(rule(&files, answers)?);
    }
    Ok(findings)
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
