//! `flakesmith check` on a repository: passes when clean, and finds each planted problem with
//! one `path: problem — fix` line and exit code 1.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use flakesmith::{model::Answers, secrets::ensure_node_keys};

use crate::support::{flakesmith_command, ADMIN_AGE_RECIPIENT};

/// What sops writes: every value `ENC[…]`, and a `sops:` block with each recipient's wrapped
/// data key and the MAC. A stand-in made by hand (sops is not installable here): it shows the
/// shape the check reads (which recipients a file is encrypted to), not that sops would decrypt it.
fn encrypted_yaml(recipients: &[&str]) -> String {
    let mut text = "wifi_password: ENC[AES256_GCM,data:9Xb3XQ==,iv:J6z5l1pG8b2cUQ7m3R1b0e9cXhq4mX1aZ0VxS2d9oYk=,tag:Qm9vb2Jvb2Jvb2Jvb2Jvbw==,type:str]\nsops:\n    age:\n".to_owned();
    for r in recipients {
        text.push_str(&format!(
            "        - recipient: {r}\n          enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBzdGFuZC1pbgo=\n            -----END AGE ENCRYPTED FILE-----\n"
        ));
    }
    text.push_str("    lastmodified: \"2026-01-01T00:00:00Z\"\n    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]\n    unencrypted_suffix: _unencrypted\n    version: 3.9.4\n");
    text
}

const COMMON_NIX: &str = r#"{
  config,
  lib,
  pkgs,
  ...
}:
{
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };
  services.fail2ban.enable = true;
  sops.defaultSopsFile = ./secrets/secrets.yaml;
  sops.age.keyFile = "/var/lib/sops-nix/key.txt";
}
"#;

const RK1_BASE_NIX: &str = r#"{ lib, modulesPath, ... }:
{
  imports = [ "${modulesPath}/installer/sd-card/sd-image.nix" ];
  sdImage = {
    # The RK3588 loader is written up to 16 MiB.
    firmwarePartitionOffset = 16;
    compressImage = false;
  };
}
"#;

/// A clean two-node sops repo, git-initialised, written by hand in the shape flakesmith
/// generates (so the check is tested on its own, whatever the templates say).
fn clean_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let mut answers = Answers::default();
    answers.secrets.admin_age_recipients = vec![ADMIN_AGE_RECIPIENT.to_owned()];
    answers.set_node_count(2, "n");
    let project = flakesmith::model::Project::from_answers(&answers).unwrap();
    let recipients = ensure_node_keys(repo, &project.secrets, &project.nodes).unwrap();
    let mut sops = format!("keys:\n  - &admin_1 {ADMIN_AGE_RECIPIENT}\n");
    for (host, recipient) in &recipients {
        sops.push_str(&format!("  - &{host} {recipient}\n"));
    }
    sops.push_str("creation_rules:\n  - path_regex: secrets/[^/]+\\.yaml$\n    key_groups:\n      - age:\n          - *admin_1\n");
    for host in recipients.keys() {
        sops.push_str(&format!("          - *{host}\n"));
    }
    write(repo, ".sops.yaml", &sops);
    write(repo, "flakesmith.yaml", &answers.to_yaml());
    write(repo, "common.nix", COMMON_NIX);
    write(repo, "rk1-base.nix", RK1_BASE_NIX);
    let mut all = vec![ADMIN_AGE_RECIPIENT.to_owned()];
    all.extend(recipients.values().map(|r| r.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    write(repo, "secrets/secrets.yaml", &encrypted_yaml(&all));
    write(repo, ".gitignore", "keys/\nresult\n");
    git(repo, &["init", "--quiet"]);
    git(repo, &["add", "--all"]);
    dir
}

fn write(repo: &Path, path: &str, text: &str) {
    let path = repo.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn edit(repo: &Path, path: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(repo.join(path)).unwrap();
    assert!(text.contains(from), "{path} contains {from:?}");
    std::fs::write(repo.join(path), text.replacen(from, to, 1)).unwrap();
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `flakesmith check -C repo`: (exit code, stdout lines).
fn check(repo: &Path) -> (i32, Vec<String>) {
    let out = flakesmith_command()
        .args(["check", "-C"])
        .arg(repo)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap(), lines)
}

/// Plants one problem in a clean repo and expects exactly one finding that starts with
/// `expected_start` and names the fix.
fn finds(plant: impl FnOnce(&Path), expected_start: &str, fix_mentions: &str) {
    let dir = clean_repo();
    plant(dir.path());
    let (code, lines) = check(dir.path());
    assert_eq!(code, 1, "a finding exits 1: {lines:?}");
    assert_eq!(lines.len(), 1, "one finding: {lines:#?}");
    let line = &lines[0];
    assert!(
        line.starts_with(expected_start),
        "{line}\n  does not start with {expected_start}"
    );
    let (_, fix) = line.split_once(" — ").expect("path: problem — fix");
    assert!(
        fix.contains(fix_mentions),
        "{line}\n  fix does not mention {fix_mentions}"
    );
}

#[test]
fn a_clean_repo_passes() {
    let dir = clean_repo();
    let (code, lines) = check(dir.path());
    assert_eq!((code, lines), (0, Vec::<String>::new()));
}

/// A cluster of CM4s, as init writes it: no RK1 module, so no RK1 boot-layout finding (nixpkgs'
/// aarch64 SD image puts the FAT partition at 8 MiB, which is right for a CM4).
#[test]
fn a_generated_cm4_cluster_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let answers = crate::support::Project::default()
        .with_nodes(2)
        .with_cm4(&["rk1-node1", "rk1-node2"])
        .answers()
        .to_yaml();
    let file = tmp.path().join("answers.yaml");
    std::fs::write(&file, answers).unwrap();
    let repo = crate::support::TestRepo::init(&["--answers", file.to_str().unwrap()]);
    assert!(!repo.dir.join("rk1-base.nix").exists());
    let (code, lines) = check(&repo.dir);
    assert_eq!((code, lines), (0, Vec::<String>::new()));
}

#[test]
fn finds_nix_that_does_not_parse() {
    finds(
        |r| write(r, "nodes/n1.nix", "{\n  networking.hostName = ;\n}\n"),
        "nodes/n1.nix:2:",
        "nix-instantiate --parse",
    );
}

#[test]
fn a_syntax_error_is_placed_by_line_and_column_only() {
    let dir = clean_repo();
    write(dir.path(), "nodes/n1.nix", "{\n  a = 1;\n}\nb = 2;\n");
    let (_, lines) = check(dir.path());
    // rnix's byte range ("at 15..16") repeats what the line and column say, less readably.
    assert!(
        lines.len() == 1 && lines[0].starts_with("nodes/n1.nix:4:") && !lines[0].contains(".."),
        "{lines:#?}"
    );
}

#[test]
fn finds_a_plaintext_file_under_secrets() {
    finds(
        |r| write(r, "secrets/wifi.yaml", "wifi_password: hunter2\n"),
        "secrets/wifi.yaml: not encrypted by sops",
        "sops --encrypt --in-place secrets/wifi.yaml",
    );
}

/// The recipients of the clean repo's nodes, from its .sops.yaml.
fn node_recipient(repo: &Path, host: &str) -> String {
    let text = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    flakesmith::secrets::SopsYaml::parse(&text).anchors[host].clone()
}

#[test]
fn finds_a_secrets_file_a_node_cannot_decrypt() {
    finds(
        |r| {
            let n1 = node_recipient(r, "n1");
            write(
                r,
                "secrets/secrets.yaml",
                &encrypted_yaml(&[ADMIN_AGE_RECIPIENT, &n1]),
            );
        },
        "secrets/secrets.yaml: not encrypted to n2 (age1",
        "`sops updatekeys secrets/secrets.yaml`",
    );
}

#[test]
fn finds_a_secrets_file_still_encrypted_to_a_removed_recipient() {
    finds(
        |r| {
            let (n1, n2) = (node_recipient(r, "n1"), node_recipient(r, "n2"));
            let gone = age::x25519::Identity::generate().to_public().to_string();
            write(
                r,
                "secrets/secrets.yaml",
                &encrypted_yaml(&[ADMIN_AGE_RECIPIENT, &n1, &n2, &gone]),
            );
        },
        "secrets/secrets.yaml: still encrypted to age1",
        "rotate its secrets",
    );
}

#[test]
fn finds_a_recipient_that_is_not_the_nodes_key() {
    finds(
        |r| {
            std::fs::remove_file(r.join("keys/n1.age")).unwrap();
            let other = tempfile::tempdir().unwrap();
            let mut answers = Answers::default();
            answers.set_node_count(1, "n");
            let project = flakesmith::model::Project::from_answers(&answers).unwrap();
            ensure_node_keys(other.path(), &project.secrets, &project.nodes).unwrap();
            std::fs::copy(other.path().join("keys/n1.age"), r.join("keys/n1.age")).unwrap();
        },
        ".sops.yaml: node n1's recipient is not the public key of keys/n1.age",
        "flakesmith update",
    );
}

#[test]
fn finds_an_age_identity_outside_keys() {
    finds(
        |r| {
            std::fs::copy(r.join("keys/n1.age"), r.join("deploy-key.txt"))
                .map(|_| ())
                .unwrap()
        },
        "deploy-key.txt:4: contains an age private key",
        "move it into keys/",
    );
}

#[test]
fn finds_an_ssh_private_key_outside_keys() {
    finds(
        |r| {
            std::fs::create_dir_all(r.join("deploy")).unwrap();
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
                .arg(r.join("deploy/id_ed25519"))
                .output()
                .unwrap();
            assert!(out.status.success());
            // The public half is fine anywhere.
        },
        "deploy/id_ed25519:1: contains an OpenSSH private key",
        "move it into keys/",
    );
}

/// The one finding `plant` causes, compared whole: path, problem and fix.
fn finds_exactly(plant: impl FnOnce(&Path), expected: &str) {
    let dir = clean_repo();
    plant(dir.path());
    let (code, lines) = check(dir.path());
    assert_eq!((code, lines), (1, vec![expected.to_owned()]));
}

#[test]
fn a_private_key_outside_keys_is_removed_from_git_when_tracked() {
    let plant = |tracked: bool| {
        move |r: &Path| {
            std::fs::copy(r.join("keys/n1.age"), r.join("deploy-key.txt")).unwrap();
            if tracked {
                git(r, &["add", "deploy-key.txt"]);
            }
        }
    };
    finds_exactly(
        plant(false),
        "deploy-key.txt:4: contains an age private key outside keys/ — move it into keys/ \
         (git-ignored, 0600) if it is needed, or delete it",
    );
    finds_exactly(
        plant(true),
        "deploy-key.txt:4: contains an age private key outside keys/ — remove it from git \
         (`git rm --cached deploy-key.txt`), move it into keys/ if it is needed, and replace the \
         key: it is in the history",
    );
}

#[test]
fn finds_an_identity_tracked_by_git() {
    finds(
        |r| git(r, &["add", "--force", "keys/n1.age"]),
        "keys/n1.age: tracked by git",
        "git rm --cached keys/n1.age",
    );
}

#[test]
fn finds_identities_git_would_add() {
    finds(
        |r| {
            std::fs::remove_file(r.join("keys/.gitignore")).unwrap();
            // n2's identity stays ignored, so that n1's is the one finding.
            write(r, ".gitignore", "result\nkeys/n2.age\n");
        },
        "keys/n1.age: not ignored by git",
        "add `keys/` to .gitignore",
    );
}

#[test]
fn finds_an_identity_others_can_read() {
    finds(
        |r| {
            std::fs::set_permissions(
                r.join("keys/n2.age"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap()
        },
        "keys/n2.age: mode 0644",
        "chmod 600 keys/n2.age",
    );
}

#[test]
fn finds_password_authentication() {
    finds(
        |r| {
            edit(
                r,
                "common.nix",
                "PasswordAuthentication = false",
                "PasswordAuthentication = true",
            )
        },
        "common.nix:11: PasswordAuthentication is enabled",
        "PasswordAuthentication = false",
    );
}

#[test]
fn finds_a_clear_text_password() {
    finds(
        |r| {
            edit(r, "common.nix", "  services.fail2ban.enable = true;\n", "  services.fail2ban.enable = true;\n  users.users.admin.initialPassword = \"changeme\";\n")
        },
        "common.nix:17: initialPassword is a clear-text password",
        "hashedPassword",
    );
}

#[test]
fn finds_a_private_key_named_by_a_nix_path() {
    finds(
        |r| {
            edit(
                r,
                "common.nix",
                "sops.age.keyFile = \"/var/lib/sops-nix/key.txt\";",
                "sops.age.keyFile = ./keys/n1.age;",
            )
        },
        "common.nix:18: the path ./keys/n1.age names a private key",
        "/var/lib/sops-nix/key.txt",
    );
}

#[test]
fn finds_an_rk1_firmware_offset_below_16_mib() {
    finds(
        |r| {
            edit(
                r,
                "rk1-base.nix",
                "firmwarePartitionOffset = 16",
                "firmwarePartitionOffset = 8",
            )
        },
        "rk1-base.nix:6: sdImage.firmwarePartitionOffset is 8 MiB",
        "firmwarePartitionOffset = 16",
    );
    finds(
        |r| edit(r, "rk1-base.nix", "firmwarePartitionOffset = 16;", ""),
        "rk1-base.nix: sdImage.firmwarePartitionOffset is not set",
        "firmwarePartitionOffset = 16",
    );
}

/// The Orange Pi 5 Plus's U-Boot is an RK3588 loader written by rk-inject too: its module must
/// keep the partition at 16 MiB, beside the RK1 module's own setting.
#[test]
fn finds_an_orange_pi_5_plus_firmware_offset_below_16_mib_or_unset_beside_the_rk1s() {
    let repo = crate::support::TestRepo::init(&[
        "--layout",
        "multi-cloud",
        "--platform",
        "rk1,orangepi-5-plus",
        "--nodes",
        "2",
    ]);
    let module = "platforms/orangepi-5-plus.nix";
    assert_eq!(check(&repo.dir), (0, Vec::<String>::new()));

    edit(
        &repo.dir,
        module,
        "firmwarePartitionOffset = 16",
        "firmwarePartitionOffset = 8",
    );
    let text = std::fs::read_to_string(repo.dir.join(module)).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.contains("firmwarePartitionOffset = 8"))
        .unwrap();
    let (code, lines) = check(&repo.dir);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "{module}:{line}: sdImage.firmwarePartitionOffset is 8 MiB"
        )),
        "{lines:#?}"
    );

    // The RK1 module still sets it: the Orange Pi's is missed all the same.
    edit(&repo.dir, module, "firmwarePartitionOffset = 8;", "");
    let (code, lines) = check(&repo.dir);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [format!(
            "{module}: sdImage.firmwarePartitionOffset is not set: nixpkgs' default of 8 MiB is exactly where the RK3588's u-boot.itb goes — set sdImage.firmwarePartitionOffset = 16; in {module}"
        )]
    );
}

#[test]
fn finds_a_node_missing_from_sops_yaml() {
    finds(
        |r| {
            let mut answers =
                Answers::from_yaml(&std::fs::read_to_string(r.join("flakesmith.yaml")).unwrap())
                    .unwrap();
            answers.set_node_count(3, "n");
            write(r, "flakesmith.yaml", &answers.to_yaml());
        },
        ".sops.yaml: node n3 has no age recipient",
        "flakesmith update",
    );
    finds(
        |r| {
            edit(r, ".sops.yaml", "          - *n2\n", "");
            // Re-encrypted to what the rule now says, so only the unused recipient remains.
            let n1 = node_recipient(r, "n1");
            write(
                r,
                "secrets/secrets.yaml",
                &encrypted_yaml(&[ADMIN_AGE_RECIPIENT, &n1]),
            );
        },
        ".sops.yaml: node n2 has a recipient but no creation rule uses it",
        "- *n2",
    );
}

#[test]
fn a_directory_without_answers_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = flakesmith_command()
        .args(["check", "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no flakesmith.yaml"));
}

#[test]
fn finds_a_deployment_key_in_the_running_configuration() {
    let deploy = crate::support::DEPLOY_SSH_KEY;
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Answers::default();
    answers.secrets.mode = flakesmith::model::answers::SecretsMode::DeploymentKeys;
    answers.secrets.deployment_key = Some(deploy.to_owned());
    answers.set_node_count(1, "n");
    write(dir.path(), "flakesmith.yaml", &answers.to_yaml());
    write(dir.path(), "rk1-base.nix", RK1_BASE_NIX);
    write(dir.path(), "deployment-key.nix", &format!("{{ lib, ... }}:\n{{\n  users.users.root.openssh.authorizedKeys.keys = lib.mkForce [ \"{deploy}\" ];\n}}\n"));
    assert_eq!(
        check(dir.path()),
        (0, Vec::new()),
        "in deployment-key.nix it is where it belongs"
    );

    write(dir.path(), "common.nix", &format!("{{ ... }}:\n{{\n  users.users.root.openssh.authorizedKeys.keys = [ \"{deploy}\" ];\n}}\n"));
    let (code, lines) = check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("common.nix:3: authorises the deployment key"),
        "{}",
        lines[0]
    );
}

/// `flakesmith init` from the answers of every snapshot case and variant, then `flakesmith
/// check` on the new repository: what flakesmith generates must pass its own lint. The one
/// finding a fresh repo may have is by design: in ssh-host-keys mode a machine's recipient is
/// known only after its first boot, so check lists those machines until they are recorded
/// (check_lists_ssh_host_key_nodes_until_their_recipients_are_recorded covers that).
#[test]
fn check_passes_on_every_freshly_generated_variant() {
    let mut failures = Vec::new();
    for (name, tree) in crate::support::all_variants() {
        let answers_text = tree
            .get("flakesmith.yaml")
            .and_then(|f| f.as_text())
            .unwrap_or_else(|| panic!("{name}: the tree has flakesmith.yaml"))
            .to_owned();
        let answers = Answers::from_yaml(&answers_text).unwrap();
        let home = tempfile::tempdir().unwrap();
        // A blob is given to init as the user's u-boot-rockchip.bin, which it copies in.
        let answers_text = if answers.bootloader.blob.is_some() {
            let blob = crate::inject::fixtures::rk35_payloads(home.path()).combined;
            answers_text.replace(
                "blob: rk1-bootloader.bin",
                &format!("blob: {}", blob.display()),
            )
        } else {
            answers_text
        };
        let answers_file = home.path().join("answers.yaml");
        std::fs::write(&answers_file, &answers_text).unwrap();
        let repo = home.path().join("repo");
        let out = flakesmith_command()
            .arg("init")
            .arg(&repo)
            .arg("--answers")
            .arg(&answers_file)
            .env("HOME", home.path())
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: init failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A generated flakesmith.yaml names the blob in the repo, which the user brings: a real
        // RK1 loader, as check verifies.
        if answers.bootloader.blob.is_some() {
            let payloads = crate::inject::fixtures::rk35_payloads(home.path());
            std::fs::copy(&payloads.combined, repo.join("rk1-bootloader.bin")).unwrap();
            crate::support::run_ok(
                Command::new("git")
                    .current_dir(&repo)
                    .args(["add", "rk1-bootloader.bin"]),
            );
        }
        let (code, lines) = check(&repo);
        let pending_host_keys = answers.secrets.mode
            == flakesmith::model::answers::SecretsMode::Sops
            && answers.secrets.node_recipients
                == flakesmith::model::answers::NodeRecipients::SshHostKeys;
        let unexpected: Vec<&String> = lines
            .iter()
            .filter(|l| !(pending_host_keys && l.contains("has no age recipient")))
            .collect();
        if !unexpected.is_empty() || (code != 0 && !pending_host_keys) {
            failures.push(format!("{name} (exit {code}):\n  {}", lines.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "check on fresh repos:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_summary_names_the_repo_even_when_run_inside_it() {
    let dir = clean_repo();
    let out = flakesmith_command()
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), format!("{name}: no findings"));
}

/// sshd_config lines that turn on a setting `check` holds to, in the forms sshd accepts
/// (keyword in any case or quoted, '=' or whitespace, quoted values, trailing comments), with
/// the `sshd -T` line each one produces.
const SSHD_ENABLING_LINES: &[(&str, &str)] = &[
    ("PasswordAuthentication yes", "passwordauthentication yes"),
    ("passwordauthentication YES", "passwordauthentication yes"),
    ("PasswordAuthentication=yes", "passwordauthentication yes"),
    ("PasswordAuthentication = yes", "passwordauthentication yes"),
    (
        "\t PasswordAuthentication\t\"yes\"  # a comment",
        "passwordauthentication yes",
    ),
    (
        "\"PasswordAuthentication\" yes",
        "passwordauthentication yes",
    ),
    ("PasswordAuthentication 'Yes'", "passwordauthentication yes"),
    (
        "KbdInteractiveAuthentication yes",
        "kbdinteractiveauthentication yes",
    ),
    (
        "ChallengeResponseAuthentication=yes",
        "kbdinteractiveauthentication yes",
    ),
    (
        "kbdinteractiveauthentication Yes",
        "kbdinteractiveauthentication yes",
    ),
    ("PermitRootLogin yes", "permitrootlogin yes"),
    ("permitrootlogin=YES", "permitrootlogin yes"),
    ("PermitRootLogin \"yes\"", "permitrootlogin yes"),
];

/// Lines that look alike but leave every one of those settings off.
const SSHD_HARMLESS_LINES: &[&str] = &[
    "PasswordAuthentication no",
    "#PasswordAuthentication yes",
    "  # PermitRootLogin yes",
    "PermitRootLogin prohibit-password # not yes",
    "KbdInteractiveAuthentication no",
];

/// What the real sshd makes of `text` followed by key-only settings (sshd takes the first
/// value of a keyword, so a line in `text` wins): its `sshd -T` lines for the three settings.
/// Run as nobody: as root, sshd -T insists on its privilege separation directory.
fn sshd_effective(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!("{text}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"),
    )
    .unwrap();
    let host_key = dir.path().join("host_key");
    crate::support::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key),
    );
    let mut sshd = if unsafe { libc::geteuid() } == 0 {
        crate::support::run_ok(Command::new("chown").arg("nobody").arg(&host_key));
        let mut as_nobody = Command::new("setpriv");
        as_nobody.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/sbin/sshd",
        ]);
        as_nobody
    } else {
        Command::new("/usr/sbin/sshd")
    };
    let out = crate::support::run_ok(
        sshd.args(["-T", "-f"])
            .arg(&config)
            .arg("-h")
            .arg(&host_key),
    );
    out.lines()
        .filter(|l| {
            [
                "passwordauthentication ",
                "kbdinteractiveauthentication ",
                "permitrootlogin ",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_owned)
        .collect()
}

/// `text` as a Nix "…" string literal.
fn nix_string(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{escaped}\"")
}

/// The string a Nix expression evaluates to, by the real Nix.
fn nix_eval_string(expr: &str) -> String {
    let out = crate::support::run_ok(
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr"])
            .arg(expr),
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn finds_sshd_settings_given_as_text_in_every_form_sshd_accepts() {
    for &(line, effective) in SSHD_ENABLING_LINES {
        assert!(
            sshd_effective(line).iter().any(|l| l == effective),
            "the real sshd does not read {line:?} as {effective}: the test's premise is wrong"
        );
        // The same line in a one-line string, in a string of several lines written with \n,
        // and in an indented string; each confirmed to evaluate to text holding the line.
        let wrappers = [
            (nix_string(line), 0),
            (
                nix_string(&format!("UseDNS no\n{line}\nX11Forwarding no\n")),
                0,
            ),
            (format!("''\n    UseDNS no\n    {line}\n  ''"), 2),
        ];
        for (string, line_in_string) in wrappers {
            let evaluated = nix_eval_string(&string);
            assert!(
                sshd_effective(&evaluated).iter().any(|l| l == effective),
                "{string} does not evaluate to a config sshd reads as {effective}: {evaluated:?}"
            );
            let dir = clean_repo();
            edit(
                dir.path(),
                "common.nix",
                "  services.fail2ban.enable = true;",
                &format!("  services.openssh.extraConfig = {string};\n  services.fail2ban.enable = true;"),
            );
            let (code, lines) = check(dir.path());
            let at = format!("common.nix:{}: sshd_config text sets ", 16 + line_in_string);
            assert_eq!(code, 1, "{string}: {lines:?}");
            assert!(
                lines.len() == 1 && lines[0].starts_with(&at),
                "{string}: expected one finding at {at}: {lines:#?}"
            );
        }
    }
}

#[test]
fn sshd_text_that_leaves_passwords_off_is_not_a_finding() {
    for &line in SSHD_HARMLESS_LINES {
        let effective = sshd_effective(line);
        assert!(
            effective.iter().all(|l| !l.ends_with(" yes")),
            "the real sshd reads {line:?} as {effective:?}: the test's premise is wrong"
        );
        let dir = clean_repo();
        edit(
            dir.path(),
            "common.nix",
            "  services.fail2ban.enable = true;",
            &format!(
                "  services.openssh.extraConfig = {};\n  # services.openssh.extraConfig = \"PasswordAuthentication yes\";\n  services.fail2ban.enable = true;",
                nix_string(line)
            ),
        );
        assert_eq!(check(dir.path()), (0, Vec::new()), "{line:?}");
    }
}

#[test]
fn finds_sshd_settings_given_as_options_in_every_spelling() {
    // NixOS writes `settings` into sshd_config as given (true as yes), and sshd reads keywords
    // without regard to case. Without nixpkgs here, the rendering itself is not run: the
    // stand-in is the sshd lines above, which show sshd accepts each spelling.
    for (from, to, name) in [
        (
            "PasswordAuthentication = false",
            "PasswordAuthentication = true",
            "PasswordAuthentication",
        ),
        (
            "PasswordAuthentication = false",
            "\"PasswordAuthentication\" = lib.mkForce true",
            "PasswordAuthentication",
        ),
        (
            "PasswordAuthentication = false",
            "passwordauthentication = \"yes\"",
            "passwordauthentication",
        ),
        (
            "KbdInteractiveAuthentication = false",
            "KbdInteractiveAuthentication = lib.mkDefault true",
            "KbdInteractiveAuthentication",
        ),
        (
            "KbdInteractiveAuthentication = false",
            "ChallengeResponseAuthentication = true",
            "ChallengeResponseAuthentication",
        ),
        (
            "PermitRootLogin = \"prohibit-password\"",
            "PermitRootLogin = \"Yes\"",
            "PermitRootLogin",
        ),
        (
            "PermitRootLogin = \"prohibit-password\"",
            "PermitRootLogin = ''yes''",
            "PermitRootLogin",
        ),
        (
            "PermitRootLogin = \"prohibit-password\"",
            "permitrootlogin = true",
            "permitrootlogin",
        ),
    ] {
        finds(
            |r| edit(r, "common.nix", from, to),
            "common.nix:",
            "services.openssh.settings.",
        );
        let dir = clean_repo();
        edit(dir.path(), "common.nix", from, to);
        let (_, lines) = check(dir.path());
        assert!(
            lines[0].contains(&format!(": {name} is enabled: ")),
            "{to}: {lines:?}"
        );
    }
}

#[test]
fn conflict_markers_in_a_nix_file_are_named_as_such() {
    finds(
        |repo| {
            write(
                repo,
                "conflicted.nix",
                "{\n<<<<<<< yours\n  time.timeZone = \"Europe/Paris\";\n=======\n  time.timeZone = \"Asia/Tokyo\";\n>>>>>>> flakesmith (new)\n}\n",
            );
        },
        "conflicted.nix:2: unresolved conflict markers from an earlier update",
        "remove the <<<<<<< ======= >>>>>>> lines",
    );
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "reads /nix/store itself, which a normal user's chroot store (support::nix_config) keeps elsewhere: run the suite as root, as CI does"
)]
fn finds_this_repos_keys_in_the_nix_store_and_the_fix_removes_them() {
    let dir = clean_repo();
    let repo = dir.path();
    // What `nix build path:…` or nix on a repository without git does: the directory, keys/
    // included, copied into the store as `<hash>-source`.
    let out = crate::support::run_ok(
        Command::new("nix-instantiate")
            .args(["--eval", "--read-write-mode", "--expr"])
            .arg(format!(
                "builtins.toString (builtins.path {{ path = {}; name = \"source\"; }})",
                repo.display()
            )),
    );
    let copy = out.trim().trim_matches('"').to_owned();
    assert!(Path::new(&copy).join("keys/n1.age").is_file(), "{copy}");

    let (code, lines) = check(repo);
    assert_eq!(code, 1, "{lines:#?}");
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(&copy)).collect();
    assert_eq!(found.len(), 2, "both identities: {lines:#?}");
    assert!(
        found[0].contains("holds the private key of keys/n")
            && found[0].contains(&format!("nix-store --delete {copy}")),
        "{}",
        found[0]
    );
    // The fix works: nothing keeps the copy alive, so it can be deleted, and check is clean.
    crate::support::run_ok(Command::new("nix-store").args(["--delete", &copy]));
    assert_eq!(check(repo), (0, Vec::new()));
}
