//! Which template becomes which file, per layout. Kept in Rust rather than in file names so that
//! per-node files and platform choices are plain code a reviewer can read in one place.

use crate::model::{Layout, Machine, Node, Project};

/// One file to render: the template (a path under `scaffolds/`) and where its output goes.
#[derive(Debug, Clone)]
pub struct Output<'p> {
    pub template: &'static str,
    pub path: String,
    /// Set for per-node files; the template sees it as `node`.
    pub node: Option<&'p Node>,
    pub executable: bool,
}

impl<'p> Output<'p> {
    fn file(template: &'static str, path: impl Into<String>) -> Self {
        Self {
            template,
            path: path.into(),
            node: None,
            executable: false,
        }
    }

    fn script(template: &'static str, path: impl Into<String>) -> Self {
        Self {
            executable: true,
            ..Self::file(template, path)
        }
    }

    fn for_node(template: &'static str, node: &'p Node) -> Self {
        Self {
            node: Some(node),
            ..Self::file(template, format!("nodes/{}.nix", node.host))
        }
    }
}

/// Every file the project's layout generates from a template.
pub fn outputs<'p>(project: &'p Project, machines: &[Machine]) -> Vec<Output<'p>> {
    let mut out = match project.layout {
        Layout::Rk1Cluster => vec![
            Output::file("rk1-cluster/flake.nix.tera", "flake.nix"),
            Output::file("rk1-cluster/common.nix.tera", "common.nix"),
            Output::file("rk1-cluster/README.md.tera", "README.md"),
        ],
        Layout::MultiCloud => multi_cloud_outputs(machines),
    };
    // Each machine's upload or flash script, in either layout (rk1-deploy.sh for the slots).
    out.extend(machines.iter().filter_map(|m| {
        m.deploy_script
            .as_ref()
            .map(|script| Output::script(script.template, script.path.clone()))
    }));
    if machines.iter().any(|m| m.stampable) {
        // The first boot of an identical sd-image (rk1, cm4, generic-arm64) with a stamped
        // identity (flakesmith stamp).
        out.push(Output::file(
            "shared/firmware-identity.nix.tera",
            "firmware-identity.nix",
        ));
        out.push(Output::script(
            "shared/identity-from-firmware.sh.tera",
            "identity-from-firmware.sh",
        ));
    }
    if machines.iter().any(|m| m.has_slots) {
        // The hardware module of each kind of compute module the slots hold.
        out.extend(
            project
                .modules()
                .into_iter()
                .map(|m| Output::file(m.base_template(), m.base_file(project.layout))),
        );
        out.extend(
            project
                .nodes
                .iter()
                .map(|n| Output::for_node("shared/node.nix.tera", n)),
        );
        out.push(Output::script(
            "shared/post-deploy.sh.tera",
            "deploy/post-deploy.sh",
        ));
        if project.build.rk1_remote_builders {
            out.push(Output::file(
                "shared/remote-builder.nix.tera",
                "remote-builder.nix",
            ));
        }
    }
    out.push(Output::file("shared/gitignore.tera", ".gitignore"));
    out.push(match project.layout {
        Layout::Rk1Cluster => {
            Output::script("shared/build-all-images.sh.tera", "build-all-images.sh")
        }
        // Builds every platform's images, not only the nodes'.
        Layout::MultiCloud => Output::script(
            "multi-cloud/build-all-images.sh.tera",
            "build-all-images.sh",
        ),
    });
    if project.secrets.mode == crate::model::answers::SecretsMode::Sops {
        out.push(Output::file("shared/sops.yaml.tera", ".sops.yaml"));
        out.push(Output::file(
            "shared/secrets.yaml.tera",
            "secrets/secrets.yaml",
        ));
        out.push(Output::file(
            "shared/image-login.nix.tera",
            "image-login.nix",
        ));
    } else {
        out.push(Output::file(
            "shared/deployment-key.nix.tera",
            "deployment-key.nix",
        ));
    }
    out
}

fn multi_cloud_outputs<'p>(machines: &[Machine]) -> Vec<Output<'p>> {
    let mut out = vec![
        Output::file("multi-cloud/flake.nix.tera", "flake.nix"),
        Output::file("multi-cloud/common/base.nix.tera", "common/base.nix"),
        Output::file(
            "multi-cloud/common/security.nix.tera",
            "common/security.nix",
        ),
        Output::file(
            "multi-cloud/common/monitoring.nix.tera",
            "common/monitoring.nix",
        ),
        Output::file("multi-cloud/README.md.tera", "README.md"),
    ];
    for machine in machines {
        // A slotted machine's hardware modules, one per kind of compute module its slots hold,
        // come with its nodes.
        if !machine.has_slots {
            out.push(Output::file(machine.template, machine.module.clone()));
        }
    }
    out
}
