//! The copy-on-write write client: upsert, insert and delete of Arrow change batches.
//!
//! One write is one instant: failed writes are rolled back first, the batch is deduplicated by
//! record key (the ordering field decides, ties go to the later row), each record is tagged with its
//! file group by the bucket index, every touched file group is rewritten in parallel into a new base
//! file (stored records merge with incoming ones by the ordering field, so a replayed older event
//! never overwrites a newer stored one), and the completed instant is published last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant as Clock;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::compute::{concat_batches, interleave};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{Action, CommitMetadata, Instant, InstantTime, State, Timeline, WriteStat};

use crate::avro_block::{DeletedRecord, encode_data_block, encode_delete_block};
use crate::config::TableType;
use crate::index::{self, DEFAULT_RECORD_SIZE};
use crate::keys::{partition_paths, record_keys};
use crate::layout::{
    BaseFile, PARTITION_METADATA, WRITE_TOKEN, bucket_of_file_id, join, marker_path,
    partition_metadata,
};
use crate::log_format::{self, BlockType, LogBlock};
use crate::parquet_io::{encode_parquet, read_parquet};
use crate::rollback::{rollback_failed_writes, rollback_instant};
use crate::schema::{self, COMMIT_SEQNO, COMMIT_TIME, RECORD_KEY, align_batch, with_meta_columns};
use crate::view::{FileSlice, FileSystemView};
use crate::{Error, Result, Table};

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
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            operation: WriteOperation::Upsert,
            extra_metadata: BTreeMap::new(),
            parallelism: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
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
}

struct Prepared {
    schema: SchemaRef,
    rows: RecordBatch,
    keys: Vec<String>,
    is_delete: Vec<bool>,
}

/// One file group to rewrite.
struct GroupTask {
    partition: String,
    file_id: String,
    prev: Option<BaseFile>,
    rows: Vec<usize>,
    task_id: usize,
    /// Merge-on-read: the log file this write appends to the group.
    append: Option<LogTarget>,
}

/// Where a merge-on-read write puts a file group's log blocks.
#[derive(Clone, Debug)]
struct LogTarget {
    /// The base instant of the slice the log belongs to.
    base_instant: InstantTime,
    /// The log version to write.
    version: u32,
    /// The slice's base file name.
    base_file: Option<String>,
}

impl LogTarget {
    /// A new log file after the slice's existing ones (object stores cannot append, so every write
    /// starts a new log version, as Hudi does where appends are impossible).
    /// `compaction`: a pending compaction of the group, whose instant begins the slice to write to.
    fn after(slice: &FileSlice, compaction: Option<InstantTime>) -> Self {
        let base_instant = compaction.map_or(slice.base_instant, |c| c.max(slice.base_instant));
        let version = slice
            .log_files
            .iter()
            .filter(|l| l.instant == base_instant)
            .map(|l| l.version)
            .max()
            .unwrap_or(0)
            + 1;
        Self {
            base_instant,
            version,
            base_file: slice.base_file.as_ref().map(|b| b.name.clone()),
        }
    }
}

struct GroupResult {
    stat: WriteStat,
    inserts: u64,
    updates: u64,
    deletes: u64,
    stale: u64,
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
        let mut timeline = self.timeline().await?;
        let mut summary = WriteSummary {
            rolled_back: rollback_failed_writes(self, &timeline).await?,
            ..Default::default()
        };
        if !summary.rolled_back.is_empty() {
            timeline = self.timeline().await?;
        }
        let table_schema = self.data_schema(&timeline).await?;
        let prepared = self.prepare(batches, table_schema.as_deref(), opts.operation)?;
        summary.rows_in = prepared.rows.num_rows();
        if summary.rows_in == 0 {
            return Ok(summary);
        }
        let partitions = partition_paths(&prepared.rows, self.config())?;
        let winners = self.dedupe(&prepared)?;
        summary.rows_deduped = winners.len();

        let touched: Vec<String> = winners
            .iter()
            .map(|r| partitions[*r].clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        summary.partitions = touched.len();

        let base_instant = timeline.last_completed_write().map(|i| i.time);
        let view = FileSystemView::load(&timeline, Some(&touched), None).await?;
        let time = InstantTime::next_after(timeline.latest_time());
        let storage = self.storage();
        let layout = self.config().layout();
        let mor = self.config().table_type == TableType::MergeOnRead;
        let action = if mor {
            Action::DeltaCommit
        } else {
            Action::Commit
        };
        let heartbeat = crate::rollback::Heartbeat::start(storage, time).await?;
        let inflight = Timeline::start(storage, layout, time, action, Bytes::new()).await?;

        let record_size = match self.config().bucket_count {
            Some(_) => DEFAULT_RECORD_SIZE,
            None => {
                self.record_size_estimate(&timeline, &prepared, &partitions)
                    .await?
            }
        };
        let rows = index::Rows {
            keys: &prepared.keys,
            partitions: &partitions,
            is_delete: &prepared.is_delete,
            winners: &winners,
            lookup: opts.operation != WriteOperation::Insert,
            top_up: !mor,
        };
        let assignments = index::assign(self.config(), storage, &view, &rows, record_size).await?;
        // File groups under a pending compaction get their logs in the slice the compaction starts.
        let mut compacting: HashMap<(String, String), InstantTime> = HashMap::new();
        if mor {
            let pending: Vec<InstantTime> = timeline
                .compactions()
                .filter(|c| !c.is_completed())
                .map(|c| c.time)
                .collect();
            for c in pending {
                if let Some(plan) = self.compaction_plan(c).await? {
                    for op in plan.operations {
                        compacting.insert((op.partition, op.file_id), c);
                    }
                }
            }
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
                    .copied();
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
        for p in &touched {
            if view.file_ids(p).next().is_none() {
                let rel = join(p, PARTITION_METADATA);
                storage
                    .put_if_absent(&rel, Bytes::from(partition_metadata(time, p)))
                    .await?;
            }
        }

        let prepared = Arc::new(prepared);
        let written: Result<Vec<Option<GroupResult>>> = futures::stream::iter(tasks)
            .map(|task| {
                let p = prepared.clone();
                async move {
                    if task.append.is_some() {
                        self.write_log(task, p, time).await
                    } else {
                        self.write_group(task, p, time, opts.operation).await
                    }
                }
            })
            .buffer_unordered(opts.parallelism.max(1))
            .try_collect()
            .await;
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                self.abort(time, &inflight).await;
                return Err(e);
            }
        };

        let mut meta = CommitMetadata {
            operation_type: Some(opts.operation.hudi_name().to_owned()),
            extra_metadata: opts.extra_metadata.clone(),
            ..Default::default()
        };
        meta.extra_metadata.insert(
            "schema".into(),
            schema::avro_schema_json(&prepared.schema, &self.config().name)?,
        );
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
        if let Err(e) = self
            .check_conflicts(time, base_instant, &timeline, &meta)
            .await
        {
            self.abort(time, &inflight).await;
            return Err(e);
        }
        Timeline::complete(
            storage,
            layout,
            &inflight,
            Bytes::from(meta.to_json_bytes()),
        )
        .await?;
        self.clear_markers(time).await;
        heartbeat.stop().await;
        summary.instant = Some(time);
        Ok(summary)
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
                Err(e) if e.is_retryable() && attempt < attempts => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// Evolves the schema, aligns and concatenates the batches, computes keys and delete flags.
    fn prepare(
        &self,
        batches: Vec<ChangeBatch>,
        table_schema: Option<&arrow::datatypes::Schema>,
        op: WriteOperation,
    ) -> Result<Prepared> {
        let config = self.config();
        let mut required: Vec<String> = config.record_key_fields.clone();
        required.extend(config.partition_fields.iter().cloned());
        required.extend(config.ordering_field.iter().cloned());
        let mut schema: Option<SchemaRef> = table_schema.map(|s| Arc::new(s.clone()));
        for b in &batches {
            schema = Some(schema::evolve(
                schema.as_deref(),
                &b.rows.schema(),
                &required,
            )?);
        }
        let schema = match schema {
            Some(s) => s,
            None => {
                return Err(Error::Schema {
                    reason: "no rows and no table schema".into(),
                });
            }
        };
        let mut aligned = Vec::with_capacity(batches.len());
        let mut is_delete = Vec::new();
        for b in &batches {
            aligned.push(align_batch(&b.rows, &schema)?);
            match (&b.is_delete, op) {
                (_, WriteOperation::Delete) => {
                    is_delete.extend(std::iter::repeat_n(true, b.rows.num_rows()))
                }
                (Some(d), _) => is_delete.extend((0..d.len()).map(|i| d.is_valid(i) && d.value(i))),
                (None, _) => is_delete.extend(std::iter::repeat_n(false, b.rows.num_rows())),
            }
        }
        let rows_schema = aligned.first().map_or(schema.clone(), |b| b.schema());
        let rows = concat_batches(&rows_schema, &aligned)?;
        let keys = record_keys(&rows, config)?;
        Ok(Prepared {
            schema,
            rows,
            keys,
            is_delete,
        })
    }

    /// Bytes per record of a base file: from the last commit's write stats (as Hudi estimates), or for
    /// a table's first write, from encoding a sample of the batch.
    async fn record_size_estimate(
        &self,
        timeline: &Timeline,
        p: &Prepared,
        partitions: &[String],
    ) -> Result<u64> {
        if let Some(last) = timeline.last_completed_write() {
            let m = timeline.commit_metadata(last).await?;
            let (bytes, records) = m.write_stats().fold((0i64, 0i64), |(b, r), s| {
                (b + s.total_write_bytes, r + s.num_writes)
            });
            if records > 0 {
                return Ok((bytes / records).max(1) as u64);
            }
        }
        let n = p.rows.num_rows().min(2000);
        if n == 0 {
            return Ok(DEFAULT_RECORD_SIZE);
        }
        // The sample carries meta columns shaped like the real ones.
        let time = InstantTime::now().to_string();
        let file = BaseFile::name_for(
            &crate::layout::new_file_id(None),
            WRITE_TOKEN,
            InstantTime::now(),
        );
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![time.as_str(); n])),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{time}_0_{i}")),
            )),
            Arc::new(StringArray::from_iter_values(p.keys[..n].iter())),
            Arc::new(StringArray::from_iter_values(partitions[..n].iter())),
            Arc::new(StringArray::from(vec![file.as_str(); n])),
        ];
        columns.extend(p.rows.slice(0, n).columns().iter().cloned());
        let sample = RecordBatch::try_new(with_meta_columns(&p.rows.schema()), columns)?;
        let bytes =
            tokio::task::spawn_blocking(move || encode_parquet("sample", &sample, Vec::new()))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        Ok((bytes.len() as u64 / n as u64).max(1))
    }

    /// The row index of the winning version of every key, in first-seen order.
    fn dedupe(&self, p: &Prepared) -> Result<Vec<usize>> {
        let order = ordering_rows(&p.rows, self.config().ordering_field.as_deref(), &[])?;
        let mut winner: HashMap<&str, usize> = HashMap::with_capacity(p.keys.len());
        let mut first_seen: Vec<&str> = Vec::new();
        for (row, key) in p.keys.iter().enumerate() {
            match winner.get_mut(key.as_str()) {
                Some(w) => {
                    let newer = order
                        .as_ref()
                        .is_none_or(|(rows, _)| rows.row(row) >= rows.row(*w));
                    if newer {
                        *w = row;
                    }
                }
                None => {
                    winner.insert(key, row);
                    first_seen.push(key);
                }
            }
        }
        Ok(first_seen.into_iter().map(|k| winner[k]).collect())
    }

    async fn write_group(
        &self,
        task: GroupTask,
        p: Arc<Prepared>,
        time: InstantTime,
        op: WriteOperation,
    ) -> Result<Option<GroupResult>> {
        let storage = self.storage();
        let started = Clock::now();
        let stored = match &task.prev {
            Some(prev) => {
                let path = prev.path();
                let bytes = storage.get(&path).await?;
                let (schema, batches) =
                    tokio::task::spawn_blocking(move || read_parquet(&path, bytes))
                        .await
                        .map_err(|e| Error::Task(e.to_string()))??;
                Some(concat_batches(&schema, &batches)?)
            }
            None => None,
        };
        let scan_ms = started.elapsed().as_millis() as i64;
        let has_new_rows = task.rows.iter().any(|r| !p.is_delete[*r]);
        if stored.is_none() && (!has_new_rows || op == WriteOperation::Delete) {
            return Ok(None);
        }
        let name = BaseFile::name_for(&task.file_id, WRITE_TOKEN, time);
        let rel = join(&task.partition, &name);
        let kind = if stored.is_some() { "MERGE" } else { "CREATE" };
        storage
            .put(&marker_path(time, &rel, kind), Bytes::new())
            .await?;
        let ordering = self.config().ordering_field.clone();
        let partition = task.partition.clone();
        let file_id = task.file_id.clone();
        let rel_for_encode = rel.clone();
        let merge_started = Clock::now();
        let (bytes, counts) = tokio::task::spawn_blocking(move || -> Result<(Bytes, [u64; 5])> {
            let merged = merge_group(
                &p,
                &task.rows,
                stored,
                ordering.as_deref(),
                op,
                time,
                &name,
                &partition,
                task.task_id,
            )?;
            let footer = vec![
                ("hoodie_min_record_key".to_owned(), merged.min_key.clone()),
                ("hoodie_max_record_key".to_owned(), merged.max_key.clone()),
            ];
            let bytes = encode_parquet(&rel_for_encode, &merged.batch, footer)?;
            Ok((
                bytes,
                [
                    merged.inserts,
                    merged.updates,
                    merged.deletes,
                    merged.stale,
                    merged.batch.num_rows() as u64,
                ],
            ))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let size = bytes.len() as i64;
        storage.put(&rel, bytes).await?;
        let [inserts, updates, deletes, stale, written] = counts;
        let stat = WriteStat {
            file_id,
            path: Some(rel),
            prev_commit: Some(
                task.prev
                    .as_ref()
                    .map_or("null".to_owned(), |b| b.instant.to_string()),
            ),
            num_writes: written as i64,
            num_deletes: deletes as i64,
            num_update_writes: updates as i64,
            num_inserts: inserts as i64,
            total_write_bytes: size,
            partition_path: Some(task.partition.clone()),
            file_size_in_bytes: size,
            runtime_stats: Some(lake_timeline::metadata_runtime(
                scan_ms,
                merge_started.elapsed().as_millis() as i64,
                task.prev.is_none(),
            )),
            ..Default::default()
        };
        Ok(Some(GroupResult {
            stat,
            inserts,
            updates,
            deletes,
            stale,
        }))
    }

    /// Fails with [`Error::WriteConflict`] if a write completed since `base` touched our file groups,
    /// or (merge-on-read) a compaction scheduled since `start` covers a file group we appended logs
    /// to under an older slice: its new base file would not hold our records.
    async fn check_conflicts(
        &self,
        time: InstantTime,
        base: Option<InstantTime>,
        start: &Timeline,
        ours: &CommitMetadata,
    ) -> Result<()> {
        let timeline = self.timeline().await?;
        let mine: HashSet<(String, Option<u32>, String)> = ours
            .write_stats()
            .map(|s| {
                (
                    s.partition_path.clone().unwrap_or_default(),
                    bucket_of_file_id(&s.file_id),
                    s.file_id.clone(),
                )
            })
            .collect();
        let others: Vec<Instant> = timeline
            .completed_writes()
            .filter(|i| i.time != time && base.is_none_or(|b| i.time > b))
            .filter(|i| !timeline.is_compaction(i.time))
            .copied()
            .collect();
        for other in others {
            let meta = timeline.commit_metadata(&other).await?;
            let clashes: Vec<String> = meta
                .write_stats()
                .filter(|s| {
                    let part = s.partition_path.clone().unwrap_or_default();
                    let bucket = bucket_of_file_id(&s.file_id);
                    mine.iter().any(|(p, b, f)| {
                        *p == part && (*f == s.file_id || (b.is_some() && *b == bucket))
                    })
                })
                .map(|s| s.file_id.clone())
                .collect();
            if !clashes.is_empty() {
                return Err(Error::WriteConflict {
                    instant: time.to_string(),
                    other: other.time.to_string(),
                    file_ids: clashes,
                });
            }
        }
        let new_compactions: Vec<Instant> = timeline
            .compactions()
            .filter(|c| !start.is_compaction(c.time))
            .copied()
            .collect();
        for c in new_compactions {
            let Some(plan) = self.compaction_plan(c.time).await? else {
                continue;
            };
            let clashes: Vec<String> = plan
                .operations
                .iter()
                .filter(|op| {
                    ours.write_stats().any(|s| {
                        s.file_id == op.file_id
                            && s.partition_path.as_deref().unwrap_or_default() == op.partition
                            && s.log_files.is_some()
                    })
                })
                .map(|op| op.file_id.clone())
                .collect();
            if !clashes.is_empty() {
                return Err(Error::WriteConflict {
                    instant: time.to_string(),
                    other: c.time.to_string(),
                    file_ids: clashes,
                });
            }
        }
        Ok(())
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

    /// Appends one merge-on-read log file to a file group: a data block with the group's upserts
    /// and a delete block with its deletes (each carrying its ordering value).
    async fn write_log(
        &self,
        task: GroupTask,
        p: Arc<Prepared>,
        time: InstantTime,
    ) -> Result<Option<GroupResult>> {
        let Some(target) = task.append.clone() else {
            return Ok(None);
        };
        let existed = target.base_instant != time || target.version > 1;
        if !existed && task.rows.iter().all(|r| p.is_delete[*r]) {
            // Deletes of keys a new file group never held.
            return Ok(None);
        }
        let storage = self.storage();
        let name = format!(
            ".{}_{}.log.{}_{WRITE_TOKEN}",
            task.file_id, target.base_instant, target.version
        );
        let rel = join(&task.partition, &name);
        storage
            .put(&marker_path(time, &rel, "APPEND"), Bytes::new())
            .await?;
        let started = Clock::now();
        let table_name = self.config().name.clone();
        let ordering = self.config().ordering_field.clone();
        let partition = task.partition.clone();
        let file_id = task.file_id.clone();
        let rows = task.rows.clone();
        let task_id = task.task_id;
        let (bytes, upserts, deletes) =
            tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, u64, u64)> {
                encode_log_file(
                    &p,
                    &rows,
                    time,
                    &partition,
                    &file_id,
                    task_id,
                    &table_name,
                    ordering.as_deref(),
                )
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let size = bytes.len() as i64;
        if !storage.put_if_absent(&rel, Bytes::from(bytes)).await? {
            return Err(Error::WriteConflict {
                instant: time.to_string(),
                other: "a concurrent writer".into(),
                file_ids: vec![task.file_id.clone()],
            });
        }
        let blocks = i64::from(upserts > 0) + i64::from(deletes > 0);
        let stat = WriteStat {
            file_id: task.file_id.clone(),
            path: Some(rel),
            prev_commit: Some(target.base_instant.to_string()),
            num_writes: upserts as i64,
            num_deletes: deletes as i64,
            num_update_writes: if existed { upserts as i64 } else { 0 },
            num_inserts: if existed { 0 } else { upserts as i64 },
            total_write_bytes: size,
            partition_path: Some(task.partition.clone()),
            total_log_records: (upserts + deletes) as i64,
            total_log_blocks: blocks,
            file_size_in_bytes: size,
            log_version: Some(i64::from(target.version)),
            log_offset: Some(0),
            base_file: Some(target.base_file.clone().unwrap_or_default()),
            log_files: Some(vec![name]),
            runtime_stats: Some(lake_timeline::metadata_runtime(
                0,
                started.elapsed().as_millis() as i64,
                !existed,
            )),
            ..Default::default()
        };
        Ok(Some(GroupResult {
            stat,
            inserts: if existed { 0 } else { upserts },
            updates: if existed { upserts } else { 0 },
            deletes,
            stale: 0,
        }))
    }

    /// Best-effort rollback of our own failed instant; a later writer finishes it if this fails.
    async fn abort(&self, time: InstantTime, inflight: &Instant) {
        if let Ok(timeline) = self.timeline().await {
            let target = Instant::new(time, inflight.action, State::Inflight);
            let _ = rollback_instant(self, &timeline, &target).await;
        }
    }

    async fn clear_markers(&self, time: InstantTime) {
        let storage = self.storage();
        let dir = format!("{}/{time}", crate::layout::MARKERS_DIR);
        if let Ok(markers) = storage.list_recursive(&dir).await {
            for m in markers {
                let _ = storage.delete(&storage.relative(&m.location)).await;
            }
        }
    }
}

/// The bytes of one log file: a data block of the upserts among `rows` (meta columns filled, the
/// file name column holding the file id, as Hudi's log records do) and a delete block of the deletes.
/// Returns the bytes and the upsert and delete counts.
#[allow(clippy::too_many_arguments)]
fn encode_log_file(
    p: &Prepared,
    rows: &[usize],
    time: InstantTime,
    partition: &str,
    file_id: &str,
    task_id: usize,
    table_name: &str,
    ordering: Option<&str>,
) -> Result<(Vec<u8>, u64, u64)> {
    let upserts: Vec<u32> = rows
        .iter()
        .filter(|r| !p.is_delete[**r])
        .map(|r| *r as u32)
        .collect();
    let deletes: Vec<usize> = rows.iter().copied().filter(|r| p.is_delete[*r]).collect();
    let time_s = time.to_string();
    let mut out = Vec::new();
    let header = |schema: &str| {
        BTreeMap::from([
            (log_format::header::INSTANT_TIME, time_s.clone()),
            (log_format::header::SCHEMA, schema.to_owned()),
        ])
    };
    let full_schema = with_meta_columns(&p.rows.schema());
    let schema_json = schema::avro_schema_json(&full_schema, table_name)?;
    if !upserts.is_empty() {
        let data = take_record_batch(&p.rows, &UInt32Array::from(upserts.clone()))?;
        let n = data.num_rows();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![time_s.as_str(); n])),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{time_s}_{task_id}_{i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                upserts.iter().map(|r| p.keys[*r as usize].as_str()),
            )),
            Arc::new(StringArray::from(vec![partition; n])),
            Arc::new(StringArray::from(vec![file_id; n])),
        ];
        columns.extend(data.columns().iter().cloned());
        let batch = RecordBatch::try_new(full_schema.clone(), columns)?;
        let block = LogBlock {
            block_type: BlockType::AvroData,
            header: header(&schema_json),
            content: Bytes::from(encode_data_block(&batch)?),
            footer: BTreeMap::new(),
        };
        out.extend_from_slice(&block.encode());
    }
    if !deletes.is_empty() {
        let records: Vec<DeletedRecord> = deletes
            .iter()
            .map(|r| DeletedRecord {
                key: p.keys[*r].clone(),
                partition: partition.to_owned(),
                ordering: crate::merge::ordering_value(&p.rows, ordering, *r),
            })
            .collect();
        let block = LogBlock {
            block_type: BlockType::Delete,
            header: header(&schema_json),
            content: Bytes::from(encode_delete_block(&records)),
            footer: BTreeMap::new(),
        };
        out.extend_from_slice(&block.encode());
    }
    Ok((out, upserts.len() as u64, deletes.len() as u64))
}

/// Comparable ordering values of a column (plus optional extra arrays converted with the same
/// converter, so their rows compare with these); `None` when the table has no ordering field.
fn ordering_rows(
    batch: &RecordBatch,
    field: Option<&str>,
    extra: &[ArrayRef],
) -> Result<Option<(Rows, Vec<Rows>)>> {
    let Some(field) = field else { return Ok(None) };
    let col = batch.column_by_name(field).ok_or_else(|| Error::Schema {
        reason: format!("the batch has no ordering column {field:?}"),
    })?;
    let conv = RowConverter::new(vec![SortField::new(col.data_type().clone())])?;
    let rows = conv.convert_columns(std::slice::from_ref(col))?;
    let others = extra
        .iter()
        .map(|a| conv.convert_columns(std::slice::from_ref(a)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some((rows, others)))
}

struct Merged {
    batch: RecordBatch,
    inserts: u64,
    updates: u64,
    deletes: u64,
    stale: u64,
    min_key: String,
    max_key: String,
}

/// Merges the incoming rows of one file group with its stored records into the new base file's rows.
#[allow(clippy::too_many_arguments)]
fn merge_group(
    p: &Prepared,
    rows: &[usize],
    stored: Option<RecordBatch>,
    ordering: Option<&str>,
    op: WriteOperation,
    time: InstantTime,
    file_name: &str,
    partition: &str,
    task_id: usize,
) -> Result<Merged> {
    let idx = UInt32Array::from(rows.iter().map(|r| *r as u32).collect::<Vec<_>>());
    let incoming = take_record_batch(&p.rows, &idx)?;
    let keys: Vec<&str> = rows.iter().map(|r| p.keys[*r].as_str()).collect();
    let deletes: Vec<bool> = rows.iter().map(|r| p.is_delete[*r]).collect();
    let out_schema = with_meta_columns(&p.schema);
    let data_schema = p.schema.clone();

    let (stored_data, stored_meta) = match &stored {
        Some(s) => {
            let data = align_batch(s, &data_schema)?;
            let meta: Vec<StringArray> = [COMMIT_TIME, COMMIT_SEQNO, RECORD_KEY]
                .iter()
                .map(|c| {
                    s.column_by_name(c)
                        .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                        .ok_or_else(|| Error::Schema {
                            reason: format!("stored base file lacks meta column {c}"),
                        })
                })
                .collect::<Result<_>>()?;
            (Some(data), Some(meta))
        }
        None => (None, None),
    };
    let stored_rows = stored_data.as_ref().map_or(0, |b| b.num_rows());
    let stored_keys: Option<&StringArray> = stored_meta.as_ref().map(|m| &m[2]);

    let stored_order_col: Vec<ArrayRef> = match (&stored_data, ordering) {
        (Some(s), Some(f)) => s.column_by_name(f).cloned().into_iter().collect(),
        _ => Vec::new(),
    };
    let order = ordering_rows(&incoming, ordering, &stored_order_col)?;

    let mut by_key: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        by_key.insert(k, i);
    }
    let mut consumed = vec![false; keys.len()];
    // (source, row): source 0 = stored, 1 = incoming.
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(stored_rows + keys.len());
    let (mut inserts, mut updates, mut deleted, mut stale) = (0u64, 0u64, 0u64, 0u64);
    if let Some(sk) = stored_keys {
        for s in 0..stored_rows {
            let key = if sk.is_valid(s) { sk.value(s) } else { "" };
            let hit = if op == WriteOperation::Insert {
                None
            } else {
                by_key.get(key).copied()
            };
            let Some(i) = hit.filter(|i| !consumed[*i]) else {
                picks.push((0, s));
                continue;
            };
            consumed[i] = true;
            let incoming_wins = match &order {
                Some((inc, others)) => others.first().is_none_or(|st| inc.row(i) >= st.row(s)),
                None => true,
            };
            if !incoming_wins {
                stale += 1;
                picks.push((0, s));
            } else if deletes[i] {
                deleted += 1;
            } else {
                updates += 1;
                picks.push((1, i));
            }
        }
    }
    for i in 0..keys.len() {
        if !consumed[i] && !deletes[i] {
            inserts += 1;
            picks.push((1, i));
        }
    }

    let n = picks.len();
    let time_s = time.to_string();
    let mut seq = 0usize;
    let mut commit_time = Vec::with_capacity(n);
    let mut seqno = Vec::with_capacity(n);
    let mut rec_key = Vec::with_capacity(n);
    for &(src, r) in &picks {
        if src == 0 {
            let m = stored_meta.as_ref().map(|m| {
                (
                    m[0].value(r).to_owned(),
                    m[1].value(r).to_owned(),
                    m[2].value(r).to_owned(),
                )
            });
            let (c, s, k) = m.unwrap_or_default();
            commit_time.push(c);
            seqno.push(s);
            rec_key.push(k);
        } else {
            commit_time.push(time_s.clone());
            seqno.push(format!("{time_s}_{task_id}_{seq}"));
            seq += 1;
            rec_key.push(keys[r].to_owned());
        }
    }
    let min_key = rec_key.iter().min().cloned().unwrap_or_default();
    let max_key = rec_key.iter().max().cloned().unwrap_or_default();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(commit_time)),
        Arc::new(StringArray::from(seqno)),
        Arc::new(StringArray::from(rec_key)),
        Arc::new(StringArray::from(vec![partition; n])),
        Arc::new(StringArray::from(vec![file_name; n])),
    ];
    for (ci, _) in data_schema.fields().iter().enumerate() {
        let inc = incoming.column(ci).as_ref();
        let col = match &stored_data {
            Some(s) => interleave(&[s.column(ci).as_ref(), inc], &picks)?,
            None => interleave(
                &[inc],
                &picks.iter().map(|(_, r)| (0, *r)).collect::<Vec<_>>(),
            )?,
        };
        columns.push(col);
    }
    let out_schema = if columns
        .iter()
        .skip(5)
        .zip(data_schema.fields())
        .any(|(c, f)| !f.is_nullable() && c.null_count() > 0)
    {
        Arc::new(arrow::datatypes::Schema::new(
            out_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ))
    } else {
        out_schema
    };
    let batch = RecordBatch::try_new(out_schema, columns)?;
    Ok(Merged {
        batch,
        inserts,
        updates,
        deletes: deleted,
        stale,
        min_key,
        max_key,
    })
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

    #[tokio::test]
    async fn write_records_the_checkpoint_and_resolves_by_ordering_field() {
        let cfg = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        let t = Table::create("memory://write_checkpoint", cfg)
            .await
            .expect("create");
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
}
