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
    /// Another completed write already applied part of the source range this write consumed (see
    /// [`crate::SourceFence`]); nothing of this write is committed, and retrying it as it is would
    /// apply that range twice.
    #[error("source fence: {reason}; nothing of this write ({instant}) was committed")]
    SourceFenced {
        /// Our instant, rolled back (empty when the check failed before it began).
        instant: String,
        /// What the other write applied.
        reason: String,
    },
    /// This write was rolled back by another process (which judged it dead by its heartbeat) before
    /// it could complete; nothing of it is committed.
    #[error(
        "instant {instant} was rolled back by {by} before it could complete (its heartbeat had expired)"
    )]
    RolledBack {
        /// Our instant.
        instant: String,
        /// The rollback that won.
        by: String,
    },
    /// A restore is decided but not finished (it was interrupted, or is still running); nothing else
    /// starts until it completes.
    #[error(
        "restore {instant} is in progress or was interrupted; run `lake restore` again to finish it"
    )]
    RestoreInProgress {
        /// The restore instant.
        instant: String,
    },
    /// The commit ledger was trimmed past the start of this (very long) transaction.
    #[error("the commit ledger was trimmed past entry {seq}, where this transaction started")]
    LedgerTrimmed {
        /// The transaction's start.
        seq: u64,
    },
    /// A commit request failed in a way that leaves unknown whether it took effect; the next
    /// writer finds out (and completes it if it did). Not retried, so nothing is written twice.
    #[error("the outcome of publishing {path} is unknown: {reason}")]
    CommitOutcomeUnknown {
        /// The file whose creation may or may not have happened.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A time-travel read or savepoint as of an instant whose file slices the cleaner removed.
    #[error(
        "the table as of {as_of} is no longer complete: the cleaner removed file versions it needs (the earliest instant still readable is {earliest}; savepoint instants to keep them)"
    )]
    Cleaned {
        /// The instant asked for.
        as_of: String,
        /// The earliest retained instant.
        earliest: String,
    },
    /// A time-travel read as of an instant before the table's first commit on the active timeline.
    #[error("the table as of {as_of} cannot be read: {reason}")]
    BeforeTimeline {
        /// The instant asked for.
        as_of: String,
        /// Why: before the first commit, or archived.
        reason: String,
    },
    /// The table changed while it was being read (a file listed by an older timeline is gone);
    /// reading again sees a consistent state.
    #[error("the table changed while it was read ({reason}); read it again")]
    Changed {
        /// What was found.
        reason: String,
    },
    /// A file the timeline says is committed is missing or unreadable.
    #[error("committed file {path} is missing or unreadable: {reason}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
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
    /// A change-feed query over (begin, end] cannot be answered exactly.
    #[error("change feed ({begin}, {end}]: {reason}")]
    ChangeFeed {
        /// The exclusive begin asked for.
        begin: String,
        /// The inclusive end (`latest` when open).
        end: String,
        /// Why not.
        reason: String,
    },
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
            Error::WriteConflict { .. }
            | Error::RolledBack { .. }
            | Error::LedgerTrimmed { .. }
            | Error::RestoreInProgress { .. }
            | Error::Changed { .. } => true,
            _ => false,
        }
    }
}

/// Result alias of the table crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
