//! The snapshot reader: the rows of the latest file slices as of an instant (copy-on-write tables
//! and the read-optimized view). The DataFusion provider plans over the same file slices.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use lake_timeline::InstantTime;

use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use crate::parquet_io::{StoreReader, read_parquet};
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
}

impl Table {
    /// The latest file slices visible as of `as_of`.
    pub async fn file_slices(&self, as_of: Option<InstantTime>) -> Result<Vec<FileSlice>> {
        let timeline = self.timeline().await?;
        let view = FileSystemView::load(&timeline, None, as_of).await?;
        Ok(view.latest_slices().into_iter().cloned().collect())
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

    /// Reads the table snapshot: every record of the latest base files, aligned to one schema.
    ///
    /// Base files only: for merge-on-read tables this is the read-optimized view.
    pub async fn read_snapshot(&self, opts: &ReadOptions) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let slices = self.file_slices(opts.as_of).await?;
        let mut files: Vec<_> = slices.iter().filter_map(|s| s.base_file.clone()).collect();
        files.sort_by(|a, b| {
            (a.instant, &a.partition, &a.file_id).cmp(&(b.instant, &b.partition, &b.file_id))
        });
        let storage = self.storage().clone();
        let read: Vec<(SchemaRef, Vec<RecordBatch>)> = futures::stream::iter(files)
            .map(|f| {
                let storage = storage.clone();
                async move {
                    let path = f.path();
                    let bytes = storage.get(&path).await?;
                    tokio::task::spawn_blocking(move || {
                        read_parquet(&storage.display(&path), bytes)
                    })
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?
                }
            })
            .buffered(opts.concurrency.unwrap_or(8).max(1))
            .try_collect()
            .await?;
        // The newest file carries the newest schema; older files gain its new columns as nulls.
        let schema = match read.last() {
            Some((s, _)) => s.clone(),
            None => {
                let timeline = self.timeline().await?;
                match self.data_schema(&timeline).await? {
                    Some(s) => crate::schema::with_meta_columns(&s),
                    None => Arc::new(Schema::empty()),
                }
            }
        };
        let schema = if opts.with_meta_columns {
            schema
        } else {
            without_meta_columns(&schema)
        };
        let mut out = Vec::new();
        for (_, batches) in read {
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
