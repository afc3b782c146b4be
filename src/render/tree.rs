use std::collections::BTreeMap;

/// One generated file: its bytes and whether it is executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub contents: Vec<u8>,
    pub executable: bool,
}

impl TreeFile {
    pub fn text(contents: impl Into<String>) -> Self {
        Self {
            contents: contents.into().into_bytes(),
            executable: false,
        }
    }

    pub fn script(contents: impl Into<String>) -> Self {
        Self {
            contents: contents.into().into_bytes(),
            executable: true,
        }
    }

    pub fn text_bytes(contents: Vec<u8>) -> Self {
        Self {
            contents,
            executable: false,
        }
    }

    pub fn mode(&self) -> u32 {
        if self.executable {
            0o755
        } else {
            0o644
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.contents).ok()
    }
}

/// A rendered repository, in memory: relative path (with `/` separators) → file.
///
/// Ordered, so that listings, snapshots and diffs come out the same every time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    files: BTreeMap<String, TreeFile>,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, file: TreeFile) {
        let path = path.into();
        debug_assert!(
            !path.starts_with('/') && !path.split('/').any(|c| c == ".." || c.is_empty()),
            "tree paths are relative and normalised: {path}"
        );
        self.files.insert(path, file);
    }

    pub fn get(&self, path: &str) -> Option<&TreeFile> {
        self.files.get(path)
    }

    pub fn remove(&mut self, path: &str) -> Option<TreeFile> {
        self.files.remove(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &TreeFile)> {
        self.files.iter().map(|(p, f)| (p.as_str(), f))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FromIterator<(String, TreeFile)> for Tree {
    fn from_iter<I: IntoIterator<Item = (String, TreeFile)>>(iter: I) -> Self {
        Self {
            files: iter.into_iter().collect(),
        }
    }
}
