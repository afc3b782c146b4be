//! The deploy journey: deploy/rk1-deploy.sh (and the deploy/post-deploy.sh it runs) against real
//! OpenSSH servers standing in for the nodes, in every secrets and password mode.
//!
//! Each node is a real `sshd` on a loopback address (port 22) in a network namespace the test
//! makes (`unshare --net --mount`, tests/fixtures/journey/in-netns), with key-only logins as the
//! generated common.nix configures them, PAM on (as on NixOS, where PAM's account step is what
//! stops a login whose password has expired), and two real accounts: root, and an admin account
//! the test creates (useradd). The ssh client is real, with the admin's key in a real ssh-agent
//! (sops) or the deployment key given with --identity. Host keys are real and pinned by the script
//! into deploy/known_hosts, then checked strictly.
//!
//! Stand-ins, for what cannot be here: `tpi` (no BMC; it records), `nixos-rebuild` (no nixpkgs:
//! it builds nothing, but reaches the build and target hosts over real SSH with NIX_SSHOPTS and
//! runs a stand-in activation that installs the configuration's SSH logins), `ssh-to-age` and
//! `sops` (not installable here). Which logins an image and a configuration give is taken from
//! the modes here; nix_eval.rs shows the generated flake gives exactly those. What this cannot
//! show: a node booting, a real activation, sops-nix decrypting, a first boot's own `chage`
//! (the test expires the password with `chage -d 0`, as expire-temporary-password does).

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::Mutex,
};

use crate::support::{fixtures, run_ok, Project, TestRepo, TEMPORARY_PASSWORD_HASH};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Secrets {
    SopsAgeIdentities,
    SopsHostKeys,
    DeploymentKey,
}

/// useradd and userdel lock /etc/passwd: one at a time across the parallel tests.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A user account on this machine, removed again when dropped.
struct Account {
    name: String,
}

impl Account {
    fn new(name: &str, home: &Path) -> Self {
        let _lock = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        // A run that was killed may have left it behind.
        let _ = Command::new("userdel").arg(name).output();
        run_ok(
            Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", "--home-dir"])
                .arg(home)
                .arg(name),
        );
        Account {
            name: name.to_owned(),
        }
    }

    /// The temporary password, expired as expire-temporary-password does at first boot.
    fn expire_temporary_password(&self) {
        run_ok(Command::new("usermod").args(["-p", TEMPORARY_PASSWORD_HASH, &self.name]));
        run_ok(Command::new("chage").args(["-d", "0", &self.name]));
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _lock = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A real ssh-agent holding the admin's key, as on the admin's machine.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn new(dir: &Path, key: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        // The socket file appears at bind(), before the agent listens: wait until it answers
        // (`ssh-add -l` exits 2 only when it cannot reach an agent).
        for _ in 0..1200 {
            let listed = Command::new("ssh-add")
                .arg("-l")
                .env("SSH_AUTH_SOCK", &socket)
                .output()
                .expect("ssh-add (openssh-client)");
            if listed.status.code() != Some(2) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        run_ok(
            Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &socket),
        );
        Agent { child, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> String {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "journey", "-f"])
            .arg(path),
    );
    fs_err::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

const HOSTS: [&str; 2] = ["rk1-node1", "rk1-node2"];
const ADDRESSES: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

struct Journey {
    dir: tempfile::TempDir,
    repo: TestRepo,
    admin: Account,
    agent: Agent,
    secrets: Secrets,
    deploy_key: PathBuf,
    bin: PathBuf,
}

impl Journey {
    fn new(secrets: Secrets, temporary_password: bool, admin: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("flakesmith-journey-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let admin_key = root.join("admin_key");
        let admin_public = keygen(&admin_key);
        let deploy_key = root.join("deploy_key");
        let deploy_public = keygen(&deploy_key);

        let mut project = Project::default().with_nodes(2);
        project = match secrets {
            Secrets::SopsAgeIdentities => project.with_sops(),
            Secrets::SopsHostKeys => project.with_sops().with_ssh_host_key_recipients(),
            Secrets::DeploymentKey => project.with_deployment_key(),
        };
        if temporary_password {
            project = project.with_temporary_password();
        }
        let mut answers = project.answers().clone();
        answers.admin_user = admin.to_owned();
        answers.ssh_keys = vec![admin_public.clone()];
        if secrets == Secrets::DeploymentKey {
            answers.secrets.deployment_key = Some(deploy_public.clone());
        }
        let repo = TestRepo::from_tree(&Project::from_answers(answers).render());
        for host in HOSTS {
            repo.write(
                &format!("keys/{host}.age"),
                format!("AGE-SECRET-KEY-1{host}\n"),
            );
        }
        super::deploy::built_images(&repo, &HOSTS);

        let account = Account::new(admin, &root.join("home").join(admin));
        if temporary_password {
            account.expire_temporary_password();
        }

        // The SSH logins of the image and of the configuration post-deploy switches to.
        let (image_root, image_admin) = match secrets {
            Secrets::DeploymentKey => (Some(&deploy_public), None),
            _ => (Some(&admin_public), Some(&admin_public)),
        };
        for address in ADDRESSES {
            let node = root.join("nodes").join(address);
            for sub in ["live", "config"] {
                fs_err::create_dir_all(node.join(sub)).unwrap();
            }
            keygen(&node.join("ssh_host_ed25519_key"));
            if let Some(key) = image_root {
                fs_err::write(node.join("live/root"), format!("{key}\n")).unwrap();
            }
            if let Some(key) = image_admin {
                fs_err::write(node.join(format!("live/{admin}")), format!("{key}\n")).unwrap();
            }
            fs_err::write(
                node.join(format!("config/{admin}")),
                format!("{admin_public}\n"),
            )
            .unwrap();
            fs_err::write(
                node.join("sshd_config"),
                format!(
                    "ListenAddress {address}:22\n\
                     HostKey {dir}/ssh_host_ed25519_key\n\
                     PidFile none\n\
                     AuthorizedKeysFile {dir}/live/%u\n\
                     # The test's directories are under /tmp, which StrictModes would refuse.\n\
                     StrictModes no\n\
                     # As on NixOS: PAM's account step stops a login whose password has expired.\n\
                     UsePAM yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowUsers root {admin}\n",
                    dir = node.display()
                ),
            )
            .unwrap();
        }

        // Stand-ins for what cannot be here, and nothing else (the real ssh comes after them).
        let bin = root.join("bin");
        fs_err::create_dir_all(&bin).unwrap();
        let mut standins = vec![
            fixtures().join("standins/tpi"),
            fixtures().join("standins/_record.sh"),
            fixtures().join("journey/nixos-rebuild"),
        ];
        if secrets == Secrets::SopsHostKeys {
            standins.push(fixtures().join("journey/ssh-to-age"));
            standins.push(fixtures().join("journey/sops"));
        }
        for standin in standins {
            std::os::unix::fs::symlink(&standin, bin.join(standin.file_name().unwrap())).unwrap();
        }

        let agent = Agent::new(root, &admin_key);
        Journey {
            dir,
            repo,
            admin: account,
            agent,
            secrets,
            deploy_key,
            bin,
        }
    }

    fn nodes(&self) -> PathBuf {
        self.dir.path().join("nodes")
    }

    fn node(&self, address: &str) -> PathBuf {
        self.nodes().join(address)
    }

    /// A command run in a fresh network namespace where the nodes' sshd listen.
    fn in_netns(&self, program: &str, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap());
        Command::new("unshare")
            .args(["--net", "--mount", "--fork", "--"])
            .arg(fixtures().join("journey/in-netns"))
            .arg(self.nodes())
            .arg(program)
            .args(args)
            .current_dir(self.repo.path())
            .env("PATH", path)
            .env("SSH_AUTH_SOCK", &self.agent.socket)
            .env("JOURNEY_NODES", self.nodes())
            .env("STANDIN_LOG", self.dir.path().join("standins.log"))
            .env("TPI_USERNAME", "root")
            .env("TPI_PASSWORD", "bmc-password")
            .env_remove("STANDIN_FAIL")
            .output()
            .expect("unshare (util-linux)")
    }

    fn identity_args(&self) -> Vec<String> {
        match self.secrets {
            Secrets::DeploymentKey => {
                vec!["--identity".into(), self.deploy_key.display().to_string()]
            }
            _ => vec![],
        }
    }

    fn script(&self, script: &str, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(self.identity_args());
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.in_netns(&self.repo.path().join(script).display().to_string(), &all)
    }

    fn deploy(&self) -> Output {
        // The sshds answer at once; the margin is for a loaded machine, where one probe's
        // ConnectTimeout=10 can pass before the banner (a deploy then failed once in a full run).
        let mut args = vec!["--timeout".to_owned(), "120".to_owned()];
        for (host, address) in HOSTS.iter().zip(ADDRESSES) {
            args.push("--address".into());
            args.push(format!("{host}={address}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.script("deploy/rk1-deploy.sh", &args)
    }

    /// ssh as the admin with the admin's key, against the pinned host keys.
    fn ssh_admin(&self, address: &str) -> Output {
        let known = format!(
            "UserKnownHostsFile={}",
            self.repo.path().join("deploy/known_hosts").display()
        );
        self.in_netns(
            "ssh",
            &[
                "-o",
                &known,
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                &format!("{}@{address}", self.admin.name),
                "true",
            ],
        )
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The journey in one mode: deploy both nodes; then what the admin and a second run see.
fn journey(secrets: Secrets, temporary_password: bool, admin: &str) {
    let j = Journey::new(secrets, temporary_password, admin);
    let out = j.deploy();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Deployed: rk1-node1 rk1-node2"), "{all}");

    // Host keys: the script pinned each node's real key, and only those.
    let pinned = fs_err::read_to_string(j.repo.path().join("deploy/known_hosts")).unwrap();
    let mut want = String::new();
    for address in ADDRESSES {
        let public =
            fs_err::read_to_string(j.node(address).join("ssh_host_ed25519_key.pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        want.push_str(&format!("{address} {}\n", key.join(" ")));
    }
    assert_eq!(pinned, want);

    for (host, address) in HOSTS.iter().zip(ADDRESSES) {
        let node = j.node(address);
        // The switch ran as root (no sudo, no admin password), built on the node itself when
        // this machine cross-builds.
        let activations = fs_err::read_to_string(node.join("activations")).unwrap();
        let build = if std::env::consts::ARCH == "aarch64" {
            String::new()
        } else {
            format!("build {host} as root\n")
        };
        assert_eq!(
            activations,
            format!("{build}switch {host} as root\n"),
            "{all}"
        );
        if secrets == Secrets::SopsAgeIdentities {
            assert_eq!(
                fs_err::read_to_string(node.join("key-at-activation")).unwrap(),
                format!("AGE-SECRET-KEY-1{host}\n"),
                "the node's identity was in place when the configuration activated"
            );
            assert_eq!(
                fs_err::read_to_string(node.join("key-at-activation.mode")).unwrap(),
                "600 root\n"
            );
        } else {
            assert!(!node.join("key-at-activation").exists());
        }
    }
    if secrets == Secrets::SopsHostKeys {
        let sops_yaml = fs_err::read_to_string(j.repo.path().join(".sops.yaml")).unwrap();
        for host in HOSTS {
            assert!(
                sops_yaml.contains(&format!("- &{host} age1")),
                "{sops_yaml}"
            );
        }
    }

    // What the admin sees afterwards: root refused, the admin's key accepted; with the expired
    // temporary password the script says what to do, and ssh without a terminal really fails.
    let admin_ssh = j.ssh_admin(ADDRESSES[0]);
    if temporary_password {
        assert!(
            stderr.contains(&format!(
                "{admin}'s key accepted; {admin}'s temporary password has expired"
            )) && stderr.contains(&format!("ssh {admin}@127.0.0.2")),
            "{all}"
        );
        assert!(!admin_ssh.status.success());
        assert!(
            String::from_utf8_lossy(&admin_ssh.stderr)
                .contains("Password change required but no TTY available"),
            "the test's sshd stops an expired password as a node's does: {}",
            text(&admin_ssh)
        );
    } else {
        assert!(
            stderr.contains(&format!("root refused, {admin}'s key accepted")),
            "{all}"
        );
        assert!(admin_ssh.status.success(), "{}", text(&admin_ssh));
    }

    // Run again on a deployed node: root is refused now, and the script says what to do.
    let again = j.script(
        "deploy/post-deploy.sh",
        &["--host", "rk1-node1", "--address", "rk1-node1=127.0.0.2"],
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again_err.contains("root@127.0.0.2 refuses")
            && again_err.contains(&format!("--target-host {admin}@127.0.0.2 --sudo")),
        "{}",
        text(&again)
    );

    // A node whose host key changed is refused against the pinned key.
    let node = j.node(ADDRESSES[0]);
    fs_err::remove_file(node.join("ssh_host_ed25519_key")).unwrap();
    fs_err::remove_file(node.join("ssh_host_ed25519_key.pub")).unwrap();
    keygen(&node.join("ssh_host_ed25519_key"));
    let changed = j.script(
        "deploy/post-deploy.sh",
        &["--host", "rk1-node1", "--address", "rk1-node1=127.0.0.2"],
    );
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
    assert!(
        String::from_utf8_lossy(&changed.stderr)
            .contains("127.0.0.2 does not show the host key pinned in deploy/known_hosts"),
        "{}",
        text(&changed)
    );
    assert_eq!(
        fs_err::read_to_string(j.repo.path().join("deploy/known_hosts")).unwrap(),
        pinned,
        "the pinned keys are kept"
    );
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_sops_age_keys() {
    journey(Secrets::SopsAgeIdentities, false, "fsjage0");
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_sops_age_keys_expired_temporary_password() {
    journey(Secrets::SopsAgeIdentities, true, "fsjage1");
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_sops_host_keys() {
    journey(Secrets::SopsHostKeys, false, "fsjhost0");
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_sops_host_keys_expired_temporary_password() {
    journey(Secrets::SopsHostKeys, true, "fsjhost1");
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_deployment_keys() {
    journey(Secrets::DeploymentKey, false, "fsjdep0");
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "needs root (useradd, unshare --net --mount, sshd on port 22)"
)]
fn deploy_journey_deployment_keys_expired_temporary_password() {
    journey(Secrets::DeploymentKey, true, "fsjdep1");
}
