use thiserror::Error;

/// A mistake in what the user asked for (exit code 2), as opposed to a failure while doing it.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
