//! COW upsert bench: 100k events (20% updates of existing keys, 80% new keys) into a table of
//! 1M (and, with `--large`, 10M) rows on the local file system; prints rows/s and write
//! amplification, and the same rows written as plain Parquet with arrow-rs as the reference.
//!
//! `--index simple|global` writes with the simple or global (table-wide keys) index instead of the
//! bucket index; `--moves` makes the 20k updates change their partition value (global index: each
//! becomes a delete in the old partition plus an insert in the new one).
//!
//! Run: `cargo bench --bench cow_upsert [-- --large] [--index simple|global] [--moves]`

mod common;

use common::batch;
use std::time::Instant;

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

fn raw_size(b: &RecordBatch) -> usize {
    b.get_array_memory_size()
}

/// The batch with the partition value of its first `n` rows moved to the next region.
fn moved(b: &RecordBatch, n: usize) -> RecordBatch {
    let i = b.schema().index_of("region").expect("region column");
    let regions = b.column(i).as_string::<i32>();
    let shifted = StringArray::from_iter_values((0..b.num_rows()).map(|r| {
        let v = regions.value(r);
        if r < n {
            let k: u32 = v[1..].parse().unwrap_or(0);
            format!("r{}", (k + 1) % 4)
        } else {
            v.to_owned()
        }
    }));
    let mut cols = b.columns().to_vec();
    cols[i] = Arc::new(shifted) as Arc<dyn Array>;
    RecordBatch::try_new(b.schema(), cols).expect("moved batch")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let large = args.iter().any(|a| a == "--large");
    let moves = args.iter().any(|a| a == "--moves");
    let index = args
        .iter()
        .position(|a| a == "--index")
        .and_then(|i| args.get(i + 1))
        .map_or("bucket", String::as_str)
        .to_owned();
    let sizes: Vec<i64> = if large {
        vec![1_000_000, 10_000_000]
    } else {
        vec![1_000_000]
    };
    for table_rows in sizes {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let buckets = (table_rows / 250_000).max(4) as u32;
        let mut cfg = TableConfig::new(
            "bench",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["region".into()],
            Some("v".into()),
            (index == "bucket").then_some(buckets),
        )
        .expect("config");
        cfg.global_index = index == "global";
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
            "load: {table_rows} rows in {:.2}s ({index} index, 4 partitions)",
            started.elapsed().as_secs_f64()
        );

        // 100k events: 20k updates spread over the table, 80k inserts.
        let updates = (0..20_000i64).map(|i| (i * (table_rows / 20_000)) % table_rows);
        let inserts = table_rows..table_rows + 80_000;
        let mut events = batch(updates.chain(inserts), 2);
        if moves {
            events = moved(&events, 20_000);
        }
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
            "upsert 100k into {table_rows} ({index} index{}): {:.2}s, {:.0} rows/s, {} files, {} MB written, write amplification {:.1}x (bytes written / Arrow bytes ingested)",
            if moves { ", 20k moves" } else { "" },
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
