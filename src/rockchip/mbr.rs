//! The DOS/MBR partition table at LBA 0, and the EBR chain of an extended partition.

/// One used slot of a partition table sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrEntry {
    /// 1–4 for primary slots.
    pub slot: u8,
    pub bootable: bool,
    pub kind: u8,
    /// In 512-byte sectors, relative to what the table is relative to (disk start for the MBR).
    pub start: u64,
    pub sectors: u64,
}

/// A parsed MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub disk_id: u32,
    /// Used slots only (type not 0 and size not 0).
    pub entries: Vec<MbrEntry>,
}

/// What sector 0 holds, as far as the MBR format can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbrParse {
    /// No 0x55 0xAA boot signature: no MBR at all.
    NoSignature,
    /// The signature is there but a slot is malformed (so this may be a file system boot sector).
    Invalid(String),
    Mbr(Mbr),
}

const SIGNATURE_AT: usize = 510;
const TABLE_AT: usize = 446;

/// The GPT protective type.
pub const PROTECTIVE: u8 = 0xee;

/// Reads sector 0. `sector` must hold at least 512 bytes; less is "no signature".
pub fn parse(sector: &[u8]) -> MbrParse {
    if sector.len() < 512 || sector[SIGNATURE_AT] != 0x55 || sector[SIGNATURE_AT + 1] != 0xaa {
        return MbrParse::NoSignature;
    }
    let disk_id = u32::from_le_bytes([sector[440], sector[441], sector[442], sector[443]]);
    match parse_slots(sector) {
        Ok(entries) => MbrParse::Mbr(Mbr { disk_id, entries }),
        Err(reason) => MbrParse::Invalid(reason),
    }
}

/// The four slots of a table sector (MBR or EBR), used ones only.
pub fn parse_slots(sector: &[u8]) -> Result<Vec<MbrEntry>, String> {
    let mut entries = Vec::new();
    for slot in 0..4u8 {
        let at = TABLE_AT + usize::from(slot) * 16;
        let raw = &sector[at..at + 16];
        let status = raw[0];
        if status != 0x00 && status != 0x80 {
            return Err(format!(
                "slot {} has status byte {status:#04x} (only 0x00 or 0x80 are valid)",
                slot + 1
            ));
        }
        let kind = raw[4];
        let start = u64::from(u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]));
        let sectors = u64::from(u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]));
        if kind == 0 || sectors == 0 {
            continue;
        }
        entries.push(MbrEntry {
            slot: slot + 1,
            bootable: status == 0x80,
            kind,
            start,
            sectors,
        });
    }
    Ok(entries)
}

impl Mbr {
    /// A 0xEE slot: the real table is a GPT.
    pub fn is_protective(&self) -> bool {
        self.entries.iter().any(|entry| entry.kind == PROTECTIVE)
    }
}

/// Extended container types: their EBR chain holds the logical partitions.
pub fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// A short name for common MBR partition types.
///
/// For messages only: no decision depends on it. .cargo/mutants.toml leaves out cargo-mutants'
/// deletions of single arms (each would turn one name into the generic one); a test naming
/// every type would be this table written twice.
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        0x01 => "FAT12",
        0x04 | 0x06 | 0x0e => "FAT16",
        0x05 | 0x0f | 0x85 => "extended",
        0x07 => "NTFS/exFAT",
        0x0b => "FAT32",
        0x0c => "FAT32 LBA",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x8e => "Linux LVM",
        0xa5 | 0xa6 | 0xa9 => "BSD",
        0xda => "non-FS data",
        0xee => "GPT protective",
        0xef => "EFI System",
        0xfd => "Linux RAID",
        _ => "unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sector with the boot signature and `slots` (slot, status, type, start, sectors).
    fn sector(slots: &[(u8, u8, u8, u32, u32)]) -> Vec<u8> {
        let mut sector = vec![0u8; 512];
        sector[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        for &(slot, status, kind, start, sectors) in slots {
            let at = TABLE_AT + usize::from(slot - 1) * 16;
            sector[at] = status;
            sector[at + 4] = kind;
            sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            sector[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        sector[510..].copy_from_slice(&[0x55, 0xaa]);
        sector
    }

    // cargo-mutants: sfdisk's tables in the integration tests are always whole and valid.
    #[test]
    fn only_a_whole_sector_with_both_signature_bytes_is_a_table() {
        let table = sector(&[(1, 0x80, 0x0c, 32768, 61440)]);
        assert!(matches!(parse(&table), MbrParse::Mbr(_)));
        for byte in [510, 511] {
            let mut half = table.clone();
            half[byte] = 0;
            assert_eq!(parse(&half), MbrParse::NoSignature, "byte {byte} cleared");
        }
        assert_eq!(parse(&table[..511]), MbrParse::NoSignature);
        assert_eq!(parse(&[]), MbrParse::NoSignature);
    }

    #[test]
    fn used_slots_are_read_in_order_and_a_bad_status_byte_is_invalid() {
        let table = sector(&[
            (1, 0x00, 0x0c, 32768, 61440),
            // Unused: no type, or no size.
            (2, 0x00, 0x00, 94208, 100),
            (3, 0x00, 0x83, 94208, 0),
            (4, 0x80, 0x83, 0x0101_0000, 0x8000_0001),
        ]);
        assert_eq!(
            parse(&table),
            MbrParse::Mbr(Mbr {
                disk_id: 0x1234_5678,
                entries: vec![
                    MbrEntry {
                        slot: 1,
                        bootable: false,
                        kind: 0x0c,
                        start: 32768,
                        sectors: 61440
                    },
                    MbrEntry {
                        slot: 4,
                        bootable: true,
                        kind: 0x83,
                        start: 0x0101_0000,
                        sectors: 0x8000_0001
                    },
                ],
            })
        );
        for slot in 1..=4 {
            let bad = sector(&[(slot, 0x7f, 0x83, 2048, 2048)]);
            assert_eq!(
                parse(&bad),
                MbrParse::Invalid(format!(
                    "slot {slot} has status byte 0x7f (only 0x00 or 0x80 are valid)"
                ))
            );
        }
    }

    #[test]
    fn protective_and_extended_types_are_told_apart() {
        let table = |kind| match parse(&sector(&[(1, 0, kind, 1, 100)])) {
            MbrParse::Mbr(mbr) => mbr,
            other => panic!("{other:?}"),
        };
        assert!(table(PROTECTIVE).is_protective());
        assert!(!table(0x83).is_protective());
        for kind in [0x05, 0x0f, 0x85] {
            assert!(is_extended(kind), "{kind:#x}");
        }
        for kind in [0x00, 0x83, 0x0c, PROTECTIVE] {
            assert!(!is_extended(kind), "{kind:#x}");
        }
    }
}
