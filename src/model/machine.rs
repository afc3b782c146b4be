//! What each platform is, written once: its Nix system, its module template, its images, how they
//! get onto a machine, the tools its scripts call and what init suggests next. Computed once from
//! a validated [`Project`]; the templates loop over these and test their typed fields, so a
//! platform is added here (and in its own template), not in every file that mentions platforms.
//! book/src/contributing.md, "Adding a machine", is the recipe.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{answers::AwsImageFormat, Answers, Layout, Module, Platform, Project};

/// One chosen platform, as the templates and init's next steps see it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// The platform's name: its flake configuration, package and `platforms/<name>.nix`.
    pub name: &'static str,
    /// The Nix system its images run on.
    pub system: &'static str,
    /// The architecture, as the README writes it: "x86_64" or "aarch64".
    pub arch: &'static str,
    /// How prose names it: "AWS", "RK1", "generic-arm64".
    pub label: &'static str,
    pub description: &'static str,
    /// What its module in the repository is (README, "What is here").
    pub about: &'static str,
    /// Its module in a multi-cloud repository, and the template that module is rendered from.
    pub module: String,
    #[serde(skip)]
    pub template: &'static str,
    /// The images built from this machine's own configurations (a slotted machine's images are
    /// its nodes' and the identical one, which the templates list with the nodes).
    pub images: Vec<Image>,
    /// The configurations that keep an SSH host key from boot to boot, so that sops-nix can
    /// decrypt with it once its recipient is in .sops.yaml (not a live ISO's: new at every boot).
    pub host_key_configurations: Vec<String>,
    /// Its upload script under deploy/, when its images reach their machines that way.
    pub deploy_script: Option<DeployScript>,
    /// What `build-all-images.sh` prints after a build: how the image reaches its machine.
    pub deploy_hint: String,
    /// Packages the dev shell needs for its scripts.
    pub shell_packages: &'static [&'static str],
    /// Sits in the slots of a Turing Pi 2 board (then the answers list boards and nodes), and is
    /// flashed through the board's management controller (`tpi flash`).
    pub has_slots: bool,
    /// Its sd-image's post-build step writes a bootloader with rk-inject (the repository carries
    /// rk-inject's source).
    pub injects_bootloader: bool,
    /// Its main image is a live system (an ISO with its root in memory).
    pub live_iso: bool,
    /// Its one sd-image, without a host name, serves every board of this kind: `flakesmith
    /// stamp` gives each copy its board's identity, which firmware-identity.nix moves into
    /// place at first boot.
    pub stampable: bool,
    /// init's "Next steps": before `./build-all-images.sh`, and after it.
    #[serde(skip)]
    pub next_steps: Vec<Step>,
    #[serde(skip)]
    pub steps_after_build: Vec<Step>,
}

/// One image: `packages.<system>.<name>`, from `config.system.build.<attr>` of a configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub name: String,
    pub configuration: String,
    pub attr: &'static str,
    /// The README's "Result" column after the attribute (": what the build leaves").
    pub result: String,
    /// The README's "Deploy" column.
    pub deploy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployScript {
    pub template: &'static str,
    /// Where it goes in the repository, e.g. deploy/aws-deploy.sh.
    pub path: String,
}

/// A command init suggests, and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub command: String,
    pub what: String,
}

fn step(command: impl Into<String>, what: impl Into<String>) -> Step {
    Step {
        command: command.into(),
        what: what.into(),
    }
}

/// The facts about a platform that do not depend on the answers.
pub(crate) struct Spec {
    pub name: &'static str,
    pub system: &'static str,
    pub description: &'static str,
    /// Chosen unless the user says otherwise (the prompt starts with it checked, `--yes` takes
    /// it): the clouds, the cluster and the generic images. A particular board is opted into.
    pub by_default: bool,
}

impl Platform {
    pub(crate) fn spec(self) -> Spec {
        let (name, system, description, by_default) = match self {
            Platform::Aws => ("aws", "x86_64-linux", "AWS EC2 AMI (x86_64)", true),
            Platform::Gcp => (
                "gcp",
                "x86_64-linux",
                "Google Compute Engine image (x86_64)",
                true,
            ),
            Platform::Rk1 => (
                "rk1",
                "aarch64-linux",
                "Turing RK1 nodes on Turing Pi 2 boards (aarch64)",
                true,
            ),
            Platform::GenericArm64 => (
                "generic-arm64",
                "aarch64-linux",
                "generic aarch64 SD-card image",
                true,
            ),
            // The raw UEFI disk image is off unless asked for (--raw-efi, the next question).
            Platform::GenericX86_64 => (
                "generic-x86_64",
                "x86_64-linux",
                "generic x86_64 server: bootable ISO (a raw UEFI disk image is optional)",
                true,
            ),
            Platform::OrangePi5Plus => (
                "orangepi-5-plus",
                "aarch64-linux",
                "Orange Pi 5 Plus (RK3588) board: SD card or eMMC image with its U-Boot (aarch64)",
                false,
            ),
        };
        Spec {
            name,
            system,
            description,
            by_default,
        }
    }

    /// The platforms chosen when the user does not choose (see [`Spec::by_default`]).
    pub fn defaults() -> Vec<Platform> {
        Self::ALL
            .into_iter()
            .filter(|p| p.spec().by_default)
            .collect()
    }

    /// Sits in the slots of a Turing Pi 2 board: the one place that says which platforms have
    /// nodes.
    pub fn has_slots(self) -> bool {
        matches!(self, Platform::Rk1)
    }

    /// What this platform is in `project`.
    pub fn machine(self, project: &Project) -> Machine {
        let Spec {
            name,
            system,
            description,
            ..
        } = self.spec();
        let arch = system.split('-').next().unwrap_or(system);
        let image = |attr: &'static str, result: String, deploy: String| Image {
            name: name.to_owned(),
            configuration: name.to_owned(),
            attr,
            result,
            deploy,
        };
        let script = |template: &'static str| {
            Some(DeployScript {
                template,
                path: format!("deploy/{name}-deploy.sh"),
            })
        };
        let mut m = Machine {
            name,
            system,
            arch,
            label: name,
            description,
            about: "",
            module: format!("platforms/{name}.nix"),
            template: "",
            images: Vec::new(),
            host_key_configurations: Vec::new(),
            deploy_script: None,
            deploy_hint: String::new(),
            shell_packages: &[],
            has_slots: self.has_slots(),
            injects_bootloader: false,
            live_iso: false,
            stampable: false,
            next_steps: Vec::new(),
            steps_after_build: Vec::new(),
        };
        match self {
            Platform::Aws => {
                m.label = "AWS";
                m.about = "the AMI: nixpkgs' EC2 image builder and runtime configuration";
                m.template = "multi-cloud/platforms/aws.nix.tera";
                let format = match project.aws.image_format {
                    AwsImageFormat::Vhd => "VHD",
                    AwsImageFormat::Raw => "raw",
                };
                m.images.push(image(
                    "amazonImage",
                    format!(": a {format} disk and `nix-support/image-info.json`"),
                    "`deploy/aws-deploy.sh --region R --bucket B`: S3 upload, `ec2 import-snapshot`, `ec2 register-image` (ENA, boot mode from image-info.json), tags".into(),
                ));
                m.host_key_configurations.push(name.into());
                m.deploy_script = script("multi-cloud/deploy/aws-deploy.sh.tera");
                m.deploy_hint = "AWS:  deploy/aws-deploy.sh --region REGION --bucket BUCKET".into();
                m.shell_packages = &["awscli2"];
                m.next_steps = vec![
                    step("flakesmith build aws", "the AMI's disk image"),
                    step(
                        "./deploy/aws-deploy.sh --region REGION --bucket BUCKET --dry-run",
                        "S3 upload, import-snapshot, register-image",
                    ),
                ];
            }
            Platform::Gcp => {
                m.label = "GCP";
                m.about =
                    "the Compute Engine image: nixpkgs' GCE image builder and runtime configuration";
                m.template = "multi-cloud/platforms/gcp.nix.tera";
                m.images.push(image(
                    "googleComputeImage",
                    ": `<name>.tar.gz` holding `disk.raw`".into(),
                    "`deploy/gcp-deploy.sh --project P --bucket B`: upload to Cloud Storage, `gcloud compute images create` (UEFI)".into(),
                ));
                m.host_key_configurations.push(name.into());
                m.deploy_script = script("multi-cloud/deploy/gcp-deploy.sh.tera");
                m.deploy_hint =
                    "GCP:  deploy/gcp-deploy.sh --project PROJECT --bucket BUCKET".into();
                m.shell_packages = &["google-cloud-sdk"];
                m.next_steps = vec![
                    step("flakesmith build gcp", "the Compute Engine image"),
                    step(
                        "./deploy/gcp-deploy.sh --project PROJECT --bucket BUCKET --dry-run",
                        "Cloud Storage upload, images create",
                    ),
                ];
            }
            Platform::Rk1 => {
                m.label = Module::label_of(&project.modules());
                m.about = "Turing RK1 hardware, and one file per node (host name, address)";
                m.template = "shared/rk1-base.nix.tera";
                m.deploy_script = script("shared/rk1-deploy.sh.tera");
                m.deploy_hint = "RK1:  deploy/rk1-deploy.sh".into();
                m.shell_packages = &["tpi"];
                m.stampable = true;
                // Only when a slot holds a module whose image needs one (an RK1, not a CM4).
                m.injects_bootloader = project.modules().iter().any(|m| m.injects_bootloader());
                if let Some(node) = project.nodes.first() {
                    m.next_steps.push(step(
                        format!("flakesmith build {}", node.host),
                        format!("one {} node's eMMC image", node.module.name.to_uppercase()),
                    ));
                }
                m.steps_after_build = vec![
                    step(
                        "./deploy/rk1-deploy.sh --dry-run",
                        "flash the nodes through the BMC",
                    ),
                    step(
                        "./deploy/post-deploy.sh --dry-run",
                        "after first boot: pin host keys, hand over keys, switch",
                    ),
                ];
            }
            Platform::GenericArm64 => {
                m.about = "a generic aarch64 SD-card image";
                m.template = "multi-cloud/platforms/generic-arm64.nix.tera";
                m.stampable = true;
                m.images.push(image(
                    "sdImage",
                    ": `sd-image/*.img`, raw, no host name: one image for every generic board".into(),
                    "`flakesmith build generic-arm64`, then `flakesmith stamp BOARD… --image images/generic-arm64/sd-image/*.img` gives each board's copy its name and a pinned host key; `sudo dd of=/dev/sdX bs=4M conv=fsync < stamped/BOARD.img`".into(),
                ));
                m.host_key_configurations.push(name.into());
                m.deploy_hint = "generic-arm64:  sudo dd of=/dev/sdX bs=4M conv=fsync < ${out}generic-arm64/sd-image/*.img (or a copy per board with its name and host key: flakesmith stamp, README)".into();
                m.next_steps = vec![step(
                    "flakesmith build generic-arm64",
                    "SD-card image (images/generic-arm64/sd-image/*.img), stamped per board",
                )];
            }
            Platform::GenericX86_64 => {
                m.about = "a generic x86_64 server: hardware support shared by its images";
                m.template = "multi-cloud/platforms/generic-x86_64.nix.tera";
                m.live_iso = true;
                m.images.push(image(
                    "isoImage",
                    ": `iso/*.iso`, a live system that boots from CD or USB by UEFI, and by BIOS only when built on x86_64 (built on aarch64, nixpkgs' `isoImage.makeBiosBootable` is off and the USB boot sector with it)".into(),
                    "write it to a USB stick with `dd`, or attach it as a virtual CD".into(),
                ));
                m.deploy_hint = "generic-x86_64: write ${out}generic-x86_64/iso/*.iso to a USB stick, or boot it as a CD".into();
                m.next_steps = vec![step(
                    "flakesmith build generic-x86_64",
                    "bootable ISO (images/generic-x86_64/iso/*.iso)",
                )];
                if project.generic_x86_64.raw_efi {
                    let efi = format!("{name}-efi");
                    m.images.push(Image {
                        name: format!("{name}-raw-efi"),
                        configuration: efi.clone(),
                        attr: "image",
                        result: " of `nixos/modules/virtualisation/disk-image.nix`: a raw disk with an ESP (systemd-boot) and an ext4 root that grows to fill the disk".into(),
                        deploy: format!("`sudo dd if=$(echo result/*.img) of=/dev/sdX bs=4M conv=fsync` onto the server's disk; afterwards `nixos-rebuild switch --flake .#{efi}`"),
                    });
                    m.host_key_configurations.push(efi);
                    m.next_steps.push(step(
                        "flakesmith build generic-x86_64-raw-efi",
                        "raw UEFI disk image for the server's disk",
                    ));
                }
            }
            Platform::OrangePi5Plus => {
                m.label = "Orange Pi 5 Plus";
                m.about =
                    "Orange Pi 5 Plus hardware and its image, with U-Boot written by rk-inject";
                m.template = "multi-cloud/platforms/orangepi-5-plus.nix.tera";
                m.images.push(image(
                    "sdImage",
                    ": raw `sd-image/nixos-orangepi-5-plus.img`, the board's U-Boot in front of the first partition".into(),
                    "`sudo dd if=$(echo result/sd-image/*.img) of=/dev/sdX bs=4M conv=fsync` onto an SD card or the eMMC".into(),
                ));
                m.host_key_configurations.push(name.into());
                m.deploy_hint = "orangepi-5-plus: write ${out}orangepi-5-plus/sd-image/*.img to an SD card or the eMMC with dd".into();
                m.injects_bootloader = true;
                m.next_steps = vec![step(
                    "flakesmith build orangepi-5-plus",
                    "SD/eMMC image (images/orangepi-5-plus/sd-image/*.img)",
                )];
            }
        }
        m
    }
}

/// The project's machines, in the order of its platforms.
pub fn machines(project: &Project) -> Vec<Machine> {
    project
        .platforms
        .iter()
        .map(|p| p.machine(project))
        .collect()
}

/// For each platform flakesmith knows (chosen or not), whether the project chose it, keyed by its
/// name with '_' for '-': what the templates test for a platform's own prose (`has.aws`). Every
/// platform has a key, so a misspelt one is an undefined variable, which rendering refuses.
pub fn chosen(project: &Project) -> BTreeMap<String, bool> {
    Platform::ALL
        .into_iter()
        .map(|p| (p.name().replace('-', "_"), project.has(p)))
        .collect()
}

impl Answers {
    /// The platforms these answers choose: the rk1-cluster layout builds rk1 alone.
    pub fn chosen_platforms(&self) -> Vec<Platform> {
        match self.layout {
            Layout::Rk1Cluster => vec![Platform::Rk1],
            Layout::MultiCloud => self.platforms.clone(),
        }
    }

    /// Whether a chosen platform sits in Turing Pi 2 slots, so that boards and nodes mean
    /// something.
    pub fn has_slots(&self) -> bool {
        self.chosen_platforms().iter().any(|p| p.has_slots())
    }
}
