//! `flakesmith init`: answers → project → rendered tree → a new repository.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::Result;

use super::Outcome;
use crate::{
    answer_files::{read_blob, read_ssh_keys},
    cli::{init_flag, InitArgs},
    echo::quoted,
    model::{
        answers::{BLOB_FILE, MAX_NODES},
        Answers, InvalidAnswer, Layout, NixpkgsBranch, Platform, Project, StateVersion,
    },
    prompt::{self, Asking, Question},
    render, secrets,
    sync::{self, PlanOptions},
    UsageError,
};

pub fn run(args: InitArgs) -> Result<Outcome> {
    let (mut answers, mut given) = starting_answers(&args)?;
    apply_flags(&args, &mut answers, &mut given)?;

    let asking = if args.yes || args.answers.is_some() {
        Asking::Defaults
    } else if prompt::can_ask() {
        Asking::Terminal
    } else {
        Asking::Refuse
    };
    prompt::complete(&mut answers, &given, asking)?;
    // Recorded now, so that a later change of nixpkgs-branch does not move system.stateVersion.
    if let (None, Ok(branch)) = (
        &answers.state_version,
        NixpkgsBranch::parse(&answers.nixpkgs_branch),
    ) {
        answers.state_version = Some(StateVersion::of_branch(&branch).to_string());
    }
    if !answers.has_slots() {
        // A flag about Turing Pi 2 nodes would be dropped without a word.
        let slot_flag = [
            ("hosts", !args.hosts.is_empty()),
            ("nodes", args.nodes.is_some()),
            ("host_prefix", args.host_prefix.is_some()),
            ("bmc_hosts", !args.bmc_hosts.is_empty()),
        ]
        .into_iter()
        .find(|(_, given)| *given);
        if let Some((id, _)) = slot_flag {
            return Err(InvalidAnswer::new(
                init_flag(id),
                format!(
                    "only used with the rk1 platform (Turing Pi 2 nodes): add rk1 to {}",
                    init_flag("platforms")
                ),
            )
            .into());
        }
        answers.nodes.clear();
        answers.boards.clear();
    }

    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&answers.name));
    // An init that crashed part-way left its journal here: rolled back before anything looks at
    // what the directory holds (its node identities, its blob), as every command does.
    let lock = if dir.is_dir() {
        Some(super::repo::lock_and_recover(&dir)?)
    } else {
        None
    };
    let blob = take_blob(&mut answers, &dir).map_err(|e| named_by_flag(&args, e))?;
    // Node identities are made in memory now (their recipients go into .sops.yaml) and
    // written, 0600, only once the repo exists.
    let mut node_keys = secrets::NodeKeys::default();
    let project = Project::new(&answers, |secrets, nodes| {
        node_keys = secrets::NodeKeys::prepare(&dir, secrets, nodes)?;
        anyhow::Ok(node_keys.recipients())
    })
    .map_err(|e| match e.downcast::<InvalidAnswer>() {
        Ok(invalid) => named_by_flag(&args, invalid).into(),
        Err(e) => e,
    })?;
    let tree = render::render(&project)?;
    let blob: Option<sync::NewFile> = blob.map(|contents| sync::NewFile {
        path: BLOB_FILE.to_owned(),
        contents,
        mode: 0o644,
    });

    let existing = dir_state(&dir)?;
    if existing == DirState::NonEmpty && !args.force {
        return Err(UsageError::new(format!(
            "{} is not empty; use {} to add the generated files (your files are never overwritten), or `flakesmith update` in a generated repo",
            dir.display(),
            init_flag("force"),
        ))
        .into());
    }

    if args.dry_run {
        println!(
            "Would write {} files to {}:",
            tree.len() + usize::from(blob.is_some()),
            dir.display()
        );
        for (path, file) in tree.iter() {
            println!("  {path} ({} bytes)", file.contents.len());
        }
        if let Some(blob) = &blob {
            println!(
                "  {} ({} bytes, your bootloader blob)",
                blob.path,
                blob.contents.len()
            );
        }
        for path in node_keys.new_paths() {
            println!("  {path} (new node age identity, 0600, git-ignored)");
        }
        return Ok(Outcome::Success);
    }

    // Into a new or empty directory as into one with files (--force): the transaction of every
    // command that changes a repo, the node identities and the blob (unless one is there)
    // created in it, so that an error rolls all of it back, and a crash is rolled back by the
    // next run, in this directory, of init or of any other command.
    if existing == DirState::Missing {
        fs_err::create_dir_all(&dir)?;
    }
    let mut new_files = node_keys.new_files(&dir);
    new_files.extend(blob.filter(|b| dir.join(&b.path).symlink_metadata().is_err()));
    let transaction = || -> Result<_> {
        let lock = match lock {
            Some(lock) => lock,
            None => super::repo::lock_and_recover(&dir)?,
        };
        let options = PlanOptions {
            no_merge: true,
            ..Default::default()
        };
        let plan = sync::plan(&dir, &tree, options)?;
        Ok((lock, sync::apply_with(&dir, &plan, &new_files)?))
    };
    // Held until git has staged the files too.
    let (_lock, applied) = match transaction() {
        Ok(done) => done,
        Err(e) => {
            if existing == DirState::Missing {
                // Rolled back: the directory is empty again, and was not there before.
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };
    // What init wrote, for git: never a file of the user's it kept.
    let mut written: Vec<String> = applied
        .written
        .iter()
        .chain(&applied.deleted)
        .cloned()
        .collect();
    written.extend(seen_by_git(&new_files));
    let summary = if existing == DirState::NonEmpty {
        // Generated files the new answers no longer generate (unedited) are removed, as by
        // `update`: said, since the user did not ask for a removal.
        let removed = match applied.deleted.as_slice() {
            [] => String::new(),
            deleted => format!("; removed {}", deleted.join(", ")),
        };
        let mut summary = format!(
            "Wrote {} to {}{removed}.",
            super::repo::count(applied.written.len(), "file"),
            dir.display()
        );
        for path in &applied.kept_beside {
            summary.push_str(&format!(
                "\n  kept your {path}; flakesmith's version is in {path}{}",
                sync::NEW_SUFFIX
            ));
        }
        summary
    } else {
        format!(
            "Created {} ({} layout, {} files).",
            dir.display(),
            project.layout,
            applied.written.len() + seen_by_git(&new_files).count(),
        )
    };
    written.extend(tree.paths().map(|p| format!("{}/{p}", sync::BASE_DIR)));
    let made = node_keys.new_paths();
    let git_said = if args.no_git {
        None
    } else {
        Some(stage_in_git(&dir, &written))
    };
    // Printed once the repo is whole: a reader that goes away (`| head`) ends the process at the
    // first print, and must not leave a repo without its node identities.
    println!("{summary}");
    if let Some(said) = git_said.flatten() {
        println!("{said}");
    }
    secrets::report_made(&made);
    if project.ssh_keys.is_empty() {
        eprintln!(
            "warning: no SSH key for the admin (none given with {}, none found in ~/.ssh): nobody can log in to these machines over SSH; add your public key under ssh-keys in {}, then run `flakesmith update`",
            init_flag("ssh_keys"),
            dir.join(crate::render::ANSWERS_FILE).display()
        );
    }
    print_next_steps(&project, &dir);
    if args.no_git {
        // The next steps call nix, which copies a plain directory whole into the store.
        println!(
            "  # not a git work tree ({}): run `git init && git add --all` before any nix command;",
            init_flag("no_git")
        );
        println!(
            "  # nix copies a plain directory, keys/ included, into the world-readable Nix store"
        );
    }
    Ok(Outcome::Success)
}

/// The answers to start from, and which questions they already answer.
fn starting_answers(args: &InitArgs) -> Result<(Answers, BTreeSet<Question>)> {
    if let Some(path) = &args.answers {
        let text = fs_err::read_to_string(path)?;
        let answers = Answers::from_yaml(&text).map_err(|e| {
            InvalidAnswer::new(format!("{}: {}", path.display(), e.field), e.message)
        })?;
        return Ok((answers, Question::ALL.into_iter().collect()));
    }
    let mut answers = Answers::default();
    if let Some(name) = args.dir.as_deref().and_then(Path::file_name) {
        answers.name = name.to_string_lossy().into_owned();
    }
    answers.ssh_keys = detect_ssh_keys();
    answers.secrets.admin_age_recipients = detect_age_recipient().into_iter().collect();
    Ok((answers, BTreeSet::new()))
}

fn apply_flags(args: &InitArgs, a: &mut Answers, given: &mut BTreeSet<Question>) -> Result<()> {
    let mut answer = |q: Question| {
        given.insert(q);
    };
    if let Some(name) = &args.name {
        a.name = name.clone();
        answer(Question::Name);
    } else if args.dir.is_some() {
        // The directory names the project unless told otherwise; not worth a question.
        answer(Question::Name);
    }
    if let Some(layout) = args.layout {
        a.layout = layout;
        answer(Question::Layout);
    }
    if !args.platforms.is_empty() {
        a.platforms = args.platforms.clone();
        if args.layout.is_none() && a.platforms != [Platform::Rk1] {
            a.layout = Layout::MultiCloud;
            answer(Question::Layout);
        }
        answer(Question::Platforms);
    }
    if !args.hosts.is_empty() {
        a.set_hosts(args.hosts.clone());
        answer(Question::Nodes);
    } else if args.nodes.is_some() || args.host_prefix.is_some() {
        let count = args.nodes.unwrap_or(a.nodes.len());
        // The prompt's range: a typo of 1000 must not write a thousand files.
        if !(1..=MAX_NODES).contains(&count) {
            return Err(InvalidAnswer::new(
                init_flag("nodes"),
                format!("{count} nodes; a repository holds 1 to {MAX_NODES}"),
            )
            .into());
        }
        let prefix = args
            .host_prefix
            .as_deref()
            .unwrap_or(crate::model::answers::DEFAULT_HOST_PREFIX);
        a.set_node_count(count, prefix);
        answer(Question::Nodes);
    }
    if !args.bmc_hosts.is_empty() {
        if args.bmc_hosts.len() != a.boards.len() {
            return Err(InvalidAnswer::new(
                init_flag("bmc_hosts"),
                format!(
                    "{} nodes sit on {} board(s); give one BMC host per board, not {}",
                    a.nodes.len(),
                    a.boards.len(),
                    args.bmc_hosts.len()
                ),
            )
            .into());
        }
        for (board, host) in a.boards.iter_mut().zip(&args.bmc_hosts) {
            board.bmc_host = host.clone();
        }
        answer(Question::BmcHosts);
    }
    if let Some(user) = &args.admin_user {
        a.admin_user = user.clone();
        answer(Question::AdminUser);
    }
    if !args.ssh_keys.is_empty() {
        a.ssh_keys = read_ssh_keys(&args.ssh_keys)
            .map_err(|e| InvalidAnswer::new(init_flag("ssh_keys"), format!("{e:#}")))?;
        answer(Question::SshKeys);
    }
    if let Some(mode) = args.secrets {
        a.secrets.mode = mode;
        answer(Question::Secrets);
    }
    if !args.age_recipients.is_empty() {
        a.secrets.admin_age_recipients = args.age_recipients.clone();
    }
    if let Some(r) = args.node_recipients {
        a.secrets.node_recipients = r;
    }
    if let Some(key) = &args.deployment_key {
        let keys = read_ssh_keys(std::slice::from_ref(key))
            .map_err(|e| InvalidAnswer::new(init_flag("deployment_key"), format!("{e:#}")))?;
        // The answer holds one key; taking the first of several would drop the others unsaid.
        if keys.len() > 1 {
            return Err(InvalidAnswer::new(
                init_flag("deployment_key"),
                format!(
                    "{} holds {} keys; give the one key for first access",
                    quoted(key),
                    keys.len()
                ),
            )
            .into());
        }
        a.secrets.deployment_key = keys.into_iter().next();
    }
    if a.secrets.mode == crate::model::answers::SecretsMode::DeploymentKeys {
        // A recipient found in ~/.config/sops goes unused without a word; one given does not.
        if !args.age_recipients.is_empty() {
            return Err(InvalidAnswer::new(
                init_flag("age_recipients"),
                format!(
                    "only used with {} sops (deployment-keys mode encrypts nothing)",
                    init_flag("secrets")
                ),
            )
            .into());
        }
        a.secrets.admin_age_recipients.clear();
    }
    if let Some(branch) = &args.nixpkgs_branch {
        a.nixpkgs_branch = branch.clone();
        answer(Question::NixpkgsBranch);
    }
    if let Some(blob) = &args.bootloader_blob {
        a.bootloader.blob = Some(blob.to_string_lossy().into_owned());
        answer(Question::Bootloader);
    }
    if args.no_bootloader_blob {
        a.bootloader.blob = None;
        answer(Question::Bootloader);
    }
    if let Some(dots) = &args.dots {
        a.dots = Some(dots.clone()).filter(|d| !d.is_empty());
        answer(Question::Dots);
    }
    if args.no_dots {
        a.dots = None;
        answer(Question::Dots);
    }
    if !args.build_systems.is_empty() {
        a.build.systems = args.build_systems.clone();
    }
    if let Some(foreign) = args.foreign {
        a.build.foreign = foreign;
    }
    if let Some(v) = &args.state_version {
        a.state_version = Some(v.clone());
    }
    if let Some(hash) = &args.temporary_password_hash {
        a.temporary_password_hash = Some(hash.clone()).filter(|h| !h.is_empty());
        answer(Question::TemporaryPassword);
    }
    if args.no_node_exporter {
        a.monitoring.node_exporter = false;
        answer(Question::Monitoring);
    }
    if args.open_exporter_port {
        a.monitoring.open_port = true;
        answer(Question::Monitoring);
    }
    if let Some(format) = args.aws_image_format {
        a.aws.image_format = format;
        answer(Question::AwsImageFormat);
    }
    if args.raw_efi {
        a.generic_x86_64.raw_efi = true;
        answer(Question::RawEfi);
    }
    Ok(())
}

/// Validation names the flakesmith.yaml field (`nodes[1].host`); a value the user gave as a
/// flag is named by that flag instead, since the user has not seen the file yet, and a value
/// from --answers by its file and field, as a YAML error in that file is.
fn named_by_flag(args: &InitArgs, mut e: InvalidAnswer) -> InvalidAnswer {
    let field = e.field.as_str();
    let host_flag = if !args.hosts.is_empty() {
        Some(init_flag("hosts"))
    } else {
        args.host_prefix.is_some().then(|| init_flag("host_prefix"))
    };
    let flag = match field {
        "name" => args.name.is_some().then(|| init_flag("name")),
        "admin-user" => args.admin_user.is_some().then(|| init_flag("admin_user")),
        "nixpkgs-branch" => args
            .nixpkgs_branch
            .is_some()
            .then(|| init_flag("nixpkgs_branch")),
        "dots" => args.dots.is_some().then(|| init_flag("dots")),
        "bootloader.blob" => args
            .bootloader_blob
            .is_some()
            .then(|| init_flag("bootloader_blob")),
        "platforms" => (!args.platforms.is_empty()).then(|| init_flag("platforms")),
        "secrets.deployment-key" => args
            .deployment_key
            .is_some()
            .then(|| init_flag("deployment_key")),
        "state-version" => args
            .state_version
            .is_some()
            .then(|| init_flag("state_version")),
        "temporary-password-hash" => args
            .temporary_password_hash
            .is_some()
            .then(|| init_flag("temporary_password_hash")),
        "nodes" => host_flag.or(args.nodes.is_some().then(|| init_flag("nodes"))),
        _ if field.starts_with("nodes[") && field.ends_with("].host") => host_flag,
        _ if field.starts_with("boards[") && field.ends_with("].bmc-host") => {
            (!args.bmc_hosts.is_empty()).then(|| init_flag("bmc_hosts"))
        }
        _ if field.starts_with("secrets.admin-age-recipients") => {
            (!args.age_recipients.is_empty()).then(|| init_flag("age_recipients"))
        }
        _ if field.starts_with("build.systems") => {
            (!args.build_systems.is_empty()).then(|| init_flag("build_systems"))
        }
        _ => None,
    };
    match (flag, &args.answers) {
        (Some(flag), _) => e.field = flag,
        (None, Some(path)) => e.field = format!("{}: {field}", path.display()),
        (None, None) => {}
    }
    e
}

/// The user's own public key, as the default answer (the first that exists, ed25519 first).
fn detect_ssh_keys() -> Vec<String> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .map(|f| Path::new(&home).join(".ssh").join(f))
        .find_map(|p| read_ssh_keys(&[p.to_string_lossy().into_owned()]).ok())
        .unwrap_or_default()
}

/// The recipient of the user's sops age identity, when they have one.
fn detect_age_recipient() -> Option<String> {
    use std::str::FromStr;
    let path = match std::env::var_os("SOPS_AGE_KEY_FILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config/sops/age/keys.txt"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-"))?;
    let identity = age::x25519::Identity::from_str(line.trim()).ok()?;
    Some(identity.to_public().to_string())
}

/// Reads a blob named by path (outside the repo) and points the answers at its in-repo copy.
fn take_blob(answers: &mut Answers, dir: &Path) -> Result<Option<Vec<u8>>, InvalidAnswer> {
    let Some(path) = answers.bootloader.blob.clone() else {
        return Ok(None);
    };
    if path == BLOB_FILE {
        // The in-repository name: only `init --force` into a directory that holds it.
        let copy = dir.join(BLOB_FILE);
        if !copy.is_file() {
            return Err(InvalidAnswer::new(
                "bootloader.blob",
                format!("{BLOB_FILE} is the copy in a repository, and {} has none: give the path of your u-boot-rockchip.bin", dir.display()),
            ));
        }
        read_blob(&copy.to_string_lossy()).map_err(|m| InvalidAnswer::new("bootloader.blob", m))?;
        return Ok(None);
    }
    let bytes = read_blob(&path).map_err(|m| InvalidAnswer::new("bootloader.blob", m))?;
    answers.bootloader.blob = Some(BLOB_FILE.to_owned());
    Ok(Some(bytes))
}

#[derive(Debug, PartialEq, Eq)]
enum DirState {
    Missing,
    Empty,
    NonEmpty,
}

fn dir_state(dir: &Path) -> Result<DirState> {
    if !dir.exists() {
        return Ok(DirState::Missing);
    }
    if !dir.is_dir() {
        return Err(
            UsageError::new(format!("{} exists and is not a directory", dir.display())).into(),
        );
    }
    Ok(if fs_err::read_dir(dir)?.next().is_none() {
        DirState::Empty
    } else {
        DirState::NonEmpty
    })
}

/// Of the files init writes beside the tree, those git sees: the blob. The node identities (and
/// keys/.gitignore) are git-ignored on purpose.
fn seen_by_git(files: &[sync::NewFile]) -> impl Iterator<Item = String> + '_ {
    files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| p == BLOB_FILE)
}

/// Flakes only see files git knows about: the files init wrote are staged, in the repository
/// `dir` is already in (and nothing else of it), or in a new one. Returns what to tell the user.
fn stage_in_git(dir: &Path, written: &[String]) -> Option<String> {
    let existing = crate::git::work_tree(dir);
    if existing.is_none() {
        if let Err(e) = crate::git::init(dir) {
            eprintln!(
                "note: could not run `git init` ({e:#}); run `git init && git add -A` in {} (flakes only see files git tracks)",
                dir.display()
            );
            return None;
        }
    }
    let synced = super::repo::tell_git(dir, written, crate::git::Stage::Contents)?;
    let files = super::repo::count(synced.added, "file");
    Some(match existing {
        Some(root) => format!(
            "git: staged {files} in the existing repository {} (nothing committed)",
            root.display()
        ),
        None => format!(
            "git: initialised a repository in {} and staged {files} (nothing committed)",
            dir.display()
        ),
    })
}

fn print_next_steps(project: &Project, dir: &Path) {
    println!("\nNext steps:");
    for line in next_steps(project, dir) {
        println!("  {line}");
    }
}

/// What to run next, per chosen platform: each image's build and how it gets onto its machine.
fn next_steps(project: &Project, dir: &Path) -> Vec<String> {
    use crate::model::answers::SecretsMode;
    let mut steps = vec![format!("cd {}", dir.display())];
    if project.ssh_keys.is_empty() {
        steps.push("# no SSH key was given: add one under ssh-keys in flakesmith.yaml, then `flakesmith update`".into());
    }
    // (command, what it does), aligned as one block. `flakesmith build` rather than `nix build`:
    // it enables flakes itself, which Debian's nix.conf (nix-bin) does not. A machine with nodes
    // comes first: its first node's image is the one to try.
    let mut machines = crate::model::machines(project);
    machines.sort_by_key(|m| !m.has_slots);
    let mut commands: Vec<(String, &str)> = Vec::new();
    for machine in &machines {
        commands.extend(
            machine
                .next_steps
                .iter()
                .map(|s| (s.command.clone(), s.what.as_str())),
        );
    }
    commands.push(("./build-all-images.sh".into(), "every image, in one build"));
    for machine in &machines {
        commands.extend(
            machine
                .steps_after_build
                .iter()
                .map(|s| (s.command.clone(), s.what.as_str())),
        );
    }
    let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    steps.extend(
        commands
            .into_iter()
            .map(|(c, what)| format!("{c:width$}  # {what}")),
    );
    let cloud = machines.iter().any(|m| !m.has_slots);
    if cloud && project.secrets.mode == SecretsMode::DeploymentKeys {
        steps.push("# after a machine's first boot: switch it with the deployment key, which removes it (README, \"Security\")".into());
    }
    if cloud && project.secrets.mode == SecretsMode::Sops {
        steps.push("# after a machine's first boot: add its host key's recipient to .sops.yaml (README, \"Secrets\")".into());
    }
    steps.push(
        match project.layout {
            Layout::Rk1Cluster => "See README.md for flashing and deploying.",
            Layout::MultiCloud => "See README.md for building, uploading and deploying each image.",
        }
        .into(),
    );
    steps
}
