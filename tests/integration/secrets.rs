//! Secrets hygiene of what is generated: no private key anywhere, key files git-ignored, and a
//! .sops.yaml that sops can read (its aliases resolve to the admins' age recipients); node age
//! identities and deploy/post-deploy.sh (see the note above the node tests).

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use flakesmith::{
    model::{answers::NodeRecipients, answers::SecretsMode, Answers},
    secrets::{ensure_node_keys, identity_path, NodeKeys, SopsYaml},
};
use serde_yaml_ng::Value;

use crate::support::{all_variants, flakesmith_command, Project, ADMIN_AGE_RECIPIENT};

#[test]
fn no_generated_file_holds_private_key_material() {
    for (variant, tree) in all_variants() {
        for (path, file) in tree.iter() {
            let text = String::from_utf8_lossy(&file.contents);
            // Whole keys, as flakesmith's own detector finds them: a script may name the line a
            // key file starts with (identity-from-firmware.sh checks it) without holding one.
            assert_eq!(
                flakesmith::secrets::private_key::find_complete(&text).map(|(kind, _)| kind),
                None,
                "{variant}: {path} holds a private key"
            );
            for marker in ["AGE-SECRET-KEY-1", "sops:\n"] {
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
    assert_eq!(
        rule["path_regex"].as_str(),
        Some(r"secrets/[^/]+\.(yaml|json|env|ini)$")
    );
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
fn deployment_keys_mode_has_no_sops_files_and_authorises_the_key_in_the_images_only() {
    let tree = Project::default().with_deployment_key().render();
    assert!(tree.get(".sops.yaml").is_none() && tree.get("secrets/secrets.yaml").is_none());
    let common = tree.get("common.nix").unwrap().as_text().unwrap();
    assert!(
        !common.contains(crate::support::DEPLOY_SSH_KEY),
        "the running configuration never has the deployment key"
    );
    assert!(
        common.contains("deploy/post-deploy.sh"),
        "the post-deploy step is explained"
    );
    assert!(!common.contains("sops."));
    let images_only = tree.get("deployment-key.nix").unwrap().as_text().unwrap();
    assert!(images_only.contains(&format!(
        "users.users.root.openssh.authorizedKeys.keys = lib.mkForce [\n    \"{}\"",
        crate::support::DEPLOY_SSH_KEY
    )));
    let flake = tree.get("flake.nix").unwrap().as_text().unwrap();
    assert!(!flake.contains("sops-nix"));
    assert!(flake.contains("node.extendModules { modules = [ ./deployment-key.nix ]; }"));
}

// Node age identities: made with the age crate, read back by the real `age` CLI (Debian's
// `age` package), kept out of git.
//
// sops itself is not installable here, so what these tests cannot show is that sops accepts
// the generated `.sops.yaml` and encrypts to its recipients, nor that sops-nix decrypts with
// `/var/lib/sops-nix/key.txt` on a node. What they do show: the identity files are what
// `age`/sops read (`age -d -i` takes the same age-keygen format sops reads via
// SOPS_AGE_KEY_FILE and sops-nix via sops.age.keyFile), each node's recipient decrypts only
// with that node's identity, and the `.sops.yaml` rules give each recipient what it should get.

pub fn project(edit: impl FnOnce(&mut Answers)) -> flakesmith::model::Project {
    let mut answers = Answers::default();
    answers.secrets.admin_age_recipients = vec![ADMIN_AGE_RECIPIENT.to_owned()];
    edit(&mut answers);
    flakesmith::model::Project::from_answers(&answers).expect("valid test answers")
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
    let recipients = ensure_node_keys(repo.path(), &project.secrets, &project.nodes).unwrap();
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
    let derived = Command::new("age-keygen")
        .args(["-y", node1.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout).trim(),
        recipients["rk1-node1"].as_str()
    );
}

#[test]
fn existing_identities_are_kept_and_missing_ones_made() {
    let repo = tempfile::tempdir().unwrap();
    let two = project(|a| a.set_node_count(2, "n"));
    let first = ensure_node_keys(repo.path(), &two.secrets, &two.nodes).unwrap();
    let before = std::fs::read(identity_path(repo.path(), "n1")).unwrap();
    let grown = project(|a| a.set_node_count(3, "n"));
    let keys = NodeKeys::prepare(repo.path(), &grown.secrets, &grown.nodes).unwrap();
    assert_eq!(
        keys.new_paths(),
        ["keys/n3.age"],
        "only the new node gets an identity"
    );
    keys.write_new(repo.path()).unwrap();
    assert_eq!(
        std::fs::read(identity_path(repo.path(), "n1")).unwrap(),
        before
    );
    let second = keys.recipients();
    assert_eq!(first["n1"], second["n1"]);
    assert_eq!(first["n2"], second["n2"]);
    assert_ne!(second["n3"], second["n1"]);
}

#[test]
fn a_clone_without_keys_keeps_the_recipients_recorded_in_sops_yaml() {
    let made = tempfile::tempdir().unwrap();
    let four = project(|_| {});
    let recipients = ensure_node_keys(made.path(), &four.secrets, &four.nodes).unwrap();
    let clone = tempfile::tempdir().unwrap();
    let sops_yaml: String = std::iter::once("keys:\n".to_owned())
        .chain(recipients.iter().map(|(h, r)| format!("  - &{h} {r}\n")))
        .collect();
    std::fs::write(clone.path().join(".sops.yaml"), sops_yaml).unwrap();
    let keys = NodeKeys::prepare(clone.path(), &four.secrets, &four.nodes).unwrap();
    assert!(
        keys.new_paths().is_empty(),
        "no new identity replaces a recorded recipient"
    );
    assert_eq!(keys.recipients(), recipients);
}

#[test]
fn ssh_host_key_and_deployment_key_modes_make_no_identities() {
    for edit in [
        (|a: &mut Answers| a.secrets.node_recipients = NodeRecipients::SshHostKeys)
            as fn(&mut Answers),
        |a: &mut Answers| {
            a.secrets.mode = SecretsMode::DeploymentKeys;
            a.secrets.admin_age_recipients.clear();
        },
    ] {
        let repo = tempfile::tempdir().unwrap();
        let project = project(edit);
        let recipients = ensure_node_keys(repo.path(), &project.secrets, &project.nodes).unwrap();
        assert!(recipients.is_empty());
        assert!(!repo.path().join("keys").exists());
    }
}

#[test]
fn git_never_sees_the_keys_even_without_the_top_level_gitignore() {
    let repo = tempfile::tempdir().unwrap();
    let project = project(|_| {});
    ensure_node_keys(repo.path(), &project.secrets, &project.nodes).unwrap();
    std::fs::write(repo.path().join("README.md"), "x\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    let tracked = git(&["ls-files"]);
    assert_eq!(
        tracked.trim(),
        "README.md",
        "keys/ stays out of git: {tracked}"
    );
}

/// The `.sops.yaml` rules as sops applies them: the first rule whose path_regex matches wins.
/// Go's regexp (sops) is stood in for by `grep -E`; the generated patterns use only syntax the
/// two share.
pub fn recipients_for(sops_yaml: &str, path: &str) -> Vec<String> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(sops_yaml).expect(".sops.yaml is YAML");
    for rule in value["creation_rules"]
        .as_sequence()
        .expect("creation_rules is a list")
    {
        let regex = rule["path_regex"].as_str().unwrap();
        let matched = Command::new("grep")
            .args(["-qE", regex])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{path}\n").as_bytes())?;
                c.wait()
            })
            .unwrap()
            .success();
        if matched {
            return rule["key_groups"][0]["age"]
                .as_sequence()
                .map(|ages| {
                    ages.iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    Vec::new()
}

pub fn anchors_of(sops_yaml: &str) -> SopsYaml {
    SopsYaml::parse(sops_yaml)
}

/// `flakesmith init DIR --yes` with the given extra flags, in a temporary HOME (so no key of
/// the machine running the tests is picked up). Returns the repo directory's parent.
fn init(extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let (home, repo, _) = init_with_output(extra);
    (home, repo)
}

/// [`init`], and what it printed.
fn init_with_output(
    extra: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("cluster");
    let out = flakesmith_in(home.path())
        .arg("init")
        .arg(&repo)
        .args(["--yes", "--ssh-key", crate::support::ADMIN_SSH_KEY])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (home, repo, out)
}

/// The flakesmith binary with `home` as HOME (and no sops key of the machine running the tests).
fn flakesmith_in(home: &Path) -> Command {
    let mut command = flakesmith_command();
    command.env("HOME", home);
    command
}

// cargo-mutants: nothing read what init and update print about node identities (report_made,
// warn_nodes_without_identity).
#[test]
fn init_asks_for_a_backup_of_the_identities_it_made_and_update_warns_of_a_lost_one() {
    let (home, repo, out) = init_with_output(&["--age-recipient", ADMIN_AGE_RECIPIENT]);
    let made = "Made 4 node age identities in keys/ (git-ignored, 0600): back them up, they decrypt the nodes' secrets.";
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l == made), "{stdout}");

    std::fs::remove_file(repo.join("keys/rk1-node2.age")).unwrap();
    let out = flakesmith_in(home.path())
        .args(["update", "-C"])
        .arg(&repo)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    // The recipient .sops.yaml records is kept: no new identity, so nothing to back up.
    assert!(!stdout.contains("Made "), "{stdout}");
    assert!(!repo.join("keys/rk1-node2.age").exists());
    let warning = format!(
        "warning: keys/rk1-node2.age is missing, but .sops.yaml encrypts to node rk1-node2: {}",
        flakesmith::secrets::without_identity_fix("rk1-node2")
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("warning: keys/"))
            .collect::<Vec<_>>(),
        [warning.as_str()],
        "{stderr}"
    );
}

#[test]
fn init_makes_node_identities_and_sops_yaml_encrypts_to_them() {
    let (_home, repo) = init(&["--age-recipient", ADMIN_AGE_RECIPIENT]);
    let sops_yaml = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    let anchors = anchors_of(&sops_yaml);
    assert_eq!(anchors.anchors["admin_1"], ADMIN_AGE_RECIPIENT);
    let hosts = ["rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"];
    for host in hosts {
        let key = repo.join(format!("keys/{host}.age"));
        assert_eq!(mode(&key), 0o600);
        // The recipient in .sops.yaml is the one the identity file has (as age-keygen sees it).
        let derived = Command::new("age-keygen")
            .arg("-y")
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&derived.stdout).trim(),
            anchors.anchors[host],
            "{host}"
        );
        assert!(anchors.aliases.contains(host), "{host} is used by a rule");
        // A node's own file: that node and the admin, nobody else.
        let own = recipients_for(&sops_yaml, &format!("secrets/{host}.yaml"));
        assert_eq!(
            own,
            [ADMIN_AGE_RECIPIENT, anchors.anchors[host].as_str()],
            "secrets/{host}.yaml"
        );
    }
    // The shared file: the admin and every node.
    let shared = recipients_for(&sops_yaml, "secrets/secrets.yaml");
    let mut expected = vec![ADMIN_AGE_RECIPIENT.to_owned()];
    expected.extend(hosts.iter().map(|h| anchors.anchors[*h].clone()));
    assert_eq!(shared, expected);
    assert!(
        recipients_for(&sops_yaml, "README.md").is_empty(),
        "files outside secrets/ are not sops files"
    );

    // A secret encrypted to the shared rule's recipients (as sops would wrap its data key)
    // opens with any node's identity from keys/.
    let mut args = Vec::new();
    for r in &shared {
        args.extend(["-r", r.as_str()]);
    }
    let ciphertext = age(&args, b"token: s3cret\n").unwrap();
    let node3 = repo.join("keys/rk1-node3.age");
    assert_eq!(
        age(&["-d", "-i", node3.to_str().unwrap()], &ciphertext).unwrap(),
        b"token: s3cret\n"
    );

    // git (init ran `git add --all`) tracks no key.
    let tracked = Command::new("git")
        .args(["ls-files"])
        .current_dir(&repo)
        .output()
        .unwrap();
    let tracked = String::from_utf8(tracked.stdout).unwrap();
    assert!(tracked.contains(".sops.yaml"), "{tracked}");
    assert!(
        !tracked.contains("keys/"),
        "keys are never tracked:\n{tracked}"
    );
}

#[test]
fn check_passes_on_freshly_generated_repos() {
    let deploy_key = crate::support::DEPLOY_SSH_KEY;
    for flags in [
        vec!["--age-recipient", ADMIN_AGE_RECIPIENT],
        vec![
            "--secrets",
            "deployment-keys",
            "--deployment-key",
            deploy_key,
        ],
        vec!["--nodes", "6", "--age-recipient", ADMIN_AGE_RECIPIENT],
    ] {
        let (_home, repo) = init(&flags);
        let out = flakesmith_command()
            .args(["check", "-C"])
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flags:?}: check on a fresh repo:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn check_lists_ssh_host_key_nodes_until_their_recipients_are_recorded() {
    let (_home, repo) = init(&[
        "--age-recipient",
        ADMIN_AGE_RECIPIENT,
        "--node-recipients",
        "ssh-host-keys",
        "--nodes",
        "2",
    ]);
    assert!(
        !repo.join("keys").exists(),
        "ssh-host-keys mode makes no identities"
    );
    let run = || {
        let out = flakesmith_command()
            .args(["check", "-C"])
            .arg(&repo)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, stdout) = run();
    assert_eq!(code, Some(1));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains(".sops.yaml: node rk1-node2 has no age recipient"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deploy/post-deploy.sh --host rk1-node2"),
        "{stdout}"
    );

    // Recording the recipients (as the README says, from ssh-to-age) clears the findings.
    let mut text = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    for host in ["rk1-node1", "rk1-node2"] {
        let recipient = age::x25519::Identity::generate().to_public().to_string();
        text = text
            .replace(
                &format!("# - &{host} age1…   (not known yet: `flakesmith check` lists it)"),
                &format!("- &{host} {recipient}"),
            )
            .replace(&format!("# - *{host}\n"), &format!("- *{host}\n"));
    }
    std::fs::write(repo.join(".sops.yaml"), text).unwrap();
    assert_eq!(run(), (Some(0), String::new()));
}

/// Stand-ins for the tools deploy/post-deploy.sh calls on the network: `ssh-keyscan` answers
/// with a real ed25519 public key, `ssh` and `nixos-rebuild` record their arguments (and what
/// `ssh` reads on stdin) in order. ssh-keygen is the real one. What they cannot show: that a
/// node's sshd, sudo and sops-nix accept what the script sends.
pub(crate) struct StandIns {
    dir: tempfile::TempDir,
}

impl StandIns {
    const HOST_KEY_RECIPIENT: &str =
        "age1n2s3macghfa7zj0g7re4v42zd2gn2hkfcsaddwcsu9mmk4y2s5xs80uu30";

    pub(crate) fn without(self, tool: &str) -> Self {
        std::fs::remove_file(self.dir.path().join(tool)).unwrap();
        self
    }

    /// `ssh_exit_for_deployment_key`: how ssh as root with `-i` ends once nixos-rebuild ran.
    pub(crate) fn new(ssh_exit_for_deployment_key: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .unwrap();
        assert!(made.success());
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        let log = dir.path().join("log");
        let scripts = [
            ("ssh-keyscan", format!("#!/bin/sh\nfor a; do last=\"$a\"; done\necho \"$last {} {}\"\n", public[0], public[1])),
            (
                "ssh",
                format!(
                    "#!/bin/sh\necho \"ssh $*\" >> '{log}'\ncase \"$*\" in *'-i '*root@*) [ -e '{log}.switched' ] && exit {ssh_exit_for_deployment_key} ;; esac\ncase \"$*\" in *'cat >'*) cat > '{log}.stdin' ;; esac\nexit 0\n",
                    log = log.display()
                ),
            ),
            // After the switch root refuses the deployment key (ssh above).
            ("nixos-rebuild", format!("#!/bin/sh\necho \"nixos-rebuild $* NIX_SSHOPTS=$NIX_SSHOPTS\" >> '{log}'\ntouch '{log}.switched'\n", log = log.display())),
            // ssh-to-age's real conversion (ed25519 → X25519) is not shown: any valid recipient.
            ("ssh-to-age", format!("#!/bin/sh\ncat > /dev/null\necho {}\n", Self::HOST_KEY_RECIPIENT)),
            ("sops", format!("#!/bin/sh\necho \"sops $*\" >> '{}'\n", log.display())),
        ];
        for (name, text) in scripts {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    pub(crate) fn run(&self, repo: &Path, args: &[&str]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap()
        );
        Command::new(repo.join("deploy/post-deploy.sh"))
            .args(args)
            .env("PATH", path)
            .output()
            .unwrap()
    }

    pub(crate) fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stdin(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("log.stdin")).unwrap_or_default()
    }
}

/// post-deploy.sh's `--build-host` in a cross-building repository: the node, unless this
/// machine is an aarch64 Linux itself.
pub(crate) fn build_host(destination: &str) -> String {
    if std::env::consts::ARCH == "aarch64" {
        String::new()
    } else {
        format!(" --build-host {destination}")
    }
}

#[test]
fn post_deploy_pins_the_host_key_and_installs_the_identity_before_the_switch() {
    let (_home, repo) = init(&["--age-recipient", ADMIN_AGE_RECIPIENT, "--nodes", "2"]);
    let tools = StandIns::new(0);
    let out = tools.run(
        &repo,
        &["--host", "rk1-node2", "--address", "rk1-node2=10.9.9.2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = tools.log();
    let known_hosts = repo.join("deploy/known_hosts");
    let opts = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        known_hosts.display()
    );
    // As root (the image's login for the first deploy): no sudo, no admin password.
    assert_eq!(
        log,
        [
            format!("ssh {opts} -o BatchMode=yes root@10.9.9.2 true"),
            format!("ssh {opts} root@10.9.9.2 umask 077 && mkdir -p /var/lib/sops-nix && cat > /var/lib/sops-nix/key.txt.new && mv /var/lib/sops-nix/key.txt.new /var/lib/sops-nix/key.txt"),
            // Cross-built off aarch64: the node builds its own system.
            format!("nixos-rebuild switch --flake {}#rk1-node2 --target-host root@10.9.9.2{} NIX_SSHOPTS={opts}", repo.display(), build_host("root@10.9.9.2")),
            format!("ssh {opts} -o BatchMode=yes root@10.9.9.2 true"),
            format!("ssh {opts} -o BatchMode=yes admin@10.9.9.2 true"),
        ],
        "for rk1-node2 only"
    );
    assert_eq!(
        tools.stdin(),
        std::fs::read(repo.join("keys/rk1-node2.age")).unwrap(),
        "the identity travels on stdin, nowhere else"
    );
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(pinned.starts_with("10.9.9.2 ssh-ed25519 AAAA"), "{pinned}");

    // A second run keeps the pinned key rather than scanning again.
    assert!(tools
        .run(
            &repo,
            &[
                "--host",
                "rk1-node2",
                "--address",
                "rk1-node2=10.9.9.2",
                "--no-switch"
            ]
        )
        .status
        .success());
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), pinned);

    // Without its identity a node is refused, before anything is sent.
    std::fs::remove_file(repo.join("keys/rk1-node1.age")).unwrap();
    let out = tools.run(&repo, &["--host", "rk1-node1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keys/rk1-node1.age is missing"));
}

#[test]
fn post_deploy_swaps_the_deployment_key_for_the_admins_keys() {
    let deploy_key = crate::support::DEPLOY_SSH_KEY;
    let (home, repo) = init(&[
        "--secrets",
        "deployment-keys",
        "--deployment-key",
        deploy_key,
        "--nodes",
        "1",
    ]);
    let identity = home.path().join("deploy-key");
    std::fs::write(&identity, "stand-in private key\n").unwrap();

    let refused = StandIns::new(0).run(&repo, &[]);
    assert_eq!(refused.status.code(), Some(2), "--identity is required");

    // The deployment key still works after the switch: the script must fail.
    let still_open = StandIns::new(0);
    let out = still_open.run(&repo, &["--identity", identity.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("still accepts the deployment key"));

    let tools = StandIns::new(255);
    let out = tools.run(&repo, &["--identity", identity.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = tools.log();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(
        log[0].contains(&format!(
            "-i {} -o BatchMode=yes root@rk1-node1 true",
            identity.display()
        )),
        "first root's login with the deployment key is checked: {}",
        log[0]
    );
    assert!(
        log[1].starts_with(&format!(
            "nixos-rebuild switch --flake {}#rk1-node1 --target-host root@rk1-node1{} NIX_SSHOPTS=",
            repo.display(),
            build_host("root@rk1-node1")
        )),
        "{}",
        log[1]
    );
    assert!(
        log[1].contains(&format!("-o IdentitiesOnly=yes -i {}", identity.display())),
        "{}",
        log[1]
    );
    assert!(
        log[2].contains(&format!(
            "-i {} -o BatchMode=yes root@rk1-node1 true",
            identity.display()
        )),
        "then the deployment key is tried: {}",
        log[2]
    );
    assert!(
        log[3].ends_with("-o BatchMode=yes admin@rk1-node1 true"),
        "and the admin's key: {}",
        log[3]
    );
}

#[test]
fn looking_makes_no_identity() {
    let repo = tempfile::tempdir().unwrap();
    let one = project(|a| a.set_node_count(1, "n"));
    ensure_node_keys(repo.path(), &one.secrets, &one.nodes).unwrap();
    let grown = project(|a| a.set_node_count(2, "n"));
    let seen =
        flakesmith::secrets::existing_node_recipients(repo.path(), &grown.secrets, &grown.nodes)
            .unwrap();
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["n1"]);
    assert!(!identity_path(repo.path(), "n2").exists());
}

#[test]
fn post_deploy_records_an_ssh_host_key_recipient_and_re_encrypts() {
    let (_home, repo) = init(&[
        "--age-recipient",
        ADMIN_AGE_RECIPIENT,
        "--node-recipients",
        "ssh-host-keys",
        "--nodes",
        "2",
    ]);
    let secret = repo.join("secrets/wifi.yaml");
    std::fs::write(
        &secret,
        "psk: ENC[AES256_GCM,data:eA==,iv:aQ==,tag:dA==,type:str]\nsops:\n    mac: ENC[x]\n",
    )
    .unwrap();

    // Without sops, the recipient is recorded but nothing is switched.
    let tools = StandIns::new(0).without("sops");
    let out = tools.run(&repo, &["--host", "rk1-node1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sops is not on PATH"));
    assert!(
        !tools.log().iter().any(|l| l.starts_with("nixos-rebuild")),
        "{:?}",
        tools.log()
    );

    let sops_yaml = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    let recorded = anchors_of(&sops_yaml);
    assert_eq!(recorded.anchors["rk1-node1"], StandIns::HOST_KEY_RECIPIENT);
    assert!(
        recorded.aliases.contains("rk1-node1") && !recorded.aliases.contains("rk1-node2"),
        "{sops_yaml}"
    );
    assert!(recipients_for(&sops_yaml, "secrets/secrets.yaml")
        .contains(&StandIns::HOST_KEY_RECIPIENT.to_owned()));

    // With sops, a second run re-encrypts the sops files (not the placeholder), then switches.
    let tools = StandIns::new(0);
    let out = tools.run(&repo, &["--host", "rk1-node1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (ssh calls left out: post_deploy_pins_the_host_key_and_installs_the_identity_before_the_switch)
    let log: Vec<String> = tools
        .log()
        .into_iter()
        .filter(|l| !l.starts_with("ssh "))
        .collect();
    assert_eq!(log.len(), 2, "{log:#?}");
    assert_eq!(
        log[0],
        format!("sops updatekeys --yes {}", secret.display())
    );
    assert!(log[1].starts_with("nixos-rebuild switch"), "{}", log[1]);
    assert_eq!(
        std::fs::read_to_string(repo.join(".sops.yaml")).unwrap(),
        sops_yaml,
        "recorded once"
    );

    // check now misses only the node that has not booted.
    let out = flakesmith_command()
        .args(["check", "-C"])
        .arg(&repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("node rk1-node2 has no age recipient"),
        "{stdout}"
    );
}

#[test]
fn post_deploy_dry_run_prints_every_step_and_runs_nothing() {
    let (_home, repo) = init(&["--age-recipient", ADMIN_AGE_RECIPIENT, "--nodes", "2"]);
    let tools = StandIns::new(0);
    let out = tools.run(&repo, &["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        8,
        "four steps for each of two nodes:\n{stdout}"
    );
    assert_eq!(
        lines[0],
        "ssh-keyscan -t ed25519 rk1-node1 >> deploy/known_hosts"
    );
    // The ssh lines as they run: with the pinned known_hosts and strict checking.
    let known_hosts = repo.join("deploy/known_hosts");
    let opts = format!(
        "ssh -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        known_hosts.display()
    );
    assert_eq!(
        lines[1],
        format!("{opts} -o BatchMode=yes root@rk1-node1 true ")
    );
    assert!(
        lines[2].starts_with(&format!("{opts} root@rk1-node1 umask\\ 077"))
            && lines[2].ends_with("< keys/rk1-node1.age"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("nixos-rebuild switch --flake")
            && lines[3].contains("#rk1-node1 --target-host root@rk1-node1"),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains("rk1-node2"));
    assert!(
        tools.log().is_empty(),
        "a dry run calls nothing: {:?}",
        tools.log()
    );
    assert!(!repo.join("deploy/known_hosts").exists());
}

#[test]
fn a_live_iso_is_offered_no_host_key_recipient() {
    // iso-image.nix makes / a tmpfs: the ISO's host key changes at every boot, so a recipient
    // taken from it would be useless. The installed raw-EFI machine keeps its key.
    use flakesmith::model::Platform;
    for raw_efi in [false, true] {
        let mut answers = crate::support::Project::default()
            .with_sops()
            .answers()
            .clone();
        answers.layout = flakesmith::model::Layout::MultiCloud;
        answers.platforms = vec![Platform::GenericX86_64];
        answers.nodes.clear();
        answers.boards.clear();
        answers.generic_x86_64.raw_efi = raw_efi;
        let tree = crate::support::Project::from_answers(answers).render();
        let sops_yaml = tree.get(".sops.yaml").unwrap().as_text().unwrap();
        assert!(!sops_yaml.contains("- &generic-x86_64 "), "{sops_yaml}");
        assert_eq!(
            sops_yaml.contains("- &generic-x86_64-efi age1"),
            raw_efi,
            "{sops_yaml}"
        );
    }
}

#[test]
fn an_emulated_repository_switches_without_a_build_host() {
    // Emulated builds (binfmt) build aarch64 on this machine; only a cross-building repository
    // has the node build its own system (post_deploy_pins_the_host_key_… shows that side).
    let (home, repo) = init(&[
        "--age-recipient",
        ADMIN_AGE_RECIPIENT,
        "--nodes",
        "1",
        "--foreign",
        "emulated",
    ]);
    let _ = home;
    let tools = StandIns::new(0);
    let out = tools.run(&repo, &["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("nixos-rebuild switch") && !stdout.contains("--build-host"),
        "{stdout}"
    );
}
