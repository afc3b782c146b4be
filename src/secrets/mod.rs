//! Per-node age identities and the node part of `.sops.yaml`.
//!
//! Each node decrypts sops secrets with its own age identity. flakesmith makes it (with the age
//! crate) into `keys/<host>.age` in the repo: a git-ignored folder, mode 0700, files 0600. The
//! identity never enters the Nix store or an image; `deploy/post-deploy.sh` copies it to the
//! node's `sops.age.keyFile` after flashing. Only the public recipient reaches the templates,
//! through [`Project::node_age_recipients`](crate::model::Project::node_age_recipients), which
//! [`Project::new`](crate::model::Project::new) takes from here (the renderer never touches
//! the disk).
//!
//! Where a node's recipient comes from, in order:
//! 1. its identity in `keys/<host>.age` (age-keys mode);
//! 2. the recipient already recorded under the node's anchor in `.sops.yaml`: this is how a
//!    clone without `keys/` keeps its recipients, and how ssh-host-keys mode records the
//!    `ssh-to-age` recipient of a node's host key after its first boot;
//! 3. a new identity, made now (age-keys mode only).

mod identity;
pub mod private_key;
mod sops_yaml;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;

pub(crate) use identity::{create_private_dir, private_file};
pub use identity::{read_identity, write_identity, NodeIdentity, KEYS_DIR};
pub use sops_yaml::{recorded_recipients, SopsYaml, SOPS_YAML};

use crate::model::{
    answers::{NodeRecipients, SecretsMode},
    AgeRecipient, Node, Secrets,
};

/// The recipients of a project's nodes, and the identities that still have to be written.
#[derive(Default)]
pub struct NodeKeys {
    recipients: BTreeMap<String, AgeRecipient>,
    new: Vec<NodeIdentity>,
}

impl std::fmt::Debug for NodeKeys {
    // Never print identities, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("recipients", &self.recipients)
            .field("new", &self.new.iter().map(|i| &i.host).collect::<Vec<_>>())
            .finish()
    }
}

impl NodeKeys {
    /// Reads what `repo` (which may not exist yet) already has for a project's validated
    /// `nodes` and makes, in memory, the identities that are missing. Writes nothing: see
    /// [`NodeKeys::write_new`]. Called from [`Project::new`](crate::model::Project::new).
    pub fn prepare(repo: &Path, secrets: &Secrets, nodes: &[Node]) -> Result<Self> {
        let mut keys = Self::default();
        if secrets.mode != SecretsMode::Sops {
            return Ok(keys);
        }
        let recorded = recorded_recipients(repo)?;
        let make_missing = secrets.node_recipients == NodeRecipients::AgeKeys;
        for node in nodes {
            let host = node.host.as_str();
            let path = identity_path(repo, host);
            if make_missing && path.exists() {
                let identity = read_identity(&path, host)?;
                keys.recipients
                    .insert(host.to_owned(), identity.recipient.clone());
            } else if let Some(recipient) = recorded.get(host) {
                keys.recipients.insert(host.to_owned(), recipient.clone());
            } else if make_missing {
                let identity = NodeIdentity::generate(host);
                keys.recipients
                    .insert(host.to_owned(), identity.recipient.clone());
                keys.new.push(identity);
            }
        }
        Ok(keys)
    }

    /// Host → age recipient, for [`Project::node_age_recipients`].
    pub fn recipients(&self) -> BTreeMap<String, AgeRecipient> {
        self.recipients.clone()
    }

    /// The paths (relative to the repo) of identities [`NodeKeys::write_new`] would create.
    pub fn new_paths(&self) -> Vec<String> {
        self.new
            .iter()
            .map(|i| format!("{KEYS_DIR}/{}.age", i.host))
            .collect()
    }

    /// The files that write the identities made by [`NodeKeys::prepare`] into `repo`, for a
    /// transaction to create: each 0600 (so `keys/`, if it has to be made, is 0700), and
    /// `keys/.gitignore` when missing.
    pub fn new_files(&self, repo: &Path) -> Vec<crate::sync::NewFile> {
        let mut files: Vec<crate::sync::NewFile> = self
            .new
            .iter()
            .map(|identity| crate::sync::NewFile {
                path: format!("{KEYS_DIR}/{}.age", identity.host),
                contents: identity.file_text().into_bytes(),
                mode: 0o600,
            })
            .collect();
        let ignore = format!("{KEYS_DIR}/.gitignore");
        if !files.is_empty() && repo.join(&ignore).symlink_metadata().is_err() {
            files.push(crate::sync::NewFile {
                path: ignore,
                contents: identity::KEYS_GITIGNORE.as_bytes().to_vec(),
                mode: 0o644,
            });
        }
        files
    }

    /// Writes the identities made by [`NodeKeys::prepare`]: `keys/` 0700 with a `.gitignore`
    /// of its own, each file 0600, never overwriting one that exists.
    pub fn write_new(&self, repo: &Path) -> Result<Vec<String>> {
        for identity in &self.new {
            write_identity(repo, identity)?;
        }
        Ok(self.new_paths())
    }
}

/// `keys/<host>.age` in `repo`.
pub fn identity_path(repo: &Path, host: &str) -> PathBuf {
    repo.join(KEYS_DIR).join(format!("{host}.age"))
}

/// For commands that only look (`diff`, `--dry-run`): every node's recipient that exists
/// already (in `keys/` or `.sops.yaml`), making none, so the output is the same on every run.
/// A node without one renders as a placeholder line in `.sops.yaml`.
pub fn existing_node_recipients(
    repo: &Path,
    secrets: &Secrets,
    nodes: &[Node],
) -> Result<BTreeMap<String, AgeRecipient>> {
    let mut keys = NodeKeys::prepare(repo, secrets, nodes)?;
    for identity in std::mem::take(&mut keys.new) {
        keys.recipients.remove(&identity.host);
    }
    Ok(keys.recipients)
}

/// Makes the missing node identities on disk at once and returns every node's recipient, for
/// [`Project::new`](crate::model::Project::new):
/// `Project::new(&answers, |secrets, nodes| ensure_node_keys(repo, secrets, nodes))`. For
/// library users that write a rendered tree themselves; the commands use [`NodeKeys`] instead,
/// so that the identities are written inside their all-or-nothing transaction.
pub fn ensure_node_keys(
    repo: &Path,
    secrets: &Secrets,
    nodes: &[Node],
) -> Result<BTreeMap<String, AgeRecipient>> {
    let keys = NodeKeys::prepare(repo, secrets, nodes)?;
    keys.write_new(repo)?;
    Ok(keys.recipients())
}

/// Nodes of `answers` whose recipient `.sops.yaml` records while their identity is neither in
/// `keys/` nor declared kept elsewhere: what is encrypted to them can be decrypted by no one
/// here, and perhaps by no one at all. `secrets.node-identities-elsewhere` declares a checkout
/// without `keys/` (CI, a second admin) normal; a `keys/` that holds some identities and lacks
/// others is reported even then. Age-keys mode only: in ssh-host-keys mode the identities are
/// the nodes' host keys.
pub fn nodes_without_identity(repo: &Path, answers: &crate::model::Answers) -> Result<Vec<String>> {
    let secrets = &answers.secrets;
    let no_keys_dir = repo.join(KEYS_DIR).symlink_metadata().is_err();
    if secrets.mode != SecretsMode::Sops
        || secrets.node_recipients != NodeRecipients::AgeKeys
        || (secrets.node_identities_elsewhere && no_keys_dir)
    {
        return Ok(Vec::new());
    }
    let recorded = recorded_recipients(repo)?;
    Ok(answers
        .nodes
        .iter()
        .map(|node| node.host.as_str())
        .filter(|host| recorded.contains_key(*host))
        .filter(|host| identity_path(repo, host).symlink_metadata().is_err())
        .map(str::to_owned)
        .collect())
}

/// What to do about a node without its identity, for `check` and the other commands.
pub fn without_identity_fix(host: &str) -> String {
    format!(
        "restore {KEYS_DIR}/{host}.age from your backup; if it is lost, delete the `&{host}` and `*{host}` lines of .sops.yaml and run `flakesmith update` (it makes a new identity), then `sops updatekeys` each file in secrets/; if the identities are kept elsewhere on purpose, set `secrets.node-identities-elsewhere: true` in flakesmith.yaml"
    )
}

/// Tells the user about identities just made: they exist nowhere else, so they need a backup.
pub fn report_made(made: &[String]) {
    if !made.is_empty() {
        println!(
            "Made {} node age identit{} in {}/ (git-ignored, 0600): back them up, they decrypt the nodes' secrets.",
            made.len(),
            if made.len() == 1 { "y" } else { "ies" },
            KEYS_DIR
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sops_project() -> crate::model::Project {
        let mut answers = crate::model::Answers::default();
        answers.secrets.mode = SecretsMode::Sops;
        answers.secrets.node_recipients = NodeRecipients::AgeKeys;
        crate::model::Project::from_answers(&answers).unwrap()
    }

    // cargo-mutants (unit tests only) left every mutant of NodeKeys alive: init's integration
    // tests cover it, but slowly. This kills them at unit-test speed.
    #[test]
    fn prepare_makes_an_identity_per_node_and_debug_names_them_without_secrets() {
        let repo = tempfile::tempdir().unwrap();
        let project = sops_project();
        let keys = NodeKeys::prepare(repo.path(), &project.secrets, &project.nodes).unwrap();
        let hosts: Vec<String> = project.nodes.iter().map(|n| n.host.to_string()).collect();
        assert_eq!(keys.recipients().into_keys().collect::<Vec<_>>(), hosts);
        assert_eq!(
            keys.new_paths(),
            hosts
                .iter()
                .map(|h| format!("{KEYS_DIR}/{h}.age"))
                .collect::<Vec<_>>()
        );
        // The identities, and keys/.gitignore so git never sees them.
        let files = keys.new_files(repo.path());
        let mut expected = keys.new_paths();
        expected.push(format!("{KEYS_DIR}/.gitignore"));
        assert_eq!(
            files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
            expected
        );
        assert!(files[..hosts.len()].iter().all(|f| f.mode == 0o600
            && String::from_utf8_lossy(&f.contents).contains("AGE-SECRET-KEY-1")));
        let written = keys.write_new(repo.path()).unwrap();
        assert_eq!(written, keys.new_paths());
        for path in &written {
            let identity = read_identity(&repo.path().join(path), "a node").unwrap();
            assert!(keys.recipients().values().any(|r| *r == identity.recipient));
        }
        let debug = format!("{keys:?}");
        assert!(debug.starts_with("NodeKeys { recipients: {"), "{debug}");
        for host in &hosts {
            assert!(debug.contains(host.as_str()), "{debug}");
        }
        assert!(!debug.contains("AGE-SECRET-KEY"), "{debug}");
    }

    // cargo-mutants: no test read nodes_without_identity or the fix it comes with (check and
    // update only print them).
    #[test]
    fn nodes_recorded_in_sops_yaml_without_an_identity_are_listed_unless_kept_elsewhere() {
        let repo = tempfile::tempdir().unwrap();
        let mut answers = crate::model::Answers::default();
        answers.secrets.mode = SecretsMode::Sops;
        answers.secrets.node_recipients = NodeRecipients::AgeKeys;
        answers.set_node_count(3, "n");
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        // n1 and n2 are recorded, n3 is not (a node added since: nothing is encrypted to it).
        std::fs::write(
            repo.path().join(SOPS_YAML),
            format!("keys:\n  - &n1 {recipient}\n  - &n2 {recipient}\n"),
        )
        .unwrap();
        let missing =
            |answers: &crate::model::Answers| nodes_without_identity(repo.path(), answers).unwrap();
        // A clone without keys/: both recorded nodes lack their identity.
        assert_eq!(missing(&answers), ["n1", "n2"]);
        // ... unless the identities are declared kept elsewhere.
        answers.secrets.node_identities_elsewhere = true;
        assert_eq!(missing(&answers), Vec::<String>::new());
        // A keys/ that holds some identities and lacks others is reported even then.
        write_identity(repo.path(), &NodeIdentity::generate("n1")).unwrap();
        assert_eq!(missing(&answers), ["n2"]);
        answers.secrets.node_identities_elsewhere = false;
        assert_eq!(missing(&answers), ["n2"]);
        // In ssh-host-keys mode the identities are the host keys; without sops there are none.
        answers.secrets.node_recipients = NodeRecipients::SshHostKeys;
        assert_eq!(missing(&answers), Vec::<String>::new());
        answers.secrets.node_recipients = NodeRecipients::AgeKeys;
        answers.secrets.mode = SecretsMode::DeploymentKeys;
        assert_eq!(missing(&answers), Vec::<String>::new());

        let fix = without_identity_fix("n2");
        for part in [
            "restore keys/n2.age from your backup",
            "delete the `&n2` and `*n2` lines of .sops.yaml",
            "`sops updatekeys`",
            "`secrets.node-identities-elsewhere: true`",
        ] {
            assert!(fix.contains(part), "{part} not in: {fix}");
        }
    }
}
