//! File system and volume signatures at the start of an image: a volume that starts at byte 0
//! spans the loader's sectors, so rk-inject refuses to write into it whatever partition table
//! may also be there.
//!
//! Magic offsets follow util-linux's libblkid (libblkid/src/superblocks/*.c: exfat, ntfs, f2fs,
//! vfat, ext, btrfs, xfs, luks, lvm, swap, iso9660, udf, squashfs, linux_raid, bitlocker, jfs,
//! reiserfs, bcache). Only magics of four bytes or more are used, apart from ext's two (which
//! libblkid uses alone too), so loader bytes from an earlier run cannot pass for a volume.

/// One signature: what it is, the byte offset of its magic, and the magic.
struct Magic {
    name: &'static str,
    offset: usize,
    magic: &'static [u8],
}

const fn m(name: &'static str, offset: usize, magic: &'static [u8]) -> Magic {
    Magic {
        name,
        offset,
        magic,
    }
}

const MAGICS: &[Magic] = &[
    m("exFAT", 3, b"EXFAT   "),
    m("NTFS", 3, b"NTFS    "),
    m("BitLocker", 3, b"-FVE-FS-"),
    m("F2FS", 0x400, b"\x10\x20\xf5\xf2"),
    m("ext2/3/4", 0x438, b"\x53\xef"),
    m("XFS", 0, b"XFSB"),
    m("btrfs", 0x10040, b"_BHRfS_M"),
    m("LUKS", 0, b"LUKS\xba\xbe"),
    // LUKS2's second header copy, found when the first was wiped.
    m("LUKS2", 0x4000, b"SKUL\xba\xbe"),
    m("LUKS2", 0x8000, b"SKUL\xba\xbe"),
    m("LUKS2", 0x10000, b"SKUL\xba\xbe"),
    m("LVM2", 0x018, b"LVM2 001"),
    m("LVM2", 0x218, b"LVM2 001"),
    m("LVM2", 0x418, b"LVM2 001"),
    m("LVM2", 0x618, b"LVM2 001"),
    m("Linux swap", 0xff6, b"SWAPSPACE2"),
    m("Linux swap", 0xff6, b"SWAP-SPACE"),
    m("Linux swap", 0x1ff6, b"SWAPSPACE2"),
    m("Linux swap", 0x3ff6, b"SWAPSPACE2"),
    m("Linux swap", 0x7ff6, b"SWAPSPACE2"),
    m("Linux swap", 0xfff6, b"SWAPSPACE2"),
    m("ISO 9660", 0x8001, b"CD001"),
    m("UDF", 0x8001, b"BEA01"),
    m("squashfs", 0, b"hsqs"),
    m("squashfs", 0, b"sqsh"),
    m("Linux RAID (md 1.1)", 0, b"\xfc\x4e\x2b\xa9"),
    m("Linux RAID (md 1.2)", 0x1000, b"\xfc\x4e\x2b\xa9"),
    m("JFS", 0x8000, b"JFS1"),
    m("ReiserFS", 0x10034, b"ReIsEr"),
    m(
        "bcache",
        0x1018,
        b"\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81",
    ),
];

/// Bytes from the start of the image that [`volume_at_start`] looks at.
pub const SCANNED: usize = 0x10040 + 8;

/// The volume that starts at byte 0 of `head` (the image's first bytes): its kind, and the
/// byte offset of the signature that says so.
pub fn volume_at_start(head: &[u8]) -> Option<(&'static str, usize)> {
    if let Some(fat) = fat_boot_sector(head) {
        return Some((fat, 0));
    }
    MAGICS
        .iter()
        .find(|magic| head.get(magic.offset..magic.offset + magic.magic.len()) == Some(magic.magic))
        .map(|magic| (magic.name, magic.offset))
}

/// A FAT12/16/32 boot sector at byte 0: a jump, a sector size, "FAT" in the label field of a
/// FAT12/16 or FAT32 BPB and the 55 AA boot signature (which would otherwise pass for an MBR).
pub fn fat_boot_sector(head: &[u8]) -> Option<&'static str> {
    if head.len() < 512 || head[510] != 0x55 || head[511] != 0xaa {
        return None;
    }
    let jump = (head[0] == 0xeb && head[2] == 0x90) || head[0] == 0xe9;
    let bytes_per_sector = u16::from_le_bytes([head[11], head[12]]);
    let fat_label = &head[54..57] == b"FAT" || &head[82..85] == b"FAT";
    (jump && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) && fat_label).then_some("FAT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_magic_is_found_where_it_is_and_only_there() {
        for magic in MAGICS {
            let mut head = vec![0u8; SCANNED];
            head[magic.offset..magic.offset + magic.magic.len()].copy_from_slice(magic.magic);
            assert_eq!(volume_at_start(&head), Some((magic.name, magic.offset)));
            let mut shifted = vec![0u8; SCANNED + 1];
            shifted[magic.offset + 1..magic.offset + 1 + magic.magic.len()]
                .copy_from_slice(magic.magic);
            assert_eq!(volume_at_start(&shifted), None, "{}", magic.name);
        }
        assert_eq!(volume_at_start(&vec![0u8; SCANNED]), None);
        assert_eq!(volume_at_start(&[]), None);
    }

    // cargo-mutants: the integration tests' FAT images (mkfs.vfat's) pass every check at once;
    // this takes the checks one at a time.
    #[test]
    fn a_fat_boot_sector_needs_a_jump_a_sector_size_a_fat_label_and_both_signature_bytes() {
        let mut fat16 = vec![0u8; 512];
        fat16[..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
        fat16[11..13].copy_from_slice(&512u16.to_le_bytes());
        fat16[54..57].copy_from_slice(b"FAT");
        fat16[510..].copy_from_slice(&[0x55, 0xaa]);
        // The other jump, and the FAT32 BPB's label field.
        let mut fat32 = fat16.clone();
        fat32[..3].copy_from_slice(&[0xe9, 0x00, 0x00]);
        fat32[54..57].fill(0);
        fat32[82..85].copy_from_slice(b"FAT");
        // Exactly one sector is enough.
        assert_eq!(fat_boot_sector(&fat16), Some("FAT"));
        assert_eq!(fat_boot_sector(&fat32), Some("FAT"));
        let without = |sector: &[u8], change: &dyn Fn(&mut Vec<u8>)| {
            let mut sector = sector.to_vec();
            change(&mut sector);
            fat_boot_sector(&sector)
        };
        assert_eq!(without(&fat16, &|s| s[510] = 0), None, "no 0x55");
        assert_eq!(without(&fat16, &|s| s[511] = 0), None, "no 0xaa");
        assert_eq!(without(&fat16, &|s| s.truncate(511)), None, "short");
        assert_eq!(without(&fat16, &|s| s[0] = 0), None, "no jump");
        assert_eq!(without(&fat16, &|s| s[2] = 0), None, "0xeb without 0x90");
        assert_eq!(without(&fat32, &|s| s[0] = 0x90), None, "no jump");
        assert_eq!(without(&fat16, &|s| s[12] = 0x03), None, "768-byte sectors");
        assert_eq!(without(&fat16, &|s| s[54..57].fill(0)), None, "no label");
        assert_eq!(without(&fat32, &|s| s[82..85].fill(0)), None, "no label");
    }
}
