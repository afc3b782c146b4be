//! Every NixOS option the generated modules set is one that exists, with a value of its type.
//!
//! nixpkgs is not on this machine, so its option declarations cannot be evaluated here. Instead
//! tests/integration/nixos_options.txt lists every option path the templates set, each with the
//! nixpkgs (or sops-nix) file that declares it, confirmed by reading that file, and the type it
//! has there. The stand-in nixpkgs (tests/fixtures/fake-nixpkgs/nixos-system.nix) declares
//! exactly those options with those types, so real Nix fails to evaluate a generated
//! configuration that sets an unlisted option, a wrong type or two conflicting values. The
//! stand-in also reports which declared options the repository's own modules define: this test
//! evaluates every variant's systems (nixosConfigurations, and the system inside every package,
//! which covers the cross-built ones) and fails on a listed option no template sets any more (the
//! list stays the truth, not a pile of old entries). Because Nix itself evaluates the flake, every
//! way a module reaches nixosSystem is followed: let-bound lists, `imports`, sets merged with `//`,
//! values bound through let, lib.optionalAttrs, lib.mkIf.
//!
//! What it cannot show: that a listed option still exists in the nixpkgs a user pins, or that the
//! type written in the list is the one nixpkgs has; that is what the list's review against
//! nixpkgs is for (and the nixpkgs CI workflow, which evaluates against real nixpkgs).

use std::collections::{BTreeMap, BTreeSet};

use crate::nix_eval::Flake;
use crate::support;

/// One line of nixos_options.txt.
#[derive(Debug, Clone)]
struct Listed {
    path: String,
    file: String,
}

fn listed() -> Vec<Listed> {
    let text = include_str!("nixos_options.txt");
    text.lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let path = words.next().unwrap();
            let file = words
                .next()
                .unwrap_or_else(|| panic!("nixos_options.txt: `{line}` names no declaring file"));
            let sops = file.starts_with("sops-nix:");
            assert!(
                file.starts_with("nixos/") || file.starts_with("pkgs/") || sops,
                "nixos_options.txt: `{file}` is not a nixpkgs (nixos/…, pkgs/…) or sops-nix file"
            );
            // The stand-in parses the types; here only whether there is one.
            assert_eq!(
                words.next().is_some(),
                !sops,
                "nixos_options.txt: `{line}`: a nixpkgs option needs its type, a sops-nix one \
                 none (the sops-nix stand-in's module declares those)"
            );
            Listed {
                path: path.to_owned(),
                file: file.to_owned(),
            }
        })
        .collect()
}

/// "<declared option> <who declared it>" for each option the repository's modules define, in the
/// system inside every package of a generated flake (every image carries its toplevel; the
/// packages hold each nixosConfiguration's image and the cross-built systems besides).
const DEFINED_OPTIONS: &str = r#"packages: builtins.concatMap
  (ps: builtins.concatMap (p: p.toplevel.standIn.definedOptions)
    (builtins.filter (p: p ? toplevel) (builtins.attrValues ps)))
  (builtins.attrValues packages)"#;

/// The defined options of a generated flake, evaluated by real Nix against the stand-ins.
fn defined_options(tree: &flakesmith::render::Tree) -> BTreeSet<String> {
    let value = Flake::new(tree).eval("packages", DEFINED_OPTIONS);
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Option → the variants that define it, for every variant, evaluated a few at a time. A
/// variant that does not evaluate (an unknown option, a wrong type, a conflict) is a failure
/// that names the variant and carries Nix's error.
fn collect(trees: &[(String, flakesmith::render::Tree)]) -> BTreeMap<String, BTreeSet<String>> {
    use std::sync::{atomic, Mutex};
    let found = Mutex::new(BTreeMap::<String, BTreeSet<String>>::new());
    let failures = Mutex::new(Vec::new());
    let next = atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, atomic::Ordering::SeqCst);
                let Some((variant, tree)) = trees.get(i) else {
                    break;
                };
                let options = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    defined_options(tree)
                }));
                match options {
                    Ok(options) => {
                        let mut found = found.lock().unwrap();
                        for option in options {
                            found.entry(option).or_default().insert(variant.clone());
                        }
                    }
                    Err(panic) => {
                        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{variant}: {message}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "generated systems do not evaluate against the stand-in nixpkgs:\n{}",
        failures.join("\n")
    );
    found.into_inner().unwrap()
}

#[test]
fn every_option_the_templates_set_is_listed_with_its_declaring_file() {
    let list = listed();
    let trees = support::all_variants();
    assert!(
        trees
            .iter()
            .any(|(_, t)| t.get("common/security.nix").is_some()),
        "the variants include no multi-cloud repository"
    );
    let found = collect(&trees);
    assert!(
        found.contains_key("system.stateVersion nixos_options.txt"),
        "the stand-in reported no system.stateVersion: it is not looking at the modules"
    );

    // An option the stand-in declares for its own modules (nixos/stand-in-options.txt) is
    // unlisted when a template sets it; sops-nix's come from its stand-in module.
    let unlisted: Vec<String> = found
        .iter()
        .filter(|(option, _)| {
            let (path, declared_by) = option.split_once(' ').unwrap();
            declared_by != "nixos_options.txt"
                && !(declared_by == "stand-in sops-nix module"
                    && list.iter().any(|l| l.path == path))
        })
        .map(|(option, variants)| {
            format!(
                "  {option}  (in {})",
                variants
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "options set by generated modules but not in tests/integration/nixos_options.txt; \
         confirm each in the nixpkgs file that declares it, then list it:\n{}",
        unlisted.join("\n")
    );

    let paths: BTreeSet<&str> = found.keys().map(|o| o.split_once(' ').unwrap().0).collect();
    let stale: Vec<String> = list
        .iter()
        .filter(|l| !paths.contains(l.path.as_str()))
        .map(|l| format!("  {}  ({})", l.path, l.file))
        .collect();
    assert!(
        stale.is_empty(),
        "listed in nixos_options.txt but set by no generated module (remove them, or render a \
         case that sets them in support::all_variants):\n{}",
        stale.join("\n")
    );
}

/// A flake whose `nixosConfigurations.m` is built from `outputs` (a `let … in` body over
/// `nixpkgs` and `lib`), evaluated against the stand-in nixpkgs and sops-nix.
struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    fn new(outputs: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flake = format!(
            "{{\n  inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-unstable\";\n  inputs.sops-nix.url = \"github:Mic92/sops-nix\";\n  inputs.sops-nix.inputs.nixpkgs.follows = \"nixpkgs\";\n  outputs = {{ self, nixpkgs, sops-nix }}:\n    let\n      lib = nixpkgs.lib;\n    in\n    {outputs};\n}}\n"
        );
        fs_err::write(dir.path().join("flake.nix"), flake).unwrap();
        Self { dir }
    }

    fn eval(&self, apply: &str) -> std::process::Output {
        let nixpkgs = format!("path:{}", crate::nix_eval::stand_in_nixpkgs().display());
        let sops = format!(
            "path:{}",
            support::fixtures().join("fake-sops-nix").display()
        );
        std::process::Command::new("nix")
            .args(["--extra-experimental-features", "nix-command flakes"])
            .args(["eval", "--json"])
            .arg(format!(
                "path:{}#nixosConfigurations.m",
                self.dir.path().display()
            ))
            .args(["--apply", apply])
            .args(["--no-write-lock-file", "--option", "flake-registry", ""])
            .args(["--override-input", "nixpkgs", &nixpkgs])
            .args(["--override-input", "sops-nix", &sops])
            .output()
            .unwrap()
    }

    /// The options the probe's own modules define, without who declared them.
    fn defined(&self) -> Vec<String> {
        let out = self.eval("m: m.standIn.definedOptions");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        let mut paths: Vec<String> = list
            .iter()
            .map(|o| o.split_once(' ').unwrap().0.to_owned())
            .collect();
        paths.sort();
        paths
    }

    /// The evaluation error of reading the configuration: its message, whole (the lines Nix
    /// indents under `error: ` joined with newlines).
    fn error(&self, apply: &str) -> String {
        let out = self.eval(apply);
        assert!(
            !out.status.success(),
            "evaluated: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines = stderr.lines().skip_while(|l| !l.starts_with("error: "));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
        let mut message = first["error: ".len()..].to_owned();
        for line in lines.take_while(|l| l.starts_with("       ")) {
            message.push('\n');
            message.push_str(line.trim_start());
        }
        message
    }
}

/// A system with `modules` and the minimum the stand-in reads.
fn system(modules: &str) -> String {
    format!(
        "{{ nixosConfigurations.m = lib.nixosSystem {{ modules = {modules} ++ [ {{ nixpkgs.hostPlatform = \"x86_64-linux\"; }} ]; }}; }}"
    )
}

#[test]
fn the_collector_follows_every_way_a_module_reaches_nixos_system() {
    // A let-bound module list, a machine taken from a set merged with `//` (as flake.nix does
    // with `machines.rk1`), an inline module inside `imports`, values bound through let,
    // lib.optionalAttrs, lib.mkIf, lib.mkMerge and `//`.
    let probe = Probe::new(&format!(
        r#"let
      base = {{ lib, ... }}: let ssh = {{ enable = true; }}; in {{
        imports = [ {{ services.fstrim.enable = true; }} ];
        services.openssh = ssh // {{ settings.PermitRootLogin = "no"; }};
      }};
      common = [ base ];
      machines = {{ a = ./none.nix; }} // {{ rk1.networking.hostName = ""; }};
      extra = {{ lib, ... }}: lib.optionalAttrs true {{ time.timeZone = "UTC"; }}
        // {{ users.users.admin = lib.mkIf false {{ isNormalUser = true; }}; }}
        // {{ boot.kernelParams = lib.mkMerge [ [ "a" ] (lib.mkBefore [ "b" ]) ]; }};
    in {}"#,
        system("common ++ [ machines.rk1 extra ]")
    ));
    assert_eq!(
        probe.defined(),
        [
            "boot.kernelParams",
            "networking.hostName",
            "nixpkgs.hostPlatform",
            "services.fstrim.enable",
            "services.openssh.enable",
            "services.openssh.settings.PermitRootLogin",
            "time.timeZone",
            "users.users.<name>.isNormalUser",
        ]
    );
}

#[test]
fn the_stand_in_refuses_an_unknown_option_a_wrong_type_and_a_conflict_even_unread() {
    // Nothing reads these options; the configuration is refused anyway.
    let read = "m: m.config.networking.hostName";
    let case = |module: &str| Probe::new(&system(&format!("[ {module} ]"))).error(read);
    assert_eq!(
        case(r#"{ networking.hostName = "a"; rk1.services.no-such-service.enable = true; }"#),
        "The option `rk1.services.no-such-service.enable' does not exist. Definition values in: an inline module of flake.nix"
    );
    assert_eq!(
        case(r#"{ networking.hostName = "a"; services.no-such-service.enable = true; }"#),
        "The option `services.no-such-service.enable' does not exist. Definition values in: an inline module of flake.nix"
    );
    // A path where nixpkgs wants a string, a string where it wants a list.
    assert_eq!(
        case(r#"{ networking.hostName = "a"; system.stateVersion = /etc; }"#),
        "A definition for option `system.stateVersion' is not of type `string': the path /etc in `an inline module of flake.nix'"
    );
    assert_eq!(
        case(r#"{ networking.hostName = "a"; boot.kernelParams = "quiet"; }"#),
        "A definition for option `boot.kernelParams' is not of type `list of string': \"quiet\" in `an inline module of flake.nix'"
    );
    assert_eq!(
        case(r#"{ networking.hostName = "a"; services.openssh.settings.PermitRootLogin = "maybe"; }"#),
        "A definition for option `services.openssh.settings.PermitRootLogin' is not of type `null or one of \"yes\", \"without-password\", \"prohibit-password\", \"forced-commands-only\", \"no\"': \"maybe\" in `an inline module of flake.nix'"
    );
    let conflict = case(
        r#"{ networking.hostName = "a"; time.timeZone = "UTC"; } { time.timeZone = "Europe/Berlin"; }"#,
    );
    assert_eq!(
        conflict,
        "The option `time.timeZone' has conflicting definition values:\n\
         - In `an inline module of flake.nix': \"UTC\"\n\
         - In `an inline module of flake.nix': \"Europe/Berlin\""
    );
}

#[test]
fn the_stand_in_merges_by_priority_order_and_condition_as_nixpkgs_does() {
    let probe = Probe::new(&system(
        r#"[
          ({ lib, ... }: {
            networking.hostName = lib.mkDefault "default";
            time.timeZone = lib.mkForce "UTC";
            boot.kernelParams = lib.mkAfter [ "last" ];
            services.fstrim.enable = lib.mkIf false true;
          })
          ({ lib, ... }: {
            networking.hostName = "plain";
            time.timeZone = "Europe/Berlin";
            boot.kernelParams = lib.mkMerge [ [ "middle" ] (lib.mkBefore [ "first" ]) ];
            services.fstrim.enable = lib.mkIf true false;
            sdImage.postBuildCommands = lib.mkBefore "echo one";
          })
          { sdImage.postBuildCommands = "echo two"; }
        ]"#,
    ));
    let out = probe.eval(
        "m: { inherit (m.config.networking) hostName; inherit (m.config.time) timeZone; \
         inherit (m.config.boot) kernelParams; fstrim = m.config.services.fstrim.enable; \
         post = m.config.sdImage.postBuildCommands; }",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "hostName": "plain",
            "timeZone": "UTC",
            "kernelParams": ["first", "middle", "last"],
            "fstrim": false,
            "post": "echo one\necho two",
        })
    );
}

#[test]
#[cfg_attr(
    not(tests_as_root),
    ignore = "reads /nix/store itself, which a normal user's chroot store (support::nix_config) keeps elsewhere: run the suite as root, as CI does"
)]
fn the_sops_nix_stand_in_refuses_a_key_file_in_the_store() {
    // sops-nix's pathNotInStore: a Nix path literal in a flake is a store path once evaluated.
    let probe = |key: &str| {
        Probe::new(&system(&format!(
            "[ sops-nix.nixosModules.sops {{ networking.hostName = \"a\"; sops.age.keyFile = {key}; }} ]"
        )))
    };
    let error = probe("./keys/age.txt").error("m: m.config.sops.age.keyFile");
    assert!(
        error.starts_with("A definition for option `sops.age.keyFile' is not of type `null or pathNotInStore': the path /nix/store/"),
        "{error}"
    );
    let out = probe("\"/var/lib/sops-nix/key.txt\"").eval("m: m.config.sops.age.keyFile");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"/var/lib/sops-nix/key.txt\""
    );
    // Without the sops-nix module, sops.* is not declared at all.
    let error = Probe::new(&system(
        "[ { networking.hostName = \"a\"; sops.age.keyFile = \"/k\"; } ]",
    ))
    .error("m: m.config.networking.hostName");
    assert_eq!(
        error,
        "The option `sops.age.keyFile' does not exist. Definition values in: an inline module of flake.nix"
    );
}

#[test]
fn the_guides_mistakes_are_not_in_the_list() {
    let listed: Vec<String> = listed().iter().map(|l| l.path.clone()).collect();
    for wrong in [
        // FACTS.md: phone sensors, not for servers or RK1 images.
        "hardware.sensor.iio.enable",
        // FACTS.md: nixpkgs wires the guest agent and shutdown scripts as plain systemd units.
        "services.google-guest-agent.enable",
        "services.google-shutdown-scripts.enable",
        // Renamed to image.baseName; the guide's sdImage.image.baseName never existed.
        "sdImage.imageBaseName",
        "sdImage.image.baseName",
    ] {
        assert!(!listed.iter().any(|l| l == wrong), "{wrong} is listed");
    }
}
