//! The conflict check of a write against every decision taken on the ledger since it began.
//!
//! A write conflicts with
//! - a write (commit or deltacommit, not a compaction) completed since it began that touched one of
//!   its file groups — for the bucket index, one of its (partition, bucket) pairs, since two writers
//!   may each have created a new file group for one bucket. Merge-on-read writes with the bucket
//!   index that both only appended log files to a file group that existed when they began do not
//!   conflict (non-blocking concurrency): each wrote its own log files (its own write token), a key
//!   always hashes to that one group, and readers merge the records by the ordering field, so the
//!   order of the two commits does not matter;
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
    /// (partition, file id) of groups this write only appended a log file to, in a slice that
    /// existed before it (bucket index: appends that never conflict with each other).
    appended: HashSet<(String, String)>,
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

/// Whether a write stat of the write at `instant` appended a log file to a slice that existed
/// before it (rather than creating the file group).
fn appends_to_existing(s: &lake_timeline::WriteStat, instant: &str) -> bool {
    s.log_files.is_some() && s.prev_commit.as_deref().is_some_and(|p| p != instant)
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
        let mut appended = HashSet::new();
        let mut inserted = HashSet::new();
        for s in ours.write_stats() {
            let part = s.partition_path.clone().unwrap_or_default();
            if s.log_files.is_some() {
                logged.insert((part.clone(), s.file_id.clone()));
            }
            if reach == Reach::Buckets && appends_to_existing(s, &instant) {
                appended.insert((part.clone(), s.file_id.clone()));
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
            appended,
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
                let theirs = i.time.to_string();
                let clashes = meta
                    .write_stats()
                    .filter(|s| {
                        let part = s.partition_path.clone().unwrap_or_default();
                        if appends_to_existing(s, &theirs)
                            && self.appended.contains(&(part.clone(), s.file_id.clone()))
                        {
                            return false;
                        }
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

/// The source fence's check of one ledger entry decided since the write `instant` began: a
/// completed write (not a compaction, not a rollback) is handed to the fence.
pub(super) fn fence_entry(
    fence: Option<&dyn super::SourceFence>,
    instant: lake_timeline::InstantTime,
    e: &Entry,
) -> Result<()> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let i = &e.instant;
    if !e.header.rollback.is_empty()
        || i.state != State::Completed
        || !matches!(
            i.action,
            Action::Commit | Action::DeltaCommit | Action::ReplaceCommit
        )
    {
        return Ok(());
    }
    let meta = CommitMetadata::from_json_bytes(&e.payload)
        .map_err(|err| Error::Corrupt(format!("ledger entry {}: {err}", e.seq)))?;
    if meta.compacted {
        return Ok(());
    }
    fence
        .check_since(&meta)
        .map_err(|reason| Error::SourceFenced {
            instant: instant.to_string(),
            reason,
        })
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
    fn bucket_appends_to_an_existing_group_do_not_conflict() {
        // Both wrote a log to group 00000001-… of partition a, in the slice based at instant 1.
        let group = "00000001-aaaa-0";
        let append = |prev: &str| WriteStat {
            prev_commit: Some(prev.into()),
            ..stat("a", group, 0, 4, true)
        };
        let ours_time = "20260101000000002";
        let theirs_time = "20260101000000001";
        let ours = Footprint::of(
            ours_time.into(),
            &meta(vec![append("20250101000000000")]),
            Reach::Buckets,
        );
        assert!(
            ours.check(&entry(&meta(vec![append("20250101000000000")])))
                .is_ok()
        );
        // Theirs created the group (its slice begins at its own instant): ours cannot have seen it.
        assert!(
            ours.check(&entry(&meta(vec![append(theirs_time)])))
                .is_err()
        );
        // Theirs created another group for the same bucket: two groups for one bucket.
        let new_group = WriteStat {
            prev_commit: Some(theirs_time.into()),
            ..stat("a", "00000001-bbbb-0", 4, 4, true)
        };
        assert!(ours.check(&entry(&meta(vec![new_group]))).is_err());
        // Theirs rewrote the group's base file (a copy-on-write style write): a conflict.
        let rewrite = WriteStat {
            prev_commit: Some("20250101000000000".into()),
            ..stat("a", group, 0, 4, false)
        };
        assert!(ours.check(&entry(&meta(vec![rewrite]))).is_err());
        // Ours created the group: any other write to its bucket conflicts.
        let created = Footprint::of(
            ours_time.into(),
            &meta(vec![append(ours_time)]),
            Reach::Buckets,
        );
        assert!(
            created
                .check(&entry(&meta(vec![append("20250101000000000")])))
                .is_err()
        );
        // The simple index keeps file-group conflicts for appends.
        let simple = Footprint::of(
            ours_time.into(),
            &meta(vec![append("20250101000000000")]),
            Reach::Partitions,
        );
        assert!(
            simple
                .check(&entry(&meta(vec![append("20250101000000000")])))
                .is_err()
        );
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
