//! Killing `lake write` (SIGKILL) at arbitrary moments leaves the table readable at its last
//! completed instant; the next write rolls the leftovers back.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cow::Rng;
use crate::kit::{hudi_read, lake_ok};

#[test]
fn killed_writes_leave_the_last_completed_state_and_are_rolled_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    lake_ok(
        &[
            "create",
            &uri,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "p",
            "--buckets",
            "4",
        ],
        &[],
    );
    let keys = 100_000;
    let batch = |v: u64| {
        let f = dir.path().join(format!("b{v}.jsonl"));
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
    // Calibrate: one uninterrupted write tells how long a write takes on this machine.
    let started = std::time::Instant::now();
    lake_ok(
        &["write", &uri, "--input", batch(0).to_str().expect("utf8")],
        &[],
    );
    let full = started.elapsed().as_millis() as u64;
    let mut rng = Rng::new(42);
    let mut last_committed: Option<i64> = Some(0);
    let mut killed_inflight = 0;
    for v in 1..=8u64 {
        let f = batch(v);
        let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
            .args(["write", &uri, "--input", f.to_str().expect("utf8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Wait until the write has published its INFLIGHT instant, then kill it at a random moment
        // within the time a whole write takes: before, during or after its data files and commit.
        let hoodie = dir.path().join("t/.hoodie");
        let seen = |d: &std::path::Path| -> usize {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".inflight"))
                .count()
        };
        let before = seen(&hoodie);
        let waited = std::time::Instant::now();
        while seen(&hoodie) == before && waited.elapsed() < Duration::from_secs(60) {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.below(full / 4 + 1)));
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        let rows = hudi_read(&uri, &[], &[]);
        let now = committed_v(&rows);
        if out.status.success() {
            assert_eq!(now, Some(v as i64), "a completed write must be visible");
        } else {
            assert!(
                now == last_committed || now == Some(v as i64),
                "state {now:?} after kill of write {v}"
            );
        }
        let timeline = lake_ok(&["timeline", &uri], &[]);
        if timeline
            .lines()
            .any(|l| l.contains("INFLIGHT") || l.contains("REQUESTED"))
        {
            killed_inflight += 1;
        }
        last_committed = now;
    }
    // A final write rolls back whatever the last kill left and commits.
    let f = batch(100);
    let out = lake_ok(&["write", &uri, "--input", f.to_str().expect("utf8")], &[]);
    assert!(!out.contains("error"), "{out}");
    let rows = hudi_read(&uri, &[], &[]);
    assert_eq!(committed_v(&rows), Some(100));
    let timeline = lake_ok(&["timeline", &uri], &[]);
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
    let leftovers: Vec<_> = walk(&dir.path().join("t"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let instant = name
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
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
