//! MOR bench: the COW bench's workload on a merge-on-read table. A table of 1M rows (loaded and
//! compacted into base files) takes 100k events (20% updates spread over the table, 80% new keys) as
//! one deltacommit; then compaction throughput (MB/s of base and log bytes merged); then, with 10% of
//! the rows updated in logs, a DataFusion snapshot scan (merging logs) against the read-optimized scan
//! of the same table.
//!
//! Run: `cargo bench --bench mor`

mod common;

use common::{batch, best_of};
use std::sync::Arc;
use std::time::Instant;

use lake_compaction::{CompactionStrategy, Scheduled, execute_pending, schedule};
use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

async fn compact(table: &Table) -> (f64, u64, u64) {
    let started = Instant::now();
    let strategy = CompactionStrategy {
        max_delta_commits: 1,
        max_log_bytes: 0,
    };
    match schedule(table, strategy).await.expect("schedule") {
        Scheduled::Planned { .. } => {}
        Scheduled::NotDue(why) => panic!("compaction not scheduled: {why}"),
    }
    let reports = execute_pending(table, 2).await.expect("compact");
    let read: u64 = reports.iter().map(|r| r.bytes_read).sum();
    let records: u64 = reports.iter().map(|r| r.records).sum();
    (started.elapsed().as_secs_f64(), read, records)
}

#[tokio::main]
async fn main() {
    let table_rows = 1_000_000i64;
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let buckets = 4u32;
    let cfg = TableConfig::new(
        "bench",
        TableType::MergeOnRead,
        vec!["id".into()],
        vec!["region".into()],
        Some("v".into()),
        Some(buckets),
    )
    .expect("config");
    let table = Table::create(&uri, cfg).await.expect("create");
    let started = Instant::now();
    table
        .write(
            vec![ChangeBatch::upserts(batch(0..table_rows, 1))],
            WriteOptions::default(),
        )
        .await
        .expect("load");
    let load = started.elapsed().as_secs_f64();
    let (secs, read, records) = compact(&table).await;
    println!(
        "load: {table_rows} rows as logs in {load:.2}s, compacted into base files in {secs:.2}s ({buckets} buckets x 4 partitions, {} MB merged, {records} records)",
        read / 1_000_000
    );

    // 100k events: 20k updates spread over the table, 80k inserts, as one deltacommit.
    let updates = (0..20_000i64).map(|i| (i * (table_rows / 20_000)) % table_rows);
    let inserts = table_rows..table_rows + 80_000;
    let events = batch(updates.chain(inserts), 2);
    let started = Instant::now();
    let s = table
        .write(vec![ChangeBatch::upserts(events)], WriteOptions::default())
        .await
        .expect("upsert");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "MOR upsert 100k into {table_rows}: {secs:.3}s, {:.0} events/s, {} log files, {} MB written",
        100_000.0 / secs,
        s.files_written,
        s.bytes_written / 1_000_000
    );

    // Compaction of that deltacommit: every file group's base file merged with its log.
    let cpu = common::cpu_seconds();
    let (secs, read, records) = compact(&table).await;
    let cpu = common::cpu_seconds() - cpu;
    println!(
        "compaction: {records} records, {:.1} MB of base + log files merged in {secs:.2}s: {:.1} MB/s; {cpu:.2} CPU-s, {:.1} MB per CPU-second",
        read as f64 / 1e6,
        read as f64 / 1e6 / secs,
        read as f64 / 1e6 / cpu.max(0.01)
    );

    // For profiling: `LAKE_BENCH_REPEAT_COMPACTION=10 perf record ...` (an upsert, then a
    // compaction, each time).
    let repeat: i64 = std::env::var("LAKE_BENCH_REPEAT_COMPACTION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in 0..repeat {
        let updates = (0..20_000i64).map(|i| (i * (table_rows / 20_000)) % table_rows);
        table
            .write(
                vec![ChangeBatch::upserts(batch(updates, 10 + i))],
                WriteOptions::default(),
            )
            .await
            .expect("upsert");
        compact(&table).await;
    }

    // 10% of the rows updated in logs: snapshot (merging) vs read-optimized scans.
    let rows = table_rows + 80_000;
    let updates = (0..rows / 10).map(|i| i * 10);
    table
        .write(
            vec![ChangeBatch::upserts(batch(updates, 3))],
            WriteOptions::default(),
        )
        .await
        .expect("updates");
    let ctx = lake_query::session();
    for (name, query) in [("snap", "snapshot"), ("ro", "read_optimized")] {
        let options = std::collections::HashMap::from([(
            "hoodie.datasource.query.type".to_owned(),
            query.to_owned(),
        )]);
        let provider =
            HudiTableProvider::try_new(&uri, QueryOptions::from_map(&options).expect("options"))
                .await
                .expect("provider");
        ctx.register_table(name, Arc::new(provider))
            .expect("register");
    }
    let sql =
        |t: &str| format!("SELECT count(*) AS n, sum(amount) AS amount, max(v) AS v FROM {t}");
    let (snap, a) = best_of(&ctx, &sql("snap")).await;
    let (ro, b) = best_of(&ctx, &sql("ro")).await;
    println!(
        "scan with 10% of rows in logs: snapshot {:.1} ms, read-optimized {:.1} ms ({:.2}x)\nsnapshot:\n{a}\nread-optimized:\n{b}",
        snap.as_secs_f64() * 1e3,
        ro.as_secs_f64() * 1e3,
        snap.as_secs_f64() / ro.as_secs_f64()
    );
    // For profiling: `LAKE_BENCH_REPEAT_SNAPSHOT=200 perf record ...` makes the merge dominate.
    let repeat: usize = std::env::var("LAKE_BENCH_REPEAT_SNAPSHOT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..repeat {
        best_of(&ctx, &sql("snap")).await;
    }
}
