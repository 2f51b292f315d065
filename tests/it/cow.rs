//! Copy-on-write tables written from Debezium events, read back by hudi-rs, on a local folder and
//! on the S3 server.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::kit::{hudi_read, lake_ok, lake_rows, s3, unique};

/// A small deterministic pseudo-random generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(
            seed.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        )
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn position(pos: u64) -> String {
    format!("{:012}.{:020}.{:010}", 1, pos, 0)
}

/// One Debezium event of the `orders` source, as the source emitted it.
#[derive(Clone)]
struct Event {
    pos: u64,
    op: &'static str,
    before: Option<Value>,
    after: Option<Value>,
}

impl Event {
    fn line(&self, envelope: bool) -> String {
        let payload = json!({
            "before": self.before, "after": self.after, "op": self.op, "ts_ms": 1_700_000_000_000u64 + self.pos,
            "source": {"connector": "mysql", "db": "shop", "table": "orders", "file": "mysql-bin.000001", "pos": self.pos, "row": 0}
        });
        if envelope {
            json!({"schema": {"type": "struct"}, "payload": payload}).to_string()
        } else {
            payload.to_string()
        }
    }
}

/// Generates batches of events with inserts, updates, deletes, re-inserts, duplicates, out-of-order
/// events within a batch, replays of older events in later batches, tombstones and a new column;
/// returns the batches (as JSON Lines) and the source's final rows.
fn scenario(seed: u64, batches: usize, per_batch: usize) -> (Vec<String>, Vec<Value>) {
    let mut rng = Rng::new(seed);
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    let mut history: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut pos = 100;
    let mut out = Vec::new();
    let statuses = [
        "created",
        "approved",
        "invoiced",
        "shipped",
        "delivered",
        "canceled",
    ];
    let mut next_id = 0;
    for b in 0..batches {
        let mut events: Vec<Event> = Vec::new();
        for _ in 0..per_batch {
            pos += 10;
            let choice = rng.below(10);
            let ev = if live.is_empty() || choice < 4 {
                next_id += 1;
                let id = format!("o{next_id:04}");
                let mut row = json!({"order_id": id, "customer_id": format!("c{}", rng.below(50)),
                    "order_status": "created", "amount": rng.below(1000) as i64, "region": format!("r{}", next_id % 3)});
                if b >= 2 {
                    row["coupon"] = json!(format!("C{}", rng.below(9)));
                }
                live.insert(id.clone(), row.clone());
                Event {
                    pos,
                    op: "c",
                    before: None,
                    after: Some(row),
                }
            } else {
                let keys: Vec<String> = live.keys().cloned().collect();
                let id = keys[rng.below(keys.len() as u64) as usize].clone();
                let before = live[&id].clone();
                if choice < 8 {
                    let mut row = before.clone();
                    row["order_status"] = json!(statuses[rng.below(6) as usize]);
                    row["amount"] = json!(rng.below(1000) as i64);
                    live.insert(id.clone(), row.clone());
                    Event {
                        pos,
                        op: "u",
                        before: Some(before),
                        after: Some(row),
                    }
                } else {
                    live.remove(&id);
                    Event {
                        pos,
                        op: "d",
                        before: Some(before),
                        after: None,
                    }
                }
            };
            let id = ev
                .after
                .as_ref()
                .or(ev.before.as_ref())
                .map(|r| r["order_id"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            history.entry(id).or_default().push(ev.clone());
            events.push(ev);
        }
        // Duplicates (at-least-once delivery) and replays of older events of keys still live.
        for _ in 0..per_batch / 5 {
            let e = events[rng.below(events.len() as u64) as usize].clone();
            events.push(e);
        }
        if b > 0 {
            for (id, evs) in &history {
                if live.contains_key(id) && evs.len() > 1 && rng.below(4) == 0 {
                    events.push(evs[0].clone());
                }
            }
        }
        // Out of order within the batch.
        for i in (1..events.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            events.swap(i, j);
        }
        let mut text = String::new();
        for (i, e) in events.iter().enumerate() {
            text.push_str(&e.line(i % 2 == 0));
            text.push('\n');
            if e.op == "d" {
                text.push_str("null\n");
            }
        }
        out.push(text);
    }
    let coupon_exists = batches > 2;
    let rows = live
        .into_values()
        .map(|mut r| {
            let id = r["order_id"].as_str().unwrap_or_default().to_owned();
            let last = history[&id].last().map_or(0, |e| e.pos);
            r["_source_position"] = json!(position(last));
            if coupon_exists && r.get("coupon").is_none() {
                r["coupon"] = Value::Null;
            }
            r
        })
        .collect();
    (out, rows)
}

fn run_scenario(uri: &str, env: &[(String, String)], dir: &Path, table_type: &str) {
    lake_ok(
        &[
            "create",
            uri,
            "--type",
            table_type,
            "--key",
            "order_id",
            "--partition-by",
            "region",
            "--buckets",
            "3",
        ],
        env,
    );
    let (batches, expected) = scenario(7, 5, 120);
    for (i, text) in batches.iter().enumerate() {
        let f = dir.join(format!("batch{i}.jsonl"));
        std::fs::write(&f, text).expect("write batch");
        let out = lake_ok(
            &[
                "write",
                uri,
                "--format",
                "debezium",
                "--input",
                f.to_str().expect("utf8"),
            ],
            env,
        );
        assert!(out.contains("committed "), "{out}");
    }
    let got = hudi_read(uri, &["--sort", "order_id"], env);
    let cols: Vec<&str> = [
        "order_id",
        "customer_id",
        "order_status",
        "amount",
        "region",
        "_source_position",
        "coupon",
    ]
    .to_vec();
    let project = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|r| {
                Value::Object(
                    cols.iter()
                        .map(|c| (c.to_string(), r.get(*c).cloned().unwrap_or(Value::Null)))
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(got.len(), expected.len(), "row count");
    assert_eq!(project(got.clone()), project(expected));
    // Every column the table has, exactly: the new column arrived in batch 2.
    let keys: Vec<&String> = got[0].as_object().expect("object").keys().collect();
    assert_eq!(keys, cols);

    let timeline = lake_ok(&["timeline", uri], env);
    let action = if table_type == "mor" {
        " deltacommit "
    } else {
        " commit "
    };
    let commits: Vec<&str> = timeline.lines().filter(|l| l.contains(action)).collect();
    assert_eq!(commits.len(), 5, "{timeline}");
    assert!(
        commits.iter().all(|l| l.contains("COMPLETED")),
        "{timeline}"
    );
    // lake's own reader agrees with hudi-rs.
    let mut ours = lake_rows(uri, env);
    ours.sort_by_key(|r| r["order_id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(project(ours), project(got));
}

#[test]
fn debezium_batches_leave_the_source_state_local() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = format!("file://{}/orders", dir.path().display());
    run_scenario(&uri, &[], dir.path(), "cow");
}

#[test]
fn debezium_batches_leave_the_source_state_on_s3() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = &s3().env;
    let uri = format!("s3://test/{}", unique("orders"));
    run_scenario(&uri, env, dir.path(), "cow");
}

#[test]
fn debezium_batches_leave_the_source_state_mor_local() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = format!("file://{}/orders", dir.path().display());
    run_scenario(&uri, &[], dir.path(), "mor");
}

#[test]
fn debezium_batches_leave_the_source_state_mor_on_s3() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = &s3().env;
    let uri = format!("s3://test/{}", unique("orders"));
    run_scenario(&uri, env, dir.path(), "mor");
}

#[test]
fn plain_json_upserts_deletes_and_composite_keys_read_back_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    lake_ok(
        &[
            "create",
            &uri,
            "--key",
            "id,name",
            "--partition-by",
            "a,b",
            "--ordering",
            "v",
            "--buckets",
            "2",
        ],
        &[],
    );
    let write = |name: &str, text: &str, op: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        lake_ok(
            &[
                "write",
                &uri,
                "--input",
                f.to_str().expect("utf8"),
                "--op",
                op,
            ],
            &[],
        )
    };
    write(
        "1.jsonl",
        "{\"id\":1,\"name\":\"x\",\"a\":1,\"b\":\"p\",\"v\":1}\n{\"id\":1,\"name\":\"y\",\"a\":1,\"b\":\"p\",\"v\":1}\n\
         {\"id\":2,\"name\":\"x\",\"a\":2,\"b\":\"q\",\"v\":5}\n{\"id\":2,\"name\":\"x\",\"a\":2,\"b\":\"q\",\"v\":3}\n",
        "upsert",
    );
    // An older version (v=4) of id 2 must not win; id 1/y is deleted; id 3 is new.
    write(
        "2.jsonl",
        "{\"id\":2,\"name\":\"x\",\"a\":2,\"b\":\"q\",\"v\":4}\n{\"id\":3,\"name\":\"z\",\"a\":1,\"b\":\"p\",\"v\":0}\n",
        "upsert",
    );
    write(
        "3.jsonl",
        "{\"id\":1,\"name\":\"y\",\"a\":1,\"b\":\"p\",\"v\":9}\n",
        "delete",
    );
    let rows = hudi_read(&uri, &["--meta", "--sort", "_hoodie_record_key"], &[]);
    let summary: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["_hoodie_record_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["_hoodie_partition_path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["v"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("id:1,name:x".to_owned(), "a=1/b=p".to_owned(), 1),
            ("id:2,name:x".to_owned(), "a=2/b=q".to_owned(), 5),
            ("id:3,name:z".to_owned(), "a=1/b=p".to_owned(), 0)
        ]
    );
    let props =
        std::fs::read_to_string(dir.path().join("t/.hoodie/hoodie.properties")).expect("props");
    assert!(
        props
            .contains("hoodie.table.keygenerator.class=org.apache.hudi.keygen.ComplexKeyGenerator"),
        "{props}"
    );
    assert!(
        dir.path()
            .join("t/a=1/b=p/.hoodie_partition_metadata")
            .exists()
    );
}
