//! The merge-on-read snapshot of one file slice: its base file merged with the records of its log
//! blocks by record key and ordering field.
//!
//! Blocks count only if their `INSTANT_TIME` is a completed write visible at the query instant and
//! no rollback command block targets it. Every event of a key — the base record, then data and
//! delete records in block order — competes by (ordering value, write order): the highest ordering
//! wins and ties go to the later write, so a replayed older event never overrides a newer one. A
//! delete without an ordering value (or with Hudi's `IntWrapper(0)`) wins by write order alone. The
//! key is absent from the result when a delete wins. Memory is bounded by one file group: its log
//! records and its base file.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::{cast, concat, filter_record_batch, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{InstantTime, Timeline};

use crate::avro_block::{DeletedRecord, OrderingValue, decode_data_block, decode_delete_block};
use crate::log_format::{BlockType, LogBlock, ReadBlock, header, read_blocks};
use crate::parquet_io::read_parquet;
use crate::schema::{RECORD_KEY, align_batch};
use crate::view::FileSlice;
use crate::{Error, Result, Table};

/// The valid records of a slice's log files, in write order.
#[derive(Debug, Default)]
pub struct LogRecords {
    /// Data blocks aligned to the read schema, in block order, with each block's instant.
    pub data: Vec<(InstantTime, RecordBatch)>,
    /// Delete blocks, in block order, with each block's instant.
    pub deletes: Vec<(InstantTime, Vec<DeletedRecord>)>,
    /// Position of every block in write order: (is_delete, index into `data` or `deletes`).
    pub order: Vec<(bool, usize)>,
    /// Log blocks read (valid ones).
    pub blocks: usize,
    /// Rollback command blocks seen.
    pub rollback_blocks: usize,
    /// Corrupt stretches skipped.
    pub corrupt_blocks: usize,
}

impl LogRecords {
    /// Records in data blocks.
    pub fn data_records(&self) -> usize {
        self.data.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// Records in delete blocks.
    pub fn deleted_records(&self) -> usize {
        self.deletes.iter().map(|(_, d)| d.len()).sum()
    }
}

/// Whether lake wrote this log file (whole, in one put): its write token is lake's.
fn written_whole(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    crate::layout::LogFile::parse("", name, 0)
        .is_some_and(|l| l.write_token == crate::layout::WRITE_TOKEN)
}

/// Decodes the blocks of a slice's log files (`files`: each file's display path and bytes, in write
/// order) into records aligned to `schema`, keeping only blocks visible at `as_of`.
pub fn decode_logs(
    timeline: &Timeline,
    files: &[(String, Bytes)],
    schema: &SchemaRef,
    as_of: Option<InstantTime>,
) -> Result<LogRecords> {
    let mut blocks: Vec<(String, LogBlock)> = Vec::new();
    let mut out = LogRecords::default();
    let mut rolled_back: HashSet<String> = HashSet::new();
    for (path, bytes) in files {
        for b in read_blocks(bytes) {
            match b {
                ReadBlock::Block { block, .. } => {
                    if block.block_type == BlockType::Command {
                        out.rollback_blocks += 1;
                        if let Some(t) = block.header_value(header::TARGET_INSTANT_TIME) {
                            rolled_back.insert(t.to_owned());
                        }
                    } else {
                        blocks.push((path.clone(), block));
                    }
                }
                // lake writes every log file whole (write token `0-0-0`), so a corrupt stretch in
                // one of its logs is damage, and skipping it would silently return older values.
                // Hudi appends to logs where the store allows it, and its readers skip the torn
                // block of a failed append; lake does the same for logs it did not write.
                ReadBlock::Corrupt { offset, len } => {
                    if written_whole(path) {
                        return Err(Error::Damaged {
                            path: path.clone(),
                            reason: format!("corrupt log data at byte {offset} ({len} bytes)"),
                        });
                    }
                    out.corrupt_blocks += 1;
                }
            }
        }
    }
    for (path, block) in blocks {
        let Some(instant) = block.header_value(header::INSTANT_TIME) else {
            return Err(Error::Damaged {
                path,
                reason: "a log block without an instant time".into(),
            });
        };
        let Ok(time) = instant.parse::<InstantTime>() else {
            return Err(Error::Damaged {
                path,
                reason: format!("a log block with the instant time {instant:?}"),
            });
        };
        if rolled_back.contains(instant) || !timeline.is_committed(time, as_of) {
            continue;
        }
        let corrupt =
            |e: Error| Error::Corrupt(format!("log file {path}: block of {instant}: {e}"));
        match block.block_type {
            BlockType::AvroData => {
                let schema_json = block.header_value(header::SCHEMA).ok_or_else(|| {
                    Error::Corrupt(format!("log file {path}: data block without a schema"))
                })?;
                let batch = decode_data_block(schema_json, &block.content).map_err(corrupt)?;
                out.order.push((false, out.data.len()));
                out.data.push((time, align_batch(&batch, schema)?));
            }
            BlockType::ParquetData => {
                let (_, batches) = read_parquet(&path, block.content.clone())?;
                for b in batches {
                    out.order.push((false, out.data.len()));
                    out.data.push((time, align_batch(&b, schema)?));
                }
            }
            BlockType::Delete => {
                let deletes = decode_delete_block(&block.content).map_err(corrupt)?;
                out.order.push((true, out.deletes.len()));
                out.deletes.push((time, deletes));
            }
            BlockType::HFileData | BlockType::CdcData | BlockType::Other(_) => {
                return Err(Error::Unsupported(format!(
                    "log file {path}: {:?} blocks",
                    block.block_type
                )));
            }
            BlockType::Command | BlockType::Corrupt => continue,
        }
        out.blocks += 1;
    }
    Ok(out)
}

/// Where a competing version of a key comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// (data block, row).
    Data(usize, usize),
    /// (delete block, entry).
    Delete(usize, usize),
}

/// Ordering values of all sources, comparable with each other.
struct Orderings {
    base: Option<Rows>,
    data: Vec<Rows>,
    deletes: Vec<Rows>,
    /// Delete entries whose ordering is commit time.
    commit_time_deletes: Vec<Vec<bool>>,
}

impl Orderings {
    fn new(
        field: Option<&str>,
        schema: &SchemaRef,
        base: &[RecordBatch],
        logs: &LogRecords,
    ) -> Result<Option<Self>> {
        let Some(field) = field else { return Ok(None) };
        let Ok(f) = schema.field_with_name(field) else {
            return Ok(None);
        };
        let dt = f.data_type().clone();
        let conv = RowConverter::new(vec![SortField::new(dt.clone())])?;
        let col = |b: &RecordBatch| -> ArrayRef {
            b.column_by_name(field)
                .cloned()
                .unwrap_or_else(|| new_null_array(&dt, b.num_rows()))
        };
        let base = if base.is_empty() {
            None
        } else {
            let cols: Vec<ArrayRef> = base.iter().map(col).collect();
            let refs: Vec<&dyn Array> = cols.iter().map(|c| c.as_ref()).collect();
            Some(conv.convert_columns(&[concat(&refs)?])?)
        };
        let data = logs
            .data
            .iter()
            .map(|(_, b)| conv.convert_columns(&[col(b)]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut deletes = Vec::new();
        let mut commit_time_deletes = Vec::new();
        for (_, ds) in &logs.deletes {
            let mut values: Vec<ArrayRef> = Vec::with_capacity(ds.len());
            let mut ct = Vec::with_capacity(ds.len());
            for d in ds {
                let v = d
                    .ordering
                    .to_array()
                    .and_then(|a| cast(&a, &dt).ok())
                    .filter(|a| a.null_count() == 0);
                ct.push(v.is_none());
                values.push(v.unwrap_or_else(|| new_null_array(&dt, 1)));
            }
            let refs: Vec<&dyn Array> = values.iter().map(|c| c.as_ref()).collect();
            let arr = if refs.is_empty() {
                new_null_array(&dt, 0)
            } else {
                concat(&refs)?
            };
            deletes.push(conv.convert_columns(&[arr])?);
            commit_time_deletes.push(ct);
        }
        Ok(Some(Self {
            base,
            data,
            deletes,
            commit_time_deletes,
        }))
    }

    fn is_commit_time(&self, s: Source) -> bool {
        matches!(s, Source::Delete(b, i) if self.commit_time_deletes[b][i])
    }

    /// Whether `later` (written after `earlier`) wins over it.
    fn later_wins(&self, later: Source, earlier: Source) -> bool {
        if self.is_commit_time(later) || self.is_commit_time(earlier) {
            return true;
        }
        self.row(later) >= self.row(earlier)
    }

    fn row(&self, s: Source) -> arrow::row::Row<'_> {
        match s {
            Source::Data(b, r) => self.data[b].row(r),
            Source::Delete(b, i) => self.deletes[b].row(i),
        }
    }
}

/// Merges a slice's base rows (`base`, aligned to `schema`) with its log records.
pub fn merge_slice(
    base: Vec<RecordBatch>,
    logs: &LogRecords,
    schema: &SchemaRef,
    ordering: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    if logs.order.is_empty() {
        return Ok(base);
    }
    let orderings = Orderings::new(ordering, schema, &base, logs)?;
    // The winning log version of every key, folding events in write order.
    let mut winner: HashMap<&str, Source> = HashMap::new();
    let mut first_seen: Vec<&str> = Vec::new();
    let keys_of: Vec<Option<&arrow::array::StringArray>> = logs
        .data
        .iter()
        .map(|(_, b)| b.column_by_name(RECORD_KEY).map(|c| c.as_string::<i32>()))
        .collect();
    for &(is_delete, idx) in &logs.order {
        let n = if is_delete {
            logs.deletes[idx].1.len()
        } else {
            logs.data[idx].1.num_rows()
        };
        for i in 0..n {
            let (key, src) = if is_delete {
                (logs.deletes[idx].1[i].key.as_str(), Source::Delete(idx, i))
            } else {
                let Some(keys) = keys_of[idx] else {
                    return Err(Error::Corrupt(format!(
                        "a log data block has no {RECORD_KEY} column"
                    )));
                };
                (keys.value(i), Source::Data(idx, i))
            };
            match winner.get_mut(key) {
                Some(w) => {
                    if orderings.as_ref().is_none_or(|o| o.later_wins(src, *w)) {
                        *w = src;
                    }
                }
                None => {
                    winner.insert(key, src);
                    first_seen.push(key);
                }
            }
        }
    }
    // Base rows: kept unless a log version of their key wins over them.
    let mut out = Vec::with_capacity(base.len() + 1);
    let mut beaten: HashSet<&str> = HashSet::new();
    let mut base_row = 0usize;
    for b in &base {
        let keys = b
            .column_by_name(RECORD_KEY)
            .map(|c| c.as_string::<i32>())
            .ok_or_else(|| Error::Corrupt(format!("a base file has no {RECORD_KEY} column")))?;
        let keep: BooleanArray = (0..b.num_rows())
            .map(|r| {
                let row = base_row + r;
                let Some(w) = winner.get(keys.value(r)) else {
                    return Some(true);
                };
                let log_wins = match &orderings {
                    None => true,
                    Some(o) => {
                        o.is_commit_time(*w)
                            || o.base.as_ref().is_none_or(|br| o.row(*w) >= br.row(row))
                    }
                };
                if !log_wins {
                    beaten.insert(keys.value(r));
                }
                Some(!log_wins)
            })
            .collect();
        base_row += b.num_rows();
        let kept = filter_record_batch(b, &keep)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    let picks: Vec<(usize, usize)> = first_seen
        .iter()
        .filter(|k| !beaten.contains(*k))
        .filter_map(|k| match winner[*k] {
            Source::Data(b, r) => Some((b, r)),
            Source::Delete(..) => None,
        })
        .collect();
    if !picks.is_empty() {
        let batches: Vec<&RecordBatch> = logs.data.iter().map(|(_, b)| b).collect();
        let merged = interleave_record_batch(&batches, &picks)?;
        out.push(align_batch(&merged, schema)?);
    }
    Ok(out)
}

impl Table {
    /// Reads one file slice merged with its logs, aligned to `schema` (which carries the meta
    /// columns), as visible at `as_of`.
    pub async fn read_merged_slice(
        &self,
        timeline: &Timeline,
        slice: &FileSlice,
        schema: &SchemaRef,
        as_of: Option<InstantTime>,
    ) -> Result<Vec<RecordBatch>> {
        let storage = self.storage().clone();
        let base = match &slice.base_file {
            Some(b) => Some((storage.display(&b.path()), storage.get(&b.path()).await?)),
            None => None,
        };
        let paths: Vec<String> = slice.log_files.iter().map(|l| l.path()).collect();
        let logs = fetch_files(&storage, paths).await?;
        let timeline = timeline.clone();
        let schema = schema.clone();
        let ordering = self.config().ordering_field.clone();
        tokio::task::spawn_blocking(move || {
            let base_rows = match base {
                Some((path, bytes)) => {
                    let (_, batches) = read_parquet(&path, bytes)?;
                    batches
                        .iter()
                        .map(|b| align_batch(b, &schema))
                        .collect::<Result<Vec<_>>>()?
                }
                None => Vec::new(),
            };
            let records = decode_logs(&timeline, &logs, &schema, as_of)?;
            merge_slice(base_rows, &records, &schema, ordering.as_deref())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

impl Table {
    /// The record keys of every valid record (data and delete) in a slice's log files — keys a
    /// base-file lookup would miss (log-only file groups, or keys a compaction dropped from the base
    /// file while newer logs hold them again).
    pub(crate) async fn log_keys(
        &self,
        timeline: &Timeline,
        slice: &FileSlice,
    ) -> Result<Vec<String>> {
        if slice.log_files.is_empty() {
            return Ok(Vec::new());
        }
        let storage = self.storage().clone();
        let paths: Vec<String> = slice.log_files.iter().map(|l| l.path()).collect();
        let logs = fetch_files(&storage, paths).await?;
        let timeline = timeline.clone();
        tokio::task::spawn_blocking(move || {
            let schema: SchemaRef = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new(RECORD_KEY, arrow::datatypes::DataType::Utf8, true),
            ]));
            let records = decode_logs(&timeline, &logs, &schema, None)?;
            let mut keys = Vec::new();
            for (_, b) in &records.data {
                if let Some(col) = b.column_by_name(RECORD_KEY) {
                    keys.extend(col.as_string::<i32>().iter().flatten().map(str::to_owned));
                }
            }
            for (_, d) in &records.deletes {
                keys.extend(d.iter().map(|r| r.key.clone()));
            }
            Ok(keys)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// The bytes of `paths` (root-relative), each with its display path, in order.
pub(crate) async fn fetch_files(
    storage: &lake_timeline::Storage,
    paths: Vec<String>,
) -> Result<Vec<(String, Bytes)>> {
    futures::stream::iter(paths)
        .map(|path| async move {
            let bytes = storage.get(&path).await?;
            Ok::<_, Error>((storage.display(&path), bytes))
        })
        .buffered(4)
        .try_collect()
        .await
}

/// The ordering value of `row` in `batch`'s ordering column, for a delete record.
pub(crate) fn ordering_value(
    batch: &RecordBatch,
    field: Option<&str>,
    row: usize,
) -> OrderingValue {
    match field.and_then(|f| batch.column_by_name(f)) {
        Some(col) => OrderingValue::of(col.as_ref(), row),
        None => OrderingValue::CommitTime,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(RECORD_KEY, DataType::Utf8, true),
            Field::new("ts", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(&str, i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    fn del(key: &str, ordering: OrderingValue) -> DeletedRecord {
        DeletedRecord {
            key: key.into(),
            partition: String::new(),
            ordering,
        }
    }

    fn rows(out: &[RecordBatch]) -> Vec<(String, i64, String)> {
        let mut v: Vec<(String, i64, String)> = out
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_string::<i32>().clone();
                let t = b
                    .column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                let s = b.column(2).as_string::<i32>().clone();
                (0..b.num_rows())
                    .map(move |i| (k.value(i).to_owned(), t.value(i), s.value(i).to_owned()))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn merge_resolves_by_ordering_then_write_order() {
        let base = vec![batch(&[
            ("a", 5, "base"),
            ("b", 5, "base"),
            ("c", 5, "base"),
            ("d", 5, "base"),
        ])];
        let t: InstantTime = "20250101000000000".parse().expect("time");
        let logs = LogRecords {
            data: vec![
                // a: newer update wins; b: a stale replay loses to the base; e: new key.
                (
                    t,
                    batch(&[("a", 6, "log1"), ("b", 4, "log1"), ("e", 1, "log1")]),
                ),
                // e: an equal ordering from a later write wins.
                (t, batch(&[("e", 1, "log2")])),
            ],
            deletes: vec![(
                t,
                vec![
                    del("c", OrderingValue::Long(5)),
                    del("d", OrderingValue::Long(4)),
                    del("a", OrderingValue::CommitTime),
                ],
            )],
            order: vec![(false, 0), (true, 0), (false, 1)],
            ..Default::default()
        };
        let out = merge_slice(base, &logs, &schema(), Some("ts")).expect("merge");
        assert_eq!(
            rows(&out),
            [
                ("b".to_owned(), 5, "base".to_owned()),
                ("d".to_owned(), 5, "base".to_owned()),
                ("e".to_owned(), 1, "log2".to_owned()),
            ]
        );
        // Without an ordering field the last write wins.
        let base = vec![batch(&[("a", 5, "base"), ("b", 5, "base")])];
        let out = merge_slice(base, &logs, &schema(), None).expect("merge");
        assert_eq!(
            rows(&out),
            [
                ("b".to_owned(), 4, "log1".to_owned()),
                ("e".to_owned(), 1, "log2".to_owned()),
            ]
        );
    }
}
