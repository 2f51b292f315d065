//! Table services: compaction of merge-on-read tables (logs merged into new base files) and the
//! cleaner, which deletes file versions no retained instant needs.

mod clean;
mod compact;

pub use clean::{CleanPolicy, CleanReport, clean};
pub use compact::{
    CompactionReport, CompactionStrategy, Scheduled, execute, execute_pending, schedule,
};
