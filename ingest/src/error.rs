//! The decode error: what was wrong, and where.

/// A record that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct DecodeError {
    /// The file, or `topic/partition`, the record came from.
    pub source_name: String,
    /// 1-based line number in a file, or the Kafka offset.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl DecodeError {
    /// A new error at `source_name:line`.
    pub fn new(source_name: &str, line: u64, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line,
            reason: reason.into(),
        }
    }
}

/// Result alias of the decoders.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;
