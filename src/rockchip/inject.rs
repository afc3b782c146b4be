//! Writing a loader into an image (`write`) and saying what loader an image holds (`verify`).
//!
//! A write checks everything first (payload headers and digests, the image's partition table,
//! the image size) and touches the image only when all of it passed, so a refusal leaves the
//! image as it was. It then writes only the chunks of the payload that differ, fsyncs, drops the
//! written range from the page cache where the OS allows, reads it back and compares. It never
//! reads or copies the rest of the image: memory and time follow the payload, not the image.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::fit::{self, Fit};
use super::header::{self, LoaderHeader, Soc};
use super::layout::{read_at, Conflict, Layout, Partition};
use super::{human, Error, Extent, Result};
use super::{FIRST_PARTITION_MIN, IDBLOADER_OFFSET, ITB_IN_COMBINED, ITB_OFFSET};

/// Bytes moved per read or write; with two buffers this bounds the injector's memory.
pub const CHUNK: usize = 512 * 1024;

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `u-boot-rockchip.bin`: idbloader and, 8 MiB - 32 KiB further, `u-boot.itb`; written at sector 64.
    Combined(PathBuf),
    /// `idbloader.img` at sector 64 and `u-boot.itb` at sector 16384.
    Split { idbloader: PathBuf, itb: PathBuf },
}

/// A payload file's part in the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Combined,
    Idbloader,
    Itb,
}

impl Role {
    /// The option that names the file.
    pub fn option(self) -> &'static str {
        match self {
            Role::Combined => "--bootloader",
            Role::Idbloader => "--idbloader",
            Role::Itb => "--itb",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Combined => "combined",
            Role::Idbloader => "idbloader",
            Role::Itb => "itb",
        }
    }

    /// Where the file goes on the image.
    pub fn offset(self) -> u64 {
        match self {
            Role::Combined | Role::Idbloader => IDBLOADER_OFFSET,
            Role::Itb => ITB_OFFSET,
        }
    }
}

/// A payload file that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub role: Role,
    pub path: PathBuf,
    pub len: u64,
    pub loader: Option<LoaderHeader>,
    /// The FIT: the file itself for `--itb`, the one inside a combined file.
    pub fit: Option<Fit>,
}

impl Piece {
    /// Bytes of the image this piece is written to.
    pub fn extent(&self) -> Extent {
        Extent::at(self.role.offset(), self.len)
    }

    fn name(&self) -> String {
        display_name(&self.path)
    }
}

/// The image, as opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub path: PathBuf,
    pub size: u64,
    pub block_device: bool,
}

impl ImageInfo {
    pub fn kind(&self) -> &'static str {
        if self.block_device {
            "block device"
        } else {
            "regular file"
        }
    }
}

/// What a write did, per piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub piece: Piece,
    /// Bytes that differed and were written.
    pub written: u64,
    /// Bytes that already held the payload and were left alone.
    pub unchanged: u64,
}

/// The outcome of a write (or of `--dry-run`, where nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub image: ImageInfo,
    pub layout: Layout,
    pub pieces: Vec<Written>,
    pub dry_run: bool,
    /// Read back after fsync and found identical (false only for `--dry-run`).
    pub verified: bool,
}

/// Checks the payload and the image, then writes, fsyncs, reads back and compares.
pub fn write(image: &Path, payload: &Payload, soc: &Soc, dry_run: bool) -> Result<WriteReport> {
    let mut pieces = Vec::new();
    let files: Vec<(Role, &PathBuf)> = match payload {
        Payload::Combined(path) => vec![(Role::Combined, path)],
        Payload::Split { idbloader, itb } => vec![(Role::Idbloader, idbloader), (Role::Itb, itb)],
    };
    for (role, path) in files {
        let (mut file, len) = open_payload(role, path)?;
        let (loader, fit) = check_payload(&mut file, len, role, &display_name(path), soc)?;
        pieces.push(Piece {
            role,
            path: path.clone(),
            len,
            loader,
            fit,
        });
    }

    let (mut disk, info) = open_image(image, !dry_run)?;
    let layout = Layout::read(&mut disk, info.size)
        .map_err(|e| refine(e, |m| format!("{}: {m}", info.path.display())))?;
    check_placement(&info, &layout, &pieces)?;

    if dry_run {
        let pieces = pieces
            .into_iter()
            .map(|piece| Written {
                piece,
                written: 0,
                unchanged: 0,
            })
            .collect();
        return Ok(WriteReport {
            image: info,
            layout,
            pieces,
            dry_run,
            verified: false,
        });
    }

    let mut ours = vec![0u8; CHUNK];
    let mut theirs = vec![0u8; CHUNK];
    // A sparse image file needs blocks for every chunk that changes: reserve them all before the
    // first write, so a full file system refuses here rather than half-way through the loader.
    if !info.block_device {
        let mut changes = Vec::new();
        for piece in &pieces {
            let (mut file, _) = open_payload(piece.role, &piece.path)?;
            changes.extend(changed_chunks(
                &mut file,
                &mut disk,
                piece,
                &mut ours,
                &mut theirs,
            )?);
        }
        reserve(&disk, &info, &changes)?;
    }
    let mut written = Vec::new();
    let mut changed = Extent::at(0, 0);
    for piece in pieces {
        let (mut file, _) = open_payload(piece.role, &piece.path)?;
        let (done, same) = copy_changed(
            &mut file,
            &mut disk,
            &piece,
            &mut ours,
            &mut theirs,
            &mut changed,
        )
        .map_err(|e| changed_before(e, &info, &changed))?;
        written.push(Written {
            piece,
            written: done,
            unchanged: same,
        });
    }
    disk.sync_all()
        .map_err(|e| Error::io(format!("fsync of {}", info.path.display()), e))
        .map_err(|e| changed_before(e, &info, &changed))?;
    for done in &written {
        drop_cached(&disk, &done.piece.extent());
    }
    for done in &written {
        let (mut file, _) = open_payload(done.piece.role, &done.piece.path)?;
        compare_back(
            &mut file,
            &mut disk,
            &done.piece,
            &info,
            &mut ours,
            &mut theirs,
        )?;
    }
    Ok(WriteReport {
        image: info,
        layout,
        pieces: written,
        dry_run,
        verified: true,
    })
}

/// Checks one payload file for its role and `soc`; returns its loader header and FIT.
pub fn check_payload<R: Read + Seek>(
    reader: &mut R,
    len: u64,
    role: Role,
    name: &str,
    soc: &Soc,
) -> Result<(Option<LoaderHeader>, Option<Fit>)> {
    let option = role.option();
    if role == Role::Itb {
        let fit = fit::read(reader, 0, len).map_err(|why| {
            Error::bad_payload(format!(
                "{option} {name} is not a FIT image (u-boot.itb): {why}"
            ))
        })?;
        if fit.end > len {
            return Err(Error::bad_payload(format!(
                "{option} {name} is truncated: its FIT data runs to byte {}, the file has {len} bytes",
                fit.end
            )));
        }
        return Ok((None, Some(fit)));
    }

    let mut head = vec![0u8; header::HEAD_READ.min(len as usize)];
    read_at(reader, 0, &mut head)?;
    let loader = header::parse(&head).map_err(|why| {
        Error::bad_payload(format!(
            "{option} {name} has no valid Rockchip loader header at byte 0: {why}"
        ))
    })?;
    if !loader.fits(soc) {
        return Err(Error::bad_payload(format!(
            "{option} {name} is not a loader for --soc {}: {}",
            soc.name,
            loader.mismatch(soc)
        )));
    }
    if loader.end > len {
        return Err(Error::bad_payload(format!(
            "{option} {name} is truncated: its header says the loader runs to byte {}, the file has {len} bytes",
            loader.end
        )));
    }
    if loader.header_digest_ok(&head) == Some(false) {
        return Err(Error::bad_payload(format!(
            "{option} {name}: the SHA-256 in its RKNS header does not match the header"
        )));
    }
    let bad = loader.stage_digest_mismatches(reader, 0)?;
    if !bad.is_empty() {
        return Err(Error::bad_payload(format!(
            "{option} {name}: the SHA-256 of stage {} does not match its RKNS header (damaged file)",
            join(&bad)
        )));
    }

    if role == Role::Idbloader {
        let end = IDBLOADER_OFFSET.saturating_add(len);
        if end > ITB_OFFSET {
            return Err(Error::bad_payload(format!(
                "{option} {name} is {len} bytes: written at sector 64 it would run {} bytes into sector 16384, where u-boot.itb goes",
                end - ITB_OFFSET
            )));
        }
        return Ok((Some(loader), None));
    }

    if loader.end > ITB_IN_COMBINED {
        return Err(Error::bad_payload(format!(
            "{option} {name}: its idbloader runs to byte {}, into the u-boot.itb slot at byte {ITB_IN_COMBINED}",
            loader.end
        )));
    }
    if len <= ITB_IN_COMBINED {
        return Ok((Some(loader), None));
    }
    let rest = len - ITB_IN_COMBINED;
    let fit = fit::read(reader, ITB_IN_COMBINED, rest).map_err(|why| {
        Error::bad_payload(format!(
            "{option} {name} has {rest} bytes from byte {ITB_IN_COMBINED} on (sector 16384 once written) but no u-boot.itb there: {why}"
        ))
    })?;
    if fit.end > rest {
        return Err(Error::bad_payload(format!(
            "{option} {name} is truncated: its u-boot.itb needs {} bytes from byte {ITB_IN_COMBINED}, the file has {rest}",
            fit.end
        )));
    }
    Ok((Some(loader), Some(fit)))
}

/// Refuses pieces that do not fit the image or would touch a partition or a partition table.
pub fn check_placement(info: &ImageInfo, layout: &Layout, pieces: &[Piece]) -> Result<()> {
    let image = display_name(&info.path);
    for piece in pieces {
        let extent = piece.extent();
        if extent.end > info.size {
            return Err(Error::refused(format!(
                "refusing to write {} to {image}: the image is {} bytes ({}), too small for {extent}; nothing was written",
                piece.name(),
                info.size,
                human(info.size)
            )));
        }
    }
    let mut problems = Vec::new();
    let mut low_partition = false;
    for piece in pieces {
        let conflicts = layout.conflicts(&piece.extent());
        if conflicts.is_empty() {
            continue;
        }
        low_partition |= conflicts
            .iter()
            .any(|c| c.what.starts_with("partition") && c.extent.start < FIRST_PARTITION_MIN);
        problems.push(format!(
            "{} at {} would overlap {}",
            piece.name(),
            piece.extent(),
            describe_conflicts(&conflicts)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let hint = if low_partition {
        " (RK1 images need the first partition at 16 MiB or later: sdImage.firmwarePartitionOffset = 16)"
    } else {
        ""
    };
    Err(Error::refused(format!(
        "refusing to write to {image}: {}; nothing was written{hint}",
        problems.join("; ")
    )))
}

fn describe_conflicts(conflicts: &[Conflict]) -> String {
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{} at {} by {} bytes", c.what, c.extent, c.overlap))
        .collect();
    parts.join(" and ")
}

/// A failure after the image was first written to says so, and how to get back.
fn changed_before(error: Error, info: &ImageInfo, changed: &Extent) -> Error {
    if changed.is_empty() {
        return error;
    }
    Error::new(
        error.kind,
        format!(
            "{}; {} was changed before this: {changed} now hold part of the new loader, the rest is as it was. Run rk-inject again once this is fixed (it writes only what differs), or restore the image from a copy",
            error.message,
            display_name(&info.path)
        ),
    )
}

/// The image ranges (chunk by chunk, a chunk being `ours.len()` bytes) where `piece` differs
/// from what the image holds.
fn changed_chunks<P: Read + Seek, D: Read + Seek>(
    payload: &mut P,
    disk: &mut D,
    piece: &Piece,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> Result<Vec<Extent>> {
    let base = piece.role.offset();
    let mut changes: Vec<Extent> = Vec::new();
    let mut done = 0u64;
    while done < piece.len {
        let n = (piece.len - done).min(ours.len() as u64) as usize;
        read_at(payload, done, &mut ours[..n])?;
        read_at(disk, base + done, &mut theirs[..n])?;
        if ours[..n] != theirs[..n] {
            match changes.last_mut() {
                Some(last) if last.end == base + done => last.end += n as u64,
                _ => changes.push(Extent::at(base + done, n as u64)),
            }
        }
        done += n as u64;
    }
    Ok(changes)
}

/// Allocates blocks for the holes of a sparse image file under `changes` (Linux `fallocate`,
/// which keeps every byte as it reads), refusing when its file system is full and then giving
/// back what it allocated. Where the file system cannot say where its holes are or cannot
/// allocate ahead, the write goes ahead unreserved.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn reserve(disk: &File, info: &ImageInfo, changes: &[Extent]) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    extern "C" {
        fn fallocate(fd: i32, mode: i32, offset: i64, len: i64) -> i32;
        fn lseek(fd: i32, offset: i64, whence: i32) -> i64;
    }
    const SEEK_DATA: i32 = 3;
    const SEEK_HOLE: i32 = 4;
    const FALLOC_FL_KEEP_SIZE: i32 = 1;
    const FALLOC_FL_PUNCH_HOLE: i32 = 2;
    const ENXIO: i32 = 6;
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let fd = disk.as_raw_fd();
    // SAFETY (all three calls): plain libc calls on a descriptor `disk` keeps open.
    // ENXIO: no data from `offset` to the end of the file. Any other failure means the file
    // system cannot say; Linux gives none for a regular file (a file system without SEEK_DATA
    // treats the whole file as data), so .cargo/mutants.toml leaves out the two mutants that
    // treat every failure as ENXIO.
    let seek = |offset: u64, whence: i32| -> Option<u64> {
        let at = unsafe { lseek(fd, offset as i64, whence) };
        match at {
            n if n >= 0 => Some(n as u64),
            _ if std::io::Error::last_os_error().raw_os_error() == Some(ENXIO) => Some(u64::MAX),
            _ => None,
        }
    };
    let mut holes = Vec::new();
    for change in changes {
        let mut at = change.start;
        while at < change.end {
            let Some(data) = seek(at, SEEK_DATA) else {
                return Ok(());
            };
            if data > at {
                holes.push(Extent::at(at, data.min(change.end) - at));
            }
            if data >= change.end {
                break;
            }
            let Some(hole) = seek(data, SEEK_HOLE) else {
                return Ok(());
            };
            at = hole;
        }
    }
    let needed: u64 = holes.iter().map(Extent::len).sum();
    for (i, hole) in holes.iter().enumerate() {
        if unsafe { fallocate(fd, 0, hole.start as i64, hole.len() as i64) } == 0 {
            continue;
        }
        let error = std::io::Error::last_os_error();
        if !matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT)) {
            // EOPNOTSUPP and the like: no reservation, as before.
            return Ok(());
        }
        // What this allocated was a hole and reads as zeros either way: give the blocks back.
        for done in &holes[..=i] {
            unsafe {
                fallocate(
                    fd,
                    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    done.start as i64,
                    done.len() as i64,
                );
            }
        }
        return Err(Error::refused(format!(
            "refusing to write to {}: its file system has no room for the loader ({error}: the image is sparse where the loader goes, and {needed} bytes ({}) there need blocks); nothing was written: free that much space, or write to a copy on another file system",
            display_name(&info.path),
            human(needed)
        )));
    }
    Ok(())
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn reserve(_disk: &File, _info: &ImageInfo, _changes: &[Extent]) -> Result<()> {
    Ok(())
}

/// Writes the chunks of `piece` that differ from the image; returns the bytes written and the
/// bytes left alone, and widens `changed` to cover every chunk it wrote (or tried to).
fn copy_changed<P: Read + Seek, D: Read + Write + Seek>(
    payload: &mut P,
    disk: &mut D,
    piece: &Piece,
    ours: &mut [u8],
    theirs: &mut [u8],
    changed: &mut Extent,
) -> Result<(u64, u64)> {
    let (mut written, mut unchanged) = (0u64, 0u64);
    let base = piece.role.offset();
    let mut done = 0u64;
    while done < piece.len {
        let n = (piece.len - done).min(ours.len() as u64) as usize;
        let got = read_at(payload, done, &mut ours[..n])?;
        if got < n {
            return Err(Error::io(
                format!("reading {}", piece.path.display()),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while rk-inject ran",
                ),
            ));
        }
        read_at(disk, base + done, &mut theirs[..n])?;
        if ours[..n] == theirs[..n] {
            unchanged += n as u64;
        } else {
            let at = base + done;
            let result = disk
                .seek(SeekFrom::Start(at))
                .and_then(|_| disk.write_all(&ours[..n]));
            // Counted before the error: part of a failed chunk may be on the image.
            *changed = if changed.is_empty() {
                Extent::at(at, n as u64)
            } else {
                Extent {
                    start: changed.start.min(at),
                    end: changed.end.max(at + n as u64),
                }
            };
            result.map_err(|e| Error::io(format!("writing at byte {at}"), e))?;
            written += n as u64;
        }
        done += n as u64;
    }
    Ok((written, unchanged))
}

/// Reads `piece` back from the image and fails at the first byte that differs.
fn compare_back<P: Read + Seek, D: Read + Seek>(
    payload: &mut P,
    disk: &mut D,
    piece: &Piece,
    info: &ImageInfo,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> Result<()> {
    let base = piece.role.offset();
    let mut done = 0u64;
    while done < piece.len {
        let n = (piece.len - done).min(ours.len() as u64) as usize;
        read_at(payload, done, &mut ours[..n])?;
        read_at(disk, base + done, &mut theirs[..n])?;
        if let Some(i) = ours[..n].iter().zip(&theirs[..n]).position(|(a, b)| a != b) {
            return Err(Error::io(
                format!("read-back of {}", info.path.display()),
                std::io::Error::other(format!(
                    "byte {} differs from {} after fsync",
                    base + done + i as u64,
                    piece.name()
                )),
            ));
        }
        done += n as u64;
    }
    Ok(())
}

/// Asks the kernel to forget the cached pages of `extent`, so the read-back comes from the
/// disk rather than from the memory the write just filled. Best effort.
#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    not(target_arch = "s390x")
))]
fn drop_cached(file: &File, extent: &Extent) {
    use std::os::unix::io::AsRawFd;
    extern "C" {
        fn posix_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
    }
    const POSIX_FADV_DONTNEED: i32 = 4;
    let (Ok(offset), Ok(len)) = (i64::try_from(extent.start), i64::try_from(extent.len())) else {
        return;
    };
    // SAFETY: plain libc call on a descriptor `file` keeps open; it only drops clean pages.
    unsafe {
        posix_fadvise(file.as_raw_fd(), offset, len, POSIX_FADV_DONTNEED);
    }
}

#[cfg(not(all(
    target_os = "linux",
    target_pointer_width = "64",
    not(target_arch = "s390x")
)))]
fn drop_cached(_file: &File, _extent: &Extent) {}

fn open_payload(role: Role, path: &Path) -> Result<(File, u64)> {
    let option = role.option();
    let file = File::open(path)
        .map_err(|e| Error::usage(format!("{option} {}: cannot open: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::usage(format!("{option} {}: cannot stat: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "{option} {}: not a regular file",
            path.display()
        )));
    }
    Ok((file, meta.len()))
}

/// Opens a regular file or (on Unix) a block device; writable when `write`.
pub fn open_image(path: &Path, write: bool) -> Result<(File, ImageInfo)> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::usage(format!("--image {}: {e}", path.display())))?;
    let block_device = is_block_device(&meta);
    if !meta.is_file() && !block_device {
        return Err(Error::usage(format!(
            "--image {}: not a regular file or a block device",
            path.display()
        )));
    }
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    if write && block_device {
        exclusive(&mut options);
    }
    let mut file = options.open(path).map_err(|e| {
        if block_device && write {
            Error::refused(format!(
                "--image {}: cannot open the device exclusively ({e}); is it mounted or in use?",
                path.display()
            ))
        } else {
            Error::usage(format!("--image {}: cannot open: {e}", path.display()))
        }
    })?;
    let size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io(format!("finding the size of {}", path.display()), e))?;
    Ok((
        file,
        ImageInfo {
            path: path.to_path_buf(),
            size,
            block_device,
        },
    ))
}

// One function with a cfg block per platform, not two functions: cargo-mutants then mutates
// only code the tests compile.
fn is_block_device(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    let block = {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_block_device()
    };
    #[cfg(not(unix))]
    let block = {
        let _ = meta;
        false
    };
    block
}

/// Linux refuses O_EXCL on a block device that is mounted or otherwise claimed.
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
fn exclusive(options: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    const O_EXCL: i32 = 0o200;
    options.custom_flags(O_EXCL);
}

#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
)))]
fn exclusive(_options: &mut OpenOptions) {}

/// What sits at sector 64, as far as a header tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderFound {
    pub header: LoaderHeader,
    /// Bytes of the image the idbloader occupies.
    pub extent: Extent,
    /// `None` when the header declares no SHA-256.
    pub header_digest_ok: Option<bool>,
    /// Stages whose SHA-256 does not match.
    pub bad_stages: Vec<usize>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub image: ImageInfo,
    pub soc: &'static Soc,
    pub layout: std::result::Result<Layout, String>,
    /// The idbloader at sector 64, or why there is none.
    pub loader: std::result::Result<LoaderFound, String>,
    /// The FIT at sector 16384 and the bytes it occupies, or why there is none.
    pub itb: std::result::Result<(Fit, Extent), String>,
    /// Problems; an image is good when this is empty.
    pub findings: Vec<String>,
}

impl VerifyReport {
    /// Where the loader ends on the image: the end of `u-boot.itb`, or of the idbloader.
    pub fn loader_end(&self) -> Option<u64> {
        let idb = self.loader.as_ref().ok().map(|l| l.extent.end);
        let itb = self.itb.as_ref().ok().map(|(_, e)| e.end);
        idb.into_iter().chain(itb).max()
    }

    pub fn first_partition(&self) -> Option<&Partition> {
        self.layout.as_ref().ok()?.first_partition()
    }

    /// Bytes between the loader's end and the first partition (negative: they overlap).
    pub fn free_before_first_partition(&self) -> Option<i128> {
        let first = self.first_partition()?.extent.start;
        let end = self.loader_end().unwrap_or(IDBLOADER_OFFSET);
        Some(i128::from(first) - i128::from(end))
    }
}

/// Reports what loader the image at `path` holds.
pub fn verify(path: &Path, soc: &'static Soc) -> Result<VerifyReport> {
    let (mut disk, info) = open_image(path, false)?;
    verify_reader(&mut disk, info, soc)
}

/// `verify` over any reader (an in-memory image in tests and fuzzing).
pub fn verify_reader<R: Read + Seek>(
    disk: &mut R,
    info: ImageInfo,
    soc: &'static Soc,
) -> Result<VerifyReport> {
    let mut findings = Vec::new();
    let layout = match Layout::read(disk, info.size) {
        Ok(layout) => Ok(layout),
        Err(e) if e.kind == super::ErrorKind::Io => return Err(e),
        Err(e) => {
            findings.push(format!("partition table: {}", e.message));
            Err(e.message)
        }
    };

    let available = info.size.saturating_sub(IDBLOADER_OFFSET);
    let mut head = vec![0u8; (header::HEAD_READ as u64).min(available) as usize];
    read_at(disk, IDBLOADER_OFFSET, &mut head)?;
    let loader = match header::parse(&head) {
        Err(why) => {
            findings.push(format!("no Rockchip loader at sector 64: {why}"));
            Err(why)
        }
        Ok(found) => {
            let extent = Extent::at(IDBLOADER_OFFSET, found.end);
            if !found.fits(soc) {
                findings.push(format!(
                    "the loader does not fit --soc {}: {}",
                    soc.name,
                    found.mismatch(soc)
                ));
            }
            let header_digest_ok = found.header_digest_ok(&head);
            if header_digest_ok == Some(false) {
                findings
                    .push("the SHA-256 in the RKNS header does not match the header".to_string());
            }
            let mut bad_stages = Vec::new();
            if extent.end > info.size {
                findings.push(format!(
                    "the loader runs to byte {}, past the end of the image ({} bytes)",
                    extent.end, info.size
                ));
            } else {
                bad_stages = found.stage_digest_mismatches(disk, IDBLOADER_OFFSET)?;
                if !bad_stages.is_empty() {
                    findings.push(format!(
                        "the SHA-256 of stage {} does not match the RKNS header (damaged or overwritten)",
                        join(&bad_stages)
                    ));
                }
            }
            Ok(LoaderFound {
                header: found,
                extent,
                header_digest_ok,
                bad_stages,
            })
        }
    };

    let itb = match fit::read(disk, ITB_OFFSET, info.size.saturating_sub(ITB_OFFSET)) {
        Ok(found) => {
            let extent = Extent::at(ITB_OFFSET, found.end);
            if extent.end > info.size {
                findings.push(format!(
                    "u-boot.itb runs to byte {}, past the end of the image ({} bytes)",
                    extent.end, info.size
                ));
            }
            Ok((found, extent))
        }
        Err(why) => {
            findings.push(format!("no u-boot.itb at sector 16384: {why}"));
            Err(why)
        }
    };

    if let Ok(layout) = &layout {
        let mut claimed = Vec::new();
        if let Ok(found) = &loader {
            claimed.push(("the idbloader", found.extent));
        }
        if let Ok((_, extent)) = &itb {
            claimed.push(("u-boot.itb", *extent));
        }
        for (what, extent) in claimed {
            let conflicts = layout.conflicts(&extent);
            if !conflicts.is_empty() {
                findings.push(format!(
                    "{what} at {extent} overlaps {}",
                    describe_conflicts(&conflicts)
                ));
            }
        }
    }

    Ok(VerifyReport {
        image: info,
        soc,
        layout,
        loader,
        itb,
        findings,
    })
}

/// How a path is named in messages: as given.
fn display_name(path: &Path) -> String {
    path.display().to_string()
}

fn join(numbers: &[usize]) -> String {
    let parts: Vec<String> = numbers.iter().map(|n| n.to_string()).collect();
    parts.join(", ")
}

/// Rewrites an error's message, keeping its kind.
fn refine(error: Error, f: impl FnOnce(&str) -> String) -> Error {
    let message = f(&error.message);
    Error::new(error.kind, message)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::layout::{Reserved, Scheme};
    use super::*;

    fn rk3588() -> &'static Soc {
        header::find_soc("rk3588").unwrap()
    }

    /// `len` bytes starting with an RKNS header without digests whose one stage runs from
    /// sector 4 to byte `end`.
    fn loader(end: u64, len: u64) -> Vec<u8> {
        let mut data = vec![0u8; len as usize];
        data[..4].copy_from_slice(header::RKNS_MAGIC);
        // One stage; the (unused) header digest at word 128, after the four stage entries.
        data[8..12].copy_from_slice(&((1u32 << 16) | 128).to_le_bytes());
        let sectors = u32::try_from(end / 512 - 4).unwrap();
        data[120..124].copy_from_slice(&((sectors << 16) | 4).to_le_bytes());
        data
    }

    fn check(role: Role, data: Vec<u8>) -> Result<(Option<LoaderHeader>, Option<Fit>)> {
        let len = data.len() as u64;
        check_payload(&mut Cursor::new(data), len, role, "payload", rk3588())
    }

    #[test]
    fn a_combined_loader_may_end_exactly_where_its_itb_starts_and_not_a_sector_later() {
        let (found, fit) = check(Role::Combined, loader(ITB_IN_COMBINED, ITB_IN_COMBINED)).unwrap();
        assert_eq!(found.unwrap().end, ITB_IN_COMBINED);
        assert_eq!(fit, None);

        let over = ITB_IN_COMBINED + 512;
        let error = check(Role::Combined, loader(over, over)).unwrap_err();
        assert_eq!(
            error.message,
            format!(
                "--bootloader payload: its idbloader runs to byte {over}, into the u-boot.itb slot at byte {ITB_IN_COMBINED}"
            )
        );
    }

    #[test]
    fn a_split_idbloader_may_fill_its_slot_to_sector_16384_and_not_a_byte_more() {
        let slot = ITB_OFFSET - IDBLOADER_OFFSET;
        let (found, _) = check(Role::Idbloader, loader(4096, slot)).unwrap();
        assert_eq!(found.unwrap().end, 4096);

        let error = check(Role::Idbloader, loader(4096, slot + 1)).unwrap_err();
        assert!(
            error
                .message
                .ends_with("written at sector 64 it would run 1 bytes into sector 16384, where u-boot.itb goes"),
            "{}",
            error.message
        );
    }

    fn image(size: u64) -> ImageInfo {
        ImageInfo {
            path: PathBuf::from("sd.img"),
            size,
            block_device: false,
        }
    }

    fn layout(size: u64, partitions: Vec<Partition>, reserved: Vec<Reserved>) -> Layout {
        Layout {
            size,
            scheme: if partitions.is_empty() {
                Scheme::None
            } else {
                Scheme::Mbr
            },
            sector_size: 512,
            disk_id: String::new(),
            partitions,
            reserved,
            notes: Vec::new(),
        }
    }

    fn piece(role: Role, len: u64) -> Piece {
        Piece {
            role,
            path: PathBuf::from(role.as_str()),
            len,
            loader: None,
            fit: None,
        }
    }

    fn partition_at(start: u64) -> Partition {
        Partition {
            table: "MBR",
            number: 1,
            description: "type 0x0b FAT32".to_string(),
            extent: Extent::at(start, 30 << 20),
        }
    }

    #[test]
    fn a_piece_may_end_on_the_last_byte_of_the_image_and_not_past_it() {
        let itb = piece(Role::Itb, 1 << 20);
        let end = ITB_OFFSET + (1 << 20);
        let empty = layout(end, Vec::new(), Vec::new());
        check_placement(&image(end), &empty, std::slice::from_ref(&itb)).unwrap();

        let error = check_placement(&image(end - 1), &empty, &[itb]).unwrap_err();
        assert!(
            error.message.starts_with(&format!(
                "refusing to write itb to sd.img: the image is {} bytes",
                end - 1
            )),
            "{}",
            error.message
        );
    }

    #[test]
    fn the_16_mib_hint_is_given_for_a_partition_below_16_mib_only() {
        const HINT: &str = "sdImage.firmwarePartitionOffset = 16";
        let size = 64 << 20;
        let refusal = |layout: &Layout, pieces: &[Piece]| {
            check_placement(&image(size), layout, pieces)
                .unwrap_err()
                .message
        };
        let low = layout(size, vec![partition_at(8 << 20)], Vec::new());
        let message = refusal(&low, &[piece(Role::Itb, 4096)]);
        assert!(message.contains(HINT), "{message}");

        // A partition table in the way: moving the partitions would not help.
        let table = layout(
            size,
            Vec::new(),
            vec![Reserved {
                what: "the GPT entry array".to_string(),
                extent: Extent::at(1024, IDBLOADER_OFFSET),
            }],
        );
        let message = refusal(&table, &[piece(Role::Idbloader, 4096)]);
        assert!(
            message.contains("would overlap the GPT entry array"),
            "{message}"
        );
        assert!(!message.contains(HINT), "{message}");

        // A partition at 16 MiB that a long u-boot.itb reaches: the offset is already right.
        let right = layout(size, vec![partition_at(FIRST_PARTITION_MIN)], Vec::new());
        let message = refusal(&right, &[piece(Role::Itb, FIRST_PARTITION_MIN)]);
        assert!(message.contains("would overlap partition 1"), "{message}");
        assert!(!message.contains(HINT), "{message}");
    }

    /// The chunked copy's tests: a 10-byte idbloader and 4-byte chunks (4 + 4 + 2).
    const PAYLOAD: &[u8; 10] = b"0123456789";

    /// An image holding `on_disk` at sector 64, zeros around it.
    fn image_holding(on_disk: &[u8]) -> Cursor<Vec<u8>> {
        let mut image = vec![0u8; IDBLOADER_OFFSET as usize + 16];
        image[IDBLOADER_OFFSET as usize..][..on_disk.len()].copy_from_slice(on_disk);
        Cursor::new(image)
    }

    fn at_idbloader(start: u64, len: u64) -> Extent {
        Extent::at(IDBLOADER_OFFSET + start, len)
    }

    fn changes(on_disk: &[u8]) -> Vec<Extent> {
        let (mut ours, mut theirs) = ([0u8; 4], [0u8; 4]);
        changed_chunks(
            &mut Cursor::new(PAYLOAD.to_vec()),
            &mut image_holding(on_disk),
            &piece(Role::Idbloader, 10),
            &mut ours,
            &mut theirs,
        )
        .unwrap()
    }

    #[test]
    fn the_changed_ranges_are_the_differing_chunks_with_neighbours_joined() {
        assert_eq!(changes(b""), [at_idbloader(0, 10)]);
        assert_eq!(changes(b"0123xxxx89"), [at_idbloader(4, 4)]);
        assert_eq!(
            changes(b"xxxx4567xx"),
            [at_idbloader(0, 4), at_idbloader(8, 2)]
        );
        assert_eq!(changes(b"01234567xx"), [at_idbloader(8, 2)]);
        assert_eq!(changes(PAYLOAD), []);
    }

    fn copy(image: &mut Cursor<Vec<u8>>, len: u64, changed: &mut Extent) -> Result<(u64, u64)> {
        let (mut ours, mut theirs) = ([0u8; 4], [0u8; 4]);
        copy_changed(
            &mut Cursor::new(PAYLOAD.to_vec()),
            image,
            &piece(Role::Idbloader, len),
            &mut ours,
            &mut theirs,
            changed,
        )
    }

    fn idbloader_area(image: &Cursor<Vec<u8>>) -> &[u8] {
        &image.get_ref()[IDBLOADER_OFFSET as usize..]
    }

    #[test]
    fn the_copy_writes_the_differing_chunks_only_and_counts_both_kinds() {
        let mut image = image_holding(b"0123xxxx89");
        let mut changed = Extent::at(0, 0);
        assert_eq!(copy(&mut image, 10, &mut changed).unwrap(), (4, 6));
        assert_eq!(changed, at_idbloader(4, 4));
        assert_eq!(idbloader_area(&image), b"0123456789\0\0\0\0\0\0");

        // Two chunks apart, after an earlier piece changed bytes further on: one range over all.
        let mut image = image_holding(b"xxxx4567xx");
        let mut changed = Extent::at(ITB_OFFSET, 8);
        assert_eq!(copy(&mut image, 10, &mut changed).unwrap(), (6, 4));
        assert_eq!(
            changed,
            Extent::at(IDBLOADER_OFFSET, ITB_OFFSET + 8 - IDBLOADER_OFFSET)
        );
        assert_eq!(&idbloader_area(&image)[..10], PAYLOAD);

        let mut image = image_holding(b"xxxx4567xx");
        let mut changed = Extent::at(0, 0);
        assert_eq!(copy(&mut image, 10, &mut changed).unwrap(), (6, 4));
        assert_eq!(changed, at_idbloader(0, 10));

        let mut image = image_holding(PAYLOAD);
        let mut changed = Extent::at(0, 0);
        assert_eq!(copy(&mut image, 10, &mut changed).unwrap(), (0, 10));
        assert!(changed.is_empty());
    }

    #[test]
    fn a_payload_shorter_than_it_was_when_checked_stops_the_copy() {
        let mut image = image_holding(b"");
        let mut changed = Extent::at(0, 0);
        let error = copy(&mut image, 12, &mut changed).unwrap_err();
        assert!(
            error
                .message
                .contains("the file shrank while rk-inject ran"),
            "{}",
            error.message
        );
        // The first two chunks were written before the short read.
        assert_eq!(changed, at_idbloader(0, 8));
    }

    #[test]
    fn the_read_back_names_the_first_byte_that_differs() {
        let (mut ours, mut theirs) = ([0u8; 4], [0u8; 4]);
        let mut compare = |on_disk: &[u8]| {
            compare_back(
                &mut Cursor::new(PAYLOAD.to_vec()),
                &mut image_holding(on_disk),
                &piece(Role::Idbloader, 10),
                &image(1 << 20),
                &mut ours,
                &mut theirs,
            )
        };
        compare(PAYLOAD).unwrap();
        // What follows the piece on the image is not the piece's business.
        compare(b"0123456789zz").unwrap();
        // The first of two, and one in the last, short chunk.
        for (on_disk, first) in [(b"012345x7x9", 6), (b"012345678x", 9)] {
            let error = compare(on_disk).unwrap_err();
            assert!(
                error.message.ends_with(&format!(
                    "byte {} differs from idbloader after fsync",
                    IDBLOADER_OFFSET + first
                )),
                "{}",
                error.message
            );
        }
    }

    /// A 1 MiB file in the system's temporary directory, a hole except for 64 KiB..128 KiB,
    /// removed when dropped (std only: the vendored crate has no dev-dependencies).
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    struct SparseFile {
        path: PathBuf,
        file: File,
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    impl SparseFile {
        const DATA: Extent = Extent {
            start: 64 << 10,
            end: 128 << 10,
        };

        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("rk-inject-{}-{name}.img", std::process::id()));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            file.set_len(1 << 20).unwrap();
            file.seek(SeekFrom::Start(Self::DATA.start)).unwrap();
            file.write_all(&[0x5a; 64 << 10]).unwrap();
            file.sync_all().unwrap();
            SparseFile { path, file }
        }

        /// Bytes the file system has allocated to it.
        fn allocated(&self) -> u64 {
            use std::os::unix::fs::MetadataExt;
            self.file.metadata().unwrap().blocks() * 512
        }
    }

    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    impl Drop for SparseFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn reserving_allocates_exactly_the_holes_under_the_changes() {
        let sparse = SparseFile::new("reserve");
        let before = sparse.allocated();
        assert_eq!(before, 64 << 10, "the file system keeps holes");
        let changes = [
            // Starts on the data and ends where the data ends: nothing to allocate.
            SparseFile::DATA,
            // A hole with no data after it up to the end of the file (SEEK_DATA: ENXIO).
            Extent::at(256 << 10, 128 << 10),
        ];
        reserve(&sparse.file, &image(1 << 20), &changes).unwrap();
        assert_eq!(sparse.allocated() - before, 128 << 10);

        // A change across the data: the holes on both sides of it.
        let sparse = SparseFile::new("around");
        reserve(
            &sparse.file,
            &image(1 << 20),
            &[Extent::at(32 << 10, 128 << 10)],
        )
        .unwrap();
        assert_eq!(sparse.allocated() - before, 64 << 10);
    }

    /// A FIT that is only a root node whose data lies at `position` for `size` bytes from the
    /// FIT's start (`mkimage -E -p`), so it ends at `position + size`.
    fn fit_with_data_at(position: u32, size: u32) -> Vec<u8> {
        let strings = b"data-position\0data-size\0";
        let words =
            |words: &[u32]| -> Vec<u8> { words.iter().flat_map(|w| w.to_be_bytes()).collect() };
        // BEGIN_NODE "", the two properties (PROP, length, name offset, value), END_NODE, END.
        let tree = words(&[1, 0, 3, 4, 0, position, 3, 4, 14, size, 2, 9]);
        let total = 40 + tree.len() + strings.len();
        let mut fit = words(&[
            fit::FDT_MAGIC,
            total as u32,
            40,
            (40 + tree.len()) as u32,
            total as u32,
            17,
            16,
            0,
            strings.len() as u32,
            tree.len() as u32,
        ]);
        fit.extend(tree);
        fit.extend(strings);
        fit
    }

    /// An image of `size` bytes (zeros, so no partition table) holding `at_64` at sector 64
    /// and `at_16384` at sector 16384, as far as each fits.
    fn image_with(size: u64, at_64: &[u8], at_16384: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; size as usize];
        for (offset, data) in [(IDBLOADER_OFFSET, at_64), (ITB_OFFSET, at_16384)] {
            let room = bytes.len().saturating_sub(offset as usize).min(data.len());
            if room > 0 {
                bytes[offset as usize..][..room].copy_from_slice(&data[..room]);
            }
        }
        bytes
    }

    fn verify_bytes(bytes: Vec<u8>) -> Result<VerifyReport> {
        let size = bytes.len() as u64;
        verify_reader(&mut Cursor::new(bytes), image(size), rk3588())
    }

    #[test]
    fn verify_accepts_a_loader_and_an_itb_ending_on_the_last_byte_and_not_a_byte_past_it() {
        let idbloader = loader(4096, 4096);
        let itb = fit_with_data_at(512, 1000);
        let whole = ITB_OFFSET + 1512;
        let report = verify_bytes(image_with(whole, &idbloader, &itb)).unwrap();
        assert_eq!(report.findings, Vec::<String>::new());
        assert_eq!(report.loader_end(), Some(whole));

        let report = verify_bytes(image_with(whole - 1, &idbloader, &itb)).unwrap();
        assert_eq!(
            report.findings,
            [format!(
                "u-boot.itb runs to byte {whole}, past the end of the image ({} bytes)",
                whole - 1
            )]
        );

        let report = verify_bytes(image_with(IDBLOADER_OFFSET + 4096, &idbloader, &[])).unwrap();
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(report.findings[0].starts_with("no u-boot.itb at sector 16384: "));

        let short = IDBLOADER_OFFSET + 4095;
        let report = verify_bytes(image_with(short, &idbloader, &[])).unwrap();
        assert_eq!(
            report.findings[0],
            format!(
                "the loader runs to byte {}, past the end of the image ({short} bytes)",
                IDBLOADER_OFFSET + 4096
            )
        );
    }

    #[test]
    fn verify_reports_a_bad_partition_table_as_a_finding_and_a_read_error_as_an_error() {
        let mut bytes = image_with(
            ITB_OFFSET + 1512,
            &loader(4096, 4096),
            &fit_with_data_at(512, 1000),
        );
        bytes[510..512].copy_from_slice(&[0x55, 0xaa]);
        bytes[446] = 0x7f;
        let report = verify_bytes(bytes).unwrap();
        assert_eq!(
            report.findings,
            ["partition table: sector 0 has the 55 AA boot signature but is not a valid MBR (slot 1 has status byte 0x7f (only 0x00 or 0x80 are valid)); rk-inject will not guess where the data is"]
        );

        struct Unreadable;
        impl Read for Unreadable {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("bad sector"))
            }
        }
        impl Seek for Unreadable {
            fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
                Ok(0)
            }
        }
        let error = verify_reader(&mut Unreadable, image(1 << 20), rk3588()).unwrap_err();
        assert_eq!(error.kind, super::super::ErrorKind::Io);
        assert_eq!(error.message, "reading at byte 0: bad sector");
    }
}
