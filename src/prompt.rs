//! The only place that reads the terminal: turns unanswered questions into answers.

use std::collections::BTreeSet;

use anyhow::Result;
use dialoguer::{theme::ColorfulTheme, Input, MultiSelect, Select};

use crate::{
    error::UsageError,
    model::{
        answers::{SecretsMode, DEFAULT_HOST_PREFIX},
        AgeRecipient, Answers, Hostname, Layout, Platform,
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
    Secrets,
    NixpkgsBranch,
    Bootloader,
    Dots,
}

impl Question {
    pub const ALL: [Question; 11] = [
        Question::Name,
        Question::Layout,
        Question::Platforms,
        Question::Nodes,
        Question::BmcHosts,
        Question::AdminUser,
        Question::SshKeys,
        Question::Secrets,
        Question::NixpkgsBranch,
        Question::Bootloader,
        Question::Dots,
    ];

    /// The flag that answers it, for the "missing answers" message.
    pub fn flag(self) -> &'static str {
        match self {
            Question::Name => "--name",
            Question::Layout => "--layout",
            Question::Platforms => "--platform",
            Question::Nodes => "--nodes (or --hosts)",
            Question::BmcHosts => "--bmc-host",
            Question::AdminUser => "--admin-user",
            Question::SshKeys => "--ssh-key",
            Question::Secrets => "--secrets",
            Question::NixpkgsBranch => "--nixpkgs-branch",
            Question::Bootloader => "--bootloader-blob",
            Question::Dots => "--dots",
        }
    }

    /// Whether the question means anything for these answers so far.
    fn applies(self, answers: &Answers) -> bool {
        let rk1 = answers.layout == Layout::Rk1Cluster || answers.platforms.contains(&Platform::Rk1);
        match self {
            Question::Platforms => answers.layout == Layout::MultiCloud,
            Question::Nodes | Question::BmcHosts | Question::Bootloader => rk1,
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
        Asking::Defaults => Ok(()),
        Asking::Refuse => {
            let missing: Vec<&str> = Question::ALL
                .into_iter()
                .filter(|q| !given.contains(q) && q.applies(answers))
                .map(Question::flag)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(UsageError::new(format!(
                    "stdin is not a terminal, so nothing can be asked; missing answers: {}; give them as flags, use --answers FILE, or --yes to take the defaults",
                    missing.join(", ")
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
            a.name = Input::with_theme(theme)
                .with_prompt("Project name")
                .default(a.name.clone())
                .interact_text()?;
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
            let checked: Vec<bool> = Platform::ALL
                .iter()
                .map(|p| a.platforms.is_empty() || a.platforms.contains(p))
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
                .with_prompt("Number of RK1 nodes")
                .default(a.nodes.len().max(1))
                .validate_with(|n: &usize| -> Result<(), &str> {
                    if (1..=256).contains(n) {
                        Ok(())
                    } else {
                        Err("between 1 and 256")
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
            a.set_hosts(split_list(&hosts));
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
                board.bmc_host = Input::with_theme(theme)
                    .with_prompt(format!(
                        "Turing Pi BMC host of board {} of {boards} ({})",
                        i + 1,
                        slots.join(", ")
                    ))
                    .default(board.bmc_host.clone())
                    .interact_text()?;
            }
        }
        Question::AdminUser => {
            a.admin_user = Input::with_theme(theme)
                .with_prompt("Admin user")
                .default(a.admin_user.clone())
                .interact_text()?;
        }
        Question::SshKeys => {
            let default = a.ssh_keys.join(", ");
            let text: String = Input::with_theme(theme)
                .with_prompt("SSH public key(s) for the admin: paste keys or give .pub paths (comma-separated)")
                .default(default)
                .allow_empty(true)
                .validate_with(|s: &String| -> Result<(), String> {
                    crate::cmd::init::read_ssh_keys(&split_list(s)).map(|_| ()).map_err(|e| format!("{e:#}"))
                })
                .interact_text()?;
            a.ssh_keys = crate::cmd::init::read_ssh_keys(&split_list(&text))?;
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
                        .with_prompt("Admin age recipients (age1…, comma-separated; empty: add later)")
                        .default(a.secrets.admin_age_recipients.join(","))
                        .allow_empty(true)
                        .validate_with(|s: &String| -> Result<(), String> {
                            split_list(s).iter().try_for_each(|r| AgeRecipient::parse(r).map(|_| ()))
                        })
                        .interact_text()?;
                    a.secrets.admin_age_recipients = split_list(&text);
                    a.secrets.deployment_key = None;
                }
                SecretsMode::DeploymentKeys => {
                    let text: String = Input::with_theme(theme)
                        .with_prompt("Deployment public key (key or .pub path; empty: use your admin key)")
                        .default(a.secrets.deployment_key.clone().unwrap_or_default())
                        .allow_empty(true)
                        .validate_with(|s: &String| -> Result<(), String> {
                            if s.trim().is_empty() {
                                return Ok(());
                            }
                            crate::cmd::init::read_ssh_keys(&[s.clone()]).map(|_| ()).map_err(|e| format!("{e:#}"))
                        })
                        .interact_text()?;
                    a.secrets.deployment_key = crate::cmd::init::read_ssh_keys(&[text])?.into_iter().next();
                }
            }
        }
        Question::NixpkgsBranch => {
            a.nixpkgs_branch = Input::with_theme(theme)
                .with_prompt("nixpkgs branch")
                .default(a.nixpkgs_branch.clone())
                .interact_text()?;
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
                    .validate_with(|s: &String| -> Result<(), String> {
                        if std::path::Path::new(s.trim()).is_file() {
                            Ok(())
                        } else {
                            Err(format!("{s} is not a file"))
                        }
                    })
                    .interact_text()?;
                Some(path.trim().to_owned())
            };
        }
        Question::Dots => {
            let text: String = Input::with_theme(theme)
                .with_prompt("Your dots flake (its nixosModules.default is imported; empty for none)")
                .default(a.dots.clone().unwrap_or_default())
                .allow_empty(true)
                .interact_text()?;
            a.dots = Some(text.trim().to_owned()).filter(|s| !s.is_empty());
        }
    }
    Ok(())
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
