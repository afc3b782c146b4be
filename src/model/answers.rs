//! The answers file (`flakesmith.yaml`): everything a repository is generated from.
//!
//! Every field has a default, so a partial file (or `--yes`) still describes a working repo: the
//! default is a 4-node RK1 cluster on one Turing Pi 2 board. Unknown fields are refused, so a typo
//! in a key is an error rather than a silently ignored answer.

use serde::{Deserialize, Serialize};

use super::{InvalidAnswer, Layout, Module, Platform};

/// The schema this flakesmith reads and writes. A file with a larger number came from a newer
/// flakesmith and is refused rather than half-understood.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Answers {
    pub schema: u32,
    /// The flakesmith that last wrote the file; informational (see `flakesmith diff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flakesmith_version: Option<String>,
    pub name: String,
    pub layout: Layout,
    /// Only for the multi-cloud layout; rk1-cluster is always `[rk1]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// A nixpkgs branch or tag of github:NixOS/nixpkgs.
    pub nixpkgs_branch: String,
    pub admin_user: String,
    pub ssh_keys: Vec<String>,
    pub secrets: SecretsAnswers,
    pub build: BuildAnswers,
    /// A flake URL whose `nixosModules.default` every machine imports.
    pub dots: Option<String>,
    pub bootloader: BootloaderAnswers,
    pub network: NetworkAnswers,
    pub boards: Vec<BoardAnswers>,
    pub nodes: Vec<NodeAnswers>,
    /// NixOS `system.stateVersion`: the release the machines were first installed with. `init`
    /// records it, because changing it later changes how stateful services migrate data; when
    /// absent it follows the nixpkgs branch (nixos-25.05 → 25.05), else DEFAULT_STATE_VERSION.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_version: Option<String>,
    #[serde(skip_serializing_if = "MonitoringAnswers::is_default")]
    pub monitoring: MonitoringAnswers,
    /// A crypt(3) hash (`mkpasswd -m yescrypt`, `openssl passwd -6`) for the admin account's
    /// temporary console password; the account must change it at first login. None: no
    /// password at all (SSH keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password_hash: Option<String>,
    #[serde(skip_serializing_if = "AwsAnswers::is_default")]
    pub aws: AwsAnswers,
    #[serde(
        rename = "generic-x86_64",
        skip_serializing_if = "GenericX86_64Answers::is_default"
    )]
    pub generic_x86_64: GenericX86_64Answers,
}

/// The NixOS release a fresh repository records as `system.stateVersion` when nothing else says
/// (nixos-unstable and other branches without a release number): the newest release, 26.05
/// (unstable carries the release notes of 26.11, the next one). `init` records it in the answers,
/// so a later flakesmith with a newer default leaves existing machines alone.
pub const DEFAULT_STATE_VERSION: &str = "26.05";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitoringAnswers {
    /// Run the Prometheus node exporter (port 9100).
    pub node_exporter: bool,
    /// Open the exporter's port in the host firewall; otherwise scrape it through a tunnel or VPN.
    pub open_port: bool,
}

impl Default for MonitoringAnswers {
    fn default() -> Self {
        Self {
            node_exporter: true,
            open_port: false,
        }
    }
}

impl MonitoringAnswers {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The disk format of the AMI's image, as `aws ec2 import-snapshot` takes it (it refuses qcow2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AwsImageFormat {
    /// VHD (nixpkgs calls it `vpc`): sparse, so the upload is about the size of the data.
    #[default]
    Vhd,
    /// Raw disk: the full disk size is uploaded.
    Raw,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AwsAnswers {
    pub image_format: AwsImageFormat,
}

impl AwsAnswers {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GenericX86_64Answers {
    /// Also build a raw UEFI disk image (to `dd` onto a server's disk) besides the ISO.
    pub raw_efi: bool,
}

impl GenericX86_64Answers {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SecretsMode {
    /// sops-nix: secrets encrypted in git to the admins' and nodes' age keys.
    #[default]
    Sops,
    /// No sops: the images let root in with a deployment key only; the first switch replaces it
    /// with the admin's keys.
    DeploymentKeys,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRecipients {
    /// flakesmith makes one age identity per node in the git-ignored keys/ folder.
    #[default]
    AgeKeys,
    /// Each node's recipient is derived from its SSH host key with ssh-to-age after first boot.
    SshHostKeys,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretsAnswers {
    pub mode: SecretsMode,
    /// Age recipients of the people who edit secrets (`age1…`).
    pub admin_age_recipients: Vec<String>,
    pub node_recipients: NodeRecipients,
    /// Deployment-keys mode: the public key authorised for first access only.
    pub deployment_key: Option<String>,
    /// The nodes' age identities are kept outside this checkout on purpose (by another admin,
    /// in a password store): a checkout without keys/ is not a finding.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub node_identities_elsewhere: bool,
}

/// How a host of one architecture builds images for the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ForeignBuild {
    /// Cross-compile (`nixpkgs.buildPlatform`): fast, but little comes from the binary cache.
    #[default]
    Cross,
    /// Build the target's own system under QEMU user emulation (binfmt): cached, but slow
    /// for anything that must be compiled.
    Emulated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildAnswers {
    /// The machines images are built on: `packages.<system>` exists for each.
    pub systems: Vec<String>,
    /// For a build system whose architecture differs from the image's.
    pub foreign: ForeignBuild,
    /// Let the cluster's RK1 nodes serve as native aarch64 remote builders.
    pub rk1_remote_builders: bool,
}

impl Default for BuildAnswers {
    fn default() -> Self {
        Self {
            systems: vec!["x86_64-linux".into(), "aarch64-linux".into()],
            foreign: ForeignBuild::default(),
            rk1_remote_builders: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootloaderAnswers {
    /// An extracted `u-boot-rockchip.bin`-style blob (path relative to the repo, or absolute,
    /// copied into the repo as `rk1-bootloader.bin`); none means nixpkgs' `ubootTuringRK1`.
    pub blob: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkAnswers {
    /// Gateway for nodes with a static address.
    pub gateway: Option<String>,
    pub nameservers: Vec<String>,
    pub time_zone: String,
}

impl Default for NetworkAnswers {
    fn default() -> Self {
        Self {
            gateway: None,
            nameservers: Vec::new(),
            time_zone: "UTC".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BoardAnswers {
    pub name: String,
    /// Host name or address of the board's BMC (what `tpi --host` takes).
    pub bmc_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeAnswers {
    pub host: String,
    pub board: String,
    pub slot: u8,
    /// Static IPv4 address with prefix (`10.0.0.11/24`); none means DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What sits in the slot; absent means rk1, so files written before CM4 support mean the
    /// same and are not rewritten.
    #[serde(default, skip_serializing_if = "Module::is_default")]
    pub module: Module,
}

pub const DEFAULT_NODE_COUNT: usize = 4;
/// Where an extracted bootloader blob is kept inside the repo (`init --bootloader-blob` copies it).
pub const BLOB_FILE: &str = "rk1-bootloader.bin";
/// The most nodes one repository holds (256 boards): asked, flagged and read alike. A thousand
/// nodes init and update within 256 open files (transactions::a_thousand_nodes_fit_…).
pub const MAX_NODES: usize = 1024;
pub const DEFAULT_HOST_PREFIX: &str = "rk1-node";
pub const SLOTS_PER_BOARD: u8 = 4;

impl Default for Answers {
    fn default() -> Self {
        let mut answers = Self {
            schema: SCHEMA_VERSION,
            flakesmith_version: None,
            name: "my-cluster".into(),
            layout: Layout::default(),
            platforms: Vec::new(),
            nixpkgs_branch: "nixos-unstable".into(),
            admin_user: "admin".into(),
            ssh_keys: Vec::new(),
            secrets: SecretsAnswers::default(),
            build: BuildAnswers::default(),
            dots: None,
            bootloader: BootloaderAnswers::default(),
            network: NetworkAnswers::default(),
            boards: Vec::new(),
            nodes: Vec::new(),
            state_version: None,
            monitoring: MonitoringAnswers::default(),
            temporary_password_hash: None,
            aws: AwsAnswers::default(),
            generic_x86_64: GenericX86_64Answers::default(),
        };
        answers.set_node_count(DEFAULT_NODE_COUNT, DEFAULT_HOST_PREFIX);
        answers
    }
}

impl Answers {
    /// Reads an answers file, refusing unknown fields and newer schemas with the field named.
    pub fn from_yaml(text: &str) -> Result<Self, InvalidAnswer> {
        // Look at the schema first, so a newer file is reported as newer rather than as
        // "unknown field" for whatever that newer schema added.
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: Option<u32>,
        }
        if let Ok(SchemaOnly {
            schema: Some(schema),
        }) = serde_yaml_ng::from_str::<SchemaOnly>(text)
        {
            if schema > SCHEMA_VERSION {
                return Err(InvalidAnswer::new(
                    "schema",
                    format!(
                        "version {schema} was written by a newer flakesmith; this one ({}) reads versions up to {SCHEMA_VERSION}: upgrade flakesmith",
                        env!("CARGO_PKG_VERSION")
                    ),
                ));
            }
        }
        serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e))
    }

    /// The file as flakesmith writes it: a header comment, then the answers.
    pub fn to_yaml(&self) -> String {
        let mut stamped = self.clone();
        stamped.schema = SCHEMA_VERSION;
        stamped.flakesmith_version = Some(env!("CARGO_PKG_VERSION").to_owned());
        let body = serde_yaml_ng::to_string(&stamped).expect("answers always serialise");
        format!(
            "# flakesmith answers: this repository is generated from them.\n\
             # Edit them, then run `flakesmith diff` to see and `flakesmith update` to apply the change.\n{body}"
        )
    }

    /// Replaces the node list with `count` nodes named `<prefix><n>`, filling boards slot by
    /// slot, and adds boards as needed (keeping the BMC hosts of boards that already exist).
    pub fn set_node_count(&mut self, count: usize, prefix: &str) {
        let hosts = (1..=count).map(|n| format!("{prefix}{n}")).collect();
        self.set_hosts(hosts);
    }

    /// Replaces the node list with these hosts, four to a board, in order.
    pub fn set_hosts(&mut self, hosts: Vec<String>) {
        let boards_needed = hosts.len().div_ceil(SLOTS_PER_BOARD as usize);
        while self.boards.len() < boards_needed {
            let n = self.boards.len() + 1;
            self.boards.push(BoardAnswers {
                name: format!("tp{n}"),
                bmc_host: default_bmc_host(n),
            });
        }
        self.boards
            .truncate(boards_needed.max(usize::from(!hosts.is_empty())));
        self.nodes = hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| NodeAnswers {
                host,
                board: self.boards[i / SLOTS_PER_BOARD as usize].name.clone(),
                slot: (i % SLOTS_PER_BOARD as usize) as u8 + 1,
                address: None,
                module: Module::default(),
            })
            .collect();
    }
}

/// `turingpi.local` is what every Turing Pi 2 BMC calls itself out of the box; a second board
/// must be renamed, and the default says so by its name.
pub fn default_bmc_host(board_number: usize) -> String {
    if board_number == 1 {
        "turingpi.local".into()
    } else {
        format!("turingpi{board_number}.local")
    }
}

/// Turns serde's message into `field: what is wrong`, keeping its own path when it has one.
fn yaml_error(e: &serde_yaml_ng::Error) -> InvalidAnswer {
    // serde quotes the offending value or key, whole: a secret or 50 MB of it.
    let message = crate::echo::scrub_quoted(&e.to_string(), &['"', '`']);
    // serde_yaml_ng prefixes nested errors with the path ("nodes[0]: unknown field `hots`, …").
    let (field, rest) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => ("flakesmith.yaml".to_owned(), message.clone()),
    };
    // A misspelt key is best named by the key itself.
    let field = match rest
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
    {
        Some((key, _)) if field == "flakesmith.yaml" => key.to_owned(),
        Some((key, _)) => format!("{field}.{key}"),
        None => field,
    };
    let rest = rest.lines().next().unwrap_or_default().to_owned();
    InvalidAnswer::new(field, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_four_node_cluster_on_one_board() {
        let a = Answers::default();
        assert_eq!(a.nodes.len(), 4);
        assert_eq!(a.boards.len(), 1);
        assert_eq!(a.nodes[3].slot, 4);
    }

    #[test]
    fn five_nodes_take_a_second_board() {
        let mut a = Answers::default();
        a.set_node_count(5, "n");
        assert_eq!(a.boards.len(), 2);
        assert_eq!((a.nodes[4].board.as_str(), a.nodes[4].slot), ("tp2", 1));
        assert_eq!(a.boards[1].bmc_host, "turingpi2.local");
    }

    #[test]
    fn round_trips_through_yaml() {
        let a = Answers::default();
        let mut back = Answers::from_yaml(&a.to_yaml()).unwrap();
        back.flakesmith_version = None;
        assert_eq!(a, back);
    }

    #[test]
    fn files_without_the_newer_fields_still_load() {
        let a = Answers::from_yaml("schema: 1\nname: x\n").unwrap();
        assert_eq!(a.state_version, None);
        assert!(a.monitoring.node_exporter && !a.monitoring.open_port);
        assert_eq!(a.aws.image_format, AwsImageFormat::Vhd);
        assert!(!a.generic_x86_64.raw_efi);
        let a = Answers::from_yaml("generic-x86_64:\n  raw-efi: true\naws:\n  image-format: raw\n")
            .unwrap();
        assert!(a.generic_x86_64.raw_efi);
        assert_eq!(a.aws.image_format, AwsImageFormat::Raw);
    }

    #[test]
    fn unknown_fields_and_newer_schemas_are_named() {
        let e = Answers::from_yaml("schema: 1\nnmae: x\n").unwrap_err();
        assert!(e.to_string().contains("nmae"), "{e}");
        let e = Answers::from_yaml("schema: 99\n").unwrap_err();
        assert_eq!(e.field, "schema");
    }
}
