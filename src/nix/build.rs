//! The `nix build` driver: one evaluation that resolves every requested target to its derivation,
//! then one `nix build` of all of them, so nix schedules the whole set at once (in parallel, up to
//! `max-jobs`, locally and on remote builders) instead of one target after another.
//!
//! Why evaluate first instead of `nix build .#a .#b --print-out-paths`: Nix 2.8 has no
//! `--print-out-paths`, and its `--json` output is ordered by derivation path, not by installable,
//! and empty when any build fails. The evaluation gives every target's derivation and output path
//! up front; the build then takes the derivations (no second evaluation), and each target's result
//! is simply whether its output path exists.

use std::{
    collections::{HashMap, VecDeque},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::{
    log::{self, activity, field_str, field_u64, LogLine},
    prereq::{NixInfo, NixVersion, FEATURE_FLAGS},
};
use crate::{render::shell_word, UsageError};

/// Which targets to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every attribute of `packages.<system>` except `default` (an alias of another).
    All,
    Named(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Request {
    /// What Nix evaluates: the repository when it is a git work tree (nix reads it as
    /// `git+file`, untracked files unseen), else a filtered copy of it ([`super::source`]).
    pub flake: PathBuf,
    /// The repository as the user named it: for messages and the command `--dry-run` prints.
    pub repo: PathBuf,
    pub system: String,
    pub targets: Targets,
    /// `--builders`, passed through to nix.
    pub builders: Option<String>,
    /// Pass `--max-jobs auto`: nix's default of 1 would build the targets one at a time.
    pub parallel: bool,
}

/// A target resolved by the evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Target {
    pub name: String,
    pub drv: String,
    pub out: PathBuf,
    /// The system its derivation builds on (what decides emulation or a remote builder).
    pub system: String,
}

/// Target and system names become Nix string literals and shell words: keep them plain.
pub fn check_name(field: &str, value: &str) -> Result<(), UsageError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(UsageError::new(format!(
            "{field} '{value}': use letters, digits and - _ . + only"
        )))
    }
}

/// `nix` with flakes switched on for this call.
pub fn nix() -> Command {
    let mut command = Command::new("nix");
    command.args(FEATURE_FLAGS);
    command
}

fn flake_ref(flake: &Path) -> Result<String> {
    let text = flake.to_str().context("the repository path is not UTF-8")?;
    if text.contains(['#', '?']) {
        bail!(UsageError::new(format!(
            "--repo '{text}': nix cannot take a flake path containing '#' or '?'"
        )));
    }
    Ok(text.to_owned())
}

/// The function `nix eval --apply` runs on the flake's `packages`.
fn eval_function(system: &str, targets: &Targets) -> String {
    let wanted = match targets {
        Targets::All => "null".to_owned(),
        Targets::Named(names) => {
            let items: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            format!("[ {} ]", items.join(" "))
        }
    };
    format!(
        r#"packages:
let
  system = "{system}";
  wanted = {wanted};
  ps = packages.${{system}} or null;
in
if ps == null then
  {{ error = "system"; available = builtins.attrNames packages; }}
else
  let
    names = if wanted == null then builtins.filter (n: n != "default") (builtins.attrNames ps) else wanted;
    missing = builtins.filter (n: !(ps ? ${{n}})) names;
  in
  if missing != [ ] then
    {{ error = "missing"; inherit missing; available = builtins.attrNames ps; }}
  else
    {{
      targets = map (n: {{
        name = n;
        drv = ps.${{n}}.drvPath;
        out = ps.${{n}}.outPath;
        system = ps.${{n}}.system or system;
      }}) names;
    }}"#
    )
}

#[derive(Deserialize)]
struct Evaluated {
    error: Option<String>,
    #[serde(default)]
    available: Vec<String>,
    #[serde(default)]
    missing: Vec<String>,
    #[serde(default)]
    targets: Vec<Target>,
}

/// The `nix eval` that resolves the targets.
pub fn eval_command(request: &Request) -> Result<Command> {
    let mut command = nix();
    command
        .arg("eval")
        .arg("--json")
        .arg(format!("{}#packages", flake_ref(&request.flake)?))
        .arg("--apply")
        .arg(eval_function(&request.system, &request.targets));
    if let Some(builders) = &request.builders {
        command.args(["--builders", builders]);
    }
    Ok(command)
}

/// Evaluate the flake once: every requested target's derivation and output.
pub fn evaluate(request: &Request) -> Result<Vec<Target>> {
    let output = eval_command(request)?
        .stdin(Stdio::null())
        .output()
        .context("cannot run nix eval")?;
    if !output.status.success() {
        bail!(
            "evaluating {} failed: {}",
            request.repo.display(),
            eval_failure(&String::from_utf8_lossy(&output.stderr), request)
        );
    }
    let evaluated: Evaluated = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "unexpected output of nix eval: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    match evaluated.error.as_deref() {
        Some("system") => bail!(UsageError::new(format!(
            "--system {}: the flake has no packages.{} (it has: {})",
            request.system,
            request.system,
            evaluated.available.join(", ")
        ))),
        Some(_) => bail!(UsageError::new(format!(
            "TARGET: no {} in packages.{} (available: {})",
            evaluated
                .missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", "),
            request.system,
            evaluated.available.join(", ")
        ))),
        None if evaluated.targets.is_empty() => bail!(UsageError::new(format!(
            "--all: the flake's packages.{} is empty",
            request.system
        ))),
        None => Ok(evaluated.targets),
    }
}

/// Nix's last error, and what to do about it, in one line: its stderr repeats each retry of a
/// download as a warning and ends in a `--show-trace` hint that names no command.
fn eval_failure(stderr: &str, request: &Request) -> String {
    let last_error = stderr
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .or_else(|| stderr.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("nix eval failed without a message");
    let hint = if last_error.contains("unable to download") {
        "nix fetches the flake's inputs (nixpkgs) on first use: check the network, then run the build again".to_owned()
    } else {
        let check = format!(
            "`nix flake check --show-trace {}` shows where",
            shell_word(&request.repo.display().to_string())
        );
        if request.flake == request.repo {
            check
        } else {
            format!("{check}, once the repository is a git work tree (`git init && git add --all`; keys/ is git-ignored): nix copies a plain directory into the store whole, keys/ included")
        }
    };
    format!("{last_error} ({hint})")
}

/// The installable that builds every output of a derivation, in this nix's syntax.
fn drv_installable(version: NixVersion, drv: &str) -> String {
    // `^*` (all outputs) exists since 2.13; older nix builds a bare .drv path's outputs.
    if version >= NixVersion(2, 13, 0) {
        format!("{drv}^*")
    } else {
        drv.to_owned()
    }
}

fn build_flags(request: &Request) -> Vec<String> {
    let mut args: Vec<String> = [
        "build",
        "--log-format",
        "internal-json",
        "--no-link",
        "--keep-going",
    ]
    .map(String::from)
    .to_vec();
    if request.parallel {
        args.extend(["--max-jobs".into(), "auto".into()]);
    }
    if let Some(builders) = &request.builders {
        args.extend(["--builders".into(), builders.clone()]);
    }
    args
}

/// The one `nix build` of all the evaluated targets.
pub fn build_command(info: &NixInfo, request: &Request, targets: &[Target]) -> Command {
    let mut command = nix();
    command.args(build_flags(request));
    command.args(
        targets
            .iter()
            .map(|t| drv_installable(info.version, &t.drv)),
    );
    command
}

/// The names `--all` builds: every attribute of `packages.<system>` but `default`. Only the names
/// are evaluated (no derivation is instantiated), so a dry run stays cheap and writes nothing.
pub fn target_names(request: &Request) -> Result<Vec<String>> {
    let output = nix()
        .arg("eval")
        .arg("--json")
        .arg(format!(
            "{}#packages.{}",
            flake_ref(&request.flake)?,
            request.system
        ))
        .args([
            "--apply",
            "ps: builtins.filter (n: n != \"default\") (builtins.attrNames ps)",
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run nix eval")?;
    if !output.status.success() {
        bail!(
            "listing packages.{} failed:\n{}",
            request.system,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// What `--dry-run` shows: the same build, written with flake installables so it can be pasted
/// (flakesmith itself evaluates first and builds the derivations).
pub fn display_command(request: &Request) -> Result<String> {
    let flake = flake_ref(&request.repo)?;
    let mut words: Vec<String> = vec!["nix".into()];
    words.extend(FEATURE_FLAGS.map(String::from));
    words.extend(build_flags(request));
    match &request.targets {
        Targets::Named(names) => words.extend(
            names
                .iter()
                .map(|n| format!("{flake}#packages.{}.{n}", request.system)),
        ),
        Targets::All => words.push(format!(
            "{flake}#packages.{}.<every target>",
            request.system
        )),
    }
    Ok(words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" "))
}

/// What happens during the build, as the progress display wants it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// Counters of the whole build (derivations done / expected / running / failed).
    Progress {
        done: u64,
        expected: u64,
        running: u64,
        failed: u64,
    },
    BuildStarted {
        id: u64,
        drv: &'a str,
        /// Empty for a local build, else the remote builder's URI.
        machine: &'a str,
    },
    BuildPhase {
        id: u64,
        phase: &'a str,
    },
    BuildLog {
        id: u64,
        line: &'a str,
    },
    BuildStopped {
        id: u64,
        drv: &'a str,
        elapsed: Duration,
    },
    /// A store path being downloaded (substituted) or copied to/from a builder.
    FetchStarted {
        id: u64,
        path: &'a str,
    },
    FetchStopped {
        id: u64,
    },
    /// A nix message of level ≤ 1 (error, warning).
    Message {
        level: u64,
        text: &'a str,
    },
    /// A stderr line that is not internal-json.
    Plain(&'a str),
}

/// Lines of a failed build's log to show.
const LOG_TAIL: usize = 25;

#[derive(Debug, Default)]
pub struct BuildReport {
    pub success: bool,
    /// Derivations built in this run → time from the start of `nix build` until they finished.
    pub finished: HashMap<String, Duration>,
    /// Failed derivations with the last lines of their logs.
    pub failed: Vec<(String, Vec<String>)>,
    /// nix's error messages.
    pub errors: Vec<String>,
}

struct Activity {
    kind: u64,
    drv: String,
    started: Instant,
    tail: VecDeque<String>,
}

/// Run the build, feeding every event to `observe`.
pub fn run_build(mut command: Command, mut observe: impl FnMut(Event<'_>)) -> Result<BuildReport> {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nix build")?;
    let stderr = child.stderr.take().context("nix's stderr")?;
    let mut report = BuildReport::default();
    let mut activities: HashMap<u64, Activity> = HashMap::new();
    // Logs of stopped builds, kept until nix names the ones that failed.
    let mut tails: HashMap<String, VecDeque<String>> = HashMap::new();
    // The "builds" activities, whose progress results count derivations.
    let mut builds_ids: Vec<u64> = Vec::new();

    for line in BufReader::new(stderr).lines() {
        let line = line.context("reading nix's output")?;
        match LogLine::parse(&line) {
            LogLine::Start {
                id, kind, fields, ..
            } => match kind {
                activity::BUILD => {
                    let drv = field_str(&fields, 0).unwrap_or_default().to_owned();
                    let machine = field_str(&fields, 1).unwrap_or_default();
                    observe(Event::BuildStarted {
                        id,
                        drv: &drv,
                        machine,
                    });
                    activities.insert(
                        id,
                        Activity {
                            kind,
                            drv,
                            started: Instant::now(),
                            tail: VecDeque::new(),
                        },
                    );
                }
                activity::BUILDS => {
                    builds_ids.push(id);
                }
                activity::SUBSTITUTE | activity::COPY_PATH => {
                    let path = field_str(&fields, 0).unwrap_or_default().to_owned();
                    observe(Event::FetchStarted { id, path: &path });
                    activities.insert(
                        id,
                        Activity {
                            kind,
                            drv: path,
                            started: Instant::now(),
                            tail: VecDeque::new(),
                        },
                    );
                }
                _ => {}
            },
            LogLine::Stop { id } => {
                if let Some(done) = activities.remove(&id) {
                    if done.kind == activity::BUILD {
                        observe(Event::BuildStopped {
                            id,
                            drv: &done.drv,
                            elapsed: done.started.elapsed(),
                        });
                        report.finished.insert(done.drv.clone(), start.elapsed());
                        tails.insert(done.drv, done.tail);
                    } else {
                        observe(Event::FetchStopped { id });
                    }
                }
            }
            LogLine::Result { id, kind, fields } => match kind {
                log::result::PROGRESS if builds_ids.contains(&id) => {
                    observe(Event::Progress {
                        done: field_u64(&fields, 0),
                        expected: field_u64(&fields, 1),
                        running: field_u64(&fields, 2),
                        failed: field_u64(&fields, 3),
                    });
                }
                log::result::BUILD_LOG_LINE => {
                    if let (Some(text), Some(act)) =
                        (field_str(&fields, 0), activities.get_mut(&id))
                    {
                        if act.tail.len() == LOG_TAIL {
                            act.tail.pop_front();
                        }
                        act.tail.push_back(text.to_owned());
                        observe(Event::BuildLog { id, line: text });
                    }
                }
                log::result::SET_PHASE => {
                    if let Some(phase) = field_str(&fields, 0) {
                        observe(Event::BuildPhase { id, phase });
                    }
                }
                _ => {}
            },
            LogLine::Msg { level, text } => {
                if level == 0 {
                    for drv in log::drv_paths_in(&text) {
                        let tail = tails.remove(&drv).map(Vec::from).unwrap_or_default();
                        report.failed.push((drv, tail));
                    }
                    report
                        .errors
                        .push(console::strip_ansi_codes(&text).into_owned());
                }
                if level <= 1 {
                    observe(Event::Message { level, text: &text });
                }
            }
            LogLine::Plain(text) => observe(Event::Plain(&text)),
        }
    }
    let status = child.wait().context("waiting for nix build")?;
    // A derivation that failed was stopped, so it was counted as finished: it is not.
    for (drv, _) in &report.failed {
        report.finished.remove(drv);
    }
    report.success = status.success();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evaluation_failure_is_nix_last_error_and_a_hint() {
        let stderr = "warning: error: unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/nixos-unstable': Couldn't resolve host name (6); retrying in 266 ms\n\
                      error: unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/nixos-unstable': Couldn't resolve host name (6)\n\
                      (use '--show-trace' to show detailed location information)\n";
        let request = Request {
            flake: "/r".into(),
            repo: "/r".into(),
            system: "x86_64-linux".into(),
            targets: Targets::All,
            builders: None,
            parallel: false,
        };
        let line = eval_failure(stderr, &request);
        assert!(
            line.starts_with("unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/nixos-unstable': Couldn't resolve host name (6) (nix fetches")
                && !line.contains('\n'),
            "{line}"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("TARGET", "rk1-node1").is_ok());
        assert!(check_name("TARGET", "x86_64-linux").is_ok());
        assert!(check_name("TARGET", "a\"b").is_err());
        assert!(check_name("TARGET", "${x}").is_err());
        assert!(check_name("TARGET", "").is_err());
    }

    #[test]
    fn drv_installables_follow_the_nix_version() {
        assert_eq!(
            drv_installable(NixVersion(2, 8, 0), "/nix/store/x-a.drv"),
            "/nix/store/x-a.drv"
        );
        assert_eq!(
            drv_installable(NixVersion(2, 18, 1), "/nix/store/x-a.drv"),
            "/nix/store/x-a.drv^*"
        );
    }
}
