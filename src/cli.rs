//! The command line: one `Subcommand` enum, one args struct per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::{
    answers::{AwsImageFormat, ForeignBuild, NodeRecipients, SecretsMode},
    Layout, Module, Platform,
};

#[derive(Debug, Parser)]
#[command(
    name = "flakesmith",
    version,
    about = "Scaffold, grow and build Nix flake repositories for custom NixOS images",
    long_about = "Scaffold, grow and build Nix flake repositories for custom NixOS images: Turing RK1 \
                  (RK3588) clusters on Turing Pi 2 boards, AWS AMIs, GCP images, generic aarch64 SD \
                  cards and x86_64 servers.",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository from answers (asked in the terminal, or given as flags or a file)
    Init(Box<InitArgs>),
    /// Add Turing Pi 2 nodes (RK1 or CM4) to a generated repository
    AddNode(AddNodeArgs),
    /// Remove a Turing Pi 2 node from a generated repository
    RemoveNode(RemoveNodeArgs),
    /// Show what `update` would change, as a unified diff (exit 1 when there is a difference)
    Diff(DiffArgs),
    /// Re-render from flakesmith.yaml and merge the result with your edits
    Update(UpdateArgs),
    /// Build images with nix and write a checksum manifest
    Build(BuildArgs),
    /// Lint a generated repository: syntax, secrets hygiene, boot layout
    Check(CheckArgs),
    /// Copy the identical image once per node, each with the node's identity in its FAT partition
    Stamp(StampArgs),
    /// Write a Rockchip bootloader into a disk image (the same code as `rk-inject`)
    #[command(disable_help_flag = true)]
    Inject(InjectArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
}

/// The repository a command works on.
#[derive(Debug, Args, Clone)]
pub struct RepoArg {
    /// The generated repository [default: the current directory]
    #[arg(
        short = 'C',
        long = "repo",
        value_name = "DIR",
        default_value = ".",
        hide_default_value = true
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Args, Default)]
pub struct InitArgs {
    /// Directory to create; its name is the default project name
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Take the default for every answer not given: never ask
    #[arg(short = 'y', long, help_heading = "Mode")]
    pub yes: bool,
    /// Read the answers from a YAML file (the format of flakesmith.yaml)
    #[arg(long, value_name = "FILE", help_heading = "Mode")]
    pub answers: Option<PathBuf>,
    /// List the files that would be written, and write nothing
    #[arg(long, help_heading = "Mode")]
    pub dry_run: bool,
    /// Write into a non-empty directory; files flakesmith did not generate are never overwritten
    #[arg(long, help_heading = "Mode")]
    pub force: bool,
    /// Do not run `git init` in the new repository
    #[arg(long, help_heading = "Mode")]
    pub no_git: bool,

    /// Project name [default: the directory's name]
    #[arg(long, help_heading = "Answers")]
    pub name: Option<String>,
    /// Repository layout
    #[arg(long, value_enum, help_heading = "Answers")]
    pub layout: Option<Layout>,
    /// Platforms of a multi-cloud repo
    #[arg(
        long = "platform",
        value_enum,
        value_delimiter = ',',
        value_name = "PLATFORM",
        help_heading = "Answers"
    )]
    pub platforms: Vec<Platform>,
    /// Number of Turing Pi 2 nodes (1-1024), named <host-prefix>1, <host-prefix>2, …
    #[arg(long, value_name = "N", help_heading = "Answers")]
    pub nodes: Option<usize>,
    /// Prefix of generated node host names
    #[arg(long, value_name = "PREFIX", help_heading = "Answers")]
    pub host_prefix: Option<String>,
    /// Node host names, in slot order (instead of --nodes)
    #[arg(
        long = "hosts",
        value_delimiter = ',',
        value_name = "HOST",
        conflicts_with = "nodes",
        help_heading = "Answers"
    )]
    pub hosts: Vec<String>,
    /// BMC host of each Turing Pi 2 board, in board order
    #[arg(
        long = "bmc-host",
        value_delimiter = ',',
        value_name = "HOST",
        help_heading = "Answers"
    )]
    pub bmc_hosts: Vec<String>,
    /// Admin user created on every machine
    #[arg(long, value_name = "USER", help_heading = "Answers")]
    pub admin_user: Option<String>,
    /// SSH public key for the admin: the key itself, or a path to a .pub or authorized_keys file
    #[arg(long = "ssh-key", value_name = "KEY|FILE", help_heading = "Answers")]
    pub ssh_keys: Vec<String>,
    /// How secrets are handled
    #[arg(long, value_enum, help_heading = "Answers")]
    pub secrets: Option<SecretsMode>,
    /// Age recipient (age1…) of an admin who edits secrets
    #[arg(long = "age-recipient", value_name = "AGE1…", help_heading = "Answers")]
    pub age_recipients: Vec<String>,
    /// Where the nodes' age recipients come from (sops mode)
    #[arg(long, value_enum, help_heading = "Answers")]
    pub node_recipients: Option<NodeRecipients>,
    /// Public key authorised for first access only (deployment-keys mode)
    #[arg(long, value_name = "KEY|FILE", help_heading = "Answers")]
    pub deployment_key: Option<String>,
    /// nixpkgs branch the flake follows
    #[arg(long, value_name = "BRANCH", help_heading = "Answers")]
    pub nixpkgs_branch: Option<String>,
    /// An extracted RK1 bootloader (u-boot-rockchip.bin) to use instead of nixpkgs' ubootTuringRK1
    #[arg(long, value_name = "FILE", help_heading = "Answers")]
    pub bootloader_blob: Option<PathBuf>,
    /// Use nixpkgs' ubootTuringRK1 (answers the bootloader question without a blob)
    #[arg(long, conflicts_with = "bootloader_blob", help_heading = "Answers")]
    pub no_bootloader_blob: bool,
    /// Your personal flake, whose nixosModules.default every machine imports
    #[arg(long, value_name = "FLAKE-URL", help_heading = "Answers")]
    pub dots: Option<String>,
    /// No personal flake (answers the dots question with none)
    #[arg(long, conflicts_with = "dots", help_heading = "Answers")]
    pub no_dots: bool,
    /// Systems images are built on
    #[arg(
        long = "build-system",
        value_delimiter = ',',
        value_name = "SYSTEM",
        help_heading = "Answers"
    )]
    pub build_systems: Vec<String>,
    /// How a build host of the other architecture builds images
    #[arg(long, value_enum, help_heading = "Answers")]
    pub foreign: Option<ForeignBuild>,
    /// NixOS release the machines are first installed with (system.stateVersion) [default: the
    /// branch's release, else the newest]
    #[arg(long, value_name = "YY.MM", help_heading = "Answers")]
    pub state_version: Option<String>,
    /// crypt(3) hash (mkpasswd -m yescrypt) of a temporary console password for the admin, which
    /// must be changed at first login [default: no password, SSH keys only]
    #[arg(long, value_name = "HASH", help_heading = "Answers")]
    pub temporary_password_hash: Option<String>,
    /// Do not run the Prometheus node exporter
    #[arg(long, help_heading = "Answers")]
    pub no_node_exporter: bool,
    /// Open the node exporter's port (9100) in the firewall
    #[arg(long, conflicts_with = "no_node_exporter", help_heading = "Answers")]
    pub open_exporter_port: bool,
    /// Disk format of the AWS image (what `aws ec2 import-snapshot` uploads)
    #[arg(long, value_enum, value_name = "FORMAT", help_heading = "Answers")]
    pub aws_image_format: Option<AwsImageFormat>,
    /// Also build a raw UEFI disk image of the generic-x86_64 server, besides its ISO
    #[arg(long, help_heading = "Answers")]
    pub raw_efi: bool,
}

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Host name of the new node [default: the next free <prefix><n>]
    #[arg(value_name = "HOST")]
    pub host: Option<String>,
    /// Board to put it on [default: the first with a free slot]
    #[arg(long)]
    pub board: Option<String>,
    /// Slot 1-4 on that board [default: the first free one]
    #[arg(long, requires = "board")]
    pub slot: Option<u8>,
    /// Static IPv4 address with prefix (10.0.0.15/24)
    #[arg(long, value_name = "CIDR")]
    pub address: Option<String>,
    /// What sits in the slot: a Turing RK1 or a Raspberry Pi Compute Module 4 (eMMC)
    #[arg(long, value_enum, default_value_t = Module::Rk1)]
    pub module: Module,
    /// Add this many nodes
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with_all = ["host", "slot", "address"])]
    pub count: usize,
    /// BMC host of each board that has to be added, in order [asked when not given]
    #[arg(long = "bmc-host", value_delimiter = ',', value_name = "HOST")]
    pub bmc_hosts: Vec<String>,
    /// Show the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RemoveNodeArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Host name of the node to remove
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Also delete the node's files when you edited them
    #[arg(long)]
    pub force: bool,
    /// Show the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub repo: RepoArg,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Show the plan (create / update / merge / conflict / unchanged) and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Recreate generated files that you deleted
    #[arg(long)]
    pub restore_deleted: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Targets (packages of the flake) to build
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Build every image target
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// Build system (the packages.<system> set to build from) [default: this machine's]
    #[arg(long, value_name = "SYSTEM")]
    pub system: Option<String>,
    /// Remote builders, passed to nix as --builders
    #[arg(long, value_name = "SPEC")]
    pub builders: Option<String>,
    /// Sign SHA256SUMS with this SSH key (ssh-keygen -Y sign)
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Print the nix command and write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArg,
}

#[derive(Debug, Args)]
pub struct StampArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Nodes to stamp (for a generic-arm64 image: the names of the boards to stamp)
    #[arg(value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Stamp every Turing Pi 2 node (RK1 and CM4), each from its module's identical image
    #[arg(long, conflicts_with = "hosts")]
    pub all: bool,
    /// The identical image (raw) [default: the one `flakesmith build rk1` (or cm4) recorded for
    /// each node's module]
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Folder for the stamped images <HOST>.img, git-ignored when inside the repository
    /// [default: stamped/ in the repository]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Arguments for the injector (see `flakesmith inject --help`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A value outside a flag's choices (`--module jetson`), as one line that names the flag and
/// what it takes, like every other bad input; None for any other clap error.
pub fn invalid_choice(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let string = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let flag = string(ContextKind::InvalidArg)?;
    let flag = flag.split(' ').next().unwrap_or(&flag).to_owned();
    let value = string(ContextKind::InvalidValue)?;
    let Some(ContextValue::Strings(allowed)) = e.get(ContextKind::ValidValue) else {
        return None;
    };
    Some(format!(
        "error: {flag}: {} is not allowed (allowed: {})\n",
        crate::echo::quoted(&value),
        allowed.join(", ")
    ))
}

/// The flag (`--ssh-key`) of `init`'s argument `id` (its field in [`InitArgs`]), spelt as clap
/// parses it: messages name flags through this, so a renamed flag cannot leave a message naming
/// the old one (the tests below call it for every id the code names).
pub(crate) fn init_flag(id: &str) -> String {
    let init = InitArgs::augment_args(clap::Command::new("init"));
    let long = init
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .unwrap_or_else(|| panic!("init has no flag with the id {id}"));
    format!("--{long}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str) -> String {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
            .unwrap()
    }

    /// Every id the code passes to `init_flag` names an argument clap has, and the prompt's list of
    /// flags per question is made of them.
    #[test]
    fn every_flag_a_message_names_exists_in_clap() {
        let call = regex::Regex::new(r#"init_flag\("(\w+)"\)"#).unwrap();
        let mut ids = Vec::new();
        for entry in walkdir::WalkDir::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")) {
            let path = entry.unwrap().into_path();
            if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                ids.extend(call.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
        assert!(ids.len() > 10, "{ids:?}");
        for id in ids {
            assert!(init_flag(&id).starts_with("--"));
        }
        for question in crate::prompt::Question::ALL {
            assert!(question.flag().starts_with("--"), "{question:?}");
        }
    }

    /// The prompt and `init` spell no flag of `init` by hand (only through [`init_flag`]): a
    /// literal would not follow a rename. Comments and the deploy scripts' own flags aside.
    #[test]
    fn the_prompt_and_init_spell_no_flag_by_hand() {
        let init = InitArgs::augment_args(clap::Command::new("init"));
        let flags: Vec<String> = init
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect();
        let word = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
        let mut by_hand = Vec::new();
        for path in ["src/prompt.rs", "src/cmd/init.rs"] {
            for (n, line) in source(path).lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") || code.contains("./deploy/") {
                    continue;
                }
                by_hand.extend(
                    word.find_iter(line)
                        .filter(|m| flags.iter().any(|f| f == m.as_str()))
                        .map(|m| format!("{path}:{}: {}", n + 1, m.as_str())),
                );
            }
        }
        assert!(by_hand.is_empty(), "{by_hand:#?}");
    }
}
