//! The write client: upsert, insert and delete of Arrow change batches, as one commit (copy-on-write)
//! or deltacommit (merge-on-read).
//!
//! One write is one [`Transaction`]: failed writes whose heartbeat expired are rolled back first, the
//! batch is resolved per (record key, partition) by the ordering field (ties go to the later row;
//! [`prepare`]), each record is tagged with its file group by the index, every touched file group is
//! rewritten ([`cow`]) or gets a new log file ([`mor`]) in parallel, the write is checked against
//! every decision taken since it began ([`conflict`]), and the completed instant is published last.

mod conflict;
mod cow;
mod global;
mod mor;
mod pending;
mod prepare;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{Action, CommitMetadata, InstantTime, WriteStat};

use crate::commit::rollback::rollback_failed_writes;
use crate::commit::transaction::{self, Transaction};
use crate::config::{SOURCE_POSITION_FIELD, TableType};

/// Commit extra metadata: the highest `_source_position` applied to the table so far.
pub const MAX_POSITION_KEY: &str = "lake.source.position.max";
use crate::format::compaction_plan::CompactionOperation;
use crate::index::{self, DEFAULT_RECORD_SIZE};
use crate::keys::partition_paths;
use crate::layout::{BaseFile, PARTITION_METADATA, join, partition_metadata};
use crate::schema;
use crate::view::FileSystemView;
use crate::{Error, Result, Table};
use conflict::{Footprint, Reach};
use mor::LogTarget;

/// Rows to write, with an optional per-row delete flag (a delete row carries at least the key,
/// partition and ordering columns).
#[derive(Clone, Debug)]
pub struct ChangeBatch {
    /// The rows.
    pub rows: RecordBatch,
    /// `true` where the row is a delete; `None` when every row is an upsert.
    pub is_delete: Option<BooleanArray>,
}

impl ChangeBatch {
    /// A batch of upserts.
    pub fn upserts(rows: RecordBatch) -> Self {
        Self {
            rows,
            is_delete: None,
        }
    }

    /// A batch of upserts and deletes.
    pub fn new(rows: RecordBatch, is_delete: BooleanArray) -> Self {
        Self {
            rows,
            is_delete: Some(is_delete),
        }
    }
}

/// What a write does with its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOperation {
    /// Insert new keys, update existing ones (by the ordering field), apply delete rows.
    Upsert,
    /// Append rows without looking up stored keys (duplicates of stored keys are kept, as in Hudi).
    Insert,
    /// Delete every key in the batch.
    Delete,
}

impl WriteOperation {
    fn hudi_name(self) -> &'static str {
        match self {
            WriteOperation::Upsert => "UPSERT",
            WriteOperation::Insert => "INSERT",
            WriteOperation::Delete => "DELETE",
        }
    }
}

/// Per-write options.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// The operation.
    pub operation: WriteOperation,
    /// Extra commit metadata (e.g. the source checkpoint).
    pub extra_metadata: BTreeMap<String, String>,
    /// File groups rewritten at once.
    pub parallelism: usize,
    /// Commit even when no row is left to write, so that `extra_metadata` (a source checkpoint
    /// past messages that produced no rows) lands on the timeline.
    pub commit_empty: bool,
    /// Checks the source positions this write consumed against the other completed writes, when
    /// the write starts and against every write completed before it commits (see [`SourceFence`]).
    pub fence: Option<Arc<dyn SourceFence>>,
}

/// Fencing of writers that share one source (several `lake ingest` processes, one Kafka topic):
/// a write carries the positions it consumed, and fails with [`Error::SourceFenced`] when another
/// completed write already applied part of them (a process that lost a partition committing late,
/// or a commit whose answer was lost, retried).
pub trait SourceFence: Send + Sync + std::fmt::Debug {
    /// `Err(reason)` when `committed` — the metadata of completed writes (not compactions), oldest
    /// first — shows that part of this write's source range was already applied.
    fn check(&self, committed: &[Arc<CommitMetadata>]) -> std::result::Result<(), String>;

    /// `Err(reason)` when `decided`, a write completed after this write began, applied part of
    /// this write's source range (by default, [`SourceFence::check`] of it alone).
    fn check_since(&self, decided: &CommitMetadata) -> std::result::Result<(), String> {
        self.check(&[Arc::new(decided.clone())])
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            operation: WriteOperation::Upsert,
            extra_metadata: BTreeMap::new(),
            parallelism: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
            commit_empty: false,
            fence: None,
        }
    }
}

/// What a completed write did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteSummary {
    /// The completed instant (`None` when the batch was empty and nothing was committed).
    pub instant: Option<InstantTime>,
    /// Failed instants rolled back before writing.
    pub rolled_back: Vec<InstantTime>,
    /// Rows received.
    pub rows_in: usize,
    /// Rows left after deduplication by key.
    pub rows_deduped: usize,
    /// New records.
    pub inserts: u64,
    /// Records replaced by newer versions.
    pub updates: u64,
    /// Records deleted.
    pub deletes: u64,
    /// Incoming records older (by the ordering field) than the stored version, hence ignored.
    pub stale: u64,
    /// Files written.
    pub files_written: usize,
    /// Bytes of files written.
    pub bytes_written: u64,
    /// Partitions touched.
    pub partitions: usize,
    /// Attempts that failed with a retryable error (a conflict) before this one committed.
    pub retries: u32,
}

/// One file group to rewrite.
pub(super) struct GroupTask {
    partition: String,
    file_id: String,
    prev: Option<BaseFile>,
    rows: Vec<usize>,
    task_id: usize,
    /// Merge-on-read: the log file this write appends to the group.
    append: Option<LogTarget>,
}

pub(super) struct GroupResult {
    stat: WriteStat,
    inserts: u64,
    updates: u64,
    deletes: u64,
    stale: u64,
}

/// Hands the completed writes (not compactions) of the write's starting timeline, oldest first, to
/// the source fence.
async fn check_fence(fence: &dyn SourceFence, timeline: &lake_timeline::Timeline) -> Result<()> {
    let writes: Vec<lake_timeline::Instant> = timeline
        .completed_writes()
        .filter(|w| !timeline.is_compaction(w.time))
        .copied()
        .collect();
    let metas = timeline.commit_metadata_all(&writes).await?;
    fence.check(&metas).map_err(|reason| Error::SourceFenced {
        instant: "not begun".into(),
        reason,
    })
}

impl Table {
    /// Writes change batches as one commit. See the module docs for the semantics.
    pub async fn write(
        &self,
        batches: Vec<ChangeBatch>,
        opts: WriteOptions,
    ) -> Result<WriteSummary> {
        if self.config().version != 6 {
            return Err(Error::Unsupported(format!(
                "writes to table version {} (lake writes version 6)",
                self.config().version
            )));
        }
        if let Some(why) = self.config().unwritable_index() {
            return Err(Error::Unsupported(format!("writes with {why}")));
        }
        let mut start = transaction::start(self).await?;
        let mut summary = WriteSummary {
            rolled_back: rollback_failed_writes(self, &start.timeline).await?,
            ..Default::default()
        };
        if !summary.rolled_back.is_empty() {
            start = transaction::start(self).await?;
        }
        let timeline = &start.timeline;
        if let Some(fence) = &opts.fence {
            check_fence(fence.as_ref(), timeline).await?;
        }
        let table_schema = self.data_schema(timeline).await?;
        if opts.commit_empty && batches.iter().all(|b| b.rows.num_rows() == 0) {
            summary.instant = Some(self.commit_empty(&start, table_schema, &opts).await?);
            return Ok(summary);
        }
        let mut prepared = self.prepare(batches, table_schema.as_deref(), opts.operation)?;
        summary.rows_in = prepared.rows.num_rows();
        if summary.rows_in == 0 {
            return Ok(summary);
        }
        let mut partitions = partition_paths(&prepared.rows, self.config())?;
        // Table-wide keys: resolve per key, then find each key's stored partition in the whole table.
        let global = self.config().global_index && opts.operation != WriteOperation::Insert;
        let (winners, view, pinned) = if global {
            let winners = self.dedupe_global(&prepared)?;
            summary.rows_deduped = winners.len();
            let view = FileSystemView::load(timeline, None, None).await?;
            let routed = self
                .route_global(timeline, &view, &mut prepared, &mut partitions, winners)
                .await?;
            summary.stale += routed.stale;
            (routed.winners, Some(view), routed.pinned)
        } else {
            let winners = self.dedupe(&prepared, &partitions)?;
            summary.rows_deduped = winners.len();
            (winners, None, HashMap::new())
        };

        let touched: Vec<String> = winners
            .iter()
            .map(|r| partitions[*r].as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        summary.partitions = touched.len();

        let view = match view {
            Some(v) => v,
            None => FileSystemView::load(timeline, Some(&touched), None).await?,
        };
        let mor = self.config().table_type == TableType::MergeOnRead;
        let action = if mor {
            Action::DeltaCommit
        } else {
            Action::Commit
        };
        let tx = Transaction::begin(self, &start, action, Bytes::new()).await?;
        let time = tx.time();
        match self
            .write_files(
                &tx,
                &start,
                prepared,
                &partitions,
                &winners,
                &pinned,
                &touched,
                &view,
                &opts,
                &mut summary,
            )
            .await
        {
            Ok(meta) => {
                let reach = match self.config().bucket_count {
                    _ if global => Reach::Table,
                    Some(_) => Reach::Buckets,
                    None => Reach::Partitions,
                };
                let footprint = Footprint::of(time.to_string(), &meta, reach);
                let fence = opts.fence.as_deref();
                tx.commit(Bytes::from(meta.to_json_bytes()), |e| {
                    footprint.check(e)?;
                    conflict::fence_entry(fence, time, e)
                })
                .await?;
                summary.instant = Some(time);
                Ok(summary)
            }
            Err(e) => {
                tx.abort().await;
                Err(e)
            }
        }
    }

    /// Tags, writes every touched file group and returns the commit metadata.
    #[allow(clippy::too_many_arguments)]
    async fn write_files(
        &self,
        tx: &Transaction,
        start: &transaction::Start,
        prepared: prepare::Prepared,
        partitions: &[String],
        winners: &[usize],
        pinned: &HashMap<usize, String>,
        touched: &[String],
        view: &FileSystemView,
        opts: &WriteOptions,
        summary: &mut WriteSummary,
    ) -> Result<CommitMetadata> {
        let timeline = &start.timeline;
        let time = tx.time();
        let storage = self.storage();
        let mor = self.config().table_type == TableType::MergeOnRead;

        let record_size = match self.config().bucket_count {
            Some(_) => DEFAULT_RECORD_SIZE,
            None => {
                self.record_size_estimate(timeline, &prepared, partitions)
                    .await?
            }
        };
        let rows = index::Rows {
            keys: &prepared.keys,
            partitions,
            is_delete: &prepared.is_delete,
            winners,
            lookup: opts.operation != WriteOperation::Insert,
            top_up: !mor,
            pinned,
        };
        let mut assignments = index::assign(self, timeline, view, &rows, record_size).await?;
        // File groups under a pending compaction get their logs in the slice the compaction starts,
        // without records older than a delete the compaction will drop ([`pending`]).
        let mut compacting: HashMap<(String, String), (InstantTime, CompactionOperation)> =
            HashMap::new();
        if mor {
            let pending: Vec<InstantTime> = timeline
                .compactions()
                .filter(|c| !c.is_completed())
                .map(|c| c.time)
                .collect();
            for c in pending {
                if let Some(plan) = self.compaction_plan(c).await? {
                    for op in plan.operations {
                        compacting.insert((op.partition.clone(), op.file_id.clone()), (c, op));
                    }
                }
            }
            for a in &mut assignments {
                if let Some((c, op)) = compacting.get(&(a.partition.clone(), a.file_id.clone())) {
                    summary.stale += self
                        .drop_stale_for_pending(timeline, *c, op, &prepared, &mut a.rows)
                        .await?;
                }
            }
            assignments.retain(|a| !a.rows.is_empty());
        }
        let tasks: Vec<GroupTask> = assignments
            .into_iter()
            .enumerate()
            .map(|(task_id, a)| {
                // Merge-on-read: existing file groups (and, with the bucket index, new ones too)
                // receive log blocks; new file groups of the simple index get base files.
                let slice = view.latest_slice(&a.partition, &a.file_id);
                let compaction = compacting
                    .get(&(a.partition.clone(), a.file_id.clone()))
                    .map(|(c, _)| *c);
                let append = match &slice {
                    Some(s) if mor => Some(LogTarget::after(s, compaction)),
                    None if mor && self.config().bucket_count.is_some() => Some(LogTarget {
                        base_instant: time,
                        version: 1,
                        base_file: None,
                    }),
                    _ => None,
                };
                GroupTask {
                    partition: a.partition,
                    file_id: a.file_id,
                    prev: a.prev,
                    rows: a.rows,
                    task_id,
                    append,
                }
            })
            .collect();
        for p in touched {
            if view.file_ids(p).next().is_none() {
                let rel = join(p, PARTITION_METADATA);
                storage
                    .put_if_absent(&rel, Bytes::from(partition_metadata(time, p)))
                    .await?;
            }
        }

        let prepared = Arc::new(prepared);
        let written: Vec<Option<GroupResult>> = futures::stream::iter(tasks)
            .map(|task| {
                let p = prepared.clone();
                async move {
                    if task.append.is_some() {
                        self.write_log(tx, task, p).await
                    } else {
                        self.write_group(tx, task, p, opts.operation).await
                    }
                }
            })
            .buffer_unordered(opts.parallelism.max(1))
            .try_collect()
            .await?;

        let mut meta = self.commit_metadata(opts, Some(&prepared.schema))?;
        if let Some(max) = self
            .max_source_position(timeline, &prepared, winners)
            .await?
        {
            meta.extra_metadata.insert(MAX_POSITION_KEY.into(), max);
        }
        for r in written.into_iter().flatten() {
            summary.inserts += r.inserts;
            summary.updates += r.updates;
            summary.deletes += r.deletes;
            summary.stale += r.stale;
            summary.files_written += 1;
            summary.bytes_written += r.stat.file_size_in_bytes as u64;
            let part = r.stat.partition_path.clone().unwrap_or_default();
            meta.partition_to_write_stats
                .entry(part)
                .or_default()
                .push(r.stat);
        }
        Ok(meta)
    }

    /// The highest `_source_position` the table has applied, counting this write's rows (tables
    /// ordered by source position only).
    async fn max_source_position(
        &self,
        timeline: &lake_timeline::Timeline,
        p: &prepare::Prepared,
        winners: &[usize],
    ) -> Result<Option<String>> {
        if self.config().ordering_field.as_deref() != Some(SOURCE_POSITION_FIELD) {
            return Ok(None);
        }
        let col = p
            .rows
            .column_by_name(SOURCE_POSITION_FIELD)
            .and_then(|c| arrow::array::AsArray::as_string_opt::<i32>(c.as_ref()).cloned());
        let mut max = self.applied_position(timeline).await?;
        if let Some(col) = col {
            for &r in winners {
                if arrow::array::Array::is_valid(&col, r) {
                    let v = col.value(r);
                    if max.as_deref().is_none_or(|m| v > m) {
                        max = Some(v.to_owned());
                    }
                }
            }
        }
        Ok(max)
    }

    /// The highest `_source_position` recorded by the latest completed write.
    async fn applied_position(&self, timeline: &lake_timeline::Timeline) -> Result<Option<String>> {
        let last = timeline
            .completed_writes()
            .filter(|i| !timeline.is_compaction(i.time))
            .last();
        let Some(last) = last else {
            return Ok(None);
        };
        if timeline.layout() != lake_timeline::Layout::V1 {
            return Ok(None);
        }
        let meta = timeline.commit_metadata_cached(last).await?;
        Ok(meta.extra_metadata.get(MAX_POSITION_KEY).cloned())
    }

    /// The `_source_position` for rows of a manual write that carry none: just after the highest
    /// position applied so far (then the write time, so later corrections win over earlier ones).
    pub async fn manual_position(&self, timeline: &lake_timeline::Timeline) -> Result<String> {
        let applied = self.applied_position(timeline).await?.unwrap_or_default();
        Ok(format!("{applied}~manual.{}", InstantTime::now()))
    }

    /// [`Table::write`], retried up to `attempts` times (with a growing pause) while it fails with a
    /// retryable error: a conflict with a concurrent writer or with a compaction scheduled under it.
    pub async fn write_retrying(
        &self,
        batches: Vec<ChangeBatch>,
        opts: WriteOptions,
        attempts: u32,
    ) -> Result<WriteSummary> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.write(batches.clone(), opts.clone()).await {
                Ok(mut s) => {
                    s.retries = attempt - 1;
                    return Ok(s);
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    // Growing pause with jitter, so racing writers do not retry in lockstep.
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 50) as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(
                        50 * u64::from(attempt) + jitter,
                    ))
                    .await;
                }
                other => return other,
            }
        }
    }

    /// A commit's metadata before its write stats: the operation, `opts.extra_metadata` and the
    /// writer's schema (Hudi's `schema` key).
    fn commit_metadata(
        &self,
        opts: &WriteOptions,
        schema: Option<&arrow::datatypes::SchemaRef>,
    ) -> Result<CommitMetadata> {
        let mut meta = CommitMetadata {
            operation_type: Some(opts.operation.hudi_name().to_owned()),
            extra_metadata: opts.extra_metadata.clone(),
            ..Default::default()
        };
        if let Some(schema) = schema {
            meta.extra_metadata.insert(
                "schema".into(),
                schema::avro_schema_json(schema, &self.config().name)?,
            );
        }
        Ok(meta)
    }

    /// Commits no files, only metadata: the operation, `opts.extra_metadata` and the table's
    /// current schema (so schema resolution from the latest commit keeps working).
    async fn commit_empty(
        &self,
        start: &transaction::Start,
        schema: Option<arrow::datatypes::SchemaRef>,
        opts: &WriteOptions,
    ) -> Result<InstantTime> {
        let meta = self.commit_metadata(opts, schema.as_ref())?;
        let action = if self.config().table_type == TableType::MergeOnRead {
            Action::DeltaCommit
        } else {
            Action::Commit
        };
        let tx = Transaction::begin(self, start, action, Bytes::new()).await?;
        let time = tx.time();
        let footprint = Footprint::of(time.to_string(), &meta, Reach::Partitions);
        let fence = opts.fence.as_deref();
        tx.commit(Bytes::from(meta.to_json_bytes()), |e| {
            footprint.check(e)?;
            conflict::fence_entry(fence, time, e)
        })
        .await?;
        Ok(time)
    }

    /// The plan of the compaction at `time` (`None` if its requested file is gone).
    pub async fn compaction_plan(
        &self,
        time: InstantTime,
    ) -> Result<Option<crate::compaction_plan::CompactionPlan>> {
        let timeline_dir = self.config().layout().dir();
        let path = format!("{timeline_dir}/{time}.compaction.requested");
        match self.storage().get_opt(&path).await? {
            Some(bytes) => Ok(Some(crate::compaction_plan::CompactionPlan::from_avro(
                &bytes, time,
            )?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use lake_timeline::CHECKPOINT_KEY;

    use super::*;
    use crate::{TableConfig, TableType};

    fn rows(ids: &[i64], vs: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(vs.to_vec())),
            ],
        )
        .expect("batch")
    }

    /// A table keyed by `id`, ordered by `v`, with two buckets.
    async fn keyed_table(uri: &str, table_type: TableType) -> Table {
        let cfg = TableConfig::new(
            "t",
            table_type,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        Table::create(uri, cfg).await.expect("create")
    }

    /// A fence on the offset recorded under the checkpoint key (`"<n>"`): a write starting at
    /// `start` is fenced by any commit that recorded more. Its first check (the write's start) can
    /// run `meanwhile`, a commit by another writer landing before this one commits.
    struct OffsetFence {
        start: i64,
        meanwhile: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl std::fmt::Debug for OffsetFence {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "OffsetFence({})", self.start)
        }
    }

    impl SourceFence for OffsetFence {
        fn check(&self, committed: &[Arc<CommitMetadata>]) -> std::result::Result<(), String> {
            if let Some(f) = self.meanwhile.lock().expect("lock").take() {
                f();
            }
            let highest = committed
                .iter()
                .filter_map(|m| m.checkpoint()?.parse::<i64>().ok())
                .max();
            match highest {
                Some(h) if h > self.start => Err(format!("offset {h} is past {}", self.start)),
                _ => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn a_source_fence_stops_a_write_at_its_start_and_at_its_commit() {
        let uri = "memory://write_fence";
        let t = keyed_table(uri, TableType::MergeOnRead).await;
        let at = |offset: i64, start: i64| WriteOptions {
            extra_metadata: [(CHECKPOINT_KEY.to_owned(), offset.to_string())].into(),
            fence: Some(Arc::new(OffsetFence {
                start,
                meanwhile: std::sync::Mutex::new(None),
            })),
            ..Default::default()
        };
        t.write(vec![ChangeBatch::upserts(rows(&[1], &[1]))], at(10, 0))
            .await
            .expect("first write");
        // Starting below what the table holds: fenced before anything is written.
        let err = t
            .write(vec![ChangeBatch::upserts(rows(&[2], &[1]))], at(12, 5))
            .await
            .expect_err("fenced at start");
        assert!(
            matches!(&err, Error::SourceFenced { reason, .. } if reason.contains("offset 10")),
            "{err}"
        );
        let before = t.timeline().await.expect("timeline").instants().len();
        // Another writer commits offset 20 while this write runs: fenced at its commit, rolled back.
        let other = move || {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let t = Table::open(uri).await.expect("open");
                    let opts = WriteOptions {
                        extra_metadata: [(CHECKPOINT_KEY.to_owned(), "20".to_owned())].into(),
                        ..Default::default()
                    };
                    t.write(vec![ChangeBatch::upserts(rows(&[9], &[1]))], opts)
                        .await
                        .expect("other write");
                });
            })
            .join()
            .expect("other writer");
        };
        let opts = WriteOptions {
            fence: Some(Arc::new(OffsetFence {
                start: 10,
                meanwhile: std::sync::Mutex::new(Some(Box::new(other))),
            })),
            ..at(15, 10)
        };
        let err = t
            .write(vec![ChangeBatch::upserts(rows(&[3], &[1]))], opts)
            .await
            .expect_err("fenced at commit");
        match &err {
            Error::SourceFenced { instant, reason } => {
                assert!(reason.contains("offset 20"), "{reason}");
                let tl = t.timeline().await.expect("timeline");
                let time: InstantTime = instant.parse().expect("an instant");
                assert!(tl.find(time).is_none(), "rolled back: {:?}", tl.instants());
                assert!(tl.instants().len() > before, "the other write landed");
            }
            other => panic!("{other}"),
        }
        let ids: Vec<i64> = {
            let mut ids = Vec::new();
            let (_, batches) = t
                .read_snapshot(&crate::ReadOptions::default())
                .await
                .expect("read");
            for b in batches {
                let col = b
                    .column_by_name("id")
                    .expect("id")
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("ints")
                    .clone();
                ids.extend(col.iter().flatten());
            }
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids, [1, 9], "the fenced rows are not in the table");
    }

    #[tokio::test]
    async fn write_records_the_checkpoint_and_resolves_by_ordering_field() {
        let t = keyed_table("memory://write_checkpoint", TableType::CopyOnWrite).await;
        let opts = |cp: &str| WriteOptions {
            extra_metadata: [(CHECKPOINT_KEY.to_owned(), cp.to_owned())].into(),
            ..Default::default()
        };
        // In-batch: id 1 has versions 5 and 3 (5 wins), id 2 two equal versions (the later row wins).
        let first = t
            .write(
                vec![ChangeBatch::upserts(rows(&[1, 1, 2, 2], &[5, 3, 7, 7]))],
                opts("orders,0:4,1:0"),
            )
            .await
            .expect("write");
        assert_eq!(
            (first.rows_in, first.rows_deduped, first.inserts),
            (4, 2, 2)
        );
        // Against stored: an older id 1 is stale, id 2 is deleted by a newer delete, id 3 is new.
        let second = t
            .write(
                vec![ChangeBatch::new(
                    rows(&[1, 2, 3], &[4, 8, 1]),
                    BooleanArray::from(vec![false, true, false]),
                )],
                opts("orders,0:7,1:0"),
            )
            .await
            .expect("write");
        assert_eq!(
            (second.stale, second.deletes, second.inserts, second.updates),
            (1, 1, 1, 0)
        );
        let timeline = t.timeline().await.expect("timeline");
        let last = timeline.last_completed_write().copied().expect("commit");
        let meta = timeline.commit_metadata(&last).await.expect("metadata");
        assert_eq!(meta.checkpoint(), Some("orders,0:7,1:0"));
        assert_eq!(meta.operation_type.as_deref(), Some("UPSERT"));
        let (_, batches) = t
            .read_snapshot(&crate::ReadOptions::default())
            .await
            .expect("read");
        let mut got: Vec<(i64, i64)> = batches
            .iter()
            .flat_map(|b| {
                let ids = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                    .expect("ids");
                let vs = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .cloned()
                    .expect("vs");
                (0..b.num_rows()).map(move |i| (ids.value(i), vs.value(i)))
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, [(1, 5), (3, 1)]);
    }

    #[tokio::test]
    async fn an_empty_commit_records_its_checkpoint_and_keeps_rows_and_schema() {
        let cfg = TableConfig::new(
            "t",
            TableType::MergeOnRead,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        let t = Table::create("memory://write_empty_commit", cfg)
            .await
            .expect("create");
        let opts = |cp: &str, commit_empty: bool| WriteOptions {
            extra_metadata: [(CHECKPOINT_KEY.to_owned(), cp.to_owned())].into(),
            commit_empty,
            ..Default::default()
        };
        // Nothing written yet and no schema: still a commit carrying the checkpoint.
        let first = t
            .write(vec![], opts("orders,0:3", true))
            .await
            .expect("empty write");
        assert!(first.instant.is_some());
        t.write(
            vec![ChangeBatch::upserts(rows(&[1, 2], &[1, 1]))],
            opts("orders,0:5", false),
        )
        .await
        .expect("write");
        // Without commit_empty an empty write leaves the timeline alone.
        let skipped = t
            .write(vec![], opts("orders,0:6", false))
            .await
            .expect("empty write");
        assert_eq!(skipped.instant, None);
        let empty = t
            .write(
                vec![ChangeBatch::upserts(rows(&[], &[]))],
                opts("orders,0:9", true),
            )
            .await
            .expect("empty write");
        let timeline = t.timeline().await.expect("timeline");
        let last = timeline.last_completed_write().copied().expect("commit");
        assert_eq!(Some(last.time), empty.instant);
        assert_eq!(timeline.completed_writes().count(), 3);
        let meta = timeline.commit_metadata(&last).await.expect("metadata");
        assert_eq!(meta.checkpoint(), Some("orders,0:9"));
        assert_eq!(meta.write_stats().count(), 0);
        assert!(meta.schema().is_some(), "the schema carries over");
        let (_, batches) = t
            .read_snapshot(&crate::ReadOptions::default())
            .await
            .expect("read");
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    }
}
