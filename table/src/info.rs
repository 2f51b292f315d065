//! A table's health at a glance (`lake info`): its config, its file groups and files (with the
//! small files that slow reads down), pending services, its last commit and checkpoint, and the size
//! of its timeline.

use std::collections::BTreeSet;

use lake_timeline::{Action, Instant, InstantTime};
use serde::Serialize;

use crate::archive::ArchivedTimeline;
use crate::view::{FileSlice, FileSystemView};
use crate::{Result, Table, TableType};

/// Counts and sizes of a set of files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// Base (Parquet) files.
    pub base_files: usize,
    /// Their bytes.
    pub base_bytes: u64,
    /// Base files smaller than the small-file limit (`hoodie.parquet.small.file.limit`).
    pub small_base_files: usize,
    /// Log files.
    pub log_files: usize,
    /// Their bytes.
    pub log_bytes: u64,
    /// CDC log files.
    pub cdc_files: usize,
    /// Their bytes.
    pub cdc_bytes: u64,
}

impl FileCounts {
    fn add(&mut self, s: &FileSlice, small: u64) {
        if let Some(b) = &s.base_file {
            self.base_files += 1;
            self.base_bytes += b.size;
            self.small_base_files += usize::from(b.size < small);
        }
        self.log_files += s.log_files.len();
        self.log_bytes += s.log_files.iter().map(|l| l.size).sum::<u64>();
        self.cdc_files += s.cdc_files.len();
        self.cdc_bytes += s.cdc_files.iter().map(|c| c.size).sum::<u64>();
    }
}

/// The latest completed write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastCommit {
    /// Its instant time.
    pub instant: String,
    /// Its action (`commit`, `deltacommit`, `replacecommit`).
    pub action: String,
    /// Its completion time (table versions 8/9).
    pub completed: Option<String>,
    /// Seconds from its instant time (its completion time on versions 8/9) to now.
    pub age_seconds: i64,
    /// The source checkpoint it recorded (`deltastreamer.checkpoint.key`), if any.
    pub checkpoint: Option<String>,
}

/// What [`Table::info`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// The table URI.
    pub uri: String,
    /// `hoodie.table.name`.
    pub name: String,
    /// `COPY_ON_WRITE` or `MERGE_ON_READ`.
    pub table_type: String,
    /// `hoodie.table.version`.
    pub version: u32,
    /// Record key fields.
    pub record_key_fields: Vec<String>,
    /// Partition fields.
    pub partition_fields: Vec<String>,
    /// The ordering field.
    pub ordering_field: Option<String>,
    /// The index: `bucket` (with `buckets`), `simple` or `global`.
    pub index: String,
    /// Buckets per partition (bucket index).
    pub buckets: Option<u32>,
    /// The CDC logging mode, when the table writes CDC log files.
    pub cdc: Option<String>,
    /// Partitions with files.
    pub partitions: usize,
    /// File groups.
    pub file_groups: usize,
    /// The files of each group's latest slice (what a snapshot reads).
    pub latest: FileCounts,
    /// Every listed file version, older slices the cleaner has not removed yet included.
    pub all_versions: FileCounts,
    /// The small-file limit used for `small_base_files`.
    pub small_file_limit: u64,
    /// Pending (requested or inflight) compactions, oldest first.
    pub pending_compactions: Vec<String>,
    /// Pending writes (commits and deltacommits in flight, or failed and not rolled back yet).
    pub pending_writes: Vec<String>,
    /// The latest completed write.
    pub last_commit: Option<LastCommit>,
    /// Completed writes on the active timeline.
    pub completed_writes: usize,
    /// Instants on the active timeline (every action and state).
    pub active_instants: usize,
    /// Instants in the archived timeline.
    pub archived_instants: usize,
}

/// Seconds between an instant time (UTC, as lake writes them) and now; 0 for a time in the future.
fn age_seconds(t: InstantTime) -> i64 {
    let text = t.to_string();
    chrono::NaiveDateTime::parse_from_str(&text[..14.min(text.len())], "%Y%m%d%H%M%S")
        .map(|at| (chrono::Utc::now().naive_utc() - at).num_seconds().max(0))
        .unwrap_or(0)
}

impl Table {
    /// The table's config, files, pending services, last commit and timeline size (see
    /// [`TableInfo`]).
    pub async fn info(&self) -> Result<TableInfo> {
        let timeline = self.timeline().await?;
        let c = self.config();
        let view = FileSystemView::load(&timeline, None, None).await?;
        let small = c.small_file_limit;
        let mut latest = FileCounts::default();
        let mut partitions = BTreeSet::new();
        let slices = view.latest_slices();
        for s in &slices {
            latest.add(s, small);
            partitions.insert(s.partition.clone());
        }
        let mut all_versions = FileCounts::default();
        for s in view.all_slices() {
            all_versions.add(s, small);
        }
        let pending = |f: &dyn Fn(&Instant) -> bool| -> Vec<String> {
            timeline
                .pending()
                .filter(|i| f(i))
                .map(|i| i.time.to_string())
                .collect()
        };
        let pending_compactions = pending(&|i| timeline.is_compaction(i.time));
        let pending_writes = pending(&|i| {
            matches!(i.action, Action::Commit | Action::DeltaCommit)
                && !timeline.is_compaction(i.time)
        });
        let last = timeline.last_completed_write().copied();
        let last_commit = match last {
            Some(i) => {
                let meta = timeline.commit_metadata_cached(&i).await?;
                Some(LastCommit {
                    instant: i.time.to_string(),
                    action: i.action.name().to_owned(),
                    completed: i.completion.map(|t| t.to_string()),
                    age_seconds: age_seconds(i.completion.unwrap_or(i.time)),
                    checkpoint: meta.checkpoint().map(str::to_owned),
                })
            }
            None => None,
        };
        let archived = ArchivedTimeline::load(timeline.storage(), timeline.layout()).await?;
        Ok(TableInfo {
            uri: self.storage().uri().to_owned(),
            name: c.name.clone(),
            table_type: match c.table_type {
                TableType::CopyOnWrite => "COPY_ON_WRITE",
                TableType::MergeOnRead => "MERGE_ON_READ",
            }
            .to_owned(),
            version: c.version,
            record_key_fields: c.record_key_fields.clone(),
            partition_fields: c.partition_fields.clone(),
            ordering_field: c.ordering_field.clone(),
            index: match (c.bucket_count, c.global_index) {
                (Some(_), _) => "bucket",
                (None, true) => "global",
                (None, false) => "simple",
            }
            .to_owned(),
            buckets: c.bucket_count,
            cdc: c.cdc.map(|m| m.hudi_name().to_owned()),
            partitions: partitions.len(),
            file_groups: slices.len(),
            latest,
            all_versions,
            small_file_limit: small,
            pending_compactions,
            pending_writes,
            last_commit,
            completed_writes: timeline.completed_writes().count(),
            active_instants: timeline.instants().len(),
            archived_instants: archived
                .instants()
                .iter()
                .filter(|i| timeline.find(i.time).is_none())
                .count(),
        })
    }
}
