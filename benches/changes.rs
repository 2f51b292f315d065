//! Change-feed bench: one commit touching 1% of a table (80% updates, 10% deletes, 10% new keys),
//! then the change feed of that commit (`Table::changes`, and `lake_changes` through DataFusion)
//! against a full snapshot scan of the same table, on copy-on-write tables (inferred, and with Hudi
//! CDC logs in `DATA_BEFORE_AFTER` mode, read from the logs) and merge-on-read tables.
//! `--spread` spreads the touched keys over the whole table (every file group changes); by default
//! they are one contiguous key range (a few file groups change), as a busy source's recent rows are.
//!
//! Run: `cargo bench --bench changes [-- --rows N] [--spread] [--only cow|cow-cdc|mor]` (default
//! 10M rows).

mod common;

use common::{batch, best_of, cpu_seconds};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::BooleanArray;
use arrow::compute::concat_batches;
use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::changes::ChangeQuery;
use lake_table::{CdcMode, ChangeBatch, Table, TableConfig, TableType, WriteOptions};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: i64 = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let spread = args.iter().any(|a| a == "--spread");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let variants = [
        ("COW", TableType::CopyOnWrite, None),
        (
            "COW+CDC",
            TableType::CopyOnWrite,
            Some(CdcMode::DataBeforeAfter),
        ),
        ("MOR", TableType::MergeOnRead, None),
    ];
    for (kind, table_type, cdc) in variants {
        if only
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(&kind.replace("+", "-")))
        {
            continue;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let buckets = (rows / 250_000).max(4) as u32;
        let mut cfg = TableConfig::new(
            "bench",
            table_type,
            vec!["id".into()],
            vec!["region".into()],
            Some("v".into()),
            Some(buckets),
        )
        .expect("config");
        cfg.cdc = cdc;
        let table = Table::create(&uri, cfg).await.expect("create");
        let started = Instant::now();
        let mut next = 0i64;
        while next < rows {
            let end = (next + 1_000_000).min(rows);
            table
                .write(
                    vec![ChangeBatch::upserts(batch(next..end, 1))],
                    WriteOptions::default(),
                )
                .await
                .expect("load");
            next = end;
        }
        if table_type == TableType::MergeOnRead {
            let strategy = lake_compaction::CompactionStrategy {
                max_delta_commits: 1,
                max_log_bytes: 0,
            };
            lake_compaction::schedule(&table, strategy)
                .await
                .expect("schedule");
            lake_compaction::execute_pending(&table, 2)
                .await
                .expect("compact");
        }
        let load = started.elapsed().as_secs_f64();
        let before_commit = table
            .timeline()
            .await
            .expect("timeline")
            .last_completed_write()
            .map(|i| i.time)
            .expect("a write");

        // 1% of the table: 80% updates, 10% deletes of existing keys, 10% new keys.
        let touched = rows / 100;
        let (n_upd, n_del) = (touched * 8 / 10, touched / 10);
        let pick = |i: i64| {
            if spread {
                (i * (rows / (n_upd + n_del))) % rows
            } else {
                rows / 2 + i
            }
        };
        let updates = batch((0..n_upd).map(pick), 2);
        let deletes = batch((n_upd..n_upd + n_del).map(pick), 2);
        let inserts = batch(rows..rows + touched - n_upd - n_del, 2);
        let all =
            concat_batches(&updates.schema(), [&updates, &deletes, &inserts]).expect("concat");
        let flags = BooleanArray::from_iter(
            (0..all.num_rows() as i64).map(|i| Some(i >= n_upd && i < n_upd + n_del)),
        );
        let commit_started = Instant::now();
        table
            .write(vec![ChangeBatch::new(all, flags)], WriteOptions::default())
            .await
            .expect("commit");
        let commit = commit_started.elapsed().as_secs_f64();
        let mut best = f64::MAX;
        let mut cpu_best = f64::MAX;
        let mut changes = 0;
        for _ in 0..3 {
            let cpu = cpu_seconds();
            let started = Instant::now();
            let feed = table
                .changes(&ChangeQuery {
                    begin: before_commit,
                    end: None,
                    net: false,
                    schema: None,
                    infer: false,
                })
                .await
                .expect("feed");
            best = best.min(started.elapsed().as_secs_f64());
            cpu_best = cpu_best.min(cpu_seconds() - cpu);
            changes = feed.num_rows();
            assert_eq!(
                feed.sources.cdc_logs > 0,
                cdc.is_some(),
                "read from CDC logs exactly when the table has them"
            );
        }
        assert_eq!(changes as i64, touched, "one change per touched key");

        let ctx = lake_query::session();
        let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
            .await
            .expect("provider");
        ctx.register_table("t", Arc::new(provider))
            .expect("register");
        let (scan, _) = best_of(&ctx, "SELECT count(*), sum(amount), max(v) FROM t").await;
        // Every column decoded: what reading the table to diff it oneself would cost at least.
        let (rows_scan, _) = best_of(
            &ctx,
            "SELECT max(_hoodie_record_key), max(_hoodie_commit_time), max(customer), max(status), \
             sum(amount), max(region), max(v) FROM t",
        )
        .await;
        let (sql, answer) = best_of(
            &ctx,
            &format!(
                "SELECT op, count(*) AS n FROM lake_changes('{uri}', '{before_commit}') GROUP BY op ORDER BY op"
            ),
        )
        .await;
        println!(
            "{kind} {rows} rows (loaded in {load:.1}s), one commit touching {touched} keys ({}, \
             written in {commit:.2}s): feed {:.0} ms ({cpu_best:.2} CPU-s), lake_changes via SQL {:.0} ms; snapshot scans: \
             3 columns {:.0} ms, every column {:.0} ms (feed / every-column scan {:.2}x)\n{answer}",
            if spread { "spread" } else { "clustered" },
            best * 1e3,
            sql.as_secs_f64() * 1e3,
            scan.as_secs_f64() * 1e3,
            rows_scan.as_secs_f64() * 1e3,
            best / rows_scan.as_secs_f64(),
        );
    }
}
