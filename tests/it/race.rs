//! Racing writers: several `lake write` processes on one table at once, with random start delays,
//! on a local folder and on S3, copy-on-write and merge-on-read. Every process either commits (its
//! rows are all there) or fails with the typed write conflict (none of its rows are there); no row
//! is lost or doubled, and a writer that starts beside a running one never rolls it back. Each test
//! races on three fresh tables, so that writers also race for a new table's first file groups.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, lake_ok, lake_rows};

fn ids(rows: &[serde_json::Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    ids.sort_unstable();
    ids
}

/// Races writers on three fresh tables in turn (`trials` rounds in all): a new table's first round
/// races writers that each create the table's first file groups, which read an empty timeline.
async fn run(p: &Place, table_type: &str, trials: u64) {
    let trials = if std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1") {
        trials * 10
    } else {
        trials
    };
    const TABLES: u64 = 3;
    for t in 0..TABLES {
        let uri = format!("{}{t}", p.uri);
        run_table(p, &uri, table_type, trials.div_ceil(TABLES), 7 + t).await;
    }
}

async fn run_table(p: &Place, uri: &str, table_type: &str, trials: u64, seed: u64) {
    let (env, dir) = (p.env.as_slice(), p.dir.path());
    lake_ok(
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
            "p",
            "--buckets",
            "2",
        ],
        env,
    );
    let mut rng = Rng::new(seed);
    let mut expected: BTreeSet<i64> = BTreeSet::new();
    let (mut committed, mut conflicts) = (0, 0);
    let (mut rolled, mut done) = (BTreeSet::<String>::new(), BTreeSet::<String>::new());
    for trial in 0..trials {
        // A new table's first round: three writers, the first a long one that reads the empty
        // timeline and lists the partitions after the others have written their first groups.
        let writers = if trial == 0 { 3 } else { 2 + rng.below(2) };
        let mut children = Vec::new();
        // Sometimes the first writer is a long one, so the others start while it runs.
        let long = trial == 0 || rng.below(3) == 0;
        for w in 0..writers {
            let first = (trial * 10 + w) as i64 * 100_000;
            let n = if long && w == 0 { 30_000 } else { 100 };
            let f = dir.join(format!("t{trial}w{w}.jsonl"));
            let text: String = (first..first + n)
                .map(|id| {
                    format!(
                        "{{\"id\":{id},\"p\":\"{}\",\"v\":1}}\n",
                        ["x", "y"][(id % 2) as usize]
                    )
                })
                .collect();
            std::fs::write(&f, text).expect("input");
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            let child = Command::new(env!("CARGO_BIN_EXE_lake"))
                .args(["write", uri, "--input", f.to_str().expect("utf8")])
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            children.push((first, n, child));
        }
        let mut log = Vec::new();
        for (first, n, child) in children {
            let out = child.wait_with_output().expect("wait");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            log.push(format!("writer {first}: {} {stdout} {stderr}", out.status));
            // A writer may roll back an instant another writer abandoned (it failed, and its own
            // rollback did not finish); never one that committed.
            rolled.extend(
                stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("rolled back failed instant "))
                    .map(str::to_owned),
            );
            if out.status.success() {
                committed += 1;
                done.extend(
                    stdout
                        .lines()
                        .filter_map(|l| l.strip_prefix("committed "))
                        .filter_map(|l| l.split(':').next())
                        .map(str::to_owned),
                );
                expected.extend(first..first + n);
            } else {
                assert!(
                    stderr.contains("write conflict"),
                    "untyped failure: {stderr}"
                );
                conflicts += 1;
            }
        }
        let got = ids(&lake_rows(uri, env));
        let want: Vec<i64> = expected.iter().copied().collect();
        if got != want {
            let got_set: BTreeSet<i64> = got.iter().copied().collect();
            let missing: Vec<_> = expected.difference(&got_set).collect();
            let extra: Vec<_> = got_set.difference(&expected).collect();
            let (missing, extra) = (
                &missing[..missing.len().min(20)],
                &extra[..extra.len().min(20)],
            );
            panic!(
                "trial {trial}: {} rows, {} expected; missing {missing:?}…; unexpected {extra:?}…\n{}\n{}",
                got.len(),
                want.len(),
                log.join("\n"),
                lake_ok(&["timeline", uri], env)
            );
        }
    }
    assert!(
        rolled.is_disjoint(&done),
        "a committed instant was rolled back: {:?}",
        rolled.intersection(&done).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&hudi_read(uri, &[], env)),
        expected.iter().copied().collect::<Vec<_>>()
    );
    assert!(committed > 0, "{conflicts} conflicts and no commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cow_writers_lose_nothing_local() {
    run(&Place::local(), "cow", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_mor_writers_lose_nothing_local() {
    run(&Place::local(), "mor", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cow_writers_lose_nothing_on_s3() {
    run(&Place::s3("race"), "cow", 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_mor_writers_lose_nothing_on_s3() {
    run(&Place::s3("racemor"), "mor", 8).await;
}
