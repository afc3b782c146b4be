//! `flakesmith build`: check prerequisites, evaluate once, build every target in one `nix build`
//! with progress, then link the images into `images/`, write `images/SHA256SUMS` (optionally
//! signed) and print a summary table.

use std::{
    collections::{BTreeSet, HashMap},
    io::IsTerminal,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    cli::BuildArgs,
    cmd::Outcome,
    images::{self, Sum, IMAGES_DIR},
    model::Project,
    nix::{
        build::{self, check_name, Event, Request, Target, Targets},
        log::store_name,
        prereq::{self, Check, NixInfo},
    },
    render::ANSWERS_FILE,
    UsageError,
};

pub fn run(args: BuildArgs) -> Result<Outcome> {
    let repo = &args.repo.dir;
    if !repo.join("flake.nix").is_file() {
        bail!(UsageError::new(format!(
            "--repo {}: no flake.nix there (run flakesmith build inside a generated repository or pass -C DIR)",
            repo.display()
        )));
    }
    if args.targets.is_empty() && !args.all {
        bail!(UsageError::new(
            "TARGET: name at least one target, or pass --all"
        ));
    }
    for target in &args.targets {
        check_name("TARGET", target)?;
    }
    if let Some(system) = &args.system {
        check_name("--system", system)?;
    }
    // In a generated repository the answers say what can be built, and where.
    let project = known_targets(repo, &args)?;
    if let Some(key) = &args.sign_key {
        if !key.is_file() {
            bail!(UsageError::new(format!(
                "--sign-key {}: no such file",
                key.display()
            )));
        }
    }
    let repo = fs_err::canonicalize(repo)?;

    // Prerequisites: everything missing is reported at once, each with its fix.
    let (info, notes) = prereq::probe_nix().map_err(missing_prerequisites)?;
    for note in &notes {
        eprintln!("note: {}", note_text(note));
    }
    if args.sign_key.is_some() && which("ssh-keygen").is_none() {
        return Err(missing_prerequisites(vec![Check {
            name: "ssh-keygen".into(),
            missing: true,
            detail: "not found on PATH, and --sign-key needs it".into(),
            fix: Some("install OpenSSH (Debian: `apt install openssh-client`)".into()),
        }]));
    }

    let targets = if args.all {
        Targets::All
    } else {
        Targets::Named(args.targets.clone())
    };
    // Held to the end: a plain directory is evaluated as a filtered copy that lives as long.
    let source = crate::nix::source::flake_source(&repo)?;
    let request = Request {
        flake: source.path().to_owned(),
        repo: repo.clone(),
        system: args.system.clone().unwrap_or_else(|| info.system.clone()),
        parallel: info.max_jobs <= 1,
        targets,
        builders: args.builders.clone(),
    };

    if args.dry_run {
        // Spell out what --all means: as the flake says when it can be evaluated, else as
        // flakesmith.yaml says.
        let shown = match &request.targets {
            Targets::All => match build::target_names(&request) {
                Ok(names) => Request {
                    targets: Targets::Named(names),
                    ..request.clone()
                },
                Err(_) => match &project {
                    Some(project) => Request {
                        targets: Targets::Named(project.image_targets()),
                        ..request.clone()
                    },
                    None => request.clone(),
                },
            },
            Targets::Named(_) => request.clone(),
        };
        source.keep_lock_file()?;
        if source.is_copy() {
            println!("# {} is not a git work tree: nix would copy it into the world-readable store whole, keys/ included.", repo.display());
            println!("# flakesmith evaluates a copy without keys/; to run this by hand, first: git init && git add --all");
        }
        println!("{}", build::display_command(&shown)?);
        println!("# then: link each output as {IMAGES_DIR}/<target> (a GC root) and write {IMAGES_DIR}/SHA256SUMS");
        if let Some(key) = &args.sign_key {
            let sign = images::sign_command(key, &repo.join(IMAGES_DIR).join(images::SUMS_FILE));
            let words: Vec<String> = std::iter::once(sign.get_program())
                .chain(sign.get_args())
                .map(|w| crate::render::shell_word(&w.to_string_lossy()))
                .collect();
            println!("{}", words.join(" "));
        }
        return Ok(Outcome::Success);
    }

    let fancy = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let evaluating = spinner(fancy, format!("evaluating {}", repo.display()));
    let targets = build::evaluate(&request);
    evaluating.finish_and_clear();
    let targets = targets?;
    source.keep_lock_file()?;

    // The systems the targets build on decide whether emulation or a remote builder is needed.
    let builders = request
        .builders
        .as_deref()
        .map(prereq::expand_builders)
        .unwrap_or_else(|| info.builders.clone());
    let systems: BTreeSet<&str> = targets.iter().map(|t| t.system.as_str()).collect();
    let suggested = project.as_ref().and_then(|p| p.build.rk1_builders.clone());
    let missing: Vec<Check> = systems
        .iter()
        .map(|s| {
            let binfmt = Path::new("/proc/sys/fs/binfmt_misc");
            prereq::check_system(&info, &builders, binfmt, s, suggested.as_deref())
        })
        .filter(|c| c.missing)
        .collect();
    if !missing.is_empty() {
        return Err(missing_prerequisites(missing));
    }

    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    if !fancy {
        eprintln!("building {} in one nix build", names.join(", "));
    }
    let mut display = Display::new(fancy, &targets, &info);
    let report = build::run_build(build::build_command(&info, &request, &targets), |e| {
        display.event(e)
    })?;
    display.finish();

    for (drv, tail) in &report.failed {
        eprintln!("{} failed; last lines of its log:", store_name(drv));
        for line in tail {
            eprintln!("  > {line}");
        }
    }
    if !report.success && report.failed.is_empty() {
        // Not a builder failure (missing builder, evaluation of a dependency, …): nix's own words.
        for error in &report.errors {
            eprintln!("{error}");
        }
    }

    let rows = finish_images(
        &repo,
        &info,
        &targets,
        &report.finished,
        args.sign_key.as_deref(),
        fancy,
    )?;
    print_summary(&rows);

    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.built)
        .map(|r| r.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} targets failed: {}",
            failed.len(),
            rows.len(),
            failed.join(", ")
        );
    }
    if !report.success {
        bail!("nix build failed");
    }
    Ok(Outcome::Success)
}

/// The project of a generated repository (one with flakesmith.yaml), after checking the named
/// targets and `--system` against it; `None` for another flake, which nix alone can check.
fn known_targets(repo: &Path, args: &BuildArgs) -> Result<Option<Project>> {
    if !repo.join(ANSWERS_FILE).is_file() {
        return Ok(None);
    }
    // Read, then unlocked again: a long build must not keep `diff` or `update` waiting.
    let answers = super::repo::Repo::open(repo)?.answers;
    let project = Project::from_answers(&answers)?;
    let targets = project.image_targets();
    if let Some(unknown) = args.targets.iter().find(|t| !targets.contains(t)) {
        bail!(UsageError::new(format!(
            "TARGET: '{unknown}' is not an image of this repository ({ANSWERS_FILE}); choose from {}",
            targets.join(", ")
        )));
    }
    if let Some(system) = args
        .system
        .as_ref()
        .filter(|s| !project.build.systems.contains(s))
    {
        bail!(UsageError::new(format!(
            "--system: '{system}' is not in build.systems of {ANSWERS_FILE}; choose from {}",
            project.build.systems.join(", ")
        )));
    }
    Ok(Some(project))
}

fn note_text(check: &Check) -> String {
    match &check.fix {
        Some(fix) => format!("{}: {} ({fix})", check.name, check.detail),
        None => format!("{}: {}", check.name, check.detail),
    }
}

fn missing_prerequisites(checks: Vec<Check>) -> anyhow::Error {
    let list: Vec<String> = checks.iter().map(|c| format!("  - {c}")).collect();
    anyhow::anyhow!("missing prerequisites:\n{}", list.join("\n"))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One line of the summary.
struct Row {
    target: String,
    /// Whether the target's output exists.
    built: bool,
    /// The image, relative to the repository.
    image: Option<String>,
    size: Option<u64>,
    /// Time from the start of the build until this target finished; `None` when it was already
    /// in the store.
    time: Option<Duration>,
}

/// The GC roots of a chroot store's outputs, inside the images directory.
const GC_ROOTS_DIR: &str = ".gcroots";

/// Link every built output into images/, hash the images, write (and sign) SHA256SUMS.
fn finish_images(
    repo: &Path,
    info: &NixInfo,
    targets: &[Target],
    finished: &HashMap<String, Duration>,
    sign_key: Option<&Path>,
    fancy: bool,
) -> Result<Vec<Row>> {
    let dir = repo.join(IMAGES_DIR);
    let mut rows = Vec::new();
    let mut sums = Vec::new();
    for target in targets {
        let out = info.on_disk(&target.out);
        let built = out.exists();
        let mut row = Row {
            target: target.name.clone(),
            built,
            image: None,
            size: None,
            time: finished.get(&target.drv).copied(),
        };
        if built {
            fs_err::create_dir_all(&dir)?;
            let link = dir.join(&target.name);
            if out == target.out {
                images::add_gc_root(&target.out, &link)?;
            } else {
                // A chroot store's GC follows roots that name /nix/store paths, which do not exist
                // on this machine's disk: the root lives under .gcroots/, the link a person (and
                // sha256sum -c) follows points at the files.
                images::add_gc_root(&target.out, &dir.join(GC_ROOTS_DIR).join(&target.name))?;
                images::link_outside_store(&out, &link)?;
            }
            if let Some(image) = images::find_image(&out) {
                let inside = image.strip_prefix(&out).unwrap_or(Path::new(""));
                let relative = if inside.as_os_str().is_empty() {
                    PathBuf::from(&target.name)
                } else {
                    Path::new(&target.name).join(inside)
                };
                let size = fs_err::metadata(&image)?.len();
                let bar = bytes_bar(fancy, size, format!("sha256 {}", relative.display()));
                let sha256 = images::sha256_file(&image, |n| bar.inc(n))?;
                bar.finish_and_clear();
                row.image = Some(format!("{IMAGES_DIR}/{}", relative.display()));
                row.size = Some(size);
                if crate::stamp::record::STAMPABLE_TARGETS.contains(&target.name.as_str()) {
                    // What `flakesmith stamp` accepts as this repository's identical image.
                    crate::stamp::record::remember(
                        repo,
                        &target.name,
                        crate::stamp::record::Recorded::of(
                            &image,
                            &relative.to_string_lossy(),
                            sha256.clone(),
                        )?,
                    )?;
                }
                sums.push(Sum {
                    sha256,
                    path: relative.to_string_lossy().into_owned(),
                });
            }
        }
        rows.push(row);
    }
    if !sums.is_empty() {
        let manifest = images::write_sums(&dir, &sums)?;
        let mut done = format!("wrote {IMAGES_DIR}/{}", images::SUMS_FILE);
        if let Some(key) = sign_key {
            images::sign(key, &manifest).context("signing SHA256SUMS")?;
            done.push_str(&format!(" and {IMAGES_DIR}/{}.sig", images::SUMS_FILE));
        }
        eprintln!(
            "{done} (check: cd {IMAGES_DIR} && sha256sum -c {})",
            images::SUMS_FILE
        );
    }
    Ok(rows)
}

fn print_summary(rows: &[Row]) {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let image = match (&r.image, r.built) {
                (Some(image), _) => image.clone(),
                (None, true) => format!("(no image file in {IMAGES_DIR}/{})", r.target),
                (None, false) => "FAILED".into(),
            };
            let size = r.size.map(images::human_size).unwrap_or_else(|| "-".into());
            let time = match (r.time, r.built) {
                (Some(t), true) => format_duration(t),
                (None, true) => "cached".into(),
                (_, false) => "-".into(),
            };
            [r.target.clone(), image, size, time]
        })
        .collect();
    let header = ["TARGET", "IMAGE", "SIZE", "TIME"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        println!("{}", line.trim_end());
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn spinner(fancy: bool, message: String) -> ProgressBar {
    if !fancy {
        eprintln!("{message}");
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bytes_bar(fancy: bool, len: u64, message: String) -> ProgressBar {
    if !fancy {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len)
        .with_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})")
                .expect("valid template"),
        )
        .with_message(message)
}

/// The progress display: indicatif bars on a terminal, plain lines otherwise.
struct Display {
    fancy: bool,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    bars: HashMap<u64, ProgressBar>,
    names: HashMap<u64, String>,
    /// Target derivations → target names, to say "image X done" rather than a store name.
    target_drvs: HashMap<String, String>,
    /// Target derivations → their outputs: a stopped build whose output is missing failed.
    target_outs: HashMap<String, PathBuf>,
    stopped: u64,
    expected: u64,
}

impl Display {
    fn new(fancy: bool, targets: &[Target], info: &NixInfo) -> Self {
        Self {
            fancy,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            overall: None,
            bars: HashMap::new(),
            names: HashMap::new(),
            target_drvs: targets
                .iter()
                .map(|t| (t.drv.clone(), t.name.clone()))
                .collect(),
            target_outs: targets
                .iter()
                .map(|t| (t.drv.clone(), info.on_disk(&t.out)))
                .collect(),
            stopped: 0,
            expected: 0,
        }
    }

    fn println(&self, line: String) {
        if self.fancy {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    fn label(&self, drv: &str) -> String {
        match self.target_drvs.get(drv) {
            Some(target) => format!("{} (target {target})", store_name(drv)),
            None => store_name(drv).to_owned(),
        }
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Progress {
                done,
                expected,
                running: _,
                failed: _,
            } => {
                self.expected = expected;
                if !self.fancy {
                    return;
                }
                let overall = self.overall.get_or_insert_with(|| {
                    let bar = self.multi.insert(0, ProgressBar::new(expected));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} derivations built",
                        )
                        .expect("valid template"),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                overall.set_length(expected);
                overall.set_position(done);
            }
            Event::BuildStarted { id, drv, machine } => {
                let mut label = self.label(drv);
                if !machine.is_empty() {
                    label.push_str(&format!(" on {machine}"));
                }
                if self.fancy {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:.bold} {wide_msg:.dim}")
                            .expect("valid template"),
                    );
                    bar.set_prefix(label.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(id, bar);
                } else {
                    self.println(format!("building {label}"));
                }
                self.names.insert(id, label);
            }
            Event::BuildPhase { id, phase } => {
                if let Some(bar) = self.bars.get(&id) {
                    bar.set_message(phase.to_owned());
                }
            }
            Event::BuildLog { id, line } => {
                if let Some(bar) = self.bars.get(&id) {
                    let clean: String = console::strip_ansi_codes(line)
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect();
                    bar.set_message(clean);
                }
            }
            Event::BuildStopped { id, drv, elapsed } => {
                if let Some(bar) = self.bars.remove(&id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let label = self.names.remove(&id).unwrap_or_else(|| self.label(drv));
                self.stopped += 1;
                let counter = if self.expected > 0 {
                    format!(" [{}/{}]", self.stopped.min(self.expected), self.expected)
                } else {
                    String::new()
                };
                // nix says which builds failed in an error message of its own; for a target the
                // missing output says it here already.
                let verb = match self.target_outs.get(drv) {
                    Some(out) if !out.exists() => "failed",
                    Some(_) => "built",
                    None => "finished",
                };
                self.println(format!(
                    "{verb} {label} in {}{counter}",
                    format_duration(elapsed)
                ));
            }
            Event::FetchStarted { id, path } => {
                if self.fancy {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} fetching {msg}")
                            .expect("valid template"),
                    );
                    bar.set_message(store_name(path).to_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(id, bar);
                } else {
                    self.println(format!("fetching {}", store_name(path)));
                }
            }
            Event::FetchStopped { id } => {
                if let Some(bar) = self.bars.remove(&id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            Event::Message { text, .. } => {
                let text = if self.fancy {
                    text.to_owned()
                } else {
                    console::strip_ansi_codes(text).into_owned()
                };
                self.println(text);
            }
            Event::Plain(line) => self.println(line.to_owned()),
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        if let Some(bar) = self.overall.take() {
            bar.finish_and_clear();
        }
    }
}
