//! What `flakesmith build` needs from the machine before it starts nix: nix itself (and a version
//! that has flakes), the flakes feature (passed on the command line when nix.conf lacks it), and a
//! way to build each system the targets need (natively, emulated through binfmt, or on a remote
//! builder). Every missing piece is reported with its fix, all at once.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

/// The feature flags every nix call gets, so that flakes work without editing nix.conf.
pub const FEATURE_FLAGS: [&str; 2] = ["--extra-experimental-features", "nix-command flakes"];

/// nix < 2.4 has no flakes and no `--extra-experimental-features`.
pub const MIN_NIX: NixVersion = NixVersion(2, 4, 0);
/// Current nixpkgs refuses older Nix (`lib/minver.nix`); an older nix can still build flakes that
/// pin an older nixpkgs, so this is a warning.
pub const NIXPKGS_MIN_NIX: NixVersion = NixVersion(2, 18, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NixVersion(pub u32, pub u32, pub u32);

impl NixVersion {
    /// `nix (Nix) 2.8.0` → 2.8.0; also `nix (Nix) 2.18.1pre…`, `nix (Determinate Nix 3.1) 2.28.3`.
    pub fn parse(version_output: &str) -> Option<Self> {
        let first_line = version_output.lines().next()?;
        let word = first_line.split_whitespace().last()?;
        let mut parts = word.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next()??;
        let patch = parts.next().flatten().unwrap_or(0);
        Some(NixVersion(major, minor, patch))
    }
}

impl fmt::Display for NixVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What the machine's nix says about itself.
#[derive(Debug, Clone)]
pub struct NixInfo {
    pub version: NixVersion,
    /// This machine's Nix system (`x86_64-linux`).
    pub system: String,
    pub extra_platforms: Vec<String>,
    /// The `builders` setting, `@file` references expanded.
    pub builders: String,
    /// `max-jobs` as configured; 1 (nix's default) builds one derivation at a time.
    pub max_jobs: u64,
    /// Where the store's files really are when the store is a chroot store (`store = /path` or
    /// `local?root=/path`), as Nix chooses for a user with neither a daemon nor a writable /nix:
    /// its paths still read /nix/store/…, but the files live under this directory.
    pub store_root: Option<PathBuf>,
}

impl NixInfo {
    /// Where a store path's files are on this machine's disk.
    pub fn on_disk(&self, store_path: &Path) -> PathBuf {
        store_path_on_disk(self.store_root.as_deref(), store_path)
    }
}

/// Where a store path's files are on this machine's disk when the store is a chroot store with
/// its root at `store_root` (the tests give Nix one too, and read their store paths with this).
pub fn store_path_on_disk(store_root: Option<&Path>, store_path: &Path) -> PathBuf {
    match store_root {
        Some(root) => root.join(store_path.strip_prefix("/").unwrap_or(store_path)),
        None => store_path.to_owned(),
    }
}

/// The root directory of a chroot store named by nix's `store` setting, if it names one.
fn chroot_store_root(store: &str) -> Option<PathBuf> {
    if store.starts_with('/') {
        return Some(PathBuf::from(store));
    }
    let params = store.strip_prefix("local?")?;
    params
        .split('&')
        .find_map(|p| p.strip_prefix("root="))
        .map(PathBuf::from)
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub missing: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn note(name: &str, detail: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            name: name.into(),
            missing: false,
            detail: detail.into(),
            fix,
        }
    }

    fn missing(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            missing: true,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n    fix: {}", fix.replace('\n', "\n         "))?;
        }
        Ok(())
    }
}

/// Ask nix about itself. `Err` holds the checks that failed (nix missing or too old).
pub fn probe_nix() -> Result<(NixInfo, Vec<Check>), Vec<Check>> {
    let version_output = match Command::new("nix").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            return Err(vec![Check::missing(
                "nix",
                format!(
                    "`nix --version` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "repair the Nix installation (https://nixos.org/download)",
            )])
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(vec![Check::missing(
                "nix",
                "not found on PATH",
                "install Nix: https://nixos.org/download (Debian/Ubuntu: `apt install nix-bin`), \
                 then open a new shell",
            )])
        }
        Err(e) => {
            return Err(vec![Check::missing(
                "nix",
                format!("cannot run nix: {e}"),
                "check that `nix` on PATH is executable",
            )])
        }
    };
    let Some(version) = NixVersion::parse(&version_output) else {
        return Err(vec![Check::missing(
            "nix",
            format!("cannot read the version from `{}`", version_output.trim()),
            "install Nix from https://nixos.org/download",
        )]);
    };
    if version < MIN_NIX {
        return Err(vec![Check::missing(
            "nix",
            format!("version {version} has no flakes (needs ≥ {MIN_NIX})"),
            "upgrade Nix: https://nixos.org/download",
        )]);
    }

    let mut notes = Vec::new();
    if version < NIXPKGS_MIN_NIX {
        notes.push(Check::note(
            "nix",
            format!("version {version} is older than {NIXPKGS_MIN_NIX}, the oldest current nixpkgs evaluates with"),
            Some("upgrade Nix (https://nixos.org/download) if evaluation stops in lib/minver.nix".into()),
        ));
    }

    // Without nix-command in nix.conf even `show-config` needs the flag; try without first to
    // learn whether the user's own `nix build` would work.
    let plain = Command::new("nix").args(["show-config", "--json"]).output();
    let plain_ok = matches!(&plain, Ok(out) if out.status.success());
    let flakes_configured = plain_ok && getflake_available();
    if !flakes_configured {
        notes.push(Check::note(
            "flakes",
            "not enabled in nix.conf; flakesmith passes --extra-experimental-features 'nix-command flakes'",
            Some("for plain `nix build .#…`, add `experimental-features = nix-command flakes` to \
                  ~/.config/nix/nix.conf (NixOS: nix.settings.experimental-features)"
                .into()),
        ));
    }
    let config = Command::new("nix")
        .args(FEATURE_FLAGS)
        .args(["show-config", "--json"])
        .output();
    let config: Value = match config {
        Ok(out) if out.status.success() => {
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
        }
        Ok(out) => {
            return Err(vec![Check::missing(
                "nix",
                format!(
                    "`nix show-config` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "check /etc/nix/nix.conf and ~/.config/nix/nix.conf",
            )])
        }
        Err(e) => {
            return Err(vec![Check::missing(
                "nix",
                format!("cannot run nix: {e}"),
                "reinstall Nix",
            )])
        }
    };
    let setting = |name: &str| {
        config
            .get(name)
            .map(|s| s.get("value").unwrap_or(s))
            .cloned()
    };
    let strings = |v: Option<Value>| -> Vec<String> {
        match v {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let system = setting("system")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "x86_64-linux".into());
    let builders = setting("builders")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let info = NixInfo {
        version,
        system,
        extra_platforms: strings(setting("extra-platforms")),
        builders: expand_builders(&builders),
        max_jobs: setting("max-jobs").and_then(|v| v.as_u64()).unwrap_or(1),
        store_root: setting("store").and_then(|v| v.as_str().and_then(chroot_store_root)),
    };
    Ok((info, notes))
}

/// `builtins.getFlake` exists only while the flakes feature is on.
fn getflake_available() -> bool {
    Command::new("nix-instantiate")
        .args(["--eval", "--expr", "builtins ? getFlake"])
        .output()
        .map(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true")
        .unwrap_or(false)
}

/// `@/etc/nix/machines` → the file's lines; a missing file is no builders.
pub fn expand_builders(spec: &str) -> String {
    spec.split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| match entry.strip_prefix('@') {
            Some(file) => fs_err::read_to_string(file)
                .map(|text| expand_builders(&text))
                .unwrap_or_default(),
            None => entry.to_owned(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The systems a builders spec offers: the second field of each machine line (comma-separated);
/// a machine without one builds for the local system.
pub fn builder_systems(builders: &str, local: &str) -> Vec<String> {
    let mut systems = Vec::new();
    for line in builders.split([';', '\n']) {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut fields = line.split_whitespace();
        if fields.next().is_none() {
            continue;
        }
        match fields.next() {
            Some(list) if list != "-" => systems.extend(list.split(',').map(str::to_owned)),
            _ => systems.push(local.to_owned()),
        }
    }
    systems
}

/// How this machine can build `system`, or the check saying it cannot. `suggested_builders` is a
/// ready `--builders` value for the fix (the repository's RK1 nodes, when they are builders).
pub fn check_system(
    info: &NixInfo,
    builders: &str,
    binfmt_dir: &Path,
    system: &str,
    suggested_builders: Option<&str>,
) -> Check {
    let name = format!("build {system}");
    if system == info.system || natively_compatible(&info.system, system) {
        return Check::note(&name, "native", None);
    }
    if builder_systems(builders, &info.system)
        .iter()
        .any(|s| s == system)
    {
        return Check::note(&name, "on a remote builder", None);
    }
    let arch = system.split('-').next().unwrap_or(system);
    let emulator = binfmt_emulator(binfmt_dir, arch);
    let platform_listed = info.extra_platforms.iter().any(|p| p == system);
    match (platform_listed, emulator) {
        (true, Some(_)) => Check::note(&name, "emulated (binfmt)", None),
        (listed, emulator) => {
            let why = match (listed, emulator) {
                (false, None) => format!(
                    "this {} machine has no {arch} emulator registered, no remote builder for \
                     {system}, and nix does not list it in extra-platforms",
                    info.system
                ),
                (false, Some(e)) => format!(
                    "binfmt has an {arch} emulator ({e}) but nix's extra-platforms does not \
                     list {system}"
                ),
                _ => format!("nix lists {system} in extra-platforms but no {arch} emulator is registered with binfmt_misc"),
            };
            let remote = match suggested_builders {
                Some(spec) => format!(
                    "- a remote builder: the RK1 nodes are builders (remote-builder.nix): \
                     `flakesmith build --builders '{spec}'`"
                ),
                None => format!(
                    "- a remote builder: `flakesmith build --builders 'ssh://nixbuilder@HOST \
                     {system}'` (set `build.rk1-remote-builders: true` in flakesmith.yaml and \
                     `flakesmith update` to make the RK1 nodes builders)"
                ),
            };
            Check::missing(
                &name,
                why,
                format!(
                    "one of:\n\
                     - emulation: on NixOS `boot.binfmt.emulatedSystems = [ \"{system}\" ];`; \
                     elsewhere install qemu-user-static and add `extra-platforms = {system}` to \
                     /etc/nix/nix.conf\n\
                     {remote}\n\
                     - cross-compilation: set `build.foreign: cross` in flakesmith.yaml, \
                     `flakesmith update`, and build packages.{} (the default --system)",
                    info.system
                ),
            )
        }
    }
}

/// An x86_64 CPU runs i686 code and many aarch64 CPUs run armv7l without an emulator.
fn natively_compatible(host: &str, system: &str) -> bool {
    matches!(
        (host, system),
        ("x86_64-linux", "i686-linux") | ("aarch64-linux", "armv7l-linux")
    )
}

/// The name of an enabled binfmt_misc entry that runs `arch` binaries (`qemu-aarch64`,
/// NixOS's `aarch64-linux`), if any.
pub fn binfmt_emulator(binfmt_dir: &Path, arch: &str) -> Option<String> {
    let aliases: &[&str] = match arch {
        "x86_64" => &["x86_64", "x86-64"],
        "armv7l" | "armv6l" => &["arm"],
        other => &[other][..],
    };
    let entries = fs_err::read_dir(binfmt_dir).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !aliases.iter().any(|a| name.contains(a)) {
            continue;
        }
        let enabled = std::fs::read_to_string(entry.path())
            .map(|text| text.starts_with("enabled"))
            .unwrap_or(false);
        if enabled {
            return Some(name);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NixInfo {
        NixInfo {
            version: NixVersion(2, 8, 0),
            system: "x86_64-linux".into(),
            extra_platforms: vec!["i686-linux".into()],
            builders: String::new(),
            max_jobs: 1,
            store_root: None,
        }
    }

    #[test]
    fn a_chroot_store_is_read_under_its_root() {
        for (store, root) in [
            (
                "/home/u/.local/share/nix/root",
                Some("/home/u/.local/share/nix/root"),
            ),
            ("local?root=/srv/nix&state=/x", Some("/srv/nix")),
            ("auto", None),
            ("daemon", None),
            ("local", None),
            ("ssh://builder", None),
        ] {
            assert_eq!(chroot_store_root(store), root.map(PathBuf::from), "{store}");
        }
        let chroot = NixInfo {
            store_root: Some("/srv/nix".into()),
            ..info()
        };
        let path = Path::new("/nix/store/abc-node1");
        assert_eq!(
            chroot.on_disk(path),
            Path::new("/srv/nix/nix/store/abc-node1")
        );
        assert_eq!(info().on_disk(path), path);
    }

    #[test]
    fn versions() {
        assert_eq!(
            NixVersion::parse("nix (Nix) 2.8.0\n"),
            Some(NixVersion(2, 8, 0))
        );
        assert_eq!(
            NixVersion::parse("nix (Nix) 2.18.1pre20231114_dirty"),
            Some(NixVersion(2, 18, 1))
        );
        assert_eq!(
            NixVersion::parse("nix (Determinate Nix 3.1.0) 2.28.3"),
            Some(NixVersion(2, 28, 3))
        );
        assert!(NixVersion(2, 8, 0) < NIXPKGS_MIN_NIX);
        assert_eq!(NixVersion::parse("nix"), None);
    }

    #[test]
    fn builders_spec() {
        let spec =
            "ssh://nixbuilder@rk1-1 aarch64-linux /k 4; ssh://b x86_64-linux,i686-linux\nssh://c";
        assert_eq!(
            builder_systems(spec, "x86_64-linux"),
            [
                "aarch64-linux",
                "x86_64-linux",
                "i686-linux",
                "x86_64-linux"
            ]
        );
    }

    #[test]
    fn foreign_systems_need_emulation_or_a_builder() {
        let empty = tempfile::tempdir().unwrap();
        let missing = check_system(&info(), "", empty.path(), "aarch64-linux", None);
        assert!(missing.missing);
        let text = missing.to_string();
        for fix in [
            "boot.binfmt.emulatedSystems",
            "--builders",
            "build.foreign: cross",
        ] {
            assert!(text.contains(fix), "{text}");
        }
        assert!(
            !check_system(
                &info(),
                "ssh://n aarch64-linux",
                empty.path(),
                "aarch64-linux",
                None
            )
            .missing
        );
        assert!(!check_system(&info(), "", empty.path(), "i686-linux", None).missing);

        fs_err::write(
            empty.path().join("qemu-aarch64"),
            "enabled\ninterpreter /usr/bin/qemu-aarch64\n",
        )
        .unwrap();
        let unlisted = check_system(&info(), "", empty.path(), "aarch64-linux", None);
        assert!(
            unlisted.missing && unlisted.detail.contains("extra-platforms"),
            "{unlisted}"
        );
        let mut listed = info();
        listed.extra_platforms.push("aarch64-linux".into());
        assert!(!check_system(&listed, "", empty.path(), "aarch64-linux", None).missing);

        let spec =
            "ssh://nixbuilder@10.0.0.11 aarch64-linux /root/.ssh/nixbuilder 4 1 big-parallel";
        let suggested = check_system(
            &info(),
            "",
            tempfile::tempdir().unwrap().path(),
            "aarch64-linux",
            Some(spec),
        );
        assert!(
            suggested
                .to_string()
                .contains(&format!("--builders '{spec}'")),
            "{suggested}"
        );
    }
}
