//! `lake clean` and `lake rollback` through the binary, on a local folder and on S3.

use bytes::Bytes;

use crate::kit::{Place, hudi_read, hudi_read_as_of, lake_env, lake_ok};

fn instants(timeline: &str, action: &str) -> Vec<String> {
    timeline
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(action) && l.contains("COMPLETED"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

async fn run(p: &Place) {
    let (uri, storage, env, dir) = (
        p.uri.as_str(),
        p.storage.clone(),
        p.env.as_slice(),
        p.dir.path(),
    );
    lake_ok(
        &[
            "create",
            uri,
            "--key",
            "id",
            "--ordering",
            "v",
            "--buckets",
            "2",
        ],
        env,
    );
    for v in 1..=5 {
        let f = dir.join(format!("{v}.jsonl"));
        let text: String = (0..100)
            .map(|id| format!("{{\"id\":{id},\"v\":{v}}}\n"))
            .collect();
        std::fs::write(&f, text).expect("write");
        lake_ok(&["write", uri, "--input", f.to_str().expect("utf8")], env);
    }
    let commits = instants(&lake_ok(&["timeline", uri], env), "commit");
    assert_eq!(commits.len(), 5);

    let out = lake_ok(&["clean", uri, "--retain-commits", "2"], env);
    // Two file groups; versions 1 and 2 of each go, version 3 serves snapshots as of commit 4.
    assert!(
        out.contains(": 4 files")
            && out.contains(&format!("earliest retained write {}", commits[3])),
        "{out}"
    );
    let timeline = lake_ok(&["timeline", uri], env);
    assert_eq!(instants(&timeline, "clean").len(), 1, "{timeline}");
    let clean = &instants(&timeline, "clean")[0];
    for suffix in ["clean.requested", "clean.inflight", "clean"] {
        assert!(
            storage
                .exists(&format!(".hoodie/{clean}.{suffix}"))
                .await
                .expect("exists"),
            "{suffix}"
        );
    }
    let parquet: Vec<String> = storage
        .list_recursive("")
        .await
        .expect("list")
        .iter()
        .map(|m| storage.relative(&m.location))
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    assert_eq!(parquet.len(), 6, "{parquet:?}");

    let rows = hudi_read(uri, &["--sort", "id"], env);
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|r| r["v"] == 5));
    for (at, v) in [(&commits[3], 4), (&commits[4], 5)] {
        let old = hudi_read_as_of(uri, at, "id", env);
        assert_eq!(old.len(), 100, "as of {at}");
        assert!(old.iter().all(|r| r["v"] == v), "as of {at}");
        let ours = lake_ok(&["read", uri, "--as-of", at, "--format", "json"], env);
        assert_eq!(
            ours.lines()
                .filter(|l| l.contains(&format!("\"v\":{v}")))
                .count(),
            100
        );
    }
    assert!(lake_ok(&["clean", uri, "--retain-commits", "2"], env).contains("nothing to clean"));

    // Rollback: a failed write left by a crashed writer (instant files, a marker, a data file).
    let failed = "29990101000000000";
    storage
        .put(&format!(".hoodie/{failed}.commit.requested"), Bytes::new())
        .await
        .expect("put");
    storage
        .put(&format!(".hoodie/{failed}.inflight"), Bytes::new())
        .await
        .expect("put");
    let data = format!("00000000-0000-0000-0000-000000000000-0_0-0-0_{failed}.parquet");
    storage
        .put(&data, Bytes::from_static(b"partial"))
        .await
        .expect("put");
    storage
        .put(
            &format!(".hoodie/.temp/{failed}/{data}.marker.CREATE"),
            Bytes::new(),
        )
        .await
        .expect("put");
    let refused = lake_env(&["rollback", uri, "--instant", &commits[4]], env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only failed (pending)"));
    let out = lake_ok(&["rollback", uri, "--instant", failed], env);
    assert!(out.contains(&format!("rolled back {failed}")), "{out}");
    assert!(
        !storage.exists(&data).await.expect("exists"),
        "the failed write's file is gone"
    );
    let timeline = lake_ok(&["timeline", uri], env);
    assert!(
        !timeline.lines().any(|l| l.starts_with(failed)),
        "{timeline}"
    );
    assert_eq!(instants(&timeline, "rollback").len(), 1, "{timeline}");
    assert!(
        timeline.contains(&format!("rolled back {failed}; 1 files deleted")),
        "the rollback's details name its target: {timeline}"
    );
    assert!(lake_ok(&["rollback", uri], env).contains("no failed writes"));
    assert_eq!(hudi_read(uri, &[], env).len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_and_rollback_local() {
    run(&Place::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_and_rollback_on_s3() {
    run(&Place::s3("services")).await;
}
