//! The error type of the timeline crate.

/// Errors raised while reading or publishing the timeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string is not a valid Hudi instant time.
    #[error("invalid instant time {value:?}: expected 17 (or 14) digits yyyyMMddHHmmss[SSS]")]
    InvalidInstantTime {
        /// The offending text.
        value: String,
    },
    /// A table URI could not be understood.
    #[error("invalid table URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// Why it was refused.
        reason: String,
    },
    /// Another writer published the same instant state first.
    #[error("commit conflict: instant {instant} was already published by another writer ({path})")]
    CommitConflict {
        /// The instant time that lost the race.
        instant: String,
        /// The file that already existed.
        path: String,
    },
    /// A file the caller expected does not exist.
    #[error("not found: {path}")]
    NotFound {
        /// The missing path.
        path: String,
    },
    /// The object store failed.
    #[error("storage error at {path}: {source}")]
    Storage {
        /// The path being accessed.
        path: String,
        /// The underlying object-store error.
        #[source]
        source: object_store::Error,
    },
    /// A metadata file could not be parsed or is not supported.
    #[error("bad timeline metadata in {path}: {reason}")]
    Metadata {
        /// The file being parsed.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same operation (after reloading the timeline) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::CommitConflict { .. } => true,
            Error::Storage { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
        }
    }
}

/// Result alias of the timeline crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
