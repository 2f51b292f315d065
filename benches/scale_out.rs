//! Scale-out bench: events/s from one 8-partition topic into one table with 1, 2 and 3 `lake ingest`
//! processes of one consumer group (the release binary, as separate processes), on librdkafka's
//! mock cluster (served by this process over TCP on 127.0.0.1). Each process's figures come from its
//! own `/metrics`: commits, write retries (conflicts between the processes), fenced batches; CPU
//! from `/proc/<pid>/stat`.
//!
//! Run: `cargo bench --bench scale_out` (`LAKE_BENCH_EVENTS`, default 300000; `LAKE_BENCH_TYPES`,
//! default `mor,cow`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::consumer::{BaseConsumer, Consumer};
use lake_ingest::rdkafka::mocking::MockCluster;
use lake_table::Table;

mod common;

const PARTITIONS: i32 = 8;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The body of `GET /metrics` from a process's endpoint (empty if it does not answer).
fn scrape(addr: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The sum of a metric's samples in a scrape.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

async fn offsets(uri: &str, topic: &str) -> HashMap<i32, i64> {
    let Ok(t) = Table::open(uri).await else {
        return HashMap::new();
    };
    lake_ingest::pipeline::table_offsets(&t, topic, &[])
        .await
        .map(|o| o.into_iter().collect())
        .unwrap_or_default()
}

async fn run(
    brokers: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
    held: i64,
    table_type: &str,
    n: usize,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let cfg = dir.path().join("ingest.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[source]
brokers = "{brokers}"
group_id = "bench-{table_type}-{n}"
[commit]
max_records = 50000
max_interval_ms = 1000
[progress]
interval_ms = 0
[[tables]]
topic = "{topic}"
table = "{uri}"
type = "{table_type}"
buckets = 4
[tables.compaction]
max_delta_commits = 0
"#
        ),
    )
    .expect("config");
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut procs: Vec<Child> = addrs
        .iter()
        .map(|a| {
            Command::new(env!("CARGO_BIN_EXE_lake"))
                .args(["ingest", "--config"])
                .arg(&cfg)
                .args(["--metrics-addr", a, "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("lake ingest")
        })
        .collect();
    // The clock starts once the group has handed out every partition (joining an empty group
    // waits for more members for a few seconds, whatever the load).
    let spawned = Instant::now();
    loop {
        let assigned: f64 = addrs
            .iter()
            .map(|a| total(&scrape(a), "lake_ingest_assigned_partitions"))
            .sum();
        if assigned as i32 == PARTITIONS {
            break;
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(120),
            "no assignment"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let join = spawned.elapsed().as_secs_f64();
    let started = Instant::now();
    let cpu0: f64 = procs
        .iter()
        .map(|p| common::cpu_seconds_of(&p.id().to_string()))
        .sum();
    loop {
        let at = offsets(&uri, topic).await;
        if ends.iter().all(|(p, e)| at.get(p).is_some_and(|o| o >= e)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = procs
        .iter()
        .map(|p| common::cpu_seconds_of(&p.id().to_string()))
        .sum::<f64>()
        - cpu0;
    let scrapes: Vec<String> = addrs.iter().map(|a| scrape(a)).collect();
    let sum = |name: &str| scrapes.iter().map(|s| total(s, name)).sum::<f64>();
    let (commits, retries, fenced) = (
        sum("lake_table_commits_total"),
        sum("lake_table_write_retries_total"),
        sum("lake_table_fenced_batches_total"),
    );
    for p in &mut procs {
        let _ = Command::new("kill")
            .args(["-TERM", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    println!(
        "{table_type} x{n}: {held} events in {secs:.2}s after the group formed ({join:.1}s): {:.0} events/s; \
         {cpu:.2} CPU-s ({:.0}% of one core); {commits} commits, {retries} write retries ({:.1}/min), {fenced} fenced batches",
        held as f64 / secs,
        cpu * 100.0 / secs,
        retries * 60.0 / secs
    );
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("LAKE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let types = std::env::var("LAKE_BENCH_TYPES").unwrap_or_else(|_| "mor,cow".into());
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for table_type in types.split(',') {
        let topic = format!("bench.scale.{table_type}");
        cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
        common::produce_events(&brokers, &topic, n, None).await;
        let (ends, held) = {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .expect("consumer");
            let mut ends = HashMap::new();
            let mut held = 0;
            for p in 0..PARTITIONS {
                let (low, high) = c
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                ends.insert(p, high);
                held += high - low;
            }
            (ends, held)
        };
        for procs in 1..=3 {
            run(&brokers, &topic, &ends, held, table_type, procs).await;
        }
    }
}
