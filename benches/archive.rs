//! Archival bench: a copy-on-write table takes `LAKE_BENCH_COMMITS` (default 1000) small commits;
//! then the cost every read pays for the timeline (listing and loading it, and a snapshot query
//! through the provider) before and after `archive` moves all but 20 writes into
//! `.hoodie/archived/`, the archival itself, and reading the archived timeline back.
//!
//! Run: `cargo bench --bench archive`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{batch, best_of};
use lake_compaction::{ArchivePolicy, archive};
use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::archive::ArchivedTimeline;
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

async fn timeline_load(table: &Table) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let t = table.timeline().await.expect("timeline");
        best = best.min(started.elapsed());
        n = t.instants().len();
    }
    (best, n)
}

async fn snapshot_query(uri: &str) -> (Duration, String) {
    let ctx = lake_query::session();
    let provider = HudiTableProvider::try_new(uri, QueryOptions::default())
        .await
        .expect("provider");
    ctx.register_table("t", Arc::new(provider))
        .expect("register");
    best_of(&ctx, "SELECT count(*) FROM t").await
}

#[tokio::main]
async fn main() {
    let commits: i64 = std::env::var("LAKE_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let cfg = TableConfig::new(
        "bench",
        TableType::CopyOnWrite,
        vec!["id".into()],
        vec!["region".into()],
        Some("v".into()),
        Some(4),
    )
    .expect("config");
    let table = Table::create(&uri, cfg).await.expect("create");
    let started = Instant::now();
    for c in 0..commits {
        let ids = (c * 100)..(c * 100 + 100);
        table
            .write(
                vec![ChangeBatch::upserts(batch(ids, c))],
                WriteOptions::default(),
            )
            .await
            .expect("write");
    }
    println!(
        "load: {commits} commits of 100 rows in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let (load_before, n_before) = timeline_load(&table).await;
    let (query_before, answer) = snapshot_query(&uri).await;

    let started = Instant::now();
    let report = archive(&table, ArchivePolicy::default())
        .await
        .expect("archive");
    let archive_secs = started.elapsed().as_secs_f64();
    let (load_after, n_after) = timeline_load(&table).await;
    let (query_after, answer_after) = snapshot_query(&uri).await;
    assert_eq!(answer, answer_after, "archival changed the answer");

    let started = Instant::now();
    let archived = ArchivedTimeline::load(table.storage(), table.config().layout())
        .await
        .expect("archived timeline");
    let read_archive = started.elapsed().as_secs_f64();
    println!(
        "archival: {} instants ({} timeline files deleted) in {archive_secs:.2}s",
        report.archived.len(),
        report.files_deleted
    );
    println!(
        "timeline load: {n_before} instants {:.2} ms -> {n_after} instants {:.2} ms",
        load_before.as_secs_f64() * 1000.0,
        load_after.as_secs_f64() * 1000.0
    );
    println!(
        "snapshot count(*): {:.1} ms -> {:.1} ms",
        query_before.as_secs_f64() * 1000.0,
        query_after.as_secs_f64() * 1000.0
    );
    println!(
        "archived timeline read back: {} instants in {:.1} ms",
        archived.instants().len(),
        read_archive * 1000.0
    );
}
