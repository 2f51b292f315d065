//! Timeline archival through the binary: a table with hundreds of commits keeps a bounded active
//! timeline and stays readable by hudi-rs and lake at every step; time travel and incremental reads
//! reach archived instants; an archival killed with SIGKILL at random points leaves a readable table
//! whose history (active + archived) loses no instant.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, lake_env, lake_ok, lake_rows};

fn soak() -> bool {
    std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1")
}

/// `(instant, action, state)` of every line of `lake timeline [--archived]`.
fn timeline(uri: &str, archived: bool, env: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut args = vec!["timeline", uri];
    if archived {
        args.push("--archived");
    }
    lake_ok(&args, env)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.into(), w.next()?.into(), w.next()?.into()))
        })
        .collect()
}

/// The completed writes of the active and archived timelines, checked to appear once each, in order.
fn history_writes(uri: &str, env: &[(String, String)], context: &str) -> Vec<String> {
    let all = writes(&timeline(uri, true, env));
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, all, "{context}: each write once, in order");
    all
}

/// `lake archive` keeping `min` to `max` writes.
fn archive(uri: &str, min: usize, max: usize, env: &[(String, String)]) -> String {
    let (min, max) = (min.to_string(), max.to_string());
    lake_ok(
        &[
            "archive",
            uri,
            "--keep-min-commits",
            &min,
            "--keep-max-commits",
            &max,
        ],
        env,
    )
}

/// A copy-on-write table keyed by `id`, ordered by `v`, partitioned by `p`.
fn create(p: &Place) {
    lake_ok(
        &[
            "create",
            &p.uri,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "p",
        ],
        &p.env,
    );
}

fn writes(lines: &[(String, String, String)]) -> Vec<String> {
    lines
        .iter()
        .filter(|(_, a, s)| {
            ["commit", "deltacommit"].contains(&a.as_str()) && (s == "COMPLETED" || s == "ARCHIVED")
        })
        .map(|(t, _, _)| t.clone())
        .collect()
}

/// Rows as `id → v`, checking one row per id.
fn by_id(rows: &[Value]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for r in rows {
        let id = r["id"].as_i64().expect("id");
        let v = r["v"].as_i64().expect("v");
        assert!(out.insert(id, v).is_none(), "id {id} twice: {rows:?}");
    }
    out
}

fn write_rows(p: &Place, name: &str, rows: &[(i64, i64)], op: &str) {
    let f = p.dir.path().join(name);
    let text: String = rows
        .iter()
        .map(|(id, v)| format!("{{\"id\":{id},\"p\":\"p{}\",\"v\":{v}}}\n", id % 3))
        .collect();
    std::fs::write(&f, text).expect("write input");
    lake_ok(
        &[
            "write",
            &p.uri,
            "--input",
            f.to_str().expect("utf8"),
            "--op",
            op,
        ],
        &p.env,
    );
}

/// Upserts and deletes for `commits` commits, `lake compact` (clean + archive) every 10; after
/// each run the active timeline holds at most `max` writes and lake and hudi-rs read the model.
async fn bounded_timeline(p: &Place, table_type: &str, commits: u64, seed: u64) {
    let env = p.env.as_slice();
    lake_ok(
        &[
            "create",
            &p.uri,
            "--type",
            table_type,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "p",
            "--buckets",
            "2",
        ],
        env,
    );
    let mut rng = Rng::new(seed);
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let mut all_writes = 0usize;
    let mut runs = 0;
    for c in 1..=commits {
        let v = c as i64;
        if c % 7 == 0 && !model.is_empty() {
            let keys: Vec<i64> = model.keys().copied().collect();
            let id = keys[rng.below(keys.len() as u64) as usize];
            write_rows(p, "d.jsonl", &[(id, v)], "delete");
            model.remove(&id);
        } else {
            let rows: Vec<(i64, i64)> = (0..1 + rng.below(4))
                .map(|_| (rng.below(40) as i64, v))
                .collect();
            write_rows(p, "u.jsonl", &rows, "upsert");
            for (id, v) in rows {
                model.insert(id, v);
            }
        }
        all_writes += 1;
        if c % 10 != 0 {
            continue;
        }
        let out = lake_ok(
            &[
                "compact",
                &p.uri,
                "--retain-commits",
                "10",
                "--keep-min-commits",
                "20",
                "--keep-max-commits",
                "30",
                "--max-delta-commits",
                "5",
            ],
            env,
        );
        runs += 1;
        let active = timeline(&p.uri, false, env);
        let active_writes = writes(&active).len();
        assert!(
            active_writes <= 30,
            "after {c} commits the active timeline keeps {active_writes} writes:\n{out}"
        );
        assert_eq!(
            by_id(&lake_rows(&p.uri, env)),
            model,
            "lake after {c} commits"
        );
        if soak() || runs % 10 == 0 || c == commits {
            assert_eq!(
                by_id(&hudi_read(&p.uri, &["--sort", "id"], env)),
                model,
                "hudi-rs after {c} commits"
            );
        }
    }
    // Nothing lost: every write is on the active or the archived timeline, exactly once.
    history_writes(&p.uri, env, "at the end");
    let history = timeline(&p.uri, true, env);
    let data_action = if table_type == "mor" {
        "deltacommit"
    } else {
        "commit"
    };
    let data_writes = history.iter().filter(|(_, a, _)| a == data_action).count();
    assert_eq!(data_writes, all_writes, "every write is on the history");
    let archived = history.iter().filter(|(_, _, s)| s == "ARCHIVED").count();
    assert!(archived > 0, "something was archived");
    let files = p.storage.list_dir(".hoodie").await.expect("list").0.len();
    assert!(files < 150, "{files} files in .hoodie/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_commits_keep_a_bounded_active_timeline_local() {
    bounded_timeline(&Place::local(), "cow", 500, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mor_tables_archive_around_compactions_on_s3() {
    let commits = if soak() { 300 } else { 80 };
    bounded_timeline(&Place::s3("archive-mor"), "mor", commits, 12).await;
}

/// Without cleaning, every archived instant stays readable: time travel and incremental ranges that
/// start (or end) in the archive answer from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_and_changes_reach_archived_instants() {
    let p = Place::local();
    let env = p.env.as_slice();
    create(&p);
    for c in 1..=25 {
        write_rows(&p, "u.jsonl", &[(c, c)], "upsert");
    }
    let out = archive(&p.uri, 5, 10, env);
    assert!(out.contains("archived 20 instants"), "{out}");
    let all = history_writes(&p.uri, env, "after archiving");
    assert_eq!(all.len(), 25);
    assert_eq!(writes(&timeline(&p.uri, false, env)).len(), 5);
    // As of the 3rd (archived) write: ids 1..=3.
    let rows: Vec<Value> = lake_ok(
        &["read", &p.uri, "--as-of", &all[2], "--format", "json"],
        env,
    )
    .lines()
    .map(|l| serde_json::from_str(l).expect("json"))
    .collect();
    assert_eq!(by_id(&rows), (1..=3).map(|i| (i, i)).collect());
    // Changes in (write 3, write 12]: ids 4..=12, from an archived begin to an archived end; and
    // from an archived begin to now.
    for (end, ids) in [(Some(&all[11]), 4..=12), (None, 4..=25)] {
        let q = match end {
            Some(e) => format!(
                "SELECT id, v FROM lake_incremental('{}', '{}', '{e}') ORDER BY id",
                p.uri, all[2]
            ),
            None => format!(
                "SELECT id, v FROM lake_incremental('{}', '{}') ORDER BY id",
                p.uri, all[2]
            ),
        };
        let text = lake_ok(&["sql", "--format", "nd-json", "-c", &q], env);
        let got: Vec<Value> = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(by_id(&got), ids.map(|i| (i, i)).collect(), "{q}");
    }
    // Before the first write: an error that says where the table begins.
    let out = lake_env(&["read", &p.uri, "--as-of", "20200101000000000"], env);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the table's first commit is {} (archived)",
            all[0]
        )),
        "{err}"
    );
}

/// SIGKILL at random points of `lake archive` on S3: after each kill both readers see the complete
/// table, and the active plus archived timelines still hold every write exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archival_killed_at_random_points_leaves_a_readable_table() {
    let p = Place::s3("archive-kill");
    let env = p.env.as_slice();
    create(&p);
    let rounds = if soak() { 24 } else { 6 };
    let mut rng = Rng::new(0x5eed_a4c1);
    let mut next = 1i64;
    let mut killed_midway = 0;
    for round in 0..rounds {
        for _ in 0..12 {
            write_rows(&p, "u.jsonl", &[(next, next)], "upsert");
            next += 1;
        }
        let delay = Duration::from_millis(10 + rng.below(120));
        let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args([
                "archive",
                &p.uri,
                "--keep-min-commits",
                "3",
                "--keep-max-commits",
                "5",
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn lake archive");
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        let expected: BTreeMap<i64, i64> = (1..next).map(|i| (i, i)).collect();
        assert_eq!(
            by_id(&lake_rows(&p.uri, env)),
            expected,
            "lake, round {round}"
        );
        assert_eq!(
            by_id(&hudi_read(&p.uri, &["--sort", "id"], env)),
            expected,
            "hudi-rs, round {round}"
        );
        let all = history_writes(&p.uri, env, &format!("round {round}"));
        assert_eq!(all.len() as i64, next - 1, "round {round}: no write lost");
        let active = writes(&timeline(&p.uri, false, env)).len();
        if !status.success() && active < (next - 1) as usize && active > 3 {
            killed_midway += 1;
        }
        // The next archival finishes what the killed one left.
        archive(&p.uri, 3, 5, env);
        assert_eq!(writes(&timeline(&p.uri, false, env)).len(), 3);
        assert_eq!(writes(&timeline(&p.uri, true, env)).len() as i64, next - 1);
    }
    eprintln!(
        "{killed_midway} of {rounds} kills landed between the archive write and the last delete"
    );
}
