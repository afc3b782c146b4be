//! The digests of the identical images `flakesmith build` made, so that `flakesmith stamp` stamps
//! only an image of this repository: `images/identical-images.json` (git-ignored with images/).
//! Read as untrusted input: a field that is not what this file writes is refused.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::images::IMAGES_DIR;

pub const RECORD_FILE: &str = "identical-images.json";

/// The flake packages that are identical images (no host name) with a FIRMWARE partition: the
/// RK1 and CM4 images (`Module::identical_image`) and the generic aarch64 SD image.
pub const STAMPABLE_TARGETS: [&str; 3] = ["rk1", "cm4", "generic-arm64"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// SHA-256 of the whole file, as in images/SHA256SUMS.
    pub sha256: String,
    /// Its [`content_digest`]: what `flakesmith stamp` compares, at the cost of reading only the
    /// image's data.
    pub content: String,
    pub size: u64,
    /// The image, relative to images/.
    pub path: String,
}

impl Recorded {
    /// The record of the image at `path` (`relative` to images/), whose SHA-256 is `sha256`.
    pub fn of(path: &Path, relative: &str, sha256: String) -> Result<Self> {
        let file = fs_err::File::open(path)?;
        let size = file.metadata()?.len();
        let content = content_digest(file.file(), size)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            sha256,
            content,
            size,
            path: relative.to_owned(),
        })
    }
}

/// The content digest of the first `len` bytes of a file: SHA-256 over its length and each 4 KiB
/// block that is not all zeros, with the block's index. It depends on the bytes only, not on how
/// the file lays them out (a hole and a written block of zeros are alike), so it reads only the
/// data extents (SEEK_DATA / SEEK_HOLE) and hashes only what is not zero: for a sparse 4 GiB
/// image with 300 MiB of data, 300 MiB. The length and the indices make it as binding as a
/// SHA-256 of the whole file: two files with the same digest have the same bytes.
pub fn content_digest(file: &std::fs::File, len: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    const BLOCK: u64 = 4096;
    let mut hasher = Sha256::new();
    hasher.update(b"flakesmith content digest v1\0");
    hasher.update(len.to_le_bytes());
    let mut buffer = vec![0u8; 1 << 20];
    // The first block not yet hashed: data extents that share a block hash it once.
    let mut next = 0u64;
    let mut at = 0;
    while at < len {
        let Some((start, end)) = super::copy::next_data(file, at, len)? else {
            break;
        };
        at = end;
        let mut block = (start / BLOCK).max(next);
        let last = end.div_ceil(BLOCK);
        while block < last {
            let offset = block * BLOCK;
            let n = (last - block).min(buffer.len() as u64 / BLOCK) * BLOCK;
            let n = n.min(len - offset) as usize;
            file.read_exact_at(&mut buffer[..n], offset)?;
            for (i, chunk) in buffer[..n].chunks(BLOCK as usize).enumerate() {
                if !super::copy::is_zero(chunk) {
                    hasher.update((block + i as u64).to_le_bytes());
                    hasher.update(chunk);
                }
            }
            block += (n as u64).div_ceil(BLOCK);
        }
        next = last;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The record's format: 2 has the content digest (1, without it, is refused).
const VERSION: u32 = 2;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    version: u32,
    images: BTreeMap<String, Recorded>,
}

fn record_path(repo: &Path) -> std::path::PathBuf {
    repo.join(IMAGES_DIR).join(RECORD_FILE)
}

/// What is recorded: target → image. A file that does not parse, or whose digests are not
/// SHA-256 hex, is an error naming the file.
pub fn recorded(repo: &Path) -> Result<BTreeMap<String, Recorded>> {
    let path = record_path(repo);
    let meta = match fs_err::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let bad = |why: &str| {
        crate::UsageError::new(format!(
            "{IMAGES_DIR}/{RECORD_FILE} {why}: delete it and run `flakesmith build` of the image again"
        ))
    };
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(bad("is not a small regular file").into());
    }
    let text = fs_err::read_to_string(&path)?;
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    match serde_json::from_str::<Version>(&text).map(|v| v.version) {
        Ok(VERSION) => {}
        Ok(1) => return Err(bad("was written by an older flakesmith (no content digest)").into()),
        Ok(_) => return Err(bad("has an unknown version").into()),
        Err(_) => return Err(bad("does not parse").into()),
    }
    let file: RecordFile = serde_json::from_str(&text).map_err(|_| bad("does not parse"))?;
    let is_sha256 = |hex: &str| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    for (target, image) in &file.images {
        let hex_ok = is_sha256(&image.sha256) && is_sha256(&image.content);
        // The path is joined to images/: only plain names, no `..`, nothing absolute.
        let path_ok = !image.path.is_empty()
            && Path::new(&image.path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !hex_ok || !path_ok || !STAMPABLE_TARGETS.contains(&target.as_str()) {
            return Err(
                bad("holds an entry that is not a SHA-256 and path of an identical image").into(),
            );
        }
    }
    Ok(file.images)
}

/// Records (or replaces) the digest of target's image, keeping the other targets' entries.
pub fn remember(repo: &Path, target: &str, image: Recorded) -> Result<()> {
    let mut images = recorded(repo).unwrap_or_default();
    images.insert(target.to_owned(), image);
    let text = serde_json::to_string_pretty(&RecordFile {
        version: VERSION,
        images,
    })? + "\n";
    let dir = repo.join(IMAGES_DIR);
    let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.persist(record_path(repo))
        .with_context(|| format!("writing {IMAGES_DIR}/{RECORD_FILE}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_hostile_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join(IMAGES_DIR)).unwrap();
        assert!(recorded(dir.path()).unwrap().is_empty());
        let image = Recorded {
            sha256: "a".repeat(64),
            content: "b".repeat(64),
            size: 5,
            path: "rk1/sd-image/nixos-rk1.img".into(),
        };
        remember(dir.path(), "rk1", image.clone()).unwrap();
        assert_eq!(recorded(dir.path()).unwrap()["rk1"], image);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        for hostile in [
            format!(
                r#"{{"version":2,"images":{{"rk1":{{"sha256":"../x","content":"{b}","size":1,"path":"x"}}}}}}"#
            ),
            format!(
                r#"{{"version":2,"images":{{"rk1":{{"sha256":"{a}","content":"B","size":1,"path":"x"}}}}}}"#
            ),
            format!(
                r#"{{"version":2,"images":{{"n1":{{"sha256":"{a}","content":"{b}","size":1,"path":"x"}}}}}}"#
            ),
            format!(
                r#"{{"version":2,"images":{{"rk1":{{"sha256":"{a}","content":"{b}","size":1,"path":"../../etc/shadow"}}}}}}"#
            ),
            format!(r#"{{"version":1,"images":{{"rk1":{{"sha256":"{a}","size":1,"path":"x"}}}}}}"#),
            r#"{"version":3,"images":{}}"#.to_owned(),
            "not json".to_owned(),
        ] {
            fs_err::write(record_path(dir.path()), hostile.as_bytes()).unwrap();
            let err = recorded(dir.path()).unwrap_err();
            assert!(err.is::<crate::UsageError>(), "{hostile}: {err}");
        }
    }

    fn digest_of(path: &Path) -> String {
        let file = std::fs::File::open(path).unwrap();
        content_digest(&file, file.metadata().unwrap().len()).unwrap()
    }

    /// The same bytes give the same digest however they are laid out (holes, written zeros);
    /// any other bytes, a moved block or another length give another.
    #[test]
    fn the_content_digest_is_of_the_bytes_not_of_their_layout() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let len = 9 << 20;
        let write = |name: &str, dense: bool, edits: &[(u64, &[u8])], len: u64| {
            let path = dir.path().join(name);
            let file = std::fs::File::create(&path).unwrap();
            if dense {
                file.write_all_at(&vec![0u8; len as usize], 0).unwrap();
            } else {
                file.set_len(len).unwrap();
            }
            for (at, bytes) in edits {
                file.write_all_at(bytes, *at).unwrap();
            }
            path
        };
        let data: &[(u64, &[u8])] = &[(5, b"boot"), (4 << 20, &[7u8; 10_000]), (len - 3, b"end")];
        let sparse = digest_of(&write("sparse", false, data, len));
        assert_eq!(digest_of(&write("dense", true, data, len)), sparse);
        // Zeros written over a hole change nothing either.
        let mut with_zeros = data.to_vec();
        with_zeros.push((6 << 20, &[0u8; 8192]));
        assert_eq!(digest_of(&write("zeros", false, &with_zeros, len)), sparse);

        let mut one_byte = data.to_vec();
        one_byte.push((7 << 20, b"x"));
        assert_ne!(digest_of(&write("byte", false, &one_byte, len)), sparse);
        let moved: &[(u64, &[u8])] = &[
            (5, b"boot"),
            ((4 << 20) + 4096, &[7u8; 10_000]),
            (len - 3, b"end"),
        ];
        assert_ne!(digest_of(&write("moved", false, moved, len)), sparse);
        let mut longer = data.to_vec();
        longer.pop();
        longer.push((len - 3, b"end"));
        assert_ne!(
            digest_of(&write("longer", false, &longer, len + 4096)),
            sparse
        );
    }
}
