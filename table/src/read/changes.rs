//! The change feed: what each completed write in a range (begin, end] did to each record — an
//! insert with its after image, an update with its before and after images, a delete with its
//! before image — inferred from the file slices the write touched, as Hudi infers it for tables
//! without CDC log files.
//!
//! For each write `C` in the range the feed reads the file groups `C`'s commit metadata names (the
//! groups it wrote and the groups it replaced) as of the write before it and as of `C`, and compares
//! them record by record on (`_hoodie_partition_path`, `_hoodie_record_key`): a key only after is an
//! insert, a key only before a delete, a key in both whose `_hoodie_commit_time` is `C` (after the
//! state before it) an update. A netted feed does the same once for the whole range.
//! Compactions and clustering change files, not records, and are left out. Applying the rows in
//! order — keyed by partition path and record key, `d` removes, `i` and `u` put the after image —
//! turns the table as of `begin` into the table as of `end`.
//!
//! A write whose stats name CDC log files (`cdcStats`, tables with `hoodie.table.cdc.enabled`) is
//! read from them instead, as Hudi's CDC reader does (its `AS_IS` case): the logs hold the change
//! type and, by logging mode, the key and the images; an image they lack is looked up by key in the
//! group's base file before or after the write, and a key they lack is derived from the images by
//! the table's key generator. [`ChangeFeed::sources`] says how many group changes came from each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, StructArray, UInt32Array, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, concat_batches, interleave, take};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{Action, Instant, InstantTime, Layout, Timeline};

use crate::archive::ArchivedTimeline;
use crate::cdc::decode_cdc_log;
use crate::config::TableConfig;
use crate::merge::{SliceBytes, SliceMerge};
use crate::parquet_io::{read_parquet_columns, read_parquet_rows};
use crate::schema::{
    COMMIT_TIME, RECORD_KEY, align_batch, is_meta_column, with_meta_columns, without_meta_columns,
};
use crate::view::{FileSlice, FileSystemView, check_not_cleaned};
use crate::{Error, Result, Table};

/// The change type column: `i`, `u` or `d`.
pub const OP: &str = "op";
/// The instant time of the write that made the change (Hudi's CDC column name).
pub const TS: &str = "ts_ms";
/// The changed record's key.
pub const KEY: &str = "record_key";
/// The changed record's partition path.
pub const PARTITION: &str = "partition_path";
/// The record before the change (null for inserts), over the table's data columns.
pub const BEFORE: &str = "before";
/// The record after the change (null for deletes), over the table's data columns.
pub const AFTER: &str = "after";

/// What a change-feed row says happened to its record. The order is the feed's order within a
/// write: deletes first, so that a key moved to another partition is removed before it is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeOp {
    /// The record was deleted (`d`).
    Delete,
    /// The record was rewritten (`u`).
    Update,
    /// The record was inserted (`i`).
    Insert,
}

impl ChangeOp {
    /// The `op` column's value.
    pub fn code(self) -> &'static str {
        match self {
            ChangeOp::Delete => "d",
            ChangeOp::Update => "u",
            ChangeOp::Insert => "i",
        }
    }
}

/// A change-feed query.
#[derive(Clone, Debug)]
pub struct ChangeQuery {
    /// Exclusive begin: an instant time (timeline layout 1) or a completion time (layout 2).
    pub begin: InstantTime,
    /// Inclusive end; the latest completed write when `None`.
    pub end: Option<InstantTime>,
    /// One row per record over the whole range — the record as of `begin` against the record as of
    /// the end, in one comparison of the groups the range touched — instead of one per record per
    /// write; records inserted and deleted within the range drop out, and `ts_ms` is the record's
    /// last write (the range's end for deletes).
    pub net: bool,
    /// The read schema (meta columns included) the images follow; the latest table schema when
    /// `None`.
    pub schema: Option<SchemaRef>,
    /// Infer every change from file slices, even where CDC log files exist.
    pub infer: bool,
}

/// Where a feed's changes came from, counted in file-group changes (one group in one write).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeSources {
    /// Read from Hudi CDC log files.
    pub cdc_logs: usize,
    /// Inferred by comparing the group's file slices before and after the write.
    pub inferred: usize,
}

/// The answer to a [`ChangeQuery`].
#[derive(Clone, Debug)]
pub struct ChangeFeed {
    /// `op`, `ts_ms`, `record_key`, `partition_path`, `before`, `after` (see [`change_schema`]).
    pub schema: SchemaRef,
    /// The rows, in write order (and within a write: deletes, updates, inserts, each by partition
    /// path and key).
    pub batches: Vec<RecordBatch>,
    /// The writes the feed covers, oldest first.
    pub commits: Vec<InstantTime>,
    /// Where the range ended: the next query resumes from here (the begin when nothing completed
    /// in the range).
    pub end: Option<InstantTime>,
    /// How the changes were found.
    pub sources: ChangeSources,
}

impl ChangeFeed {
    /// Rows in the feed.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The feed's schema for a table read schema: the images carry its data columns (no meta columns),
/// all nullable.
pub fn change_schema(read_schema: &Schema) -> SchemaRef {
    let image = DataType::Struct(image_fields(read_schema));
    Arc::new(Schema::new(vec![
        Field::new(OP, DataType::Utf8, false),
        Field::new(TS, DataType::Utf8, false),
        Field::new(KEY, DataType::Utf8, false),
        Field::new(PARTITION, DataType::Utf8, false),
        Field::new(BEFORE, image.clone(), true),
        Field::new(AFTER, image, true),
    ]))
}

fn image_fields(read_schema: &Schema) -> Fields {
    crate::cdc::image_fields(&without_meta_columns(read_schema))
}

/// The file groups a write touched: partition path → file ids.
type Touched = BTreeMap<String, BTreeSet<String>>;

/// The CDC log files a write's stats name: (partition path, file id) → root-relative paths with
/// the sizes the commit recorded.
type CdcLogs = BTreeMap<(String, String), Vec<(String, u64)>>;

/// A change found for one record of one file group; images are (batch, row) in the group's reads.
struct Change {
    op: ChangeOp,
    key: String,
    /// The after image's commit time (the write that made the change); `None` for deletes.
    ts: Option<String>,
    before: Option<(usize, usize)>,
    after: Option<(usize, usize)>,
}

impl Table {
    /// The change feed over (begin, end]: see the [module docs](self).
    ///
    /// Refused with [`Error::ChangeFeed`] when the answer could not be exact: writes of the range
    /// are archived, a restore lies in it, the cleaner removed a file version it needs, or the
    /// table has no meta fields.
    pub async fn changes(&self, q: &ChangeQuery) -> Result<ChangeFeed> {
        let timeline = self.timeline().await?;
        let fail = |reason: String| Error::ChangeFeed {
            begin: q.begin.to_string(),
            end: q.end.map_or_else(|| "latest".to_owned(), |e| e.to_string()),
            reason,
        };
        if !self.config().populate_meta_fields {
            return Err(fail(
                "the table has no meta fields (hoodie.populate.meta.fields=false), so record \
                 versions cannot be told apart"
                    .into(),
            ));
        }
        let v2 = timeline.layout() == Layout::V2;
        let done = move |i: &Instant| {
            if v2 {
                i.completion.unwrap_or(i.time)
            } else {
                i.time
            }
        };
        let end = range_end(&timeline, q.end);
        let in_range = |t: InstantTime| t > q.begin && end.is_some_and(|e| t <= e);
        if let Some(r) = timeline
            .by_actions(&[Action::Restore])
            .find(|i| i.is_completed() && in_range(done(i)))
        {
            return Err(fail(format!(
                "the restore {} in the range rolled the table back without a write; read the \
                 feed up to before it and the snapshot after it",
                r.time
            )));
        }
        let first_active = timeline.completed_writes().next().map(|i| i.time);
        let mut archived_last = None;
        if v2 || first_active.is_none_or(|f| q.begin < f) {
            let archived = ArchivedTimeline::load(timeline.storage(), timeline.layout()).await?;
            let older: Vec<_> = archived
                .completed_writes()
                .filter(|a| timeline.find(a.time).is_none())
                .collect();
            if let Some(a) = older.iter().find(|a| {
                in_range(if v2 {
                    a.completion.unwrap_or(a.time)
                } else {
                    a.time
                })
            }) {
                return Err(fail(format!(
                    "the write {} in the range is archived; the feed reads the active timeline, \
                     which begins at {}",
                    a.time,
                    first_active.map_or_else(|| "-".to_owned(), |f| f.to_string())
                )));
            }
            archived_last = older.iter().map(|a| a.time).max();
        }
        let mut writes: Vec<Instant> = timeline
            .completed_writes()
            .filter(|i| in_range(done(i)) && !timeline.is_compaction(i.time))
            .copied()
            .collect();
        writes.sort_by_key(|i| i.time);
        // The groups each write touched, by partition; compactions and clustering are left out.
        let metas = timeline.commit_metadata_all(&writes).await?;
        let mut plan: Vec<(InstantTime, Touched)> = Vec::new();
        let mut cdc_logs: Vec<CdcLogs> = Vec::new();
        for (w, meta) in writes.iter().zip(metas) {
            let clustering = meta
                .operation_type
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case("cluster"));
            if meta.compacted || clustering {
                continue;
            }
            let mut touched = Touched::new();
            let mut logs = CdcLogs::new();
            for (p, stats) in &meta.partition_to_write_stats {
                for s in stats.iter().filter(|s| !s.file_id.is_empty()) {
                    let part = s.partition_path.clone().unwrap_or_else(|| p.clone());
                    if let Some(files) = s.cdc_stats.as_ref().and_then(|v| v.as_object())
                        && !files.is_empty()
                        && !q.infer
                    {
                        logs.entry((part.clone(), s.file_id.clone()))
                            .or_default()
                            .extend(
                                files
                                    .iter()
                                    .map(|(f, n)| (f.clone(), n.as_u64().unwrap_or(0))),
                            );
                    }
                    touched.entry(part).or_default().insert(s.file_id.clone());
                }
            }
            for (p, ids) in &meta.partition_to_replace_file_ids {
                touched
                    .entry(p.clone())
                    .or_default()
                    .extend(ids.iter().cloned());
            }
            plan.push((w.time, touched));
            cdc_logs.push(logs);
        }
        let full = match &q.schema {
            Some(s) => s.clone(),
            None => self.latest_schema(&timeline, &plan).await?,
        };
        let schema = change_schema(&full);
        // Netted: one comparison of the touched groups as of before the first write and as of the
        // last; otherwise one per write, each with its CDC logs.
        let none = CdcLogs::new();
        let steps: Vec<(InstantTime, Touched, Option<InstantTime>, &CdcLogs)> =
            match (q.net, plan.first(), plan.last()) {
                (true, Some((first, _)), Some((last, _))) => {
                    let mut all = Touched::new();
                    for (_, touched) in &plan {
                        for (p, ids) in touched {
                            all.entry(p.clone())
                                .or_default()
                                .extend(ids.iter().cloned());
                        }
                    }
                    vec![(*last, all, Some(*first), &none)]
                }
                _ => plan
                    .iter()
                    .zip(&cdc_logs)
                    .map(|((c, t), logs)| (*c, t.clone(), Some(*c), logs))
                    .collect(),
            };
        let mut batches = Vec::new();
        let mut sources = ChangeSources::default();
        for (c, touched, first, logs) in &steps {
            let first = first.unwrap_or(*c);
            let prev = timeline
                .completed_writes()
                .filter(|i| i.time < first)
                .map(|i| i.time)
                .last()
                .or(archived_last.filter(|a| *a < first));
            if let Some(p) = prev {
                match check_not_cleaned(&timeline, p).await {
                    Err(Error::Cleaned { earliest, .. }) => {
                        return Err(fail(format!(
                            "the changes of {c} need the table as of {p}, which the cleaner has \
                             removed; the earliest begin still readable is {earliest}"
                        )));
                    }
                    other => other?,
                }
            }
            let (batch, found) = self
                .write_changes(&timeline, *c, prev, touched, logs, &full, &schema)
                .await?;
            sources.cdc_logs += found.cdc_logs;
            sources.inferred += found.inferred;
            batches.extend(batch);
        }
        Ok(ChangeFeed {
            schema,
            batches,
            commits: plan.iter().map(|(c, _)| *c).collect(),
            end: Some(end.map_or(q.begin, |e| e.max(q.begin))),
            sources,
        })
    }

    /// The read schema of the latest state of the partitions the writes touched.
    async fn latest_schema(
        &self,
        timeline: &Timeline,
        plan: &[(InstantTime, Touched)],
    ) -> Result<SchemaRef> {
        let parts: BTreeSet<String> = plan.iter().flat_map(|(_, t)| t.keys().cloned()).collect();
        if parts.is_empty() {
            return Ok(match self.data_schema(timeline).await? {
                Some(s) => with_meta_columns(&s),
                None => Arc::new(Schema::empty()),
            });
        }
        let parts: Vec<String> = parts.into_iter().collect();
        let slices = FileSystemView::load(timeline, Some(&parts), None)
            .await?
            .latest_slices();
        self.snapshot_schema(timeline, &slices).await
    }

    /// The changes of one write `c`: each touched group read as of `prev` and as of `c` and
    /// compared, a few groups at a time; the write's rows sorted (deletes, updates, inserts, each
    /// by partition path and key), a record that moved between two groups of a partition (a
    /// replacecommit) as one update.
    #[allow(clippy::too_many_arguments)]
    async fn write_changes(
        &self,
        timeline: &Timeline,
        c: InstantTime,
        prev: Option<InstantTime>,
        touched: &Touched,
        logs: &CdcLogs,
        full: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<(Option<RecordBatch>, ChangeSources)> {
        let parts: Vec<String> = touched.keys().cloned().collect();
        let before_view = match prev {
            Some(p) => Some(FileSystemView::load(timeline, Some(&parts), Some(p)).await?),
            None => None,
        };
        let after_view = FileSystemView::load(timeline, Some(&parts), Some(c)).await?;
        type Group = (
            Option<FileSlice>,
            Option<FileSlice>,
            Option<Vec<(String, u64)>>,
        );
        let groups: Vec<Group> = touched
            .iter()
            .flat_map(|(p, ids)| ids.iter().map(move |id| (p, id)))
            .map(|(p, id)| {
                (
                    before_view.as_ref().and_then(|v| v.latest_slice(p, id)),
                    after_view.latest_slice(p, id),
                    logs.get(&(p.clone(), id.clone())).cloned(),
                )
            })
            .filter(|(b, a, _)| b.is_some() || a.is_some())
            .collect();
        let sources = ChangeSources {
            cdc_logs: groups.iter().filter(|g| g.2.is_some()).count(),
            inferred: groups.iter().filter(|g| g.2.is_none()).count(),
        };
        let batches: Vec<RecordBatch> = futures::stream::iter(groups)
            .map(|(before, after, logs)| async move {
                match logs {
                    Some(logs) => {
                        self.cdc_log_changes(c, before, after, logs, full, schema)
                            .await
                    }
                    None => {
                        self.group_changes(timeline, c, prev, before, after, full, schema)
                            .await
                    }
                }
            })
            .buffered(4)
            .try_collect()
            .await?;
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        if batches.is_empty() {
            return Ok((None, sources));
        }
        let rows = order_rows(&concat_batches(schema, &batches)?)?;
        Ok((net_changes(schema, &[rows])?.into_iter().next(), sources))
    }

    /// The changes of one file group in write `c`, from the CDC logs the write put next to its new
    /// base file; images the logs lack are looked up by key in the group's base files before
    /// (`before`) and after (`after`) the write.
    async fn cdc_log_changes(
        &self,
        c: InstantTime,
        before: Option<FileSlice>,
        after: Option<FileSlice>,
        logs: Vec<(String, u64)>,
        full: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let partition = partition_of(&before, &after);
        let storage = self.storage();
        let mut files = Vec::with_capacity(logs.len());
        for (path, size) in &logs {
            let bytes = storage.get_opt(path).await?.ok_or_else(|| Error::Damaged {
                path: storage.display(path),
                reason: format!(
                    "the commit {c} names this CDC log in its cdcStats, but it is not in the store"
                ),
            })?;
            // A log cut short at a block boundary reads as fewer blocks: its size tells.
            if (bytes.len() as u64) < *size {
                return Err(Error::Damaged {
                    path: storage.display(path),
                    reason: format!(
                        "{} bytes, but the commit {c} recorded {size} in its cdcStats",
                        bytes.len()
                    ),
                });
            }
            files.push((storage.display(path), bytes));
        }
        let blocks = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (path, bytes) in &files {
                out.extend(decode_cdc_log(path, bytes)?);
            }
            Ok::<_, Error>(out)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        // A base file is read only for an image the logs lack.
        let lacks = |name: &str| blocks.iter().any(|b| b.column_by_name(name).is_none());
        let (b, a) = futures::try_join!(
            self.base_bytes(before.filter(|_| lacks(BEFORE))),
            self.base_bytes(after.filter(|_| lacks(AFTER)))
        )?;
        let (config, full, schema) = (self.config().clone(), full.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            let rows = blocks
                .iter()
                .map(|block| cdc_block_rows(&config, c, block, &b, &a, &full, &schema, &partition))
                .collect::<Result<Vec<_>>>()?;
            Ok(concat_batches(&schema, &rows)?)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// The display path and bytes of a slice's base file, if it has one.
    async fn base_bytes(&self, s: Option<FileSlice>) -> Result<Option<BaseBytes>> {
        match s.and_then(|s| s.base_file) {
            Some(b) => {
                let path = b.path();
                let bytes = self.storage().get(&path).await?;
                Ok(Some((self.storage().display(&path), bytes)))
            }
            None => Ok(None),
        }
    }

    /// The changes of one file group in write `c`.
    #[allow(clippy::too_many_arguments)]
    async fn group_changes(
        &self,
        timeline: &Timeline,
        c: InstantTime,
        prev: Option<InstantTime>,
        before: Option<FileSlice>,
        after: Option<FileSlice>,
        full: &SchemaRef,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let partition = partition_of(&before, &after);
        let base_only = |s: &Option<FileSlice>| {
            s.as_ref()
                .is_none_or(|s| s.log_files.is_empty() && s.base_file.is_some())
        };
        if base_only(&before) && base_only(&after) {
            // Copy-on-write: keys first, then only the changed rows of each file.
            let (b, a) = futures::try_join!(self.base_bytes(before), self.base_bytes(after))?;
            let (full, schema) = (full.clone(), schema.clone());
            return tokio::task::spawn_blocking(move || {
                base_file_changes(c, prev, b, a, &full, &schema, &partition)
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        }
        // Merge-on-read: the slices merged on the key and commit-time columns decide, then only the
        // changed records are merged in full.
        let key_columns: Vec<usize> = [RECORD_KEY, COMMIT_TIME]
            .iter()
            .filter_map(|n| full.index_of(n).ok())
            .collect();
        let keys_plan = Arc::new(SliceMerge::new(self.config(), full, Some(&key_columns))?);
        let full_plan = Arc::new(SliceMerge::new(self.config(), full, None)?);
        let fetch = |s: Option<FileSlice>| {
            let full_plan = full_plan.clone();
            async move {
                match s {
                    Some(s) => Ok::<_, Error>(Some(full_plan.fetch(self, &s).await?)),
                    None => Ok(None),
                }
            }
        };
        let (b, a) = futures::try_join!(fetch(before), fetch(after))?;
        let (timeline, full, schema) = (timeline.clone(), full.clone(), schema.clone());
        tokio::task::spawn_blocking(move || {
            let merge = |plan: &SliceMerge, bytes: &Option<SliceBytes>, as_of| match bytes {
                Some(bytes) => plan.merge(bytes.clone(), &timeline, as_of),
                None => Ok(Vec::new()),
            };
            let bk = merge(&keys_plan, &b, prev)?;
            let ak = merge(&keys_plan, &a, Some(c))?;
            let changes = diff(prev, &bk, &ak)?;
            let wanted = |side: fn(&Change) -> bool| -> HashSet<&str> {
                changes
                    .iter()
                    .filter(|x| side(x))
                    .map(|x| x.key.as_str())
                    .collect()
            };
            let in_full = |bytes: Option<SliceBytes>, as_of, keys: HashSet<&str>| match bytes {
                Some(bytes) if !keys.is_empty() => {
                    full_plan.merge_keys(bytes, &timeline, as_of, &keys)
                }
                _ => Ok(Vec::new()),
            };
            let bf = in_full(b, prev, wanted(|x| x.before.is_some()))?;
            let af = in_full(a, Some(c), wanted(|x| x.after.is_some()))?;
            let (b_at, a_at) = (positions(&bf)?, positions(&af)?);
            let find = |at: &HashMap<String, (usize, usize)>, x: &Change, side: &str| {
                at.get(x.key.as_str()).copied().ok_or_else(|| {
                    Error::Corrupt(format!(
                        "record {} of partition {partition:?}: its {side} image is missing from \
                         the full merge of its file group",
                        x.key
                    ))
                })
            };
            let changes: Vec<Change> = changes
                .iter()
                .map(|x| {
                    Ok(Change {
                        op: x.op,
                        key: x.key.clone(),
                        ts: x.ts.clone(),
                        before: x.before.map(|_| find(&b_at, x, "before")).transpose()?,
                        after: x.after.map(|_| find(&a_at, x, "after")).transpose()?,
                    })
                })
                .collect::<Result<_>>()?;
            build_rows(&schema, &full, c, &changes, &partition, &bf, &af)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// The feed rows of one CDC block of a file group's log in write `c`: its op and key (derived from
/// the images when the block has no `record_key`) and its images (looked up by key in the group's
/// base file before or after the write when the block has none).
#[allow(clippy::too_many_arguments)]
fn cdc_block_rows(
    config: &TableConfig,
    c: InstantTime,
    block: &RecordBatch,
    before_file: &Option<BaseBytes>,
    after_file: &Option<BaseBytes>,
    full: &SchemaRef,
    schema: &SchemaRef,
    partition: &str,
) -> Result<RecordBatch> {
    let fields = image_fields(full);
    let bad = |reason: String| {
        Error::Corrupt(format!(
            "CDC log of {c} in partition {partition:?}: {reason}"
        ))
    };
    let ops = block
        .column_by_name(OP)
        .ok_or_else(|| bad("a block without an op column".into()))?;
    let ops = cast(ops, &DataType::Utf8)?.as_string::<i32>().clone();
    let ops: Vec<ChangeOp> = ops
        .iter()
        .map(|o| match o {
            Some("i") => Ok(ChangeOp::Insert),
            Some("u") => Ok(ChangeOp::Update),
            Some("d") => Ok(ChangeOp::Delete),
            other => Err(bad(format!("unknown op {other:?}"))),
        })
        .collect::<Result<_>>()?;
    let mut before = crate::cdc::image_column(block, BEFORE, &fields)?;
    let mut after = crate::cdc::image_column(block, AFTER, &fields)?;
    let keys: Vec<String> = match block.column_by_name(KEY) {
        Some(k) => cast(k, &DataType::Utf8)?
            .as_string::<i32>()
            .iter()
            .map(|k| {
                k.map(str::to_owned)
                    .ok_or_else(|| bad("a change without a record key".into()))
            })
            .collect::<Result<_>>()?,
        None => {
            // The key of the image each change has (the after image, else the before image), from
            // the images as written (a cast to the read schema could change how a key prints).
            let (Some(b), Some(a)) = (block.column_by_name(BEFORE), block.column_by_name(AFTER))
            else {
                return Err(bad(
                    "a block with neither record keys nor both images".into()
                ));
            };
            let picks: Vec<(usize, usize)> = (0..block.num_rows())
                .map(|r| if a.is_valid(r) { (1, r) } else { (0, r) })
                .collect();
            if let Some((_, r)) = picks.iter().find(|(s, r)| *s == 0 && !b.is_valid(*r)) {
                return Err(bad(format!("change {r} has neither image")));
            }
            let images = interleave(&[b.as_ref() as &dyn Array, a.as_ref()], &picks)?;
            crate::keys::record_keys(&RecordBatch::from(images.as_struct().clone()), config)?
        }
    };
    // An image the block lacks: the keys of the changes that have one (all but `none`), looked up.
    let lookup = |file: &Option<BaseBytes>, side: &str, none: ChangeOp| {
        let wanted: Vec<Option<&str>> = ops
            .iter()
            .zip(&keys)
            .map(|(op, k)| (*op != none).then_some(k.as_str()))
            .collect();
        images_by_key(file, &wanted, full, &fields).map_err(|e| match e {
            Error::Corrupt(reason) => bad(format!("{side} images: {reason}")),
            other => other,
        })
    };
    if before.is_none() {
        before = Some(lookup(before_file, BEFORE, ChangeOp::Insert)?);
    }
    if after.is_none() {
        after = Some(lookup(after_file, AFTER, ChangeOp::Delete)?);
    }
    let (Some(before), Some(after)) = (before, after) else {
        return Err(bad("images missing".into()));
    };
    let ts = c.to_string();
    let n = block.num_rows();
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(ops.iter().map(|o| o.code()))),
            Arc::new(StringArray::from(vec![ts.as_str(); n])),
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(String::as_str),
            )),
            Arc::new(StringArray::from(vec![partition; n])),
            before,
            after,
        ],
    )?)
}

/// The images of `wanted` keys (`None`: a null image) from a base file: its key column locates
/// them, then only those rows are decoded. A wanted key the file lacks is an error.
fn images_by_key(
    file: &Option<BaseBytes>,
    wanted: &[Option<&str>],
    full: &SchemaRef,
    fields: &Fields,
) -> Result<ArrayRef> {
    let data_cols = data_columns(full);
    if wanted.iter().all(Option::is_none) {
        return image(&[], wanted.iter().map(|_| None), &data_cols, fields);
    }
    let Some((path, bytes)) = file else {
        return Err(Error::Corrupt(
            "a change needs a record of a file group that has no base file".into(),
        ));
    };
    let keys = read_parquet_columns(path, bytes.clone(), Some(&[RECORD_KEY]))?.1;
    let mut at: HashMap<&str, usize> = HashMap::new();
    let key_cols: Vec<StringArray> = keys
        .iter()
        .map(|b| strings(b, RECORD_KEY))
        .collect::<Result<_>>()?;
    let mut offset = 0;
    for k in &key_cols {
        for (r, key) in k.iter().enumerate() {
            if let Some(key) = key {
                at.insert(key, offset + r);
            }
        }
        offset += k.len();
    }
    let mut rows: Vec<usize> = Vec::new();
    for w in wanted.iter().flatten() {
        let r = at
            .get(w)
            .copied()
            .ok_or_else(|| Error::Corrupt(format!("record {w} is not in the base file {path}")))?;
        rows.push(r);
    }
    rows.sort_unstable();
    rows.dedup();
    let one = decode_rows(path, bytes, &rows, full)?;
    let picks = wanted.iter().map(|w| {
        w.and_then(|w| at.get(w))
            .and_then(|r| rows.binary_search(r).ok())
            .map(|i| (0, i))
    });
    image(&[one], picks, &data_cols, fields)
}

/// The positions of the data (non-meta) columns of a read schema.
fn data_columns(full: &Schema) -> Vec<usize> {
    full.fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !is_meta_column(f.name()))
        .map(|(i, _)| i)
        .collect()
}

/// A base file's display path and bytes.
type BaseBytes = (String, bytes::Bytes);

/// The partition of a file group read before and after a write.
fn partition_of(before: &Option<FileSlice>, after: &Option<FileSlice>) -> String {
    before
        .as_ref()
        .or(after.as_ref())
        .map(|s| s.partition.clone())
        .unwrap_or_default()
}

/// Rows `rows` (ascending file row numbers) of a base file, decoded in full and aligned to `full`;
/// fewer rows than asked for is an error naming the file.
fn decode_rows(
    path: &str,
    bytes: &bytes::Bytes,
    rows: &[usize],
    full: &SchemaRef,
) -> Result<RecordBatch> {
    let batches = read_parquet_rows(path, bytes.clone(), rows)?;
    let decoded: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(first) = batches.first().filter(|_| decoded == rows.len()) else {
        return Err(Error::Damaged {
            path: path.to_owned(),
            reason: format!(
                "{decoded} of the {} rows its key column located could be decoded",
                rows.len()
            ),
        });
    };
    align_batch(&concat_batches(&first.schema(), &batches)?, full)
}

/// Where each record key sits in merged batches.
fn positions(batches: &[RecordBatch]) -> Result<HashMap<String, (usize, usize)>> {
    let mut at = HashMap::new();
    for (bi, b) in batches.iter().enumerate() {
        for (row, k) in strings(b, RECORD_KEY)?.iter().enumerate() {
            if let Some(k) = k {
                at.insert(k.to_owned(), (bi, row));
            }
        }
    }
    Ok(at)
}

/// The changes between two base files of a group (either may be absent): the key and commit-time
/// columns decide, then only the rows that changed are decoded in full.
fn base_file_changes(
    c: InstantTime,
    prev: Option<InstantTime>,
    before: Option<BaseBytes>,
    after: Option<BaseBytes>,
    full: &SchemaRef,
    schema: &SchemaRef,
    partition: &str,
) -> Result<RecordBatch> {
    let columns = |f: &Option<BaseBytes>, cols: &[&str]| -> Result<Vec<RecordBatch>> {
        match f {
            Some((path, bytes)) => Ok(read_parquet_columns(path, bytes.clone(), Some(cols))?.1),
            None => Ok(Vec::new()),
        }
    };
    let b = columns(&before, &[RECORD_KEY])?;
    let a = columns(&after, &[RECORD_KEY, COMMIT_TIME])?;
    let changes = diff(prev, &b, &a)?;
    // Row numbers within each file, and where each lands among the rows decoded in full.
    let offsets = |batches: &[RecordBatch]| -> Vec<usize> {
        batches
            .iter()
            .scan(0, |acc, x| {
                let start = *acc;
                *acc += x.num_rows();
                Some(start)
            })
            .collect()
    };
    let (b_off, a_off) = (offsets(&b), offsets(&a));
    let mut b_rows: Vec<usize> = changes
        .iter()
        .filter_map(|x| x.before.map(|(bi, r)| b_off[bi] + r))
        .collect();
    let mut a_rows: Vec<usize> = changes
        .iter()
        .filter_map(|x| x.after.map(|(bi, r)| a_off[bi] + r))
        .collect();
    b_rows.sort_unstable();
    b_rows.dedup();
    a_rows.sort_unstable();
    a_rows.dedup();
    let rows_of = |f: &Option<BaseBytes>, rows: &[usize]| -> Result<Vec<RecordBatch>> {
        match f {
            Some((path, bytes)) if !rows.is_empty() => {
                Ok(vec![decode_rows(path, bytes, rows, full)?])
            }
            _ => Ok(Vec::new()),
        }
    };
    let b_full = rows_of(&before, &b_rows)?;
    let a_full = rows_of(&after, &a_rows)?;
    let at = |rows: &[usize], r: usize| rows.binary_search(&r).map(|i| (0, i)).ok();
    let changes: Vec<Change> = changes
        .into_iter()
        .map(|x| Change {
            before: x.before.and_then(|(bi, r)| at(&b_rows, b_off[bi] + r)),
            after: x.after.and_then(|(bi, r)| at(&a_rows, a_off[bi] + r)),
            ..x
        })
        .collect();
    build_rows(schema, full, c, &changes, partition, &b_full, &a_full)
}

/// The end of a range: `end`, or the latest completed write — never past the latest completed
/// write, nor past a data write still in flight on timeline layout 1 (whose instant time precedes
/// its completion): a feed that resumes from the end must not skip a write that completes later.
fn range_end(timeline: &Timeline, end: Option<InstantTime>) -> Option<InstantTime> {
    if timeline.layout() == Layout::V2 {
        let latest = timeline
            .completed_writes()
            .map(|i| i.completion.unwrap_or(i.time))
            .max();
        return match end {
            Some(e) => latest.map(|l| l.min(e)),
            None => latest,
        };
    }
    let in_flight = timeline
        .pending()
        .filter(|i| i.action.writes_data() && !timeline.is_compaction(i.time))
        .map(|i| i.time)
        .next();
    let cap = timeline
        .completed_writes()
        .map(|i| i.time)
        .filter(|t| in_flight.is_none_or(|f| *t < f))
        .last();
    // An explicit end past the last completed write resumes from that write, not from the end
    // given: writes that complete before that end must not be skipped.
    match end {
        Some(e) => cap.map(|c| c.min(e)),
        None => cap,
    }
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Corrupt(format!("a record of the table has no {name} column")))?;
    Ok(cast(col, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// Compares the records of one file group as of `prev` (`before`) and after the writes since
/// (`after`) by record key: a key in both changed when its commit time is after `prev`.
fn diff(
    prev: Option<InstantTime>,
    before: &[RecordBatch],
    after: &[RecordBatch],
) -> Result<Vec<Change>> {
    let before_keys: Vec<StringArray> = before
        .iter()
        .map(|b| strings(b, RECORD_KEY))
        .collect::<Result<_>>()?;
    let after_keys: Vec<StringArray> = after
        .iter()
        .map(|b| strings(b, RECORD_KEY))
        .collect::<Result<_>>()?;
    let after_times: Vec<StringArray> = after
        .iter()
        .map(|b| strings(b, COMMIT_TIME))
        .collect::<Result<_>>()?;
    let rows: usize = before.iter().map(RecordBatch::num_rows).sum();
    let mut by_key: HashMap<&str, (usize, usize), foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(rows, Default::default());
    for (bi, keys) in before_keys.iter().enumerate() {
        for (row, k) in keys.iter().enumerate() {
            if let Some(k) = k {
                by_key.insert(k, (bi, row));
            }
        }
    }
    let since = prev.map(|p| (p.as_u64(), p.to_string()));
    let mut out = Vec::new();
    for (ai, keys) in after_keys.iter().enumerate() {
        let times = &after_times[ai];
        for (row, k) in keys.iter().enumerate() {
            let Some(k) = k else { continue };
            let (op, before) = match by_key.remove(k) {
                Some(b) => {
                    // Rewritten since `prev`: instant texts of one length compare as text; a
                    // 14- against a 17-digit time compares as instants.
                    let rewritten = match (times.is_valid(row), &since) {
                        (true, Some((p, text))) => {
                            let t = times.value(row);
                            if t.len() == text.len() {
                                t > text.as_str()
                            } else {
                                t.parse::<InstantTime>().map_or(true, |w| w.as_u64() > *p)
                            }
                        }
                        _ => true,
                    };
                    if !rewritten {
                        continue;
                    }
                    (ChangeOp::Update, Some(b))
                }
                None => (ChangeOp::Insert, None),
            };
            out.push(Change {
                op,
                key: k.to_owned(),
                ts: times.is_valid(row).then(|| times.value(row).to_owned()),
                before,
                after: Some((ai, row)),
            });
        }
    }
    out.extend(by_key.into_iter().map(|(k, b)| Change {
        op: ChangeOp::Delete,
        key: k.to_owned(),
        ts: None,
        before: Some(b),
        after: None,
    }));
    Ok(out)
}

/// The feed rows of one group's changes in write `c` (unsorted).
fn build_rows(
    schema: &SchemaRef,
    full: &SchemaRef,
    c: InstantTime,
    changes: &[Change],
    partition: &str,
    before: &[RecordBatch],
    after: &[RecordBatch],
) -> Result<RecordBatch> {
    let fields = image_fields(full);
    let data_cols = data_columns(full);
    let ts = c.to_string();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            changes.iter().map(|x| x.op.code()),
        )),
        Arc::new(StringArray::from_iter_values(
            changes
                .iter()
                .map(|x| x.ts.as_deref().unwrap_or(ts.as_str())),
        )),
        Arc::new(StringArray::from_iter_values(
            changes.iter().map(|x| x.key.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            changes.iter().map(|_| partition),
        )),
        image(
            before,
            changes.iter().map(|x| x.before),
            &data_cols,
            &fields,
        )?,
        image(after, changes.iter().map(|x| x.after), &data_cols, &fields)?,
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn op_rank(code: &str) -> u8 {
    match code {
        "d" => 0,
        "u" => 1,
        _ => 2,
    }
}

/// One write's rows in feed order: deletes, updates, inserts, each by partition path and key.
fn order_rows(rows: &RecordBatch) -> Result<RecordBatch> {
    let ops = rows.column(0).as_string::<i32>();
    let keys = rows.column(2).as_string::<i32>();
    let parts = rows.column(3).as_string::<i32>();
    let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
    order.sort_by(|&a, &b| {
        let key = |i: u32| {
            let i = i as usize;
            (op_rank(ops.value(i)), parts.value(i), keys.value(i))
        };
        key(a).cmp(&key(b))
    });
    Ok(arrow::compute::take_record_batch(
        rows,
        &UInt32Array::from(order),
    )?)
}

/// A struct column of the picked rows' data columns; `None` picks a null image.
fn image(
    batches: &[RecordBatch],
    picks: impl Iterator<Item = Option<(usize, usize)>>,
    cols: &[usize],
    fields: &Fields,
) -> Result<ArrayRef> {
    let picks: Vec<Option<(usize, usize)>> = picks.collect();
    let null_slot = (batches.len(), 0);
    let indices: Vec<(usize, usize)> = picks.iter().map(|p| p.unwrap_or(null_slot)).collect();
    let columns = cols
        .iter()
        .zip(fields.iter())
        .map(|(&c, f)| {
            let null = new_null_array(f.data_type(), 1);
            let mut arrays: Vec<&dyn Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrays.push(null.as_ref());
            Ok(interleave(&arrays, &indices)?)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let valid = NullBuffer::from(picks.iter().map(Option::is_some).collect::<Vec<bool>>());
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        columns,
        Some(valid),
    )?))
}

/// Nets a feed to one row per (partition path, record key): the first before image, the last after
/// image and the last write's time; the op follows from which images remain, and records with
/// neither (inserted and deleted within the range) drop out.
fn net_changes(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let all = concat_batches(schema, batches)?;
    let keys = all.column(2).as_string::<i32>();
    let parts = all.column(3).as_string::<i32>();
    let (before, after) = (all.column(4), all.column(5));
    let mut span: HashMap<(&str, &str), (u32, u32)> = HashMap::new();
    for row in 0..all.num_rows() {
        let i = u32::try_from(row)
            .map_err(|_| Error::Unsupported("a change feed of more than 2^32 rows".into()))?;
        span.entry((parts.value(row), keys.value(row)))
            .and_modify(|s| s.1 = i)
            .or_insert((i, i));
    }
    let mut rows: Vec<(ChangeOp, &str, &str, u32, u32)> = span
        .into_iter()
        .filter_map(|((p, k), (first, last))| {
            let op = match (
                before.is_valid(first as usize),
                after.is_valid(last as usize),
            ) {
                (false, false) => return None,
                (false, true) => ChangeOp::Insert,
                (true, false) => ChangeOp::Delete,
                (true, true) => ChangeOp::Update,
            };
            Some((op, p, k, first, last))
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let first = UInt32Array::from_iter_values(rows.iter().map(|r| r.3));
    let last = UInt32Array::from_iter_values(rows.iter().map(|r| r.4));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.code()),
        )),
        take(all.column(1), &last, None)?,
        take(all.column(2), &last, None)?,
        take(all.column(3), &last, None)?,
        take(before, &first, None)?,
        take(after, &last, None)?,
    ];
    Ok(vec![RecordBatch::try_new(schema.clone(), columns)?])
}
