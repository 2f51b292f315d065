//! The error type of the table crate.

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Errors raised by table reads and writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Timeline or storage failure (includes commit conflicts).
    #[error(transparent)]
    Timeline(#[from] lake_timeline::Error),
    /// `hoodie.properties` is missing, malformed or describes something lake cannot handle.
    #[error("table config {path}: {reason}")]
    Config {
        /// The properties file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A table already exists where one was to be created.
    #[error("a table already exists at {uri}")]
    TableExists {
        /// The table URI.
        uri: String,
    },
    /// A batch's schema cannot be written into the table.
    #[error("schema change refused: {reason}")]
    Schema {
        /// What clashes.
        reason: String,
    },
    /// A record is invalid (e.g. its record key is missing); `row` is its index in the batch.
    #[error("row {row}: {reason}")]
    InvalidRecord {
        /// The row index in the written batch.
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer committed to the same file groups after this write started.
    #[error(
        "write conflict: instant {instant} overlaps file groups committed by {other}: {file_ids:?}"
    )]
    WriteConflict {
        /// Our instant, rolled back.
        instant: String,
        /// The instant that won.
        other: String,
        /// The file groups both touched.
        file_ids: Vec<String>,
    },
    /// A data file could not be read or written.
    #[error("parquet file {path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The Parquet error.
        #[source]
        source: ParquetError,
    },
    /// A log block or log file is malformed.
    #[error("corrupt log data: {0}")]
    Corrupt(String),
    /// An Arrow computation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// The table uses a feature lake does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A background task failed.
    #[error("internal task failure: {0}")]
    Task(String),
}

impl Error {
    /// Whether retrying the write (after reloading the table) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeline(e) => e.is_retryable(),
            Error::WriteConflict { .. } => true,
            _ => false,
        }
    }
}

/// Result alias of the table crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
