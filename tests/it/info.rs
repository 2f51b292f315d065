//! `lake info` and `lake_timeline`: the figures they report follow the table — file groups and
//! versions before and after a clean, CDC logs, small files, a pending compaction, the last commit
//! with its age, and one timeline row per instant with its write stats.

use serde_json::Value;

use crate::kit::{Place, lake_ok};

fn info(p: &Place) -> Value {
    serde_json::from_str(&lake_ok(&["info", &p.uri, "--format", "json"], &p.env)).expect("JSON")
}

fn write(p: &Place, name: &str, lines: &str) {
    let f = p.dir.path().join(name);
    std::fs::write(&f, lines).expect("input");
    lake_ok(
        &["write", &p.uri, "--input", f.to_str().expect("utf8")],
        &p.env,
    );
}

fn rows(ids: std::ops::Range<u32>, v: u32) -> String {
    ids.map(|id| format!("{{\"id\":{id},\"p\":\"p{}\",\"v\":{v}}}\n", id % 2))
        .collect()
}

/// The timeline as SQL sees it: (action, state, inserts, updates, deletes) per instant.
fn sql_timeline(p: &Place) -> Vec<String> {
    let q = format!(
        "SELECT action, state, inserts, updates, deletes, files FROM lake_timeline('{}') ORDER BY instant",
        p.uri
    );
    lake_ok(&["sql", "-q", "--format", "csv", "-c", &q], &p.env)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn info_and_timeline_follow_the_table() {
    let p = Place::local();
    let env = &p.env;
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
            "--buckets",
            "2",
            "--cdc",
            "op_key_only",
        ],
        env,
    );
    let empty = info(&p);
    assert_eq!(empty["file_groups"], 0);
    assert_eq!(empty["last_commit"], Value::Null);
    assert_eq!(empty["cdc"], "OP_KEY_ONLY");
    write(&p, "a.jsonl", &rows(0..100, 1));
    write(&p, "b.jsonl", &rows(50..150, 2));
    let i = info(&p);
    // 2 partitions x 2 buckets; the second write rewrote every group (with a CDC log each).
    assert_eq!(i["file_groups"], 4, "{i}");
    assert_eq!(i["partitions"], 2);
    assert_eq!(i["latest"]["base_files"], 4);
    assert_eq!(i["latest"]["small_base_files"], 4, "tiny files are small");
    assert_eq!(i["latest"]["cdc_files"], 4);
    assert_eq!(i["all_versions"]["base_files"], 8);
    assert_eq!(i["completed_writes"], 2);
    assert_eq!(i["index"], "bucket");
    assert_eq!(i["buckets"], 2);
    assert!(
        i["pending_compactions"]
            .as_array()
            .expect("list")
            .is_empty()
    );
    let last = &i["last_commit"];
    assert_eq!(last["action"], "commit");
    assert!(last["age_seconds"].as_i64().expect("age") < 600, "{last}");
    let timeline = lake_ok(&["timeline", &p.uri], env);
    let newest = timeline
        .lines()
        .rfind(|l| l.contains("COMPLETED"))
        .and_then(|l| l.split_whitespace().next())
        .expect("instant");
    assert_eq!(last["instant"], newest);
    // The text form says the same.
    let text = lake_ok(&["info", &p.uri], env);
    assert!(
        text.contains("file groups:         4 in 2 partitions"),
        "{text}"
    );
    assert!(
        text.contains(&format!("last commit:         {newest} commit")),
        "{text}"
    );
    // One row per instant; the second commit updated 50 keys and inserted 50 in 4 files.
    assert_eq!(
        sql_timeline(&p),
        ["commit,COMPLETED,100,0,0,4", "commit,COMPLETED,50,50,0,4"]
    );
    // A clean removes the old versions (and their CDC logs): files follow.
    lake_ok(&["clean", &p.uri, "--retain-versions", "1"], env);
    let i = info(&p);
    assert_eq!(i["all_versions"]["base_files"], 4, "{i}");
    assert_eq!(i["all_versions"]["cdc_files"], 4);
    assert_eq!(i["completed_writes"], 2);
    assert_eq!(sql_timeline(&p).len(), 3, "the clean is an instant too");
}

#[test]
fn info_shows_pending_compactions_of_merge_on_read_tables() {
    let p = Place::local();
    let env = &p.env;
    lake_ok(
        &[
            "create",
            &p.uri,
            "--type",
            "mor",
            "--key",
            "id",
            "--ordering",
            "v",
            "--buckets",
            "1",
        ],
        env,
    );
    write(&p, "a.jsonl", &rows(0..10, 1));
    write(&p, "b.jsonl", &rows(0..10, 2));
    let i = info(&p);
    assert_eq!(i["table_type"], "MERGE_ON_READ");
    // One file group; each deltacommit wrote a log file.
    assert_eq!(i["file_groups"], 1, "{i}");
    assert_eq!(i["latest"]["log_files"], 2, "{i}");
    assert_eq!(i["latest"]["base_files"], 0);
    lake_ok(
        &[
            "compact",
            &p.uri,
            "--schedule-only",
            "--max-delta-commits",
            "1",
        ],
        env,
    );
    let i = info(&p);
    let pending = i["pending_compactions"].as_array().expect("list");
    assert_eq!(pending.len(), 1, "{i}");
    let rows = sql_timeline(&p);
    assert_eq!(
        rows.last().map(String::as_str),
        Some("compaction,REQUESTED,,,,"),
        "{rows:?}"
    );
}
