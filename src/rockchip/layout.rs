//! What an image's partition table says is in use: partitions (MBR primaries, logical partitions
//! in an EBR chain, GPT entries from the primary or backup array) and the sectors of the tables
//! themselves. Read from the start and the end of the image only, never the middle.

use std::io::{Read, Seek, SeekFrom};

use super::gpt::{self, GptEntry, GptHeader};
use super::mbr::{self, MbrParse};
use super::{signature, Error, Extent, Result};

/// How the image is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// No partition table and no file system rk-inject recognises.
    None,
    Mbr,
    Gpt,
    /// A file system or volume (LUKS, LVM, swap, …) spans the image from byte 0, whatever
    /// partition table may also be there.
    WholeDisk(&'static str),
}

impl Scheme {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Mbr => "mbr",
            Scheme::Gpt => "gpt",
            Scheme::WholeDisk(_) => "whole-disk-filesystem",
        }
    }
}

/// A range of the image that holds data: a partition, or a whole-disk file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// "MBR", "GPT", or "file system" for a whole-disk file system.
    pub table: &'static str,
    pub number: u32,
    /// Type and, for GPT, the partition name.
    pub description: String,
    pub extent: Extent,
}

impl Partition {
    /// How messages name it, e.g. `partition 1 (MBR type 0x0b FAT32)`.
    pub fn name(&self) -> String {
        if self.table == "file system" {
            format!("the whole-disk {}", self.description)
        } else {
            format!(
                "partition {} ({} {})",
                self.number, self.table, self.description
            )
        }
    }
}

/// Sectors that belong to a partition table itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub what: String,
    pub extent: Extent,
}

/// Something a write would touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub what: String,
    pub extent: Extent,
    pub overlap: u64,
}

/// The image as its partition table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub scheme: Scheme,
    /// GPT logical sector size (512 or 4096); 512 otherwise.
    pub sector_size: u64,
    /// MBR disk identifier or GPT disk GUID.
    pub disk_id: String,
    pub partitions: Vec<Partition>,
    pub reserved: Vec<Reserved>,
    /// Things worth saying that do not stop a write (a damaged backup GPT, say).
    pub notes: Vec<String>,
}

/// Bytes read from the start of the image: enough for the MBR, a 4096-byte-sector GPT header and
/// the volume signatures (btrfs's is at 64 KiB).
pub const HEAD_LEN: usize = 68 * 1024;
const _: () = assert!(HEAD_LEN >= signature::SCANNED);

/// At most this many logical partitions are followed in an EBR chain.
const MAX_LOGICAL: u32 = 256;

impl Layout {
    /// Reads the partition table of an image of `size` bytes.
    pub fn read<R: Read + Seek>(disk: &mut R, size: u64) -> Result<Layout> {
        let head_len = (HEAD_LEN as u64).min(size) as usize;
        let mut head = vec![0u8; head_len];
        read_at(disk, 0, &mut head)?;
        let mut layout = Layout {
            size,
            scheme: Scheme::None,
            sector_size: 512,
            disk_id: String::new(),
            partitions: Vec::new(),
            reserved: Vec::new(),
            notes: Vec::new(),
        };
        // A volume from byte 0 spans the loader's sectors: whatever table is also there (an
        // exFAT or NTFS boot sector passes for an MBR with no partitions), it is not written.
        if let Some((kind, at)) = signature::volume_at_start(&head) {
            layout.whole_disk(kind, at);
            return Ok(layout);
        }
        let parsed = mbr::parse(&head);
        let gpt_sector = if has_signature(&head, 512) {
            Some(512)
        } else if has_signature(&head, 4096) {
            Some(4096)
        } else {
            None
        };
        let protective = matches!(&parsed, MbrParse::Mbr(m) if m.is_protective());
        let mut stale_gpt = None;
        if gpt_sector.is_some() || protective {
            let mut gpt = layout.clone();
            match gpt.read_gpt(disk, gpt_sector.unwrap_or(512), &parsed, protective) {
                Ok(()) => return Ok(gpt),
                // A damaged "EFI PART" left behind by an earlier GPT, under a valid MBR that
                // does not point to it: the MBR is the table in use.
                Err(e)
                    if !protective
                        && matches!(&parsed, MbrParse::Mbr(m) if !m.entries.is_empty()) =>
                {
                    stale_gpt = Some(e.message)
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(reason) = stale_gpt {
            layout.notes.push(format!(
                "ignored a leftover GPT signature, the MBR is in use: {reason}"
            ));
        }
        match parsed {
            MbrParse::Mbr(table) => {
                layout.scheme = Scheme::Mbr;
                layout.disk_id = format!("0x{:08x}", table.disk_id);
                layout.reserved.push(Reserved {
                    what: "the MBR (LBA 0)".to_string(),
                    extent: Extent::at(0, 512),
                });
                for entry in &table.entries {
                    layout
                        .partitions
                        .push(mbr_partition(entry.slot.into(), entry, 0));
                    if mbr::is_extended(entry.kind) {
                        layout.read_ebr_chain(disk, entry.start)?;
                    }
                }
            }
            MbrParse::Invalid(reason) => {
                return Err(Error::refused(format!(
                    "sector 0 has the 55 AA boot signature but is not a valid MBR ({reason}); \
                     rk-inject will not guess where the data is"
                )))
            }
            MbrParse::NoSignature => {}
        }
        Ok(layout)
    }

    /// Where the first partition starts, if there is one.
    pub fn first_partition(&self) -> Option<&Partition> {
        self.partitions.iter().min_by_key(|p| p.extent.start)
    }

    /// Every partition and table sector that `write` would touch.
    pub fn conflicts(&self, write: &Extent) -> Vec<Conflict> {
        let tables = self.reserved.iter().map(|r| (r.what.clone(), r.extent));
        let parts = self.partitions.iter().map(|p| (p.name(), p.extent));
        tables
            .chain(parts)
            .filter_map(|(what, extent)| {
                let overlap = write.overlap(&extent);
                (overlap > 0).then_some(Conflict {
                    what,
                    extent,
                    overlap,
                })
            })
            .collect()
    }

    /// One line: "MBR (disk id 0x…), 2 partitions".
    pub fn summary(&self) -> String {
        let count = self.partitions.len();
        let plural = if count == 1 { "" } else { "s" };
        match self.scheme {
            Scheme::None => "no partition table".to_string(),
            Scheme::Mbr => format!("MBR (disk id {}), {count} partition{plural}", self.disk_id),
            Scheme::Gpt => format!(
                "GPT (disk {}, {}-byte sectors), {count} partition{plural}",
                self.disk_id, self.sector_size
            ),
            Scheme::WholeDisk(kind) => format!("a {kind} volume from byte 0"),
        }
    }

    fn whole_disk(&mut self, kind: &'static str, signature_at: usize) {
        self.scheme = Scheme::WholeDisk(kind);
        self.partitions = vec![Partition {
            table: "file system",
            number: 0,
            description: format!("{kind} volume (signature at byte {signature_at})"),
            extent: Extent::at(0, self.size),
        }];
    }

    fn read_ebr_chain<R: Read + Seek>(&mut self, disk: &mut R, extended_start: u64) -> Result<()> {
        let mut ebr_lba = extended_start;
        let mut seen = Vec::new();
        let mut number = 5u32;
        while number < 5 + MAX_LOGICAL {
            if seen.contains(&ebr_lba) {
                return Err(Error::refused(format!(
                    "the EBR chain of the extended partition loops back to LBA {ebr_lba}"
                )));
            }
            seen.push(ebr_lba);
            let offset = ebr_lba.saturating_mul(512);
            if offset.saturating_add(512) > self.size {
                self.notes.push(format!(
                    "EBR at LBA {ebr_lba} lies past the end of the image"
                ));
                return Ok(());
            }
            let mut sector = [0u8; 512];
            read_at(disk, offset, &mut sector)?;
            if sector[510] != 0x55 || sector[511] != 0xaa {
                // An extended partition without logical partitions has an empty EBR.
                return Ok(());
            }
            self.reserved.push(Reserved {
                what: format!("the EBR at LBA {ebr_lba}"),
                extent: Extent::at(offset, 512),
            });
            let slots = mbr::parse_slots(&sector).map_err(|reason| {
                Error::refused(format!("the EBR at LBA {ebr_lba} is not valid ({reason})"))
            })?;
            // Slot 1 is the logical partition, relative to this EBR; slot 2 links to the next
            // EBR, relative to the start of the extended partition.
            if let Some(logical) = slots
                .iter()
                .find(|s| s.slot == 1 && !mbr::is_extended(s.kind))
            {
                self.partitions
                    .push(mbr_partition(number, logical, ebr_lba));
                number += 1;
            }
            match slots.iter().find(|s| mbr::is_extended(s.kind)) {
                Some(link) => ebr_lba = extended_start.saturating_add(link.start),
                None => return Ok(()),
            }
        }
        self.notes.push(format!(
            "stopped following the EBR chain after {MAX_LOGICAL} logical partitions"
        ));
        Ok(())
    }

    fn read_gpt<R: Read + Seek>(
        &mut self,
        disk: &mut R,
        sector_size: u64,
        parsed: &MbrParse,
        protective: bool,
    ) -> Result<()> {
        self.scheme = Scheme::Gpt;
        self.sector_size = sector_size;
        self.reserved.push(Reserved {
            what: "the protective MBR (LBA 0)".to_string(),
            extent: Extent::at(0, 512),
        });
        let last_lba = (self.size / sector_size).saturating_sub(1);
        let primary = read_gpt_copy(disk, self.size, sector_size, 1);
        let backup_lba = match &primary {
            Ok((header, _)) => header.alternate_lba,
            Err(_) => last_lba,
        };
        let mut backup = read_gpt_copy(disk, self.size, sector_size, backup_lba);
        if backup.is_err() && backup_lba != last_lba {
            // The image may have been grown after partitioning; the backup then sits where the
            // primary header says, or at the old end. Try the real end as well.
            if let Ok(found) = read_gpt_copy(disk, self.size, sector_size, last_lba) {
                backup = Ok(found);
            }
        }
        let (entries, header) = match (&primary, &backup) {
            (Ok((header, entries)), Ok((backup_header, backup_entries))) => {
                if entries != backup_entries {
                    self.notes.push(format!(
                        "the primary and backup GPT (LBA {}) list different partitions; both are protected",
                        backup_header.my_lba
                    ));
                }
                let mut all = entries.clone();
                all.extend(
                    backup_entries
                        .iter()
                        .filter(|e| !entries.contains(e))
                        .cloned(),
                );
                (all, header.clone())
            }
            (Ok((header, entries)), Err(reason)) => {
                self.notes
                    .push(format!("the backup GPT header is not usable: {reason}"));
                (entries.clone(), header.clone())
            }
            (Err(reason), Ok((header, entries))) => {
                self.notes.push(format!(
                    "the primary GPT header is not usable ({reason}); using the backup at LBA {}",
                    header.my_lba
                ));
                (entries.clone(), header.clone())
            }
            (Err(primary_reason), Err(backup_reason)) => {
                let why = if protective {
                    "a protective MBR"
                } else {
                    "an \"EFI PART\" signature"
                };
                return Err(Error::refused(format!(
                    "the image has {why} but no valid GPT (primary at LBA 1: {primary_reason}; \
                     backup at LBA {backup_lba}: {backup_reason}); rk-inject will not guess where the data is"
                )));
            }
        };
        self.disk_id = gpt::format_guid(&header.disk_guid);
        let array_sectors = header.entries_sectors(sector_size);
        // Protect both copies wherever they are, also when one of them is damaged.
        let (primary_header, primary_entries_lba) = match &primary {
            Ok((h, _)) => (h.clone(), h.entries_lba),
            Err(_) => (header.clone(), 2),
        };
        self.reserved.push(Reserved {
            what: "the primary GPT header (LBA 1)".to_string(),
            extent: Extent::at(sector_size, sector_size),
        });
        self.reserved.push(Reserved {
            what: format!(
                "the primary GPT entry array (LBA {}..{})",
                primary_entries_lba,
                primary_entries_lba.saturating_add(primary_header.entries_sectors(sector_size))
            ),
            extent: Extent::at(
                primary_entries_lba.saturating_mul(sector_size),
                primary_header
                    .entries_sectors(sector_size)
                    .saturating_mul(sector_size),
            ),
        });
        let (backup_at, backup_entries_lba) = match &backup {
            Ok((h, _)) => (h.my_lba, h.entries_lba),
            Err(_) => (backup_lba, backup_lba.saturating_sub(array_sectors)),
        };
        self.reserved.push(Reserved {
            what: format!("the backup GPT header (LBA {backup_at})"),
            extent: Extent::at(backup_at.saturating_mul(sector_size), sector_size),
        });
        self.reserved.push(Reserved {
            what: format!(
                "the backup GPT entry array (LBA {}..{})",
                backup_entries_lba,
                backup_entries_lba.saturating_add(array_sectors)
            ),
            extent: Extent::at(
                backup_entries_lba.saturating_mul(sector_size),
                array_sectors.saturating_mul(sector_size),
            ),
        });
        for entry in &entries {
            self.partitions.push(gpt_partition(entry, sector_size));
        }
        // A hybrid MBR lists some partitions a second time; protect what it names as well.
        if let MbrParse::Mbr(table) = parsed {
            for entry in table.entries.iter().filter(|e| e.kind != mbr::PROTECTIVE) {
                self.partitions
                    .push(mbr_partition(entry.slot.into(), entry, 0));
            }
        }
        Ok(())
    }
}

/// One GPT copy (header and entries) at `lba`, or why it is not usable.
fn read_gpt_copy<R: Read + Seek>(
    disk: &mut R,
    size: u64,
    sector_size: u64,
    lba: u64,
) -> std::result::Result<(GptHeader, Vec<GptEntry>), String> {
    let offset = lba.saturating_mul(sector_size);
    if lba == 0 || offset.saturating_add(sector_size) > size {
        return Err(format!("LBA {lba} is outside the image"));
    }
    let mut sector = vec![0u8; sector_size as usize];
    read_at(disk, offset, &mut sector).map_err(|e| e.message)?;
    let header = gpt::parse_header(&sector, lba)?;
    let array_offset = header.entries_lba.saturating_mul(sector_size);
    let array_len = header.entries_bytes();
    if array_offset.saturating_add(array_len) > size {
        return Err(format!(
            "its entry array at LBA {} runs past the end of the image",
            header.entries_lba
        ));
    }
    let mut array = vec![0u8; array_len as usize];
    read_at(disk, array_offset, &mut array).map_err(|e| e.message)?;
    let entries = gpt::parse_entries(&array, &header)?;
    Ok((header, entries))
}

fn mbr_partition(number: u32, entry: &mbr::MbrEntry, relative_to: u64) -> Partition {
    let start = relative_to.saturating_add(entry.start);
    Partition {
        table: "MBR",
        number,
        description: format!("type {:#04x} {}", entry.kind, mbr::type_name(entry.kind)),
        extent: Extent::at(start.saturating_mul(512), entry.sectors.saturating_mul(512)),
    }
}

fn gpt_partition(entry: &GptEntry, sector_size: u64) -> Partition {
    let kind = gpt::type_name(&entry.type_guid)
        .map(str::to_string)
        .unwrap_or_else(|| format!("type {}", gpt::format_guid(&entry.type_guid)));
    let description = if entry.name.is_empty() {
        kind
    } else {
        format!("\"{}\" {kind}", entry.name)
    };
    let sectors = entry
        .last_lba
        .saturating_sub(entry.first_lba)
        .saturating_add(1);
    Partition {
        table: "GPT",
        number: entry.number,
        description,
        extent: Extent::at(
            entry.first_lba.saturating_mul(sector_size),
            sectors.saturating_mul(sector_size),
        ),
    }
}

fn has_signature(head: &[u8], at: usize) -> bool {
    head.len() >= at + 8 && &head[at..at + 8] == gpt::SIGNATURE
}

/// Fills `buf` from `offset`, zero-filling what lies past the end of the data.
pub fn read_at<R: Read + Seek>(disk: &mut R, offset: u64, buf: &mut [u8]) -> Result<usize> {
    disk.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(format!("seeking to byte {offset}"), e))?;
    let mut filled = 0;
    // (`<=` would add a read into an empty slice, which returns 0 and ends the loop the same.)
    while filled < buf.len() {
        match disk.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading at byte {offset}"), e)),
        }
    }
    buf[filled..].fill(0);
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MBR disk whose extended partition (LBA 1 on) chains `logical` EBRs, two sectors
    /// apart, each with a one-sector logical partition right after it.
    fn disk_with_logical_partitions(logical: u64) -> Vec<u8> {
        fn entry(sector: &mut [u8], slot: usize, kind: u8, start: u64, sectors: u64) {
            let at = 446 + slot * 16;
            sector[at + 4] = kind;
            sector[at + 8..at + 12].copy_from_slice(&(start as u32).to_le_bytes());
            sector[at + 12..at + 16].copy_from_slice(&(sectors as u32).to_le_bytes());
        }
        let mut disk = vec![0u8; ((2 + 2 * logical) * 512) as usize];
        let extended_sectors = 2 * logical;
        entry(&mut disk[..512], 0, 0x05, 1, extended_sectors);
        disk[510..512].copy_from_slice(&[0x55, 0xaa]);
        for k in 0..logical {
            let at = ((1 + 2 * k) * 512) as usize;
            let ebr = &mut disk[at..at + 512];
            entry(ebr, 0, 0x83, 1, 1);
            if k + 1 < logical {
                entry(ebr, 1, 0x05, 2 * (k + 1), 2);
            }
            ebr[510..512].copy_from_slice(&[0x55, 0xaa]);
        }
        disk
    }

    /// The EBR chain is followed for 256 logical partitions (5 to 260) and no further, with a
    /// note when more follow.
    #[test]
    fn the_ebr_chain_is_followed_for_256_logical_partitions_and_no_further() {
        for (chained, found, note) in [(256, 256, false), (257, 256, true)] {
            let disk = disk_with_logical_partitions(chained);
            let size = disk.len() as u64;
            let layout = Layout::read(&mut std::io::Cursor::new(disk), size).unwrap();
            let numbers: Vec<u32> = layout
                .partitions
                .iter()
                .map(|p| p.number)
                .filter(|&n| n >= 5)
                .collect();
            assert_eq!(numbers.len(), found, "{chained} chained");
            assert_eq!(numbers.first(), Some(&5));
            assert_eq!(numbers.last(), Some(&260));
            let stopped = layout
                .notes
                .iter()
                .any(|n| n == "stopped following the EBR chain after 256 logical partitions");
            assert_eq!(stopped, note, "{chained} chained: {:?}", layout.notes);
        }
    }

    // cargo-mutants: the summary line of rk-inject's report was read by no test.
    #[test]
    fn the_summary_names_the_table_and_counts_partitions() {
        let partition = |number| Partition {
            table: "MBR",
            number,
            description: "type 0x83 Linux".to_string(),
            extent: Extent::at(u64::from(number) << 20, 1 << 20),
        };
        let mut layout = Layout {
            size: 64 << 20,
            scheme: Scheme::Mbr,
            sector_size: 512,
            disk_id: "0x12345678".to_string(),
            partitions: vec![partition(1)],
            reserved: Vec::new(),
            notes: Vec::new(),
        };
        assert_eq!(layout.summary(), "MBR (disk id 0x12345678), 1 partition");
        layout.partitions.push(partition(2));
        assert_eq!(layout.summary(), "MBR (disk id 0x12345678), 2 partitions");
        layout.scheme = Scheme::Gpt;
        layout.sector_size = 4096;
        assert_eq!(
            layout.summary(),
            "GPT (disk 0x12345678, 4096-byte sectors), 2 partitions"
        );
        layout.scheme = Scheme::None;
        assert_eq!(layout.summary(), "no partition table");
        layout.scheme = Scheme::WholeDisk("ext2/3/4");
        assert_eq!(layout.summary(), "a ext2/3/4 volume from byte 0");
    }

    /// `disk_with_logical_partitions(1)` with `edit` applied to its EBR (LBA 1), read whole or
    /// cut to `len` bytes; the logical partition numbers found and the notes.
    fn one_logical(edit: impl FnOnce(&mut [u8]), len: Option<usize>) -> (Vec<u32>, Vec<String>) {
        let mut disk = disk_with_logical_partitions(1);
        edit(&mut disk[512..1024]);
        disk.truncate(len.unwrap_or(disk.len()));
        let size = disk.len() as u64;
        let layout = Layout::read(&mut std::io::Cursor::new(disk), size).unwrap();
        let numbers = layout
            .partitions
            .iter()
            .map(|p| p.number)
            .filter(|&n| n >= 5);
        (numbers.collect(), layout.notes)
    }

    #[test]
    fn an_ebr_in_the_last_sector_is_read_and_one_cut_short_is_noted() {
        assert_eq!(one_logical(|_| (), Some(1024)), (vec![5], vec![]));
        assert_eq!(
            one_logical(|_| (), Some(1023)),
            (
                vec![],
                vec!["EBR at LBA 1 lies past the end of the image".to_string()]
            )
        );
    }

    #[test]
    fn an_ebr_needs_both_signature_bytes() {
        assert_eq!(one_logical(|_| (), None), (vec![5], vec![]));
        for signature in [[0x55, 0x00], [0x00, 0xaa]] {
            let (numbers, _) = one_logical(|ebr| ebr[510..].copy_from_slice(&signature), None);
            assert_eq!(numbers, Vec::<u32>::new(), "{signature:x?}");
        }
    }

    #[test]
    fn only_the_first_slot_of_an_ebr_holds_a_logical_partition() {
        // The logical partition moved to the second slot, where a link to the next EBR belongs.
        let moved = |ebr: &mut [u8]| {
            ebr.copy_within(446..462, 462);
            ebr[446..462].fill(0);
        };
        let (numbers, _) = one_logical(moved, None);
        assert_eq!(numbers, Vec::<u32>::new());
    }

    /// Writes one GPT copy into `disk`, whose sectors are `ss` bytes: the header at `my_lba`
    /// naming `alternate`, and at `entries_lba` an array of `count` 128-byte entries listing
    /// `parts` (first and last LBA) in slots 1, 2, …, with both CRCs right.
    fn put_gpt(
        disk: &mut [u8],
        ss: usize,
        (my_lba, alternate, entries_lba): (u64, u64, u64),
        count: u32,
        parts: &[(u64, u64)],
    ) {
        use gpt::tests::{sector_with, set32, set64};
        let slots: Vec<_> = (parts.iter().enumerate())
            .map(|(slot, &(first, last))| (slot, first, last, ""))
            .collect();
        let array = gpt::tests::entry_array(count as usize, &slots);
        let at = entries_lba as usize * ss;
        disk[at..at + array.len()].copy_from_slice(&array);
        let header = sector_with(|h| {
            h.resize(ss, 0);
            set64(24, my_lba)(h);
            set64(32, alternate)(h);
            set64(72, entries_lba)(h);
            set32(80, count)(h);
            set32(88, gpt::crc32(&array))(h);
        });
        let at = my_lba as usize * ss;
        disk[at..at + ss].copy_from_slice(&header);
    }

    /// A disk of `sectors` sectors of `ss` bytes with a protective MBR and nothing else.
    fn protective_disk(ss: usize, sectors: u64) -> Vec<u8> {
        let mut disk = vec![0u8; ss * sectors as usize];
        disk[446 + 4] = mbr::PROTECTIVE;
        disk[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        disk[446 + 12..446 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        disk[510..512].copy_from_slice(&[0x55, 0xaa]);
        disk
    }

    fn read_disk(disk: Vec<u8>) -> Layout {
        let size = disk.len() as u64;
        Layout::read(&mut std::io::Cursor::new(disk), size).unwrap()
    }

    /// (number, start, length) of each partition, in bytes.
    fn extents(layout: &Layout) -> Vec<(u32, u64, u64)> {
        let partitions = layout.partitions.iter();
        partitions
            .map(|p| (p.number, p.extent.start, p.extent.len()))
            .collect()
    }

    fn has_reserved(layout: &Layout, what: &str) -> bool {
        layout.reserved.iter().any(|r| r.what == what)
    }

    const FIRMWARE: (u64, u64) = (10, 19);
    const EXTRA: (u64, u64) = (30, 39);

    #[test]
    fn a_backup_gpt_listing_other_partitions_is_noted_and_its_partitions_protected_too() {
        let mut disk = protective_disk(512, 200);
        put_gpt(&mut disk, 512, (1, 199, 2), 4, &[FIRMWARE]);
        put_gpt(&mut disk, 512, (199, 1, 198), 4, &[FIRMWARE]);
        let same = read_disk(disk.clone());
        assert_eq!(same.notes, Vec::<String>::new());
        assert_eq!(extents(&same), [(1, 5120, 5120)]);
        put_gpt(&mut disk, 512, (199, 1, 198), 4, &[FIRMWARE, EXTRA]);
        let differ = read_disk(disk);
        assert_eq!(
            differ.notes,
            ["the primary and backup GPT (LBA 199) list different partitions; both are protected"]
        );
        assert_eq!(extents(&differ), [(1, 5120, 5120), (2, 15360, 5120)]);
    }

    #[test]
    fn a_backup_gpt_is_looked_for_at_the_disk_end_when_the_primary_names_an_empty_sector() {
        let mut disk = protective_disk(512, 200);
        put_gpt(&mut disk, 512, (1, 150, 2), 4, &[FIRMWARE]);
        put_gpt(&mut disk, 512, (199, 1, 198), 4, &[FIRMWARE]);
        let layout = read_disk(disk);
        assert_eq!(layout.notes, Vec::<String>::new());
        assert!(has_reserved(&layout, "the backup GPT header (LBA 199)"));
    }

    #[test]
    fn the_backup_gpt_the_primary_names_is_used_over_another_at_the_disk_end() {
        let mut disk = protective_disk(512, 200);
        put_gpt(&mut disk, 512, (1, 150, 2), 4, &[FIRMWARE]);
        put_gpt(&mut disk, 512, (150, 1, 149), 4, &[FIRMWARE]);
        // Left by an earlier table: not the backup of this one.
        put_gpt(&mut disk, 512, (199, 1, 198), 4, &[FIRMWARE, EXTRA]);
        let layout = read_disk(disk);
        assert_eq!(layout.notes, Vec::<String>::new());
        assert!(has_reserved(&layout, "the backup GPT header (LBA 150)"));
        assert!(!has_reserved(&layout, "the backup GPT header (LBA 199)"));
        assert_eq!(extents(&layout), [(1, 5120, 5120)]);
    }

    #[test]
    fn a_gpt_copy_is_read_from_lba_1_to_the_last_sector_with_its_array_inside_the_image() {
        let mut disk = protective_disk(512, 10);
        // Header at the last LBA, its one-sector array just before it.
        put_gpt(&mut disk, 512, (9, 1, 8), 4, &[]);
        put_gpt(&mut disk, 512, (1, 9, 2), 4, &[]);
        let size = disk.len() as u64;
        let mut cursor = std::io::Cursor::new(disk.clone());
        let mut at = |lba| read_gpt_copy(&mut cursor, size, 512, lba).map(|(h, _)| h.my_lba);
        assert_eq!(at(1), Ok(1));
        assert_eq!(at(9), Ok(9));
        assert_eq!(at(0), Err("LBA 0 is outside the image".to_string()));
        assert_eq!(at(10), Err("LBA 10 is outside the image".to_string()));
        // The array in the last sector, ending with the image; then one sector further.
        for (entries_lba, expected) in [
            (9, Ok(1)),
            (
                10,
                Err("its entry array at LBA 10 runs past the end of the image".to_string()),
            ),
        ] {
            let mut disk = protective_disk(512, 11);
            put_gpt(&mut disk, 512, (1, 9, entries_lba), 4, &[]);
            disk.truncate(10 * 512);
            let got = read_gpt_copy(&mut std::io::Cursor::new(disk), size, 512, 1);
            assert_eq!(
                got.map(|(h, _)| h.my_lba),
                expected,
                "array at {entries_lba}"
            );
        }
    }

    #[test]
    fn a_gpt_with_4096_byte_sectors_is_found_on_an_image_of_six_sectors() {
        let mut disk = protective_disk(4096, 6);
        put_gpt(&mut disk, 4096, (1, 5, 2), 32, &[(3, 3)]);
        put_gpt(&mut disk, 4096, (5, 1, 4), 32, &[(3, 3)]);
        let layout = read_disk(disk);
        assert_eq!((layout.scheme, layout.sector_size), (Scheme::Gpt, 4096));
        assert_eq!(extents(&layout), [(1, 3 * 4096, 4096)]);
    }

    #[test]
    fn a_gpt_signature_is_looked_for_only_where_the_image_has_its_eight_bytes() {
        let mut head = vec![0u8; 520];
        head[512..].copy_from_slice(gpt::SIGNATURE);
        assert!(has_signature(&head, 512));
        assert!(!has_signature(&head[..519], 512));
        assert!(!has_signature(&head[..100], 512));
    }

    /// A reader whose first read is interrupted by a signal (EINTR), as a read of a block
    /// device can be.
    struct InterruptedOnce(bool, std::io::Cursor<Vec<u8>>);

    impl Read for InterruptedOnce {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if std::mem::replace(&mut self.0, false) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            self.1.read(buf)
        }
    }

    impl Seek for InterruptedOnce {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.1.seek(to)
        }
    }

    #[test]
    fn an_interrupted_read_is_retried_and_the_end_of_data_zero_filled() {
        let mut disk = InterruptedOnce(true, std::io::Cursor::new(vec![1, 2, 3]));
        let mut buf = [9u8; 4];
        assert_eq!(read_at(&mut disk, 1, &mut buf).unwrap(), 2);
        assert_eq!(buf, [2, 3, 0, 0]);
    }
}
