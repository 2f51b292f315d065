//! Compaction of merge-on-read tables: file slices with logs are merged into new base files.
//!
//! **Schedule**: when the strategy says it is due, the latest slice (base file and committed logs)
//! of every file group with logs and no pending compaction goes into a `HoodieCompactionPlan`,
//! published as `<t>.compaction.requested`. Scheduling refuses while a write is in flight, and the plan
//! is decided on the commit ledger after checking every write completed since planning began (one
//! that touched a planned file group withdraws the plan), so every committed log is either in the
//! plan or in the slice that begins at `t`; a write still running that logged to a planned group
//! under the old slice fails its own check against the plan and retries. Writers that find the
//! pending compaction append their logs to that new slice; readers merge both slices until the
//! compaction completes.
//!
//! **Execute**: `<t>.compaction.inflight`, then one new base file per planned slice at instant `t`
//! (records keep their `_hoodie_commit_time`; a slice whose records were all deleted still gets an
//! empty base file, which ends the old slice), then `<t>.commit` with `compacted: true` and operation
//! `COMPACT`. An interrupted compaction is executed again from its plan; its files are rewritten
//! under the same names.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant as Clock;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lake_table::compaction_plan::{CompactionOperation, CompactionPlan};
use lake_table::layout::{BaseFile, LogFile, WRITE_TOKEN, join, marker_path};
use lake_table::schema::{FILE_NAME, RECORD_KEY, align_batch, avro_schema_json, with_meta_columns};
use lake_table::timeline::{
    Action, CommitMetadata, Instant, InstantTime, State, Timeline, WriteStat,
};
use lake_table::view::{FileSlice, FileSystemView};
use lake_table::{Error, Result, Table, TableType, encode_parquet_batches};

/// When a compaction is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionStrategy {
    /// Due after this many deltacommits since the last compaction (Hudi's
    /// `hoodie.compact.inline.max.delta.commits`, default 5).
    pub max_delta_commits: usize,
    /// Due once the logs of the table hold this many bytes (0: never by size).
    pub max_log_bytes: u64,
}

impl Default for CompactionStrategy {
    fn default() -> Self {
        Self {
            max_delta_commits: 5,
            max_log_bytes: 0,
        }
    }
}

/// What scheduling did.
#[derive(Clone, Debug, PartialEq)]
pub enum Scheduled {
    /// A plan was published at this instant for these file groups.
    Planned {
        /// The compaction instant.
        instant: InstantTime,
        /// File groups in the plan.
        file_groups: usize,
        /// Bytes of log files in the plan.
        log_bytes: u64,
    },
    /// Nothing was scheduled, and why.
    NotDue(String),
}

/// What executing one compaction did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionReport {
    /// The compaction instant.
    pub instant: Option<InstantTime>,
    /// File groups compacted.
    pub file_groups: usize,
    /// Records written into the new base files.
    pub records: u64,
    /// Bytes of base and log files read.
    pub bytes_read: u64,
    /// Bytes of base files written.
    pub bytes_written: u64,
}

fn is_write(i: &Instant) -> bool {
    matches!(i.action, Action::Commit | Action::DeltaCommit)
}

/// Schedules a compaction of `table` if `strategy` says it is due.
pub async fn schedule(table: &Table, strategy: CompactionStrategy) -> Result<Scheduled> {
    if table.config().table_type != TableType::MergeOnRead {
        return Ok(Scheduled::NotDue(
            "copy-on-write tables need no compaction".into(),
        ));
    }
    let start = lake_table::commit::start(table).await?;
    let timeline = start.timeline.clone();
    if let Some(w) = timeline.pending().find(|i| is_write(i)) {
        return Ok(Scheduled::NotDue(format!(
            "write {} is in flight; compaction is scheduled between writes",
            w.time
        )));
    }
    let last_compaction = timeline
        .compactions()
        .filter(|c| c.is_completed())
        .map(|c| c.time)
        .last();
    let delta_commits = timeline
        .completed_writes()
        .filter(|i| i.action == Action::DeltaCommit && last_compaction.is_none_or(|c| i.time > c))
        .count();
    // File groups already in a pending compaction wait for it.
    let mut pending_groups: HashSet<(String, String)> = HashSet::new();
    let pending: Vec<InstantTime> = timeline
        .compactions()
        .filter(|c| !c.is_completed())
        .map(|c| c.time)
        .collect();
    for c in &pending {
        if let Some(plan) = table.compaction_plan(*c).await? {
            pending_groups.extend(
                plan.operations
                    .into_iter()
                    .map(|op| (op.partition, op.file_id)),
            );
        }
    }
    let view = FileSystemView::load(&timeline, None, None).await?;
    // Only logs that completed deltacommits wrote: a running writer's log is not the plan's to take
    // (that writer then fails its check against the plan and retries in the new slice).
    let mut committed_logs: HashSet<(String, String)> = HashSet::new();
    let deltas: Vec<Instant> = timeline
        .completed_writes()
        .filter(|i| i.action == Action::DeltaCommit)
        .copied()
        .collect();
    for d in &deltas {
        for s in timeline.commit_metadata_cached(d).await?.write_stats() {
            if let Some(path) = &s.path {
                let name = path.rsplit('/').next().unwrap_or(path);
                committed_logs.insert((
                    s.partition_path.clone().unwrap_or_default(),
                    name.to_owned(),
                ));
            }
        }
    }
    let candidates: Vec<FileSlice> = view
        .latest_slices()
        .into_iter()
        .map(|mut s| {
            let part = s.partition.clone();
            s.log_files
                .retain(|l| committed_logs.contains(&(part.clone(), l.name.clone())));
            s
        })
        .filter(|s| !s.log_files.is_empty())
        .filter(|s| !pending_groups.contains(&(s.partition.clone(), s.file_id.clone())))
        .collect();
    let log_bytes: u64 = candidates
        .iter()
        .flat_map(|s| &s.log_files)
        .map(|l| l.size)
        .sum();
    let due_by_commits = delta_commits >= strategy.max_delta_commits.max(1);
    let due_by_size = strategy.max_log_bytes > 0 && log_bytes >= strategy.max_log_bytes;
    if candidates.is_empty() || !(due_by_commits || due_by_size) {
        return Ok(Scheduled::NotDue(format!(
            "{delta_commits} deltacommits since the last compaction (due at {}), {log_bytes} log bytes in {} file groups",
            strategy.max_delta_commits.max(1),
            candidates.len()
        )));
    }
    let plan = CompactionPlan {
        operations: candidates
            .iter()
            .map(|s| CompactionOperation {
                base_instant: s.base_instant.to_string(),
                delta_files: s.log_files.iter().map(|l| l.name.clone()).collect(),
                data_file: s.base_file.as_ref().map(|b| b.name.clone()),
                file_id: s.file_id.clone(),
                partition: s.partition.clone(),
                metrics: vec![
                    (
                        "TOTAL_LOG_FILES_SIZE".into(),
                        s.log_files.iter().map(|l| l.size as f64).sum(),
                    ),
                    ("TOTAL_LOG_FILES".into(), s.log_files.len() as f64),
                ],
            })
            .collect(),
        extra_metadata: Vec::new(),
    };
    let time = lake_table::commit::claim_time(table.storage(), timeline.latest_time()).await?;
    let requested = Instant::new(time, Action::Compaction, State::Requested);
    let planned: HashSet<(String, String)> = plan
        .operations
        .iter()
        .map(|op| (op.partition.clone(), op.file_id.clone()))
        .collect();
    let decided = lake_table::commit::decide_and_publish(
        table,
        start.seq,
        &requested,
        Bytes::from(plan.to_avro()),
        |e| {
            if e.instant.action == Action::Restore {
                // A restore may delete files of the planned slices.
                return Err(Error::WriteConflict {
                    instant: time.to_string(),
                    other: e.instant.time.to_string(),
                    file_ids: Vec::new(),
                });
            }
            if !e.header.rollback.is_empty()
                || !is_write(&e.instant)
                || e.instant.state != State::Completed
            {
                return Ok(());
            }
            let meta = CommitMetadata::from_json_bytes(&e.payload)
                .map_err(|err| Error::Corrupt(format!("ledger entry {}: {err}", e.seq)))?;
            let touched: Vec<String> = meta
                .write_stats()
                .filter(|s| {
                    planned.contains(&(
                        s.partition_path.clone().unwrap_or_default(),
                        s.file_id.clone(),
                    ))
                })
                .map(|s| s.file_id.clone())
                .collect();
            if meta.compacted || touched.is_empty() {
                return Ok(());
            }
            Err(Error::WriteConflict {
                instant: time.to_string(),
                other: e.instant.time.to_string(),
                file_ids: touched,
            })
        },
    )
    .await;
    match decided {
        Ok(_) => {}
        Err(Error::WriteConflict { other, .. }) => {
            return Ok(Scheduled::NotDue(format!(
                "write {other} completed while planning; the plan was withdrawn"
            )));
        }
        Err(e) => return Err(e),
    }
    Ok(Scheduled::Planned {
        instant: time,
        file_groups: plan.operations.len(),
        log_bytes,
    })
}

/// Executes every pending compaction, oldest first.
pub async fn execute_pending(table: &Table, parallelism: usize) -> Result<Vec<CompactionReport>> {
    let timeline = table.timeline().await?;
    let pending: Vec<InstantTime> = timeline
        .compactions()
        .filter(|c| !c.is_completed())
        .map(|c| c.time)
        .collect();
    let mut out = Vec::new();
    for c in pending {
        out.push(execute(table, c, parallelism).await?);
    }
    Ok(out)
}

/// Executes the pending compaction at `time` from its plan.
pub async fn execute(
    table: &Table,
    time: InstantTime,
    parallelism: usize,
) -> Result<CompactionReport> {
    let plan = table.compaction_plan(time).await?.ok_or_else(|| {
        Error::Unsupported(format!("there is no compaction plan at instant {time}"))
    })?;
    let storage = table.storage();
    let layout = table.config().layout();
    let start = lake_table::commit::start(table).await?;
    // Alive while it runs: the ledger is not trimmed past its start, however long it takes.
    let heartbeat = lake_table::commit::Heartbeat::start(storage, time, start.seq).await?;
    let timeline = start.timeline.clone();
    let inflight = Instant::new(time, Action::Compaction, State::Inflight);
    if !storage.exists(&timeline.instant_path(&inflight)).await? {
        Timeline::publish(storage, layout, &inflight, Bytes::new()).await?;
    }
    let data_schema = table
        .data_schema(&timeline)
        .await?
        .ok_or_else(|| Error::Schema {
            reason: "the table has no schema to compact with".into(),
        })?;
    let schema = with_meta_columns(&data_schema);
    let ops = plan.operations.clone();
    let results: Vec<(WriteStat, u64, u64)> = futures::stream::iter(ops)
        .map(|op| compact_group(table, &timeline, op, time, schema.clone()))
        .buffer_unordered(parallelism.max(1))
        .try_collect()
        .await?;
    let mut meta = CommitMetadata {
        compacted: true,
        operation_type: Some("COMPACT".into()),
        ..Default::default()
    };
    meta.extra_metadata.insert(
        "schema".into(),
        avro_schema_json(&data_schema, &table.config().name)?,
    );
    let mut report = CompactionReport {
        instant: Some(time),
        file_groups: results.len(),
        ..Default::default()
    };
    for (stat, records, read) in results {
        report.records += records;
        report.bytes_read += read;
        report.bytes_written += stat.file_size_in_bytes as u64;
        meta.partition_to_write_stats
            .entry(stat.partition_path.clone().unwrap_or_default())
            .or_default()
            .push(stat);
    }
    let done = Instant::new(time, Action::Compaction, State::Completed);
    if !storage.exists(&timeline.instant_path(&done)).await? {
        lake_table::commit::decide_and_publish(
            table,
            start.seq,
            &done,
            Bytes::from(meta.to_json_bytes()),
            |_| Ok(()),
        )
        .await?;
    }
    let markers = storage
        .list_recursive(&format!("{}/{time}", lake_table::layout::MARKERS_DIR))
        .await?;
    for m in markers {
        let _ = storage.delete(&storage.relative(&m.location)).await;
    }
    heartbeat.stop().await;
    Ok(report)
}

/// Merges one planned slice into its new base file; returns its write stat, records written and
/// bytes read.
async fn compact_group(
    table: &Table,
    timeline: &Timeline,
    op: CompactionOperation,
    time: InstantTime,
    schema: arrow::datatypes::SchemaRef,
) -> Result<(WriteStat, u64, u64)> {
    let started = Clock::now();
    let storage = table.storage();
    let base_instant: InstantTime = op
        .base_instant
        .parse()
        .map_err(|_| Error::Corrupt(format!("compaction {time}: bad base instant")))?;
    let size_of = |name: &str| {
        let path = join(&op.partition, name);
        async move { storage.head_size(&path).await }
    };
    let mut log_files = Vec::new();
    let mut log_bytes = 0u64;
    for name in &op.delta_files {
        let size = size_of(name).await?;
        log_bytes += size;
        if let Some(l) = LogFile::parse(&op.partition, name, size) {
            log_files.push(l);
        }
    }
    let base_file = match &op.data_file {
        Some(name) => BaseFile::parse(&op.partition, name, size_of(name).await?),
        None => None,
    };
    let read = log_bytes + base_file.as_ref().map_or(0, |b| b.size);
    let slice = FileSlice {
        partition: op.partition.clone(),
        file_id: op.file_id.clone(),
        base_instant,
        base_file,
        log_files: log_files.clone(),
        cdc_files: Vec::new(),
    };
    let batches = table
        .read_merged_slice(timeline, &slice, &schema, None)
        .await?;
    let name = BaseFile::name_for(&op.file_id, WRITE_TOKEN, time);
    let rel = join(&op.partition, &name);
    storage
        .put(&marker_path(time, &rel, "CREATE"), Bytes::new())
        .await?;
    let scan_ms = started.elapsed().as_millis() as i64;
    let merge_started = Clock::now();
    let (bytes, records) = {
        let name = name.clone();
        let rel = rel.clone();
        tokio::task::spawn_blocking(move || -> Result<(Bytes, u64)> {
            // Batches go to the writer as merged (no concatenated copy); every row's file name
            // is the new file's.
            let file_idx = schema.index_of(FILE_NAME)?;
            let mut n = 0usize;
            let mut min: Option<String> = None;
            let mut max: Option<String> = None;
            let aligned = batches
                .iter()
                .map(|b| {
                    let b = align_batch(b, &schema)?;
                    let rows = b.num_rows();
                    n += rows;
                    if let Some(keys) = b
                        .column_by_name(RECORD_KEY)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    {
                        for k in keys.iter().flatten() {
                            if min.as_deref().is_none_or(|m| k < m) {
                                min = Some(k.to_owned());
                            }
                            if max.as_deref().is_none_or(|m| k > m) {
                                max = Some(k.to_owned());
                            }
                        }
                    }
                    let mut columns: Vec<ArrayRef> = b.columns().to_vec();
                    columns[file_idx] = Arc::new(StringArray::from(vec![name.as_str(); rows]));
                    // Against the table schema: a null in a column it declares required is an
                    // error, never a default value written in its place.
                    Ok(RecordBatch::try_new(schema.clone(), columns)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let footer = vec![
                ("hoodie_min_record_key".to_owned(), min.unwrap_or_default()),
                ("hoodie_max_record_key".to_owned(), max.unwrap_or_default()),
            ];
            let bytes = encode_parquet_batches(&rel, &schema, &aligned, footer)?;
            Ok((bytes, n as u64))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??
    };
    let size = bytes.len() as i64;
    storage.put(&rel, bytes).await?;
    let stat = WriteStat {
        file_id: op.file_id.clone(),
        path: Some(rel),
        prev_commit: Some(op.base_instant.clone()),
        num_writes: records as i64,
        total_write_bytes: size,
        partition_path: Some(op.partition.clone()),
        total_log_files_compacted: log_files.len() as i64,
        total_log_size_compacted: log_bytes as i64,
        total_updated_records_compacted: records as i64,
        file_size_in_bytes: size,
        runtime_stats: Some(lake_table::timeline::metadata_runtime(
            scan_ms,
            merge_started.elapsed().as_millis() as i64,
            true,
        )),
        ..Default::default()
    };
    Ok((stat, records, read))
}
