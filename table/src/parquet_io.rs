//! Parquet base files: whole-file reads into record batches and encoding of new base files.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::{Error, Result};

/// Decodes a whole Parquet file; `path` names it in errors.
pub fn read_parquet(path: &str, bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let perr = |source| Error::Parquet {
        path: path.to_owned(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build().map_err(perr)?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| perr(parquet::errors::ParquetError::ArrowError(e.to_string())))?;
    Ok((schema, batches))
}

/// Encodes one batch as a Parquet file (Snappy), with extra footer key-value metadata.
pub fn encode_parquet(
    path: &str,
    batch: &RecordBatch,
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
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(kv))
        .build();
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(perr)?;
    w.write(batch).map_err(perr)?;
    w.close().map_err(perr)?;
    Ok(Bytes::from(buf))
}
