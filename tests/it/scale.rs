//! Scale-out ingest (on the S3 server; merge-on-read also on a local folder): three `lake ingest`
//! processes of one consumer group share two 8-partition
//! topics — Debezium orders into a copy-on-write or merge-on-read table, and JSON events into an
//! append-mode table — while they are killed (`kill -9`) or stopped and restarted at random (every
//! restart is a rebalance), more events arrive, and `lake compact` runs in a loop beside them. In
//! the end both tables equal the source (lake and hudi-rs): no order lost or stale, no event twice;
//! and every partition's checkpoint is its end offset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::consumer::{BaseConsumer, Consumer};
use lake_table::Table;

use crate::cow::Rng;
use crate::ingest::{Kv, create_topic, orders_stream, produce, project};
use crate::kit::{Place, hudi_read, kafka, lake_env, lake_rows, unique};

const PARTITIONS: i32 = 8;
const PROCESSES: usize = 3;

fn config(orders: &Place, events: &Place, topics: &(String, String), table_type: &str) -> String {
    let text = format!(
        r#"[source]
brokers = "{brokers}"
group_id = "{group}"

[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"max.poll.interval.ms" = "10000"

[commit]
max_records = 200
max_interval_ms = 300

[progress]
interval_ms = 0

[[tables]]
topic = "{orders_topic}"
table = "{orders}"
type = "{table_type}"
buckets = 4

[[tables]]
topic = "{events_topic}"
table = "{events}"
type = "{table_type}"
buckets = 4
decoder = "json"
key = ["id"]
mode = "append"
"#,
        brokers = kafka(),
        group = unique("scale"),
        orders_topic = topics.0,
        events_topic = topics.1,
        orders = orders.uri,
        events = events.uri,
    );
    let f = orders.dir.path().join(format!("{}.toml", unique("scale")));
    std::fs::write(&f, text).expect("config");
    f.display().to_string()
}

/// One `lake ingest` process (running until stopped), its log in a file of its own.
fn spawn(cfg: &str, p: &Place, logs: &mut Vec<PathBuf>) -> Child {
    let log = p.dir.path().join(format!("{}.log", unique("ingest")));
    let child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["ingest", "--config", cfg])
        .envs(p.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("lake ingest starts");
    logs.push(log);
    child
}

fn sigterm(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn all_logs(logs: &[PathBuf]) -> String {
    logs.iter()
        .map(|l| {
            format!(
                "== {}\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap_or_default()
            )
        })
        .collect()
}

/// The end offset of every partition of `topic`.
fn end_offsets(topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

async fn checkpoint(p: &Place, topic: &str) -> BTreeMap<i32, i64> {
    let table = match Table::open_storage(p.storage.clone()).await {
        Ok(t) => t,
        Err(_) => return BTreeMap::new(),
    };
    lake_ingest::pipeline::last_checkpoint(&table, topic)
        .await
        .ok()
        .flatten()
        .map(|c| c.offsets)
        .unwrap_or_default()
}

/// Waits until each of the processes whose logs are `live` (indexes into `logs`) holds partitions
/// of the table `table` — its last rebalance line assigned them — and together all of them; how
/// long that took.
fn wait_stable(logs: &[PathBuf], live: &[usize], table: &str, chaos: &str) -> Duration {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(90);
    let needle = format!("table={table} ");
    loop {
        let mut owned = 0;
        let mut stable = true;
        for &l in live {
            let text = std::fs::read_to_string(&logs[l]).unwrap_or_default();
            let last = text
                .lines()
                .rfind(|l| {
                    l.contains(&needle)
                        && (l.contains("partitions assigned") || l.contains("partitions revoked"))
                })
                .unwrap_or_default();
            match last.split_once("start=") {
                Some((_, start)) if last.contains("partitions assigned") => {
                    owned += start
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .matches(',')
                        .count();
                }
                _ => stable = false,
            }
        }
        if stable && owned == PARTITIONS as usize {
            return began.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the group never settled ({owned} partitions held):\n{chaos}\n{}",
            all_logs(logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(range: std::ops::Range<u32>) -> Vec<Kv> {
    range
        .map(|i| (None, Some(format!(r#"{{"id":"e{i}","n":{i}}}"#))))
        .collect()
}

/// `lake compact` over both tables, again and again until `stop`; the outputs of failed runs.
fn compact_loop(
    uris: Vec<String>,
    env: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut runs, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            for uri in &uris {
                let out = lake_env(&["compact", uri], &env);
                runs += 1;
                if !out.status.success() {
                    failures.push(format!("{uri}: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        (runs, failures)
    })
}

async fn three_processes(table_type: &str, on_s3: bool) {
    let place = |what: &str| {
        if on_s3 {
            Place::s3(&format!("scale-{what}-{table_type}"))
        } else {
            Place::local()
        }
    };
    let (orders, events_table) = (place("orders"), place("events"));
    let topics = (unique("shop.orders"), unique("clicks"));
    create_topic(&topics.0, PARTITIONS).await;
    create_topic(&topics.1, PARTITIONS).await;
    let (msgs, expected) = orders_stream(21, 2400);
    let n_events = 3000u32;
    let cut = msgs.len() / 3;
    produce(&topics.0, &msgs[..cut]).await;
    produce(&topics.1, &events(0..n_events / 3)).await;

    let cfg = config(&orders, &events_table, &topics, table_type);
    let mut logs = Vec::new();
    let mut procs: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn(&cfg, &orders, &mut logs))
        .collect();
    // The compaction loop starts once the writers have created both tables.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Table::open_storage(orders.storage.clone()).await.is_err()
        || Table::open_storage(events_table.storage.clone())
            .await
            .is_err()
    {
        assert!(Instant::now() < deadline, "no table:\n{}", all_logs(&logs));
        std::thread::sleep(Duration::from_millis(200));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let compactor = compact_loop(
        vec![orders.uri.clone(), events_table.uri.clone()],
        orders.env.clone(),
        stop.clone(),
    );

    // Chaos: a process is killed or stopped while the rest of the events arrive in slices; its
    // partitions move to the others, then it is restarted and the group shares them again. The
    // next change waits until the group is stable: tansu 0.6 never completes a rebalance during
    // which a member leaves or dies (Kafka does), so changes in the middle of one would only test
    // the broker.
    let mut rng = Rng::new(5);
    let rounds = if let Some(r) = std::env::var("LAKE_SCALE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        r
    } else if std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1") {
        40
    } else {
        6
    };
    let table_name = lake_table::TableConfig::name_from_uri(&orders.uri);
    let mut current: Vec<usize> = (0..PROCESSES).collect();
    let mut chaos = String::new();
    wait_stable(&logs, &current, &table_name, &chaos);
    let slices = rounds.max(1) as usize;
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        let (a, b) = (
            cut + (msgs.len() - cut) * round as usize / slices,
            cut + (msgs.len() - cut) * (round as usize + 1) / slices,
        );
        produce(&topics.0, &msgs[a..b]).await;
        let per = (n_events - n_events / 3) / rounds;
        let from = n_events / 3 + per * round;
        let to = if round + 1 == rounds {
            n_events
        } else {
            from + per
        };
        produce(&topics.1, &events(from..to)).await;
        let i = rng.below(PROCESSES as u64) as usize;
        if rng.below(3) == 0 {
            sigterm(&mut procs[i]);
            chaos.push_str(&format!("round {round}: process {i} stopped\n"));
        } else {
            let _ = procs[i].kill();
            let _ = procs[i].wait();
            chaos.push_str(&format!("round {round}: process {i} killed\n"));
        }
        // The others take its partitions over (a killed one's once its session times out).
        let others: Vec<usize> = (0..PROCESSES)
            .filter(|j| *j != i)
            .map(|j| current[j])
            .collect();
        let took = wait_stable(&logs, &others, &table_name, &chaos);
        chaos.push_str(&format!(
            "  the others held every partition {:.1} s later\n",
            took.as_secs_f64()
        ));
        if rng.below(2) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(2000)));
        }
        procs[i] = spawn(&cfg, &orders, &mut logs);
        current[i] = logs.len() - 1;
        wait_stable(&logs, &current, &table_name, &chaos);
    }
    if rounds == 0 {
        produce(&topics.0, &msgs[cut..]).await;
        produce(&topics.1, &events(n_events / 3..n_events)).await;
    }
    // Every partition of both topics committed up to its end.
    let ends = (end_offsets(&topics.0), end_offsets(&topics.1));
    assert_eq!(ends.0.values().sum::<i64>(), msgs.len() as i64);
    assert_eq!(ends.1.values().sum::<i64>(), i64::from(n_events));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = (
            checkpoint(&orders, &topics.0).await,
            checkpoint(&events_table, &topics.1).await,
        );
        if now == ends {
            break;
        }
        for c in &mut procs {
            assert!(
                c.try_wait().expect("wait").is_none(),
                "a process ended by itself:\n{}",
                all_logs(&logs)
            );
        }
        assert!(
            Instant::now() < deadline,
            "checkpoints {now:?}, ends {ends:?}\n{chaos}\n{}",
            all_logs(&logs)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for c in &mut procs {
        sigterm(c);
    }
    stop.store(true, Ordering::SeqCst);
    let (runs, failures) = compactor.join().expect("compactor");
    assert!(runs > 0);
    assert!(
        failures.is_empty(),
        "lake compact failed beside the writers:\n{}",
        failures.join("\n")
    );
    let log = all_logs(&logs);
    eprintln!(
        "{chaos}{} batches fenced, {} compaction runs",
        log.matches("batch not committed").count(),
        runs
    );
    assert!(
        log.matches("partitions assigned").count() > PROCESSES,
        "rebalances:\n{log}"
    );

    // hudi-rs 0.5 skips logs written after a pending compaction was scheduled: run it first.
    if table_type == "mor" {
        for uri in [&orders.uri, &events_table.uri] {
            let out = lake_env(&["compact", uri, "--execute-only"], &orders.env);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(
        project(lake_rows(&orders.uri, &orders.env)),
        project(expected.clone()),
        "orders, lake's reader"
    );
    assert_eq!(
        project(hudi_read(&orders.uri, &["--sort", "id"], &orders.env)),
        project(expected),
        "orders, hudi-rs"
    );
    let mut ids: Vec<String> = lake_rows(&events_table.uri, &events_table.env)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..n_events).map(|i| format!("e{i}")).collect();
    want.sort();
    assert!(
        ids == want,
        "events: {} rows for {} events, e.g. {:?}",
        ids.len(),
        want.len(),
        {
            let mut seen = std::collections::BTreeSet::new();
            ids.iter().find(|i| !seen.insert(*i)).cloned()
        }
    );
    assert_eq!(
        hudi_read(&events_table.uri, &[], &events_table.env).len(),
        n_events as usize,
        "events, hudi-rs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_partitions_cow() {
    three_processes("cow", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_partitions_mor() {
    three_processes("mor", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_the_partitions_mor_local() {
    three_processes("mor", false).await;
}

/// A process paused (SIGSTOP) with a batch in hand while a process of another group commits the
/// same offsets (a zombie, as a process stalled past its session would be): when it resumes, its
/// batch is fenced — rolled back, never applied twice — and it reads on from the table's offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_process_s_batch_is_fenced_not_applied_twice() {
    use crate::kit::free_port;
    use crate::operate::{
        config, each_event_once, json_msgs, scrape_until, sigterm, spawn_ingest, total,
    };
    let p = Place::s3("fence");
    let topic = unique("events");
    create_topic(&topic, 1).await;
    produce(&topic, &json_msgs(0..100)).await;
    let append = "decoder = \"json\"\nkey = [\"id\"]\nmode = \"append\"";
    // Batches close after 8 s; the session outlives the stall, so the group keeps the partition
    // with the stalled process (a rebalance would drop its batch instead).
    let stalled = config(
        &p,
        kafka(),
        &topic,
        "max_records = 100000\nmax_interval_ms = 8000",
        &format!("{append}\n\n[source.properties]\n\"session.timeout.ms\" = \"60000\""),
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut a, log) = spawn_ingest(&p, &["--config", &stalled, "--metrics-addr", &addr]);
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    scrape_until(&addr, Duration::from_secs(60), "100 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 100.0
    });
    produce(&topic, &json_msgs(100..150)).await;
    scrape_until(&addr, Duration::from_secs(30), "150 consumed", |m| {
        total(m, "lake_ingest_consumed_offset") == 150.0
            && total(m, "lake_ingest_committed_offset") == 100.0
    });
    let pid = a.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    // Another process commits offsets 100..150 meanwhile.
    let other = config(
        &p,
        kafka(),
        &topic,
        "max_records = 1000\nmax_interval_ms = 200",
        append,
    );
    let out = lake_env(
        &["ingest", "--config", &other, "--until-caught-up", "-q"],
        &p.env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    scrape_until(&addr, Duration::from_secs(60), "a fenced batch", |m| {
        total(m, "lake_table_fenced_batches_total") >= 1.0
    });
    produce(&topic, &json_msgs(150..200)).await;
    scrape_until(&addr, Duration::from_secs(60), "200 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 200.0
    });
    assert_eq!(sigterm(&mut a).code(), Some(0), "{}", show_log());
    assert!(show_log().contains("batch not committed"), "{}", show_log());
    each_event_once(&p.uri, &p.env, 200, &show_log());
}
