//! The `rk-inject` command line, parsed by hand (std only), shared with `flakesmith inject`.

use std::io::Write;
use std::path::PathBuf;

use super::header::{self, LoaderHeader, Soc};
use super::inject::{self, Payload, VerifyReport, WriteReport};
use super::json::Json;
use super::layout::Layout;
use super::{human, Error, Result};

/// The SoC of the Turing RK1, checked when `--soc` is not given.
pub const DEFAULT_SOC: &str = "rk3588";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Entry point of the `rk-inject` binary: parses `std::env::args` and returns the exit code.
pub fn main() -> i32 {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("rk-inject: argument {arg:?} is not valid UTF-8");
                return 2;
            }
        }
    }
    run("rk-inject", &args)
}

/// Runs a command line (without the program name), printing to stdout and stderr. `program`
/// is how help and errors name the tool: "rk-inject" or "flakesmith inject".
pub fn run(program: &str, args: &[String]) -> i32 {
    // Collected, then printed with print!/eprint!, which test harnesses capture.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(program, args, &mut out, &mut err);
    print!("{}", String::from_utf8_lossy(&out));
    eprint!("{}", String::from_utf8_lossy(&err));
    code
}

/// `run` with the output streams given. Exit codes: 0 done (or image good), 1 refused, I/O
/// failure or (verify) problems found, 2 bad command line or payload file.
pub fn run_with(program: &str, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let json = args.iter().any(|a| a == "--json");
    let command = match parse(args) {
        Ok(command) => command,
        Err(e) => return fail(program, &e, json, out, err),
    };
    let result = match command {
        Command::Help(topic) => {
            let _ = writeln!(out, "{}", help(program, topic));
            return 0;
        }
        Command::Version => {
            let _ = writeln!(out, "rk-inject {VERSION}");
            return 0;
        }
        Command::Write(w) => inject::write(&w.image, &w.payload, w.soc, w.dry_run)
            .map(|report| write_output(&report, w.json)),
        Command::Verify(v) => {
            inject::verify(&v.image, v.soc).map(|report| verify_output(&report, v.json))
        }
    };
    match result {
        Ok((text, code)) => {
            let _ = writeln!(out, "{text}");
            if code != 0 && !json {
                let _ = writeln!(err, "{program}: the image has problems (listed above)");
            }
            code
        }
        Err(e) => fail(program, &e, json, out, err),
    }
}

fn fail(program: &str, e: &Error, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "{program}: {e}");
    if json {
        let report = Json::object().with("ok", false).with(
            "error",
            Json::object()
                .with("kind", e.kind.as_str())
                .with("message", e.message.as_str())
                .with("exit_code", e.exit_code() as i64),
        );
        let _ = writeln!(out, "{}", report.pretty());
    }
    e.exit_code()
}

#[derive(Debug)]
enum Command {
    Help(Option<&'static str>),
    Version,
    Write(WriteArgs),
    Verify(VerifyArgs),
}

#[derive(Debug)]
struct WriteArgs {
    image: PathBuf,
    payload: Payload,
    soc: &'static Soc,
    dry_run: bool,
    json: bool,
}

#[derive(Debug)]
struct VerifyArgs {
    image: PathBuf,
    soc: &'static Soc,
    json: bool,
}

fn parse(args: &[String]) -> Result<Command> {
    let Some(first) = args.first() else {
        return Err(Error::usage(
            "no command given: use write or verify (see --help)",
        ));
    };
    let rest = &args[1..];
    match first.as_str() {
        "-h" | "--help" => Ok(Command::Help(None)),
        "-V" | "--version" => Ok(Command::Version),
        "help" => match rest.first().map(String::as_str) {
            None => Ok(Command::Help(None)),
            Some("write") => Ok(Command::Help(Some("write"))),
            Some("verify") => Ok(Command::Help(Some("verify"))),
            Some(other) => Err(Error::usage(format!(
                "help: unknown command {other:?}; commands are write and verify"
            ))),
        },
        "write" => parse_write(rest),
        "verify" => parse_verify(rest),
        other if other.starts_with('-') => Err(Error::usage(format!(
            "{other}: a command comes first: write or verify (see --help)"
        ))),
        other => Err(Error::usage(format!(
            "unknown command {other:?}; commands are write and verify"
        ))),
    }
}

/// Options of one command: `--name value`, `--name=value`, or a bare flag.
struct Options {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

fn parse_options(
    command: &'static str,
    args: &[String],
    valued: &[&str],
    flags: &[&str],
) -> Result<std::result::Result<Options, Command>> {
    let mut options = Options {
        values: Vec::new(),
        flags: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" || arg == "--help" {
            return Ok(Err(Command::Help(Some(command))));
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if valued.contains(&name) {
            let value = match inline {
                Some(value) => value,
                None => {
                    let Some(value) = args.get(i) else {
                        return Err(Error::usage(format!("{command}: {name} needs a value")));
                    };
                    i += 1;
                    value.clone()
                }
            };
            if value.is_empty() {
                return Err(Error::usage(format!(
                    "{command}: {name} needs a non-empty value"
                )));
            }
            if options.values.iter().any(|(n, _)| n == name) {
                return Err(Error::usage(format!("{command}: {name} is given twice")));
            }
            options.values.push((name.to_string(), value));
        } else if flags.contains(&name) && inline.is_none() {
            options.flags.push(name.to_string());
        } else if name.starts_with('-') {
            let mut allowed: Vec<&str> = valued.to_vec();
            allowed.extend_from_slice(flags);
            return Err(Error::usage(format!(
                "{command}: unknown option {name}; allowed: {}",
                allowed.join(", ")
            )));
        } else {
            return Err(Error::usage(format!(
                "{command}: unexpected argument {name:?}; files are given with options (see --help)"
            )));
        }
    }
    Ok(Ok(options))
}

impl Options {
    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn soc(&self) -> Result<&'static Soc> {
        let name = self.value("--soc").unwrap_or(DEFAULT_SOC);
        header::find_soc(name).ok_or_else(|| {
            Error::usage(format!(
                "--soc: unknown SoC {name:?}; allowed: {}",
                header::soc_names()
            ))
        })
    }

    fn image(&self, command: &str) -> Result<PathBuf> {
        self.value("--image")
            .map(PathBuf::from)
            .ok_or_else(|| Error::usage(format!("{command}: --image IMG is required")))
    }
}

fn parse_write(args: &[String]) -> Result<Command> {
    let options = match parse_options(
        "write",
        args,
        &["--image", "--bootloader", "--idbloader", "--itb", "--soc"],
        &["--dry-run", "--json"],
    )? {
        Ok(options) => options,
        Err(help) => return Ok(help),
    };
    let image = options.image("write")?;
    let payload = match (
        options.value("--bootloader"),
        options.value("--idbloader"),
        options.value("--itb"),
    ) {
        (Some(combined), None, None) => Payload::Combined(combined.into()),
        (None, Some(idbloader), Some(itb)) => Payload::Split {
            idbloader: idbloader.into(),
            itb: itb.into(),
        },
        (Some(_), _, _) => {
            return Err(Error::usage(
                "write: --bootloader (combined u-boot-rockchip.bin) excludes --idbloader and --itb",
            ))
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(Error::usage(
                "write: --idbloader and --itb go together (or use --bootloader for u-boot-rockchip.bin)",
            ))
        }
        (None, None, None) => {
            return Err(Error::usage(
                "write: give --bootloader u-boot-rockchip.bin, or --idbloader idbloader.img with --itb u-boot.itb",
            ))
        }
    };
    Ok(Command::Write(WriteArgs {
        image,
        payload,
        soc: options.soc()?,
        dry_run: options.flag("--dry-run"),
        json: options.flag("--json"),
    }))
}

fn parse_verify(args: &[String]) -> Result<Command> {
    let options = match parse_options("verify", args, &["--image", "--soc"], &["--json"])? {
        Ok(options) => options,
        Err(help) => return Ok(help),
    };
    Ok(Command::Verify(VerifyArgs {
        image: options.image("verify")?,
        soc: options.soc()?,
        json: options.flag("--json"),
    }))
}

fn help(program: &str, topic: Option<&str>) -> String {
    let socs = header::soc_names();
    match topic {
        Some("write") => format!(
            "Write a Rockchip boot loader into a disk image or block device.

Usage:
  {program} write --image IMG --bootloader u-boot-rockchip.bin [--soc SOC] [--dry-run] [--json]
  {program} write --image IMG --idbloader idbloader.img --itb u-boot.itb [--soc SOC] [--dry-run] [--json]

Options:
  --image IMG         image file or block device to write into (never truncated)
  --bootloader FILE   combined loader, written whole at sector 64 (its u-boot.itb lands at 16384)
  --idbloader FILE    idbloader, written at sector 64; must end before sector 16384
  --itb FILE          U-Boot FIT image, written at sector 16384
  --soc SOC           SoC the loader must be built for [default: {DEFAULT_SOC}]
                      one of: {socs}
  --dry-run           check everything, write nothing
  --json              print the report as JSON on stdout
  -h, --help          this help

Refuses, leaving the image unchanged, a payload without a valid Rockchip header for the SoC
(RKNS v2 for RK35xx, the RC4-scrambled 0x0FF0AA55 header for older SoCs), a truncated payload,
an image too small, and any write that would touch a partition or the partition table (MBR,
GPT primary and backup). Writes only the bytes that differ, fsyncs, reads back and compares.

Exit status: 0 written (or already in place), 1 refused or I/O error, 2 bad arguments or payload."
        ),
        Some("verify") => format!(
            "Report the Rockchip boot loader an image holds.

Usage:
  {program} verify --image IMG [--soc SOC] [--json]

Options:
  --image IMG   image file or block device to read
  --soc SOC     SoC the loader must be built for [default: {DEFAULT_SOC}]
                one of: {socs}
  --json        print the report as JSON on stdout
  -h, --help    this help

Reports the header kind and SoC family at sector 64, its stages and digests, the u-boot.itb at
sector 16384, where the loader ends, the partitions, and the free space before the first one.

Exit status: 0 the image holds a good loader for the SoC, 1 problems found (listed) or I/O
error, 2 bad arguments."
        ),
        _ => format!(
            "rk-inject {VERSION}: place a Rockchip boot loader (RK3588 / Turing RK1 and others) in a disk image.

Usage:
  {program} write --image IMG --bootloader u-boot-rockchip.bin [--soc SOC]
  {program} write --image IMG --idbloader idbloader.img --itb u-boot.itb [--soc SOC]
  {program} verify --image IMG [--soc SOC]
  {program} help [write|verify]

Commands:
  write    check the payload and the image's partition table, then write the loader
  verify   report the loader, partitions and free space of an image

Options:
  -h, --help      help (also after a command)
  -V, --version   version

Run '{program} help write' or '{program} help verify' for the options of each."
        ),
    }
}

fn write_output(report: &WriteReport, json: bool) -> (String, i32) {
    if json {
        let pieces: Vec<Json> = report
            .pieces
            .iter()
            .map(|done| {
                let extent = done.piece.extent();
                Json::object()
                    .with("role", done.piece.role.as_str())
                    .with("path", done.piece.path.display().to_string())
                    .with("size", done.piece.len)
                    .with("start", extent.start)
                    .with("end", extent.end)
                    .with("written", done.written)
                    .with("unchanged", done.unchanged)
                    .with("loader", done.piece.loader.as_ref().map(header_json))
                    .with(
                        "itb",
                        done.piece.fit.as_ref().map(|fit| {
                            Json::object()
                                .with("tree_size", fit.tree_size)
                                .with("size", fit.end)
                                .with("external_bytes", fit.external_bytes)
                        }),
                    )
            })
            .collect();
        let value = Json::object()
            .with("ok", true)
            .with("dry_run", report.dry_run)
            .with("image", image_json(&report.image))
            .with("partition_table", layout_json(&report.layout))
            .with("pieces", pieces)
            .with("verified", report.verified);
        return (value.pretty(), 0);
    }
    let mut lines = vec![
        image_line(&report.image),
        format!("{:<12} {}", "partitions", report.layout.summary()),
    ];
    for note in &report.layout.notes {
        lines.push(format!("{:<12} {note}", "note"));
    }
    for done in &report.pieces {
        let piece = &done.piece;
        let mut what = format!("{}: {} bytes", piece.path.display(), piece.len);
        if let Some(loader) = &piece.loader {
            what.push_str(&format!(", {}", loader.describe()));
            if loader.header_sha256.is_some() {
                what.push_str(", sha256 ok");
            }
        }
        if let Some(fit) = &piece.fit {
            what.push_str(&format!(", u-boot.itb FIT of {} bytes", fit.end));
        }
        lines.push(format!("{:<12} {what}", "payload"));
        if report.dry_run {
            lines.push(format!(
                "{:<12} {} (dry run: nothing written)",
                "would write",
                piece.extent()
            ));
        } else {
            lines.push(format!(
                "{:<12} {}: {} bytes written, {} already in place",
                "wrote",
                piece.extent(),
                done.written,
                done.unchanged
            ));
        }
    }
    if report.verified {
        lines.push(format!("{:<12} fsynced, read back and identical", "result"));
    }
    (lines.join("\n"), 0)
}

fn verify_output(report: &VerifyReport, json: bool) -> (String, i32) {
    let code = if report.findings.is_empty() { 0 } else { 1 };
    if json {
        let loader = match &report.loader {
            Ok(found) => {
                let stages: Vec<Json> = found
                    .header
                    .stages
                    .iter()
                    .map(|stage| {
                        let start = found.extent.start + stage.offset;
                        Json::object()
                            .with("number", stage.number)
                            .with("start", start)
                            .with("end", start + stage.size)
                            .with("size", stage.size)
                            .with(
                                "sha256_ok",
                                stage
                                    .sha256
                                    .map(|_| !found.bad_stages.contains(&stage.number)),
                            )
                    })
                    .collect();
                header_json(&found.header)
                    .with("found", true)
                    .with("soc_matches", found.header.fits(report.soc))
                    .with("header_sha256_ok", found.header_digest_ok)
                    .with("start", found.extent.start)
                    .with("end", found.extent.end)
                    .with("end_sector", found.extent.end.div_ceil(512))
                    .with("stages", stages)
            }
            Err(why) => Json::object()
                .with("found", false)
                .with("reason", why.as_str()),
        };
        let itb = match &report.itb {
            Ok((fit, extent)) => Json::object()
                .with("found", true)
                .with("start", extent.start)
                .with("end", extent.end)
                .with("end_sector", extent.end.div_ceil(512))
                .with("tree_size", fit.tree_size)
                .with("external_bytes", fit.external_bytes),
            Err(why) => Json::object()
                .with("found", false)
                .with("reason", why.as_str()),
        };
        let table = match &report.layout {
            Ok(layout) => layout_json(layout),
            Err(why) => Json::object().with("error", why.as_str()),
        };
        let first = report.first_partition().map(|p| {
            Json::object()
                .with("table", p.table)
                .with("number", p.number)
                .with("description", p.description.as_str())
                .with("start", p.extent.start)
        });
        let value = Json::object()
            .with("ok", report.findings.is_empty())
            .with("image", image_json(&report.image))
            .with("soc", report.soc.name)
            .with("partition_table", table)
            .with("loader", loader)
            .with("itb", itb)
            .with("loader_end", report.loader_end())
            .with("first_partition", first)
            .with(
                "free_before_first_partition",
                report.free_before_first_partition().map(Json::Int),
            )
            .with("findings", report.findings.clone());
        return (value.pretty(), code);
    }

    let mut lines = vec![image_line(&report.image)];
    match &report.layout {
        Ok(layout) => {
            lines.push(format!("{:<12} {}", "partitions", layout.summary()));
            for p in &layout.partitions {
                lines.push(format!(
                    "  {} {} ({})",
                    p.name(),
                    p.extent,
                    human(p.extent.len())
                ));
            }
            for note in &layout.notes {
                lines.push(format!("{:<12} {note}", "note"));
            }
        }
        Err(why) => lines.push(format!("{:<12} unreadable: {why}", "partitions")),
    }
    match &report.loader {
        Ok(found) => {
            let digest = match found.header_digest_ok {
                Some(true) => ", header sha256 ok",
                Some(false) => ", header sha256 MISMATCH",
                None => "",
            };
            lines.push(format!(
                "{:<12} sector 64: {}{digest}",
                "idbloader",
                found.header.describe()
            ));
            for stage in &found.header.stages {
                let start = found.extent.start + stage.offset;
                let state = match stage.sha256 {
                    None => "",
                    Some(_) if found.bad_stages.contains(&stage.number) => ", sha256 MISMATCH",
                    Some(_) => ", sha256 ok",
                };
                lines.push(format!(
                    "  stage {}    bytes {}..{} ({} bytes){state}",
                    stage.number,
                    start,
                    start + stage.size,
                    stage.size
                ));
            }
            lines.push(format!(
                "  ends at    byte {} (sector {})",
                found.extent.end,
                found.extent.end.div_ceil(512)
            ));
        }
        Err(why) => lines.push(format!("{:<12} none at sector 64: {why}", "idbloader")),
    }
    match &report.itb {
        Ok((fit, extent)) => lines.push(format!(
            "{:<12} sector 16384: FIT, {} bytes ({} of tree, {} of external data), ends at byte {} (sector {})",
            "u-boot.itb",
            fit.end,
            fit.tree_size,
            fit.external_bytes,
            extent.end,
            extent.end.div_ceil(512)
        )),
        Err(why) => lines.push(format!("{:<12} none at sector 16384: {why}", "u-boot.itb")),
    }
    match (
        report.first_partition(),
        report.free_before_first_partition(),
    ) {
        (Some(first), Some(free)) => {
            // Without a loader the free space is counted from where one would start.
            let from = match report.loader_end() {
                Some(end) => format!("the loader's end (byte {end})"),
                None => format!("sector 64 (byte {})", super::IDBLOADER_OFFSET),
            };
            lines.push(format!(
                "{:<12} {free} bytes between {from} and {} at byte {}",
                "free",
                first.name(),
                first.extent.start
            ))
        }
        _ => lines.push(format!("{:<12} no partition after the loader", "free")),
    }
    let soc_state = match &report.loader {
        Ok(found) if found.header.fits(report.soc) => "matches the header".to_string(),
        Ok(_) => "does NOT match the header".to_string(),
        Err(_) => "no header to check".to_string(),
    };
    lines.push(format!("{:<12} {}: {soc_state}", "soc", report.soc.name));
    if report.findings.is_empty() {
        lines.push(format!("{:<12} ok", "result"));
    } else {
        lines.push(format!(
            "{:<12} {} problem(s):",
            "result",
            report.findings.len()
        ));
        for finding in &report.findings {
            lines.push(format!("  - {finding}"));
        }
    }
    (lines.join("\n"), code)
}

fn image_line(image: &inject::ImageInfo) -> String {
    format!(
        "{:<12} {}: {}, {} bytes ({})",
        "image",
        image.path.display(),
        image.kind(),
        image.size,
        human(image.size)
    )
}

fn image_json(image: &inject::ImageInfo) -> Json {
    Json::object()
        .with("path", image.path.display().to_string())
        .with("kind", image.kind())
        .with("size", image.size)
}

fn header_json(loader: &LoaderHeader) -> Json {
    let socs: Vec<Json> = header::SOCS
        .iter()
        .filter(|soc| loader.fits(soc))
        .map(|soc| Json::from(soc.name))
        .collect();
    Json::object()
        .with("kind", loader.kind.as_str())
        .with("family", loader.family.as_str())
        .with("socs", socs)
        .with("hash", loader.hash.as_str())
        .with("size", loader.end)
}

fn layout_json(layout: &Layout) -> Json {
    let partitions: Vec<Json> = layout
        .partitions
        .iter()
        .map(|p| {
            Json::object()
                .with("table", p.table)
                .with("number", p.number)
                .with("description", p.description.as_str())
                .with("start", p.extent.start)
                .with("end", p.extent.end)
        })
        .collect();
    let reserved: Vec<Json> = layout
        .reserved
        .iter()
        .map(|r| {
            Json::object()
                .with("what", r.what.as_str())
                .with("start", r.extent.start)
                .with("end", r.extent.end)
        })
        .collect();
    let notes: Vec<Json> = layout
        .notes
        .iter()
        .map(|n| Json::from(n.as_str()))
        .collect();
    Json::object()
        .with("scheme", layout.scheme.as_str())
        .with("disk_id", layout.disk_id.as_str())
        .with("sector_size", layout.sector_size)
        .with("partitions", partitions)
        .with("reserved", reserved)
        .with("notes", notes)
}
