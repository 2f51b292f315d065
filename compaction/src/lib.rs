//! Table services: compaction of merge-on-read tables (logs merged into new base files) and the
//! cleaner, which deletes file versions no retained instant needs; savepoints, which pin a
//! snapshot's files, and restore to a savepoint; archival of the timeline's oldest instants.

mod archive;
mod clean;
mod compact;
mod savepoint;

pub use archive::{ArchivePolicy, ArchiveReport, archive};
pub use clean::{CleanPolicy, CleanReport, clean};
pub use compact::{
    CompactionReport, CompactionStrategy, Scheduled, execute, execute_pending, schedule,
};
pub use savepoint::{
    RestoreReport, SavepointInfo, create_savepoint, delete_savepoint, list_savepoints,
    pinned_files, restore,
};
