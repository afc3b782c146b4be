//! The validated model: what the templates render from. Building a `Project` is the only way
//! answers reach the renderer, so every template can trust what it is given.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    net::Ipv4Addr,
};

use serde::Serialize;

use super::{
    answers::{
        AwsImageFormat, ForeignBuild, NodeRecipients, SecretsMode, BLOB_FILE, MAX_NODES,
        SLOTS_PER_BOARD,
    },
    board::check_host_or_ip,
    cluster::{check_address, check_slot},
    AgeRecipient, Answers, Board, BoardName, FlakeUrl, Hostname, InvalidAnswer, Layout, Module,
    NixpkgsBranch, Node, PasswordHash, Platform, ProjectName, SshPublicKey, StateVersion, UserName,
};
use crate::{
    echo::quoted,
    secrets::private_key::{private_key_in, PrivateKeyKind},
};

/// Build systems flakesmith generates `packages.<system>` for. Darwin hosts need a Linux builder
/// (nix-darwin's `nix.linux-builder`) and then build as that builder's system.
pub const BUILD_SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: ProjectName,
    pub layout: Layout,
    pub platforms: Vec<Platform>,
    pub nixpkgs_branch: NixpkgsBranch,
    pub admin_user: UserName,
    pub ssh_keys: Vec<SshPublicKey>,
    pub secrets: Secrets,
    pub build: Build,
    pub dots: Option<FlakeUrl>,
    pub bootloader: Bootloader,
    pub network: Network,
    pub boards: Vec<Board>,
    pub nodes: Vec<Node>,
    /// Host → age recipient of each node that has one (sops mode). Not an answer: what
    /// [`Project::new`] is given for the validated nodes (the command layer reads `keys/` and
    /// `.sops.yaml` with [`crate::secrets::NodeKeys`], because rendering never touches the disk).
    /// Empty from [`Project::from_answers`]: `.sops.yaml` then has a placeholder per node.
    pub node_age_recipients: BTreeMap<String, AgeRecipient>,
    pub state_version: StateVersion,
    pub monitoring: Monitoring,
    /// crypt(3) hash of the admin's temporary password (expired at first boot); none: no password.
    pub temporary_password_hash: Option<PasswordHash>,
    pub aws: Aws,
    pub generic_x86_64: GenericX86_64,
    /// The answers this project was validated from, written back as flakesmith.yaml.
    #[serde(skip)]
    pub answers: Answers,
}

#[derive(Debug, Clone, Serialize)]
pub struct Secrets {
    pub mode: SecretsMode,
    pub admin_age_recipients: Vec<AgeRecipient>,
    pub node_recipients: NodeRecipients,
    pub deployment_key: Option<SshPublicKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub systems: Vec<String>,
    pub foreign: ForeignBuild,
    pub rk1_remote_builders: bool,
    /// With `rk1_remote_builders`, Nix's `--builders` value for the RK1 nodes (remote-builder.nix
    /// gives each a `nixbuilder` user): one `;`-separated entry per node, with the key the README
    /// has users make. The README shows it and `flakesmith build` offers it when aarch64 is missing.
    pub rk1_builders: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Monitoring {
    pub node_exporter: bool,
    pub open_port: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Aws {
    /// "vhd" or "raw".
    pub image_format: AwsImageFormat,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenericX86_64 {
    pub raw_efi: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum Bootloader {
    /// `pkgs.ubootTuringRK1`, built from source by nixpkgs.
    Nixpkgs,
    /// A user's extracted blob, carried in the repo as `rk1-bootloader.bin`.
    Blob { path: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub gateway: Option<Ipv4Addr>,
    pub nameservers: Vec<IpAddr>,
    pub time_zone: String,
}

impl Project {
    pub fn has(&self, platform: Platform) -> bool {
        self.platforms.contains(&platform)
    }

    pub fn node(&self, host: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.host.as_str() == host)
    }

    /// The kinds of compute module the nodes are, each once, RK1 first: one identical image and
    /// one hardware module each.
    pub fn modules(&self) -> Vec<Module> {
        let kinds: BTreeSet<Module> = self.nodes.iter().map(|n| n.module.kind).collect();
        kinds.into_iter().collect()
    }

    /// The images the flake's `packages.<system>` holds for each build system, in the order the
    /// flake lists them: what `flakesmith build --all` builds. The templates own the fact; the
    /// stand-in evaluation in the tests (nix_eval.rs, cloud.rs) holds this list to them.
    pub fn image_targets(&self) -> Vec<String> {
        let hosts = self.nodes.iter().map(|n| n.host.to_string());
        match self.layout {
            Layout::Rk1Cluster => hosts.chain(self.identical_images()).collect(),
            Layout::MultiCloud => {
                let mut targets: Vec<String> = super::machines(self)
                    .into_iter()
                    .flat_map(|m| m.images)
                    .map(|i| i.name)
                    .collect();
                targets.extend(hosts);
                // The identical images, as in the rk1-cluster layout.
                targets.extend(self.identical_images());
                targets
            }
        }
    }

    fn identical_images(&self) -> impl Iterator<Item = String> {
        self.modules()
            .into_iter()
            .map(|m| m.identical_image().to_owned())
    }

    /// Validates answers field by field; the first problem is returned, naming its field. No
    /// node's age recipient is looked up: for checking answers, and for what needs no
    /// `.sops.yaml` (build, stamp); see [`Project::new`].
    pub fn from_answers(answers: &Answers) -> Result<Self, InvalidAnswer> {
        Self::new(answers, |_, _| Ok(BTreeMap::new()))
    }

    /// The whole project in one step: validates answers as [`Project::from_answers`] does,
    /// then asks `node_age_recipients` for the recipients of the validated nodes (only valid
    /// host names reach it, so it may name files after them), e.g.
    /// `|secrets, nodes| NodeKeys::prepare(repo, secrets, nodes).map(|k| k.recipients())`.
    pub fn new<E: From<InvalidAnswer>>(
        answers: &Answers,
        node_age_recipients: impl FnOnce(&Secrets, &[Node]) -> Result<BTreeMap<String, AgeRecipient>, E>,
    ) -> Result<Self, E> {
        let name = ProjectName::parse(&answers.name).map_err(|m| InvalidAnswer::new("name", m))?;
        let platforms = platforms_of(answers)?;
        let has_slots = platforms.iter().any(|p| p.has_slots());

        let nixpkgs_branch = NixpkgsBranch::parse(&answers.nixpkgs_branch)
            .map_err(|m| InvalidAnswer::new("nixpkgs-branch", m))?;
        let admin_user = UserName::parse(&answers.admin_user)
            .map_err(|m| InvalidAnswer::new("admin-user", m))?;

        let ssh_keys = answers
            .ssh_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                SshPublicKey::parse(k).map_err(|m| InvalidAnswer::new(format!("ssh-keys[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        for (i, key) in ssh_keys.iter().enumerate() {
            if !seen.insert(key.fingerprint_part().to_owned()) {
                return Err(InvalidAnswer::new(
                    format!("ssh-keys[{i}]"),
                    "this key is listed twice",
                )
                .into());
            }
        }

        let secrets = secrets_of(answers)?;
        let dots = answers
            .dots
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .map(|d| FlakeUrl::parse(d.trim()).map_err(|m| InvalidAnswer::new("dots", m)))
            .transpose()?;
        let bootloader = match answers.bootloader.blob.as_deref().map(str::trim) {
            None | Some("") => Bootloader::Nixpkgs,
            // A path outside the repo would be read (into the store) by Nix: only init's copy.
            Some(BLOB_FILE) => Bootloader::Blob {
                path: BLOB_FILE.to_owned(),
            },
            Some(other) => {
                return Err(InvalidAnswer::new(
                    "bootloader.blob",
                    format!("'{other}' is not {BLOB_FILE}: in a repository the blob is always {BLOB_FILE}; copy your u-boot-rockchip.bin there (`flakesmith check` checks it)"),
                ).into())
            }
        };
        let network = network_of(answers)?;
        let (boards, nodes) = if has_slots {
            cluster_of(answers)?
        } else {
            (Vec::new(), Vec::new())
        };
        let build = build_of(answers, &nodes)?;
        if answers.layout == Layout::MultiCloud {
            // Nodes and platform images share the flake's package and configuration names.
            if let Some((i, n)) = nodes.iter().enumerate().find(|(_, n)| {
                Platform::ALL
                    .iter()
                    .any(|p| !p.has_slots() && p.name() == n.host.as_str())
            }) {
                return Err(InvalidAnswer::new(
                    format!("nodes[{i}].host"),
                    format!("'{}' is the name of a platform image in this flake; choose another host name", n.host),
                ).into());
            }
        }
        if nodes.iter().any(|n| n.address.is_some()) && network.gateway.is_none() {
            return Err(InvalidAnswer::new(
                "network.gateway",
                "nodes with a static address need a gateway (e.g. 10.0.0.1)",
            )
            .into());
        }

        let state_version = match answers.state_version.as_deref() {
            Some(v) => {
                StateVersion::parse(v).map_err(|m| InvalidAnswer::new("state-version", m))?
            }
            None => StateVersion::of_branch(&nixpkgs_branch),
        };
        let monitoring = monitoring_of(answers)?;
        let temporary_password_hash = answers
            .temporary_password_hash
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                PasswordHash::parse(h).map_err(|m| InvalidAnswer::new("temporary-password-hash", m))
            })
            .transpose()?;
        let (aws, generic_x86_64) = platform_options_of(answers, &platforms)?;
        // Last, so that the fields above say what they take instead; this catches a key in a
        // field whose syntax admits one (a branch name, a path), which would reach git.
        if let Some((field, kind)) = private_key_field(answers) {
            return Err(InvalidAnswer::new(
                field,
                format!(
                    "holds {}; a private key is never written into the repository",
                    kind.describe()
                ),
            )
            .into());
        }
        let node_age_recipients = node_age_recipients(&secrets, &nodes)?;

        Ok(Self {
            name,
            layout: answers.layout,
            platforms,
            nixpkgs_branch,
            admin_user,
            ssh_keys,
            secrets,
            build,
            dots,
            bootloader,
            network,
            boards,
            nodes,
            node_age_recipients,
            state_version,
            monitoring,
            temporary_password_hash,
            aws,
            generic_x86_64,
            answers: answers.clone(),
        })
    }
}

/// The first answer (as its flakesmith.yaml field) that holds private key material.
fn private_key_field(answers: &Answers) -> Option<(String, PrivateKeyKind)> {
    fn walk(value: &serde_json::Value, field: String) -> Option<(String, PrivateKeyKind)> {
        match value {
            serde_json::Value::String(s) => private_key_in(s).map(|kind| (field, kind)),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{field}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
                let path = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                walk(v, path)
            }),
            _ => None,
        }
    }
    walk(&serde_json::to_value(answers).ok()?, String::new())
}

fn monitoring_of(answers: &Answers) -> Result<Monitoring, InvalidAnswer> {
    let m = &answers.monitoring;
    if m.open_port && !m.node_exporter {
        return Err(InvalidAnswer::new(
            "monitoring.open-port",
            "only with monitoring.node-exporter: true (there is no port to open otherwise)",
        ));
    }
    Ok(Monitoring {
        node_exporter: m.node_exporter,
        open_port: m.open_port,
    })
}

/// Answers about one platform are refused when that platform is not chosen, so that a typo in
/// the platform list does not silently drop them.
fn platform_options_of(
    answers: &Answers,
    platforms: &[Platform],
) -> Result<(Aws, GenericX86_64), InvalidAnswer> {
    if answers.aws != Default::default() && !platforms.contains(&Platform::Aws) {
        return Err(InvalidAnswer::new(
            "aws.image-format",
            "only used when platforms include aws",
        ));
    }
    if answers.generic_x86_64.raw_efi && !platforms.contains(&Platform::GenericX86_64) {
        return Err(InvalidAnswer::new(
            "generic-x86_64.raw-efi",
            "only used when platforms include generic-x86_64",
        ));
    }
    Ok((
        Aws {
            image_format: answers.aws.image_format,
        },
        GenericX86_64 {
            raw_efi: answers.generic_x86_64.raw_efi,
        },
    ))
}

fn platforms_of(answers: &Answers) -> Result<Vec<Platform>, InvalidAnswer> {
    match answers.layout {
        Layout::Rk1Cluster => {
            if answers.platforms.iter().any(|p| *p != Platform::Rk1) {
                return Err(InvalidAnswer::new(
                    "platforms",
                    "the rk1-cluster layout builds rk1 only; use layout multi-cloud for other platforms",
                ));
            }
            Ok(vec![Platform::Rk1])
        }
        Layout::MultiCloud => {
            let set: BTreeSet<Platform> = answers.platforms.iter().copied().collect();
            if set.is_empty() {
                return Err(InvalidAnswer::new(
                    "platforms",
                    format!(
                        "choose at least one of {}",
                        Platform::ALL.map(Platform::name).join(", ")
                    ),
                ));
            }
            if set.len() != answers.platforms.len() {
                return Err(InvalidAnswer::new(
                    "platforms",
                    "a platform is listed twice",
                ));
            }
            Ok(set.into_iter().collect())
        }
    }
}

fn secrets_of(answers: &Answers) -> Result<Secrets, InvalidAnswer> {
    let s = &answers.secrets;
    let admin_age_recipients = s
        .admin_age_recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            AgeRecipient::parse(r)
                .map_err(|m| InvalidAnswer::new(format!("secrets.admin-age-recipients[{i}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let deployment_key = s
        .deployment_key
        .as_deref()
        .map(|k| {
            SshPublicKey::parse(k).map_err(|m| InvalidAnswer::new("secrets.deployment-key", m))
        })
        .transpose()?;
    if s.mode == SecretsMode::Sops && deployment_key.is_some() {
        return Err(InvalidAnswer::new(
            "secrets.deployment-key",
            "only used with secrets mode deployment-keys",
        ));
    }
    Ok(Secrets {
        mode: s.mode,
        admin_age_recipients,
        node_recipients: s.node_recipients,
        deployment_key,
    })
}

fn build_of(answers: &Answers, nodes: &[Node]) -> Result<Build, InvalidAnswer> {
    let b = &answers.build;
    if b.systems.is_empty() {
        return Err(InvalidAnswer::new(
            "build.systems",
            format!("list at least one of {}", BUILD_SYSTEMS.join(", ")),
        ));
    }
    let mut systems = Vec::new();
    for (i, system) in b.systems.iter().enumerate() {
        let field = format!("build.systems[{i}]");
        if system.ends_with("-darwin") {
            return Err(InvalidAnswer::new(
                field,
                format!("{system} cannot build NixOS images itself: run a Linux builder (nix-darwin's nix.linux-builder) and list its system instead"),
            ));
        }
        if !BUILD_SYSTEMS.contains(&system.as_str()) {
            return Err(InvalidAnswer::new(
                field,
                format!(
                    "{} is not one of {}",
                    quoted(system),
                    BUILD_SYSTEMS.join(", ")
                ),
            ));
        }
        if systems.contains(system) {
            return Err(InvalidAnswer::new(
                field,
                format!("{system} is listed twice"),
            ));
        }
        systems.push(system.clone());
    }
    let rk1_builders = (b.rk1_remote_builders && !nodes.is_empty()).then(|| {
        let entries: Vec<String> = nodes
            .iter()
            .map(|node| {
                let address = node.address.map_or(node.host.to_string(), |a| a.ip.to_string());
                format!(
                    "ssh://nixbuilder@{address} aarch64-linux /root/.ssh/nixbuilder 4 1 big-parallel"
                )
            })
            .collect();
        entries.join(" ; ")
    });
    Ok(Build {
        systems,
        foreign: b.foreign,
        rk1_remote_builders: b.rk1_remote_builders,
        rk1_builders,
    })
}

fn network_of(answers: &Answers) -> Result<Network, InvalidAnswer> {
    let n = &answers.network;
    let gateway = n
        .gateway
        .as_deref()
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            g.trim().parse::<Ipv4Addr>().map_err(|_| {
                InvalidAnswer::new(
                    "network.gateway",
                    format!("{} is not an IPv4 address", quoted(g)),
                )
            })
        })
        .transpose()?;
    let nameservers = n
        .nameservers
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            ns.trim().parse::<IpAddr>().map_err(|_| {
                InvalidAnswer::new(
                    format!("network.nameservers[{i}]"),
                    format!("{} is not an IP address", quoted(ns)),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tz_ok = !n.time_zone.is_empty()
        && n.time_zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-/".contains(&b));
    if !tz_ok {
        return Err(InvalidAnswer::new(
            "network.time-zone",
            format!(
                "{} is not a tz database name (e.g. UTC, Europe/Berlin)",
                quoted(&n.time_zone)
            ),
        ));
    }
    Ok(Network {
        gateway,
        nameservers,
        time_zone: n.time_zone.clone(),
    })
}

fn cluster_of(answers: &Answers) -> Result<(Vec<Board>, Vec<Node>), InvalidAnswer> {
    if answers.nodes.is_empty() {
        return Err(InvalidAnswer::new(
            "nodes",
            "an RK1 cluster needs at least one node",
        ));
    }
    if answers.nodes.len() > MAX_NODES {
        return Err(InvalidAnswer::new(
            "nodes",
            format!(
                "{} nodes; a repository holds 1 to {MAX_NODES}",
                answers.nodes.len()
            ),
        ));
    }
    if answers.boards.is_empty() {
        return Err(InvalidAnswer::new(
            "boards",
            "list the Turing Pi 2 board(s) the nodes sit in",
        ));
    }
    let mut boards: Vec<Board> = Vec::new();
    for (i, b) in answers.boards.iter().enumerate() {
        let name = BoardName::parse(&b.name)
            .map_err(|m| InvalidAnswer::new(format!("boards[{i}].name"), m))?;
        if boards.iter().any(|o| o.name == name) {
            return Err(InvalidAnswer::new(
                format!("boards[{i}].name"),
                format!("board '{}' is listed twice", b.name),
            ));
        }
        check_host_or_ip(&b.bmc_host)
            .map_err(|m| InvalidAnswer::new(format!("boards[{i}].bmc-host"), m))?;
        boards.push(Board {
            name,
            bmc_host: b.bmc_host.clone(),
        });
    }
    let capacity = boards.len() * SLOTS_PER_BOARD as usize;
    if answers.nodes.len() > capacity {
        return Err(InvalidAnswer::new(
            "nodes",
            format!(
                "{} nodes do not fit the {} slots of {} board(s) ({} slots per Turing Pi 2): add a board",
                answers.nodes.len(),
                capacity,
                boards.len(),
                SLOTS_PER_BOARD
            ),
        ));
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in answers.nodes.iter().enumerate() {
        let field = |f: &str| format!("nodes[{i}].{f}");
        let host = Hostname::parse(&n.host).map_err(|m| InvalidAnswer::new(field("host"), m))?;
        if let Some(m) = Module::ALL
            .into_iter()
            .find(|m| m.identical_image() == host.as_str())
        {
            return Err(InvalidAnswer::new(
                field("host"),
                format!("'{host}' is the name of the identical image for every {m} slot; choose another host name"),
            ));
        }
        if nodes.iter().any(|o| o.host == host) {
            return Err(InvalidAnswer::new(
                field("host"),
                format!("host '{host}' is listed twice; host names must be unique"),
            ));
        }
        let Some(board) = boards.iter().find(|b| b.name == *n.board) else {
            return Err(InvalidAnswer::new(
                field("board"),
                format!(
                    "{} is not a board (boards: {})",
                    quoted(&n.board),
                    boards
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        // Against the nodes before this one, as `add-node` checks a new node against all.
        let earlier = &answers.nodes[..i];
        let slot = check_slot(earlier, &n.board, n.slot)
            .map_err(|m| InvalidAnswer::new(field("slot"), m))?;
        let address = n
            .address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|a| check_address(earlier, a).map_err(|m| InvalidAnswer::new(field("address"), m)))
            .transpose()?;
        nodes.push(Node {
            host,
            board: board.name.clone(),
            slot,
            address,
            module: n.module.facts(answers.layout),
        });
    }
    Ok((boards, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(edit: impl FnOnce(&mut Answers)) -> InvalidAnswer {
        let mut a = Answers::default();
        edit(&mut a);
        Project::from_answers(&a).unwrap_err()
    }

    #[test]
    fn the_defaults_validate() {
        let p = Project::from_answers(&Answers::default()).unwrap();
        assert_eq!(p.nodes.len(), 4);
        assert_eq!(p.platforms, vec![Platform::Rk1]);
    }

    #[test]
    fn each_bad_answer_names_its_field() {
        assert_eq!(
            invalid(|a| a.nodes[1].host = "Node_1".into()).field,
            "nodes[1].host"
        );
        assert_eq!(
            invalid(|a| a.nodes[2].host = "rk1-node1".into()).field,
            "nodes[2].host"
        );
        assert_eq!(invalid(|a| a.nodes[2].slot = 1).field, "nodes[2].slot");
        assert_eq!(invalid(|a| a.nodes[0].slot = 5).field, "nodes[0].slot");
        assert_eq!(
            invalid(|a| {
                a.nodes.push(a.nodes[0].clone());
                a.nodes[4].host = "extra".into();
            })
            .field,
            "nodes"
        );
        assert_eq!(
            invalid(|a| a.ssh_keys = vec!["nope".into()]).field,
            "ssh-keys[0]"
        );
        assert_eq!(
            invalid(|a| a.secrets.admin_age_recipients = vec!["age1nope".into()]).field,
            "secrets.admin-age-recipients[0]"
        );
        assert_eq!(
            invalid(|a| a.admin_user = "root".into()).field,
            "admin-user"
        );
        assert_eq!(
            invalid(|a| a.nodes[0].host = "rk1".into()).field,
            "nodes[0].host"
        );
        assert_eq!(
            invalid(|a| a.nixpkgs_branch = "nixos-24.11".into()).field,
            "nixpkgs-branch"
        );
        assert_eq!(
            invalid(|a| a.build.systems = vec!["aarch64-darwin".into()]).field,
            "build.systems[0]"
        );
        assert_eq!(
            invalid(|a| a.nodes[0].address = Some("10.0.0.5/24".into())).field,
            "network.gateway"
        );
        assert_eq!(
            invalid(|a| a.state_version = Some("unstable".into())).field,
            "state-version"
        );
        assert_eq!(
            invalid(|a| a.temporary_password_hash = Some("hunter2hunter2hunter2".into())).field,
            "temporary-password-hash"
        );
        assert_eq!(
            invalid(
                |a| a.monitoring = crate::model::answers::MonitoringAnswers {
                    node_exporter: false,
                    open_port: true
                }
            )
            .field,
            "monitoring.open-port"
        );
        assert_eq!(
            invalid(|a| a.generic_x86_64.raw_efi = true).field,
            "generic-x86_64.raw-efi"
        );
        assert_eq!(
            invalid(|a| a.aws.image_format = AwsImageFormat::Raw).field,
            "aws.image-format"
        );
    }

    #[test]
    fn the_state_version_is_recorded_or_follows_the_release_branch() {
        let mut a = Answers {
            nixpkgs_branch: "nixos-26.05".into(),
            state_version: Some("25.05".into()),
            ..Answers::default()
        };
        let state_version = |a: &Answers| Project::from_answers(a).unwrap().state_version;
        assert_eq!(state_version(&a).as_str(), "25.05", "recorded wins");
        a.state_version = None;
        assert_eq!(state_version(&a).as_str(), "26.05", "else the branch's");
    }

    /// Each newtype's refusal reaches the user as one line naming the answers field, saying
    /// what is allowed (the rule itself is tested beside each type).
    #[test]
    fn each_newtype_names_its_field_in_one_line() {
        type Edit = fn(&mut Answers);
        let cases: [(&str, Edit, &str); 9] = [
            (
                "name",
                |a| a.name = "2lab".into(),
                "is not a project name (1-64",
            ),
            (
                "admin-user",
                |a| a.admin_user = "Admin".into(),
                "is not a user name (1-32",
            ),
            (
                "nixpkgs-branch",
                |a| a.nixpkgs_branch = "a b".into(),
                "is not a branch name (letters",
            ),
            (
                "nixpkgs-branch",
                |a| a.nixpkgs_branch = "nixos-24.11".into(),
                "use nixos-25.05 or newer",
            ),
            (
                "state-version",
                |a| a.state_version = Some("25.5".into()),
                "is not a NixOS release (YY.MM",
            ),
            (
                "dots",
                |a| a.dots = Some("you/dots".into()),
                "is not a flake URL (e.g.",
            ),
            (
                "temporary-password-hash",
                |a| a.temporary_password_hash = Some("hunter2".into()),
                "not a password hash: give the output of",
            ),
            (
                "boards[0].name",
                |a| a.boards[0].name = "TP1".into(),
                "is not an RFC 1123 host name (1-63",
            ),
            (
                "nodes[0].slot",
                |a| a.nodes[0].slot = 0,
                "slot 0 does not exist (a Turing Pi 2 has slots 1-4)",
            ),
        ];
        for (field, edit, allowed) in cases {
            let e = invalid(edit);
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(allowed), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_taken_slot_or_address_names_the_node_that_has_it() {
        let e = invalid(|a| a.nodes[2].slot = 1);
        assert_eq!(
            e.to_string(),
            "nodes[2].slot: slot 1 of board 'tp1' is already taken by rk1-node1"
        );
        let e = invalid(|a| {
            a.network.gateway = Some("10.0.0.1".into());
            a.nodes[0].address = Some("10.0.0.11/24".into());
            a.nodes[3].address = Some("10.0.0.11/16".into());
        });
        assert_eq!(
            e.to_string(),
            "nodes[3].address: 10.0.0.11 is already the address of rk1-node1"
        );
    }

    /// The nodes' age recipients come in with construction, looked up for validated nodes only:
    /// a hostile host name (say `../x`) never reaches the lookup, which names files after hosts.
    #[test]
    fn new_takes_the_recipients_of_the_validated_nodes() {
        let recipient =
            AgeRecipient::parse(&age::x25519::Identity::generate().to_public().to_string())
                .unwrap();
        let project = Project::new(&Answers::default(), |secrets, nodes| {
            assert_eq!(secrets.mode, SecretsMode::Sops);
            Ok::<_, InvalidAnswer>(
                nodes
                    .iter()
                    .map(|n| (n.host.to_string(), recipient.clone()))
                    .collect(),
            )
        })
        .unwrap();
        assert_eq!(
            project.node_age_recipients.keys().collect::<Vec<_>>(),
            ["rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"]
        );
        let mut a = Answers::default();
        a.nodes[0].host = "../x".into();
        let e = Project::new(&a, |_, _| -> Result<_, InvalidAnswer> {
            panic!("looked up for answers that do not validate")
        })
        .unwrap_err();
        assert_eq!(e.field, "nodes[0].host");
    }

    #[test]
    fn multi_cloud_platform_options_validate_when_their_platform_is_chosen() {
        let mut a = Answers {
            layout: Layout::MultiCloud,
            platforms: vec![Platform::Aws, Platform::GenericX86_64],
            ..Answers::default()
        };
        a.generic_x86_64.raw_efi = true;
        a.aws.image_format = AwsImageFormat::Raw;
        a.temporary_password_hash = Some("$6$saltsalt$abcdefghijklmnopqrstuv".into());
        let p = Project::from_answers(&a).unwrap();
        assert!(p.generic_x86_64.raw_efi);
        assert!(p.nodes.is_empty(), "no rk1, no nodes");
    }
}
