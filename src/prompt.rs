//! The only place that reads the terminal: turns unanswered questions into answers.

use std::collections::BTreeSet;

use anyhow::Result;
use dialoguer::{theme::ColorfulTheme, Confirm, Input, MultiSelect, Password, Select};

use crate::{
    cli::init_flag,
    error::UsageError,
    model::{
        answers::{AwsImageFormat, SecretsMode, DEFAULT_HOST_PREFIX, MAX_NODES},
        check_host_or_ip, AgeRecipient, Answers, FlakeUrl, Hostname, Layout, Module, NixpkgsBranch,
        PasswordHash, Platform, ProjectName, UserName,
    },
};

/// One question of `init`. Answers given by flags or a file are not asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Question {
    Name,
    Layout,
    Platforms,
    Nodes,
    BmcHosts,
    AdminUser,
    SshKeys,
    TemporaryPassword,
    Secrets,
    NixpkgsBranch,
    Bootloader,
    Monitoring,
    AwsImageFormat,
    RawEfi,
    Dots,
}

impl Question {
    pub const ALL: [Question; 15] = [
        Question::Name,
        Question::Layout,
        Question::Platforms,
        Question::Nodes,
        Question::BmcHosts,
        Question::AdminUser,
        Question::SshKeys,
        Question::TemporaryPassword,
        Question::Secrets,
        Question::NixpkgsBranch,
        Question::Bootloader,
        Question::Monitoring,
        Question::AwsImageFormat,
        Question::RawEfi,
        Question::Dots,
    ];

    /// The flags that answer it (`init`'s argument ids), the first the usual one.
    fn flag_ids(self) -> &'static [&'static str] {
        match self {
            Question::Name => &["name"],
            Question::Layout => &["layout"],
            Question::Platforms => &["platforms"],
            Question::Nodes => &["nodes", "hosts"],
            Question::BmcHosts => &["bmc_hosts"],
            Question::AdminUser => &["admin_user"],
            Question::SshKeys => &["ssh_keys"],
            Question::Secrets => &["secrets"],
            Question::NixpkgsBranch => &["nixpkgs_branch"],
            Question::Bootloader => &["bootloader_blob", "no_bootloader_blob"],
            Question::Dots => &["dots", "no_dots"],
            Question::TemporaryPassword => &["temporary_password_hash"],
            Question::Monitoring => &["no_node_exporter", "open_exporter_port"],
            Question::AwsImageFormat => &["aws_image_format"],
            Question::RawEfi => &["raw_efi"],
        }
    }

    /// The flag that answers it, for the "missing answers" message: `--nodes (or --hosts)`.
    pub fn flag(self) -> String {
        let mut flags = self.flag_ids().iter().map(|id| init_flag(id));
        let first = flags.next().expect("every question has a flag");
        flags.fold(first, |text, other| format!("{text} (or {other})"))
    }

    /// Asked in a terminal, but never missing without one: the default is a complete answer,
    /// and a flag that turns an option on cannot say "off".
    fn has_safe_default(self) -> bool {
        matches!(
            self,
            Question::TemporaryPassword
                | Question::Monitoring
                | Question::AwsImageFormat
                | Question::RawEfi
        )
    }

    /// Whether the question means anything for these answers so far.
    fn applies(self, answers: &Answers) -> bool {
        let rk1 = answers.has_slots();
        match self {
            Question::Platforms => answers.layout == Layout::MultiCloud,
            Question::Nodes | Question::BmcHosts | Question::Bootloader => rk1,
            // What only the multi-cloud templates configure, per chosen platform.
            Question::Monitoring => answers.layout == Layout::MultiCloud,
            Question::AwsImageFormat => {
                answers.layout == Layout::MultiCloud && answers.platforms.contains(&Platform::Aws)
            }
            Question::RawEfi => {
                answers.layout == Layout::MultiCloud
                    && answers.platforms.contains(&Platform::GenericX86_64)
            }
            _ => true,
        }
    }
}

/// How unanswered questions get their answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// Ask in the terminal, offering the current answer as the default.
    Terminal,
    /// Keep the defaults (`--yes`, `--answers`).
    Defaults,
    /// No terminal and no `--yes`: an unanswered question is an error, never a hang.
    Refuse,
}

/// Fills in every applicable question that is not in `given`.
pub fn complete(answers: &mut Answers, given: &BTreeSet<Question>, asking: Asking) -> Result<()> {
    match asking {
        Asking::Defaults => {
            // The prompt's default, which the book promises too: every platform but a board
            // of one make, which is opted into.
            if !given.contains(&Question::Platforms)
                && Question::Platforms.applies(answers)
                && answers.platforms.is_empty()
            {
                answers.platforms = Platform::defaults();
            }
            Ok(())
        }
        Asking::Refuse => {
            let missing: Vec<String> = Question::ALL
                .into_iter()
                .filter(|q| !given.contains(q) && !q.has_safe_default() && q.applies(answers))
                .map(Question::flag)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(UsageError::new(format!(
                    "stdin is not a terminal, so nothing can be asked; missing answers: {}; give them as flags, use {} FILE, or {} to take the defaults",
                    missing.join(", "),
                    init_flag("answers"),
                    init_flag("yes"),
                ))
                .into())
            }
        }
        Asking::Terminal => {
            let theme = ColorfulTheme::default();
            for question in Question::ALL {
                // Applicability is checked as we go: the layout answer decides later questions.
                if !given.contains(&question) && question.applies(answers) {
                    ask(question, answers, &theme)?;
                }
            }
            Ok(())
        }
    }
}

fn ask(question: Question, a: &mut Answers, theme: &ColorfulTheme) -> Result<()> {
    match question {
        Question::Name => {
            let name: String = Input::with_theme(theme)
                .with_prompt("Project name")
                .default(a.name.clone())
                .validate_with(|s: &String| ProjectName::parse(s.trim()).map(drop))
                .interact_text()?;
            a.name = name.trim().to_owned();
        }
        Question::Layout => {
            let layouts = [Layout::Rk1Cluster, Layout::MultiCloud];
            let items = [
                "rk1-cluster: Turing RK1 nodes on Turing Pi 2 boards",
                "multi-cloud: AWS, GCP, RK1 and generic images from one flake",
            ];
            let current = layouts.iter().position(|l| *l == a.layout).unwrap_or(0);
            let choice = Select::with_theme(theme)
                .with_prompt("Layout")
                .items(items)
                .default(current)
                .interact()?;
            a.layout = layouts[choice];
        }
        Question::Platforms => {
            let defaults = Platform::defaults();
            let checked: Vec<bool> = Platform::ALL
                .iter()
                .map(|p| {
                    if a.platforms.is_empty() {
                        defaults.contains(p)
                    } else {
                        a.platforms.contains(p)
                    }
                })
                .collect();
            let labels: Vec<String> = Platform::ALL
                .iter()
                .map(|p| format!("{}: {}", p.name(), p.describe()))
                .collect();
            loop {
                let chosen = MultiSelect::with_theme(theme)
                    .with_prompt("Platforms (space to toggle, enter to accept)")
                    .items(&labels)
                    .defaults(&checked)
                    .interact()?;
                if !chosen.is_empty() {
                    a.platforms = chosen.into_iter().map(|i| Platform::ALL[i]).collect();
                    break;
                }
                eprintln!("Choose at least one platform.");
            }
        }
        Question::Nodes => {
            let count: usize = Input::with_theme(theme)
                .with_prompt("Number of Turing Pi 2 nodes")
                .default(a.nodes.len().max(1))
                .validate_with(|n: &usize| -> Result<(), String> {
                    if (1..=MAX_NODES).contains(n) {
                        Ok(())
                    } else {
                        Err(format!("between 1 and {MAX_NODES}"))
                    }
                })
                .interact_text()?;
            let defaults: Vec<String> = (1..=count)
                .map(|i| {
                    a.nodes
                        .get(i - 1)
                        .map(|n| n.host.clone())
                        .unwrap_or_else(|| format!("{DEFAULT_HOST_PREFIX}{i}"))
                })
                .collect();
            let hosts: String = Input::with_theme(theme)
                .with_prompt("Host names, in slot order (comma-separated)")
                .default(defaults.join(","))
                .validate_with(move |s: &String| -> Result<(), String> {
                    let hosts = split_list(s);
                    if hosts.len() != count {
                        return Err(format!("give {count} names, not {}", hosts.len()));
                    }
                    for h in &hosts {
                        Hostname::parse(h)?;
                    }
                    let unique: BTreeSet<_> = hosts.iter().collect();
                    if unique.len() != hosts.len() {
                        return Err("host names must be unique".into());
                    }
                    Ok(())
                })
                .interact_text()?;
            let modules: Vec<Module> = a.nodes.iter().map(|n| n.module).collect();
            a.set_hosts(split_list(&hosts));
            let defaults: Vec<&str> = (0..count)
                .map(|i| modules.get(i).copied().unwrap_or_default().name())
                .collect();
            // What sits in each slot, checked as flakesmith.yaml's nodes[].module is.
            let kinds: String = Input::with_theme(theme)
                .with_prompt(format!(
                    "Compute module of each node, in slot order ({}; comma-separated)",
                    Module::ALL.map(Module::name).join(" or ")
                ))
                .default(defaults.join(","))
                .validate_with(move |s: &String| -> Result<(), String> {
                    let kinds = split_list(s);
                    if kinds.len() != count {
                        return Err(format!("give {count} modules, not {}", kinds.len()));
                    }
                    kinds.iter().try_for_each(|k| Module::parse(k).map(drop))
                })
                .interact_text()?;
            for (node, kind) in a.nodes.iter_mut().zip(split_list(&kinds)) {
                node.module = Module::parse(&kind).map_err(UsageError::new)?;
            }
        }
        Question::BmcHosts => {
            let boards = a.boards.len();
            for (i, board) in a.boards.iter_mut().enumerate() {
                let slots: Vec<String> = a
                    .nodes
                    .iter()
                    .filter(|n| n.board == board.name)
                    .map(|n| n.host.clone())
                    .collect();
                let host: String = Input::with_theme(theme)
                    .with_prompt(format!(
                        "Turing Pi BMC host of board {} of {boards} ({})",
                        i + 1,
                        slots.join(", ")
                    ))
                    .default(board.bmc_host.clone())
                    .validate_with(|s: &String| check_host_or_ip(s.trim()))
                    .interact_text()?;
                board.bmc_host = host.trim().to_owned();
            }
        }
        Question::AdminUser => {
            let user: String = Input::with_theme(theme)
                .with_prompt("Admin user")
                .default(a.admin_user.clone())
                .validate_with(|s: &String| UserName::parse(s.trim()).map(drop))
                .interact_text()?;
            a.admin_user = user.trim().to_owned();
        }
        Question::SshKeys => {
            let default = a.ssh_keys.join(", ");
            let text: String = Input::with_theme(theme)
                .with_prompt("SSH public key(s) for the admin: paste keys or give .pub paths (comma-separated)")
                .default(default)
                .allow_empty(true)
                .validate_with(|s: &String| -> Result<(), String> {
                    crate::answer_files::read_ssh_keys(&split_list(s)).map(|_| ()).map_err(|e| format!("{e:#}"))
                })
                .interact_text()?;
            a.ssh_keys = crate::answer_files::read_ssh_keys(&split_list(&text))?;
        }
        Question::Secrets => {
            let modes = [SecretsMode::Sops, SecretsMode::DeploymentKeys];
            let items = [
                "sops-nix: secrets encrypted in git to age keys (recommended)",
                "deployment keys: a first-access key, replaced after deploy",
            ];
            let current = modes.iter().position(|m| *m == a.secrets.mode).unwrap_or(0);
            a.secrets.mode = modes[Select::with_theme(theme)
                .with_prompt("Secrets")
                .items(items)
                .default(current)
                .interact()?];
            match a.secrets.mode {
                SecretsMode::Sops => {
                    let text: String = Input::with_theme(theme)
                        .with_prompt(
                            "Admin age recipients (age1…, comma-separated; empty: add later)",
                        )
                        .default(a.secrets.admin_age_recipients.join(","))
                        .allow_empty(true)
                        .validate_with(|s: &String| -> Result<(), String> {
                            split_list(s)
                                .iter()
                                .try_for_each(|r| AgeRecipient::parse(r).map(|_| ()))
                        })
                        .interact_text()?;
                    a.secrets.admin_age_recipients = split_list(&text);
                    a.secrets.deployment_key = None;
                }
                SecretsMode::DeploymentKeys => {
                    let text: String = Input::with_theme(theme)
                        .with_prompt(
                            "Deployment public key (key or .pub path; empty: use your admin key)",
                        )
                        .default(a.secrets.deployment_key.clone().unwrap_or_default())
                        .allow_empty(true)
                        .validate_with(|s: &String| -> Result<(), String> {
                            if s.trim().is_empty() {
                                return Ok(());
                            }
                            crate::answer_files::read_ssh_keys(std::slice::from_ref(s))
                                .map(|_| ())
                                .map_err(|e| format!("{e:#}"))
                        })
                        .interact_text()?;
                    a.secrets.deployment_key = crate::answer_files::read_ssh_keys(&[text])?
                        .into_iter()
                        .next();
                }
            }
        }
        Question::NixpkgsBranch => {
            let branch: String = Input::with_theme(theme)
                .with_prompt("nixpkgs branch")
                .default(a.nixpkgs_branch.clone())
                .validate_with(|s: &String| NixpkgsBranch::parse(s.trim()).map(drop))
                .interact_text()?;
            a.nixpkgs_branch = branch.trim().to_owned();
        }
        Question::Bootloader => {
            let items = [
                "nixpkgs' ubootTuringRK1, built from source (recommended)",
                "an extracted bootloader blob (u-boot-rockchip.bin)",
            ];
            let current = usize::from(a.bootloader.blob.is_some());
            let choice = Select::with_theme(theme)
                .with_prompt("RK1 bootloader")
                .items(items)
                .default(current)
                .interact()?;
            a.bootloader.blob = if choice == 0 {
                None
            } else {
                let path: String = Input::with_theme(theme)
                    .with_prompt("Path to the bootloader blob")
                    .default(a.bootloader.blob.clone().unwrap_or_default())
                    .validate_with(|s: &String| crate::answer_files::read_blob(s.trim()).map(drop))
                    .interact_text()?;
                Some(path.trim().to_owned())
            };
        }
        Question::TemporaryPassword => {
            let wanted = Confirm::with_theme(theme)
                .with_prompt("Temporary console password for the admin (expired at first boot, so the first login sets a new one)?")
                .default(a.temporary_password_hash.is_some())
                .wait_for_newline(true)
                .interact()?;
            a.temporary_password_hash = if wanted {
                Some(ask_password_hash(a, theme)?)
            } else {
                None
            };
        }
        Question::Monitoring => {
            a.monitoring.node_exporter = Confirm::with_theme(theme)
                .with_prompt("Prometheus node exporter on every machine (port 9100)?")
                .default(a.monitoring.node_exporter)
                .wait_for_newline(true)
                .interact()?;
            a.monitoring.open_port = a.monitoring.node_exporter
                && Confirm::with_theme(theme)
                    .with_prompt("Open port 9100 in the machines' firewall (no: scrape through SSH or a VPN)?")
                    .default(a.monitoring.open_port)
                    .wait_for_newline(true)
                    .interact()?;
        }
        Question::AwsImageFormat => {
            let formats = [AwsImageFormat::Vhd, AwsImageFormat::Raw];
            let items = [
                "vhd: sparse, the upload is about the size of the data (recommended)",
                "raw: the whole disk is uploaded",
            ];
            let current = formats
                .iter()
                .position(|f| *f == a.aws.image_format)
                .unwrap_or(0);
            a.aws.image_format = formats[Select::with_theme(theme)
                .with_prompt("AWS image format")
                .items(items)
                .default(current)
                .interact()?];
        }
        Question::RawEfi => {
            a.generic_x86_64.raw_efi = Confirm::with_theme(theme)
                .with_prompt("generic-x86_64: also a raw UEFI disk image to write onto a server's disk (besides the ISO)?")
                .default(a.generic_x86_64.raw_efi)
                .wait_for_newline(true)
                .interact()?;
        }
        Question::Dots => {
            let text: String = Input::with_theme(theme)
                .with_prompt(
                    "Your dots flake (its nixosModules.default is imported; empty for none)",
                )
                .default(a.dots.clone().unwrap_or_default())
                .allow_empty(true)
                .validate_with(|s: &String| match s.trim() {
                    "" => Ok(()),
                    url => FlakeUrl::parse(url).map(drop),
                })
                .interact_text()?;
            a.dots = Some(text.trim().to_owned()).filter(|s| !s.is_empty());
        }
    }
    Ok(())
}

/// The temporary password's crypt(3) hash: the password typed twice and hashed by
/// `openssl passwd -6` when openssl is installed (the password itself is never stored), or else
/// a hash made elsewhere.
fn ask_password_hash(a: &Answers, theme: &ColorfulTheme) -> Result<String> {
    if openssl_available() {
        let password = Password::with_theme(theme)
            .with_prompt("Temporary password")
            .with_confirmation("Repeat it", "The two entries differ.")
            .interact()?;
        return hash_with_openssl(&password);
    }
    let hash: String = Input::with_theme(theme)
        .with_prompt("Hash of the temporary password (openssl is not installed: give the output of `mkpasswd -m yescrypt` or `openssl passwd -6`)")
        .default(a.temporary_password_hash.clone().unwrap_or_default())
        .validate_with(|s: &String| PasswordHash::parse(s.trim()).map(drop))
        .interact_text()?;
    Ok(hash.trim().to_owned())
}

fn openssl_available() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// SHA-512 crypt, the password passed on stdin (never on a command line others can read).
fn hash_with_openssl(password: &str) -> Result<String> {
    use anyhow::Context;
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl passwd")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "openssl passwd -6 failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let hash = String::from_utf8(out.stdout)?.trim().to_owned();
    PasswordHash::parse(&hash)
        .map(|h| h.to_string())
        .map_err(anyhow::Error::msg)
}

/// Splits a comma-separated answer, dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether questions can be asked: both stdin and stderr (where dialoguer draws) are terminals.
pub fn can_ask() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The BMC host of a board that `add-node` has to add.
pub fn ask_bmc_host(board: &str, default: &str) -> Result<String> {
    let host: String = Input::with_theme(&ColorfulTheme::default())
        .with_prompt(format!(
            "The cluster's boards are full: BMC host of the new Turing Pi 2 board {board}"
        ))
        .default(default.to_owned())
        .validate_with(|s: &String| crate::model::check_host_or_ip(s.trim()))
        .interact_text()?;
    Ok(host.trim().to_owned())
}
