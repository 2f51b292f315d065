//! Table services: the cleaner, which deletes file versions no retained instant needs. Compaction,
//! savepoints and restore join it with merge-on-read tables.

mod clean;

pub use clean::{CleanPolicy, CleanReport, clean};
