//! Rockchip idbloader headers, as U-Boot's `mkimage -T rksd` writes them (tools/rkcommon.c) and
//! the BootROM reads them at sector 64.
//!
//! - RK35xx: a plain 2048-byte "RKNS" header (v2). It lists up to four stages (TPL, SPL) by
//!   sector offset and count, each with a digest, and a digest of the header itself.
//! - Older SoCs: a 512-byte header scrambled with RC4 under a fixed, public key, magic
//!   0x0FF0AA55 once unscrambled. It gives the stage sizes; the SoC family is the 4-byte tag
//!   ("RK33", …) at the start of the first stage. There is no digest.

use std::io::{Read, Seek};

use super::layout::read_at;
use super::sha256::Sha256;
use super::{Error, Result};

/// A SoC `--soc` accepts: its name as mkimage's `-n` spells it, the family tag, the header it needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Soc {
    pub name: &'static str,
    pub family: &'static str,
    pub v2: bool,
}

const fn soc(name: &'static str, family: &'static str, v2: bool) -> Soc {
    Soc { name, family, v2 }
}

/// The SoCs U-Boot's mkimage knows for `-T rksd`, with the tag and header version it writes.
pub const SOCS: &[Soc] = &[
    soc("px30", "RK33", false),
    soc("rk3036", "RK30", false),
    soc("rk3066", "RK30", false),
    soc("rk3128", "RK31", false),
    soc("rk3188", "RK31", false),
    soc("rk322x", "RK32", false),
    soc("rk3288", "RK32", false),
    soc("rk3308", "RK33", false),
    soc("rk3328", "RK32", false),
    soc("rk3368", "RK33", false),
    soc("rk3399", "RK33", false),
    soc("rk3506", "RK35", true),
    soc("rk3528", "RK35", true),
    soc("rk3568", "RK35", true),
    soc("rk3576", "RK35", true),
    soc("rk3588", "RK35", true),
    soc("rv1108", "RK11", false),
    soc("rv1126", "110B", false),
];

/// Looks a SoC up by name, ignoring case.
pub fn find_soc(name: &str) -> Option<&'static Soc> {
    SOCS.iter().find(|soc| soc.name.eq_ignore_ascii_case(name))
}

/// The names `--soc` accepts, comma-separated.
pub fn soc_names() -> String {
    SOCS.iter()
        .map(|soc| soc.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of the two header formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    RknsV2,
    Rc4V1,
}

impl HeaderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderKind::RknsV2 => "rkns-v2",
            HeaderKind::Rc4V1 => "rc4-v1",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            HeaderKind::RknsV2 => "RKNS v2 header",
            HeaderKind::Rc4V1 => "RC4-scrambled header (0x0FF0AA55)",
        }
    }
}

/// The digest an RKNS header declares in its boot flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashType {
    None,
    Sha256,
    /// Declared, not checked: U-Boot's mkimage never writes it.
    Sha512,
    Unknown(u32),
}

impl HashType {
    pub fn as_str(self) -> &'static str {
        match self {
            HashType::None => "none",
            HashType::Sha256 => "sha256",
            HashType::Sha512 => "sha512",
            HashType::Unknown(_) => "unknown",
        }
    }
}

/// One loader stage the header lists (TPL, SPL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 1-based, in header order.
    pub number: usize,
    /// Bytes from the start of the header.
    pub offset: u64,
    pub size: u64,
    /// SHA-256 the header declares for this stage (RKNS with sha256 only).
    pub sha256: Option<[u8; 32]>,
}

/// A parsed idbloader header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderHeader {
    pub kind: HeaderKind,
    /// "RK35" for RKNS v2; the tag of the first stage for v1 ("RK33", … or "RSAK" when signed).
    pub family: String,
    pub hash: HashType,
    /// Bytes of header the header digest covers, and the SHA-256 it declares.
    pub header_sha256: Option<(usize, [u8; 32])>,
    pub stages: Vec<Stage>,
    /// v1 only: the stages themselves are RC4-scrambled too.
    pub rc4_payload: bool,
    /// Bytes from the start of the header to the end of the last stage.
    pub end: u64,
}

pub const RKNS_MAGIC: &[u8; 4] = b"RKNS";
pub const RC4_MAGIC: u32 = 0x0ff0_aa55;
/// Size of the RKNS v2 header; also where v1 puts its first stage.
pub const HEADER_LEN: usize = 2048;
/// Bytes read from the start of a loader to parse its header: the v1 tag may sit up to 32 KiB in.
/// Reading more would change nothing but memory (the parsers look no further), so
/// .cargo/mutants.toml leaves out the mutant that makes this 16 MiB.
pub const HEAD_READ: usize = 32 * 1024 + 512;

const RC4_KEY: [u8; 16] = [124, 78, 3, 4, 85, 5, 9, 7, 45, 44, 123, 56, 23, 13, 23, 17];
const STAGES_AT: usize = 120;
const STAGE_LEN: usize = 88;
const MAX_V1_INIT_OFFSET: u16 = 64;
/// v1 without a separate boot stage declares init + 512 KiB as the combined size.
const V1_DEFAULT_BOOT_SECTORS: u64 = 1024;

/// Parses the header at the start of `head`; the reason is returned when there is none.
pub fn parse(head: &[u8]) -> std::result::Result<LoaderHeader, String> {
    if head.len() >= 4 && &head[..4] == RKNS_MAGIC {
        return parse_v2(head);
    }
    if head.len() >= 512 {
        let mut block = [0u8; 512];
        block.copy_from_slice(&head[..512]);
        rc4(&mut block);
        if u32::from_le_bytes([block[0], block[1], block[2], block[3]]) == RC4_MAGIC {
            return parse_v1(head, &block);
        }
    }
    let shown: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "neither the RKNS magic nor an RC4-scrambled 0x0FF0AA55 header (first bytes: {})",
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join(" ")
        }
    ))
}

fn parse_v2(head: &[u8]) -> std::result::Result<LoaderHeader, String> {
    if head.len() < HEADER_LEN {
        return Err(format!(
            "the RKNS header is cut short: {} of {HEADER_LEN} bytes",
            head.len()
        ));
    }
    let size_and_count = le32(head, 8);
    let count = (size_and_count >> 16) as usize;
    let digest_at = (size_and_count & 0xffff) as usize * 4;
    if count == 0 || count > 4 {
        return Err(format!(
            "the RKNS header lists {count} stages (1 to 4 are valid)"
        ));
    }
    let hash = match le32(head, 12) & 0xf {
        0 => HashType::None,
        1 => HashType::Sha256,
        2 => HashType::Sha512,
        other => HashType::Unknown(other),
    };
    let digest_len = match hash {
        HashType::Sha512 => 64,
        _ => 32,
    };
    if digest_at < STAGES_AT + 4 * STAGE_LEN || digest_at + digest_len > HEADER_LEN {
        return Err(format!(
            "the RKNS header puts its digest at byte {digest_at}, outside the header"
        ));
    }
    let mut stages = Vec::new();
    let mut end = HEADER_LEN as u64;
    for index in 0..count {
        let at = STAGES_AT + index * STAGE_LEN;
        let size_and_offset = le32(head, at);
        let sectors = u64::from(size_and_offset >> 16);
        let offset_sectors = u64::from(size_and_offset & 0xffff);
        if sectors == 0 {
            // mkimage lists an empty second stage when it was given no boot file.
            continue;
        }
        if offset_sectors < 4 {
            return Err(format!(
                "RKNS stage {} starts at sector {offset_sectors}, inside the header",
                index + 1
            ));
        }
        let sha256 = (hash == HashType::Sha256).then(|| {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&head[at + 24..at + 56]);
            digest
        });
        let stage = Stage {
            number: index + 1,
            offset: offset_sectors * 512,
            size: sectors * 512,
            sha256,
        };
        end = end.max(stage.offset + stage.size);
        stages.push(stage);
    }
    if stages.is_empty() {
        return Err("the RKNS header lists no stage with a size".to_string());
    }
    let header_sha256 = (hash == HashType::Sha256).then(|| {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&head[digest_at..digest_at + 32]);
        (digest_at, digest)
    });
    Ok(LoaderHeader {
        kind: HeaderKind::RknsV2,
        family: "RK35".to_string(),
        hash,
        header_sha256,
        stages,
        rc4_payload: false,
        end,
    })
}

fn parse_v1(head: &[u8], block: &[u8; 512]) -> std::result::Result<LoaderHeader, String> {
    let rc4_payload = le32(block, 8) == 0;
    let init_offset = u16::from_le_bytes([block[12], block[13]]);
    let init_sectors = u64::from(u16::from_le_bytes([block[506], block[507]]));
    let init_boot_sectors = u64::from(u16::from_le_bytes([block[508], block[509]]));
    if init_offset == 0 || init_offset > MAX_V1_INIT_OFFSET {
        return Err(format!(
            "the RC4 header puts the first stage at sector {init_offset} (1 to {MAX_V1_INIT_OFFSET} are valid)"
        ));
    }
    if init_sectors == 0 {
        return Err("the RC4 header gives the first stage a size of 0".to_string());
    }
    if init_boot_sectors < init_sectors {
        return Err(format!(
            "the RC4 header's combined size ({init_boot_sectors} sectors) is below its first stage ({init_sectors})"
        ));
    }
    let tag_at = usize::from(init_offset) * 512;
    if head.len() < tag_at + 4 {
        return Err(format!(
            "the loader is cut short before its SoC tag at byte {tag_at}"
        ));
    }
    let mut tag = [0u8; 4];
    tag.copy_from_slice(&head[tag_at..tag_at + 4]);
    if rc4_payload {
        // Each 512-byte block of a scrambled stage starts a fresh RC4 stream.
        rc4(&mut tag);
    }
    let family = String::from_utf8_lossy(&tag).into_owned();
    if family != "RSAK" && !SOCS.iter().any(|soc| !soc.v2 && soc.family == family) {
        return Err(format!(
            "the RC4 header is followed by an unknown SoC tag {:02x} {:02x} {:02x} {:02x} at byte {tag_at}",
            tag[0], tag[1], tag[2], tag[3]
        ));
    }
    let offset = tag_at as u64;
    let mut stages = vec![Stage {
        number: 1,
        offset,
        size: init_sectors * 512,
        sha256: None,
    }];
    let boot_sectors = init_boot_sectors - init_sectors;
    if boot_sectors > 0 && boot_sectors != V1_DEFAULT_BOOT_SECTORS {
        stages.push(Stage {
            number: 2,
            offset: offset + init_sectors * 512,
            size: boot_sectors * 512,
            sha256: None,
        });
    }
    let end = stages
        .iter()
        .map(|s| s.offset + s.size)
        .max()
        .unwrap_or(offset);
    Ok(LoaderHeader {
        kind: HeaderKind::Rc4V1,
        family,
        hash: HashType::None,
        header_sha256: None,
        stages,
        rc4_payload,
        end,
    })
}

impl LoaderHeader {
    /// Whether a loader with this header boots on `soc`.
    pub fn fits(&self, soc: &Soc) -> bool {
        match self.kind {
            HeaderKind::RknsV2 => soc.v2,
            HeaderKind::Rc4V1 => !soc.v2 && soc.family == self.family,
        }
    }

    /// The SoCs this header's family covers, comma-separated.
    pub fn socs(&self) -> String {
        let names: Vec<&str> = SOCS
            .iter()
            .filter(|soc| self.fits(soc))
            .map(|soc| soc.name)
            .collect();
        if names.is_empty() {
            "no SoC rk-inject knows".to_string()
        } else {
            names.join(", ")
        }
    }

    /// "RKNS v2 header, family RK35 (rk3506, …)".
    pub fn describe(&self) -> String {
        format!(
            "{}, family {} ({})",
            self.kind.describe(),
            self.family,
            self.socs()
        )
    }

    /// Why this header does not fit `soc`, in words.
    pub fn mismatch(&self, soc: &Soc) -> String {
        let wanted = if soc.v2 {
            "an RKNS v2 header".to_string()
        } else {
            format!("an RC4-scrambled header tagged {}", soc.family)
        };
        format!(
            "{soc} needs {wanted}, but this is an {}",
            self.describe(),
            soc = soc.name
        )
    }

    /// Checks the header's own digest against `head` (the first 2048 bytes). `None` when the
    /// header declares no SHA-256.
    pub fn header_digest_ok(&self, head: &[u8]) -> Option<bool> {
        let (covered, expected) = self.header_sha256?;
        Some(head.len() >= covered && Sha256::digest(&head[..covered]) == expected)
    }

    /// Checks each stage's SHA-256 by streaming it from `reader`, where the header starts at
    /// `base`. Returns the numbers of the stages that do not match.
    pub fn stage_digest_mismatches<R: Read + Seek>(
        &self,
        reader: &mut R,
        base: u64,
    ) -> Result<Vec<usize>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut bad = Vec::new();
        for stage in &self.stages {
            let Some(expected) = stage.sha256 else {
                continue;
            };
            let mut hasher = Sha256::new();
            let mut done = 0u64;
            while done < stage.size {
                let n = (stage.size - done).min(buf.len() as u64) as usize;
                let at = base.saturating_add(stage.offset + done);
                let got = read_at(reader, at, &mut buf[..n])?;
                if got < n {
                    return Err(Error::bad_payload(format!(
                        "stage {} is cut short at byte {}",
                        stage.number,
                        at + got as u64
                    )));
                }
                hasher.update(&buf[..n]);
                done += n as u64;
            }
            if hasher.finish() != expected {
                bad.push(stage.number);
            }
        }
        Ok(bad)
    }
}

/// RC4 with the key every Rockchip BootROM uses for these headers, applied in place.
pub fn rc4(data: &mut [u8]) {
    let mut state = [0u8; 256];
    for (i, slot) in state.iter_mut().enumerate() {
        *slot = i as u8;
    }
    let mut j = 0u8;
    for i in 0..256 {
        j = j
            .wrapping_add(state[i])
            .wrapping_add(RC4_KEY[i % RC4_KEY.len()]);
        state.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    for byte in data.iter_mut() {
        i = i.wrapping_add(1);
        j = j.wrapping_add(state[usize::from(i)]);
        state.swap(usize::from(i), usize::from(j));
        let k = state[usize::from(state[usize::from(i)].wrapping_add(state[usize::from(j)]))];
        *byte ^= k;
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn set32(head: &mut [u8], at: usize, value: u32) {
        head[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn set16(head: &mut [u8], at: usize, value: u16) {
        head[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets RKNS stage `index` (0-based) to `sectors` at `offset` sectors, with digest bytes
    /// `0x10 + index`.
    fn set_stage(head: &mut [u8], index: usize, sectors: u32, offset: u32) {
        let at = STAGES_AT + index * STAGE_LEN;
        set32(head, at, (sectors << 16) | offset);
        head[at + 24..at + 56].fill(0x10 + index as u8);
    }

    /// An RKNS header the way mkimage writes one for two stages with SHA-256: `count` stages
    /// listed, the digest at word `digest_word`, boot flag `flag`; stage 1 is 98 sectors at 4,
    /// stage 2 is 293 sectors at 102, the header digest bytes are 0xdd.
    fn rkns(count: u32, digest_word: u32, flag: u32) -> Vec<u8> {
        let mut head = vec![0u8; HEADER_LEN];
        head[..4].copy_from_slice(RKNS_MAGIC);
        set32(&mut head, 8, (count << 16) | digest_word);
        set32(&mut head, 12, flag);
        set_stage(&mut head, 0, 98, 4);
        set_stage(&mut head, 1, 293, 102);
        let digest_at = digest_word as usize * 4;
        if (STAGES_AT + 4 * STAGE_LEN..=HEADER_LEN - 32).contains(&digest_at) {
            head[digest_at..digest_at + 32].fill(0xdd);
        }
        head
    }

    fn stage(number: usize, offset_sectors: u64, sectors: u64, digest: Option<u8>) -> Stage {
        Stage {
            number,
            offset: offset_sectors * 512,
            size: sectors * 512,
            sha256: digest.map(|byte| [byte; 32]),
        }
    }

    // cargo-mutants: the integration tests' loaders are longer than one header.
    #[test]
    fn an_rkns_header_of_exactly_2048_bytes_parses_and_2047_bytes_are_cut_short() {
        let head = rkns(2, 118, 1);
        assert_eq!(
            parse(&head),
            Ok(LoaderHeader {
                kind: HeaderKind::RknsV2,
                family: "RK35".to_string(),
                hash: HashType::Sha256,
                header_sha256: Some((472, [0xdd; 32])),
                stages: vec![stage(1, 4, 98, Some(0x10)), stage(2, 102, 293, Some(0x11))],
                rc4_payload: false,
                end: 395 * 512,
            })
        );
        assert_eq!(
            parse(&head[..2047]),
            Err("the RKNS header is cut short: 2047 of 2048 bytes".to_string())
        );
        assert_eq!(
            parse(b"RKNS"),
            Err("the RKNS header is cut short: 4 of 2048 bytes".to_string())
        );
    }

    #[test]
    fn without_a_magic_the_first_bytes_are_shown() {
        let neither = |shown: &str| {
            Err(format!(
                "neither the RKNS magic nor an RC4-scrambled 0x0FF0AA55 header (first bytes: {shown})"
            ))
        };
        assert_eq!(parse(&[]), neither("none"));
        assert_eq!(parse(b"RKN"), neither("52 4b 4e"));
        assert_eq!(parse(&[0xab; 4096]), neither("ab ab ab ab"));
        let mut bare = rkns(2, 118, 1);
        bare[3] = b'n';
        assert_eq!(parse(&bare), neither("52 4b 4e 6e"));
    }

    // cargo-mutants: mkimage lists two stages.
    #[test]
    fn an_rkns_header_lists_1_to_4_stages() {
        let mut one = rkns(1, 118, 0);
        set_stage(&mut one, 1, 0, 0);
        let header = parse(&one).unwrap();
        assert_eq!(header.stages, [stage(1, 4, 98, None)]);
        assert_eq!(header.end, 102 * 512);
        let mut four = rkns(4, 118, 0);
        set_stage(&mut four, 2, 1, 395);
        set_stage(&mut four, 3, 2, 396);
        assert_eq!(parse(&four).unwrap().stages.len(), 4);
        for count in [0, 5, 0xffff] {
            assert_eq!(
                parse(&rkns(count, 118, 0)),
                Err(format!(
                    "the RKNS header lists {count} stages (1 to 4 are valid)"
                ))
            );
        }
    }

    // cargo-mutants: mkimage always declares SHA-256.
    #[test]
    fn the_low_four_bits_of_the_boot_flag_name_the_digest() {
        for (flag, hash) in [
            (0, HashType::None),
            (1, HashType::Sha256),
            (0x71, HashType::Sha256),
            (2, HashType::Sha512),
            (3, HashType::Unknown(3)),
            (0xf, HashType::Unknown(15)),
        ] {
            let header = parse(&rkns(2, 118, flag)).unwrap();
            assert_eq!(header.hash, hash, "flag {flag:#x}");
            // Only a SHA-256 is read, for the header and for each stage.
            let sha256 = hash == HashType::Sha256;
            assert_eq!(header.header_sha256.is_some(), sha256, "flag {flag:#x}");
            assert_eq!(header.stages[1].sha256.is_some(), sha256, "flag {flag:#x}");
        }
    }

    #[test]
    fn the_digest_sits_after_the_four_stage_slots_and_ends_inside_the_header() {
        // 120 + 4 x 88 = 472 is the first byte after the stage slots; a SHA-256 may end at 2048,
        // a SHA-512 too.
        for (word, flag) in [(118, 1), (504, 1), (504, 0), (496, 2)] {
            assert!(
                parse(&rkns(2, word, flag)).is_ok(),
                "word {word}, flag {flag}"
            );
        }
        assert_eq!(
            parse(&rkns(2, 504, 1)).unwrap().header_sha256,
            Some((2016, [0xdd; 32]))
        );
        for (word, flag) in [(0, 1), (117, 1), (117, 2), (505, 1), (505, 0), (497, 2)] {
            assert_eq!(
                parse(&rkns(2, word, flag)),
                Err(format!(
                    "the RKNS header puts its digest at byte {}, outside the header",
                    word * 4
                )),
                "flag {flag}"
            );
        }
    }

    // cargo-mutants: mkimage's stages start right after the header and are never empty.
    #[test]
    fn rkns_stages_start_after_the_header_and_empty_ones_are_skipped() {
        let mut head = rkns(3, 118, 1);
        // Stage 1 empty, stage 2 at sector 4 for 1 sector, stage 3 ends before stage 2.
        set_stage(&mut head, 0, 0, 0);
        set_stage(&mut head, 1, 1, 4);
        set_stage(&mut head, 2, 3, 5);
        let mut later = head.clone();
        set_stage(&mut later, 1, 200, 10);
        let header = parse(&later).unwrap();
        assert_eq!(
            header.stages,
            [stage(2, 10, 200, Some(0x11)), stage(3, 5, 3, Some(0x12))]
        );
        assert_eq!(header.end, 210 * 512);
        assert_eq!(parse(&head).unwrap().end, 8 * 512);
        set_stage(&mut head, 1, 1, 3);
        assert_eq!(
            parse(&head),
            Err("RKNS stage 2 starts at sector 3, inside the header".to_string())
        );
        for index in 0..3 {
            set_stage(&mut head, index, 0, 9);
        }
        assert_eq!(
            parse(&head),
            Err("the RKNS header lists no stage with a size".to_string())
        );
    }

    /// An RC4-scrambled header block and the SoC tag after it, as mkimage writes them: the first
    /// stage `init` sectors at sector `offset`, the combined size `combined` sectors, the stages
    /// scrambled or not. The loader ends right after the tag.
    fn rc4_loader(
        offset: u16,
        init: u16,
        combined: u16,
        tag: &[u8; 4],
        scrambled: bool,
    ) -> Vec<u8> {
        let mut block = [0u8; 512];
        set32(&mut block, 0, RC4_MAGIC);
        set32(&mut block, 8, u32::from(!scrambled));
        set16(&mut block, 12, offset);
        set16(&mut block, 506, init);
        set16(&mut block, 508, combined);
        rc4(&mut block);
        let tag_at = usize::from(offset) * 512;
        let mut head = vec![0u8; (tag_at + 4).max(512)];
        head[..512].copy_from_slice(&block);
        let mut tag = *tag;
        if scrambled {
            rc4(&mut tag);
        }
        if tag_at >= 512 {
            head[tag_at..tag_at + 4].copy_from_slice(&tag);
        }
        head
    }

    #[test]
    fn an_rc4_header_gives_the_first_stage_and_its_tag_names_the_family() {
        for scrambled in [true, false] {
            assert_eq!(
                parse(&rc4_loader(4, 80, 80 + 1024, b"RK33", scrambled)),
                Ok(LoaderHeader {
                    kind: HeaderKind::Rc4V1,
                    family: "RK33".to_string(),
                    hash: HashType::None,
                    header_sha256: None,
                    stages: vec![stage(1, 4, 80, None)],
                    rc4_payload: scrambled,
                    end: 84 * 512,
                })
            );
        }
    }

    // cargo-mutants: mkimage puts the first stage at sector 4, well inside HEAD_READ.
    #[test]
    fn an_rc4_header_puts_its_first_stage_at_sector_1_to_64_and_head_read_reaches_its_tag() {
        for offset in [1, 64] {
            let loader = rc4_loader(offset, 80, 80, b"RK33", true);
            // As much as rk-inject reads of a loader.
            let head = &loader[..HEAD_READ.min(loader.len())];
            let header = parse(head).unwrap();
            assert_eq!(header.stages, [stage(1, offset.into(), 80, None)]);
        }
        for offset in [0, 65] {
            assert_eq!(
                parse(&rc4_loader(offset, 80, 80, b"RK33", true)),
                Err(format!(
                    "the RC4 header puts the first stage at sector {offset} (1 to 64 are valid)"
                ))
            );
        }
    }

    #[test]
    fn the_first_rc4_stage_has_a_size_and_the_combined_size_is_not_below_it() {
        assert_eq!(
            parse(&rc4_loader(4, 0, 1024, b"RK33", true)),
            Err("the RC4 header gives the first stage a size of 0".to_string())
        );
        assert!(parse(&rc4_loader(4, 1, 1, b"RK33", true)).is_ok());
        assert_eq!(
            parse(&rc4_loader(4, 80, 79, b"RK33", true)),
            Err(
                "the RC4 header's combined size (79 sectors) is below its first stage (80)"
                    .to_string()
            )
        );
    }

    // cargo-mutants: mkimage was given two stages, or one (then the combined size is the
    // first stage plus 1024 sectors).
    #[test]
    fn a_second_rc4_stage_is_listed_unless_it_is_empty_or_the_default_512_kib() {
        for boot in [0, 1024] {
            let header = parse(&rc4_loader(4, 80, 80 + boot, b"RK33", true)).unwrap();
            assert_eq!(header.stages, [stage(1, 4, 80, None)], "{boot}");
            assert_eq!(header.end, 84 * 512);
        }
        for boot in [1, 1023, 1025] {
            let header = parse(&rc4_loader(4, 80, 80 + boot, b"RK33", true)).unwrap();
            let boot = u64::from(boot);
            assert_eq!(
                header.stages,
                [stage(1, 4, 80, None), stage(2, 84, boot, None)]
            );
            assert_eq!(header.end, (84 + boot) * 512);
        }
    }

    #[test]
    fn the_soc_tag_must_be_read_whole_and_name_an_rc4_family_or_a_signed_loader() {
        let loader = rc4_loader(4, 80, 80, b"RK33", true);
        for short in [&loader[..2051], &loader[..512]] {
            assert_eq!(
                parse(short),
                Err("the loader is cut short before its SoC tag at byte 2048".to_string())
            );
        }
        for tag in [b"RK30", b"RK31", b"RK32", b"RK11", b"110B", b"RSAK"] {
            let header = parse(&rc4_loader(4, 80, 80, tag, true)).unwrap();
            assert_eq!(header.family.as_bytes(), tag);
        }
        assert_eq!(
            parse(&rc4_loader(4, 80, 80, b"RK35", true)),
            Err(
                "the RC4 header is followed by an unknown SoC tag 52 4b 33 35 at byte 2048"
                    .to_string()
            )
        );
        // A plain tag where the header says the stages are scrambled is read scrambled.
        let mut plain = loader.clone();
        plain[2048..].copy_from_slice(b"RK33");
        assert!(parse(&plain).unwrap_err().contains("unknown SoC tag"));
    }

    #[test]
    fn an_rkns_header_fits_the_rk35_socs_and_an_rc4_header_those_of_its_family() {
        let soc = |name| find_soc(name).unwrap();
        let rkns = parse(&rkns(2, 118, 1)).unwrap();
        let rk33 = parse(&rc4_loader(4, 80, 80, b"RK33", true)).unwrap();
        let signed = parse(&rc4_loader(4, 80, 80, b"RSAK", true)).unwrap();
        assert!(rkns.fits(soc("rk3588")) && !rkns.fits(soc("rk3399")));
        assert!(rk33.fits(soc("rk3399")) && rk33.fits(soc("px30")));
        assert!(!rk33.fits(soc("rk3288")) && !rk33.fits(soc("rk3588")));
        assert_eq!(rkns.socs(), "rk3506, rk3528, rk3568, rk3576, rk3588");
        assert_eq!(rk33.socs(), "px30, rk3308, rk3368, rk3399");
        assert_eq!(signed.socs(), "no SoC rk-inject knows");
        assert_eq!(
            rkns.mismatch(soc("rk3288")),
            "rk3288 needs an RC4-scrambled header tagged RK32, but this is an RKNS v2 header, \
             family RK35 (rk3506, rk3528, rk3568, rk3576, rk3588)"
        );
        assert_eq!(
            rk33.mismatch(soc("rk3568")),
            "rk3568 needs an RKNS v2 header, but this is an RC4-scrambled header (0x0FF0AA55), \
             family RK33 (px30, rk3308, rk3368, rk3399)"
        );
        assert_eq!(find_soc("RK3588"), Some(soc("rk3588")));
        assert_eq!(find_soc("rk35"), None);
        assert!(soc_names().starts_with("px30, rk3036, "));
        assert!(soc_names().ends_with(", rv1108, rv1126"));
    }

    #[test]
    fn the_header_digest_covers_the_bytes_before_it_and_a_short_head_does_not_match() {
        let mut head = rkns(2, 118, 1);
        let digest = Sha256::digest(&head[..472]);
        head[472..504].copy_from_slice(&digest);
        let header = parse(&head).unwrap();
        assert_eq!(header.header_digest_ok(&head), Some(true));
        assert_eq!(header.header_digest_ok(&head[..472]), Some(true));
        assert_eq!(header.header_digest_ok(&head[..471]), Some(false));
        head[471] ^= 1;
        assert_eq!(header.header_digest_ok(&head), Some(false));
        assert_eq!(
            parse(&rkns(2, 118, 0)).unwrap().header_digest_ok(&head),
            None
        );
    }

    // cargo-mutants: the integration tests' stages are whole and their digests right.
    #[test]
    fn each_stage_is_summed_whole_from_where_the_header_sits() {
        // Junk before the header; stage 2 (293 sectors) is longer than one 64 KiB read.
        let base = 1000;
        let mut disk: Vec<u8> = (0..base + 395 * 512).map(|i| (i * 7 % 251) as u8).collect();
        let mut head = rkns(2, 118, 1);
        for (index, (offset, sectors)) in [(4, 98), (102, 293)].into_iter().enumerate() {
            let at = base + offset * 512;
            let digest = Sha256::digest(&disk[at..at + sectors * 512]);
            let slot = STAGES_AT + index * STAGE_LEN;
            head[slot + 24..slot + 56].copy_from_slice(&digest);
        }
        disk[base..base + HEADER_LEN].copy_from_slice(&head);
        let header = parse(&head).unwrap();
        let check =
            |disk: &[u8]| header.stage_digest_mismatches(&mut Cursor::new(disk), base as u64);
        assert_eq!(check(&disk), Ok(vec![]));
        let mut last = disk.clone();
        *last.last_mut().unwrap() ^= 1;
        assert_eq!(check(&last), Ok(vec![2]));
        let mut first = last.clone();
        first[base + 4 * 512] ^= 1;
        assert_eq!(check(&first), Ok(vec![1, 2]));
        assert_eq!(
            check(&disk[..disk.len() - 1]),
            Err(Error::bad_payload(format!(
                "stage 2 is cut short at byte {}",
                disk.len() - 1
            )))
        );
        let unsummed = parse(&rkns(2, 118, 0)).unwrap();
        assert_eq!(
            unsummed.stage_digest_mismatches(&mut Cursor::new(&first), base as u64),
            Ok(vec![])
        );
    }
}
