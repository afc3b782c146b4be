use std::fmt;

/// A rejected answer: which field, and what would have been allowed.
///
/// Displayed as one line (`field `nodes[2].host`: …`) because it is the whole error a user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAnswer {
    pub field: String,
    pub message: String,
}

impl InvalidAnswer {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidAnswer {}
