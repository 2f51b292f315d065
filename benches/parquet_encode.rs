//! Base-file encode bench: lake's Parquet encoder for base files (what a compaction or a
//! copy-on-write rewrite pays per file group) against arrow-rs's `ArrowWriter` with its defaults and
//! with Snappy, on the same 1M rows with Hudi's five meta columns (unique record keys and sequence
//! numbers, one commit time, one partition path, one file name). Best of 3 each; single-threaded.
//!
//! Run: `cargo bench --bench parquet_encode`

mod common;

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use lake_table::encode_parquet;
use lake_table::schema::with_meta_columns;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn arrow_rs(batch: &RecordBatch, props: Option<WriterProperties>) -> usize {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), props).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
    buf.len()
}

fn main() {
    let rows = 1_000_000i64;
    let data = common::batch(0..rows, 1);
    let schema = with_meta_columns(&data.schema());
    let meta: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["20261202000000000"; rows as usize])),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| format!("20261202000000000_0_{r}")),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|r| r.to_string()),
        )),
        Arc::new(StringArray::from(vec!["region=r1"; rows as usize])),
        Arc::new(StringArray::from(vec![
            "00000000-0000-0000-0000-000000000000-0_0-0-0_20261202000000000.parquet";
            rows as usize
        ])),
    ];
    let columns: Vec<ArrayRef> = meta
        .into_iter()
        .chain(data.columns().iter().cloned())
        .collect();
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    let mb = batch.get_array_memory_size() as f64 / 1e6;
    println!(
        "{rows} rows, {} columns, {mb:.1} MB in memory",
        batch.num_columns()
    );
    let report = |name: &str, (t, size): (Duration, usize)| {
        println!(
            "{name:<28} {:>7.1} ms  {:>6.1} M rows/s  {:>6.1} MB/s in  {:>5.1} MB out",
            t.as_secs_f64() * 1e3,
            rows as f64 / t.as_secs_f64() / 1e6,
            mb / t.as_secs_f64(),
            size as f64 / 1e6
        );
    };
    report(
        "lake base file",
        common::best(3, || {
            encode_parquet("bench.parquet", &batch, Vec::new())
                .expect("encode")
                .len()
        }),
    );
    report(
        "arrow-rs defaults",
        common::best(3, || arrow_rs(&batch, None)),
    );
    let snappy = || {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build()
    };
    report(
        "arrow-rs + Snappy",
        common::best(3, || arrow_rs(&batch, Some(snappy()))),
    );
}
