//! Node age identities: made with the age crate, read back by the real `age` CLI (Debian's
//! `age` package), kept out of git.
//!
//! sops itself is not installable here, so what these tests cannot show is that sops accepts
//! the generated `.sops.yaml` and encrypts to its recipients, nor that sops-nix decrypts with
//! `/var/lib/sops-nix/key.txt` on a node. What they do show: the identity files are what
//! `age`/sops read (`age -d -i` takes the same age-keygen format sops reads via
//! SOPS_AGE_KEY_FILE and sops-nix via sops.age.keyFile), each node's recipient decrypts only
//! with that node's identity, and the `.sops.yaml` rules give each recipient what it should get.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use flakesmith::{
    model::{answers::NodeRecipients, answers::SecretsMode, Answers, Project},
    secrets::{ensure_node_keys, identity_path, NodeKeys, SopsYaml},
};

pub const ADMIN_AGE_RECIPIENT: &str = "age1ur8c0ddspyrwel4838hzzr0t8v35djjspg9ehs2tfwfmhxssauvqcj38vc";

pub fn project(edit: impl FnOnce(&mut Answers)) -> Project {
    let mut answers = Answers::default();
    answers.secrets.admin_age_recipients = vec![ADMIN_AGE_RECIPIENT.to_owned()];
    edit(&mut answers);
    Project::from_answers(&answers).expect("valid test answers")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `age` with its arguments; panics with its stderr when it fails.
fn age(args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = Command::new("age")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the age CLI is installed (Debian package age)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn node_identities_round_trip_through_the_age_cli() {
    let repo = tempfile::tempdir().unwrap();
    let project = project(|_| {});
    let recipients = ensure_node_keys(repo.path(), &project).unwrap();
    assert_eq!(recipients.len(), 4, "one recipient per node");

    let keys_dir = repo.path().join("keys");
    assert_eq!(mode(&keys_dir), 0o700);
    let secret = b"wifi_password: correct horse battery staple\n";
    let node1 = identity_path(repo.path(), "rk1-node1");
    let node2 = identity_path(repo.path(), "rk1-node2");
    for node in &project.nodes {
        let path = identity_path(repo.path(), node.host.as_str());
        assert_eq!(mode(&path), 0o600, "{} is owner-only", path.display());
    }

    // Encrypt to node 1's recipient with the real CLI, decrypt with its identity file.
    let ciphertext = age(&["-r", recipients["rk1-node1"].as_str()], secret).unwrap();
    let plaintext = age(&["-d", "-i", node1.to_str().unwrap()], &ciphertext).unwrap();
    assert_eq!(plaintext, secret);
    // Another node's identity cannot read it.
    let refused = age(&["-d", "-i", node2.to_str().unwrap()], &ciphertext).unwrap_err();
    assert!(refused.contains("no identity matched"), "{refused}");

    // And age-keygen -y (what an admin would run) derives the same recipient from the file.
    let derived = Command::new("age-keygen").args(["-y", node1.to_str().unwrap()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&derived.stdout).trim(), recipients["rk1-node1"].as_str());
}

#[test]
fn existing_identities_are_kept_and_missing_ones_made() {
    let repo = tempfile::tempdir().unwrap();
    let first = ensure_node_keys(repo.path(), &project(|a| a.set_node_count(2, "n"))).unwrap();
    let before = std::fs::read(identity_path(repo.path(), "n1")).unwrap();
    let grown = project(|a| a.set_node_count(3, "n"));
    let keys = NodeKeys::prepare(repo.path(), &grown).unwrap();
    assert_eq!(keys.new_paths(), ["keys/n3.age"], "only the new node gets an identity");
    keys.write_new(repo.path()).unwrap();
    assert_eq!(std::fs::read(identity_path(repo.path(), "n1")).unwrap(), before);
    let second = keys.recipients();
    assert_eq!(first["n1"], second["n1"]);
    assert_eq!(first["n2"], second["n2"]);
    assert_ne!(second["n3"], second["n1"]);
}

#[test]
fn a_clone_without_keys_keeps_the_recipients_recorded_in_sops_yaml() {
    let made = tempfile::tempdir().unwrap();
    let recipients = ensure_node_keys(made.path(), &project(|_| {})).unwrap();
    let clone = tempfile::tempdir().unwrap();
    let sops_yaml: String = std::iter::once("keys:\n".to_owned())
        .chain(recipients.iter().map(|(h, r)| format!("  - &{h} {r}\n")))
        .collect();
    std::fs::write(clone.path().join(".sops.yaml"), sops_yaml).unwrap();
    let keys = NodeKeys::prepare(clone.path(), &project(|_| {})).unwrap();
    assert!(keys.new_paths().is_empty(), "no new identity replaces a recorded recipient");
    assert_eq!(keys.recipients(), recipients);
}

#[test]
fn ssh_host_key_and_deployment_key_modes_make_no_identities() {
    for edit in [
        (|a: &mut Answers| a.secrets.node_recipients = NodeRecipients::SshHostKeys) as fn(&mut Answers),
        |a: &mut Answers| {
            a.secrets.mode = SecretsMode::DeploymentKeys;
            a.secrets.admin_age_recipients.clear();
        },
    ] {
        let repo = tempfile::tempdir().unwrap();
        let recipients = ensure_node_keys(repo.path(), &project(edit)).unwrap();
        assert!(recipients.is_empty());
        assert!(!repo.path().join("keys").exists());
    }
}

#[test]
fn git_never_sees_the_keys_even_without_the_top_level_gitignore() {
    let repo = tempfile::tempdir().unwrap();
    ensure_node_keys(repo.path(), &project(|_| {})).unwrap();
    std::fs::write(repo.path().join("README.md"), "x\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).current_dir(repo.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    let tracked = git(&["ls-files"]);
    assert_eq!(tracked.trim(), "README.md", "keys/ stays out of git: {tracked}");
}

/// The `.sops.yaml` rules as sops applies them: the first rule whose path_regex matches wins.
/// Go's regexp (sops) is stood in for by `grep -E`; the generated patterns use only syntax the
/// two share.
pub fn recipients_for(sops_yaml: &str, path: &str) -> Vec<String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(sops_yaml).expect(".sops.yaml is YAML");
    for rule in value["creation_rules"].as_sequence().expect("creation_rules is a list") {
        let regex = rule["path_regex"].as_str().unwrap();
        let matched = Command::new("grep")
            .args(["-qE", regex])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(format!("{path}\n").as_bytes())?;
                c.wait()
            })
            .unwrap()
            .success();
        if matched {
            return rule["key_groups"][0]["age"]
                .as_sequence()
                .map(|ages| ages.iter().map(|a| a.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
        }
    }
    Vec::new()
}

pub fn anchors_of(sops_yaml: &str) -> SopsYaml {
    SopsYaml::parse(sops_yaml)
}
