//! Real Nix evaluates generated flakes against small local stand-ins for their inputs
//! (tests/fixtures: fake-nixpkgs, fake-sops-nix, fake-deploy-rs, fake-dots), proving that the
//! outputs exist under the expected names, that every module file is imported and merges, and that the values that
//! matter reach the image: the rk-inject call with the right bootloader, the partition offset,
//! a raw image named after its node, a cross or native build platform, no unfree software.
//!
//! What the stand-ins cannot show: that the modules evaluate against real nixpkgs (option types,
//! assertions; nixos_options.rs checks that every option exists), or anything about the image's
//! contents. No image is built here.

use std::collections::BTreeSet;
use std::process::Command;

use flakesmith::model::answers::NodeRecipients;
use serde_json::Value;

use crate::support::{fixtures, run_ok, snapshot_cases, Project, TestRepo};

/// A generated repository, ready for `nix` with its inputs replaced by the stand-ins.
pub struct Flake {
    repo: TestRepo,
    overrides: Vec<(String, String)>,
}

impl Flake {
    pub fn new(tree: &flakesmith::render::Tree) -> Self {
        let repo = TestRepo::from_tree(tree);
        // The vendored injector is added to the tree by `init` (flakesmith::rockchip_vendor);
        // a stub stands in when the tree does not carry it yet. The fake buildRustPackage only
        // reads Cargo.toml and Cargo.lock.
        if !repo.has("rk-inject/Cargo.toml") {
            repo.write(
                "rk-inject/Cargo.toml",
                "[package]\nname = \"rk-inject\"\nversion = \"0.0.0\"\n",
            );
            repo.write("rk-inject/Cargo.lock", "version = 4\n");
            repo.write("rk-inject/src/main.rs", "fn main() {}\n");
        }
        // A user's blob is copied into the repository by `init`, not rendered.
        let flake = tree.get("flake.nix").unwrap().as_text().unwrap();
        // rk1-base.nix (rk1-cluster) or platforms/rk1.nix (multi-cloud) names it.
        let rk1_base = tree
            .get("rk1-base.nix")
            .or_else(|| tree.get("platforms/rk1.nix"));
        if rk1_base.is_some_and(|f| f.as_text().unwrap().contains("rk1-bootloader.bin}")) {
            repo.write("rk1-bootloader.bin", [0u8; 512]);
        }
        let overrides = stand_in_inputs(flake);
        Self { repo, overrides }
    }

    pub fn nix(&self, args: &[&str]) -> Command {
        nix_with_stand_ins(&self.overrides, args)
    }

    pub fn reference(&self, attr: &str) -> String {
        format!("path:{}#{attr}", self.repo.path().display())
    }

    pub fn eval(&self, attr: &str, apply: &str) -> Value {
        let out =
            run_ok(&mut self.nix(&["eval", "--json", &self.reference(attr), "--apply", apply]));
        serde_json::from_str(&out).unwrap()
    }

    pub fn show(&self) -> Value {
        let out = run_ok(&mut self.nix(&[
            "flake",
            "show",
            "--json",
            &format!("path:{}", self.repo.path().display()),
        ]));
        serde_json::from_str(&out).unwrap()
    }
}

/// tests/fixtures/fake-nixpkgs with tests/integration/nixos_options.txt beside its
/// nixos-system.nix, which declares the options listed there (a `path:` flake sees only its own
/// directory). Made once per contents under the target's temporary directory.
pub fn stand_in_nixpkgs() -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let fixture = fixtures().join("fake-nixpkgs");
    let list = crate::support::repo_root().join("tests/integration/nixos_options.txt");
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&fixture)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(&fixture).unwrap();
            (
                relative.display().to_string(),
                fs_err::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.push(("nixos_options.txt".into(), fs_err::read(list).unwrap()));
    let mut hasher = Sha256::new();
    for (name, contents) in &files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(contents));
    }
    let digest = hex::encode(hasher.finalize());
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("fake-nixpkgs-{}", &digest[..16]));
    if !dir.exists() {
        let partial = tempfile::Builder::new()
            .prefix("fake-nixpkgs-")
            .tempdir_in(root)
            .unwrap();
        for (name, contents) in &files {
            let target = partial.path().join(name);
            fs_err::create_dir_all(target.parent().unwrap()).unwrap();
            fs_err::write(target, contents).unwrap();
        }
        // Another test may have made the same directory meanwhile: either copy is right.
        let partial = partial.keep();
        if std::fs::rename(&partial, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
    }
    dir
}

/// The stand-in for each input a generated flake.nix names: `(input, path:… URL)`.
pub fn stand_in_inputs(flake_nix: &str) -> Vec<(String, String)> {
    let fixture = |name: &str| format!("path:{}", fixtures().join(name).display());
    let nixpkgs = format!("path:{}", stand_in_nixpkgs().display());
    let mut overrides = vec![("nixpkgs".to_owned(), nixpkgs)];
    if flake_nix.contains("sops-nix.url") || flake_nix.contains("url = \"github:Mic92/sops-nix\"") {
        overrides.push(("sops-nix".to_owned(), fixture("fake-sops-nix")));
    }
    if flake_nix.contains("url = \"github:serokell/deploy-rs\"") {
        overrides.push(("deploy-rs".to_owned(), fixture("fake-deploy-rs")));
    }
    if flake_nix.contains("dots.url") {
        overrides.push(("dots".to_owned(), fixture("fake-dots")));
    }
    overrides
}

/// `nix ARGS…` with flakes on, no lock file written, no registry, and `overrides` for the inputs.
pub fn nix_with_stand_ins(overrides: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new("nix");
    command
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(args)
        .args(["--no-write-lock-file", "--option", "flake-registry", ""]);
    for (input, url) in overrides {
        command.args(["--override-input", input, url]);
    }
    command
}

pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an attribute set: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// What one configuration turns into, as far as the stand-ins let it be seen.
const CONFIG_FACTS: &str = r#"cs: builtins.mapAttrs (name: c: {
  hostName = c.config.networking.hostName;
  image = c.config.system.build.sdImage.name;
  offset = c.config.sdImage.firmwarePartitionOffset;
  compress = c.config.sdImage.compressImage;
  firmware = c.config.sdImage.populateFirmwareCommands;
  postBuild = c.config.sdImage.postBuildCommands;
  imageDrv = c.config.system.build.sdImage.drvPath;
  toplevelDrv = c.config.system.build.toplevel.drvPath;
  keyFile = c.config.sops.age.keyFile or "absent";
  dots = c.config.environment.variables.FAKE_DOTS or "absent";
}) cs"#;

const PACKAGE_FACTS: &str = r#"ps: builtins.mapAttrs (_: builtins.mapAttrs (_: d: { inherit (d) name system drvPath; })) ps"#;

#[test]
fn generated_flakes_evaluate_with_the_expected_outputs() {
    // The multi-cloud cases have their own evaluation (cloud.rs).
    let mut cases: Vec<(String, flakesmith::model::Answers)> = snapshot_cases()
        .into_iter()
        .filter(|c| c.answers.layout == flakesmith::model::Layout::Rk1Cluster)
        .map(|c| (c.name, c.answers))
        .collect();
    // Cross-compiling from x86_64 only: a combination the snapshots leave out.
    cases.push((
        "cross-x86-only".into(),
        Project::default()
            .built_on(&["x86_64-linux"])
            .answers()
            .clone(),
    ));
    // Nodes that decrypt with their SSH host keys: no age key file.
    cases.push((
        "ssh-host-key-recipients".into(),
        Project::default()
            .with_sops()
            .with_ssh_host_key_recipients()
            .answers()
            .clone(),
    ));

    for (case, answers) in cases {
        let project = flakesmith::model::Project::from_answers(&answers).unwrap();
        let tree = Project::from_answers(answers.clone()).render();
        let flake = Flake::new(&tree);

        let hosts: BTreeSet<String> = project.nodes.iter().map(|n| n.host.to_string()).collect();
        let mut machines = hosts.clone();
        machines.insert("rk1".into());
        let build_systems: BTreeSet<String> = project.build.systems.iter().cloned().collect();
        let mut shell_systems = build_systems.clone();
        shell_systems.insert("aarch64-darwin".into());

        let show = flake.show();
        assert_eq!(
            keys(&show["nixosConfigurations"]),
            machines,
            "{case}: nixosConfigurations"
        );
        assert_eq!(
            keys(&show["packages"]),
            build_systems,
            "{case}: packages.<system>"
        );
        assert_eq!(
            keys(&show["checks"]),
            build_systems,
            "{case}: checks.<system>"
        );
        assert_eq!(
            keys(&show["devShells"]),
            shell_systems,
            "{case}: devShells.<system>"
        );
        assert_eq!(
            keys(&show["formatter"]),
            shell_systems,
            "{case}: formatter.<system>"
        );
        for system in &build_systems {
            assert_eq!(
                keys(&show["packages"][system]),
                machines,
                "{case}: packages.{system}"
            );
            assert_eq!(
                keys(&show["checks"][system]),
                machines.union(&deploy_checks()).cloned().collect(),
                "{case}: checks.{system}: every system and the deploy-rs checks"
            );
        }
        for system in &shell_systems {
            assert!(
                show["devShells"][system]["default"].is_object(),
                "{case}: devShells.{system}.default"
            );
        }

        let configs = flake.eval("nixosConfigurations", CONFIG_FACTS);
        let sops = project.secrets.mode == flakesmith::model::answers::SecretsMode::Sops;
        for machine in &machines {
            let c = &configs[machine];
            let host = if machine == "rk1" {
                ""
            } else {
                machine.as_str()
            };
            assert_eq!(c["hostName"], host, "{case}: {machine} hostName");
            let base = if machine == "rk1" {
                "nixos-rk1".to_owned()
            } else {
                format!("nixos-{machine}")
            };
            assert_eq!(
                c["image"],
                format!("{base}.img"),
                "{case}: {machine}: a raw image named after its node"
            );
            assert_eq!(
                c["offset"], 16,
                "{case}: {machine}: partitions start at 16 MiB"
            );
            assert_eq!(c["compress"], false, "{case}: {machine}");
            assert_eq!(
                c["firmware"], "",
                "{case}: {machine}: no Raspberry Pi firmware"
            );
            let post_build = c["postBuild"].as_str().unwrap();
            let bootloader = match project.bootloader {
                flakesmith::model::Bootloader::Nixpkgs => {
                    "-uboot-turing-rk1-rk3588_defconfig-2025.10/u-boot-rockchip.bin"
                }
                flakesmith::model::Bootloader::Blob { .. } => "-rk1-bootloader.bin",
            };
            assert!(
                post_build.contains("-rk-inject-")
                    && post_build
                        .contains("/bin/rk-inject write --image \"$img\" --bootloader /nix/store/"),
                "{case}: {machine}: postBuildCommands lacks the rk-inject call:\n{post_build}"
            );
            assert!(
                post_build.contains(&format!("{bootloader} --soc rk3588")),
                "{case}: {machine}: wrong bootloader in:\n{post_build}"
            );
            let expected_key_file = match (sops, project.secrets.node_recipients) {
                (true, NodeRecipients::AgeKeys) => Value::from("/var/lib/sops-nix/key.txt"),
                (true, NodeRecipients::SshHostKeys) => Value::Null,
                (false, _) => Value::from("absent"),
            };
            assert_eq!(
                c["keyFile"], expected_key_file,
                "{case}: {machine}: sops.age.keyFile"
            );
            let dots = if project.dots.is_some() {
                "imported"
            } else {
                "absent"
            };
            assert_eq!(c["dots"], dots, "{case}: {machine}: dots module");
        }

        // Each build system builds every image: natively on aarch64-linux, and elsewhere on
        // the build system itself (cross) or the aarch64 system under emulation.
        let packages = flake.eval("packages", PACKAGE_FACTS);
        let emulated = project.build.foreign == flakesmith::model::answers::ForeignBuild::Emulated;
        for system in &build_systems {
            for machine in &machines {
                let p = &packages[system][machine];
                let built_by = if system == "aarch64-linux" || emulated {
                    "aarch64-linux"
                } else {
                    system.as_str()
                };
                assert_eq!(
                    p["system"], built_by,
                    "{case}: packages.{system}.{machine} is built by"
                );
                assert_eq!(
                    p["name"], configs[machine]["image"],
                    "{case}: packages.{system}.{machine}"
                );
                if built_by == "aarch64-linux" {
                    // The image adds its first-deploy root login (deployment-key.nix, or
                    // image-login.nix with sops; see the two tests below).
                    assert_ne!(
                        p["drvPath"], configs[machine]["imageDrv"],
                        "{case}: the image adds root's login for the first deploy"
                    );
                }
            }
        }
    }
}

/// The checks deploy-rs's `deployChecks` adds to `checks.<system>`.
pub fn deploy_checks() -> BTreeSet<String> {
    ["deploy-activate", "deploy-schema"]
        .map(String::from)
        .into()
}

const HYDRA_FACTS: &str = r#"j: builtins.mapAttrs (_: builtins.mapAttrs (_: builtins.mapAttrs (_: d: { inherit (d) type drvPath; }))) j"#;

const DEPLOY_FACTS: &str = r#"d: builtins.mapAttrs (_: n: {
  inherit (n) hostname sshUser interactiveSudo sshOpts;
  profiles = builtins.attrNames n.profiles;
  user = n.profiles.system.user;
  type = n.profiles.system.path.type;
  toplevel = n.profiles.system.path.toplevel.drvPath;
}) d.nodes"#;

#[test]
fn fleet_outputs_name_every_image_system_and_node() {
    // hydraJobs.<job>.<system> holds the same derivations as packages and checks; deploy.nodes
    // has one entry per RK1 node, reached as post-deploy.sh reaches it, activating that node's
    // own configuration. The stand-in deploy-rs (tests/fixtures/fake-deploy-rs) cannot show the
    // deployment itself: only the description deploy-rs reads, and its schema check.
    for case in snapshot_cases() {
        let name = &case.name;
        let project = flakesmith::model::Project::from_answers(&case.answers).unwrap();
        let flake = Flake::new(&Project::from_answers(case.answers.clone()).render());
        let build_systems: BTreeSet<String> = project.build.systems.iter().cloned().collect();
        let rk1_cluster = project.layout == flakesmith::model::Layout::Rk1Cluster;

        let hydra = flake.eval("hydraJobs", HYDRA_FACTS);
        assert_eq!(
            keys(&hydra),
            ["images", "toplevel"].map(String::from).into()
        );
        let packages = flake.eval("packages", PACKAGE_FACTS);
        let some_system = build_systems.first().unwrap();
        assert_eq!(
            keys(&hydra["images"]),
            keys(&packages[some_system]),
            "{name}: one job per image"
        );
        for (image, systems) in hydra["images"].as_object().unwrap() {
            assert_eq!(keys(systems), build_systems, "{name}: images.{image}");
            for system in &build_systems {
                let job = &systems[system];
                assert_eq!(job["type"], "derivation", "{name}: images.{image}.{system}");
                assert_eq!(
                    job["drvPath"], packages[system][image]["drvPath"],
                    "{name}: images.{image}.{system} is packages.{system}.{image}"
                );
            }
        }
        let toplevels = flake.eval(
            "nixosConfigurations",
            r#"cs: builtins.mapAttrs (_: c: { system = c.config.nixpkgs.hostPlatform;
                 drvPath = c.config.system.build.toplevel.drvPath; }) cs"#,
        );
        assert_eq!(
            keys(&hydra["toplevel"]),
            keys(&toplevels),
            "{name}: one job per configuration"
        );
        for (machine, systems) in hydra["toplevel"].as_object().unwrap() {
            let native = toplevels[machine]["system"].as_str().unwrap();
            let expected: BTreeSet<String> = if rk1_cluster {
                build_systems.clone()
            } else {
                [native.to_owned()].into()
            };
            assert_eq!(keys(systems), expected, "{name}: toplevel.{machine}");
            for (system, job) in systems.as_object().unwrap() {
                assert_eq!(
                    job["type"], "derivation",
                    "{name}: toplevel.{machine}.{system}"
                );
                if system == native {
                    assert_eq!(
                        job["drvPath"], toplevels[machine]["drvPath"],
                        "{name}: toplevel.{machine}.{system} is the configuration's"
                    );
                }
            }
        }

        let hosts: BTreeSet<String> = project.nodes.iter().map(|n| n.host.to_string()).collect();
        if hosts.is_empty() {
            assert!(
                !flake.show().as_object().unwrap().contains_key("deploy"),
                "{name}: no deploy description without an RK1 node"
            );
            continue;
        }
        let nodes = flake.eval("deploy", DEPLOY_FACTS);
        assert_eq!(keys(&nodes), hosts, "{name}: deploy.nodes, one per node");
        for node in &project.nodes {
            let host = node.host.to_string();
            let n = &nodes[&host];
            let address = match &node.address {
                Some(cidr) => cidr.ip.to_string(),
                None => host.clone(),
            };
            assert_eq!(n["hostname"], address, "{name}: {host}: hostname");
            assert_eq!(
                n["sshUser"],
                project.admin_user.as_str(),
                "{name}: {host}: sshUser"
            );
            assert_eq!(n["user"], "root", "{name}: {host}: profile user");
            assert_eq!(n["interactiveSudo"], true, "{name}: {host}");
            assert_eq!(
                n["sshOpts"],
                serde_json::json!([
                    "-o",
                    "UserKnownHostsFile=deploy/known_hosts",
                    "-o",
                    "StrictHostKeyChecking=yes"
                ]),
                "{name}: {host}: the host keys post-deploy.sh pinned"
            );
            assert_eq!(
                n["profiles"],
                serde_json::json!(["system"]),
                "{name}: {host}"
            );
            assert_eq!(n["type"], "derivation", "{name}: {host}: profile path");
            assert_eq!(
                n["toplevel"], toplevels[&host]["drvPath"],
                "{name}: {host}: activates its own configuration"
            );
        }
        // The schema check evaluates (the stand-in checks what deploy-rs's interface.json
        // requires) on every build system.
        for system in &build_systems {
            let check = flake.eval(&format!("checks.{system}.deploy-schema"), "d: d.drvPath");
            assert!(check.is_string(), "{name}: checks.{system}.deploy-schema");
        }
    }
}

#[test]
fn the_stand_in_deploy_schema_refuses_a_node_without_hostname() {
    // Without this the schema check above could not fail: a node without a hostname (which
    // deploy-rs's interface.json requires) does not evaluate.
    let mut tree = Project::default().built_on(&["aarch64-linux"]).render();
    let flake_nix = tree.get("flake.nix").unwrap().as_text().unwrap().to_owned();
    assert!(flake_nix.contains("inherit hostname;"), "{flake_nix}");
    tree.insert(
        "flake.nix",
        flakesmith::render::TreeFile::text(flake_nix.replace("inherit hostname;", "")),
    );
    let flake = Flake::new(&tree);
    let output = flake
        .nix(&[
            "eval",
            "--raw",
            &flake.reference("checks.aarch64-linux.deploy-schema.drvPath"),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success(), "evaluated without a hostname");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hostname must be a string"), "{stderr}");
}

#[test]
fn deployment_keys_are_in_the_images_only() {
    // Deployment-keys mode: the image lets root in with the deployment key and nobody else; the
    // configuration post-deploy.sh switches to has the admin's keys and not the deployment key.
    // The stand-in shows which users and keys each system holds; that sshd honours them, and
    // that the switch happens on a real node, it cannot show.
    let tree = Project::default()
        .with_deployment_key()
        .built_on(&["aarch64-linux"])
        .render();
    let flake = Flake::new(&tree);
    let keys_of = r#"users: builtins.mapAttrs (_: u: u.openssh.authorizedKeys.keys or [ ]) users"#;
    let image_users = flake.eval(
        "packages.aarch64-linux.rk1-node1.toplevel.users",
        &format!("json: ({keys_of}) (builtins.fromJSON json)"),
    );
    assert_eq!(
        image_users["root"],
        serde_json::json!([crate::support::DEPLOY_SSH_KEY])
    );
    assert_eq!(image_users["admin"], serde_json::json!([]));
    let running = flake.eval("nixosConfigurations.rk1-node1.config.users.users", keys_of);
    assert_eq!(
        running["admin"],
        serde_json::json!([crate::support::ADMIN_SSH_KEY])
    );
    assert!(
        !running.to_string().contains(crate::support::DEPLOY_SSH_KEY),
        "the running configuration must not authorise the deployment key: {running}"
    );
}

#[test]
fn sops_images_let_root_in_with_the_admins_keys_and_the_configurations_do_not() {
    // Sops mode: deploy/post-deploy.sh logs in as root (no sudo, no admin password, which may
    // be expired), so the image lets root in with the admin's keys; the configuration it
    // switches to gives root no key. What the stand-in cannot show: sshd honouring them on a
    // node (deploy_journey does that against a real sshd).
    let tree = Project::default()
        .with_sops()
        .with_temporary_password()
        .built_on(&["aarch64-linux"])
        .render();
    let flake = Flake::new(&tree);
    let keys_of = r#"users: builtins.mapAttrs (_: u: u.openssh.authorizedKeys.keys or [ ]) users"#;
    let image_users = flake.eval(
        "packages.aarch64-linux.rk1-node1.toplevel.users",
        &format!("json: ({keys_of}) (builtins.fromJSON json)"),
    );
    let admin_keys = serde_json::json!([crate::support::ADMIN_SSH_KEY]);
    assert_eq!(image_users["root"], admin_keys);
    assert_eq!(image_users["admin"], admin_keys);
    let running = flake.eval("nixosConfigurations.rk1-node1.config.users.users", keys_of);
    assert_eq!(running["admin"], admin_keys);
    // The stand-in declares no root user: absent or empty, root has no key.
    assert!(
        running["root"]
            .as_array()
            .is_none_or(|keys| keys.is_empty()),
        "{running}"
    );
}

#[test]
fn a_static_address_goes_to_physical_ethernet_links_only() {
    // Type = "ether" alone also matches veth links (podman, k3s): nixpkgs' own default network
    // adds Kind = "!*" (physical links have no kind). What the stand-in cannot show: networkd
    // matching real links.
    let tree = Project::default()
        .with_static_addresses()
        .built_on(&["aarch64-linux"])
        .render();
    let flake = Flake::new(&tree);
    let network = flake.eval(
        "nixosConfigurations.rk1-node1.config.systemd.network.networks",
        "networks: networks",
    );
    assert_eq!(
        network["10-ethernet"]["matchConfig"],
        serde_json::json!({ "Type": "ether", "Kind": "!*" })
    );
    assert_eq!(
        network["10-ethernet"]["address"],
        serde_json::json!(["10.0.0.11/24"])
    );
}

#[test]
fn no_unfree_software_is_allowed_and_the_bootloader_still_evaluates() {
    // rkbin is unfreeRedistributableFirmware, which nixpkgs counts as free (lib/licenses.nix),
    // so no module allows unfree software: a predicate would also silently replace one from a
    // dots module (nixpkgs.config merges by recursiveUpdate). The stand-in refuses unfree
    // packages as check-meta.nix does; what it cannot show is real nixpkgs' license of rkbin on
    // each branch (checked by reading pkgs/by-name/rk/rkbin/package.nix; book, RK1 boot).
    for (case, tree) in crate::support::all_variants() {
        for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".nix")) {
            assert!(
                !file.as_text().unwrap().contains("allowUnfree"),
                "{case}: {path} allows unfree software"
            );
        }
    }
    // The image's bootloader step pulls U-Boot, and with it rkbin, through the stand-in's
    // license check.
    let tree = Project::default().built_on(&["aarch64-linux"]).render();
    let flake = Flake::new(&tree);
    let post_build = run_ok(&mut flake.nix(&[
        "eval",
        "--raw",
        &flake.reference("nixosConfigurations.rk1-node1.config.sdImage.postBuildCommands"),
    ]));
    assert!(post_build.contains("uboot-turing-rk1"), "{post_build}");
}

#[test]
fn rk1_nodes_honour_the_temporary_password() {
    // temporary-password-hash means the same on an RK1 cluster as on the multi-cloud machines
    // (cloud::multi_cloud_flakes_evaluate_with_the_expected_outputs): the hash as the initial
    // password, kept mutable so the new one survives rebuilds, expired at first boot, and sudo
    // asking for it. The stand-in cannot show that chage really expires it on a node.
    let hash = crate::support::TEMPORARY_PASSWORD_HASH;
    let facts = r#"c: {
      admin = c.users.users.admin;
      mutableUsers = c.users.mutableUsers or null;
      sudoPassword = c.security.sudo.wheelNeedsPassword;
      expire = c.systemd.services.expire-temporary-password.script or null;
    }"#;
    let with = Flake::new(
        &Project::default()
            .with_temporary_password()
            .built_on(&["aarch64-linux"])
            .render(),
    )
    .eval("nixosConfigurations.rk1-node1.config", facts);
    assert_eq!(with["admin"]["initialHashedPassword"], hash, "{with}");
    assert_eq!(with["mutableUsers"], true);
    assert_eq!(with["sudoPassword"], true);
    assert!(
        with["expire"]
            .as_str()
            .is_some_and(|s| s.contains("/bin/chage --lastday 0 admin\n")),
        "{with}"
    );

    let without = Flake::new(&Project::default().built_on(&["aarch64-linux"]).render())
        .eval("nixosConfigurations.rk1-node1.config", facts);
    assert!(
        without["admin"].get("initialHashedPassword").is_none(),
        "{without}"
    );
    assert_eq!(without["sudoPassword"], false);
    assert!(without["expire"].is_null(), "{without}");
}

/// The targets a generated script builds or flashes: rk1-deploy.sh's nodes and its --identical
/// target, and build-all-images.sh's list.
fn script_targets(tree: &flakesmith::render::Tree) -> BTreeSet<String> {
    let mut targets = BTreeSet::new();
    if let Some(deploy) = tree.get("deploy/rk1-deploy.sh") {
        let text = deploy.as_text().unwrap();
        let nodes = text
            .split("\nnodes=(\n")
            .nth(1)
            .unwrap()
            .split("\n)")
            .next()
            .unwrap();
        for line in nodes.lines() {
            targets.insert(
                line.trim()
                    .trim_matches('"')
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        let identical = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("[[ \"$identical\" == true ]] && target=\"")
            })
            .expect("rk1-deploy.sh names the identical image's target");
        targets.insert(identical.trim_end_matches('"').to_owned());
    }
    let build = tree.get("build-all-images.sh").unwrap().as_text().unwrap();
    let list = build
        .split("\nimages=(\n")
        .nth(1)
        .or_else(|| build.split("\ntargets=(\n").nth(1))
        .unwrap()
        .split("\n)")
        .next()
        .unwrap();
    targets.extend(list.lines().map(|l| l.trim().to_owned()));
    targets
}

#[test]
fn every_target_the_scripts_name_is_a_package_of_the_flake() {
    // rk1-deploy.sh --identical flashes `rk1`, which the multi-cloud flake did not define.
    for case in snapshot_cases() {
        let tree = case.render();
        let targets = script_targets(&tree);
        let flake = Flake::new(&tree);
        let packages = flake.eval("packages", "builtins.mapAttrs (_: builtins.attrNames)");
        for (system, names) in packages.as_object().unwrap() {
            let names: BTreeSet<String> = names
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect();
            let missing: Vec<&String> = targets.difference(&names).collect();
            assert!(
                missing.is_empty(),
                "{}: packages.{system} lacks {missing:?} (has {names:?})",
                case.name
            );
        }
    }
}
