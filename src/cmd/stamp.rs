//! `flakesmith stamp`: copies of the identical image, one per node, each carrying that node's
//! identity in its FIRMWARE partition (see [`crate::stamp`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::Result;

use super::{repo::Repo, Outcome};
use crate::{
    cli::StampArgs,
    images::IMAGES_DIR,
    model::{
        answers::{NodeRecipients, SecretsMode},
        Module, Node, Project,
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
    let nodes = selected_nodes(&project, &args)?;

    let recorded = record::recorded(repo)?;
    // Each node is stamped into a copy of its compute module's identical image.
    let kinds: BTreeSet<Module> = nodes.iter().map(|n| n.module.kind).collect();
    if args.image.is_some() && kinds.len() > 1 {
        return Err(UsageError::new(format!(
            "--image: these nodes hold different compute modules ({}), whose identical images differ; stamp each kind's nodes separately, or leave --image out",
            kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let all_recorded: Vec<record::Recorded> = recorded.values().cloned().collect();
    let mut sources = BTreeMap::new();
    for kind in kinds {
        let image = match &args.image {
            Some(image) => image.clone(),
            None => {
                let target = kind.identical_image();
                let known = recorded.get(target).ok_or_else(|| {
                    UsageError::new(format!(
                        "--image is required: no identical {kind} image is recorded yet (build it with `flakesmith build {target}`)"
                    ))
                })?;
                repo.join(IMAGES_DIR).join(&known.path)
            }
        };
        sources.insert(kind, Source::open(&image, &all_recorded)?);
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
    for node in &nodes {
        identities.push(identity_of(repo, &project, node)?);
    }
    for (node, (identity, public)) in nodes.iter().zip(&identities) {
        let stamped = stamp::stamp(&sources[&node.module.kind], identity, &out)?;
        let pinned = known_hosts::pin(repo, &pin_names(node), public)?;
        println!(
            "stamped {}: {} ({}){}",
            node.host,
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
    }
    eprintln!(
        "These images hold the nodes' private keys (0600): flash them, then delete them. Commit {} (public keys only).",
        known_hosts::KNOWN_HOSTS
    );
    Ok(Outcome::Success)
}

fn selected_nodes(project: &Project, args: &StampArgs) -> Result<Vec<Node>> {
    if args.all {
        if project.nodes.is_empty() {
            return Err(UsageError::new("--all: this repository has no RK1 nodes").into());
        }
        return Ok(project.nodes.clone());
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
    Ok(nodes)
}

/// The names a node is reached by: its host name and its static address.
fn pin_names(node: &Node) -> Vec<String> {
    let mut names = vec![node.host.to_string()];
    if let Some(address) = node.address {
        names.push(address.ip.to_string());
    }
    names
}

/// The node's identity files and its public host key line.
fn identity_of(repo: &Path, project: &Project, node: &Node) -> Result<(Identity, String)> {
    let host = node.host.as_str();
    let (host_key, made) = stamp::ensure_host_key(repo, host)?;
    if made {
        eprintln!(
            "made the SSH host key of {host} in {}/ (git-ignored, 0600): back it up",
            secrets::KEYS_DIR
        );
    }
    let mut identity = Identity::new(host, &host_key);
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
