//! The multi-cloud layout: which files a platform choice brings, that each image comes from the
//! right nixpkgs builder with the right settings (real Nix evaluating the generated flake against
//! the stand-ins in tests/fixtures), that the security and monitoring defaults survive the merge
//! with the cloud modules, that none of the guide's mistakes appear, and that the scripts do what
//! they say (against stand-in `aws` and `gcloud` that record their arguments).
//!
//! What the stand-ins cannot show: that AWS and GCP accept the uploads (the stand-in CLIs answer
//! what the real ones answer when all goes well), or that real nixpkgs evaluates and builds the
//! images (nixos_options.rs checks every option against the list confirmed in nixpkgs).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use flakesmith::model::{
    answers::{AwsImageFormat, ForeignBuild, NodeRecipients},
    Answers, Layout, Platform,
};
use flakesmith::render::Tree;
use serde_json::Value;

use crate::nix_eval::{keys, Flake};
use crate::support::{snapshot_cases, Project, TestRepo};

/// flakesmith's default answers (and the test key) with the multi-cloud layout.
fn multi_cloud(platforms: &[Platform]) -> Project {
    edit(Project::default(), |a| {
        a.layout = Layout::MultiCloud;
        a.platforms = platforms.to_vec();
    })
}

fn edit(p: Project, f: impl FnOnce(&mut Answers)) -> Project {
    let mut answers = p.answers().clone();
    f(&mut answers);
    Project::from_answers(answers)
}

/// Multi-cloud repositories beyond the snapshot cases, chosen so that together they take every
/// branch of the multi-cloud templates (support::all_variants adds them to every check).
pub fn variants() -> Vec<(String, Tree)> {
    let generic_only = edit(
        multi_cloud(&[Platform::GenericArm64, Platform::GenericX86_64])
            .with_sops()
            .built_on(&["x86_64-linux"]),
        |a| {
            a.secrets.node_recipients = NodeRecipients::SshHostKeys;
            a.monitoring.node_exporter = false;
            a.ssh_keys.clear();
            a.nodes.clear();
            a.boards.clear();
        },
    );
    let rk1_only = multi_cloud(&[Platform::Rk1])
        .with_nodes(2)
        .with_bootloader_blob()
        .with_static_addresses()
        .emulated();
    vec![
        ("cloud-generic-only".to_owned(), generic_only.render()),
        ("cloud-rk1-only-blob".to_owned(), rk1_only.render()),
    ]
}

/// The snapshot cases of the multi-cloud layout and the extra variants, as answers.
fn cases() -> Vec<(String, Answers)> {
    let mut cases: Vec<(String, Answers)> = snapshot_cases()
        .into_iter()
        .filter(|c| c.answers.layout == Layout::MultiCloud)
        .map(|c| (c.name, c.answers))
        .collect();
    assert!(
        cases.len() >= 2,
        "the multi-cloud snapshot cases are missing"
    );
    let generic_only = edit(
        multi_cloud(&[Platform::GenericArm64, Platform::GenericX86_64]).built_on(&["x86_64-linux"]),
        |a| {
            a.nodes.clear();
            a.boards.clear();
            // A release where the RFC 166 formatter is still called nixfmt-rfc-style.
            a.nixpkgs_branch = "nixos-25.05".into();
        },
    );
    cases.push((
        "cloud-generic-x86-only".to_owned(),
        generic_only.answers().clone(),
    ));
    cases.push((
        "cloud-rk1-only-blob".to_owned(),
        multi_cloud(&[Platform::Rk1])
            .with_nodes(2)
            .with_bootloader_blob()
            .emulated()
            .answers()
            .clone(),
    ));
    cases
}

/// Images and configurations the answers should produce: (image, configuration, system).
fn expected_images(project: &flakesmith::model::Project) -> Vec<(String, String, &'static str)> {
    let mut images = Vec::new();
    for platform in &project.platforms {
        let name = platform.name().to_owned();
        match platform {
            Platform::Rk1 => {
                for node in &project.nodes {
                    images.push((
                        node.host.to_string(),
                        node.host.to_string(),
                        "aarch64-linux",
                    ));
                }
                // The identical image, for deploy/rk1-deploy.sh --identical.
                images.push(("rk1".into(), "rk1".into(), "aarch64-linux"));
            }
            Platform::GenericX86_64 => {
                images.push((name.clone(), name, "x86_64-linux"));
                if project.generic_x86_64.raw_efi {
                    images.push((
                        "generic-x86_64-raw-efi".into(),
                        "generic-x86_64-efi".into(),
                        "x86_64-linux",
                    ));
                }
            }
            _ => images.push((name, platform.name().to_owned(), platform.system())),
        }
    }
    images
}

const PACKAGE_FACTS: &str = r#"ps: builtins.mapAttrs (_: builtins.mapAttrs (_: d: {
  inherit (d) name system drvPath;
  kind = d.imageKind or "sdImage";
  format = d.format or null;
  bootMode = d.bootMode or null;
  partitionTableType = d.partitionTableType or null;
  efiBootable = d.efiBootable or null;
  usbBootable = d.usbBootable or null;
  firmware = d.populateFirmwareCommands or null;
  postBuild = d.postBuildCommands or null;
})) ps"#;

const CONFIG_FACTS: &str = r#"cs: builtins.mapAttrs (name: c: let cfg = c.config; in {
  firewall = cfg.networking.firewall.enable;
  ssh = cfg.services.openssh.settings;
  fail2ban = cfg.services.fail2ban.enable;
  exporter = cfg.services.prometheus.exporters.node or null;
  journaldSettings = cfg.services.journald ? settings;
  journald = if cfg.services.journald ? settings
    then "SystemMaxUse=" + cfg.services.journald.settings.Journal.SystemMaxUse
    else cfg.services.journald.extraConfig;
  stateVersion = cfg.system.stateVersion;
  timeZone = cfg.time.timeZone;
  admin = cfg.users.users.${builtins.head (builtins.attrNames cfg.users.users)};
  sudoPassword = cfg.security.sudo.wheelNeedsPassword;
  mutableUsers = cfg.users.mutableUsers or null;
  expire = cfg.systemd.services.expire-temporary-password.script or null;
  ssmAgent = cfg.services.amazon-ssm-agent.enable or false;
  osLogin = cfg.security.googleOsLogin.enable or false;
  hostPlatform = cfg.nixpkgs.hostPlatform;
  dots = cfg.environment.variables.FAKE_DOTS or "absent";
  toplevel = cfg.system.build.toplevel.drvPath;
}) cs"#;

#[test]
fn multi_cloud_flakes_evaluate_with_the_expected_outputs() {
    for (case, answers) in cases() {
        let project = flakesmith::model::Project::from_answers(&answers).unwrap();
        let tree = Project::from_answers(answers.clone()).render();
        let flake = Flake::new(&tree);
        let images = expected_images(&project);
        let image_names: BTreeSet<String> = images.iter().map(|i| i.0.clone()).collect();
        let configs: BTreeSet<String> = images.iter().map(|i| i.1.clone()).collect();
        let build_systems: BTreeSet<String> = project.build.systems.iter().cloned().collect();

        let show = flake.show();
        assert_eq!(
            keys(&show["nixosConfigurations"]),
            configs,
            "{case}: nixosConfigurations"
        );
        assert_eq!(
            keys(&show["packages"]),
            build_systems,
            "{case}: packages.<system>, no darwin"
        );
        // The scripts also run on a Mac (deploying needs no Linux), so it has a dev shell.
        let mut shell_systems = build_systems.clone();
        shell_systems.insert("aarch64-darwin".into());
        assert_eq!(
            keys(&show["devShells"]),
            shell_systems,
            "{case}: devShells.<system>"
        );
        // nix fmt, as in the RK1 layout: the RFC 166 formatter under its name on that branch.
        assert_eq!(
            keys(&show["formatter"]),
            shell_systems,
            "{case}: formatter.<system>"
        );
        let formatter = flake.eval("formatter.aarch64-darwin.name", "x: x");
        let old_name = ["nixos-24.11", "nixos-25.05"].contains(&project.nixpkgs_branch.as_str());
        assert_eq!(
            formatter.as_str().unwrap().starts_with("nixfmt-rfc-style-"),
            old_name,
            "{case}: {formatter} on {}",
            project.nixpkgs_branch
        );
        let shell = flake.eval("devShells.aarch64-darwin.default.packages", "x: x");
        let shell = shell.as_str().unwrap();
        let secrets = project.secrets.mode == flakesmith::model::answers::SecretsMode::Sops;
        for (tool, wanted) in [
            ("-awscli2-", project.has(Platform::Aws)),
            ("-google-cloud-sdk-", project.has(Platform::Gcp)),
            ("-tpi-", project.has(Platform::Rk1)),
            ("-sops-", secrets),
            ("-jq-", true),
        ] {
            assert_eq!(
                shell.contains(tool),
                wanted,
                "{case}: dev shell {tool}: {shell}"
            );
        }
        for system in &build_systems {
            assert_eq!(
                keys(&show["packages"][system]),
                image_names,
                "{case}: packages.{system}"
            );
            let mut native: BTreeSet<String> = images
                .iter()
                .filter(|i| i.2 == system)
                .map(|i| i.1.clone())
                .collect();
            // RK1 nodes are deployed with deploy-rs, whose description is checked too.
            if project.has(Platform::Rk1) {
                native.extend(crate::nix_eval::deploy_checks());
            }
            assert_eq!(
                keys(&show["checks"][system]),
                native,
                "{case}: checks.{system}"
            );
        }

        let packages = flake.eval("packages", PACKAGE_FACTS);
        let emulated = project.build.foreign == ForeignBuild::Emulated;
        for system in &build_systems {
            for (image, _, image_system) in &images {
                let p = &packages[system][image];
                let at = format!("{case}: packages.{system}.{image}");
                // Natively, under emulation the image's own system, or cross-compiled here.
                let built_by = if image_system == system || emulated {
                    *image_system
                } else {
                    system.as_str()
                };
                assert_eq!(p["system"], built_by, "{at}: built by");
                match image.as_str() {
                    "aws" => {
                        assert_eq!(p["kind"], "amazonImage", "{at}");
                        let format = match project.aws.image_format {
                            AwsImageFormat::Vhd => "vpc",
                            AwsImageFormat::Raw => "raw",
                        };
                        assert_eq!(p["format"], format, "{at}: a format import-snapshot takes");
                        assert_eq!(p["bootMode"], "legacy-bios", "{at}");
                    }
                    "gcp" => {
                        assert_eq!(p["kind"], "googleComputeImage", "{at}");
                        assert_eq!(
                            p["partitionTableType"], "efi",
                            "{at}: UEFI_COMPATIBLE needs EFI"
                        );
                        assert!(p["name"].as_str().unwrap().ends_with(".raw.tar.gz"), "{at}");
                    }
                    "generic-arm64" => {
                        assert_eq!(p["kind"], "sdImage", "{at}");
                        assert!(
                            p["firmware"].as_str().unwrap().contains("raspberrypi"),
                            "{at}: sd-image-aarch64.nix"
                        );
                    }
                    "generic-x86_64" => {
                        assert_eq!(p["kind"], "isoImage", "{at}");
                        assert_eq!(
                            (&p["efiBootable"], &p["usbBootable"]),
                            (&Value::Bool(true), &Value::Bool(true)),
                            "{at}"
                        );
                    }
                    "generic-x86_64-raw-efi" => {
                        assert_eq!(p["kind"], "disk-image", "{at}");
                        assert_eq!(p["format"], "raw", "{at}");
                        assert_eq!(p["partitionTableType"], "efi", "{at}");
                    }
                    // Its own U-Boot, not the RK1's, written by rk-inject as on an RK1.
                    "orangepi-5-plus" => {
                        assert_eq!(p["kind"], "sdImage", "{at}");
                        assert_eq!(p["name"], "nixos-orangepi-5-plus.img", "{at}");
                        assert_eq!(p["firmware"], "", "{at}: no Raspberry Pi firmware");
                        let post_build = p["postBuild"].as_str().unwrap();
                        assert!(
                            post_build.contains("/bin/rk-inject write --image \"$img\"")
                                && post_build.contains("-uboot-orangepi-5-plus-rk3588_defconfig-")
                                && post_build.contains("--soc rk3588"),
                            "{at}: {post_build}"
                        );
                    }
                    node => {
                        assert_eq!(p["kind"], "sdImage", "{at}");
                        assert_eq!(p["name"], format!("nixos-{node}.img"), "{at}");
                        assert_eq!(
                            p["firmware"], "",
                            "{at}: no Raspberry Pi firmware on an RK1"
                        );
                        let post_build = p["postBuild"].as_str().unwrap();
                        assert!(
                            post_build.contains("/bin/rk-inject write --image \"$img\""),
                            "{at}: {post_build}"
                        );
                    }
                }
            }
        }

        let facts = flake.eval("nixosConfigurations", CONFIG_FACTS);
        for (_, config, system) in &images {
            let c = &facts[config];
            let at = format!("{case}: {config}");
            assert_eq!(c["hostPlatform"], *system, "{at}");
            assert_eq!(
                c["firewall"], true,
                "{at}: the firewall stays on (also against GCP's mkDefault false)"
            );
            assert_eq!(c["ssh"]["PasswordAuthentication"], false, "{at}");
            assert_eq!(c["ssh"]["KbdInteractiveAuthentication"], false, "{at}");
            assert_eq!(c["ssh"]["PermitRootLogin"], "prohibit-password", "{at}");
            assert_eq!(c["fail2ban"], true, "{at}");
            assert!(
                c["journald"]
                    .as_str()
                    .unwrap()
                    .contains("SystemMaxUse=500M"),
                "{at}"
            );
            // services.journald.extraConfig is gone from NixOS 26.11 (nixpkgs PR 536538), whose
            // settings.Journal the releases up to 26.05 lack.
            let release = project.nixpkgs_branch.as_str().split('-').nth(1);
            let old_release = release
                .filter(|r| r.len() == 5 && r.as_bytes()[2] == b'.')
                .and_then(|r| r.parse::<f64>().ok())
                .is_some_and(|r| r <= 26.05);
            assert_eq!(c["journaldSettings"], !old_release, "{at}");
            assert_eq!(c["stateVersion"], project.state_version.as_str(), "{at}");
            assert_eq!(c["timeZone"], project.network.time_zone, "{at}");
            let exporter = &c["exporter"];
            if project.monitoring.node_exporter {
                assert_eq!(exporter["enable"], true, "{at}");
                assert_eq!(
                    exporter["openFirewall"], project.monitoring.open_port,
                    "{at}: port opened only when asked"
                );
            } else {
                assert!(exporter.is_null(), "{at}: {exporter}");
            }
            let admin = &c["admin"];
            assert_eq!(admin["isNormalUser"], true, "{at}");
            match &project.temporary_password_hash {
                Some(hash) => {
                    assert_eq!(admin["initialHashedPassword"], hash.as_str(), "{at}");
                    assert_eq!(
                        c["mutableUsers"], true,
                        "{at}: the changed password must survive rebuilds"
                    );
                    assert_eq!(c["sudoPassword"], true, "{at}");
                    let script = c["expire"].as_str().unwrap();
                    assert!(
                        script
                            .contains(&format!("/bin/chage --lastday 0 {}\n", project.admin_user)),
                        "{at}: the temporary password is expired at first boot:\n{script}"
                    );
                }
                None => {
                    assert!(
                        admin.get("initialHashedPassword").is_none(),
                        "{at}: no password"
                    );
                    assert!(c["expire"].is_null(), "{at}");
                    assert_eq!(c["sudoPassword"], false, "{at}: no password to ask for");
                }
            }
            assert_eq!(
                c["ssmAgent"],
                config == "aws",
                "{at}: the SSM agent comes with amazon-image.nix"
            );
            assert_eq!(
                c["osLogin"],
                config == "gcp",
                "{at}: OS Login comes with google-compute-config.nix"
            );
            let dots = if project.dots.is_some() {
                "imported"
            } else {
                "absent"
            };
            assert_eq!(c["dots"], dots, "{at}");
        }
    }
}

#[test]
fn the_stand_in_would_see_a_firewall_left_to_gcp() {
    // The check above must be able to fail: without common/security.nix's line, GCP's
    // google-compute-config.nix turns the host firewall off.
    let mut tree = multi_cloud(&[Platform::Gcp])
        .built_on(&["x86_64-linux"])
        .render();
    let security = tree
        .get("common/security.nix")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let line = "  networking.firewall.enable = true;\n";
    assert!(security.contains(line));
    tree.insert(
        "common/security.nix",
        flakesmith::render::TreeFile::text(security.replace(line, "")),
    );
    let flake = Flake::new(&tree);
    let firewall = flake.eval(
        "nixosConfigurations.gcp.config.networking.firewall.enable",
        "x: x",
    );
    assert_eq!(firewall, false);
}

#[test]
fn a_platform_brings_its_files_and_only_its_files() {
    let all = multi_cloud(&Platform::ALL).with_nodes(3).render();
    for path in [
        "flake.nix",
        "common/base.nix",
        "common/security.nix",
        "common/monitoring.nix",
        "platforms/aws.nix",
        "platforms/gcp.nix",
        "platforms/rk1.nix",
        "platforms/generic-arm64.nix",
        "platforms/generic-x86_64.nix",
        "nodes/rk1-node1.nix",
        "nodes/rk1-node3.nix",
        "deploy/aws-deploy.sh",
        "deploy/gcp-deploy.sh",
        "deploy/rk1-deploy.sh",
        "build-all-images.sh",
        "README.md",
        "flakesmith.yaml",
        ".sops.yaml",
        "secrets/secrets.yaml",
        ".gitignore",
    ] {
        assert!(all.get(path).is_some(), "all platforms: {path} missing");
    }

    let clouds = edit(multi_cloud(&[Platform::Aws, Platform::Gcp]), |a| {
        a.nodes.clear();
        a.boards.clear();
    })
    .render();
    let paths: BTreeSet<&str> = clouds.paths().collect();
    for absent in [
        "platforms/rk1.nix",
        "deploy/rk1-deploy.sh",
        "platforms/generic-arm64.nix",
        "platforms/generic-x86_64.nix",
        "common.nix",
        "rk1-base.nix",
    ] {
        assert!(!paths.contains(absent), "aws+gcp: {absent} generated");
    }
    assert!(
        !paths.iter().any(|p| p.starts_with("nodes/")),
        "aws+gcp: nodes/ generated"
    );
    for script in [
        "deploy/aws-deploy.sh",
        "deploy/gcp-deploy.sh",
        "build-all-images.sh",
    ] {
        assert!(
            clouds.get(script).unwrap().executable,
            "{script} is executable"
        );
    }
}

#[test]
fn none_of_the_guides_mistakes_appear() {
    for (variant, tree) in crate::support::all_variants() {
        for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".nix")) {
            let text = file.as_text().unwrap();
            for wrong in [
                "services.google-guest-agent",
                "services.google-shutdown-scripts",
                "hardware.sensor.iio",
                "sdImage.image.baseName",
                "<nixpkgs/",
            ] {
                assert!(!text.contains(wrong), "{variant}: {path} contains {wrong}");
            }
            if path == "platforms/gcp.nix" {
                assert!(
                    !text.contains("amazonImage"),
                    "{variant}: GCP built as an AMI"
                );
            }
            assert_single_imports(&format!("{variant}: {path}"), text);
        }
        // No darwin packages (the guide's Linux images with no builder): the evaluations in
        // nix_eval.rs and above assert that packages.<system> exists for the build systems only.
    }
}

/// No attribute set defines `imports` twice (the guide's aws and gcp examples do; Nix refuses).
fn assert_single_imports(at: &str, text: &str) {
    use rnix::ast::{self, HasEntry};
    use rowan::ast::AstNode;
    let root = rnix::Root::parse(text).tree();
    for node in root.syntax().descendants() {
        if let Some(set) = ast::AttrSet::cast(node) {
            let imports = set
                .attrpath_values()
                .filter(|b| {
                    b.attrpath()
                        .and_then(|p| p.attrs().next())
                        .is_some_and(|a| a.syntax().text() == "imports")
                })
                .count();
            assert!(
                imports <= 1,
                "{at}: `imports` defined {imports} times in one attribute set"
            );
        }
    }
}

#[test]
fn the_imports_check_can_fail() {
    let guide =
        "{ config, pkgs, ... }: { imports = [ ./a.nix ]; x = 1; imports = [ ./common.nix ]; }";
    let result = std::panic::catch_unwind(|| assert_single_imports("guide", guide));
    assert!(result.is_err());
}

// --- scripts ---------------------------------------------------------------------------------

/// A stand-in CLI on PATH that appends its arguments to $STAND_IN_LOG and answers like the real
/// one does when all goes well.
fn stand_in(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs_err::write(
        &path,
        format!("#!/usr/bin/env bash\nset -euo pipefail\nprintf '{name} %s\\n' \"$*\" >> \"$STAND_IN_LOG\"\n{body}\n"),
    )
    .unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Scripts {
    repo: TestRepo,
    bin: tempfile::TempDir,
}

impl Scripts {
    fn new(tree: &Tree) -> Self {
        let repo = TestRepo::from_tree(tree);
        let bin = tempfile::tempdir().unwrap();
        stand_in(
            bin.path(),
            "aws",
            r#"case "$1 $2" in
  "ec2 import-snapshot") echo import-snap-0123456789abcdef0 ;;
  "ec2 describe-import-snapshot-tasks") printf 'completed\tsnap-0abc\tNone\n' ;;
  "ec2 register-image") echo ami-0def ;;
esac"#,
        );
        stand_in(bin.path(), "gcloud", "");
        stand_in(
            bin.path(),
            "nix",
            "echo 'nix is not run in these tests' >&2; exit 1",
        );
        Self { repo, bin }
    }

    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let log = self.repo.path().join("stand-in.log");
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap()
        );
        let mut command = Command::new(self.repo.path().join(script));
        command
            .args(args)
            .current_dir(self.repo.path())
            .env("PATH", path)
            .env("STAND_IN_LOG", &log)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("CLOUDSDK_CORE_PROJECT")
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("FLAKESMITH_AWS_BUCKET")
            .env_remove("FLAKESMITH_GCP_BUCKET");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// aws-deploy.sh and gcp-deploy.sh run against the shared stand-ins in tests/fixtures/standins
// (tests/integration/deploy.rs): the full flows, their command sequences, and failures part-way.

#[test]
fn build_all_images_builds_every_platform_image() {
    let tree = edit(multi_cloud(&Platform::ALL).with_nodes(2), |a| {
        a.generic_x86_64.raw_efi = true
    })
    .render();
    let s = Scripts::new(&tree);
    let help = s.run("build-all-images.sh", &["--help"], &[]);
    assert!(help.status.success() && stdout(&help).contains("--dry-run"));
    let out = s.run(
        "build-all-images.sh",
        &["--nix", "--dry-run", "--system", "aarch64-linux"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A dry run built nothing, and does not say it did.
    assert!(!stderr(&out).contains("Built"), "{}", stderr(&out));
    let built: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with(".#packages."))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        built,
        [
            "aws",
            "gcp",
            "generic-arm64",
            "generic-x86_64",
            "generic-x86_64-raw-efi",
            "orangepi-5-plus",
            "rk1-node1",
            "rk1-node2"
        ]
        .map(|i| format!(".#packages.aarch64-linux.{i}"))
    );
    let unknown = s.run(
        "build-all-images.sh",
        &["--nix", "--dry-run", "--system", "x86_64-linux", "nope"],
        &[],
    );
    assert_eq!(unknown.status.code(), Some(2));
    let darwin = s.run(
        "build-all-images.sh",
        &["--nix", "--dry-run", "--system", "aarch64-darwin"],
        &[],
    );
    assert_eq!(darwin.status.code(), Some(2));
    assert!(
        stderr(&darwin).contains("Linux builder"),
        "{}",
        stderr(&darwin)
    );
}

#[test]
fn multi_cloud_deployment_key_is_in_the_images_only() {
    // As in the RK1 layout (nix_eval::deployment_keys_are_in_the_images_only): the AWS and GCP
    // images let root in with the deployment key and the admin with nothing; the configurations
    // the machines are switched to afterwards have the admin's keys and not the deployment key.
    // The stand-in shows which keys each system holds, not that sshd honours them on a cloud.
    let tree = multi_cloud(&[Platform::Aws, Platform::Gcp])
        .with_deployment_key()
        .built_on(&["x86_64-linux"])
        .render();
    let flake = Flake::new(&tree);
    let keys_of = r#"users: builtins.mapAttrs (_: u: u.openssh.authorizedKeys.keys or [ ]) users"#;
    for machine in ["aws", "gcp"] {
        let image_users = flake.eval(
            &format!("packages.x86_64-linux.{machine}.toplevel.users"),
            &format!("json: ({keys_of}) (builtins.fromJSON json)"),
        );
        assert_eq!(
            image_users["root"],
            serde_json::json!([crate::support::DEPLOY_SSH_KEY]),
            "{machine} image"
        );
        assert_eq!(
            image_users["admin"],
            serde_json::json!([]),
            "{machine} image"
        );
        let running = flake.eval(
            &format!("nixosConfigurations.{machine}.config.users.users"),
            keys_of,
        );
        assert_eq!(
            running["admin"],
            serde_json::json!([crate::support::ADMIN_SSH_KEY]),
            "{machine}"
        );
        assert!(
            !running.to_string().contains(crate::support::DEPLOY_SSH_KEY),
            "{machine}: the running configuration must not authorise the deployment key: {running}"
        );
    }
}

#[test]
fn sops_machines_decrypt_with_keys_they_have() {
    // Only RK1 nodes get an age identity from flakesmith (keys/<host>.age, copied by
    // post-deploy.sh to /var/lib/sops-nix/key.txt); a cloud or generic machine pointed at that
    // file would never find it. They decrypt with their SSH host key instead, whose recipient
    // .sops.yaml and the README say how to add after first boot. The stand-in sops-nix shows
    // the settings each machine gets, not that sops-install-secrets decrypts with them.
    let project = multi_cloud(&[
        Platform::Rk1,
        Platform::Aws,
        Platform::Gcp,
        Platform::GenericArm64,
        Platform::GenericX86_64,
    ])
    .with_nodes(1)
    .with_sops()
    .built_on(&["x86_64-linux", "aarch64-linux"]);
    let tree = project.render();
    let flake = Flake::new(&tree);
    let age = |machine: &str| {
        flake.eval(
            &format!("nixosConfigurations.{machine}.config.sops.age"),
            "a: { keyFile = a.keyFile or null; sshKeyPaths = a.sshKeyPaths or null; }",
        )
    };
    let node = age("rk1-node1");
    assert_eq!(node["keyFile"], "/var/lib/sops-nix/key.txt", "{node}");
    let sops_yaml = tree.get(".sops.yaml").unwrap().as_text().unwrap();
    let readme = tree.get("README.md").unwrap().as_text().unwrap();
    for machine in ["aws", "gcp", "generic-arm64", "generic-x86_64"] {
        let a = age(machine);
        assert_eq!(
            a["keyFile"],
            Value::Null,
            "{machine}: no age identity is provisioned there: {a}"
        );
        assert_eq!(
            a["sshKeyPaths"],
            serde_json::json!(["/etc/ssh/ssh_host_ed25519_key"]),
            "{machine}"
        );
        // The live ISO makes a new host key at every boot: no place for it.
        assert_eq!(
            sops_yaml.contains(&format!("# - &{machine} age1")),
            machine != "generic-x86_64",
            "{machine}'s place in .sops.yaml:\n{sops_yaml}"
        );
    }
    assert!(
        readme.contains("ssh-keyscan -t ed25519 <address> | ssh-to-age"),
        "{readme}"
    );
}

#[test]
fn a_recorded_cloud_recipient_survives_add_node() {
    // The user uncomments a cloud machine's placeholder in .sops.yaml after its first boot; a
    // later add-node changes the same file and must merge with that edit, not conflict: the
    // placeholders sit apart from the node lines add-node inserts.
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("fleet");
    let flakesmith = |args: &[&str], dir: &Path| {
        let out = crate::support::flakesmith_command()
            .args(args)
            .current_dir(dir)
            .env("HOME", home.path())
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = flakesmith(
        &[
            "init",
            "fleet",
            "--yes",
            "--platform",
            "aws,rk1",
            "--nodes",
            "1",
            "--ssh-key",
            crate::support::ADMIN_SSH_KEY,
            "--age-recipient",
            crate::support::ADMIN_AGE_RECIPIENT,
        ],
        home.path(),
    );
    assert_eq!(code, Some(0), "{out}");
    // What ssh-to-age would print for the instance's host key (any age recipient will do).
    let aws = "age142udgvpkm7hpy5mwaktlyptcyee5z2l7fvnz8udkg9kzu29zpucqej5vy8";
    let sops_yaml = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    assert!(
        sops_yaml.contains("  # - &aws age1…\n") && sops_yaml.contains("          # - *aws\n"),
        "{sops_yaml}"
    );
    let recorded = sops_yaml
        .replace("  # - &aws age1…\n", &format!("  - &aws {aws}\n"))
        .replace("          # - *aws\n", "          - *aws\n");
    std::fs::write(repo.join(".sops.yaml"), &recorded).unwrap();

    let (code, out) = flakesmith(&["add-node", "rk1-node2"], &repo);
    assert_eq!(code, Some(0), "{out}");
    let merged = std::fs::read_to_string(repo.join(".sops.yaml")).unwrap();
    assert!(!merged.contains("<<<<<<<"), "{merged}");
    for line in [
        format!("  - &aws {aws}\n"),
        "          - *aws\n".into(),
        "          - *rk1-node2\n".into(),
    ] {
        assert!(merged.contains(&line), "{line:?} in\n{merged}");
    }
    let (code, out) = flakesmith(&["check"], &repo);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn a_changed_permit_root_login_wins_over_amazon_image_nix() {
    // amazon-image.nix sets PermitRootLogin = "prohibit-password" at normal priority (the
    // stand-in repeats it): common/security.nix decides with mkForce, so a user who changes its
    // value gets that value on AWS instead of a conflicting-definition error. What the stand-in
    // cannot show: real nixpkgs' option type check.
    let mut tree = multi_cloud(&[Platform::Aws]).render();
    let security = tree
        .get("common/security.nix")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let line = "PermitRootLogin = lib.mkForce \"prohibit-password\";";
    assert!(security.contains(line), "{security}");
    tree.insert(
        "common/security.nix",
        flakesmith::render::TreeFile::text(
            security.replace(line, "PermitRootLogin = lib.mkForce \"no\";"),
        ),
    );
    let flake = Flake::new(&tree);
    let permit = flake.eval(
        "nixosConfigurations.aws.config.services.openssh.settings.PermitRootLogin",
        "v: v",
    );
    assert_eq!(permit, "no");
}

#[test]
fn the_gcp_serial_console_has_a_login_prompt_when_there_is_a_console_password() {
    // profiles/headless.nix (imported by google-compute-config.nix; the stand-in repeats its
    // mkDefault) turns the serial getty off: the console password promised by
    // temporary-password-hash needs it back on. What the stand-in cannot show: GCE's serial port.
    for (password, expected) in [(false, false), (true, true)] {
        let mut project = multi_cloud(&[Platform::Gcp]);
        if password {
            project = project.with_temporary_password();
        }
        let flake = Flake::new(&project.render());
        let enabled = flake.eval(
            "nixosConfigurations.gcp.config.systemd.services",
            "s: s.\"serial-getty@ttyS0\".enable or true",
        );
        assert_eq!(enabled, expected, "temporary password: {password}");
    }
}

#[test]
fn the_iso_is_not_promised_bios_boot_when_built_on_aarch64() {
    // iso-image.nix: makeBiosBootable defaults to build and host both x86, so an ISO built on
    // aarch64 (every multi-cloud flake has packages.aarch64-linux.generic-x86_64 when aarch64 is
    // a build system) boots by UEFI only, and makeUsbBootable then adds nothing for BIOS.
    let tree = multi_cloud(&[Platform::GenericX86_64]).render();
    let readme = tree.get("README.md").unwrap().as_text().unwrap();
    assert!(!readme.contains("(UEFI and BIOS)"), "{readme}");
    assert!(
        readme.contains("by BIOS only when built on x86_64"),
        "{readme}"
    );
}

#[test]
fn the_readme_says_which_logins_and_sudo_rules_the_cloud_modules_add() {
    // google-compute-config.nix: google-sudoers passwordless sudo, OS Login; EC2: the key pair
    // on root. "The deployment key is the only login" and "sudo asks" do not hold there.
    let readme = |platforms: &[Platform]| {
        multi_cloud(platforms)
            .with_temporary_password()
            .render()
            .get("README.md")
            .unwrap()
            .as_text()
            .unwrap()
            .to_owned()
    };
    let both = readme(&[Platform::Aws, Platform::Gcp]);
    for fact in [
        "EC2 key pair is written to root's `authorized_keys`",
        "`google-sudoers` group passwordless sudo",
        "OS Login adds an",
    ] {
        assert!(both.contains(fact), "{fact}:\n{both}");
    }
    let generic = readme(&[Platform::GenericArm64]);
    assert!(!generic.contains("google-sudoers") && !generic.contains("EC2 key pair"));
}
