//! The snapshot reader: the rows of the latest file slices as of an instant (copy-on-write tables
//! and the read-optimized view). The DataFusion provider plans over the same file slices.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lake_timeline::InstantTime;

use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::parquet_io::StoreReader;
use crate::schema::{align_batch, without_meta_columns};
use crate::view::{FileSlice, FileSystemView};
use crate::{Error, Result, Table};

/// Options of a snapshot read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Read the table as of this completed instant (time travel); latest when `None`.
    pub as_of: Option<InstantTime>,
    /// Keep the `_hoodie_*` meta columns.
    pub with_meta_columns: bool,
    /// Files read at once.
    pub concurrency: Option<usize>,
    /// Base files only (merge-on-read tables: the read-optimized view).
    pub read_optimized: bool,
}

impl Table {
    /// The latest file slices visible as of `as_of`.
    pub async fn file_slices(&self, as_of: Option<InstantTime>) -> Result<Vec<FileSlice>> {
        let timeline = self.timeline().await?;
        let view = FileSystemView::load(&timeline, None, as_of).await?;
        Ok(view.latest_slices())
    }

    /// The table schema as of `as_of`, meta columns included: the schema of the newest base file
    /// (which carries every column written so far), else the schema of the latest commit.
    pub async fn read_schema(&self, slices: &[FileSlice]) -> Result<SchemaRef> {
        let newest = slices
            .iter()
            .filter_map(|s| s.base_file.as_ref())
            .max_by_key(|b| (b.instant, &b.partition, &b.file_id));
        if let Some(b) = newest {
            let reader = StoreReader::new(self.storage(), &b.path(), b.size);
            let builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|source| Error::Parquet {
                    path: self.storage().display(&b.path()),
                    source,
                })?;
            return Ok(builder.schema().clone());
        }
        let timeline = self.timeline().await?;
        Ok(match self.data_schema(&timeline).await? {
            Some(s) => crate::schema::with_meta_columns(&s),
            None => Arc::new(Schema::empty()),
        })
    }

    /// The schema snapshot reads produce (meta columns included): the newest base file's schema,
    /// extended by columns the latest commit's schema adds (columns only logs carry so far).
    pub async fn snapshot_schema(&self, slices: &[FileSlice]) -> Result<SchemaRef> {
        let from_files = self.read_schema(slices).await?;
        let timeline = self.timeline().await?;
        let Some(data) = self.data_schema(&timeline).await? else {
            return Ok(from_files);
        };
        if from_files.fields().is_empty() {
            return Ok(crate::schema::with_meta_columns(&data));
        }
        let mut fields: Vec<_> = from_files.fields().iter().cloned().collect();
        for f in data.fields() {
            if from_files.field_with_name(f.name()).is_err() {
                fields.push(Arc::new(f.as_ref().clone().with_nullable(true)));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Reads the table snapshot: every record of the latest file slices, aligned to one schema.
    ///
    /// Merge-on-read slices are merged with their logs unless `read_optimized` is set.
    pub async fn read_snapshot(&self, opts: &ReadOptions) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut slices = self.file_slices(opts.as_of).await?;
        if opts.read_optimized {
            slices.retain(|s| s.base_file.is_some());
            slices.iter_mut().for_each(|s| s.log_files.clear());
        }
        slices.sort_by(|a, b| {
            (a.base_instant, &a.partition, &a.file_id).cmp(&(
                b.base_instant,
                &b.partition,
                &b.file_id,
            ))
        });
        let full = self.snapshot_schema(&slices).await?;
        let timeline = self.timeline().await?;
        let read: Vec<Vec<RecordBatch>> = futures::stream::iter(slices.iter())
            .map(|s| self.read_merged_slice(&timeline, s, &full, opts.as_of))
            .buffered(opts.concurrency.unwrap_or(8).max(1))
            .try_collect()
            .await?;
        let schema = if opts.with_meta_columns {
            full
        } else {
            without_meta_columns(&full)
        };
        let mut out = Vec::new();
        for batches in read {
            for b in batches {
                if b.num_rows() > 0 {
                    out.push(align_batch(&b, &schema)?);
                }
            }
        }
        let schema = out.first().map_or(schema, |b| b.schema());
        Ok((schema, out))
    }
}
