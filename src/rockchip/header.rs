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
