//! U-Boot FIT images (`u-boot.itb`): a flattened device tree whose image nodes hold their data
//! inside the tree, or after it (`mkimage -E`: `data-offset` from the end of the tree, or
//! `data-position` from its start). rk-inject needs where the FIT ends, nothing more.

use std::io::{Read, Seek};

use super::layout::read_at;

pub const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Bounds on what is walked, so a hostile tree costs little.
const MAX_STRINGS: u64 = 64 * 1024;
const MAX_TOKENS: u32 = 100_000;
const MAX_DEPTH: usize = 64;
const MAX_NAME: usize = 256;

/// What rk-inject knows about a FIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// The tree's `totalsize`.
    pub tree_size: u64,
    /// Bytes from the FIT's start to the end of its last data, external or not.
    pub end: u64,
    /// Bytes of image data stored after the tree.
    pub external_bytes: u64,
}

#[derive(Default, Clone, Copy)]
struct NodeData {
    offset: Option<u64>,
    position: Option<u64>,
    size: Option<u64>,
}

/// Reads the FIT at `base` in `reader`; `available` is how many bytes exist from `base` on.
pub fn read<R: Read + Seek>(reader: &mut R, base: u64, available: u64) -> Result<Fit, String> {
    if available < HEADER_LEN as u64 {
        return Err(format!(
            "{available} bytes is too short for a device tree header"
        ));
    }
    let mut header = [0u8; HEADER_LEN];
    read_at(reader, base, &mut header).map_err(|e| e.message)?;
    let field = |i: usize| u64::from(be32(&header, i * 4));
    if be32(&header, 0) != FDT_MAGIC {
        let shown: Vec<String> = header[..4].iter().map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "no FIT: no device tree magic d0 0d fe ed (found {})",
            shown.join(" ")
        ));
    }
    let tree_size = field(1);
    let (off_struct, off_strings) = (field(2), field(3));
    let (size_strings, size_struct) = (field(8), field(9));
    let version = field(5);
    if tree_size < HEADER_LEN as u64 {
        return Err(format!(
            "device tree totalsize {tree_size} is below its header size"
        ));
    }
    if version < 17 {
        return Err(format!("device tree version {version} is older than 17"));
    }
    if off_struct.saturating_add(size_struct) > tree_size
        || off_strings.saturating_add(size_strings) > tree_size
    {
        return Err("device tree blocks lie outside its totalsize".to_string());
    }
    if tree_size > available {
        return Err(format!(
            "the device tree is cut short: totalsize {tree_size}, {available} bytes present"
        ));
    }
    if size_strings > MAX_STRINGS {
        return Err(format!(
            "device tree strings block of {size_strings} bytes is implausibly large"
        ));
    }
    let mut strings = vec![0u8; size_strings as usize];
    read_at(reader, base + off_strings, &mut strings).map_err(|e| e.message)?;

    let data_base = tree_size.div_ceil(4) * 4;
    let mut end = tree_size;
    let mut external_bytes = 0u64;
    let mut stack: Vec<NodeData> = Vec::new();
    let mut at = off_struct;
    let struct_end = off_struct + size_struct;
    let mut tokens = 0u32;
    loop {
        tokens += 1;
        if tokens > MAX_TOKENS {
            return Err(format!("device tree has more than {MAX_TOKENS} tokens"));
        }
        let token = read_u32(reader, base, &mut at, struct_end)?;
        match token {
            BEGIN_NODE => {
                skip_name(reader, base, &mut at, struct_end)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("device tree nests deeper than {MAX_DEPTH}"));
                }
                stack.push(NodeData::default());
            }
            END_NODE => {
                let node = stack
                    .pop()
                    .ok_or("device tree closes a node it never opened")?;
                if let Some(size) = node.size {
                    let start = match (node.position, node.offset) {
                        (Some(position), _) => Some(position),
                        (None, Some(offset)) => Some(data_base + offset),
                        (None, None) => None,
                    };
                    if let Some(start) = start {
                        end = end.max(start + size);
                        external_bytes += size;
                    }
                }
            }
            PROP => {
                let len = u64::from(read_u32(reader, base, &mut at, struct_end)?);
                let name_at = read_u32(reader, base, &mut at, struct_end)? as usize;
                let value_at = at;
                let padded = len.div_ceil(4) * 4;
                if value_at + padded > struct_end {
                    return Err("a device tree property runs past the structure block".to_string());
                }
                at += padded;
                let name = c_string(&strings, name_at);
                let slot = match name {
                    b"data-offset" | b"data-position" | b"data-size" if len == 4 => name,
                    _ => continue,
                };
                let mut raw = [0u8; 4];
                read_at(reader, base + value_at, &mut raw).map_err(|e| e.message)?;
                let value = Some(u64::from(u32::from_be_bytes(raw)));
                let Some(node) = stack.last_mut() else {
                    return Err("a device tree property lies outside any node".to_string());
                };
                match slot {
                    b"data-offset" => node.offset = value,
                    b"data-position" => node.position = value,
                    _ => node.size = value,
                }
            }
            NOP => {}
            END => break,
            other => return Err(format!("unknown device tree token {other:#x}")),
        }
    }
    if !stack.is_empty() {
        return Err("device tree ends with nodes still open".to_string());
    }
    Ok(Fit {
        tree_size,
        end,
        external_bytes,
    })
}

fn read_u32<R: Read + Seek>(
    reader: &mut R,
    base: u64,
    at: &mut u64,
    limit: u64,
) -> Result<u32, String> {
    if *at + 4 > limit {
        return Err("the device tree structure block ends mid-token".to_string());
    }
    let mut raw = [0u8; 4];
    read_at(reader, base + *at, &mut raw).map_err(|e| e.message)?;
    *at += 4;
    Ok(u32::from_be_bytes(raw))
}

fn skip_name<R: Read + Seek>(
    reader: &mut R,
    base: u64,
    at: &mut u64,
    limit: u64,
) -> Result<(), String> {
    for _ in 0..MAX_NAME / 4 {
        let word = read_u32(reader, base, at, limit)?.to_be_bytes();
        if word.contains(&0) {
            return Ok(());
        }
    }
    Err(format!(
        "a device tree node name is longer than {MAX_NAME} bytes"
    ))
}

fn c_string(strings: &[u8], at: usize) -> &[u8] {
    let tail = strings.get(at..).unwrap_or(&[]);
    let len = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    &tail[..len]
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
