//! COW upsert bench: 100k events (20% updates of existing keys, 80% new keys) into a table of
//! 1M (and, with `--large`, 10M) rows on the local file system; prints rows/s and write
//! amplification, and the same rows written as plain Parquet with arrow-rs as the reference.
//!
//! Run: `cargo bench --bench cow_upsert [-- --large]`

mod common;

use common::batch;
use std::time::Instant;

use arrow::array::RecordBatch;
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

fn raw_size(b: &RecordBatch) -> usize {
    b.get_array_memory_size()
}

#[tokio::main]
async fn main() {
    let large = std::env::args().any(|a| a == "--large");
    let sizes: Vec<i64> = if large {
        vec![1_000_000, 10_000_000]
    } else {
        vec![1_000_000]
    };
    for table_rows in sizes {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let buckets = (table_rows / 250_000).max(4) as u32;
        let cfg = TableConfig::new(
            "bench",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["region".into()],
            Some("v".into()),
            Some(buckets),
        )
        .expect("config");
        let table = Table::create(&uri, cfg).await.expect("create");
        let started = Instant::now();
        let mut next = 0i64;
        while next < table_rows {
            let end = (next + 1_000_000).min(table_rows);
            table
                .write(
                    vec![ChangeBatch::upserts(batch(next..end, 1))],
                    WriteOptions::default(),
                )
                .await
                .expect("load");
            next = end;
        }
        println!(
            "load: {table_rows} rows in {:.2}s ({buckets} buckets x 4 partitions)",
            started.elapsed().as_secs_f64()
        );

        // 100k events: 20k updates spread over the table, 80k inserts.
        let updates = (0..20_000i64).map(|i| (i * (table_rows / 20_000)) % table_rows);
        let inserts = table_rows..table_rows + 80_000;
        let events = batch(updates.chain(inserts), 2);
        let ingested = raw_size(&events);
        let started = Instant::now();
        let s = table
            .write(
                vec![ChangeBatch::upserts(events.clone())],
                WriteOptions::default(),
            )
            .await
            .expect("upsert");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "upsert 100k into {table_rows}: {:.2}s, {:.0} rows/s, {} files, {} MB written, write amplification {:.1}x (bytes written / Arrow bytes ingested)",
            secs,
            100_000.0 / secs,
            s.files_written,
            s.bytes_written / 1_000_000,
            s.bytes_written as f64 / ingested as f64
        );

        // Reference: the same 100k rows as one plain Parquet file with arrow-rs (Snappy).
        let started = Instant::now();
        let bytes = lake_table::encode_parquet("ref.parquet", &events, vec![]).expect("encode");
        std::fs::write(dir.path().join("ref.parquet"), &bytes).expect("write");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "reference: 100k rows as plain Parquet: {:.3}s, {:.0} rows/s, {} MB",
            secs,
            100_000.0 / secs,
            bytes.len() / 1_000_000
        );
    }
}
