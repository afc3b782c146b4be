//! GUID partition tables (UEFI spec, chapter 5): header and entry array, primary and backup.

/// A GPT header whose signature, size and CRC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: [u8; 16],
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

/// One used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// 1-based index in the entry array, as `sfdisk` and the kernel number them.
    pub number: u32,
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

pub const SIGNATURE: &[u8; 8] = b"EFI PART";

/// rk-inject reads at most this many bytes of entry array: the usual array is 16 KiB, and a
/// bound keeps memory flat whatever a damaged or hostile header claims.
pub const MAX_ENTRY_ARRAY: u64 = 1 << 20;

impl GptHeader {
    /// Bytes of the entry array.
    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.entry_count) * u64::from(self.entry_size)
    }

    /// Sectors of the entry array, rounded up.
    pub fn entries_sectors(&self, sector_size: u64) -> u64 {
        self.entries_bytes().div_ceil(sector_size)
    }
}

/// Checks and reads a header sector that should sit at `expected_lba`.
pub fn parse_header(sector: &[u8], expected_lba: u64) -> Result<GptHeader, String> {
    if sector.len() < 92 {
        return Err(format!(
            "{} bytes is too short for a GPT header",
            sector.len()
        ));
    }
    if &sector[0..8] != SIGNATURE {
        return Err("no \"EFI PART\" signature".to_string());
    }
    let header_size = le32(sector, 12) as usize;
    if header_size < 92 || header_size > sector.len() {
        return Err(format!(
            "header size {header_size} is outside 92..={}",
            sector.len()
        ));
    }
    let stored_crc = le32(sector, 16);
    let mut copy = sector[..header_size].to_vec();
    copy[16..20].fill(0);
    let actual_crc = crc32(&copy);
    if stored_crc != actual_crc {
        return Err(format!(
            "header CRC32 is {stored_crc:#010x} but the header sums to {actual_crc:#010x}"
        ));
    }
    let header = GptHeader {
        my_lba: le64(sector, 24),
        alternate_lba: le64(sector, 32),
        first_usable_lba: le64(sector, 40),
        last_usable_lba: le64(sector, 48),
        disk_guid: guid_at(sector, 56),
        entries_lba: le64(sector, 72),
        entry_count: le32(sector, 80),
        entry_size: le32(sector, 84),
        entries_crc: le32(sector, 88),
    };
    if header.my_lba != expected_lba {
        return Err(format!(
            "header says it is at LBA {} but was read from LBA {expected_lba}",
            header.my_lba
        ));
    }
    if header.entry_size < 128 || !header.entry_size.is_power_of_two() {
        return Err(format!(
            "entry size {} is not 128 times a power of two",
            header.entry_size
        ));
    }
    if header.entries_bytes() > MAX_ENTRY_ARRAY {
        return Err(format!(
            "entry array of {} entries x {} bytes is larger than the {} bytes rk-inject reads",
            header.entry_count, header.entry_size, MAX_ENTRY_ARRAY
        ));
    }
    if header.first_usable_lba > header.last_usable_lba.saturating_add(1) {
        return Err(format!(
            "first usable LBA {} is past last usable LBA {}",
            header.first_usable_lba, header.last_usable_lba
        ));
    }
    Ok(header)
}

/// Checks the entry array's CRC and returns the used entries.
pub fn parse_entries(array: &[u8], header: &GptHeader) -> Result<Vec<GptEntry>, String> {
    let bytes = header.entries_bytes() as usize;
    if array.len() < bytes {
        return Err(format!(
            "entry array is {} bytes but the header describes {bytes}",
            array.len()
        ));
    }
    let array = &array[..bytes];
    let actual = crc32(array);
    if actual != header.entries_crc {
        return Err(format!(
            "entry array CRC32 is {:#010x} in the header but the array sums to {actual:#010x}",
            header.entries_crc
        ));
    }
    let mut entries = Vec::new();
    for (index, raw) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let type_guid = guid_at(raw, 0);
        if type_guid == [0; 16] {
            continue;
        }
        let first_lba = le64(raw, 32);
        let last_lba = le64(raw, 40);
        let number = index as u32 + 1;
        if last_lba < first_lba {
            return Err(format!(
                "entry {number} ends at LBA {last_lba}, before its start LBA {first_lba}"
            ));
        }
        let units: Vec<u16> = raw[56..128]
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .take_while(|&unit| unit != 0)
            .collect();
        entries.push(GptEntry {
            number,
            type_guid,
            unique_guid: guid_at(raw, 16),
            first_lba,
            last_lba,
            attributes: le64(raw, 48),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(entries)
}

/// CRC-32 as GPT uses it (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut value = i as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 != 0 {
                0xedb8_8320 ^ (value >> 1)
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[i] = value;
        i += 1;
    }
    table
}

/// A GUID in its usual text form (first three fields little-endian).
pub fn format_guid(guid: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        u32::from_le_bytes([guid[0], guid[1], guid[2], guid[3]]),
        u16::from_le_bytes([guid[4], guid[5]]),
        u16::from_le_bytes([guid[6], guid[7]]),
        guid[8],
        guid[9],
        guid[10],
        guid[11],
        guid[12],
        guid[13],
        guid[14],
        guid[15]
    )
}

/// A short name for common partition type GUIDs.
///
/// For messages only: no decision depends on it. .cargo/mutants.toml leaves out cargo-mutants'
/// deletions of single arms (each would turn one name into the generic one); a test naming
/// every type would be this table written twice.
pub fn type_name(guid: &[u8; 16]) -> Option<&'static str> {
    let text = format_guid(guid);
    let name = match text.as_str() {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" => "EFI System",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4" => "Linux filesystem",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => "Microsoft basic data",
        "21686148-6449-6E6F-744E-656564454649" => "BIOS boot",
        "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" => "Linux swap",
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE" => "Linux root (ARM-64)",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" => "Linux root (x86-64)",
        "BC13C2FF-59E6-4262-A352-B275FD6F7172" => "Linux extended boot",
        "E6D6D379-F507-44C2-A23C-238F2A3DF928" => "Linux LVM",
        "A19D880F-05FC-4D3B-A006-743F0F84911E" => "Linux RAID",
        _ => return None,
    };
    Some(name)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn guid_at(bytes: &[u8], at: usize) -> [u8; 16] {
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&bytes[at..at + 16]);
    guid
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 512-byte header sector at LBA 1 (128 entries of 128 bytes at LBA 2, usable 34..=1000),
    /// changed by `edit`, then summed over the header size it ends up with (when that fits).
    pub(crate) fn sector_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut sector = vec![0u8; 512];
        sector[..8].copy_from_slice(SIGNATURE);
        sector[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        sector[12..16].copy_from_slice(&92u32.to_le_bytes());
        sector[24..32].copy_from_slice(&1u64.to_le_bytes());
        sector[32..40].copy_from_slice(&2047u64.to_le_bytes());
        sector[40..48].copy_from_slice(&34u64.to_le_bytes());
        sector[48..56].copy_from_slice(&1000u64.to_le_bytes());
        sector[56..72].copy_from_slice(&[0x11; 16]);
        sector[72..80].copy_from_slice(&2u64.to_le_bytes());
        sector[80..84].copy_from_slice(&128u32.to_le_bytes());
        sector[84..88].copy_from_slice(&128u32.to_le_bytes());
        edit(&mut sector);
        let size = le32(&sector, 12) as usize;
        if size <= sector.len() {
            sector[16..20].fill(0);
            let crc = crc32(&sector[..size]);
            sector[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        sector
    }

    pub(crate) fn set32(at: usize, value: u32) -> impl FnOnce(&mut Vec<u8>) {
        move |sector| sector[at..at + 4].copy_from_slice(&value.to_le_bytes())
    }

    pub(crate) fn set64(at: usize, value: u64) -> impl FnOnce(&mut Vec<u8>) {
        move |sector| sector[at..at + 8].copy_from_slice(&value.to_le_bytes())
    }

    // cargo-mutants: the integration tests read whole 512-byte sectors whose header is 92 bytes.
    #[test]
    fn a_92_byte_header_parses_and_a_91_byte_sector_is_too_short() {
        let sector = sector_with(|_| ());
        assert_eq!(
            parse_header(&sector[..92], 1).unwrap().last_usable_lba,
            1000
        );
        assert_eq!(
            parse_header(&sector[..91], 1),
            Err("91 bytes is too short for a GPT header".to_string())
        );
        assert_eq!(
            parse_header(&[], 1),
            Err("0 bytes is too short for a GPT header".to_string())
        );
    }

    #[test]
    fn the_header_size_runs_from_92_to_the_whole_sector_and_no_further() {
        for size in [92, 93, 511, 512] {
            assert!(
                parse_header(&sector_with(set32(12, size)), 1).is_ok(),
                "{size}"
            );
        }
        for size in [0, 91, 513, u32::MAX] {
            assert_eq!(
                parse_header(&sector_with(set32(12, size)), 1),
                Err(format!("header size {size} is outside 92..=512")),
            );
        }
        // The whole sector is summed: a changed last byte is a bad CRC.
        let mut whole = sector_with(set32(12, 512));
        whole[511] = 1;
        assert!(parse_header(&whole, 1)
            .unwrap_err()
            .starts_with("header CRC32 is "));
    }

    // cargo-mutants: every real table has 128-byte entries.
    #[test]
    fn entry_sizes_are_128_times_a_power_of_two() {
        for size in [128, 256, 512, 1024] {
            assert_eq!(
                parse_header(&sector_with(set32(84, size)), 1).map(|h| h.entry_size),
                Ok(size)
            );
        }
        for size in [0, 1, 64, 127, 129, 192, 384] {
            assert_eq!(
                parse_header(&sector_with(set32(84, size)), 1),
                Err(format!("entry size {size} is not 128 times a power of two")),
            );
        }
    }

    #[test]
    fn an_entry_array_of_exactly_1_mib_is_read_and_one_entry_more_is_not() {
        let header = parse_header(&sector_with(set32(80, 8192)), 1).unwrap();
        assert_eq!(header.entries_bytes(), MAX_ENTRY_ARRAY);
        assert_eq!(header.entries_sectors(512), 2048);
        assert_eq!(
            parse_header(&sector_with(set32(80, 8193)), 1),
            Err(format!(
                "entry array of 8193 entries x 128 bytes is larger than the {} bytes rk-inject reads",
                1 << 20
            )),
        );
    }

    // cargo-mutants: real tables have room between the first and the last usable LBA.
    #[test]
    fn the_first_usable_lba_may_be_one_past_the_last_for_an_empty_disk_and_no_further() {
        for (first, last) in [(34, 1000), (1000, 1000), (1001, 1000), (u64::MAX, u64::MAX)] {
            let sector = sector_with(|s| {
                set64(40, first)(s);
                set64(48, last)(s);
            });
            assert!(parse_header(&sector, 1).is_ok(), "{first}..={last}");
        }
        let sector = sector_with(set64(40, 1002));
        assert_eq!(
            parse_header(&sector, 1),
            Err("first usable LBA 1002 is past last usable LBA 1000".to_string())
        );
    }

    /// An entry array of `count` 128-byte entries, `entries` (slot, first LBA, last LBA, name)
    /// in use; each entry's unique GUID is its slot number, repeated.
    pub(crate) fn entry_array(count: usize, entries: &[(usize, u64, u64, &str)]) -> Vec<u8> {
        let mut array = vec![0u8; count * 128];
        for &(slot, first, last, name) in entries {
            let raw = &mut array[slot * 128..(slot + 1) * 128];
            raw[..16].copy_from_slice(&[0xaf; 16]);
            raw[16..32].copy_from_slice(&[slot as u8; 16]);
            raw[32..40].copy_from_slice(&first.to_le_bytes());
            raw[40..48].copy_from_slice(&last.to_le_bytes());
            for (i, unit) in name.encode_utf16().enumerate() {
                raw[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
            }
        }
        array
    }

    /// An entry array of four 128-byte entries, and a header that describes it.
    fn array_of(entries: &[(usize, u64, u64, &str)]) -> (Vec<u8>, GptHeader) {
        let array = entry_array(4, entries);
        let header = parse_header(
            &sector_with(|s| {
                set32(80, 4)(s);
                set32(88, crc32(&array))(s);
            }),
            1,
        )
        .unwrap();
        (array, header)
    }

    #[test]
    fn an_entry_array_shorter_than_its_header_says_is_refused_and_bytes_after_it_are_not_read() {
        let (array, header) = array_of(&[(0, 34, 99, "boot")]);
        assert_eq!(parse_entries(&array, &header).unwrap().len(), 1);
        let mut longer = array.clone();
        longer.extend_from_slice(&[0xff; 512]);
        assert_eq!(parse_entries(&longer, &header).unwrap().len(), 1);
        assert_eq!(
            parse_entries(&array[..511], &header),
            Err("entry array is 511 bytes but the header describes 512".to_string())
        );
    }

    // cargo-mutants: no real partition is one sector long.
    #[test]
    fn entries_are_numbered_by_slot_and_one_sector_is_a_partition_but_ending_before_the_start_is_not(
    ) {
        let (array, header) = array_of(&[(1, 100, 100, "one"), (3, 34, 99, "rootfs")]);
        let entries = parse_entries(&array, &header).unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.number, e.first_lba, e.last_lba, e.name.as_str()))
                .collect::<Vec<_>>(),
            [(2, 100, 100, "one"), (4, 34, 99, "rootfs")]
        );
        let (array, header) = array_of(&[(2, 100, 99, "")]);
        assert_eq!(
            parse_entries(&array, &header),
            Err("entry 3 ends at LBA 99, before its start LBA 100".to_string())
        );
    }
}
