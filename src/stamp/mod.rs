//! `flakesmith stamp`: one identical image, N copies that each carry one node's identity in their
//! FIRMWARE (FAT) partition: its host name, its SSH host key pair, its sops age identity and its
//! static address. Everything outside the FAT partition stays byte-identical.
//!
//! The first-boot module of the generated repository (`firmware-identity.nix`) moves the files
//! into place before sshd starts and before sops-nix decrypts, then erases them from the FAT.

pub mod copy;
pub mod fat;
pub mod host_key;
pub mod known_hosts;
pub mod record;

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use crate::{rockchip::layout::Layout, rockchip::Extent, UsageError};

pub use copy::CopyKind;
pub use host_key::{ensure_host_key, HostKey, HOST_KEY_FILE};

/// How the identity files in the FAT partition's root folder begin: `flakesmith-identity.hostname`
/// and so on. Files in the root, not a folder of their own, because fatfs 0.3.6 writes the "."
/// and ".." entries of a new folder wrongly (fsck.vfat repairs them), while files are clean.
/// The first-boot script reads the same names (one owner: the template gets them from here).
pub const IDENTITY_PREFIX: &str = "flakesmith-identity.";

/// The files of one node's identity, as they go into the FAT partition.
pub struct Identity {
    pub host: String,
    files: Vec<(&'static str, Zeroizing<Vec<u8>>)>,
}

/// The names after [`IDENTITY_PREFIX`]; the first-boot script knows the same names.
pub mod names {
    pub const HOSTNAME: &str = "hostname";
    pub const HOST_KEY: &str = super::HOST_KEY_FILE;
    pub const HOST_KEY_PUB: &str = "ssh_host_ed25519_key.pub";
    pub const AGE_KEY: &str = "age-key.txt";
    /// Sorted before NixOS' own 99-ethernet-default-dhcp.network, and named apart from the
    /// 10-ethernet.network of a node's own configuration, which replaces it after a switch.
    pub const NETWORK: &str = "40-flakesmith-static.network";
}

impl Identity {
    pub fn new(host: &str, host_key: &HostKey) -> Self {
        let mut identity = Self {
            host: host.to_owned(),
            files: Vec::new(),
        };
        identity.add(names::HOSTNAME, format!("{host}\n").into_bytes());
        identity.add(names::HOST_KEY, host_key.private_text().as_bytes().to_vec());
        identity.add(
            names::HOST_KEY_PUB,
            format!("{}\n", host_key.public).into_bytes(),
        );
        identity
    }

    pub fn add(&mut self, name: &'static str, bytes: Vec<u8>) {
        debug_assert!(
            self.files.len() < MAX_FILES as usize && bytes.len() as u64 <= MAX_FILE_BYTES
        );
        self.files.push((name, Zeroizing::new(bytes)));
    }

    fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

/// Where sops-nix reads a node's age identity (`sops.age.keyFile` in the generated modules).
pub const AGE_KEY_FILE: &str = "/var/lib/sops-nix/key.txt";

/// What the templates of the first-boot script and module need to know of the names above.
#[derive(Debug, serde::Serialize)]
pub struct TemplateNames {
    pub prefix: &'static str,
    pub network: &'static str,
    pub age_key_file: &'static str,
}

impl Default for TemplateNames {
    fn default() -> Self {
        Self {
            prefix: IDENTITY_PREFIX,
            network: names::NETWORK,
            age_key_file: AGE_KEY_FILE,
        }
    }
}

/// An identical image, checked once and stamped many times.
pub struct Source {
    file: File,
    pub path: PathBuf,
    pub size: u64,
    pub firmware: Extent,
    /// The flake package it is the image of ([`record::STAMPABLE_TARGETS`]).
    pub target: String,
}

fn refuse(image: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    UsageError::new(format!("--image {}: {why}", image.display())).into()
}

impl Source {
    /// Opens `path` and checks that it is a regular file, not backing a loop device, with exactly
    /// one FAT partition labelled FIRMWARE, and that it is one of the `recorded` identical images
    /// (target → record): the same bytes, by their content digest. `buildable` names the
    /// identical images this repository's flake can build, for the message when it is none.
    pub fn open(
        path: &Path,
        recorded: &std::collections::BTreeMap<String, record::Recorded>,
        buildable: &[String],
    ) -> Result<Self> {
        let meta = fs_err::metadata(path).map_err(|e| refuse(path, e.kind()))?;
        if !meta.is_file() {
            return Err(refuse(
                path,
                "is not a regular file (a block device or folder is never stamped)",
            ));
        }
        if let Some(loop_dev) = loop_device_of(path) {
            return Err(refuse(
                path,
                format!("is attached to {loop_dev} (maybe mounted): detach it first"),
            ));
        }
        let mut file = File::open(path).map_err(|e| refuse(path, e.kind()))?;
        let size = meta.len();
        let mut magic = [0u8; 4];
        if file.read_exact(&mut magic).is_ok() && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(refuse(
                path,
                "is zstd-compressed: decompress it first (zstd -d), or build with sdImage.compressImage = false",
            ));
        }
        let layout = Layout::read(&mut file, size).map_err(|e| refuse(path, e.message))?;
        let firmware = fat::find_firmware(&file, &layout).map_err(|why| refuse(path, why))?;
        check_room(&file, firmware).map_err(|why| refuse(path, why))?;
        // Once per command: every copy is made from this open file, which the digest covers.
        let content = record::content_digest(&file, size)
            .with_context(|| format!("reading {}", path.display()))?;
        let Some(target) = recorded
            .iter()
            .find(|(_, r)| r.size == size && r.content == content)
            .map(|(target, _)| target.clone())
        else {
            let builds: Vec<String> = buildable
                .iter()
                .map(|t| format!("`flakesmith build {t}`"))
                .collect();
            return Err(refuse(
                path,
                format!(
                    "is not the identical image this repository's `flakesmith build` recorded \
                     (images/identical-images.json): build it with {}",
                    builds.join(" or ")
                ),
            ));
        };
        Ok(Self {
            file,
            path: path.to_owned(),
            size,
            firmware,
            target,
        })
    }
}

/// At most this many files of at most this many bytes make an identity (the largest, an
/// OpenSSH ed25519 private key, is about 400 bytes).
const MAX_FILES: u64 = 5;
const MAX_FILE_BYTES: u64 = 4096;

/// Refuses, before any key is made or any copy begins, a FAT partition that cannot take an
/// identity, or that holds one already. Only reads (the file is open read-only).
fn check_room(file: &File, firmware: Extent) -> Result<(), String> {
    let fs = fatfs::FileSystem::new(fat::Window::new(file, firmware), fatfs::FsOptions::new())
        .map_err(|e| format!("its FIRMWARE partition is not a FAT file system fatfs reads: {e}"))?;
    if let Some(name) = identity_files(&fs)?.first() {
        return Err(format!(
            "its FIRMWARE partition already holds {name}: stamp the identical image, not a stamped one"
        ));
    }
    let stats = fs
        .stats()
        .map_err(|e| format!("reading its FIRMWARE partition: {e}"))?;
    let cluster = u64::from(stats.cluster_size());
    let needed = MAX_FILES * MAX_FILE_BYTES.div_ceil(cluster);
    let free = u64::from(stats.free_clusters());
    if free < needed {
        return Err(format!(
            "its FIRMWARE partition has {} free, an identity needs up to {}: the stamp does not fit",
            crate::images::human_size(free * cluster),
            crate::images::human_size(needed * cluster)
        ));
    }
    Ok(())
}

/// The names of the identity files in the root folder of a FAT file system.
fn identity_files<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for entry in fs.root_dir().iter() {
        let entry = entry.map_err(|e| format!("reading its FIRMWARE partition: {e}"))?;
        if entry.file_name().starts_with(IDENTITY_PREFIX) {
            names.push(entry.file_name());
        }
    }
    Ok(names)
}

/// Whether the image at `path` is a stamped one: an sd-image whose FIRMWARE partition holds
/// identity files. Anything else (another kind of image, an unreadable one) is not. Only reads.
pub fn is_stamped(path: &Path) -> bool {
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let Ok(size) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    let Ok(layout) = Layout::read(&mut file, size) else {
        return false;
    };
    let Ok(firmware) = fat::find_firmware(&file, &layout) else {
        return false;
    };
    fatfs::FileSystem::new(fat::Window::new(&file, firmware), fatfs::FsOptions::new())
        .ok()
        .and_then(|fs| identity_files(&fs).ok())
        .is_some_and(|names| !names.is_empty())
}

/// `/dev/loopN` when a loop device is backed by `path`.
fn loop_device_of(path: &Path) -> Option<String> {
    let wanted = fs_err::canonicalize(path).ok()?;
    let entries = std::fs::read_dir("/sys/block").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end_matches('\n')) == wanted {
            return Some(format!("/dev/{name}"));
        }
    }
    None
}

/// What a stamp made.
#[derive(Debug)]
pub struct Stamped {
    pub path: PathBuf,
    pub copy: CopyKind,
}

/// A copy of the identical image in a temporary file of the output folder (0600 from its first
/// byte, deleted when dropped), on its way to `<out>/<host>.img`.
///
/// A stamp goes [`copy`] → [`Copy::stamp`] → [`Pending::finish`]. The command copies the next
/// node's image before it finishes the previous one, so that the disk writes one file back while
/// the next is copied, and each file is still on disk before it gets its name.
pub struct Copy {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
    kind: CopyKind,
}

/// Copies `source` into a temporary file in `out`, for `host`.
pub fn copy(source: &Source, host: &str, out: &Path) -> Result<Copy> {
    let target = out.join(format!("{host}.img"));
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{host}."))
        .suffix(".partial")
        .tempfile_in(out)
        .with_context(|| format!("creating a file in {}", out.display()))?;
    let kind = copy::copy_image(&source.file, temp.as_file(), source.size)
        .with_context(|| format!("copying {}", source.path.display()))?;
    Ok(Copy { temp, target, kind })
}

impl Copy {
    /// Writes `identity` into the FAT partition, reads it back through a fresh mount of the FAT
    /// and compares it, and starts writing the file to disk.
    pub fn stamp(self, source: &Source, identity: &Identity) -> Result<Pending> {
        write_identity(self.temp.as_file(), source.firmware, identity)?;
        crate::failpoint::hit("stamp:written")?;
        verify(self.temp.as_file(), source.firmware, identity)?;
        start_writeback(self.temp.as_file());
        Ok(Pending(self))
    }
}

/// A stamped, verified copy whose bytes may not be on disk yet.
pub struct Pending(Copy);

impl Pending {
    /// Waits until the file is on disk, then gives it its name (replacing an older stamp).
    pub fn finish(self) -> Result<Stamped> {
        let Copy { temp, target, kind } = self.0;
        temp.as_file().sync_all()?;
        temp.persist(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        Ok(Stamped {
            path: target,
            copy: kind,
        })
    }
}

/// Asks the kernel to start writing the file's dirty pages now, without waiting (a hint: the
/// `sync_all` of [`Pending::finish`] is what makes the file durable).
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: an open descriptor; the call reads and writes no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Removes what a stamp that crashed left in `out`: its `.<host>.<random>.partial` files (a
/// failure that is not a crash removes its own). They may hold private keys.
pub fn remove_partial(out: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs_err::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".partial") && entry.file_type()?.is_file() {
            fs_err::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn fat_error(what: &str) -> impl Fn(std::io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what} in the FIRMWARE partition: {e}")
}

fn write_identity(file: &File, firmware: Extent, identity: &Identity) -> Result<()> {
    let fs = fatfs::FileSystem::new(fat::Window::new(file, firmware), fatfs::FsOptions::new())
        .map_err(fat_error("reading the FAT file system"))?;
    {
        let root = fs.root_dir();
        for entry in root.iter() {
            let entry = entry.map_err(fat_error("reading the root folder"))?;
            if entry.file_name().starts_with(IDENTITY_PREFIX) {
                return Err(UsageError::new(format!(
                    "--image: the FIRMWARE partition already holds {}: stamp the identical image, not a stamped one",
                    entry.file_name()
                ))
                .into());
            }
        }
        let stats = fs.stats().map_err(fat_error("counting free space"))?;
        let cluster = u64::from(stats.cluster_size());
        // Every file rounded up to whole clusters (the root folder of FAT16 has fixed room).
        let needed: u64 = identity
            .files
            .iter()
            .map(|(_, b)| (b.len() as u64).div_ceil(cluster).max(1))
            .sum::<u64>();
        if u64::from(stats.free_clusters()) < needed {
            return Err(UsageError::new(format!(
                "--image: the FIRMWARE partition has {} free, {}'s identity needs {} ({} bytes of files): the stamp does not fit",
                crate::images::human_size(u64::from(stats.free_clusters()) * cluster),
                identity.host,
                crate::images::human_size(needed * cluster),
                identity.bytes()
            ))
            .into());
        }
        for (name, bytes) in &identity.files {
            let mut f = root
                .create_file(&format!("{IDENTITY_PREFIX}{name}"))
                .map_err(fat_error("creating a file"))?;
            f.truncate().map_err(fat_error("creating a file"))?;
            f.write_all(bytes).map_err(fat_error("writing a file"))?;
            f.flush().map_err(fat_error("writing a file"))?;
        }
    }
    fs.unmount().map_err(fat_error("closing the file system"))?;
    Ok(())
}

/// Reads every file back through a fresh mount of the FAT and compares it.
fn verify(file: &File, firmware: Extent, identity: &Identity) -> Result<()> {
    let fs = fatfs::FileSystem::new(fat::Window::new(file, firmware), fatfs::FsOptions::new())
        .map_err(fat_error("reading back"))?;
    let root = fs.root_dir();
    for (name, bytes) in &identity.files {
        let mut read = Zeroizing::new(Vec::new());
        root.open_file(&format!("{IDENTITY_PREFIX}{name}"))
            .and_then(|mut f| f.read_to_end(&mut read))
            .map_err(fat_error("reading back a file"))?;
        if read.as_slice() != bytes.as_slice() {
            anyhow::bail!("{IDENTITY_PREFIX}{name} reads back different from what was written");
        }
    }
    Ok(())
}
