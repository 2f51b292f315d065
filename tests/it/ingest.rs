//! `lake ingest` against a real Kafka-protocol broker (tansu on 127.0.0.1): a prepared stream of
//! Debezium events consumed with random SIGKILLs and restarts leaves tables equal to the source
//! (read by lake and by hudi-rs) with the checkpoint in every commit; bad messages fail the job or go
//! to the dead letters.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use lake_ingest::rdkafka::client::DefaultClientContext;
use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
use lake_table::Table;
use serde_json::{Value, json};

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, kafka, lake_env, lake_ok, lake_rows, unique};

pub(crate) async fn create_topic(topic: &str, partitions: i32) {
    create_topic_at(kafka(), topic, partitions).await;
}

/// Creates a topic on the broker at `brokers`.
pub(crate) async fn create_topic_at(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let res = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    for r in res {
        r.expect("topic created");
    }
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
}

/// A message's key and value (`None` value: a tombstone).
pub(crate) type Kv = (Option<String>, Option<String>);

pub(crate) async fn produce(topic: &str, msgs: &[Kv]) {
    produce_at(kafka(), topic, msgs).await;
}

/// Produces messages to the broker at `brokers`.
pub(crate) async fn produce_at(brokers: &str, topic: &str, msgs: &[Kv]) {
    // One message per record batch: tansu 0.6 reports a partition's end offset as its last batch's
    // base offset + 1, which is the true end only when every batch holds one message.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    let sends = msgs.iter().map(|(k, v)| {
        let mut rec: FutureRecord<'_, String, String> = FutureRecord::to(topic);
        if let Some(k) = k {
            rec = rec.key(k);
        }
        if let Some(v) = v {
            rec = rec.payload(v);
        }
        producer.send(rec, Duration::from_secs(30))
    });
    for r in futures::future::join_all(sends).await {
        r.expect("delivered");
    }
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}

/// Produces messages given as raw bytes (e.g. values that are not UTF-8).
async fn produce_raw(topic: &str, msgs: &[(&[u8], &[u8])]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("acks", "all")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    for (k, v) in msgs {
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(*k).payload(*v);
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .expect("delivered");
    }
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}

/// Debezium events of an `orders` source: inserts, updates, deletes with their tombstones,
/// duplicates (at-least-once delivery) and, halfway, a new column. Returns the messages (keyed by
/// `{"id": …}`) and the source's final rows.
pub(crate) fn orders_stream(seed: u64, n: usize) -> (Vec<Kv>, Vec<Value>) {
    let mut rng = Rng::new(seed);
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Vec::new();
    let mut pos = 1000u64;
    let mut next = 0;
    for i in 0..n {
        pos += 7;
        let source =
            json!({"connector": "mysql", "file": "mysql-bin.000002", "pos": pos, "row": 0});
        let choice = rng.below(10);
        let (id, value) = if live.is_empty() || choice < 4 {
            next += 1;
            let id = format!("o{next:05}");
            let mut row = json!({"id": id, "status": "created", "amount": rng.below(500) as i64});
            if i > n / 2 {
                row["coupon"] = json!(format!("C{}", rng.below(5)));
            }
            live.insert(id.clone(), row.clone());
            (
                id,
                json!({"before": null, "after": row, "op": "c", "source": source}),
            )
        } else {
            let keys: Vec<String> = live.keys().cloned().collect();
            let id = keys[rng.below(keys.len() as u64) as usize].clone();
            let before = live[&id].clone();
            if choice < 8 {
                let mut row = before.clone();
                row["status"] = json!(["paid", "shipped", "delivered"][rng.below(3) as usize]);
                row["amount"] = json!(rng.below(500) as i64);
                if i > n / 2 && row.get("coupon").is_none() {
                    row["coupon"] = json!("LATE");
                }
                live.insert(id.clone(), row.clone());
                (
                    id,
                    json!({"before": before, "after": row, "op": "u", "source": source}),
                )
            } else {
                live.remove(&id);
                (
                    id,
                    json!({"before": before, "after": null, "op": "d", "source": source}),
                )
            }
        };
        let key = json!({"id": id}).to_string();
        let value = if i % 3 == 0 {
            json!({"schema": {"type": "struct"}, "payload": value}).to_string()
        } else {
            value.to_string()
        };
        let delete = value.contains("\"op\":\"d\"");
        out.push((Some(key.clone()), Some(value.clone())));
        if delete {
            out.push((Some(key.clone()), None));
        }
        if rng.below(8) == 0 {
            out.push((Some(key), Some(value)));
        }
    }
    let rows = live
        .into_values()
        .map(|mut r| {
            if r.get("coupon").is_none() {
                r["coupon"] = Value::Null;
            }
            r
        })
        .collect();
    (out, rows)
}

fn config(p: &Place, topic: &str, table_type: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"[source]
brokers = "{brokers}"
group_id = "{group}"

[commit]
max_records = 150
max_interval_ms = 200

[progress]
interval_ms = 0

[[tables]]
topic = "{topic}"
table = "{uri}"
type = "{table_type}"
buckets = 2
{extra}
"#,
        brokers = kafka(),
        group = unique("g"),
        uri = p.uri,
    );
    let f = p.dir.path().join(format!("{}.toml", unique("ingest")));
    std::fs::write(&f, text).expect("config");
    f
}

pub(crate) fn project(rows: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"id": r["id"], "status": r["status"], "amount": r["amount"], "coupon": r.get("coupon").cloned().unwrap_or(Value::Null)}))
        .collect();
    out.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned());
    out
}

async fn killed_and_restarted(p: Place, table_type: &str) {
    let topic = unique("dbserver1.shop.orders");
    create_topic(&topic, 3).await;
    let (msgs, expected) = orders_stream(3, 3000);
    produce(&topic, &msgs).await;
    let cfg = config(&p, &topic, table_type, "");
    let cfg = cfg.to_str().expect("utf8");
    let mut rng = Rng::new(9);
    let mut kills = 0;
    let rounds = if std::env::var_os("LAKE_TEST_NO_KILL").is_some() {
        0
    } else {
        6
    };
    for _ in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(["ingest", "--config", cfg, "--until-caught-up", "-q"])
            .envs(p.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lake ingest starts");
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
        if child.try_wait().ok().flatten().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(kills > 0 || rounds == 0, "no kill landed while ingesting");
    let out = lake_ok(
        &["ingest", "--config", cfg, "--until-caught-up", "-q"],
        &p.env,
    );
    assert!(!out.contains("uncommitted"), "{out}");

    // Nothing lost, nothing duplicated: the table equals the source.
    let ours = lake_rows(&p.uri, &p.env);
    if project(ours.clone()) != project(expected.clone())
        && std::env::var_os("LAKE_TEST_DEBUG").is_some()
    {
        let got = project(ours.clone());
        let want = project(expected.clone());
        let bad = got
            .iter()
            .find(|r| !want.contains(r))
            .or_else(|| want.iter().find(|r| !got.contains(r)))
            .cloned();
        eprintln!("first difference: {bad:?}");
        if let Some(b) = bad {
            let id = b["id"].as_str().unwrap_or_default().to_owned();
            for (k, v) in &msgs {
                if k.as_deref().is_some_and(|k| k.contains(&id)) {
                    eprintln!("msg {k:?} {v:?}");
                }
            }
        }
        eprintln!("{}", lake_ok(&["timeline", &p.uri], &p.env));
        let table = Table::open_storage(p.storage.clone()).await.expect("open");
        let timeline = table.timeline().await.expect("timeline");
        for w in timeline.completed_writes() {
            let meta = timeline.commit_metadata(w).await.expect("metadata");
            eprintln!("{} {:?}", w.time, meta.checkpoint());
        }
    }
    assert_eq!(project(ours), project(expected.clone()), "lake's reader");
    // hudi-rs 0.5.0 skips logs written after a pending compaction was scheduled (as MOR ingest does
    // inline), so the pending compaction runs first; lake's reader must agree before and after.
    if table_type == "mor" {
        lake_ok(&["compact", &p.uri, "--execute-only"], &p.env);
        let ours = lake_rows(&p.uri, &p.env);
        assert_eq!(
            project(ours),
            project(expected.clone()),
            "lake's reader after compaction"
        );
    }
    let theirs = hudi_read(&p.uri, &["--sort", "id"], &p.env);
    assert_eq!(project(theirs), project(expected), "hudi-rs");

    // Every commit carries the checkpoint; the last one is the end of every partition.
    let table = Table::open_storage(p.storage.clone()).await.expect("open");
    let timeline = table.timeline().await.expect("timeline");
    let writes: Vec<_> = timeline
        .completed_writes()
        .filter(|i| !timeline.is_compaction(i.time))
        .copied()
        .collect();
    assert!(writes.len() > 3, "{} commits", writes.len());
    let mut metas = Vec::new();
    for w in &writes {
        let meta = timeline.commit_metadata(w).await.expect("metadata");
        let cp = meta.checkpoint().expect("every commit has a checkpoint");
        assert!(cp.starts_with(&format!("{topic},")), "{cp}");
        metas.push(meta);
    }
    let at = lake_ingest::checkpoint::effective(&topic, metas.iter());
    assert_eq!(
        at.values().sum::<i64>(),
        msgs.len() as i64,
        "every partition's position is its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_events_loses_and_duplicates_nothing_cow_local() {
    killed_and_restarted(Place::local(), "cow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_events_loses_and_duplicates_nothing_mor_local() {
    killed_and_restarted(Place::local(), "mor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_events_loses_and_duplicates_nothing_cow_on_s3() {
    killed_and_restarted(Place::s3("ingestcow"), "cow").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_events_loses_and_duplicates_nothing_mor_on_s3() {
    killed_and_restarted(Place::s3("ingestmor"), "mor").await;
}

/// A corpus of bad messages among good ones.
pub(crate) fn bad_corpus() -> Vec<Kv> {
    let ev = |id: &str, amount: &str, pos: u64| {
        Some(format!(
            r#"{{"before":null,"after":{{"id":"{id}","status":"created","amount":{amount}}},"op":"c","source":{{"file":"mysql-bin.000001","pos":{pos},"row":0}}}}"#
        ))
    };
    vec![
        (Some(r#"{"id":"a"}"#.into()), ev("a", "1", 10)),
        (Some(r#"{"id":"b"}"#.into()), Some("{not json".into())),
        (
            Some(r#"{"id":"c"}"#.into()),
            Some(r#"{"op":"x","after":{"id":"c"}}"#.into()),
        ),
        (
            Some(r#"{"id":"d"}"#.into()),
            Some(
                r#"{"op":"c","after":{"status":"no key"},"source":{"file":"f.1","pos":20}}"#.into(),
            ),
        ),
        (
            Some(r#"{"id":"e"}"#.into()),
            ev("e", "\"not a number\"", 30),
        ),
        (Some(r#"{"id":"f"}"#.into()), ev("f", "2", 40)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_fail_the_job_or_go_to_dead_letters() {
    let topic = unique("dbserver1.shop.bad");
    create_topic(&topic, 1).await;
    // The first message fixes the amount column as a number before the bad ones arrive.
    produce(&topic, &bad_corpus()[..1]).await;
    produce(&topic, &bad_corpus()[1..]).await;
    // Offset 6: a key and value that are not UTF-8 (kept byte for byte in the dead letters).
    produce_raw(&topic, &[(b"k\xff", b"\xff\xfe{")]).await;

    // Policy fail: a clear error naming topic, partition and offset; nothing of the bad batch lands.
    let p = Place::local();
    let cfg = config(&p, &topic, "cow", "key = [\"id\"]");
    let out = lake_env(
        &[
            "ingest",
            "--config",
            cfg.to_str().expect("utf8"),
            "--until-caught-up",
            "-q",
        ],
        &p.env,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "topic {topic} partition 0 offset 1: malformed JSON"
        )),
        "{err}"
    );
    let committed = lake_env(&["read", &p.uri, "--format", "json"], &p.env);
    let rows = String::from_utf8_lossy(&committed.stdout);
    assert!(
        !rows.contains("\"f\""),
        "a row after the bad message was committed: {rows}"
    );

    // Policy dead-letter: the good rows land, every bad message is in the dead-letter table. The
    // table already has a numeric amount column, so a text amount is a bad message.
    let p = Place::local();
    lake_ok(&["create", &p.uri, "--key", "id"], &p.env);
    let seed = p.dir.path().join("seed.jsonl");
    std::fs::write(&seed, "{\"id\":\"z\",\"status\":\"x\",\"amount\":5}\n").expect("seed");
    lake_ok(
        &["write", &p.uri, "--input", seed.to_str().expect("utf8")],
        &p.env,
    );
    let dlq = format!("{}-dead", p.uri);
    let cfg = config(
        &p,
        &topic,
        "cow",
        &format!("key = [\"id\"]\non_error = \"dead-letter\"\ndead_letter = \"{dlq}\""),
    );
    lake_ok(
        &[
            "ingest",
            "--config",
            cfg.to_str().expect("utf8"),
            "--until-caught-up",
            "-q",
        ],
        &p.env,
    );
    let ids: Vec<String> = lake_rows(&p.uri, &p.env)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ids, ["a", "f", "z"]);
    let mut dead: Vec<(String, String)> = lake_rows(&dlq, &p.env)
        .iter()
        .map(|v| {
            (
                v["offset"].as_str().unwrap_or_default().to_owned(),
                v["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    dead.sort();
    let offsets: Vec<&str> = dead.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(offsets, ["1", "2", "3", "4", "6"], "{dead:?}");
    assert!(dead[0].1.contains("malformed JSON"), "{dead:?}");
    assert!(dead[1].1.contains("unknown Debezium op"), "{dead:?}");
    assert!(dead[2].1.contains("record key field"), "{dead:?}");
    assert!(dead[3].1.contains("amount"), "{dead:?}");
    // Text stays text; bytes that are not UTF-8 are kept raw (lake read prints binary as hex).
    let rows = lake_rows(&dlq, &p.env);
    let at = |o: &str| {
        rows.iter()
            .find(|r| r["offset"] == o)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(at("1")["value"], "{not json", "{rows:?}");
    assert_eq!(at("1")["value_bytes"], Value::Null, "{rows:?}");
    assert_eq!(at("6")["value"], Value::Null, "{rows:?}");
    assert_eq!(at("6")["value_bytes"], "fffe7b", "{rows:?}");
    assert_eq!(at("6")["key_bytes"], "6bff", "{rows:?}");
}

/// `lake demo` (the README's first command) runs end to end and leaves tables hudi-rs reads; with
/// `--format avro` (Debezium Avro, schemas in the demo's registry) the orders table is the same.
#[test]
fn the_demo_answers_and_leaves_readable_tables() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_demo = |name: &str, format: &str| {
        let at = dir.path().join(name);
        let at_str = at.to_str().expect("utf8");
        let args = [
            "demo", "--dir", at_str, "--orders", "300", "--format", format,
        ];
        (lake_ok(&args, &[]), at)
    };
    let (out, demo) = run_demo("demo", "json");
    for want in [
        "current orders by status",
        "order changes since instant",
        "| d  |",
        "orders as of instant",
        "compacted ",
        "| delivered |",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let orders = format!("file://{}/orders", demo.display());
    let clicks = format!("file://{}/clickstream", demo.display());
    let ours = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "csv",
            "--table",
            &format!("o={orders}"),
            "-c",
            "SELECT count(*) FROM o",
        ],
        &[],
    );
    let n: usize = ours
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("count");
    assert_eq!(hudi_read(&orders, &["--sort", "id"], &[]).len(), n);
    assert!(!hudi_read(&clicks, &["--sort", "user_id"], &[]).is_empty());

    // The same source through Debezium's Avro converter and a schema registry: the same table.
    let (out, avro_demo) = run_demo("demo-avro", "avro");
    assert!(
        out.contains("embedded schema registry at http://127.0.0.1:"),
        "{out}"
    );
    let avro_orders = format!("file://{}/orders", avro_demo.display());
    let rows = |uri: &str| {
        lake_ok(
            &[
                "sql",
                "-q",
                "--format",
                "csv",
                "--table",
                &format!("o={uri}"),
                "-c",
                "SELECT id, customer, status, amount, order_date FROM o ORDER BY id",
            ],
            &[],
        )
    };
    let (from_json, from_avro) = (rows(&orders), rows(&avro_orders));
    assert_eq!(from_json.lines().count(), n + 1, "{from_json}");
    assert_eq!(from_avro, from_json);
    assert_eq!(hudi_read(&avro_orders, &["--sort", "id"], &[]).len(), n);
}

/// docs/examples/ingest.toml works as is once its `brokers`, `topic` and `table` lines point at a
/// broker, a topic and a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_works_as_documented() {
    let topic = unique("dbserver1.shop.example");
    create_topic(&topic, 2).await;
    let (msgs, expected) = orders_stream(21, 300);
    produce(&topic, &msgs).await;
    let p = Place::local();
    let text = std::fs::read_to_string(crate::kit::root().join("docs/examples/ingest.toml"))
        .expect("example config");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("brokers = ") {
                format!("brokers = \"{}\"", kafka())
            } else if l.starts_with("topic = ") {
                format!("topic = \"{topic}\"")
            } else if l.starts_with("table = ") {
                format!("table = \"{}\"", p.uri)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = p.dir.path().join("ingest.toml");
    std::fs::write(&cfg, text).expect("config");
    lake_ok(
        &[
            "ingest",
            "--config",
            cfg.to_str().expect("utf8"),
            "--until-caught-up",
            "-q",
        ],
        &p.env,
    );
    let ours = lake_rows(&p.uri, &p.env);
    assert_eq!(project(ours), project(expected));
}

/// SIGTERM stops `lake ingest` cleanly: exit status 0, nothing half-committed, and a restart goes
/// on from the last checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_ingest_cleanly() {
    let topic = unique("dbserver1.shop.term");
    create_topic(&topic, 2).await;
    let (msgs, expected) = orders_stream(8, 600);
    produce(&topic, &msgs).await;
    let p = Place::local();
    let cfg = config(&p, &topic, "mor", "");
    let cfg = cfg.to_str().expect("utf8");
    let child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["ingest", "--config", cfg])
        .envs(p.env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lake ingest starts");
    // Wait for the first commit, then ask it to stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !lake_env(&["timeline", &p.uri], &p.env).status.success()
        || !lake_ok(&["timeline", &p.uri], &p.env).contains("COMPLETED")
    {
        assert!(std::time::Instant::now() < deadline, "no commit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let timeline = lake_ok(&["timeline", &p.uri], &p.env);
    assert!(
        timeline
            .lines()
            .filter(|l| l.contains("deltacommit"))
            .all(|l| l.contains("COMPLETED")),
        "a write was left half-done:\n{timeline}"
    );
    lake_ok(
        &["ingest", "--config", cfg, "--until-caught-up", "-q"],
        &p.env,
    );
    lake_ok(&["compact", &p.uri, "--execute-only"], &p.env);
    let ours = lake_rows(&p.uri, &p.env);
    assert_eq!(project(ours), project(expected));
}

/// The deployment's config (docker-compose.yml) parses, with the broker from the environment.
#[test]
fn the_deployment_config_parses() {
    let text =
        std::fs::read_to_string(crate::kit::root().join("deploy/ingest.toml")).expect("config");
    let cfg = lake_ingest::config::PipelineConfig::parse(&text, |k| {
        (k == "LAKE_BROKERS").then(|| "redpanda:29092".to_owned())
    })
    .expect("parses");
    assert_eq!(cfg.source.brokers, "redpanda:29092");
    assert_eq!(
        cfg.tables[0].table_uri("dbserver1.brazillian_ecommerce.olist_orders_dataset"),
        "s3://warehouse/brazillian_ecommerce/olist_orders_dataset"
    );
}
