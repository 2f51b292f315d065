//! The conflict check of a write against every decision taken on the ledger since it began.
//!
//! A write conflicts with
//! - a write (commit or deltacommit, not a compaction) completed since it began that touched one of
//!   its file groups — for the bucket index, one of its (partition, bucket) pairs, since two writers
//!   may each have created a new file group for one bucket;
//! - a compaction planned since it began over a file group it logged to under the older slice: the
//!   compaction's new base file would not hold its records;
//! - with the simple index, a write completed since it began that inserted records into a partition
//!   this write inserted into: both may have stored one new key, each in its own file group;
//! - with table-wide keys (the global index), any write completed since it began: the other write
//!   may have stored one of its keys in a partition this write did not look at, so global-index
//!   writers are serialised (the loser retries).
//!
//! Both lose nothing: the writer rolls back and fails with the retryable
//! [`Error::WriteConflict`], and a retry starts from the newer state.

use std::collections::HashSet;

use lake_timeline::{Action, CommitMetadata, State};

use crate::commit::ledger::Entry;
use crate::compaction_plan::CompactionPlan;
use crate::layout::bucket_of_file_id;
use crate::{Error, Result};

/// The file groups a write touched, for checking it against later decisions.
pub(super) struct Footprint {
    instant: String,
    /// (partition, bucket, file id) of every write stat.
    groups: HashSet<(String, Option<u32>, String)>,
    /// (partition, file id) of groups that got a log file.
    logged: HashSet<(String, String)>,
    /// Partitions this write inserted new records into (simple index: new keys are not hashed to
    /// a fixed file group, so two writers may store one key twice).
    inserted: HashSet<String>,
    /// Whether every completed write since our start conflicts (table-wide keys).
    table_wide: bool,
}

/// How far a write's footprint reaches, by the table's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reach {
    /// Bucket index: file groups and buckets.
    Buckets,
    /// Simple index: file groups, and partitions it inserted into.
    Partitions,
    /// Global index: the whole table.
    Table,
}

impl Footprint {
    /// The footprint of our commit metadata.
    pub(super) fn of(instant: String, ours: &CommitMetadata, reach: Reach) -> Self {
        let mut groups = HashSet::new();
        let mut logged = HashSet::new();
        let mut inserted = HashSet::new();
        for s in ours.write_stats() {
            let part = s.partition_path.clone().unwrap_or_default();
            if s.log_files.is_some() {
                logged.insert((part.clone(), s.file_id.clone()));
            }
            if reach == Reach::Partitions && s.num_inserts > 0 {
                inserted.insert(part.clone());
            }
            groups.insert((part, bucket_of_file_id(&s.file_id), s.file_id.clone()));
        }
        Self {
            instant,
            groups,
            logged,
            inserted,
            table_wide: reach == Reach::Table,
        }
    }

    fn conflict(&self, other: &Entry, file_ids: Vec<String>) -> Result<()> {
        if file_ids.is_empty() {
            return Ok(());
        }
        Err(Error::WriteConflict {
            instant: self.instant.clone(),
            other: other.instant.time.to_string(),
            file_ids,
        })
    }

    /// Checks one ledger entry decided after our start.
    pub(super) fn check(&self, e: &Entry) -> Result<()> {
        let i = &e.instant;
        if i.action == Action::Restore {
            // A restore removed completed data this write may have read.
            return self.conflict(e, vec!["(restore)".into()]);
        }
        if !e.header.rollback.is_empty() {
            return Ok(());
        }
        match (i.action, i.state) {
            (Action::Commit | Action::DeltaCommit | Action::ReplaceCommit, State::Completed) => {
                let meta = CommitMetadata::from_json_bytes(&e.payload)
                    .map_err(|err| Error::Corrupt(format!("ledger entry {}: {err}", e.seq)))?;
                if meta.compacted {
                    return Ok(());
                }
                if self.table_wide {
                    return self.conflict(e, vec!["(table-wide keys)".into()]);
                }
                let clashes = meta
                    .write_stats()
                    .filter(|s| {
                        let part = s.partition_path.clone().unwrap_or_default();
                        let bucket = bucket_of_file_id(&s.file_id);
                        (s.num_inserts > 0 && self.inserted.contains(&part))
                            || self.groups.iter().any(|(p, b, f)| {
                                *p == part && (*f == s.file_id || (b.is_some() && *b == bucket))
                            })
                    })
                    .map(|s| s.file_id.clone())
                    .collect();
                self.conflict(e, clashes)
            }
            (Action::Compaction, State::Requested) => {
                let plan = CompactionPlan::from_avro(&e.payload, i.time)?;
                let clashes = plan
                    .operations
                    .iter()
                    .filter(|op| {
                        self.logged
                            .contains(&(op.partition.clone(), op.file_id.clone()))
                    })
                    .map(|op| op.file_id.clone())
                    .collect();
                self.conflict(e, clashes)
            }
            _ => Ok(()),
        }
    }
}
