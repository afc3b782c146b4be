//! A half-open byte range on the image.

use std::fmt;

/// Bytes `start..end` of an image (`end` excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub start: u64,
    pub end: u64,
}

impl Extent {
    /// `len` bytes from `start`; saturates instead of wrapping on hostile sizes.
    pub fn at(start: u64, len: u64) -> Self {
        Extent {
            start,
            end: start.saturating_add(len),
        }
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// How many bytes the two ranges share.
    pub fn overlap(&self, other: &Extent) -> u64 {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        end.saturating_sub(start)
    }
}

impl fmt::Display for Extent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bytes {}..{}", self.start, self.end)
    }
}
