//! Parquet base files: whole-file reads into record batches, ranged async reads (footers and
//! projected columns) and encoding of new base files.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use lake_timeline::Storage;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::schema::{COMMIT_SEQNO, RECORD_KEY};
use crate::{Error, Result};

/// Decodes a whole Parquet file; `path` names it in errors.
pub fn read_parquet(path: &str, bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    read_parquet_columns(path, bytes, None)
}

/// Decodes the named top-level `columns` of a Parquet file (all with `None`); names the file does
/// not have are left out. Returns the file's whole schema and the batches of those columns.
pub fn read_parquet_columns(
    path: &str,
    bytes: Bytes,
    columns: Option<&[&str]>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let perr = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let schema = builder.schema().clone();
    if let Some(columns) = columns {
        let roots = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| columns.contains(&f.name().as_str()))
            .map(|(i, _)| i);
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder.with_batch_size(64 * 1024).build().map_err(perr)?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| perr(parquet::errors::ParquetError::ArrowError(e.to_string())))?;
    Ok((schema, batches))
}

/// Decodes only the rows at `rows` (row numbers within the file; returned in ascending order, each
/// once) of a Parquet file; pages that hold none of them are skipped. A row past the file's end is an
/// error.
pub fn read_parquet_rows(path: &str, bytes: Bytes, rows: &[usize]) -> Result<Vec<RecordBatch>> {
    let perr = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    if let Some(r) = rows.iter().find(|r| **r >= total) {
        return Err(Error::Damaged {
            path: path.to_owned(),
            reason: format!("row {r} asked for, but the file holds {total} rows"),
        });
    }
    let mut sorted = rows.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for r in sorted {
        match ranges.last_mut() {
            Some(last) if last.end == r => last.end = r + 1,
            _ => ranges.push(r..r + 1),
        }
    }
    let selection = parquet::arrow::arrow_reader::RowSelection::from_consecutive_ranges(
        ranges.into_iter(),
        total,
    );
    let reader = builder
        .with_row_selection(selection)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| perr(parquet::errors::ParquetError::ArrowError(e.to_string())))
}

/// Encodes one batch as a Parquet file (Snappy), with extra footer key-value metadata.
pub fn encode_parquet(
    path: &str,
    batch: &RecordBatch,
    footer: Vec<(String, String)>,
) -> Result<Bytes> {
    encode_parquet_batches(path, &batch.schema(), std::slice::from_ref(batch), footer)
}

/// Encodes batches of one schema as one Parquet file (Snappy), with extra footer key-value
/// metadata. The record key and sequence number meta columns, unique per file, are written without
/// a dictionary (building one for them costs a hash per value, then is dropped).
pub fn encode_parquet_batches(
    path: &str,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    footer: Vec<(String, String)>,
) -> Result<Bytes> {
    let perr = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let kv = footer
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect::<Vec<_>>();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(kv));
    for unique in [RECORD_KEY, COMMIT_SEQNO] {
        props = props.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut buf = Vec::with_capacity(size / 4);
    let mut w =
        ArrowWriter::try_new(&mut buf, schema.clone(), Some(props.build())).map_err(perr)?;
    for b in batches {
        w.write(b).map_err(perr)?;
    }
    w.close().map_err(perr)?;
    Ok(Bytes::from(buf))
}

/// An async Parquet reader over one object of a [`Storage`]: ranged reads, footer decoded from the
/// file's tail (one request for footers under 64 KiB).
pub(crate) struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl StoreReader {
    /// A reader of the root-relative file `rel` of `size` bytes.
    pub(crate) fn new(storage: &Storage, rel: &str, size: u64) -> Self {
        Self {
            store: storage.object_store().clone(),
            path: storage.path(rel),
            size,
        }
    }

    async fn range(&self, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        self.store
            .get_range(&self.path, range)
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.range(range).boxed()
    }

    /// The column chunks of a row group in one call: the store coalesces nearby ranges and
    /// fetches the rest concurrently.
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            if self.size < 12 {
                return Err(ParquetError::General(format!(
                    "{} is too small for Parquet",
                    self.path
                )));
            }
            let tail_len = self.size.min(64 * 1024);
            let tail = self.range(self.size - tail_len..self.size).await?;
            let n = tail.len();
            if &tail[n - 4..] != b"PAR1" {
                return Err(ParquetError::General(format!(
                    "{} is not a Parquet file",
                    self.path
                )));
            }
            let meta_len =
                u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as u64;
            let meta = if meta_len + 8 <= tail_len {
                tail.slice(n - 8 - meta_len as usize..n - 8)
            } else {
                let start = self.size.checked_sub(meta_len + 8).ok_or_else(|| {
                    ParquetError::General(format!("{}: footer longer than the file", self.path))
                })?;
                self.range(start..self.size - 8).await?
            };
            Ok(Arc::new(ParquetMetaDataReader::decode_metadata(&meta)?))
        }
        .boxed()
    }
}
