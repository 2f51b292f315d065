//! The conflict check of a write against every decision taken on the ledger since it began.
//!
//! A write conflicts with
//! - a write (commit or deltacommit, not a compaction) completed since it began that touched one of
//!   its file groups — for the bucket index, one of its (partition, bucket) pairs, since two writers
//!   may each have created a new file group for one bucket;
//! - a compaction planned since it began over a file group it logged to under the older slice: the
//!   compaction's new base file would not hold its records;
//! - with the simple index, a write completed since it began that may have stored a new key in a
//!   partition this write may have stored one in: both may have stored the same key, each in its own
//!   file group (a new key is an insert; on merge-on-read, any upsert in a log may be one, since a
//!   key deleted in the logs is still found in the base file until a compaction drops it);
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

/// Whether a write stat may have stored a key that was not live before: inserts, or upserts into
/// a log (the key may have been deleted in the group's logs).
fn may_store_new_key(s: &lake_timeline::WriteStat) -> bool {
    s.num_inserts > 0 || (s.log_files.is_some() && s.num_writes > 0)
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
            if reach == Reach::Partitions && may_store_new_key(s) {
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
                        (may_store_new_key(s) && self.inserted.contains(&part))
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lake_timeline::{Instant, InstantTime, WriteStat};

    use super::*;
    use crate::commit::ledger::Header;

    fn stat(part: &str, file: &str, inserts: i64, writes: i64, log: bool) -> WriteStat {
        WriteStat {
            file_id: file.into(),
            partition_path: Some(part.into()),
            num_inserts: inserts,
            num_writes: writes,
            log_files: log.then(|| vec![format!(".{file}_1.log.1_0-0-0")]),
            ..Default::default()
        }
    }

    fn meta(stats: Vec<WriteStat>) -> CommitMetadata {
        let mut m = CommitMetadata::default();
        for s in stats {
            let p = s.partition_path.clone().unwrap_or_default();
            m.partition_to_write_stats.entry(p).or_default().push(s);
        }
        m
    }

    fn entry(m: &CommitMetadata) -> Entry {
        let time: InstantTime = "20260101000000001".parse().expect("time");
        let instant = Instant::new(time, Action::DeltaCommit, State::Completed);
        Entry {
            seq: 1,
            header: Header {
                file: instant.file_name(),
                rollback: Vec::new(),
            },
            instant,
            payload: Bytes::from(m.to_json_bytes()),
        }
    }

    #[test]
    fn simple_index_writes_that_may_store_one_new_key_conflict() {
        // Ours: a new file group with inserts in partition a.
        let ours = Footprint::of(
            "20260101000000002".into(),
            &meta(vec![stat("a", "f2", 10, 10, false)]),
            Reach::Partitions,
        );
        // Theirs: an upsert into a log of another group of a (the key may have been deleted there).
        let theirs = meta(vec![stat("a", "f1", 0, 3, true)]);
        assert!(ours.check(&entry(&theirs)).is_err());
        // Only deletes, or another partition: no conflict.
        let deletes_only = meta(vec![stat("a", "f1", 0, 0, true)]);
        assert!(ours.check(&entry(&deletes_only)).is_ok());
        let elsewhere = meta(vec![stat("b", "f3", 5, 5, false)]);
        assert!(ours.check(&entry(&elsewhere)).is_ok());
        // The bucket index hashes a key to one group: other groups never clash.
        let buckets = Footprint::of(
            "20260101000000002".into(),
            &meta(vec![stat("a", "f2", 10, 10, false)]),
            Reach::Buckets,
        );
        assert!(buckets.check(&entry(&theirs)).is_ok());
        // Table-wide keys: any write clashes.
        let global = Footprint::of(
            "20260101000000002".into(),
            &meta(vec![stat("a", "f2", 10, 10, false)]),
            Reach::Table,
        );
        assert!(global.check(&entry(&elsewhere)).is_err());
    }
}
