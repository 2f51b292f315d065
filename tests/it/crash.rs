//! Killing `lake write` (SIGKILL) at arbitrary moments leaves the table readable at its last
//! completed instant; once the killed writer's heartbeat has expired, the next write rolls the
//! leftovers back (or publishes a commit the killed writer had already decided). Copy-on-write and merge-on-read
//! tables, on a local folder and on S3; the local copy-on-write table writes Hudi CDC logs, which
//! must go with their failed writes too.

use std::process::{Command, Stdio};
use std::time::Duration;

use lake_table::timeline::Storage;

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, lake_ok};

async fn inflight_files(storage: &Storage) -> usize {
    let (files, _) = storage.list_dir(".hoodie").await.expect("list .hoodie");
    files
        .iter()
        .filter(|m| {
            m.location
                .filename()
                .is_some_and(|n| n.ends_with(".inflight"))
        })
        .count()
}

async fn run(p: &Place, table_type: &str, cdc: bool) {
    // Short heartbeats: a killed writer counts as dead 0.6 s after its last beat, so the next write
    // rolls it back (a live writer is never rolled back).
    let mut env = p.env.clone();
    env.push(("LAKE_HEARTBEAT_INTERVAL_MS".into(), "100".into()));
    let (uri, storage, env, dir) = (
        p.uri.as_str(),
        p.storage.clone(),
        env.as_slice(),
        p.dir.path(),
    );
    let expire = || std::thread::sleep(Duration::from_millis(700));
    let mut create = vec![
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
        "4",
    ];
    if cdc {
        create.extend(["--cdc", "data_before_after"]);
    }
    lake_ok(&create, env);
    let mor = table_type == "mor";
    let keys = if mor { 20_000 } else { 100_000 };
    let batch = |v: u64| {
        let f = dir.join(format!("b{v}.jsonl"));
        let mut text = String::with_capacity(keys * 40);
        for id in 0..keys {
            text.push_str(&format!("{{\"id\":{id},\"p\":{},\"v\":{v}}}\n", id % 3));
        }
        std::fs::write(&f, text).expect("write");
        f
    };
    let committed_v = |rows: &[serde_json::Value]| -> Option<i64> {
        let first = rows.first()?["v"].as_i64();
        assert!(
            rows.iter().all(|r| r["v"].as_i64() == first),
            "a write is half visible"
        );
        assert_eq!(rows.len(), keys, "rows lost or duplicated");
        first
    };
    // Calibrate: one uninterrupted write tells how long a write takes here.
    let started = std::time::Instant::now();
    lake_ok(
        &["write", uri, "--input", batch(0).to_str().expect("utf8")],
        env,
    );
    let full = started.elapsed().as_millis() as u64;
    let mut rng = Rng::new(42);
    let mut last_committed: Option<i64> = Some(0);
    let mut killed_inflight = 0;
    for v in 1..=8u64 {
        let f = batch(v);
        expire();
        let before = inflight_files(&storage).await;
        let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(["write", uri, "--input", f.to_str().expect("utf8")])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Wait until the write has published its INFLIGHT instant, then kill it at a random moment
        // within a quarter of a whole write: before, during or after its data files and commit.
        let waited = std::time::Instant::now();
        while inflight_files(&storage).await == before && waited.elapsed() < Duration::from_secs(60)
        {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(full / 4 + 1))).await;
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        let rows = hudi_read(uri, &[], env);
        let now = committed_v(&rows);
        if out.status.success() {
            assert_eq!(now, Some(v as i64), "a completed write must be visible");
        } else {
            // The killed write, or an earlier killed one that had decided its commit and that
            // this write published (rolled forward) before it was killed.
            assert!(
                now >= last_committed && now <= Some(v as i64),
                "state {now:?} after kill of write {v} (last seen {last_committed:?})"
            );
        }
        let timeline = lake_ok(&["timeline", uri], env);
        if timeline
            .lines()
            .any(|l| l.contains("INFLIGHT") || l.contains("REQUESTED"))
        {
            killed_inflight += 1;
        }
        last_committed = now;
    }
    // A final write rolls back whatever the last kill left and commits.
    expire();
    let out = lake_ok(
        &["write", uri, "--input", batch(100).to_str().expect("utf8")],
        env,
    );
    assert!(!out.contains("error"), "{out}");
    assert_eq!(committed_v(&hudi_read(uri, &[], env)), Some(100));
    let timeline = lake_ok(&["timeline", uri], env);
    assert!(
        !timeline.contains("INFLIGHT") && !timeline.contains("REQUESTED"),
        "{timeline}"
    );
    assert!(
        killed_inflight > 0,
        "no kill landed inside a write; the test proved nothing"
    );
    let rollbacks = timeline
        .lines()
        .filter(|l| l.contains(" rollback ") && l.contains("COMPLETED"))
        .count();
    assert!(
        rollbacks > 0,
        "failed instants were left but never rolled back:\n{timeline}"
    );
    // Only the files of completed commits remain.
    let files: Vec<String> = storage
        .list_recursive("")
        .await
        .expect("list")
        .iter()
        .map(|m| storage.relative(&m.location))
        .collect();
    if mor {
        // Every completed deltacommit wrote one log file per file group (3 partitions x 4 buckets).
        let deltacommits = timeline
            .lines()
            .filter(|l| l.contains(" deltacommit ") && l.contains("COMPLETED"))
            .count();
        // (A local store may also leave the staging file of an upload a kill interrupted; it is no
        // log file and no reader lists it.)
        let logs = files
            .iter()
            .filter(|p| {
                let (part, name) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
                lake_table::layout::LogFile::parse(part, name, 0).is_some()
            })
            .count();
        assert_eq!(logs, deltacommits * 12, "log files of failed writes remain");
    } else {
        let leftovers: Vec<&String> = files
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .filter(|p| {
                let instant = p
                    .rsplit('_')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".parquet");
                !timeline.contains(&format!("{instant}  commit         COMPLETED"))
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "files of failed writes remain: {leftovers:?}"
        );
        // CDC logs: exactly those of completed commits that rewrote base files (all but the first).
        let cdc_of = |p: &String| -> Option<String> {
            let name = p.rsplit('/').next()?.strip_suffix(".cdc")?;
            let head = name.split(".log.").next()?;
            Some(head.rsplit('_').next()?.to_owned())
        };
        let logs: Vec<String> = files.iter().filter_map(cdc_of).collect();
        if cdc {
            let completed: Vec<&str> = timeline
                .lines()
                .filter(|l| l.contains(" commit ") && l.contains("COMPLETED"))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            for l in &logs {
                assert!(
                    completed.contains(&l.as_str()),
                    "CDC log of a failed write {l}"
                );
            }
            for c in &completed[1..] {
                // 3 partitions x 4 buckets, each rewritten.
                assert_eq!(
                    logs.iter().filter(|l| l == c).count(),
                    12,
                    "CDC logs of {c}"
                );
            }
        } else {
            assert!(logs.is_empty(), "CDC logs without CDC: {logs:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writes_leave_the_last_completed_state_and_are_rolled_back_local() {
    run(&Place::local(), "cow", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mor_writes_leave_the_last_completed_state_and_are_rolled_back_local() {
    run(&Place::local(), "mor", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mor_writes_leave_the_last_completed_state_and_are_rolled_back_on_s3() {
    run(&Place::s3("crashmor"), "mor", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writes_leave_the_last_completed_state_and_are_rolled_back_on_s3() {
    run(&Place::s3("crash"), "cow", false).await;
}
