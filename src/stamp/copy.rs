//! Copying an image the cheap way: a reflink (FICLONE) where the file system shares extents
//! (btrfs, XFS, bcachefs), else a sparse copy that reads only the data extents (SEEK_DATA /
//! SEEK_HOLE) and leaves zero blocks as holes, like `cp --sparse=always`.

use std::{fs::File, io, os::unix::fs::FileExt};

/// How a copy was made, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    Reflink,
    Sparse,
}

/// Blocks of zeros this long, or longer, become holes.
const BLOCK: usize = 4096;
const CHUNK: usize = 1 << 20;

/// Copies `len` bytes of `src` into the empty file `dst`.
pub fn copy_image(src: &File, dst: &File, len: u64) -> io::Result<CopyKind> {
    if reflink(src, dst).is_ok() {
        return Ok(CopyKind::Reflink);
    }
    dst.set_len(len)?;
    let mut buffer = vec![0u8; CHUNK];
    let mut at = 0;
    while at < len {
        let Some((start, end)) = next_data(src, at, len)? else {
            break;
        };
        copy_range(src, dst, start, end, &mut buffer)?;
        at = end;
    }
    Ok(CopyKind::Sparse)
}

#[cfg(target_os = "linux")]
fn reflink(src: &File, dst: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // _IOW(0x94, 9, int) from linux/fs.h.
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open for as long as the borrows last; FICLONE takes the
    // source descriptor as its argument and touches no memory of ours.
    let result = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &File, _dst: &File) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The next data extent at or after `at`, or None when only holes follow. A file system without
/// SEEK_DATA has one extent: the whole file.
pub(crate) fn next_data(src: &File, at: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let seek = |whence| {
        // SAFETY: lseek on an open descriptor; the offset is checked to fit an off_t.
        let offset = libc::off_t::try_from(at).map_err(|_| io::ErrorKind::InvalidInput)?;
        let r = unsafe { libc::lseek(src.as_raw_fd(), offset, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let start = match seek(libc::SEEK_DATA) {
        Ok(start) => start,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some((at, len))),
        Err(e) => return Err(e),
    };
    if start >= len {
        return Ok(None);
    }
    // SEEK_HOLE from the data start: lseek moves the shared offset, which nothing else uses.
    // SAFETY: as above.
    let offset = libc::off_t::try_from(start).map_err(|_| io::ErrorKind::InvalidInput)?;
    let end = unsafe { libc::lseek(src.as_raw_fd(), offset, libc::SEEK_HOLE) };
    let end = if end < 0 { len } else { (end as u64).min(len) };
    Ok(Some((start, end)))
}

/// Copies `start..end`, skipping blocks of zeros (the file was made long enough by set_len, so
/// they read back as zeros).
fn copy_range(src: &File, dst: &File, start: u64, end: u64, buffer: &mut [u8]) -> io::Result<()> {
    let mut at = start;
    while at < end {
        let n = usize::try_from(end - at)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        src.read_exact_at(&mut buffer[..n], at)?;
        let mut block = 0;
        while block < n {
            // A run of non-zero blocks is written with one call.
            let run_start = block;
            while block < n && !is_zero(&buffer[block..(block + BLOCK).min(n)]) {
                block += BLOCK;
            }
            let run_end = block.min(n);
            if run_end > run_start {
                dst.write_all_at(&buffer[run_start..run_end], at + run_start as u64)?;
            }
            while block < n && is_zero(&buffer[block..(block + BLOCK).min(n)]) {
                block += BLOCK;
            }
        }
        at += n as u64;
    }
    Ok(())
}

pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    // OR-folding 64 bytes at a time vectorises; `all` would test byte by byte.
    bytes
        .chunks(64)
        .all(|chunk| chunk.iter().fold(0, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    #[test]
    fn a_copy_is_byte_identical_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = File::create(dir.path().join("src")).unwrap();
        let len = 64 << 20;
        src.set_len(len).unwrap();
        src.seek(SeekFrom::Start(3)).unwrap();
        src.write_all(b"head").unwrap();
        src.seek(SeekFrom::Start(40 << 20)).unwrap();
        src.write_all(&[7u8; 10_000]).unwrap();
        // Dense zeros (written, not a hole) become a hole too.
        src.seek(SeekFrom::Start(50 << 20)).unwrap();
        src.write_all(&vec![0u8; 4 << 20]).unwrap();
        src.seek(SeekFrom::Start(len - 1)).unwrap();
        src.write_all(b"z").unwrap();
        let src = File::open(dir.path().join("src")).unwrap();
        let dst = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("dst"))
            .unwrap();
        copy_image(&src, &dst, len).unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        File::open(dir.path().join("src"))
            .unwrap()
            .read_to_end(&mut a)
            .unwrap();
        File::open(dir.path().join("dst"))
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        assert!(a == b, "the copy differs");
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(dir.path().join("dst")).unwrap().blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "the copy is not sparse: {} bytes",
            blocks * 512
        );
    }
}
