//! The FIRMWARE partition of an sd-image: finding it, and writing files into it with the fatfs
//! crate through a window on the image file that cannot reach a byte outside the partition.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
};

use crate::rockchip::{layout::Layout, Extent};

/// The volume label nixpkgs' sd-image.nix gives the FAT partition (`mkfs.vfat -n FIRMWARE`).
pub const FIRMWARE_LABEL: &str = "FIRMWARE";

/// Reads and writes `extent` of a file and nothing else: a write past its end is an error, so
/// the partition table, the bootloader and the root partition cannot be touched by a FAT bug.
///
/// Reads go through a buffer of [`READ_AHEAD`] bytes: fatfs reads a FAT entry (2 or 4 bytes) at a
/// time, and counting the free clusters of a 30 MiB FAT16 took 60,000 system calls without it.
/// Writes go straight to the file and into the buffer, so a read after a write sees it.
pub struct Window<'a> {
    file: &'a File,
    extent: Extent,
    pos: u64,
    /// Bytes of the window from `cached_at` on.
    cache: Vec<u8>,
    cached_at: u64,
}

const READ_AHEAD: usize = 64 << 10;

impl<'a> Window<'a> {
    pub fn new(file: &'a File, extent: Extent) -> Self {
        Self {
            file,
            extent,
            pos: 0,
            cache: Vec::new(),
            cached_at: 0,
        }
    }

    /// The cached bytes from `pos` on, filling the cache there when `pos` is outside it.
    fn cached(&mut self) -> io::Result<&[u8]> {
        let inside =
            self.pos >= self.cached_at && self.pos < self.cached_at + self.cache.len() as u64;
        if !inside {
            let n = self.room(READ_AHEAD);
            self.cache.resize(n, 0);
            let mut filled = 0;
            while filled < n {
                let got = self.file.read_at(
                    &mut self.cache[filled..],
                    self.extent.start + self.pos + filled as u64,
                )?;
                if got == 0 {
                    break;
                }
                filled += got;
            }
            self.cache.truncate(filled);
            self.cached_at = self.pos;
        }
        let from = (self.pos - self.cached_at) as usize;
        Ok(&self.cache[from..])
    }

    fn room(&self, want: usize) -> usize {
        let left = self.extent.len().saturating_sub(self.pos);
        usize::try_from(left).unwrap_or(usize::MAX).min(want)
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.room(buf.len()) == 0 {
            return Ok(0);
        }
        let cached = self.cached()?;
        let n = cached.len().min(buf.len());
        buf[..n].copy_from_slice(&cached[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n < buf.len() {
            return Err(io::Error::other(
                "a write would run past the end of the FAT partition",
            ));
        }
        let n = self
            .file
            .write_at(&buf[..n], self.extent.start + self.pos)?;
        // The cached copy of what was just written, if any, is brought up to date.
        let (start, end) = (self.pos, self.pos + n as u64);
        let (cache_start, cache_end) = (self.cached_at, self.cached_at + self.cache.len() as u64);
        if start < cache_end && end > cache_start {
            let from = start.max(cache_start);
            let to = end.min(cache_end);
            self.cache[(from - cache_start) as usize..(to - cache_start) as usize]
                .copy_from_slice(&buf[(from - start) as usize..(to - start) as usize]);
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.extent.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= self.extent.len() => {
                self.pos = t;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the FAT partition",
            )),
        }
    }
}

/// The volume label of a FAT12/16/32 boot sector, or None when `sector` is not one.
pub fn fat_label(sector: &[u8]) -> Option<String> {
    if sector.len() < 512 || sector[510] != 0x55 || sector[511] != 0xaa {
        return None;
    }
    let u16_at = |at: usize| u16::from_le_bytes([sector[at], sector[at + 1]]);
    let bytes_per_sector = u16_at(11);
    let sectors_per_cluster = sector[13];
    let reserved = u16_at(14);
    let fats = sector[16];
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || fats == 0
    {
        return None;
    }
    // FAT32 has no 16-bit FAT size; its extended boot record sits further on.
    let (signature_at, label_at) = if u16_at(22) == 0 { (66, 71) } else { (38, 43) };
    if !matches!(sector[signature_at], 0x28 | 0x29) {
        return Some(String::new());
    }
    let label = &sector[label_at..label_at + 11];
    Some(String::from_utf8_lossy(label).trim_end().to_string())
}

/// Why an image cannot be stamped.
pub type Refusal = String;

/// The one FAT partition labelled FIRMWARE in an image's partition table.
pub fn find_firmware(file: &File, layout: &Layout) -> Result<Extent, Refusal> {
    use crate::rockchip::layout::Scheme;
    if !matches!(layout.scheme, Scheme::Mbr | Scheme::Gpt) {
        return Err("has no MBR or GPT partition table (not an sd-image)".to_string());
    }
    let mut found = Vec::new();
    for partition in &layout.partitions {
        let mut sector = [0u8; 512];
        if partition.extent.end > layout.size
            || file
                .read_exact_at(&mut sector, partition.extent.start)
                .is_err()
        {
            continue;
        }
        if fat_label(&sector).as_deref() == Some(FIRMWARE_LABEL) {
            found.push(partition);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.extent),
        [] => Err(format!(
            "has no FAT partition labelled {FIRMWARE_LABEL} (the sd-image layout of nixpkgs)"
        )),
        many => Err(format!(
            "has {} FAT partitions labelled {FIRMWARE_LABEL}; flakesmith stamp will not guess which",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_never_writes_outside_its_extent() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&[1u8; 100]).unwrap();
        let mut window = Window::new(&tmp, Extent::at(10, 20));
        window.seek(SeekFrom::Start(15)).unwrap();
        assert!(window.write(&[9u8; 6]).is_err(), "past the end");
        assert!(window.seek(SeekFrom::Start(21)).is_err());
        assert_eq!(window.write(&[9u8; 5]).unwrap(), 5);
        let mut all = vec![0u8; 100];
        tmp.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all[25..30], &[9u8; 5]);
        assert!(all[..25].iter().chain(&all[30..]).all(|&b| b == 1));
    }

    /// The read buffer never shows a byte older than the last write, nor one outside the window.
    #[test]
    fn a_window_reads_its_own_writes_through_its_buffer() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&(0..=255u8).cycle().take(200_000).collect::<Vec<_>>())
            .unwrap();
        let mut window = Window::new(&tmp, Extent::at(1000, 150_000));
        let mut two = [0u8; 2];
        window.seek(SeekFrom::Start(10)).unwrap();
        window.read_exact(&mut two).unwrap();
        assert_eq!(two, [(1010 % 256) as u8, (1011 % 256) as u8]);
        window.seek(SeekFrom::Start(9)).unwrap();
        window.write_all(&[7, 7, 7]).unwrap();
        window.seek(SeekFrom::Start(10)).unwrap();
        window.read_exact(&mut two).unwrap();
        assert_eq!(two, [7, 7]);
        let mut rest = Vec::new();
        window.seek(SeekFrom::Start(100_000)).unwrap();
        window.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), 50_000, "stops at the window's end");
        assert_eq!(rest[0], ((1000 + 100_000) % 256) as u8);
    }

    #[test]
    fn labels_of_fat16_and_fat32_boot_sectors() {
        let mut sector = [0u8; 512];
        sector[510] = 0x55;
        sector[511] = 0xaa;
        sector[11..13].copy_from_slice(&512u16.to_le_bytes());
        sector[13] = 4;
        sector[14] = 1;
        sector[16] = 2;
        sector[22] = 8;
        sector[38] = 0x29;
        sector[43..54].copy_from_slice(b"FIRMWARE   ");
        assert_eq!(fat_label(&sector).as_deref(), Some("FIRMWARE"));
        sector[22] = 0;
        sector[66] = 0x29;
        sector[71..82].copy_from_slice(b"OTHER      ");
        assert_eq!(fat_label(&sector).as_deref(), Some("OTHER"));
        sector[13] = 3;
        assert_eq!(fat_label(&sector), None, "3 sectors a cluster is not FAT");
    }
}
