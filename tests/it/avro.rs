//! `lake ingest` of Debezium's Avro wire format: messages framed as Confluent does (magic byte,
//! schema id, Avro datum), their datums written by fastavro (an Avro implementation other than
//! lake's) and their schemas registered in a schema registry on 127.0.0.1.
//!
//! No Confluent, Karapace or Redpanda registry installs here (a JVM, Docker or Python 3.12 would be
//! needed), so the registry is tests/it/avro_registry.py: the registry's documented REST endpoints
//! (`POST /subjects/{subject}/versions`, `GET /schemas/ids/{id}`, `GET /subjects`), with basic auth
//! and, to test retries, a first few lookups answered with HTTP 503.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::cow::Rng;
use crate::ingest::create_topic;
use crate::kit::{Place, hudi_read, kafka, lake_env, lake_ok, lake_rows, python, root, unique};

/// The registry process (killed on drop).
struct Registry {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port_file = dir.path().join("port");
        let child = Command::new(python())
            .arg(root().join("tests/it/avro_registry.py"))
            .args(["serve", "--port-file"])
            .arg(&port_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the registry starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p;
            }
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A framed message: key and value bytes (`None` value: a tombstone).
type Framed = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Registers the schemas and encodes the messages with fastavro (see avro_registry.py `encode`).
fn encode(registry: &Registry, auth: &[&str], lines: &[Value]) -> Vec<Framed> {
    let mut child = Command::new(python())
        .arg(root().join("tests/it/avro_registry.py"))
        .args(["encode", "--registry", &registry.url])
        .args(auth)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the encoder starts");
    let mut input = String::new();
    for l in lines {
        input.push_str(&l.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("the encoder runs");
    writer.join().expect("writer").expect("written");
    assert!(out.status.success(), "the encoder failed");
    let b64 = |v: &Value| {
        v.as_str().map(|s| {
            use base64_decode as d;
            d(s)
        })
    };
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (b64(&v["key"]), b64(&v["value"]))
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= u32::from(val(*c)) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Produces framed messages, one record batch each (see `ingest::produce_at`).
async fn produce_framed(topic: &str, msgs: &[Framed]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    let sends = msgs.iter().map(|(k, v)| {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = k {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = v {
            rec = rec.payload(v.as_slice());
        }
        producer.send(rec, Duration::from_secs(30))
    });
    for r in futures::future::join_all(sends).await {
        r.expect("delivered");
    }
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}

/// Debezium's value schema of the `orders` table; `coupon` only in version 2.
fn envelope(version: u32) -> Value {
    let mut fields = vec![
        json!({"name": "id", "type": "string"}),
        json!({"name": "status", "type": {"type": "enum", "name": "Status",
            "symbols": ["created", "paid", "shipped", "delivered"]}}),
        json!({"name": "amount", "type": "long"}),
        json!({"name": "price", "type": ["null", {"type": "bytes", "scale": 2, "precision": 10,
            "connect.version": 1, "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}],
            "default": null}),
        json!({"name": "created_on", "type": {"type": "int", "connect.version": 1,
            "connect.name": "io.debezium.time.Date"}}),
        json!({"name": "updated_at", "type": {"type": "long", "connect.version": 1,
            "connect.name": "io.debezium.time.MicroTimestamp"}}),
        json!({"name": "changed_at", "type": ["null", {"type": "string", "connect.version": 1,
            "connect.name": "io.debezium.time.ZonedTimestamp"}], "default": null}),
        json!({"name": "shipping", "type": ["null", {"type": "record", "name": "Shipping",
            "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": "int"}]}],
            "default": null}),
    ];
    if version >= 2 {
        fields.push(json!({"name": "coupon", "type": ["null", "string"], "default": null}));
    }
    json!({
        "type": "record", "name": "Envelope", "namespace": "dbserver1.shop.orders",
        "connect.name": "dbserver1.shop.orders.Envelope",
        "fields": [
            {"name": "before", "type": ["null", {"type": "record", "name": "Value",
                "fields": fields, "connect.name": "dbserver1.shop.orders.Value"}], "default": null},
            {"name": "after", "type": ["null", "Value"], "default": null},
            {"name": "source", "type": {"type": "record", "name": "Source",
                "namespace": "io.debezium.connector.mysql", "fields": [
                    {"name": "connector", "type": "string"},
                    {"name": "file", "type": "string"},
                    {"name": "pos", "type": "long"},
                    {"name": "row", "type": "int"},
                    {"name": "snapshot", "type": [{"type": "string", "connect.name": "io.debezium.data.Enum"}, "null"], "default": "false"}]}},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null}
        ]
    })
}

fn key_schema() -> Value {
    json!({"type": "record", "name": "Key", "namespace": "dbserver1.shop.orders",
        "fields": [{"name": "id", "type": "string"}]})
}

/// Debezium Avro events of an `orders` source — inserts, updates, deletes with their tombstones,
/// replays — switching to schema version 2 (a new nullable `coupon`) halfway. Returns the encoder's
/// input lines and the source's final rows.
fn orders_stream(topic: &str, seed: u64, n: usize) -> (Vec<Value>, Vec<Value>) {
    let mut rng = Rng::new(seed);
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Vec::new();
    let mut pos = 1000u64;
    let mut next = 0;
    let statuses = ["created", "paid", "shipped", "delivered"];
    for i in 0..n {
        pos += 7;
        let v2 = i > n / 2;
        let source = json!({"connector": "mysql", "file": "mysql-bin.000002", "pos": pos,
            "row": 0, "snapshot": "false"});
        let row_of = |id: &str, rng: &mut Rng| {
            let mut row = json!({
                "id": id,
                "status": statuses[rng.below(4) as usize],
                "amount": rng.below(1_000_000) as i64 - 500_000,
                "price": if rng.below(5) == 0 { Value::Null } else {
                    json!(format!("{}.{:02}", rng.below(100_000) as i64 - 50_000, rng.below(100)))
                },
                "created_on": 18_000 + rng.below(2_000) as i64,
                "updated_at": 1_700_000_000_000_000i64 + rng.below(1 << 40) as i64,
                "changed_at": if rng.below(3) == 0 { Value::Null } else {
                    json!(format!("2024-0{}-1{}T0{}:15:30.{:06}Z", 1 + rng.below(9), rng.below(10), rng.below(10), rng.below(1_000_000)))
                },
                "shipping": if rng.below(2) == 0 { Value::Null } else {
                    json!({"city": format!("c{}", rng.below(9)), "zip": rng.below(99_999) as i64})
                },
            });
            if v2 {
                row["coupon"] = if rng.below(2) == 0 {
                    Value::Null
                } else {
                    json!(format!("C{}", rng.below(5)))
                };
            }
            row
        };
        let choice = rng.below(10);
        let (id, value) = if live.is_empty() || choice < 4 {
            next += 1;
            let id = format!("o{next:05}");
            let row = row_of(&id, &mut rng);
            live.insert(id.clone(), row.clone());
            (
                id,
                json!({"before": null, "after": row, "op": "c", "source": source, "ts_ms": 1}),
            )
        } else {
            let keys: Vec<String> = live.keys().cloned().collect();
            let id = keys[rng.below(keys.len() as u64) as usize].clone();
            let mut before = live[&id].clone();
            if v2 && before.get("coupon").is_none() {
                before["coupon"] = Value::Null;
            }
            if choice < 8 {
                let row = row_of(&id, &mut rng);
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
        let line = json!({"topic": topic, "key_schema": key_schema(), "key": {"id": id},
            "schema": envelope(if v2 { 2 } else { 1 }), "value": value});
        let delete = line["value"]["op"] == "d";
        out.push(line.clone());
        if delete {
            out.push(json!({"topic": topic, "key_schema": key_schema(), "key": {"id": id}, "value": null}));
        }
        if rng.below(8) == 0 {
            out.push(line);
        }
    }
    (out, live.into_values().collect())
}

/// The config of one Avro topic into one table.
fn config(
    p: &Place,
    topic: &str,
    registry: &str,
    extra_source: &str,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"[source]
brokers = "{brokers}"
group_id = "{group}"
schema_registry_url = "{registry}"
{extra_source}

[commit]
max_records = 150
max_interval_ms = 200

[progress]
interval_ms = 0

[[tables]]
topic = "{topic}"
table = "{uri}"
format = "avro"
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

/// `lake ingest --config cfg --until-caught-up -q`.
fn ingest(cfg: &std::path::Path, env: &[(String, String)]) -> std::process::Output {
    let cfg = cfg.to_str().expect("utf8");
    lake_env(&["ingest", "--config", cfg, "--until-caught-up", "-q"], env)
}

/// [`ingest`], which must succeed.
fn ingest_ok(cfg: &std::path::Path, env: &[(String, String)]) {
    let out = ingest(cfg, env);
    assert!(
        out.status.success(),
        "lake ingest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A value as comparable text (numbers and strings alike; decimals without trailing zeros).
fn text(v: &Value) -> String {
    let t = match v {
        Value::Null => return "null".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let number = t.strip_prefix('-').unwrap_or(&t);
    if number.contains('.') && number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return t.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    t
}

/// Equal row sets, or a panic showing the rows that differ.
fn assert_same(got: Vec<Vec<String>>, want: Vec<Vec<String>>, what: &str) {
    if got != want {
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
        panic!(
            "{what}: {} rows, expected {}; unexpected {extra:?}; missing {missing:?}",
            got.len(),
            want.len()
        );
    }
}

/// The columns both readers print alike, as text.
fn project(rows: &[Value], cols: &[&str]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| text(r.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// The source's rows as lake prints them.
fn expected(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            let days = r["created_on"].as_i64().unwrap_or_default();
            let d =
                chrono::NaiveDate::from_num_days_from_ce_opt(days as i32 + 719_163).expect("date");
            r["created_on"] = json!(d.format("%Y-%m-%d").to_string());
            if let Some(micros) = r["updated_at"].as_i64() {
                let t = chrono::DateTime::from_timestamp_micros(micros)
                    .expect("ts")
                    .naive_utc();
                r["updated_at"] = json!(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string());
            }
            if r.get("coupon").is_none() {
                r["coupon"] = Value::Null;
            }
            r
        })
        .collect()
}

const COLUMNS: [&str; 6] = ["id", "status", "amount", "price", "created_on", "coupon"];

/// Removes the naive timestamp column (`updated_at`, Debezium's MicroTimestamp) from a stream:
/// lake stores it as Avro `local-timestamp-micros`, as Hudi does for timestamps without a zone,
/// which hudi-rs 0.5.0 does not read (its Avro-to-Arrow conversion panics on that logical type).
fn without_naive_timestamps(lines: &mut [Value], rows: &mut [Value]) {
    for l in lines.iter_mut() {
        if let Some(fields) = l
            .pointer_mut("/schema/fields/0/type/1/fields")
            .and_then(Value::as_array_mut)
        {
            fields.retain(|f| f["name"] != "updated_at");
        }
        for image in ["before", "after"] {
            if let Some(o) = l
                .pointer_mut(&format!("/value/{image}"))
                .and_then(Value::as_object_mut)
            {
                o.remove("updated_at");
            }
        }
    }
    for r in rows {
        if let Some(o) = r.as_object_mut() {
            o.remove("updated_at");
        }
    }
}

/// Ingests an Avro stream with random kill -9s, then to the end; the table equals the source, read
/// by lake and (`hudi_rs`: without naive timestamps, see [`without_naive_timestamps`]) by hudi-rs.
async fn killed_and_restarted(p: Place, table_type: &str, hudi_rs: bool) {
    let registry = Registry::start(&[
        "--user",
        "lake",
        "--password",
        "s3cret",
        "--fail-first",
        "3",
    ]);
    let auth = ["--user", "lake", "--password", "s3cret"];
    let topic = unique("dbserver1.shop.orders");
    create_topic(&topic, 3).await;
    let (mut lines, mut rows) = orders_stream(&topic, 11, 2500);
    if hudi_rs {
        without_naive_timestamps(&mut lines, &mut rows);
    }
    let msgs = encode(&registry, &auth, &lines);
    produce_framed(&topic, &msgs).await;
    let mut env = p.env.clone();
    env.push(("LAKE_TEST_REGISTRY_PASSWORD".into(), "s3cret".into()));
    let cfg = config(
        &p,
        &topic,
        &registry.url,
        "schema_registry_username = \"lake\"\nschema_registry_password = \"${LAKE_TEST_REGISTRY_PASSWORD}\"",
        &format!("type = \"{table_type}\""),
    );
    let cfg = cfg.to_str().expect("utf8");
    let mut rng = Rng::new(5);
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(["ingest", "--config", cfg, "--until-caught-up", "-q"])
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lake ingest starts");
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        if child.try_wait().ok().flatten().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(kills > 0, "no kill landed while ingesting");
    lake_ok(
        &["ingest", "--config", cfg, "--until-caught-up", "-q"],
        &env,
    );

    let want = expected(&rows);
    let ours = lake_rows(&p.uri, &env);
    assert_same(
        project(&ours, &COLUMNS),
        project(&want, &COLUMNS),
        "lake's reader",
    );
    assert_same(
        project(&ours, &["id", "updated_at", "changed_at"]),
        project(&want, &["id", "updated_at", "changed_at"])
            .into_iter()
            .map(|mut r| {
                r[2] = zoned(&r[2]);
                r
            })
            .collect::<Vec<_>>(),
        "timestamps",
    );
    let city = |rows: &[Value]| {
        let mut v: Vec<(String, String)> = rows
            .iter()
            .map(|r| (text(&r["id"]), text(&r["shipping"])))
            .collect();
        v.sort();
        v
    };
    let (got, cities) = (city(&ours), city(&want));
    assert_eq!(got.len(), cities.len());
    for (g, w) in got.iter().zip(&cities) {
        assert_eq!(g, w, "nested records");
    }
    if !hudi_rs {
        return;
    }
    if table_type == "mor" {
        lake_ok(&["compact", &p.uri, "--execute-only"], &env);
    }
    let theirs = hudi_read(&p.uri, &["--sort", "id"], &env);
    assert_same(
        project(&theirs, &["id", "status", "amount", "coupon"]),
        project(&want, &["id", "status", "amount", "coupon"]),
        "hudi-rs",
    );
}

/// ZonedTimestamp text as lake prints a UTC timestamp.
fn zoned(s: &str) -> String {
    if s == "null" {
        return s.into();
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|_| s.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_avro_events_gives_the_source_cow() {
    killed_and_restarted(Place::local(), "cow", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ingest_of_debezium_avro_events_gives_the_source_mor_on_s3() {
    killed_and_restarted(Place::s3("avromor"), "mor", true).await;
}

/// A corrupt datum and an unknown schema id fail the job naming the message, or go to the dead
/// letters; a schema that changes a column's type or drops the key stops the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_avro_messages_fail_or_go_to_dead_letters() {
    let registry = Registry::start(&[]);
    let topic = unique("dbserver1.shop.badavro");
    create_topic(&topic, 1).await;
    let (lines, _) = orders_stream(&topic, 3, 6);
    let first = lines[0].clone();
    let id = first["key"]["id"].clone();
    // 0: good; 1: a datum cut short; 2: an unknown schema id; 3: good (another key).
    let mut good = encode(&registry, &[], std::slice::from_ref(&first));
    let mut second = first.clone();
    second["key"]["id"] = json!("o99999");
    second["value"]["after"]["id"] = json!("o99999");
    good.extend(encode(&registry, &[], &[second]));
    let (k0, v0) = good[0].clone();
    let mut cut = v0.clone().expect("value");
    cut.truncate(cut.len() - 3);
    let mut unknown = v0.clone().expect("value");
    unknown[1..5].copy_from_slice(&999u32.to_be_bytes());
    let msgs = vec![
        (k0.clone(), v0.clone()),
        (k0.clone(), Some(cut)),
        (k0.clone(), Some(unknown)),
        good[1].clone(),
    ];
    produce_framed(&topic, &msgs).await;

    let p = Place::local();
    let cfg = config(&p, &topic, &registry.url, "", "");
    let out = ingest(&cfg, &p.env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("topic {topic} partition 0 offset 1: schema id "))
            && err.contains("the Avro datum does not match its schema: truncated"),
        "{err}"
    );

    let p = Place::local();
    let dlq = format!("{}-dead", p.uri);
    let cfg = config(
        &p,
        &topic,
        &registry.url,
        "",
        &format!("on_error = \"dead-letter\"\ndead_letter = \"{dlq}\""),
    );
    ingest_ok(&cfg, &p.env);
    let mut ids: Vec<String> = lake_rows(&p.uri, &p.env)
        .iter()
        .map(|r| text(&r["id"]))
        .collect();
    ids.sort();
    assert_eq!(ids, [text(&id), "o99999".to_owned()]);
    let mut dead: Vec<(String, String)> = lake_rows(&dlq, &p.env)
        .iter()
        .map(|v| (text(&v["offset"]), text(&v["reason"])))
        .collect();
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, "1");
    assert!(dead[0].1.contains("does not match its schema"), "{dead:?}");
    assert_eq!(dead[1].0, "2");
    assert!(
        dead[1]
            .1
            .contains("schema id 999 is not in the schema registry"),
        "{dead:?}"
    );

    // A new schema version that turns `amount` into text, or drops the key field, stops the job.
    for (what, change) in [
        ("the type Utf8", json!({"name": "amount", "type": "string"})),
        ("no field \"id\"", Value::Null),
    ] {
        let topic = unique("dbserver1.shop.evolve");
        create_topic(&topic, 1).await;
        let mut first = first.clone();
        first["topic"] = json!(topic);
        let mut schema = envelope(1);
        let fields = schema["fields"][0]["type"][1]["fields"]
            .as_array_mut()
            .expect("fields");
        let mut value = first["value"].clone();
        if change.is_null() {
            fields.retain(|f| f["name"] != "id");
            value["after"].as_object_mut().expect("after").remove("id");
        } else {
            for f in fields.iter_mut() {
                if f["name"] == "amount" {
                    *f = change.clone();
                }
            }
            value["after"]["amount"] = json!("12");
        }
        let line = json!({"topic": topic, "key_schema": key_schema(), "key": {"id": id},
            "schema": schema, "value": value});
        let p = Place::local();
        let cfg = config(&p, &topic, &registry.url, "", "");
        produce_framed(&topic, &encode(&registry, &[], &[first])).await;
        ingest_ok(&cfg, &p.env);
        produce_framed(&topic, &encode(&registry, &[], &[line])).await;
        let out = ingest(&cfg, &p.env);
        assert!(!out.status.success(), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("topic {topic} partition 0 offset 1: schema id")),
            "{what}: {err}"
        );
        assert!(err.contains(what), "{what}: {err}");
    }

    // A registry that is not there: a clear error naming the registry and the message.
    let topic = unique("dbserver1.shop.noregistry");
    create_topic(&topic, 1).await;
    produce_framed(&topic, &good[..1]).await;
    let p = Place::local();
    let cfg = config(&p, &topic, "http://127.0.0.1:9", "", "");
    let out = ingest(&cfg, &p.env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("topic {topic} partition 0 offset 0"))
            && err.contains("the schema registry at http://127.0.0.1:9 did not give schema id"),
        "{err}"
    );
}
