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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A flattened device tree as `dtc` lays one out: header, structure block, strings block.
    #[derive(Default)]
    struct Tree {
        structure: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Tree {
        fn token(mut self, token: u32) -> Self {
            self.structure.extend(token.to_be_bytes());
            self
        }

        /// Zeros to the next word boundary.
        fn aligned(mut self) -> Self {
            while !self.structure.len().is_multiple_of(4) {
                self.structure.push(0);
            }
            self
        }

        /// A node named `name`, NUL-terminated and padded to a word.
        fn begin(self, name: &str) -> Self {
            let mut tree = self.token(BEGIN_NODE);
            tree.structure.extend(name.as_bytes());
            tree.structure.push(0);
            tree.aligned()
        }

        fn prop(self, name: &str, value: &[u8]) -> Self {
            let name_at = self.strings.len() as u32;
            let mut tree = self.token(PROP).token(value.len() as u32).token(name_at);
            tree.strings.extend(name.as_bytes());
            tree.strings.push(0);
            tree.structure.extend(value);
            tree.aligned()
        }

        fn prop_u32(self, name: &str, value: u32) -> Self {
            self.prop(name, &value.to_be_bytes())
        }

        /// A FIT image node whose data lies after the tree.
        fn external(self, name: &str, place: &str, at: u32, size: u32) -> Self {
            self.begin(name)
                .prop_u32(place, at)
                .prop_u32("data-size", size)
                .token(END_NODE)
        }

        /// The whole tree: header, then the structure block, then the strings block, with
        /// `totalsize` their sum.
        fn bytes(&self) -> Vec<u8> {
            let off_struct = HEADER_LEN as u32;
            let off_strings = off_struct + self.structure.len() as u32;
            let total = off_strings + self.strings.len() as u32;
            let mut out = Vec::new();
            for field in [
                FDT_MAGIC,
                total,
                off_struct,
                off_strings,
                0, // off_mem_rsvmap
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structure.len() as u32,
            ] {
                out.extend(field.to_be_bytes());
            }
            out.extend(&self.structure);
            out.extend(&self.strings);
            out
        }
    }

    /// A root node holding `images`, then END.
    fn fit(images: impl FnOnce(Tree) -> Tree) -> Tree {
        images(Tree::default().begin("")).token(END_NODE).token(END)
    }

    fn set(bytes: &mut [u8], field: usize, value: u32) {
        bytes[field * 4..field * 4 + 4].copy_from_slice(&value.to_be_bytes());
    }

    fn get(bytes: &[u8], field: usize) -> u32 {
        be32(bytes, field * 4)
    }

    /// `bytes` read as a FIT, with `available` bytes present (the cursor holds just those).
    fn read_bytes(bytes: &[u8], available: usize) -> Result<Fit, String> {
        read(&mut Cursor::new(&bytes[..available]), 0, available as u64)
    }

    fn read_all(bytes: &[u8]) -> Result<Fit, String> {
        read_bytes(bytes, bytes.len())
    }

    #[test]
    fn the_end_is_the_last_byte_of_data_placed_by_offset_or_by_position() {
        let tree = fit(|t| {
            t.external("uboot", "data-offset", 0, 1000)
                .external("atf", "data-offset", 1000, 24)
                .external("fdt", "data-position", 9000, 100)
        });
        let bytes = tree.bytes();
        let tree_size = bytes.len() as u64;
        // data-offset counts from the end of the tree rounded up to a word.
        let data_base = tree_size.div_ceil(4) * 4;
        assert_eq!(
            read_all(&bytes),
            Ok(Fit {
                tree_size,
                end: (data_base + 1024).max(9100),
                external_bytes: 1124,
            })
        );
        let offset_last = fit(|t| {
            t.external("fdt", "data-position", 100, 10)
                .external("uboot", "data-offset", 5000, 10)
        })
        .bytes();
        let data_base = (offset_last.len() as u64).div_ceil(4) * 4;
        assert_eq!(read_all(&offset_last).unwrap().end, data_base + 5010);
    }

    #[test]
    fn a_data_property_that_is_not_one_word_is_not_read() {
        let bytes = fit(|t| {
            t.begin("uboot")
                .prop("data-size", &[0, 0, 1, 0, 0, 0, 0, 0])
                .prop_u32("data-offset", 0)
                .token(END_NODE)
        })
        .bytes();
        let tree_size = bytes.len() as u64;
        assert_eq!(
            read_all(&bytes),
            Ok(Fit {
                tree_size,
                end: tree_size,
                external_bytes: 0,
            })
        );
    }

    #[test]
    fn the_header_needs_40_bytes_present() {
        let bytes = fit(|t| t).bytes();
        assert_eq!(
            read_bytes(&bytes, 39),
            Err("39 bytes is too short for a device tree header".to_string())
        );
        // 40 are enough for the header; the tree then says it is longer.
        assert_eq!(
            read_bytes(&bytes, 40),
            Err(format!(
                "the device tree is cut short: totalsize {}, 40 bytes present",
                bytes.len()
            ))
        );
        assert!(read_bytes(&bytes, bytes.len()).is_ok());
        assert_eq!(
            read_bytes(&bytes, bytes.len() - 1),
            Err(format!(
                "the device tree is cut short: totalsize {}, {} bytes present",
                bytes.len(),
                bytes.len() - 1
            ))
        );
    }

    #[test]
    fn a_tree_of_40_bytes_is_no_smaller_than_its_header_but_has_no_structure() {
        let mut bytes = vec![0; 40];
        for (field, value) in [(0, FDT_MAGIC), (1, 40), (2, 40), (3, 40), (5, 17)] {
            set(&mut bytes, field, value);
        }
        assert_eq!(
            read_all(&bytes),
            Err("the device tree structure block ends mid-token".to_string())
        );
        set(&mut bytes, 1, 39);
        assert_eq!(
            read_all(&bytes),
            Err("device tree totalsize 39 is below its header size".to_string())
        );
    }

    #[test]
    fn versions_before_17_are_refused() {
        let mut bytes = fit(|t| t).bytes();
        for (version, ok) in [(16, false), (17, true), (18, true)] {
            set(&mut bytes, 5, version);
            assert_eq!(read_all(&bytes).is_ok(), ok, "version {version}");
        }
        set(&mut bytes, 5, 16);
        assert_eq!(
            read_all(&bytes),
            Err("device tree version 16 is older than 17".to_string())
        );
    }

    #[test]
    fn each_block_must_end_within_totalsize() {
        let outside = Err("device tree blocks lie outside its totalsize".to_string());
        let bytes = fit(|t| t.external("uboot", "data-offset", 0, 4)).bytes();
        // bytes() puts the strings block last, ending at totalsize: accepted.
        assert!(read_all(&bytes).is_ok());
        let mut longer_strings = bytes.clone();
        set(&mut longer_strings, 8, get(&bytes, 8) + 1);
        assert_eq!(read_all(&longer_strings), outside);
        // The structure block ending at totalsize (the strings block moved before it).
        let size_struct = get(&bytes, 9);
        let size_strings = get(&bytes, 8);
        let mut swapped = bytes[..40].to_vec();
        swapped.extend(&bytes[40 + size_struct as usize..]);
        swapped.extend(&bytes[40..40 + size_struct as usize]);
        set(&mut swapped, 3, 40);
        set(&mut swapped, 2, 40 + size_strings);
        assert!(read_all(&swapped).is_ok());
        set(&mut swapped, 9, size_struct + 1);
        assert_eq!(read_all(&swapped), outside);
    }

    #[test]
    fn a_strings_block_of_64_kib_is_read_and_a_larger_one_is_refused() {
        let padded = |extra: usize| {
            let mut tree = fit(|t| t.external("uboot", "data-offset", 0, 4));
            tree.strings.resize(64 * 1024 + extra, 0);
            tree.bytes()
        };
        assert!(read_all(&padded(0)).is_ok());
        assert_eq!(
            read_all(&padded(1)),
            Err("device tree strings block of 65537 bytes is implausibly large".to_string())
        );
    }

    #[test]
    fn a_structure_block_cut_short_ends_mid_token_not_in_the_strings_after_it() {
        let mut tree = fit(|t| t.external("uboot", "data-offset", 0, 4));
        // Drop END: the structure block now ends right after the root's END_NODE.
        tree.structure.truncate(tree.structure.len() - 4);
        tree.strings.extend(END.to_be_bytes());
        assert_eq!(
            read_all(&tree.bytes()),
            Err("the device tree structure block ends mid-token".to_string())
        );
    }

    #[test]
    fn a_property_must_end_within_the_structure_block() {
        let tree = Tree::default().begin("").prop_u32("data-size", 4);
        // Cut right after the property's value: the property fits, the next token does not.
        assert_eq!(
            read_all(&tree.bytes()),
            Err("the device tree structure block ends mid-token".to_string())
        );
        let mut past = tree.bytes();
        // The property says it is 8 bytes long; 4 are there.
        let len_at = 40 + 8 + 4;
        past[len_at..len_at + 4].copy_from_slice(&8u32.to_be_bytes());
        assert_eq!(
            read_all(&past),
            Err("a device tree property runs past the structure block".to_string())
        );
    }

    #[test]
    fn a_tree_of_100000_tokens_is_read_and_a_longer_one_is_refused() {
        // The root's BEGIN_NODE and END_NODE, END, and NOPs to make up the count.
        let tokens = |count: u32| {
            let mut tree = Tree::default().begin("");
            for _ in 0..count - 3 {
                tree = tree.token(NOP);
            }
            tree.token(END_NODE).token(END).bytes()
        };
        assert!(read_all(&tokens(MAX_TOKENS)).is_ok());
        assert_eq!(
            read_all(&tokens(MAX_TOKENS + 1)),
            Err("device tree has more than 100000 tokens".to_string())
        );
    }

    #[test]
    fn a_node_name_of_255_bytes_is_read_and_a_longer_one_is_refused() {
        let named = |len: usize| {
            Tree::default()
                .begin(&"n".repeat(len))
                .token(END_NODE)
                .token(END)
                .bytes()
        };
        // 255 bytes and the NUL: 64 words.
        assert!(read_all(&named(255)).is_ok());
        assert_eq!(
            read_all(&named(256)),
            Err("a device tree node name is longer than 256 bytes".to_string())
        );
    }
}
