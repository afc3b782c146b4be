//! Secrets hygiene of what is generated: no private key anywhere, key files git-ignored, and a
//! .sops.yaml that sops can read (its aliases resolve to the admins' age recipients).

use serde_yaml_ng::Value;

use crate::support::{all_variants, Project, ADMIN_AGE_RECIPIENT};

#[test]
fn no_generated_file_holds_private_key_material() {
    for (variant, tree) in all_variants() {
        for (path, file) in tree.iter() {
            let text = String::from_utf8_lossy(&file.contents);
            for marker in ["PRIVATE KEY", "AGE-SECRET-KEY-", "sops:\n"] {
                assert!(
                    !text.contains(marker),
                    "{variant}: {path} contains {marker:?}"
                );
            }
        }
        let gitignore = tree.get(".gitignore").unwrap().as_text().unwrap();
        for line in ["result", "result-*", "keys/", "*.key", ".direnv/"] {
            assert!(
                gitignore.lines().any(|l| l == line),
                "{variant}: .gitignore lacks {line}"
            );
        }
    }
}

#[test]
fn sops_yaml_gives_the_admins_recipients_to_every_secrets_file() {
    let second = "age1wmfkqkvf6ru7gvt93qd6n65uxk2va5cg9ug3lhgp4r0wc30lsysqe9pdgf";
    let mut project = Project::default().with_sops();
    let mut answers = project.answers().clone();
    answers.secrets.admin_age_recipients.push(second.to_owned());
    project = Project::from_answers(answers);
    let tree = project.render();

    let sops: Value = serde_yaml_ng::from_str(tree.get(".sops.yaml").unwrap().as_text().unwrap())
        .expect(".sops.yaml is YAML (aliases resolved)");
    let rule = &sops["creation_rules"][0];
    assert_eq!(rule["path_regex"].as_str(), Some(r"secrets/[^/]+\.yaml$"));
    let recipients: Vec<&str> = rule["key_groups"][0]["age"]
        .as_sequence()
        .expect("an age key group")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(recipients, [ADMIN_AGE_RECIPIENT, second]);

    // The placeholder secrets file is plain YAML without sops metadata and without secrets.
    let secrets: Value =
        serde_yaml_ng::from_str(tree.get("secrets/secrets.yaml").unwrap().as_text().unwrap())
            .unwrap();
    assert_eq!(secrets["example"].as_str(), Some("not-a-secret"));
    assert!(secrets.get("sops").is_none());
}

#[test]
fn deployment_keys_mode_has_no_sops_files_and_authorises_the_key_for_first_access() {
    let tree = Project::default().with_deployment_key().render();
    assert!(tree.get(".sops.yaml").is_none() && tree.get("secrets/secrets.yaml").is_none());
    let common = tree.get("common.nix").unwrap().as_text().unwrap();
    assert!(common.contains("users.users.root.openssh.authorizedKeys.keys = [\n    \"ssh-ed25519 "));
    assert!(
        common.contains("After the first deploy"),
        "the post-deploy step is explained"
    );
    assert!(!common.contains("sops."));
    let flake = tree.get("flake.nix").unwrap().as_text().unwrap();
    assert!(!flake.contains("sops-nix"));
}
