//! Batch preparation: schema evolution and alignment, record keys, delete flags, in-batch
//! resolution per (record key, partition) by the ordering field, and record-size estimates.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use lake_timeline::{InstantTime, Timeline};

use super::{ChangeBatch, WriteOperation};
use crate::index::DEFAULT_RECORD_SIZE;
use crate::keys::record_keys;
use crate::layout::{BaseFile, WRITE_TOKEN};
use crate::parquet_io::encode_parquet;
use crate::schema::{self, align_batch, with_meta_columns};
use crate::{Error, Result, Table};

/// A write's rows, aligned to the table schema, with their keys and delete flags.
pub(super) struct Prepared {
    pub(super) schema: SchemaRef,
    pub(super) rows: RecordBatch,
    pub(super) keys: Vec<String>,
    pub(super) is_delete: Vec<bool>,
}

impl Table {
    /// Evolves the schema, aligns and concatenates the batches, computes keys and delete flags.
    pub(super) fn prepare(
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
        // An upsert without an ordering value cannot be ordered against other versions of its key
        // (a delete without one wins by write order, as Hudi's commit-time deletes do).
        if let Some(f) = &config.ordering_field
            && let Some(col) = rows.column_by_name(f)
            && col.null_count() > 0
            && let Some(row) = (0..rows.num_rows()).find(|r| col.is_null(*r) && !is_delete[*r])
        {
            return Err(Error::InvalidRecord {
                row,
                reason: format!(
                    "the ordering field {f:?} is null or missing; an upsert needs it to be ordered against other versions of key {:?}",
                    keys[row]
                ),
            });
        }
        Ok(Prepared {
            schema,
            rows,
            keys,
            is_delete,
        })
    }

    /// Bytes per record of a base file: from the last commit's write stats (as Hudi estimates), or for
    /// a table's first write, from encoding a sample of the batch.
    pub(super) async fn record_size_estimate(
        &self,
        timeline: &Timeline,
        p: &Prepared,
        partitions: &[String],
    ) -> Result<u64> {
        if let Some(last) = timeline.last_completed_write() {
            let m = timeline.commit_metadata_cached(last).await?;
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

    /// The row index of the winning version of every record key *in each partition* (Hudi's
    /// `HoodieKey`), in first-seen order: a delete in one partition and an insert of the same key in
    /// another are both kept, so a key that moves between partitions leaves no copy behind.
    pub(super) fn dedupe(&self, p: &Prepared, partitions: &[String]) -> Result<Vec<usize>> {
        let order = ordering_rows(&p.rows, self.config().ordering_field.as_deref(), &[])?;
        let mut winner: HashMap<(&str, &str), usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(p.keys.len(), Default::default());
        let mut first_seen: Vec<(&str, &str)> = Vec::new();
        for (row, key) in p.keys.iter().enumerate() {
            let id = (key.as_str(), partitions[row].as_str());
            match winner.get_mut(&id) {
                Some(w) => {
                    let newer = order
                        .as_ref()
                        .is_none_or(|(rows, _)| rows.row(row) >= rows.row(*w));
                    if newer {
                        *w = row;
                    }
                }
                None => {
                    winner.insert(id, row);
                    first_seen.push(id);
                }
            }
        }
        Ok(first_seen.into_iter().map(|k| winner[&k]).collect())
    }
}

/// Comparable ordering values of a column (plus optional extra arrays converted with the same
/// converter, so their rows compare with these); `None` when the table has no ordering field.
pub(super) fn ordering_rows(
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
