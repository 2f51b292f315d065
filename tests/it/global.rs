//! Table-wide record keys (`lake create --index global`): plain JSON upserts whose partition value
//! changes move the row, deletes find a key wherever it lives, stale versions never come back —
//! through `lake write` and `lake ingest`, on copy-on-write and merge-on-read tables, on a local
//! folder and on the S3 server; lake's reader and hudi-rs both return exactly the replay model.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, lake_ok, lake_rows};

const COUNTRIES: [&str; 3] = ["de", "fr", "nl"];

/// One event of a user: an upsert (or delete) of `id` in `country`, ordered by `v`.
#[derive(Clone, Debug)]
struct Event {
    id: i64,
    country: &'static str,
    v: i64,
    score: i64,
    delete: bool,
}

/// The replay model of a table with table-wide keys: per (id, country) the winning version, merge-on-read
/// tombstones included (they stay in the logs, ordering later versions, until compaction).
#[derive(Default)]
struct Model {
    mor: bool,
    versions: BTreeMap<(i64, &'static str), Event>,
}

impl Model {
    fn apply(&mut self, batch: &[Event]) {
        let mut winners: Vec<Event> = Vec::new();
        let mut at: BTreeMap<i64, usize> = BTreeMap::new();
        for e in batch {
            match at.get(&e.id) {
                Some(&i) if e.v >= winners[i].v => winners[i] = e.clone(),
                Some(_) => {}
                None => {
                    at.insert(e.id, winners.len());
                    winners.push(e.clone());
                }
            }
        }
        for w in winners {
            let elsewhere: Vec<(&'static str, i64)> = self
                .versions
                .iter()
                .filter(|((id, c), e)| *id == w.id && *c != w.country && !e.delete)
                .map(|((_, c), e)| (*c, e.v))
                .collect();
            if !w.delete && elsewhere.iter().any(|(_, v)| *v > w.v) {
                continue;
            }
            for (country, _) in elsewhere {
                self.one(Event {
                    country,
                    delete: true,
                    ..w.clone()
                });
            }
            self.one(w);
        }
    }

    fn one(&mut self, w: Event) {
        let cur = self.versions.get(&(w.id, w.country));
        if cur.is_some_and(|c| w.v < c.v) {
            return;
        }
        if w.delete && !(self.mor && cur.is_some()) {
            self.versions.remove(&(w.id, w.country));
        } else {
            self.versions.insert((w.id, w.country), w);
        }
    }

    fn compacted(&mut self) {
        self.versions.retain(|_, e| !e.delete);
    }

    fn rows(&self) -> Vec<Value> {
        self.versions
            .values()
            .filter(|e| !e.delete)
            .map(|e| json!({"id": e.id, "country": e.country, "v": e.v, "score": e.score}))
            .collect()
    }
}

fn project(rows: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"id": r["id"], "country": r["country"], "v": r["v"], "score": r["score"]}))
        .collect();
    out.sort_by_key(|r| (r["id"].as_i64(), r["country"].as_str().map(str::to_owned)));
    out
}

fn line(e: &Event) -> String {
    json!({"id": e.id, "country": e.country, "v": e.v, "score": e.score}).to_string() + "\n"
}

/// Seeded batches of upserts (with duplicates, out-of-order versions and moves between countries)
/// and separate delete writes (naming a random country: the delete finds the key wherever it is),
/// written with `lake write`; after every write lake's rows equal the model, at the end hudi-rs's
/// too, and for merge-on-read again after `lake compact`.
fn moves_between_partitions(p: &Place, table_type: &str, seed: u64) {
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    let out = lake_ok(
        &[
            "create",
            uri,
            "--type",
            table_type,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "country",
            "--index",
            "global",
        ],
        env,
    );
    assert!(out.contains("global (table-wide keys) index"), "{out}");
    let props = std::fs::read_to_string(p.dir.path().join("t/.hoodie/hoodie.properties"))
        .unwrap_or_default();
    if !props.is_empty() {
        assert!(props.contains("hoodie.index.type=GLOBAL_SIMPLE"), "{props}");
    }
    let mut model = Model {
        mor: table_type == "mor",
        ..Default::default()
    };
    let mut rng = Rng::new(seed);
    for step in 0..8 {
        let delete = step > 1 && rng.below(3) == 0;
        let n = if delete { 4 } else { 25 };
        let events: Vec<Event> = (0..n)
            .map(|_| Event {
                id: rng.below(15) as i64,
                country: COUNTRIES[rng.below(3) as usize],
                v: rng.below(20) as i64,
                score: rng.below(1000) as i64,
                delete,
            })
            .collect();
        let f = p.dir.path().join(format!("step{step}.jsonl"));
        std::fs::write(&f, events.iter().map(line).collect::<String>()).expect("input");
        let op = if delete { "delete" } else { "upsert" };
        lake_ok(
            &[
                "write",
                uri,
                "--op",
                op,
                "--input",
                f.to_str().expect("utf8"),
            ],
            env,
        );
        model.apply(&events);
        assert_eq!(
            project(lake_rows(uri, env)),
            project(model.rows()),
            "seed {seed} step {step}: {events:?}"
        );
    }
    let want = project(model.rows());
    assert_eq!(project(hudi_read(uri, &["--sort", "id"], env)), want);
    if table_type == "mor" {
        lake_ok(&["compact", uri], env);
        model.compacted();
        assert_eq!(project(lake_rows(uri, env)), want);
        assert_eq!(project(hudi_read(uri, &["--sort", "id"], env)), want);
        let timeline = lake_ok(&["timeline", uri], env);
        assert!(timeline.contains(" commit "), "{timeline}");
    }
}

#[test]
fn table_wide_keys_move_rows_between_partitions_cow_local() {
    for seed in 0..3 {
        moves_between_partitions(&Place::local(), "cow", seed);
    }
}

#[test]
fn table_wide_keys_move_rows_between_partitions_mor_local() {
    for seed in 0..3 {
        moves_between_partitions(&Place::local(), "mor", seed);
    }
}

#[test]
fn table_wide_keys_move_rows_between_partitions_cow_on_s3() {
    moves_between_partitions(&Place::s3("global"), "cow", 11);
}

#[test]
fn table_wide_keys_move_rows_between_partitions_mor_on_s3() {
    moves_between_partitions(&Place::s3("global"), "mor", 12);
}

/// `lake ingest` of plain JSON events (no before images) into a table with table-wide keys: a user
/// whose country changes moves, and the table ends with exactly one row per user — the last event's.
async fn ingest_moves(p: Place, table_type: &str) {
    use crate::ingest::{Kv, create_topic, produce};
    let topic = crate::kit::unique("clicks_users");
    create_topic(&topic, 2).await;
    let mut rng = Rng::new(5);
    let mut last: BTreeMap<i64, Value> = BTreeMap::new();
    let msgs: Vec<Kv> = (0..400)
        .map(|i| {
            let id = rng.below(40) as i64;
            let row = json!({"id": id, "country": COUNTRIES[rng.below(3) as usize], "v": i, "score": rng.below(100)});
            last.insert(id, row.clone());
            // One Kafka partition per user, so the topic keeps each user's order.
            (Some(id.to_string()), Some(row.to_string()))
        })
        .collect();
    produce(&topic, &msgs).await;
    let cfg = p.dir.path().join("ingest.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[source]
brokers = "{brokers}"
group_id = "{group}"

[commit]
max_records = 60

[[tables]]
topic = "{topic}"
table = "{uri}"
type = "{table_type}"
decoder = "json"
key = ["id"]
partition_by = ["country"]
index = "global"
"#,
            brokers = crate::kit::kafka(),
            group = crate::kit::unique("g"),
            uri = p.uri,
        ),
    )
    .expect("config");
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
    let want = project(last.into_values().collect());
    assert_eq!(project(lake_rows(&p.uri, &p.env)), want);
    // hudi-rs does not read the logs of slices under a pending compaction (ingest schedules them):
    // compact first.
    lake_ok(&["compact", &p.uri], &p.env);
    assert_eq!(project(lake_rows(&p.uri, &p.env)), want);
    assert_eq!(project(hudi_read(&p.uri, &["--sort", "id"], &p.env)), want);
    let timeline = lake_ok(&["timeline", &p.uri], &p.env);
    assert!(
        timeline.lines().filter(|l| l.contains("COMPLETED")).count() > 2,
        "{timeline}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_of_plain_json_keeps_keys_table_wide_mor_local() {
    ingest_moves(Place::local(), "mor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_of_plain_json_keeps_keys_table_wide_cow_on_s3() {
    ingest_moves(Place::s3("global_ingest"), "cow").await;
}

/// Two `lake write` processes race to write the same keys — with the global index into random
/// partitions, with the simple index into each key's fixed partition: every key ends in exactly one
/// row, holding the newest version among the writes that committed (a global-index write conflicts
/// with any write committed since it began, a simple-index write with one that inserted into a
/// partition it inserted into; the loser retries).
fn racing_writers(p: &Place, trials: u64, index: &str) {
    use std::process::{Command, Stdio};
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    lake_ok(
        &[
            "create",
            uri,
            "--type",
            "mor",
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "country",
            "--index",
            index,
        ],
        env,
    );
    let trials = if std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1") {
        trials * 10
    } else {
        trials
    };
    let mut rng = Rng::new(3);
    let mut model = Model {
        mor: true,
        ..Default::default()
    };
    for trial in 0..trials {
        // Inputs first, so the writers start within milliseconds of each other.
        let inputs: Vec<(Vec<Event>, std::path::PathBuf)> = (0..2u64)
            .map(|w| {
                // Every trial's keys are new: both writers insert them (the global index also
                // moves them between partitions when the second commits after the first).
                let events: Vec<Event> = (trial as i64 * 1000..trial as i64 * 1000 + 1000)
                    .map(|id| Event {
                        id,
                        country: if index == "global" {
                            COUNTRIES[rng.below(3) as usize]
                        } else {
                            COUNTRIES[(id % 3) as usize]
                        },
                        v: (trial * 2 + w) as i64,
                        score: (trial * 100 + w) as i64,
                        delete: false,
                    })
                    .collect();
                let f = p.dir.path().join(format!("t{trial}w{w}.jsonl"));
                std::fs::write(&f, events.iter().map(line).collect::<String>()).expect("input");
                (events, f)
            })
            .collect();
        let mut children = Vec::new();
        for (events, f) in inputs {
            std::thread::sleep(std::time::Duration::from_millis(rng.below(2)));
            let child = Command::new(env!("CARGO_BIN_EXE_lake"))
                .args(["write", uri, "--input", f.to_str().expect("utf8")])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            children.push((events, child));
        }
        let mut applied = Vec::new();
        for (events, child) in children {
            let out = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                applied.push(events);
            } else {
                assert!(
                    stderr.contains("write conflict"),
                    "untyped failure: {stderr}"
                );
            }
        }
        // Commit order does not matter: the higher ordering value wins either way.
        for events in applied {
            model.apply(&events);
        }
        let got = project(lake_rows(uri, env));
        assert_eq!(got, project(model.rows()), "trial {trial}");
        assert_eq!(
            got.len() as u64,
            trial * 1000 + 1000,
            "trial {trial}: one row per key"
        );
    }
    lake_ok(&["compact", uri], env);
    assert_eq!(
        project(hudi_read(uri, &["--sort", "id"], env)),
        project(model.rows())
    );
}

#[test]
fn racing_writers_keep_keys_table_wide_local() {
    racing_writers(&Place::local(), 6, "global");
}

#[test]
fn racing_writers_keep_keys_table_wide_on_s3() {
    racing_writers(&Place::s3("global_race"), 3, "global");
}

#[test]
fn racing_inserts_of_one_new_key_store_it_once_with_the_simple_index() {
    racing_writers(&Place::local(), 6, "simple");
    racing_writers(&Place::s3("simple_race"), 3, "simple");
}
