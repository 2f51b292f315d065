//! The change feed (`lake changes`, `lake_changes`): seeded workloads of upserts with duplicates and
//! out-of-order versions, deletes, re-inserts and partition moves, over many commits, on
//! copy-on-write and merge-on-read tables, with compactions between writes and a clean at the end.
//! Applying the feed of any range (a, b] to the table as of `a` must give the table as of `b`, row
//! for row — every delete and update naming the exact before image — and the netted feed must do the
//! same with one row per record; the replayed state at the end equals hudi-rs's snapshot.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cow::Rng;
use crate::kit::{Place, hudi_read, lake_env, lake_ok};

const COUNTRIES: [&str; 3] = ["de", "fr", "nl"];

/// A table state: (partition path, record key) → the record's data columns.
type State = BTreeMap<(String, String), Value>;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The table as of an instant (`None`: before the first write), keyed by its meta columns.
fn state(p: &Place, at: Option<&str>) -> State {
    let Some(at) = at else {
        return State::new();
    };
    let out = lake_ok(
        &["read", &p.uri, "--as-of", at, "--meta", "--format", "json"],
        &p.env,
    );
    json_lines(&out)
        .into_iter()
        .map(|mut r| {
            let obj = r.as_object_mut().expect("row object");
            let part = obj["_hoodie_partition_path"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let key = obj["_hoodie_record_key"].as_str().unwrap_or("").to_owned();
            obj.retain(|k, _| !k.starts_with("_hoodie_"));
            ((part, key), r)
        })
        .collect()
}

fn feed(p: &Place, since: &str, until: &str, net: bool) -> Vec<Value> {
    let mut args = vec!["changes", &p.uri, "--since", since, "--until", until];
    if net {
        args.push("--net");
    }
    json_lines(&lake_ok(&args, &p.env))
}

/// The feed inferred from file slices, ignoring CDC log files.
fn inferred_feed(p: &Place, since: &str, until: &str) -> Vec<Value> {
    let args = [
        "changes", &p.uri, "--since", since, "--until", until, "--infer",
    ];
    json_lines(&lake_ok(&args, &p.env))
}

/// The table's CDC log files (root-relative paths) and its base files.
fn cdc_and_base_files(p: &Place) -> (Vec<String>, Vec<String>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let all = rt
        .block_on(p.storage.list_recursive(""))
        .expect("list")
        .into_iter()
        .map(|m| p.storage.relative(&m.location))
        .filter(|f| !f.starts_with(".hoodie"));
    let (mut cdc, mut base) = (Vec::new(), Vec::new());
    for f in all {
        if f.ends_with(".cdc") {
            cdc.push(f);
        } else if f.ends_with(".parquet") {
            base.push(f);
        }
    }
    (cdc, base)
}

fn image(row: &Value, side: &str) -> Option<Value> {
    row.get(side).filter(|v| !v.is_null()).cloned()
}

/// Applies a feed to a state, checking each row against it: an insert's key is absent, an update's
/// and a delete's before image is the current record. Returns the rows per op.
fn apply(state: &mut State, rows: &[Value], what: &str) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for r in rows {
        let op = r["op"].as_str().expect("op").to_owned();
        let key = (
            r["partition_path"].as_str().expect("partition").to_owned(),
            r["record_key"].as_str().expect("key").to_owned(),
        );
        let (before, after) = (image(r, "before"), image(r, "after"));
        match op.as_str() {
            "i" => {
                assert!(before.is_none(), "{what}: insert with a before image: {r}");
                assert!(
                    !state.contains_key(&key),
                    "{what}: insert of a present key: {r}"
                );
                state.insert(key, after.expect("insert has an after image"));
            }
            "u" => {
                assert_eq!(
                    state.get(&key),
                    before.as_ref(),
                    "{what}: update's before: {r}"
                );
                state.insert(key, after.expect("update has an after image"));
            }
            "d" => {
                assert!(after.is_none(), "{what}: delete with an after image: {r}");
                assert_eq!(state.remove(&key).as_ref(), before.as_ref(), "{what}: {r}");
            }
            other => panic!("{what}: unknown op {other}: {r}"),
        }
        *ops.entry(op).or_insert(0) += 1;
    }
    ops
}

/// The completed instants of the timeline, oldest first, with their actions.
fn instants(p: &Place) -> Vec<(String, String)> {
    lake_ok(&["timeline", &p.uri], &p.env)
        .lines()
        .filter(|l| l.contains("COMPLETED"))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

fn sql_counts(p: &Place, since: &str, until: &str) -> BTreeMap<String, usize> {
    let out = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "csv",
            "-c",
            &format!(
                "SELECT op, count(*) AS n FROM lake_changes('{}', '{since}', '{until}') GROUP BY op",
                p.uri
            ),
        ],
        &p.env,
    );
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let (op, n) = l.split_once(',')?;
            Some((op.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Creates the test table keyed by `id`, ordered by `v`, with `extra` options.
fn create(p: &Place, extra: &[&str]) {
    let mut args = vec!["create", p.uri.as_str(), "--key", "id", "--ordering", "v"];
    args.extend_from_slice(extra);
    lake_ok(&args, &p.env);
}

/// `cdc`: the table's CDC logging mode (`lake create --cdc`), if any.
fn workload(p: &Place, table_type: &str, index: &str, seed: u64, cdc: Option<&str>) {
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    let mut options = vec![
        "--type",
        table_type,
        "--partition-by",
        "country",
        "--index",
        index,
    ];
    if let Some(mode) = cdc {
        options.extend(["--cdc", mode]);
    }
    create(p, &options);
    let mut rng = Rng::new(seed);
    // The record keys each write named.
    let mut written: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for step in 0..10 {
        let delete = step > 1 && rng.below(3) == 0;
        let n = if delete { 4 } else { 1 + rng.below(20) };
        let ids: Vec<u64> = (0..n).map(|_| rng.below(12)).collect();
        written.push(ids.iter().map(u64::to_string).collect());
        let lines: String = ids
            .iter()
            .map(|id| {
                json!({
                    "id": id,
                    "country": COUNTRIES[rng.below(3) as usize],
                    "v": rng.below(30),
                    "score": rng.below(1000),
                })
                .to_string()
                    + "\n"
            })
            .collect();
        let f = p.dir.path().join(format!("step{step}.jsonl"));
        std::fs::write(&f, lines).expect("input");
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
        if table_type == "mor" && (step == 4 || step == 7) {
            lake_ok(
                &[
                    "compact",
                    uri,
                    "--max-delta-commits",
                    "1",
                    "--skip-clean",
                    "--skip-archive",
                ],
                env,
            );
        }
    }
    let timeline = instants(p);
    if table_type == "mor" {
        assert!(
            timeline.iter().any(|(_, a)| a == "commit"),
            "compactions ran: {timeline:?}"
        );
    }
    // Range bounds: before the first write, then every completed instant (compactions included).
    let mut bounds: Vec<Option<String>> = vec![None];
    bounds.extend(timeline.iter().map(|(t, _)| Some(t.clone())));
    let states: Vec<State> = bounds.iter().map(|b| state(p, b.as_deref())).collect();
    let name = |b: &Option<String>| b.clone().unwrap_or_else(|| "0".to_owned());
    let check = |a: usize, b: usize| {
        let what = format!(
            "seed {seed} {table_type}/{index} ({}, {}]",
            name(&bounds[a]),
            name(&bounds[b])
        );
        let rows = feed(p, &name(&bounds[a]), &name(&bounds[b]), false);
        let mut s = states[a].clone();
        let ops = apply(&mut s, &rows, &what);
        assert_eq!(s, states[b], "{what}: the feed replays to the end state");
        let net = feed(p, &name(&bounds[a]), &name(&bounds[b]), true);
        let mut s = states[a].clone();
        apply(&mut s, &net, &format!("{what} net"));
        assert_eq!(
            s, states[b],
            "{what}: the net feed replays to the end state"
        );
        let mut keys: Vec<(&Value, &Value)> = net
            .iter()
            .map(|r| (&r["partition_path"], &r["record_key"]))
            .collect();
        let n = keys.len();
        keys.sort_by_key(|k| (k.0.to_string(), k.1.to_string()));
        keys.dedup();
        assert_eq!(keys.len(), n, "{what}: one net row per record");
        ops
    };
    // Every single step: inserts and deletes are exactly the keys that appeared and disappeared, and
    // every row is of a key the write named.
    let mut writes = written.iter();
    for k in 1..bounds.len() {
        let compaction = timeline[k - 1].1 == "commit" && table_type == "mor";
        let named = if compaction { None } else { writes.next() };
        for r in feed(p, &name(&bounds[k - 1]), &name(&bounds[k]), false) {
            let key = r["record_key"].as_str().unwrap_or("");
            assert!(
                named.is_some_and(|n| n.contains(key)),
                "seed {seed} step {k}: a change of a key the write did not name: {r}"
            );
        }
        let ops = check(k - 1, k);
        let appeared = states[k]
            .keys()
            .filter(|x| !states[k - 1].contains_key(*x))
            .count();
        let gone = states[k - 1]
            .keys()
            .filter(|x| !states[k].contains_key(*x))
            .count();
        assert_eq!(ops.get("i").copied().unwrap_or(0), appeared, "step {k}");
        assert_eq!(ops.get("d").copied().unwrap_or(0), gone, "step {k}");
        if compaction {
            assert!(ops.is_empty(), "a compaction changes no record: {ops:?}");
        }
        if cdc.is_some() {
            // Read from CDC logs or inferred from file slices, the feed is the same, row for row.
            let (a, b) = (name(&bounds[k - 1]), name(&bounds[k]));
            assert_eq!(
                feed(p, &a, &b, false),
                inferred_feed(p, &a, &b),
                "seed {seed} step {k}: CDC logs and inference disagree"
            );
        }
    }
    if let (Some(mode), "cow") = (cdc, table_type) {
        let (logs, _) = cdc_and_base_files(p);
        assert!(!logs.is_empty(), "{mode}: rewrites wrote CDC logs");
        let out = lake_env(&["changes", uri, "--since", "0"], env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("CDC log files"), "{mode}: {err}");
        let out = lake_env(&["changes", uri, "--since", "0", "--infer"], env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("inferred from file slices;"), "{mode}: {err}");
    }
    // Random longer ranges, and through SQL the same counts as the CLI.
    for _ in 0..6 {
        let a = rng.below(bounds.len() as u64) as usize;
        let b = a + rng.below((bounds.len() - a) as u64) as usize;
        let ops = check(a, b);
        assert_eq!(sql_counts(p, &name(&bounds[a]), &name(&bounds[b])), ops);
    }
    // The whole history replays to what hudi-rs reads.
    let mut s = State::new();
    apply(
        &mut s,
        &feed(p, "0", &name(&bounds[bounds.len() - 1]), false),
        "all",
    );
    let mut replayed: Vec<Value> = s.into_values().collect();
    let mut theirs: Vec<Value> = hudi_read(uri, &["--sort", "id"], env)
        .into_iter()
        .map(|r| json!({"id": r["id"], "country": r["country"], "v": r["v"], "score": r["score"]}))
        .collect();
    let key = |r: &Value| (r["id"].as_i64(), r["country"].as_str().map(str::to_owned));
    replayed.sort_by_key(key);
    theirs.sort_by_key(key);
    assert_eq!(
        replayed, theirs,
        "seed {seed}: the replayed feed is hudi-rs's snapshot"
    );

    // After a clean, ranges that need removed file versions are refused, later ones still replay.
    let cdc_before_clean = cdc_and_base_files(p).0.len();
    lake_ok(&["clean", uri, "--retain-commits", "2"], env);
    if let (Some(mode), "cow") = (cdc, table_type) {
        // The cleaner takes each CDC log with its base file: every log left has its base file.
        let (logs, bases) = cdc_and_base_files(p);
        assert!(
            logs.len() < cdc_before_clean,
            "{mode}: the clean removed CDC logs"
        );
        for l in &logs {
            let (dir, name) = l.rsplit_once('/').unwrap_or(("", l));
            let stem = name.trim_start_matches('.');
            let (id, rest) = stem.split_once('_').expect("file id");
            let instant = rest.split_once(".log.").expect("log").0;
            let base = format!("{dir}/{id}_0-0-0_{instant}.parquet");
            assert!(bases.contains(&base), "{mode}: {l} outlived {base}");
        }
    }
    let out = lake_env(&["changes", uri, "--since", "0"], env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cleaned range is refused");
    assert!(err.contains("cleaner"), "{err}");
    let last = bounds.len() - 1;
    let mut s = states[last - 1].clone();
    let rows = feed(p, &name(&bounds[last - 1]), &name(&bounds[last]), false);
    apply(&mut s, &rows, "after clean");
    assert_eq!(s, states[last]);
}

#[test]
fn change_feed_replays_cow_global_local() {
    for seed in 0..2 {
        workload(&Place::local(), "cow", "global", seed, None);
    }
}

#[test]
fn change_feed_replays_mor_global_local() {
    for seed in 0..2 {
        workload(&Place::local(), "mor", "global", seed, None);
    }
}

#[test]
fn change_feed_replays_cow_simple_local() {
    workload(&Place::local(), "cow", "simple", 7, None);
}

/// Copy-on-write tables with Hudi CDC logs, in every logging mode: the feed read from the logs
/// equals the inferred one at every step, replays, matches hudi-rs, and the cleaner removes logs
/// with their slices. On S3 for the full images, locally for the modes that look images up.
#[test]
fn change_feed_from_cdc_logs_in_every_mode() {
    workload(
        &Place::s3("changes-cdc"),
        "cow",
        "global",
        3,
        Some("data_before_after"),
    );
    workload(&Place::local(), "cow", "simple", 4, Some("DATA_BEFORE"));
    workload(&Place::local(), "cow", "bucket", 5, Some("op_key_only"));
    // Merge-on-read deltacommits write no CDC logs: the feed is inferred, and exact.
    workload(
        &Place::local(),
        "mor",
        "bucket",
        6,
        Some("data_before_after"),
    );
}

#[test]
fn change_feed_replays_mor_bucket_on_s3() {
    workload(&Place::s3("changes"), "mor", "bucket", 11, None);
}

/// Ranges the feed cannot answer exactly are refused with a reason: writes moved to the archived
/// timeline, a restore inside the range; ranges after them still answer.
#[test]
fn change_feed_refuses_archived_and_restored_ranges() {
    let p = Place::local();
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    create(&p, &[]);
    let write = |i: u64| {
        let f = p.dir.path().join(format!("w{i}.jsonl"));
        std::fs::write(&f, json!({"id": i % 3, "v": i}).to_string() + "\n").expect("input");
        lake_ok(&["write", uri, "--input", f.to_str().expect("utf8")], env);
    };
    for i in 0..6 {
        write(i);
    }
    lake_ok(
        &[
            "archive",
            uri,
            "--keep-min-commits",
            "2",
            "--keep-max-commits",
            "3",
        ],
        env,
    );
    let active = instants(&p);
    assert!(active.len() < 6, "some writes were archived: {active:?}");
    let refused = |since: &str, until: Option<&str>, why: &str| {
        let mut args = vec!["changes", uri, "--since", since];
        if let Some(u) = until {
            args.extend(["--until", u]);
        }
        let out = lake_env(&args, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} is refused");
        assert!(err.contains(why), "{args:?}: {err}");
    };
    refused("0", None, "archived");
    // From the first active write on, the feed answers: one update per write.
    let first = active[0].0.clone();
    let rows = feed(&p, &first, &active[active.len() - 1].0, false);
    assert_eq!(rows.len(), active.len() - 1, "{rows:?}");
    assert!(rows.iter().all(|r| r["op"] == "u"), "{rows:?}");

    // A restore rolls the table back without a write: a range across it is refused.
    lake_ok(&["savepoint", "create", uri, "--instant", &first], env);
    write(10);
    lake_ok(&["restore", uri, "--to", &first], env);
    write(11);
    let now = instants(&p);
    let restore = now
        .iter()
        .find(|(_, a)| a == "restore")
        .map(|(t, _)| t.clone())
        .expect("a restore instant");
    refused(&first, None, "restore");
    let rows = feed(&p, &restore, &now[now.len() - 1].0, false);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["after"]["v"], 11, "{rows:?}");
}

/// A file group larger than one decoded batch (140k rows, one bucket): the changed rows found by the
/// key pass get exactly their own images — every image's `id` is its row's key, every update goes
/// from version 1 to 2 — on copy-on-write (row selection in the base file) and merge-on-read (the
/// slice merged for the changed keys); and the output formats for scripts parse.
fn large_group(table_type: &str) {
    let p = Place::local();
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    create(&p, &["--type", table_type, "--buckets", "1"]);
    let rows = 140_000u64;
    let write = |name: &str, lines: String, op: &str| {
        let f = p.dir.path().join(name);
        std::fs::write(&f, lines).expect("input");
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
    };
    let row = |id: u64, v: u64| {
        json!({"id": id, "v": v, "note": format!("n{id}-{v}")}).to_string() + "\n"
    };
    write(
        "load.jsonl",
        (0..rows).map(|i| row(i, 1)).collect(),
        "upsert",
    );
    if table_type == "mor" {
        lake_ok(
            &["compact", uri, "--max-delta-commits", "1", "--skip-clean"],
            env,
        );
    }
    let base = instants(&p)
        .last()
        .map(|(t, _)| t.clone())
        .expect("an instant");
    // Updates spread over the whole file (both decoded batches), deletes, new keys.
    let updated: Vec<u64> = (0..rows).step_by(97).collect();
    let deleted: Vec<u64> = (50..rows).step_by(1001).filter(|i| i % 97 != 0).collect();
    let inserted: Vec<u64> = (rows..rows + 300).collect();
    let mut lines: String = updated.iter().map(|&i| row(i, 2)).collect();
    lines.extend(inserted.iter().map(|&i| row(i, 2)));
    write("upsert.jsonl", lines, "upsert");
    write(
        "delete.jsonl",
        deleted.iter().map(|&i| row(i, 3)).collect(),
        "delete",
    );
    let feed_rows = feed(&p, &base, &instants(&p).last().expect("last").0, false);
    let count = |op: &str| feed_rows.iter().filter(|r| r["op"] == op).count();
    assert_eq!(
        (count("u"), count("d"), count("i")),
        (updated.len(), deleted.len(), inserted.len())
    );
    for r in &feed_rows {
        let key: u64 = r["record_key"]
            .as_str()
            .and_then(|k| k.parse().ok())
            .expect("key");
        for side in ["before", "after"] {
            if let Some(img) = image(r, side) {
                assert_eq!(img["id"], key, "{side} image of {r}");
                assert_eq!(img["note"], format!("n{key}-{}", img["v"]), "{r}");
            }
        }
        match r["op"].as_str() {
            Some("u") => {
                assert_eq!(
                    (r["before"]["v"].as_u64(), r["after"]["v"].as_u64()),
                    (Some(1), Some(2))
                );
            }
            Some("d") => assert_eq!(r["before"]["v"], 1, "{r}"),
            _ => assert!(key >= rows, "{r}"),
        }
    }
    // Scripts: a JSON array (`[]` when empty), CSV with flattened images, the resume point.
    let last = instants(&p).last().expect("last").0.clone();
    let json_of = |since: &str| -> Value {
        serde_json::from_str(&lake_ok(
            &["changes", uri, "--since", since, "--format", "json"],
            env,
        ))
        .expect("a JSON array")
    };
    assert_eq!(json_of(&last), json!([]));
    let prev = &instants(&p)[instants(&p).len() - 2].0;
    assert_eq!(json_of(prev).as_array().map(Vec::len), Some(deleted.len()));
    let out = lake_env(&["changes", uri, "--since", prev, "--format", "csv"], env);
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "op,ts_ms,record_key,partition_path,before.id,before.v,before.note,after.id,after.v,after.note"
        )
    );
    assert_eq!(lines.count(), deleted.len());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("resume with --since {last}")),
        "{err}"
    );
}

#[test]
fn change_feed_of_a_large_cow_group_maps_every_image() {
    large_group("cow");
}

#[test]
fn change_feed_of_a_large_mor_group_maps_every_image() {
    large_group("mor");
}

/// The resume point: never past a write still in flight (its instant precedes the writes after it on
/// table version 6), never past the last completed write when `--until` lies in the future.
#[test]
fn change_feed_resumes_before_writes_in_flight() {
    let p = Place::local();
    let (uri, env) = (p.uri.as_str(), p.env.as_slice());
    create(&p, &[]);
    for i in 0..2u64 {
        let f = p.dir.path().join(format!("w{i}.jsonl"));
        std::fs::write(&f, json!({"id": i, "v": i}).to_string() + "\n").expect("input");
        lake_ok(&["write", uri, "--input", f.to_str().expect("utf8")], env);
    }
    let writes: Vec<String> = instants(&p).into_iter().map(|(t, _)| t).collect();
    let resume = |args: &[&str]| {
        let out = lake_env(args, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let rows = json_lines(&String::from_utf8_lossy(&out.stdout)).len();
        (err.trim().rsplit(' ').next().unwrap_or("").to_owned(), rows)
    };
    assert_eq!(
        resume(&[
            "changes",
            uri,
            "--since",
            "0",
            "--until",
            "29991231000000000"
        ]),
        (writes[1].clone(), 2)
    );
    // A write that started between the two and has not completed.
    let between: u64 = writes[0].parse::<u64>().expect("instant") + 1;
    std::fs::write(
        p.dir
            .path()
            .join(format!("t/.hoodie/{between}.commit.requested")),
        b"",
    )
    .expect("pending instant");
    assert_eq!(
        resume(&["changes", uri, "--since", "0"]),
        (writes[0].clone(), 1)
    );
    assert_eq!(
        resume(&["changes", uri, "--since", &writes[1]]),
        (writes[1].clone(), 0)
    );
}
