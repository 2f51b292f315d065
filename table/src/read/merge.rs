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
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch, UInt32Array,
    new_null_array,
};
use arrow::compute::{cast, concat, filter_record_batch, interleave_record_batch, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{InstantTime, Timeline};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::avro_block::{
    DeletedRecord, OrderingValue, decode_data_block_columns, decode_delete_block,
};
use crate::config::{KeyGenerator, TableConfig};
use crate::log_format::{BlockType, LogBlock, ReadBlock, header, read_blocks};
use crate::parquet_io::{StoreReader, read_parquet_columns, read_parquet_rows};
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
        .is_some_and(|l| crate::layout::is_lake_write_token(&l.write_token))
}

/// Decodes the blocks of a slice's log files (`files`: each file's display path and bytes, in write
/// order) into records aligned to `schema`, keeping only blocks visible at `as_of`.
pub fn decode_logs(
    timeline: &Timeline,
    files: &[(String, Bytes)],
    schema: &SchemaRef,
    as_of: Option<InstantTime>,
) -> Result<LogRecords> {
    decode_logs_columns(timeline, files, schema, as_of, None)
}

/// [`decode_logs`] decoding only the named `columns` of data blocks (all with `None`).
fn decode_logs_columns(
    timeline: &Timeline,
    files: &[(String, Bytes)],
    schema: &SchemaRef,
    as_of: Option<InstantTime>,
    columns: Option<&[&str]>,
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
                // lake writes every log file whole (its write tokens: `layout::is_lake_write_token`),
                // so a corrupt stretch in one of its logs is damage, and skipping it would silently
                // return older values.
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
                let batch = decode_data_block_columns(schema_json, &block.content, columns)
                    .map_err(corrupt)?;
                out.order.push((false, out.data.len()));
                out.data.push((time, align_batch(&batch, schema)?));
            }
            BlockType::ParquetData => {
                let (_, batches) = read_parquet_columns(&path, block.content.clone(), columns)?;
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

/// Ordering values of the log sources, comparable with each other and with base rows converted
/// on demand (only base rows whose key a log also holds are ever converted).
struct Orderings {
    field: String,
    data_type: DataType,
    converter: RowConverter,
    data: Vec<Rows>,
    deletes: Vec<Rows>,
    /// Delete entries whose ordering is commit time.
    commit_time_deletes: Vec<Vec<bool>>,
}

impl Orderings {
    fn new(field: Option<&str>, schema: &SchemaRef, logs: &LogRecords) -> Result<Option<Self>> {
        let Some(field) = field else { return Ok(None) };
        let Ok(f) = schema.field_with_name(field) else {
            return Ok(None);
        };
        let dt = f.data_type().clone();
        let converter = RowConverter::new(vec![SortField::new(dt.clone())])?;
        let mut this = Self {
            field: field.to_owned(),
            data_type: dt,
            converter,
            data: Vec::new(),
            deletes: Vec::new(),
            commit_time_deletes: Vec::new(),
        };
        this.data = logs
            .data
            .iter()
            .map(|(_, b)| this.rows_of(b))
            .collect::<Result<Vec<_>>>()?;
        let dt = &this.data_type;
        for (_, ds) in &logs.deletes {
            let mut values: Vec<ArrayRef> = Vec::with_capacity(ds.len());
            let mut ct = Vec::with_capacity(ds.len());
            for d in ds {
                let v = d
                    .ordering
                    .to_array()
                    .and_then(|a| cast(&a, dt).ok())
                    .filter(|a| a.null_count() == 0);
                ct.push(v.is_none());
                values.push(v.unwrap_or_else(|| new_null_array(dt, 1)));
            }
            let refs: Vec<&dyn Array> = values.iter().map(|c| c.as_ref()).collect();
            let arr = if refs.is_empty() {
                new_null_array(dt, 0)
            } else {
                concat(&refs)?
            };
            this.deletes.push(this.converter.convert_columns(&[arr])?);
            this.commit_time_deletes.push(ct);
        }
        Ok(Some(this))
    }

    /// The ordering values of `batch` (nulls where it has no ordering column).
    fn rows_of(&self, batch: &RecordBatch) -> Result<Rows> {
        let col = batch
            .column_by_name(&self.field)
            .cloned()
            .unwrap_or_else(|| new_null_array(&self.data_type, batch.num_rows()));
        Ok(self.converter.convert_columns(&[col])?)
    }

    /// The ordering values of `batch`'s rows `at`.
    fn rows_at(&self, batch: &RecordBatch, at: &UInt32Array) -> Result<Rows> {
        let col = match batch.column_by_name(&self.field) {
            Some(c) => take(c.as_ref(), at, None)?,
            None => new_null_array(&self.data_type, at.len()),
        };
        Ok(self.converter.convert_columns(&[col])?)
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

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// Merges a slice's base rows (`base`, aligned to `schema`) with its log records.
///
/// The logs are folded into one winning version per key first; each base row then costs a hash
/// probe, and only base rows whose key a log holds have their ordering value compared.
pub fn merge_slice(
    base: Vec<RecordBatch>,
    logs: &LogRecords,
    schema: &SchemaRef,
    ordering: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    merge_slice_keyed(base, logs, schema, ordering, None)
}

/// [`merge_slice`], probing base rows on the integer column `int_key` instead of the record key
/// strings, for tables whose record key is that column's decimal text (a simple key generator on
/// one integer field): base files then need no record key column at all.
fn merge_slice_keyed(
    base: Vec<RecordBatch>,
    logs: &LogRecords,
    schema: &SchemaRef,
    ordering: Option<&str>,
    int_key: Option<&str>,
) -> Result<Vec<RecordBatch>> {
    if logs.order.is_empty() {
        return Ok(base);
    }
    let orderings = Orderings::new(ordering, schema, logs)?;
    let string_keys: Vec<&arrow::array::StringArray> = logs
        .data
        .iter()
        .map(|(_, b)| {
            b.column_by_name(RECORD_KEY)
                .map(|c| c.as_string::<i32>())
                .ok_or_else(|| {
                    Error::Corrupt(format!("a log data block has no {RECORD_KEY} column"))
                })
        })
        .collect::<Result<_>>()?;
    if let Some(field) = int_key {
        let keys = integer_keys(logs, &string_keys);
        let base_keys = base
            .iter()
            .map(|b| {
                integer_column(b, field).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "a base file's record key column {field:?} is not an integer column without nulls"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Usually every log key is an integer's text: probe on plain integers then.
        let all_int = |blocks: &[Vec<Key>]| {
            blocks
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|k| match k {
                            Key::Int(v) => Some(*v),
                            Key::Text(_) => None,
                        })
                        .collect::<Option<Vec<i64>>>()
                })
                .collect::<Option<Vec<_>>>()
        };
        if let (Some(data), Some(deletes)) = (all_int(&keys.data), all_int(&keys.deletes)) {
            let ints = LogKeys { data, deletes };
            return resolve(&base, logs, schema, orderings.as_ref(), &ints, |i, r| {
                Some(base_keys[i].value(r))
            });
        }
        return resolve(&base, logs, schema, orderings.as_ref(), &keys, |i, r| {
            Some(Key::Int(base_keys[i].value(r)))
        });
    }
    let keys = LogKeys {
        data: string_keys
            .iter()
            .map(|k| (0..k.len()).map(|i| k.value(i)).collect())
            .collect(),
        deletes: logs
            .deletes
            .iter()
            .map(|(_, d)| d.iter().map(|r| r.key.as_str()).collect())
            .collect(),
    };
    let base_keys = base
        .iter()
        .map(|b| {
            b.column_by_name(RECORD_KEY)
                .map(|c| c.as_string::<i32>())
                .ok_or_else(|| Error::Corrupt(format!("a base file has no {RECORD_KEY} column")))
        })
        .collect::<Result<Vec<_>>>()?;
    resolve(&base, logs, schema, orderings.as_ref(), &keys, |i, r| {
        base_keys[i].is_valid(r).then(|| base_keys[i].value(r))
    })
}

/// The keys of the log records, per data block and per delete block, in block order.
struct LogKeys<K> {
    data: Vec<Vec<K>>,
    deletes: Vec<Vec<K>>,
}

/// A record key when keys are an integer field's text: the integer when the text is exactly its
/// decimal form, else the text itself (which then equals no base key, since base keys are the
/// generator's canonical text, but still merges with equal texts in the logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    Int(i64),
    Text(&'a str),
}

/// `s` as an integer if it is exactly that integer's decimal text (no sign on positives, no
/// leading zeros), as Hudi's simple key generator writes an integer field.
fn canonical_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let first = *digits.as_bytes().first()?;
    if !first.is_ascii_digit() || (first == b'0' && (digits.len() > 1 || digits.len() < s.len())) {
        return None;
    }
    s.parse().ok()
}

fn integer_key(s: &str) -> Key<'_> {
    canonical_integer(s).map_or(Key::Text(s), Key::Int)
}

fn integer_keys<'a>(
    logs: &'a LogRecords,
    string_keys: &[&'a arrow::array::StringArray],
) -> LogKeys<Key<'a>> {
    LogKeys {
        data: string_keys
            .iter()
            .map(|k| (0..k.len()).map(|i| integer_key(k.value(i))).collect())
            .collect(),
        deletes: logs
            .deletes
            .iter()
            .map(|(_, d)| d.iter().map(|r| integer_key(&r.key)).collect())
            .collect(),
    }
}

/// A base batch's integer key column as Int64, if it has one without nulls.
fn integer_column(batch: &RecordBatch, field: &str) -> Option<arrow::array::Int64Array> {
    let col = batch.column_by_name(field)?;
    if col.null_count() > 0 || !col.data_type().is_integer() {
        return None;
    }
    let col = cast(col, &DataType::Int64).ok()?;
    Some(col.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// The merge proper, over keys of type `K`: `base_key(batch, row)` is a base row's key.
fn resolve<K: Copy + Eq + std::hash::Hash>(
    base: &[RecordBatch],
    logs: &LogRecords,
    schema: &SchemaRef,
    orderings: Option<&Orderings>,
    keys: &LogKeys<K>,
    base_key: impl Fn(usize, usize) -> Option<K>,
) -> Result<Vec<RecordBatch>> {
    // The winning log version of every key, folding events in write order.
    let capacity = logs.data_records() + logs.deleted_records();
    let mut winner: FastMap<K, Source> =
        FastMap::with_capacity_and_hasher(capacity, Default::default());
    let mut first_seen: Vec<K> = Vec::with_capacity(capacity);
    for &(is_delete, idx) in &logs.order {
        let block = if is_delete {
            &keys.deletes[idx]
        } else {
            &keys.data[idx]
        };
        for (i, key) in block.iter().enumerate() {
            let src = if is_delete {
                Source::Delete(idx, i)
            } else {
                Source::Data(idx, i)
            };
            match winner.get_mut(key) {
                Some(w) => {
                    if orderings.is_none_or(|o| o.later_wins(src, *w)) {
                        *w = src;
                    }
                }
                None => {
                    winner.insert(*key, src);
                    first_seen.push(*key);
                }
            }
        }
    }
    // Base rows: kept unless a log version of their key wins over them.
    let mut out = Vec::with_capacity(base.len() + 1);
    let mut beaten: FastSet<K> = FastSet::default();
    for (bi, b) in base.iter().enumerate() {
        let mut matched: Vec<(u32, Source)> = Vec::new();
        for r in 0..b.num_rows() {
            if let Some(k) = base_key(bi, r)
                && let Some(w) = winner.get(&k)
            {
                matched.push((r as u32, *w));
            }
        }
        if matched.is_empty() {
            out.push(b.clone());
            continue;
        }
        let mut keep = BooleanBufferBuilder::new(b.num_rows());
        keep.append_n(b.num_rows(), true);
        match orderings {
            None => matched
                .iter()
                .for_each(|(r, _)| keep.set_bit(*r as usize, false)),
            Some(o) => {
                let at = UInt32Array::from_iter_values(matched.iter().map(|(r, _)| *r));
                let base_rows = o.rows_at(b, &at)?;
                for (j, (r, w)) in matched.iter().enumerate() {
                    if o.is_commit_time(*w) || o.row(*w) >= base_rows.row(j) {
                        keep.set_bit(*r as usize, false);
                    } else if let Some(k) = base_key(bi, *r as usize) {
                        beaten.insert(k);
                    }
                }
            }
        }
        let kept = filter_record_batch(b, &BooleanArray::new(keep.finish(), None))?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    let picks: Vec<(usize, usize)> = first_seen
        .iter()
        .filter(|k| !beaten.contains(*k))
        .filter_map(|k| match winner[k] {
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
        let plan = Arc::new(SliceMerge::new(self.config(), schema, None)?);
        let bytes = plan.fetch(self, slice).await?;
        let timeline = timeline.clone();
        tokio::task::spawn_blocking(move || plan.merge(bytes, &timeline, as_of))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// How the slices of one read are merged: the columns decoded (the projected ones plus the record
/// key, ordering and integer key columns), the key the merge probes on, and the output columns.
#[derive(Debug)]
pub struct SliceMerge {
    config: TableConfig,
    /// The columns decoded and merged, in read-schema order.
    merge_schema: SchemaRef,
    /// Their names, when a projection narrows the read (`None`: every column).
    columns: Option<Vec<String>>,
    /// The base file's columns: `columns`, less the record key strings when the merge probes an
    /// integer key and the record key is not output.
    base_columns: Option<Vec<String>>,
    /// The output schema and where each of its columns sits in `merge_schema`.
    output: Option<(SchemaRef, Vec<usize>)>,
    int_key: Option<String>,
}

impl SliceMerge {
    /// Plans merges into `schema` (the full read schema, meta columns included), outputting the
    /// columns at `projection` in that order (all with `None`).
    pub fn new(
        config: &TableConfig,
        schema: &SchemaRef,
        projection: Option<&[usize]>,
    ) -> Result<Self> {
        let ordering = config.ordering_field.as_deref();
        let int_key = integer_key_field(config, schema);
        let Some(p) = projection else {
            return Ok(Self {
                config: config.clone(),
                merge_schema: schema.clone(),
                columns: None,
                base_columns: None,
                output: None,
                int_key: int_key.map(str::to_owned),
            });
        };
        let keep = |i: usize, name: &str| {
            p.contains(&i) || name == RECORD_KEY || Some(name) == ordering || Some(name) == int_key
        };
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, f)| keep(*i, f.name()))
            .map(|(_, f)| f.clone())
            .collect();
        let merge_schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let out = Arc::new(schema.project(p)?);
        let at = out
            .fields()
            .iter()
            .map(|f| merge_schema.index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let columns: Vec<String> = merge_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let key_output = out.fields().iter().any(|f| f.name() == RECORD_KEY);
        let base_columns = columns
            .iter()
            .filter(|c| int_key.is_none() || key_output || c.as_str() != RECORD_KEY)
            .cloned()
            .collect();
        Ok(Self {
            config: config.clone(),
            columns: Some(columns),
            base_columns: Some(base_columns),
            merge_schema,
            output: Some((out, at)),
            int_key: int_key.map(str::to_owned),
        })
    }

    fn column_names(&self) -> Option<Vec<&str>> {
        self.columns
            .as_ref()
            .map(|c| c.iter().map(String::as_str).collect())
    }

    fn base_column_names(&self) -> Option<Vec<&str>> {
        self.base_columns
            .as_ref()
            .map(|c| c.iter().map(String::as_str).collect())
    }

    /// Fetches a slice: its log files whole, and its base file whole — or, when the read is
    /// projected, only the base file's footer and the column chunks the merge decodes (ranged
    /// reads, decoded as they arrive).
    pub async fn fetch(&self, table: &Table, slice: &FileSlice) -> Result<SliceBytes> {
        let storage = table.storage().clone();
        let base = async {
            let Some(b) = &slice.base_file else {
                return Ok::<_, Error>(None);
            };
            let path = storage.display(&b.path());
            let data = match self.base_column_names() {
                None => BaseData::Whole(storage.get(&b.path()).await?),
                Some(names) => BaseData::Decoded(
                    read_store_columns(&storage, &b.path(), b.size, &names).await?,
                ),
            };
            Ok(Some((path, data)))
        };
        let paths: Vec<String> = slice.log_files.iter().map(|l| l.path()).collect();
        let (base, logs) = futures::try_join!(base, fetch_files(&storage, paths))?;
        Ok(SliceBytes { base, logs })
    }

    /// Merges a fetched slice (CPU only; run it off the async runtime): the output columns of every
    /// record visible at `as_of`.
    pub fn merge(
        &self,
        bytes: SliceBytes,
        timeline: &Timeline,
        as_of: Option<InstantTime>,
    ) -> Result<Vec<RecordBatch>> {
        let names = self.column_names();
        let base_rows = match bytes.base {
            Some((path, data)) => {
                let batches = match data {
                    BaseData::Whole(bytes) => {
                        read_parquet_columns(&path, bytes, self.base_column_names().as_deref())?.1
                    }
                    BaseData::Decoded(batches) => batches,
                };
                let aligned = batches
                    .iter()
                    .map(|b| align_batch(b, &self.merge_schema))
                    .collect::<Result<Vec<_>>>()?;
                // The integer key stands for the record key of every base row (the key generator
                // wrote one from the other); a base file where it cannot is damaged, not merged.
                if let Some(field) = &self.int_key
                    && aligned.iter().any(|b| integer_column(b, field).is_none())
                {
                    return Err(Error::Damaged {
                        path,
                        reason: format!("its record key column {field:?} is missing or has nulls"),
                    });
                }
                aligned
            }
            None => Vec::new(),
        };
        let records = decode_logs_columns(
            timeline,
            &bytes.logs,
            &self.merge_schema,
            as_of,
            names.as_deref(),
        )?;
        let merged = merge_slice_keyed(
            base_rows,
            &records,
            &self.merge_schema,
            self.config.ordering_field.as_deref(),
            self.int_key.as_deref(),
        )?;
        let Some((out, at)) = &self.output else {
            return Ok(merged);
        };
        // Aligned, not asserted: merged columns may hold nulls where the read schema's newest
        // file declares the column required (their nullability is relaxed, as unprojected).
        merged
            .into_iter()
            .map(|b| align_batch(&b.project(at)?, out))
            .collect()
    }
}

impl SliceMerge {
    /// [`SliceMerge::merge`] of the records whose key is in `keys` (records of other keys that only
    /// the logs hold may come out too): of a whole fetched base file only the key column and the rows
    /// of those keys are decoded, so a few records of a large slice cost little more than its keys.
    pub fn merge_keys(
        &self,
        bytes: SliceBytes,
        timeline: &Timeline,
        as_of: Option<InstantTime>,
        keys: &HashSet<&str>,
    ) -> Result<Vec<RecordBatch>> {
        let base = match bytes.base {
            Some((path, BaseData::Whole(data))) => {
                let (_, key_batches) =
                    read_parquet_columns(&path, data.clone(), Some(&[RECORD_KEY]))?;
                let mut rows = Vec::new();
                let mut offset = 0;
                for b in &key_batches {
                    if let Some(col) = b.column_by_name(RECORD_KEY) {
                        let col = cast(col, &DataType::Utf8)?;
                        let col = col.as_string::<i32>();
                        rows.extend(
                            col.iter()
                                .enumerate()
                                .filter(|(_, k)| k.is_some_and(|k| keys.contains(k)))
                                .map(|(i, _)| offset + i),
                        );
                    }
                    offset += b.num_rows();
                }
                let batches = if rows.is_empty() {
                    Vec::new()
                } else {
                    read_parquet_rows(&path, data, &rows)?
                };
                Some((path, BaseData::Decoded(batches)))
            }
            other => other,
        };
        self.merge(
            SliceBytes {
                base,
                logs: bytes.logs,
            },
            timeline,
            as_of,
        )
    }
}

/// The named top-level columns of a stored Parquet file, read with ranged requests (footer, then the
/// column chunks); names the file does not have are left out.
async fn read_store_columns(
    storage: &lake_timeline::Storage,
    rel: &str,
    size: u64,
    names: &[&str],
) -> Result<Vec<RecordBatch>> {
    let perr = |source| Error::Parquet {
        path: storage.display(rel),
        source,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(StoreReader::new(storage, rel, size))
        .await
        .map_err(perr)?;
    let roots = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    stream.try_collect().await.map_err(perr)
}

/// A slice's base file as fetched: its bytes, or the projected columns already decoded.
#[derive(Clone, Debug)]
enum BaseData {
    Whole(Bytes),
    Decoded(Vec<RecordBatch>),
}

/// The table's record key field when keys are its plain decimal text: one integer field under
/// Hudi's simple, non-partitioned or timestamp-based key generator, named in the table's
/// properties (whose record key is the field's value as text; a custom generator may write
/// anything).
fn integer_key_field<'a>(config: &'a TableConfig, schema: &SchemaRef) -> Option<&'a str> {
    let [field] = config.record_key_fields.as_slice() else {
        return None;
    };
    let integer = schema
        .field_with_name(field)
        .is_ok_and(|f| f.data_type().is_integer());
    // Only a generator the table names: one inferred from the key and partition fields could be
    // wrong (an old table written with the complex generator on one field has `id:5` keys).
    let named = [
        "hoodie.table.keygenerator.class",
        "hoodie.table.keygenerator.type",
    ]
    .iter()
    .any(|k| config.raw.get(*k).is_some_and(|v| !v.is_empty()));
    let plain = named
        && matches!(
            config.key_generator,
            KeyGenerator::Simple | KeyGenerator::NonPartitioned | KeyGenerator::TimestampBased
        );
    (integer && plain).then_some(field.as_str())
}

/// The fetched files of one file slice: its base file and its log files in write order, each with
/// its display path.
#[derive(Clone, Debug)]
pub struct SliceBytes {
    base: Option<(String, BaseData)>,
    logs: Vec<(String, Bytes)>,
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

    /// A small seeded generator (xorshift) for the randomised merge tests.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn keyed_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(RECORD_KEY, DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn keyed_batch(rows: &[(i64, i64, String)], text: impl Fn(i64) -> String) -> RecordBatch {
        RecordBatch::try_new(
            keyed_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| text(r.0)),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.clone()),
                )),
            ],
        )
        .expect("batch")
    }

    fn sorted_rows(out: &[RecordBatch]) -> Vec<(String, i64, i64, String)> {
        let mut v: Vec<_> = out
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_string::<i32>().clone();
                let id = b
                    .column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                let t = b
                    .column(2)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .clone();
                let s = b.column(3).as_string::<i32>().clone();
                (0..b.num_rows()).map(move |i| {
                    (
                        k.value(i).to_owned(),
                        id.value(i),
                        t.value(i),
                        s.value(i).to_owned(),
                    )
                })
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn canonical_integers_are_exactly_decimal_text() {
        for (s, want) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("-42", Some(-42)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("007", None),
            ("-0", None),
            ("-07", None),
            ("+5", None),
            ("", None),
            ("-", None),
            ("1e3", None),
            (" 1", None),
        ] {
            assert_eq!(canonical_integer(s), want, "{s:?}");
        }
    }

    /// The integer-key probe must answer exactly what the record-key-string probe answers, over
    /// random slices: duplicate keys across and within blocks, deletes with and without ordering
    /// values, equal orderings, stale replays, keys only in logs, and keys whose text is not
    /// canonical (which must fall back to the strings).
    #[test]
    fn integer_key_merge_equals_string_key_merge() {
        let t: InstantTime = "20250101000000000".parse().expect("time");
        for seed in 1..400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let keys = 1 + rng.below(40) as i64;
            let noncanonical = seed % 7 == 0;
            let text = move |k: i64| {
                if noncanonical && k == 3 {
                    format!("00{k}")
                } else {
                    (k - 5).to_string()
                }
            };
            let id_of = move |k: i64| if noncanonical && k == 3 { 3 } else { k - 5 };
            let mut base_rows: Vec<(i64, i64, String)> = Vec::new();
            for k in 0..keys {
                if rng.below(4) != 0 {
                    base_rows.push((k, rng.below(10) as i64, format!("base{k}")));
                }
            }
            let mut logs = LogRecords::default();
            for block in 0..1 + rng.below(5) {
                if rng.below(3) == 0 {
                    let entries = (0..1 + rng.below(6))
                        .map(|_| {
                            let k = rng.below(keys as u64) as i64;
                            let ordering = match rng.below(3) {
                                0 => OrderingValue::CommitTime,
                                _ => OrderingValue::Long(rng.below(10) as i64),
                            };
                            del(&text(k), ordering)
                        })
                        .collect();
                    logs.order.push((true, logs.deletes.len()));
                    logs.deletes.push((t, entries));
                } else {
                    let rows: Vec<(i64, i64, String)> = (0..1 + rng.below(8))
                        .map(|i| {
                            let k = rng.below(keys as u64) as i64;
                            (k, rng.below(10) as i64, format!("log{block}.{i}"))
                        })
                        .collect();
                    logs.order.push((false, logs.data.len()));
                    logs.data.push((t, keyed_batch(&rows, text)));
                }
            }
            // The base and the log batches carry the id column the key text encodes.
            let with_ids = |b: RecordBatch| {
                let ids = Int64Array::from_iter_values(
                    b.column(1)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .values()
                        .iter()
                        .map(|k| id_of(*k)),
                );
                let mut cols = b.columns().to_vec();
                cols[1] = Arc::new(ids);
                RecordBatch::try_new(b.schema(), cols).expect("ids")
            };
            logs.data = logs
                .data
                .into_iter()
                .map(|(t, b)| (t, with_ids(b)))
                .collect();
            let base = if base_rows.is_empty() {
                Vec::new()
            } else {
                // Base files hold what the key generator wrote: the id's decimal text.
                vec![with_ids(keyed_batch(&base_rows, |k| id_of(k).to_string()))]
            };
            for ordering in [Some("ts"), None] {
                let by_string =
                    merge_slice_keyed(base.clone(), &logs, &keyed_schema(), ordering, None)
                        .expect("string merge");
                let by_integer =
                    merge_slice_keyed(base.clone(), &logs, &keyed_schema(), ordering, Some("id"))
                        .expect("integer merge");
                assert_eq!(
                    sorted_rows(&by_integer),
                    sorted_rows(&by_string),
                    "seed {seed}, ordering {ordering:?}"
                );
            }
        }
    }

    /// A projected merge whose rows hold nulls in a column the read schema declares required (a
    /// newest base file that declared it so, logs that hold nulls) relaxes the column, as an
    /// unprojected merge does, instead of failing.
    #[tokio::test]
    async fn projected_merges_relax_required_columns_that_hold_nulls() {
        use crate::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};
        let cfg = TableConfig::new(
            "n",
            TableType::MergeOnRead,
            vec!["id".into()],
            Vec::new(),
            Some("ts".into()),
            Some(1),
        )
        .expect("config");
        let t = Table::create("memory://projected_nulls", cfg)
            .await
            .expect("create");
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("ts", DataType::Int64, false),
                Field::new("w", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![1, 1])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .expect("batch");
        t.write(vec![ChangeBatch::upserts(batch)], WriteOptions::default())
            .await
            .expect("write");
        let timeline = t.timeline().await.expect("timeline");
        let slices = t.file_slices(None).await.expect("slices");
        let read = t.snapshot_schema(&timeline, &slices).await.expect("schema");
        // The read schema as a newest base file declaring `w` required would give it.
        let required = Arc::new(Schema::new(
            read.fields()
                .iter()
                .map(|f| {
                    let f = f.as_ref().clone();
                    if f.name() == "w" {
                        f.with_nullable(false)
                    } else {
                        f
                    }
                })
                .collect::<Vec<_>>(),
        ));
        let w = required.index_of("w").expect("w");
        let id = required.index_of("id").expect("id");
        let plan = SliceMerge::new(t.config(), &required, Some(&[id, w])).expect("plan");
        let mut values = Vec::new();
        for slice in &slices {
            let bytes = plan.fetch(&t, slice).await.expect("fetch");
            for b in plan.merge(bytes, &timeline, None).expect("merge") {
                assert_eq!(b.num_columns(), 2);
                let ids = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                let ws = b.column(1).as_string::<i32>();
                for i in 0..b.num_rows() {
                    values.push((ids.value(i), ws.is_valid(i).then(|| ws.value(i).to_owned())));
                }
            }
        }
        values.sort();
        assert_eq!(values, [(1, Some("x".to_owned())), (2, None)]);
    }
}
