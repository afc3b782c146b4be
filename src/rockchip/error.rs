//! One error type for the injector; hand-written because this folder is std only.

use std::fmt;

/// What went wrong, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line is wrong (unknown option, missing value, unknown SoC, file not found).
    Usage,
    /// A payload file is not a loader rk-inject will write: no Rockchip header, wrong SoC
    /// family, truncated, digest mismatch, too long for its slot.
    BadPayload,
    /// The image cannot take the payload: it would touch a partition or the partition table,
    /// the image is too small, or its partition table cannot be read with confidence.
    Refused,
    /// Reading, writing, syncing or the read-back comparison failed.
    Io,
}

impl ErrorKind {
    /// 2 for what the caller passed (arguments, payload files), 1 for what the image or the
    /// system refused.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Usage | ErrorKind::BadPayload => 2,
            ErrorKind::Refused | ErrorKind::Io => 1,
        }
    }

    /// The word used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::BadPayload => "bad-payload",
            ErrorKind::Refused => "refused",
            ErrorKind::Io => "io",
        }
    }
}

/// A one-line, plain reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    pub fn bad_payload(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::BadPayload, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Refused, message)
    }

    /// An I/O failure, with what was being done.
    pub fn io(doing: impl fmt::Display, err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, format!("{doing}: {err}"))
    }

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
