//! The snapshot reader: the rows of the latest file slices as of an instant (copy-on-write tables
//! and the read-optimized view). The DataFusion provider plans over the same file slices.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lake_timeline::{InstantTime, Timeline};

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

    /// The schema snapshot reads of `slices` produce (meta columns included): the newest base
    /// file's schema (which carries every column base files hold), extended by columns the latest
    /// commit's schema adds (columns only logs carry so far); the commit's schema when there is no
    /// base file.
    pub async fn snapshot_schema(
        &self,
        timeline: &Timeline,
        slices: &[FileSlice],
    ) -> Result<SchemaRef> {
        let data = self.data_schema(timeline).await?;
        let newest = slices
            .iter()
            .filter_map(|s| s.base_file.as_ref())
            .max_by_key(|b| (b.instant, &b.partition, &b.file_id));
        let Some(b) = newest else {
            return Ok(match data {
                Some(s) => crate::schema::with_meta_columns(&s),
                None => Arc::new(Schema::empty()),
            });
        };
        let reader = StoreReader::new(self.storage(), &b.path(), b.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|source| Error::Parquet {
                path: self.storage().display(&b.path()),
                source,
            })?;
        let from_files = builder.schema().clone();
        let Some(data) = data else {
            return Ok(from_files);
        };
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
        let timeline = self.timeline().await?;
        let mut slices = FileSystemView::load(&timeline, None, opts.as_of)
            .await?
            .latest_slices();
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
        let full = self.snapshot_schema(&timeline, &slices).await?;
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
