//! `flakesmith stamp`: copies of the identical image, one per node, each carrying that node's
//! identity in its FIRMWARE partition (see [`crate::stamp`]).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;

use super::{repo::Repo, Outcome};
use crate::{
    cli::StampArgs,
    images::IMAGES_DIR,
    model::{
        answers::{NodeRecipients, SecretsMode},
        Hostname, Node, Project,
    },
    secrets,
    stamp::{self, known_hosts, names, record, Identity, Source},
    UsageError,
};

/// The default `--out`, relative to the repository (git-ignored by the generated .gitignore).
pub const STAMPED_DIR: &str = "stamped";

pub fn run(args: StampArgs) -> Result<Outcome> {
    let opened = Repo::open(&args.repo.dir)?;
    let repo = opened.dir.as_path();
    let project = Project::from_answers(&opened.answers)?;

    let recorded = record::recorded(repo)?;
    let buildable: Vec<String> = project
        .image_targets()
        .into_iter()
        .filter(|t| record::STAMPABLE_TARGETS.contains(&t.as_str()))
        .collect();
    let given = match &args.image {
        Some(image) => Some(Source::open(image, &recorded, &buildable)?),
        None => None,
    };
    let hosts = match &given {
        Some(source) if source.target == GENERIC_TARGET => generic_boards(&project, &args)?,
        _ => selected_nodes(&project, &args)?,
    };
    // Each host is stamped into a copy of its own identical image: a node's compute module's
    // (rk1, cm4), or the generic boards' one.
    let mut targets: Vec<&str> = Vec::new();
    for host in &hosts {
        if !targets.contains(&host.image) {
            targets.push(host.image);
        }
    }
    let mut sources: BTreeMap<String, Source> = BTreeMap::new();
    match given {
        Some(source) => {
            if targets.len() > 1 {
                return Err(UsageError::new(format!(
                    "--image: these nodes hold different compute modules ({}), whose identical images differ; stamp each kind's nodes separately, or leave --image out",
                    targets.join(", ")
                ))
                .into());
            }
            if let Some(host) = hosts.iter().find(|h| h.image != source.target) {
                return Err(UsageError::new(format!(
                    "--image {}: is the identical {} image, and {} is stamped from the {} image",
                    source.path.display(),
                    source.target,
                    host.name,
                    host.image
                ))
                .into());
            }
            sources.insert(source.target.clone(), source);
        }
        None => {
            for target in targets {
                let known = recorded.get(target).ok_or_else(|| {
                    UsageError::new(format!(
                        "--image is required: no identical {target} image is recorded yet (build it with `flakesmith build {target}`)"
                    ))
                })?;
                let image = repo.join(IMAGES_DIR).join(&known.path);
                sources.insert(
                    target.to_owned(),
                    Source::open(&image, &recorded, &buildable)?,
                );
            }
        }
    }

    let out = args.out.clone().unwrap_or_else(|| repo.join(STAMPED_DIR));
    prepare_out(repo, &out)?;
    let removed = stamp::remove_partial(&out)?;
    if removed > 0 {
        eprintln!(
            "removed {removed} partial stamped image(s) an interrupted stamp left in {}",
            out.display()
        );
    }

    // Every node's identity is gathered before the first copy: a missing age identity stops the
    // command before any output exists.
    let mut identities = Vec::new();
    for host in &hosts {
        identities.push(identity_of(repo, &project, host)?);
    }
    // The previous node's copy is finished (on disk, named, pinned) once the next one is copied:
    // the disk writes it back meanwhile. A failure finishes what was complete, then stops.
    let mut pending: Option<(stamp::Pending, &Host, &String)> = None;
    for (host, (identity, public)) in hosts.iter().zip(&identities) {
        let source = &sources[host.image];
        let copied = stamp::copy(source, &host.name, &out);
        if let Some((previous, host, public)) = pending.take() {
            finish(repo, previous, host, public)?;
        }
        pending = Some((copied?.stamp(source, identity)?, host, public));
    }
    if let Some((last, host, public)) = pending {
        finish(repo, last, host, public)?;
    }
    if sources.contains_key(GENERIC_TARGET) && project.secrets.mode == SecretsMode::Sops {
        eprintln!(
            "A generic board decrypts its secrets with its host key (sops.age.sshKeyPaths): its recipient is `ssh-to-age < {}/<board>.{}.pub`; add it to .sops.yaml, then `sops updatekeys` each file in secrets/.",
            secrets::KEYS_DIR,
            stamp::HOST_KEY_FILE
        );
    }
    eprintln!(
        "These images hold the nodes' private keys (0600): flash them, then delete them. Commit {} (public keys only).",
        known_hosts::KNOWN_HOSTS
    );
    Ok(Outcome::Success)
}

/// Makes a stamped copy durable and named, pins its host key, and says so.
fn finish(repo: &Path, pending: stamp::Pending, host: &Host, public: &str) -> Result<()> {
    let stamped = pending.finish()?;
    let pinned = known_hosts::pin(repo, &pin_names(host), public)?;
    println!(
        "stamped {}: {} ({}){}",
        host.name,
        stamped.path.display(),
        match stamped.copy {
            stamp::CopyKind::Reflink => "reflinked",
            stamp::CopyKind::Sparse => "sparse copy",
        },
        if pinned {
            format!("; host key pinned in {}", known_hosts::KNOWN_HOSTS)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The image of generic aarch64 boards (multi-cloud platform generic-arm64).
const GENERIC_TARGET: &str = "generic-arm64";

/// Who one stamp is for: a node of flakesmith.yaml, or a generic board named on the command
/// line (flakesmith.yaml does not list those).
struct Host {
    name: String,
    node: Option<Node>,
    /// The identical image its copy is made from (a [`record::STAMPABLE_TARGETS`] name).
    image: &'static str,
}

fn selected_nodes(project: &Project, args: &StampArgs) -> Result<Vec<Host>> {
    let host = |node: &Node| Host {
        name: node.host.to_string(),
        node: Some(node.clone()),
        image: node.module.kind.identical_image(),
    };
    if args.all {
        if project.nodes.is_empty() {
            return Err(UsageError::new("--all: this repository has no Turing Pi 2 nodes").into());
        }
        return Ok(project.nodes.iter().map(host).collect());
    }
    if args.hosts.is_empty() {
        return Err(UsageError::new("name the nodes to stamp (HOST…), or pass --all").into());
    }
    let mut nodes: Vec<Node> = Vec::new();
    for host in &args.hosts {
        let node = project.node(host).ok_or_else(|| {
            let known: Vec<&str> = project.nodes.iter().map(|n| n.host.as_str()).collect();
            UsageError::new(format!(
                "HOST '{}' is not a node of this repository (nodes: {})",
                host.escape_debug(),
                known.join(", ")
            ))
        })?;
        if !nodes.iter().any(|n| n.host == node.host) {
            nodes.push(node.clone());
        }
    }
    Ok(nodes.iter().map(host).collect())
}

/// A generic-arm64 image is stamped for the boards named on the command line: each gets a host
/// name and a host key of its own (keys/<board>.*), pinned in deploy/known_hosts. A name of an
/// RK1 node is refused, since those keys are the node's.
fn generic_boards(project: &Project, args: &StampArgs) -> Result<Vec<Host>> {
    if args.all {
        return Err(UsageError::new(
            "--all: a generic-arm64 image is stamped for the boards you name (HOST…); flakesmith.yaml does not list generic boards",
        )
        .into());
    }
    if args.hosts.is_empty() {
        return Err(UsageError::new("name the generic boards to stamp (HOST…)").into());
    }
    let mut boards: Vec<Host> = Vec::new();
    for host in &args.hosts {
        let name = Hostname::parse(host).map_err(|why| UsageError::new(format!("HOST: {why}")))?;
        if project.node(name.as_str()).is_some() {
            return Err(UsageError::new(format!(
                "HOST '{name}' is a node of this repository: a generic board needs a name of its own (its keys would be the node's)"
            ))
            .into());
        }
        // `nixos-rebuild switch --flake .` picks the configuration named like the host: a board
        // called `rk1` or `aws` would be switched to that machine's system.
        if project.image_targets().iter().any(|t| t == name.as_str()) {
            return Err(UsageError::new(format!(
                "HOST '{name}' is the name of an image and configuration in this flake: a generic board needs a name of its own (nixos-rebuild would switch it to that configuration)"
            ))
            .into());
        }
        if !boards.iter().any(|b| b.name == name.as_str()) {
            boards.push(Host {
                name: name.to_string(),
                node: None,
                image: GENERIC_TARGET,
            });
        }
    }
    Ok(boards)
}

/// The names a host is reached by: its host name and a node's static address.
fn pin_names(host: &Host) -> Vec<String> {
    let mut names = vec![host.name.clone()];
    if let Some(address) = host.node.as_ref().and_then(|n| n.address) {
        names.push(address.ip.to_string());
    }
    names
}

/// The host's identity files and its public host key line. An RK1 node also carries its age
/// identity (age-keys mode) and its static address; a generic board decrypts with its host key
/// and takes its address by DHCP.
fn identity_of(repo: &Path, project: &Project, target: &Host) -> Result<(Identity, String)> {
    let host = target.name.as_str();
    let (host_key, made) = stamp::ensure_host_key(repo, host)?;
    if made {
        eprintln!(
            "made the SSH host key of {host} in {}/ (git-ignored, 0600): back it up",
            secrets::KEYS_DIR
        );
    }
    let mut identity = Identity::new(host, &host_key);
    let Some(node) = &target.node else {
        return Ok((identity, host_key.public.clone()));
    };
    if project.secrets.mode == SecretsMode::Sops
        && project.secrets.node_recipients == NodeRecipients::AgeKeys
    {
        let path = secrets::identity_path(repo, host);
        if !path.is_file() {
            return Err(UsageError::new(format!(
                "{}/{host}.age is missing: restore it from your backup, or run `flakesmith update` to make a new one (then re-encrypt the secrets)",
                secrets::KEYS_DIR
            ))
            .into());
        }
        // Validated (one X25519 identity), then carried as the file it is.
        secrets::read_identity(&path, host)?;
        identity.add(names::AGE_KEY, fs_err::read(&path)?);
    }
    if let Some(address) = node.address {
        identity.add(
            names::NETWORK,
            network_file(project, &address.to_string()).into_bytes(),
        );
    }
    Ok((identity, host_key.public.clone()))
}

/// The systemd-networkd file of a static address, as node.nix sets it for per-node images.
fn network_file(project: &Project, address: &str) -> String {
    let mut text = format!(
        "# Written by flakesmith stamp; installed at first boot.\n[Match]\nType=ether\n\n[Network]\nAddress={address}\n"
    );
    if let Some(gateway) = project.network.gateway {
        text.push_str(&format!("Gateway={gateway}\n"));
        if project.network.nameservers.is_empty() {
            text.push_str(&format!("DNS={gateway}\n"));
        }
    }
    for ns in &project.network.nameservers {
        text.push_str(&format!("DNS={ns}\n"));
    }
    text
}

/// Creates `out` (0700). Inside a git repository it must be git-ignored: stamped images hold
/// private keys.
fn prepare_out(repo: &Path, out: &Path) -> Result<()> {
    if fs_err::symlink_metadata(out).is_ok_and(|m| !m.is_dir()) {
        return Err(UsageError::new(format!("--out {}: not a folder", out.display())).into());
    }
    secrets::create_private_dir(out)?;
    let (Ok(repo_abs), Ok(out_abs)) = (fs_err::canonicalize(repo), fs_err::canonicalize(out))
    else {
        return Ok(());
    };
    if let Ok(inside) = out_abs.strip_prefix(&repo_abs) {
        if repo_abs.join(".git").exists() && !git_ignores(&repo_abs, inside) {
            return Err(UsageError::new(format!(
                "--out {}: inside the repository but not git-ignored; stamped images hold private keys (add {}/ to .gitignore)",
                out.display(),
                inside.display()
            ))
            .into());
        }
    }
    Ok(())
}

fn git_ignores(repo: &Path, inside: &Path) -> bool {
    // A file that would be created there: check-ignore answers for paths, not only files.
    let probe: PathBuf = inside.join("node.img");
    std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["check-ignore", "-q", "--"])
        .arg(probe)
        .status()
        .is_ok_and(|s| s.success())
}
