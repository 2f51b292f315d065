//! Tagging: which file group each record of a write goes to.
//!
//! Three indexes, as in Hudi:
//! - **bucket** (lake's default): `bucket = hash(key) % N` per partition, one file group per bucket;
//!   locating a key reads nothing.
//! - **simple** (key lookup): the record keys of the touched partitions' latest base files are read
//!   (only the `_hoodie_record_key` column, and only files whose footer key range can hold an
//!   incoming key); updates and deletes go to the file group holding the key, and new records fill
//!   file groups smaller than the small-file limit up to the target file size, then new file groups
//!   of the target size, estimating bytes per record from the previous commit.
//! - **global simple** (table-wide keys): the simple index, plus [`stored_versions`], which finds
//!   the live version of each incoming key in *every* partition (key and ordering columns of every
//!   latest file slice, merged with its logs), so the writer can delete the copy a moved key left
//!   in its old partition.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, StringArray};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;

use crate::Table;
use crate::config::TableConfig;
use crate::keys::bucket_id;
use crate::layout::{BaseFile, bucket_of_file_id, new_file_id};
use crate::parquet_io::StoreReader;
use crate::schema::{RECORD_KEY, align_batch};
use crate::view::{FileSlice, FileSystemView};
use crate::{Error, Result};
use lake_timeline::{Storage, Timeline};

/// The rows one file group receives in a write.
#[derive(Debug)]
pub(crate) struct Assignment {
    /// Partition path.
    pub partition: String,
    /// The file group (existing or new).
    pub file_id: String,
    /// Its current base file, if it has one.
    pub prev: Option<BaseFile>,
    /// Row indexes of the prepared batch.
    pub rows: Vec<usize>,
}

/// What tagging needs to know of the rows of a write.
pub(crate) struct Rows<'a> {
    /// Record key of every row.
    pub keys: &'a [String],
    /// Partition path of every row.
    pub partitions: &'a [String],
    /// Delete flag of every row.
    pub is_delete: &'a [bool],
    /// The rows to write (one per key, after deduplication).
    pub winners: &'a [usize],
    /// Whether stored keys are looked up (false for `insert`).
    pub lookup: bool,
    /// Whether new records may top up small existing file groups (not for merge-on-read, whose
    /// key lookup reads base files only, so new keys must land in base files).
    pub top_up: bool,
    /// Rows whose file group is already known (the global index's deletes of a moved key's old
    /// copy, found by merging the group's slice): row → file id.
    pub pinned: &'a HashMap<usize, String>,
}

/// Bytes per record Hudi assumes when nothing has been written yet.
pub(crate) const DEFAULT_RECORD_SIZE: u64 = 1024;

/// Assigns every row to a file group with the table's index.
pub(crate) async fn assign(
    table: &Table,
    timeline: &Timeline,
    view: &FileSystemView,
    rows: &Rows<'_>,
    record_size: u64,
) -> Result<Vec<Assignment>> {
    let config = table.config();
    match config.bucket_count {
        Some(n) => assign_buckets(config, view, rows, n),
        None => assign_by_lookup(table, timeline, view, rows, record_size.max(1)).await,
    }
}

fn assign_buckets(
    config: &TableConfig,
    view: &FileSystemView,
    rows: &Rows<'_>,
    buckets: u32,
) -> Result<Vec<Assignment>> {
    // Grouped by borrowed partition paths (no string copy or comparison per row), then ordered by
    // (partition, bucket) as before.
    let mut groups: HashMap<(&str, u32), Vec<usize>, foldhash::fast::RandomState> =
        HashMap::default();
    for &row in rows.winners {
        let b = bucket_id(&rows.keys[row], &config.bucket_hash_fields, buckets);
        groups
            .entry((rows.partitions[row].as_str(), b))
            .or_default()
            .push(row);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(groups.len());
    for ((partition, bucket), rows) in groups {
        let partition = partition.to_owned();
        let existing: Vec<&str> = view
            .file_ids(&partition)
            .filter(|f| bucket_of_file_id(f) == Some(bucket))
            .collect();
        if existing.len() > 1 {
            return Err(Error::Unsupported(format!(
                "partition {partition:?} has {} file groups for bucket {bucket}",
                existing.len()
            )));
        }
        let (file_id, prev) = match existing.first() {
            Some(id) => (
                (*id).to_owned(),
                view.latest_slice(&partition, id)
                    .and_then(|s| s.base_file.clone()),
            ),
            None => (new_file_id(Some(bucket)), None),
        };
        out.push(Assignment {
            partition,
            file_id,
            prev,
            rows,
        });
    }
    Ok(out)
}

/// The record keys stored in a base file (none when its footer key range holds none of `wanted`,
/// sorted).
async fn stored_keys(storage: &Storage, file: &BaseFile, wanted: &[&str]) -> Result<Vec<String>> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
        RECORD_KEY,
        DataType::Utf8,
        true,
    )]));
    let mut keys = Vec::new();
    for b in key_columns(storage, file, wanted, &schema).await? {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                Error::Unsupported(format!("{} has no string {RECORD_KEY} column", file.path()))
            })?;
        keys.extend(col.iter().flatten().map(str::to_owned));
    }
    Ok(keys)
}

async fn assign_by_lookup(
    table: &Table,
    timeline: &Timeline,
    view: &FileSystemView,
    rows: &Rows<'_>,
    record_size: u64,
) -> Result<Vec<Assignment>> {
    let config = table.config();
    let storage = table.storage();
    if !config.populate_meta_fields {
        return Err(Error::Unsupported(
            "writes to tables without meta fields".into(),
        ));
    }
    let mut by_partition: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &row in rows.winners {
        by_partition
            .entry(rows.partitions[row].as_str())
            .or_default()
            .push(row);
    }
    let mut out: Vec<Assignment> = Vec::new();
    for (partition, part_rows) in by_partition {
        let slices: Vec<FileSlice> = view
            .file_ids(partition)
            .filter_map(|id| view.latest_slice(partition, id))
            .collect();
        let mut wanted: Vec<&str> = part_rows.iter().map(|r| rows.keys[*r].as_str()).collect();
        wanted.sort_unstable();
        // Where each incoming key is stored: the key column of base files whose range fits, and the
        // keys of the slice's log records (a log may hold a key its base file does not).
        let mut location: HashMap<&str, usize> = HashMap::new();
        if rows.lookup {
            let found: Vec<Vec<String>> = futures::stream::iter(slices.iter())
                .map(|slice| {
                    let wanted = &wanted;
                    async move {
                        let mut keys = match &slice.base_file {
                            Some(b) => stored_keys(storage, b, wanted).await?,
                            None => Vec::new(),
                        };
                        keys.extend(table.log_keys(timeline, slice).await?);
                        Ok::<_, Error>(keys)
                    }
                })
                .buffered(8)
                .try_collect()
                .await?;
            for (slot, keys) in found.iter().enumerate() {
                for k in keys {
                    if let Ok(i) = wanted.binary_search(&k.as_str()) {
                        location.insert(wanted[i], slot);
                    }
                }
            }
        }
        let mut per_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut inserts: Vec<usize> = Vec::new();
        for &row in &part_rows {
            let pinned = rows
                .pinned
                .get(&row)
                .and_then(|id| slices.iter().position(|f| f.file_id == *id));
            match pinned.or_else(|| location.get(rows.keys[row].as_str()).copied()) {
                Some(slot) => per_file.entry(slot).or_default().push(row),
                None if rows.is_delete[row] => {}
                None => inserts.push(row),
            }
        }
        // New records: top up small files, then open new file groups of the target size.
        let per_file_capacity = (config.target_file_size / record_size).max(1) as usize;
        let mut next = 0;
        for (slot, f) in slices.iter().enumerate() {
            if next == inserts.len() {
                break;
            }
            let Some(base) = f.base_file.as_ref().filter(|_| rows.top_up) else {
                continue;
            };
            if base.size >= config.small_file_limit {
                continue;
            }
            let room = (config.target_file_size.saturating_sub(base.size) / record_size) as usize;
            let take = room.min(inserts.len() - next);
            per_file
                .entry(slot)
                .or_default()
                .extend(&inserts[next..next + take]);
            next += take;
        }
        for (slot, rows) in per_file {
            let f = &slices[slot];
            out.push(Assignment {
                partition: partition.to_owned(),
                file_id: f.file_id.clone(),
                prev: f.base_file.clone(),
                rows,
            });
        }
        for chunk in inserts[next..].chunks(per_file_capacity) {
            out.push(Assignment {
                partition: partition.to_owned(),
                file_id: new_file_id(None),
                prev: None,
                rows: chunk.to_vec(),
            });
        }
    }
    Ok(out)
}

/// Where a live stored version of a key is.
#[derive(Debug)]
pub(crate) struct StoredAt {
    /// Partition path.
    pub partition: String,
    /// File group.
    pub file_id: String,
    /// Index into [`StoredVersions::ordering`].
    pub at: usize,
}

/// The live stored versions of some keys, anywhere in the table.
#[derive(Debug, Default)]
pub(crate) struct StoredVersions {
    /// Key → each live version.
    pub found: HashMap<String, Vec<StoredAt>>,
    /// The stored ordering value of every version found (`None` without an ordering field).
    pub ordering: Option<ArrayRef>,
}

/// Finds the live version of every key in `wanted` in every latest file slice of `view` (which must
/// list the whole table): base files are read for their key and ordering columns only, and skipped
/// when their footer key range holds no wanted key; slices with logs are merged first, so deleted
/// keys are not found. This is the cost of table-wide keys: every base file whose key range
/// overlaps the batch is read, in every partition.
pub(crate) async fn stored_versions(
    table: &Table,
    timeline: &Timeline,
    view: &FileSystemView,
    wanted: &[&str],
    ordering: Option<(&str, &DataType)>,
) -> Result<StoredVersions> {
    let mut fields = vec![Field::new(RECORD_KEY, DataType::Utf8, true)];
    if let Some((name, ty)) = ordering {
        fields.push(Field::new(name, ty.clone(), true));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut sorted: Vec<&str> = wanted.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let slices = view.latest_slices();
    let read: Vec<(FileSlice, Vec<RecordBatch>)> = futures::stream::iter(slices)
        .map(|slice| {
            let schema = schema.clone();
            let sorted = &sorted;
            async move {
                let batches = if slice.log_files.is_empty() {
                    match &slice.base_file {
                        Some(base) => key_columns(table.storage(), base, sorted, &schema).await?,
                        None => Vec::new(),
                    }
                } else {
                    table
                        .read_merged_slice(timeline, &slice, &schema, None)
                        .await?
                };
                Ok::<_, Error>((slice, batches))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut out = StoredVersions::default();
    let mut values: Vec<ArrayRef> = Vec::new();
    for (slice, batches) in read {
        for b in batches {
            let keys = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| Error::Corrupt(format!("{RECORD_KEY} is not a string column")))?;
            for row in 0..b.num_rows() {
                if keys.is_null(row) || sorted.binary_search(&keys.value(row)).is_err() {
                    continue;
                }
                out.found
                    .entry(keys.value(row).to_owned())
                    .or_default()
                    .push(StoredAt {
                        partition: slice.partition.clone(),
                        file_id: slice.file_id.clone(),
                        at: values.len(),
                    });
                if let Some(c) = b.columns().get(1) {
                    values.push(c.slice(row, 1));
                }
            }
        }
    }
    if ordering.is_some() && !values.is_empty() {
        let refs: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
        out.ordering = Some(arrow::compute::concat(&refs)?);
    }
    Ok(out)
}

/// The key (and ordering) columns of a base file, aligned to `schema`; nothing when its footer key
/// range holds none of `wanted` (sorted).
async fn key_columns(
    storage: &Storage,
    file: &BaseFile,
    wanted: &[&str],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let perr = |source| Error::Parquet {
        path: storage.display(&file.path()),
        source,
    };
    let reader = StoreReader::new(storage, &file.path(), file.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(perr)?;
    let meta = builder.metadata().file_metadata();
    let kv = |k: &str| {
        meta.key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|e| e.key == k))
            .and_then(|e| e.value.clone())
    };
    if let (Some(min), Some(max)) = (kv("hoodie_min_record_key"), kv("hoodie_max_record_key")) {
        let from = wanted.partition_point(|k| *k < min.as_str());
        if from == wanted.len() || wanted[from] > max.as_str() {
            return Ok(Vec::new());
        }
    }
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), names);
    let stream = builder.with_projection(mask).build().map_err(perr)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
    batches.iter().map(|b| align_batch(b, schema)).collect()
}
