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
    pub sha256: String,
    pub size: u64,
    /// The image, relative to images/.
    pub path: String,
    /// Which file was hashed, and its state then: a file that still matches is that file,
    /// unchanged (any write moves its change time, which no user can set back), so `stamp` need
    /// not read all of it again. Any other file is hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileState>,
}

/// Device, inode, size and modification and change times (ns) of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileState {
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    pub fn of(_: &std::fs::Metadata) -> Option<Self> {
        None
    }
}

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
            "{IMAGES_DIR}/{RECORD_FILE} {why}: delete it and run `flakesmith build rk1` again"
        ))
    };
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(bad("is not a small regular file").into());
    }
    let text = fs_err::read_to_string(&path)?;
    let file: RecordFile = serde_json::from_str(&text).map_err(|_| bad("does not parse"))?;
    if file.version != 1 {
        return Err(bad("has an unknown version").into());
    }
    for (target, image) in &file.images {
        let hex_ok = image.sha256.len() == 64
            && image
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
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
    let text = serde_json::to_string_pretty(&RecordFile { version: 1, images })? + "\n";
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
            size: 5,
            path: "rk1/sd-image/nixos-rk1.img".into(),
            file: None,
        };
        remember(dir.path(), "rk1", image.clone()).unwrap();
        assert_eq!(recorded(dir.path()).unwrap()["rk1"], image);
        for hostile in [
            r#"{"version":1,"images":{"rk1":{"sha256":"../x","size":1,"path":"x"}}}"#,
            r#"{"version":1,"images":{"n1":{"sha256":"aa","size":1,"path":"x"}}}"#,
            &format!(
                r#"{{"version":1,"images":{{"rk1":{{"sha256":"{}","size":1,"path":"../../etc/shadow"}}}}}}"#,
                "a".repeat(64)
            ),
            r#"{"version":2,"images":{}}"#,
            "not json",
        ] {
            fs_err::write(record_path(dir.path()), hostile.as_bytes()).unwrap();
            let err = recorded(dir.path()).unwrap_err();
            assert!(err.is::<crate::UsageError>(), "{hostile}: {err}");
        }
    }
}
