//! Distributed SQL bench: a copy-on-write table of 10M rows and a merge-on-read table (10M rows in
//! base files, 1M updates in logs) in a local folder, the same queries through `lake sql` in one
//! process and through `lake sql --cluster` on a `lake scheduler` with 1 and with 3
//! `lake executor`s (the release binary, separate processes on 127.0.0.1, 2 task slots each).
//! Each figure is the best of 3 whole command runs (process start and planning included); every
//! cluster answer is checked against the local one.
//!
//! On one machine the executors share its cores with each other and with the scheduler, so the
//! figures show the cluster's overhead (planning round trips, shuffle files, Arrow Flight), not a
//! speed-up.
//!
//! Run: `cargo bench --bench cluster_sql` (`LAKE_BENCH_ROWS`, default 10000000).

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lake_compaction::{CompactionStrategy, Scheduled, execute_pending, schedule};
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lake starts")
}

/// A scheduler and `n` executors, killed when dropped.
struct Cluster {
    addr: String,
    children: Vec<Child>,
    _work: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Self {
        let work = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut children = vec![spawn(&["scheduler".into(), "--bind".into(), addr.clone()])];
        wait_port(port);
        for i in 0..n {
            let (flight, grpc) = (free_port(), free_port());
            let dir = work.path().join(i.to_string());
            std::fs::create_dir_all(&dir).expect("work dir");
            children.push(spawn(&[
                "executor".into(),
                "--scheduler".into(),
                addr.clone(),
                "--bind".into(),
                format!("127.0.0.1:{flight}"),
                "--grpc-port".into(),
                grpc.to_string(),
                "--concurrent-tasks".into(),
                "2".into(),
                "--work-dir".into(),
                dir.display().to_string(),
            ]));
            wait_port(grpc);
        }
        std::thread::sleep(Duration::from_secs(3));
        Self {
            addr,
            children,
            _work: work,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Best of 3 runs of `lake sql -c sql` (on the cluster at `addr`, if any) and its answer.
fn run(sql: &str, addr: Option<&str>) -> (Duration, String) {
    let (took, out) = common::best(3, || {
        let mut args = vec!["sql", "-q", "--format", "csv", "-c", sql];
        if let Some(a) = addr {
            args.extend(["--cluster", a]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(&args)
            .output()
            .expect("lake sql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    (took, out)
}

async fn create(uri: &str, kind: TableType, rows: i64) -> Table {
    let cfg = TableConfig::new(
        "bench",
        kind,
        vec!["id".into()],
        vec!["region".into()],
        Some("v".into()),
        Some(8),
    )
    .expect("config");
    let table = Table::create(uri, cfg).await.expect("create");
    let chunk = rows / 4;
    let batches: Vec<ChangeBatch> = (0..4)
        .map(|i| ChangeBatch::upserts(common::batch(i * chunk..(i + 1) * chunk, 1)))
        .collect();
    table
        .write(batches, WriteOptions::default())
        .await
        .expect("load");
    table
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::var("LAKE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tmp");
    let cow = dir.path().join("cow").display().to_string();
    let mor = dir.path().join("mor").display().to_string();
    let started = Instant::now();
    create(&cow, TableType::CopyOnWrite, rows).await;
    let table = create(&mor, TableType::MergeOnRead, rows).await;
    match schedule(
        &table,
        CompactionStrategy {
            max_delta_commits: 1,
            max_log_bytes: 0,
        },
    )
    .await
    .expect("schedule")
    {
        Scheduled::Planned { .. } => {}
        Scheduled::NotDue(why) => panic!("compaction not scheduled: {why}"),
    }
    execute_pending(&table, 2).await.expect("compact");
    table
        .write(
            vec![ChangeBatch::upserts(common::batch(
                (0..rows).step_by(10),
                2,
            ))],
            WriteOptions::default(),
        )
        .await
        .expect("updates");
    println!(
        "tables: {rows} rows each (4 partitions x 8 buckets), merge-on-read with {} updated rows in \
         logs; built in {:.0} s",
        rows / 10,
        started.elapsed().as_secs_f64()
    );

    let queries = [
        (
            "count + sum",
            "SELECT count(*), sum(amount) FROM lake_snapshot('{t}')",
        ),
        (
            "group by region",
            "SELECT region, count(*), sum(amount), max(customer) FROM lake_snapshot('{t}') \
             GROUP BY region ORDER BY region",
        ),
        (
            "distinct customers per status",
            "SELECT status, count(DISTINCT customer) FROM lake_snapshot('{t}') GROUP BY status \
             ORDER BY status",
        ),
    ];
    let one = Cluster::start(1);
    let three = Cluster::start(3);
    for (kind, uri) in [("copy-on-write", &cow), ("merge-on-read", &mor)] {
        for (name, q) in queries {
            let q = q.replace("{t}", uri);
            let (local, want) = run(&q, None);
            let (c1, a1) = run(&q, Some(&one.addr));
            let (c3, a3) = run(&q, Some(&three.addr));
            assert_eq!(a1, want, "{kind} {name}: one executor answered differently");
            assert_eq!(
                a3, want,
                "{kind} {name}: three executors answered differently"
            );
            println!(
                "{kind} {name}: local {:.2} s, 1 executor {:.2} s, 3 executors {:.2} s",
                local.as_secs_f64(),
                c1.as_secs_f64(),
                c3.as_secs_f64()
            );
        }
    }
}
