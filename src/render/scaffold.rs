//! Which template becomes which file, per layout. Kept in Rust rather than in file names so that
//! per-node files and platform choices are plain code a reviewer can read in one place.

use crate::model::{Layout, Node, Platform, Project};

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
pub fn outputs(project: &Project) -> Vec<Output<'_>> {
    let mut out = match project.layout {
        Layout::Rk1Cluster => vec![
            Output::file("rk1-cluster/flake.nix.tera", "flake.nix"),
            Output::file("rk1-cluster/common.nix.tera", "common.nix"),
            Output::file("shared/rk1-base.nix.tera", "rk1-base.nix"),
            Output::file("rk1-cluster/README.md.tera", "README.md"),
        ],
        Layout::MultiCloud => multi_cloud_outputs(project),
    };
    if project.has(Platform::Rk1) || project.has(Platform::GenericArm64) {
        // The first boot of an identical sd-image (rk1, generic-arm64) with a stamped identity
        // (flakesmith stamp).
        out.push(Output::file(
            "shared/firmware-identity.nix.tera",
            "firmware-identity.nix",
        ));
        out.push(Output::script(
            "shared/identity-from-firmware.sh.tera",
            "identity-from-firmware.sh",
        ));
    }
    if project.has(Platform::Rk1) {
        out.extend(
            project
                .nodes
                .iter()
                .map(|n| Output::for_node("shared/node.nix.tera", n)),
        );
        out.push(Output::script(
            "shared/rk1-deploy.sh.tera",
            "deploy/rk1-deploy.sh",
        ));
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

fn multi_cloud_outputs(project: &Project) -> Vec<Output<'_>> {
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
    for platform in &project.platforms {
        match platform {
            Platform::Rk1 => out.push(Output::file(
                "shared/rk1-base.nix.tera",
                "platforms/rk1.nix",
            )),
            Platform::Aws => {
                out.push(Output::file(
                    "multi-cloud/platforms/aws.nix.tera",
                    "platforms/aws.nix",
                ));
                out.push(Output::script(
                    "multi-cloud/deploy/aws-deploy.sh.tera",
                    "deploy/aws-deploy.sh",
                ));
            }
            Platform::Gcp => {
                out.push(Output::file(
                    "multi-cloud/platforms/gcp.nix.tera",
                    "platforms/gcp.nix",
                ));
                out.push(Output::script(
                    "multi-cloud/deploy/gcp-deploy.sh.tera",
                    "deploy/gcp-deploy.sh",
                ));
            }
            Platform::GenericArm64 => out.push(Output::file(
                "multi-cloud/platforms/generic-arm64.nix.tera",
                "platforms/generic-arm64.nix",
            )),
            Platform::GenericX86_64 => out.push(Output::file(
                "multi-cloud/platforms/generic-x86_64.nix.tera",
                "platforms/generic-x86_64.nix",
            )),
        }
    }
    out
}
