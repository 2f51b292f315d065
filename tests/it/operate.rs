//! Operating `lake ingest` and `lake compact`: the metrics and health endpoint scraped during a real
//! ingest, a broker killed and restarted mid-run, an unreachable broker named at start, a checkpoint
//! beyond the end of a recreated topic, dead-letter-only batches, and `lake compact` over several
//! tables of which one fails.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lake_ingest::checkpoint::Checkpoint;
use lake_table::timeline::CHECKPOINT_KEY;
use lake_table::{Table, WriteOptions};

use crate::ingest::{
    Kv, create_topic, create_topic_at, orders_stream, produce, produce_at, project,
};
use crate::kit::{
    OwnBroker, Place, free_port, http_get, hudi_read, kafka, lake_env, lake_ok, lake_rows, s3,
    unique,
};

/// An ingest config for one topic into `p`'s table.
pub(crate) fn config(p: &Place, brokers: &str, topic: &str, commit: &str, extra: &str) -> String {
    let text = format!(
        r#"[source]
brokers = "{brokers}"
group_id = "{group}"

[commit]
{commit}

[progress]
interval_ms = 500

[[tables]]
topic = "{topic}"
table = "{uri}"
type = "cow"
buckets = 2
{extra}
"#,
        group = unique("g"),
        uri = p.uri,
    );
    let f = p.dir.path().join(format!("{}.toml", unique("ingest")));
    std::fs::write(&f, text).expect("config");
    f.display().to_string()
}

/// The samples of one metric: labels text → value.
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
                let (labels, v) = r.split_once("} ")?;
                (labels.to_owned(), v)
            } else {
                (String::new(), rest.strip_prefix(' ')?)
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) fn total(text: &str, name: &str) -> f64 {
    samples(text, name).values().sum()
}

/// Scrapes until `ok` holds for the metrics text (or panics after `within`, showing the last
/// scrape and the job's log).
pub(crate) fn scrape_until(
    addr: &str,
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((200, body)) = http_get(addr, "/metrics") {
            if ok(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("metrics never showed {what}:\n{last}");
}

fn health(addr: &str) -> (u16, String) {
    http_get(addr, "/health").unwrap_or((0, String::new()))
}

fn wait_health(addr: &str, code: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        last = health(addr);
        if last.0 == code {
            return last.1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/health never answered {code}: last {last:?}");
}

/// The table holds exactly the source's rows, read by lake and by hudi-rs.
fn equals_source(p: &Place, expected: Vec<serde_json::Value>) {
    assert_eq!(
        project(lake_rows(&p.uri, &p.env)),
        project(expected.clone()),
        "lake's reader"
    );
    let theirs = hudi_read(&p.uri, &["--sort", "id"], &p.env);
    assert_eq!(project(theirs), project(expected), "hudi-rs");
}

/// The test S3 server's endpoint.
fn s3_endpoint() -> String {
    s3().env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .map(|(_, v)| v.clone())
        .expect("endpoint")
}

/// A table on the S3 server reached through `proxy` (each request retried once, so that faults
/// reach lake), and the environment that reaches the server directly.
fn behind(proxy: &crate::kit::FaultProxy, prefix: &str) -> (Place, Vec<(String, String)>) {
    let mut p = Place::s3(prefix);
    let direct = p.env.clone();
    for (k, v) in &mut p.env {
        if k == "AWS_ENDPOINT_URL" {
            v.clone_from(&proxy.endpoint);
        }
    }
    p.env.push(("LAKE_S3_MAX_RETRIES".into(), "1".into()));
    (p, direct)
}

/// The append-mode table holds the events `k0`..`k<n>` each exactly once (lake and hudi-rs).
pub(crate) fn each_event_once(uri: &str, env: &[(String, String)], n: u32, log: &str) {
    let mut ids: Vec<String> = lake_rows(uri, env)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "every event exactly once; log:\n{log}");
    assert_eq!(hudi_read(uri, &[], env).len(), n as usize);
}

/// `lake ingest` as a child process with its stderr in a file.
pub(crate) fn spawn_ingest(p: &Place, args: &[&str]) -> (Child, std::path::PathBuf) {
    let log = p.dir.path().join(format!("{}.log", unique("ingest")));
    let child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .arg("ingest")
        .args(args)
        .envs(p.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("lake ingest starts");
    (child, log)
}

pub(crate) fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("wait")
}

/// The metrics endpoint during a real ingest: offsets, lag (all of it before the first commit, none
/// after), records and bytes, commits and their latency, rows and files; health; log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_real_ingest() {
    let topic = unique("dbserver1.shop.orders");
    create_topic(&topic, 3).await;
    let (msgs, expected) = orders_stream(5, 1200);
    let (first, second) = msgs.split_at(600);
    produce(&topic, first).await;

    let p = Place::s3("operate");
    // Commits wait 8 s for more records, so the first scrapes see the lag before any commit.
    let cfg = config(
        &p,
        kafka(),
        &topic,
        "max_records = 100000\nmax_interval_ms = 8000",
        "",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut child, log) = spawn_ingest(&p, &["--config", &cfg, "--metrics-addr", &addr]);
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_health(&addr, 200, Duration::from_secs(60));
    let m = scrape_until(&addr, Duration::from_secs(60), "the start", |m| {
        total(m, "lake_ingest_high_watermark_offset") == 600.0
    });
    assert_eq!(total(&m, "lake_ingest_lag_messages"), 600.0, "{m}");
    assert_eq!(total(&m, "lake_ingest_committed_offset"), 0.0, "{m}");
    assert_eq!(samples(&m, "lake_ingest_lag_messages").len(), 3, "{m}");
    assert_eq!(total(&m, "lake_ingest_broker_up"), 1.0, "{m}");
    let m = scrape_until(&addr, Duration::from_secs(60), "600 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 600.0
            && total(m, "lake_ingest_lag_messages") == 0.0
    });
    assert_eq!(
        total(&m, "lake_ingest_consumed_records_total"),
        600.0,
        "{m}"
    );
    assert_eq!(total(&m, "lake_ingest_consumed_offset"), 600.0, "{m}");
    assert!(
        total(&m, "lake_ingest_consumed_bytes_total") > 600.0 * 50.0,
        "{m}"
    );
    let table = format!(
        "table=\"{}\"",
        lake_table::TableConfig::name_from_uri(&p.uri)
    );
    let commits = samples(&m, "lake_table_commits_total");
    assert!(commits.get(&table).is_some_and(|c| *c >= 1.0), "{m}");
    assert_eq!(
        samples(&m, "lake_table_commit_duration_seconds_count").get(&table),
        commits.get(&table),
        "{m}"
    );
    assert!(total(&m, "lake_table_inserted_rows_total") > 0.0, "{m}");
    assert!(total(&m, "lake_table_written_files_total") > 0.0, "{m}");
    assert!(
        total(&m, "lake_table_last_commit_timestamp_seconds") > 1.7e9,
        "{m}"
    );
    assert!(m.contains("lake_table_last_commit_age_seconds{"), "{m}");
    let (code, body) = health(&addr);
    assert_eq!(
        (code, body.as_str()),
        (200, "ok: consuming and committing\n")
    );

    // The values move with the stream.
    produce(&topic, second).await;
    let m = scrape_until(
        &addr,
        Duration::from_secs(60),
        "every message committed",
        |m| {
            total(m, "lake_ingest_committed_offset") == msgs.len() as f64
                && total(m, "lake_ingest_lag_messages") == 0.0
        },
    );
    assert_eq!(
        total(&m, "lake_ingest_consumed_records_total"),
        msgs.len() as f64,
        "{m}"
    );
    assert!(
        samples(&m, "lake_table_commits_total")
            .get(&table)
            .is_some_and(|c| Some(c) > commits.get(&table)),
        "{m}"
    );
    assert_eq!(sigterm(&mut child).code(), Some(0), "{}", show_log());

    // Log lines are timestamped and name the table, not its URI.
    let log = show_log();
    let name = lake_table::TableConfig::name_from_uri(&p.uri);
    let commit = log
        .lines()
        .find(|l| l.contains(" commit "))
        .unwrap_or_else(|| panic!("no commit line:\n{log}"));
    assert!(
        commit.starts_with("20") && commit.contains("INFO"),
        "{commit}"
    );
    assert!(commit.contains(&format!("table={name}")), "{commit}");
    assert!(!commit.contains("s3://"), "{commit}");
    assert!(
        log.contains(&format!("metrics on http://{addr}/metrics")),
        "{log}"
    );
    equals_source(&p, expected);
}

/// A broker killed and restarted mid-run: ingest keeps running, reports the broker down (metrics,
/// health, one warning), resumes when it is back, and the table ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_broker_is_survived() {
    // This broker keeps its data on the S3 server, so that it survives being killed.
    let mut env = s3().env.clone();
    env.push(("AWS_ENDPOINT".into(), s3_endpoint()));
    env.push(("AWS_DEFAULT_REGION".into(), "us-east-1".into()));
    let mut broker = OwnBroker::start("s3://test/", &env);
    let brokers = broker.addr();
    let topic = unique("dbserver1.shop.orders");
    create_topic_at(&brokers, &topic, 3).await;
    let (msgs, expected) = orders_stream(6, 1200);
    let (first, second) = msgs.split_at(600);
    produce_at(&brokers, &topic, first).await;

    let p = Place::s3("operate");
    let cfg = config(
        &p,
        &brokers,
        &topic,
        "max_records = 200\nmax_interval_ms = 300",
        "",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut child, log) = spawn_ingest(&p, &["--config", &cfg, "--metrics-addr", &addr]);
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    scrape_until(&addr, Duration::from_secs(60), "600 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 600.0
    });
    assert_eq!(health(&addr).0, 200);

    // The broker dies: ingest keeps running and says so.
    broker.stop();
    let why = wait_health(&addr, 503, Duration::from_secs(30));
    assert!(
        why.contains("Kafka broker unreachable") && why.contains(&brokers),
        "{why}"
    );
    let m = scrape_until(&addr, Duration::from_secs(10), "the broker down", |m| {
        total(m, "lake_ingest_broker_up") == 0.0
    });
    assert!(total(&m, "lake_ingest_broker_errors_total") >= 1.0, "{m}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "ingest exited while the broker was away:\n{}",
        show_log()
    );

    // It comes back with its data; the rest of the stream arrives and is committed.
    broker.restart();
    produce_at(&brokers, &topic, second).await;
    wait_health(&addr, 200, Duration::from_secs(90));
    let m = scrape_until(
        &addr,
        Duration::from_secs(90),
        "every message committed",
        |m| total(m, "lake_ingest_committed_offset") == msgs.len() as f64,
    );
    assert_eq!(total(&m, "lake_ingest_broker_up"), 1.0, "{m}");
    assert_eq!(sigterm(&mut child).code(), Some(0), "{}", show_log());

    let log = show_log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("does not answer"))
        .count();
    // One warning per outage (a slow answer around the restart may make it two), not one per check.
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
    assert!(log.contains("answers again"), "{log}");
    assert!(
        log.contains(&format!("connecting to Kafka at {brokers}")),
        "{log}"
    );
    equals_source(&p, expected);
}

/// A broker that does not answer at start is an error within seconds, naming its address and why.
#[test]
fn an_unreachable_broker_is_named_at_start() {
    let p = Place::local();
    let brokers = format!("127.0.0.1:{}", free_port());
    let cfg = config(&p, &brokers, "orders", "max_records = 10", "key = [\"id\"]");
    let started = Instant::now();
    let out = lake_env(&["ingest", "--config", &cfg], &p.env);
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    assert!(
        err.contains(&format!("connecting to Kafka at {brokers}")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: kafka: cannot reach the Kafka broker at {brokers} within 10 s:"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{brokers}: Connection refused")),
        "{err}"
    );
}

pub(crate) fn json_msgs(range: std::ops::Range<u32>) -> Vec<Kv> {
    range
        .map(|i| (None, Some(format!(r#"{{"id":"k{i}","v":{i}}}"#))))
        .collect()
}

async fn last_checkpoint(p: &Place, topic: &str) -> Option<String> {
    let table = Table::open_storage(p.storage.clone()).await.expect("open");
    lake_ingest::pipeline::last_checkpoint(&table, topic)
        .await
        .expect("checkpoint")
        .map(|c| c.render())
}

/// A table whose checkpoint lies beyond the end of its topic (the topic was recreated) stops ingest
/// with an error naming table, topic, partition, checkpoint and the partition's offsets; the
/// explicit `--reset-checkpoint` continues and the reset sticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_beyond_the_topic_end_stops_ingest_until_reset() {
    let topic = unique("clicks");
    create_topic(&topic, 1).await;
    produce(&topic, &json_msgs(0..5)).await;
    let p = Place::local();
    let cfg = config(
        &p,
        kafka(),
        &topic,
        "max_records = 100\nmax_interval_ms = 200",
        "decoder = \"json\"\nkey = [\"id\"]",
    );
    let ingest = |extra: &[&str]| {
        let mut args = vec![
            "ingest",
            "--config",
            cfg.as_str(),
            "--until-caught-up",
            "-q",
        ];
        args.extend_from_slice(extra);
        lake_env(&args, &p.env)
    };
    assert!(ingest(&[]).status.success());
    assert_eq!(
        last_checkpoint(&p, &topic).await,
        Some(format!("{topic},0:5"))
    );

    // As if the topic had been recreated: the table's checkpoint is far beyond the end.
    let beyond = |offset: i64| {
        let p = &p;
        let topic = topic.clone();
        async move {
            let table = Table::open_storage(p.storage.clone()).await.expect("open");
            let cp = Checkpoint {
                topic,
                offsets: [(0, offset)].into(),
            };
            table
                .write(
                    vec![],
                    WriteOptions {
                        extra_metadata: [(CHECKPOINT_KEY.to_owned(), cp.render())].into(),
                        commit_empty: true,
                        ..Default::default()
                    },
                )
                .await
                .expect("empty commit");
        }
    };
    beyond(100).await;
    produce(&topic, &json_msgs(5..7)).await;
    let commits = || lake_ok(&["timeline", &p.uri], &p.env).lines().count();
    let before = commits();
    let out = ingest(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let name = lake_table::TableConfig::name_from_uri(&p.uri);
    assert!(
        err.contains(&format!(
            "table {name}: its checkpoint of topic {topic} partition 0 is offset 100, but the \
             partition holds offsets 0 to 7: the topic ends before the checkpoint"
        )),
        "{err}"
    );
    assert!(
        err.contains("--reset-checkpoint earliest or latest"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(commits(), before, "nothing was committed");

    // earliest: everything the partition holds is read again (upserts: harmless) and committed.
    let out = ingest(&["--reset-checkpoint", "earliest"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        last_checkpoint(&p, &topic).await,
        Some(format!("{topic},0:7"))
    );
    assert_eq!(lake_rows(&p.uri, &p.env).len(), 7);
    assert!(ingest(&[]).status.success(), "the reset sticks");

    // latest: nothing new to read, yet the reset is committed at once.
    beyond(50).await;
    assert!(!ingest(&[]).status.success());
    let out = ingest(&["--reset-checkpoint", "latest"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        last_checkpoint(&p, &topic).await,
        Some(format!("{topic},0:7"))
    );
    assert!(ingest(&[]).status.success(), "the reset sticks");
    assert_eq!(lake_rows(&p.uri, &p.env).len(), 7);
}

/// A batch of nothing but bad messages (dead-letter policy) still moves the checkpoint: the next
/// start does not dead-letter them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_only_batch_advances_the_checkpoint() {
    let topic = unique("dbserver1.shop.bad");
    create_topic(&topic, 1).await;
    let bad: Vec<Kv> = crate::ingest::bad_corpus()[1..4].to_vec();
    produce(&topic, &bad).await;
    let p = Place::local();
    let dlq = format!("{}-dead", p.uri);
    let cfg = config(
        &p,
        kafka(),
        &topic,
        "max_records = 100\nmax_interval_ms = 200",
        &format!("key = [\"id\"]\non_error = \"dead-letter\"\ndead_letter = \"{dlq}\""),
    );
    let run = || {
        lake_ok(
            &["ingest", "--config", &cfg, "--until-caught-up", "-q"],
            &p.env,
        )
    };
    // The first run logs as JSON: one object per line, the commit's fields named.
    let first = lake_env(
        &[
            "ingest",
            "--config",
            &cfg,
            "--until-caught-up",
            "--log-format",
            "json",
        ],
        &p.env,
    );
    assert!(first.status.success());
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&first.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let name = lake_table::TableConfig::name_from_uri(&p.uri);
    let commit = events
        .iter()
        .find(|e| e["message"] == "commit")
        .unwrap_or_else(|| panic!("no commit event: {events:?}"));
    assert_eq!(commit["level"], "INFO", "{commit}");
    assert_eq!(commit["table"], name.as_str(), "{commit}");
    assert_eq!(commit["records"], 3, "{commit}");
    assert_eq!(commit["dead_letters"], 3, "{commit}");
    assert!(
        commit["timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{commit}"
    );
    let dead = |e: &&serde_json::Value| {
        e["level"] == "WARN"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("dead-letter"))
    };
    assert_eq!(events.iter().filter(dead).count(), 3, "{events:?}");
    assert!(out.contains("3 messages went to dead letters"), "{out}");
    assert_eq!(
        last_checkpoint(&p, &topic).await,
        Some(format!("{topic},0:3"))
    );
    assert_eq!(lake_rows(&dlq, &p.env).len(), 3);
    assert!(lake_rows(&p.uri, &p.env).is_empty());
    let out = run();
    assert!(!out.contains("dead letters"), "dead-lettered again: {out}");
    let timeline = lake_ok(&["timeline", &dlq], &p.env);
    assert_eq!(
        timeline.lines().filter(|l| l.contains("COMPLETED")).count(),
        1,
        "{timeline}"
    );
}

/// `lake compact` over several tables goes on past one that fails, writes every table's figures to
/// the metrics file, and exits non-zero at the end naming the failed table.
#[test]
fn compact_goes_on_past_a_failing_table_and_writes_its_figures() {
    let (mut a, mut b) = (Place::local(), Place::local());
    a.uri = a.dir.path().join("orders").display().to_string();
    b.uri = b.dir.path().join("clicks").display().to_string();
    for p in [&a, &b] {
        lake_ok(&["create", &p.uri, "--key", "id", "--type", "mor"], &p.env);
        let input = p.dir.path().join("rows.jsonl");
        for round in 0..3 {
            std::fs::write(&input, format!("{{\"id\":\"x\",\"v\":{round}}}\n")).expect("rows");
            lake_ok(
                &["write", &p.uri, "--input", input.to_str().expect("utf8")],
                &p.env,
            );
        }
    }
    let missing = a.dir.path().join("no-such-table").display().to_string();
    let metrics = a.dir.path().join("compact.prom");
    let out = lake_env(
        &[
            "compact",
            &a.uri,
            &missing,
            &b.uri,
            "--max-delta-commits",
            "2",
            "--metrics-file",
            metrics.to_str().expect("utf8"),
        ],
        &a.env,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stdout.contains(&format!("{}: compacted", a.uri)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{}: compacted", b.uri)),
        "{stdout}"
    );
    assert!(stdout.contains("3 tables: 2 done, 1 failed"), "{stdout}");
    assert!(stderr.contains(&format!("error: {missing}:")), "{stderr}");
    assert!(
        stderr.contains(&format!("error: 1 of 3 tables failed: {missing}")),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    let name = |p: &str| lake_table::TableConfig::name_from_uri(p);
    assert!(text.contains("# TYPE lake_compact_success gauge"), "{text}");
    let series = |metric: &str, uri: &str, value: u32| {
        format!("{metric}{{table=\"{}\",uri=\"{uri}\"}} {value}", name(uri))
    };
    for (metric, uri, value) in [
        ("lake_compact_success", &a.uri, 1),
        ("lake_compact_success", &missing, 0),
        ("lake_compact_success", &b.uri, 1),
        ("lake_compact_executed_compactions", &b.uri, 1),
        ("lake_compact_pending_compactions", &b.uri, 0),
    ] {
        assert!(
            text.contains(&series(metric, uri, value)),
            "{metric} {uri}: {text}"
        );
    }
}

/// The `lake …` command lines of a compose service: its command under the image's `lake` entry
/// point, or each `lake …` invocation inside a `sh -c` script.
fn lake_command_lines(service: &serde_yaml_ng::Value) -> Vec<Vec<String>> {
    let strings = |v: Option<&serde_yaml_ng::Value>| -> Vec<String> {
        match v {
            Some(serde_yaml_ng::Value::Sequence(s)) => s
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            Some(serde_yaml_ng::Value::String(s)) => {
                s.split_whitespace().map(str::to_owned).collect()
            }
            _ => Vec::new(),
        }
    };
    let entrypoint = strings(service.get("entrypoint"));
    let command = strings(service.get("command"));
    match entrypoint.first().map(String::as_str) {
        None | Some("lake") => vec![entrypoint.into_iter().skip(1).chain(command).collect()],
        Some("sh") if entrypoint.get(1).map(String::as_str) == Some("-c") => {
            let script = entrypoint[2..].join(" ");
            script
                .split([';', '\n', '&', '|'])
                .map(|part| {
                    // `do lake …`, `then lake …`: the command after a shell keyword.
                    let mut part = part.trim();
                    while let Some(rest) = ["do ", "then ", "else "]
                        .iter()
                        .find_map(|k| part.strip_prefix(k))
                    {
                        part = rest.trim_start();
                    }
                    part
                })
                .filter_map(|part| part.strip_prefix("lake "))
                .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
                .collect()
        }
        _ => Vec::new(),
    }
}

/// docker-compose.yml works as written: every lake command line of every service is one the CLI
/// accepts, every config it names is mounted and parses, every mounted script exists, and every
/// dependency is a service.
#[test]
fn the_deployment_runs_as_written() {
    let root = crate::kit::root();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).expect("compose file");
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let services = compose
        .get("services")
        .and_then(|s| s.as_mapping())
        .expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    let mut checked = 0;
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        // Mounted files exist; remember where they go.
        let mut mounts = BTreeMap::new();
        if let Some(vols) = service.get("volumes").and_then(|v| v.as_sequence()) {
            for v in vols.iter().filter_map(|v| v.as_str()) {
                let mut parts = v.split(':');
                let (from, to) = (parts.next().expect("source"), parts.next().expect("target"));
                if from.starts_with("./") {
                    assert!(root.join(from).exists(), "{name}: {from} does not exist");
                    mounts.insert(to.to_owned(), root.join(from));
                    if from.ends_with(".sh") {
                        let check = std::process::Command::new("sh")
                            .arg("-n")
                            .arg(root.join(from))
                            .output()
                            .expect("sh runs");
                        assert!(
                            check.status.success(),
                            "{name}: {from}: {}",
                            String::from_utf8_lossy(&check.stderr)
                        );
                    }
                }
            }
        }
        // `depends_on` as a list, or as a map with conditions.
        let deps: Vec<&str> = match service.get("depends_on") {
            Some(serde_yaml_ng::Value::Sequence(s)) => {
                s.iter().filter_map(|d| d.as_str()).collect()
            }
            Some(serde_yaml_ng::Value::Mapping(m)) => m.keys().filter_map(|d| d.as_str()).collect(),
            _ => Vec::new(),
        };
        for d in deps {
            assert!(names.contains(&d), "{name} depends on unknown service {d}");
        }
        let is_lake = service.get("image").and_then(|i| i.as_str()) == Some("lake");
        if !is_lake {
            continue;
        }
        let env: BTreeMap<String, String> = service
            .get("environment")
            .and_then(|e| e.as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let lines = lake_command_lines(service);
        assert!(!lines.is_empty(), "{name}: no lake command line found");
        for args in lines {
            // `--help` after the arguments: clap rejects unknown arguments and bad values before it.
            let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
            with_help.push("--help");
            let out = lake_env(&with_help, &[]);
            assert!(
                out.status.success(),
                "{name}: `lake {}` is not a valid command line: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
            if let Some(at) = args.iter().position(|a| a == "--config") {
                let path = &args[at + 1];
                let file = mounts
                    .get(path)
                    .unwrap_or_else(|| panic!("{name}: {path} is not mounted"));
                let text = std::fs::read_to_string(file).expect("config");
                lake_ingest::config::PipelineConfig::parse(&text, |k| env.get(k).cloned())
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", file.display()));
            }
        }
    }
    assert!(checked >= 2, "ingest and compact command lines checked");
}

/// The store goes away mid-run (every request to it reset): the job keeps running, reports the
/// failing commits (metrics, health), retries the batch with back-off, and once the store is back
/// commits it exactly once (an append-mode table would show a batch applied twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_waits_out_a_store_outage() {
    let endpoint = s3_endpoint();
    let proxy = crate::kit::FaultProxy::start(&endpoint, 7, 1000);
    proxy.calm();
    // A request fails after one retry, so that the outage reaches the job within a second.
    let (p, direct) = behind(&proxy, "outage");
    let topic = unique("events");
    create_topic(&topic, 2).await;
    produce(&topic, &json_msgs(0..100)).await;
    let cfg = config(
        &p,
        kafka(),
        &topic,
        "max_records = 1000\nmax_interval_ms = 200",
        "decoder = \"json\"\nkey = [\"id\"]\nmode = \"append\"",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut child, log) = spawn_ingest(&p, &["--config", &cfg, "--metrics-addr", &addr]);
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();
    scrape_until(&addr, Duration::from_secs(60), "100 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 100.0
    });

    proxy.storm();
    produce(&topic, &json_msgs(100..250)).await;
    let why = wait_health(&addr, 503, Duration::from_secs(60));
    let name = lake_table::TableConfig::name_from_uri(&p.uri);
    assert!(
        why.contains(&format!("table {name}: commits failing")),
        "{why}"
    );
    let m = scrape_until(&addr, Duration::from_secs(30), "failed attempts", |m| {
        total(m, "lake_table_commit_errors_total") >= 2.0
    });
    assert_eq!(total(&m, "lake_ingest_committed_offset"), 100.0, "{m}");
    assert!(child.try_wait().expect("wait").is_none(), "{}", show_log());

    proxy.calm();
    scrape_until(&addr, Duration::from_secs(120), "250 committed", |m| {
        total(m, "lake_ingest_committed_offset") == 250.0
    });
    wait_health(&addr, 200, Duration::from_secs(10));

    // A second outage, and a stop while the batch waits for its retry: a clean exit; the batch is
    // read again by the next run.
    proxy.storm();
    produce(&topic, &json_msgs(250..300)).await;
    scrape_until(
        &addr,
        Duration::from_secs(60),
        "more failed attempts",
        |m| total(m, "lake_table_commit_errors_total") >= 4.0,
    );
    assert_eq!(sigterm(&mut child).code(), Some(0), "{}", show_log());
    assert!(
        show_log().contains("commit failed, retrying the batch"),
        "{}",
        show_log()
    );
    proxy.calm();
    let out = lake_env(
        &["ingest", "--config", &cfg, "--until-caught-up", "-q"],
        &p.env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    each_event_once(&p.uri, &direct, 300, "");
}

/// `lake ingest` into an append-mode table through an S3 proxy that resets requests, answers 503,
/// delays, and loses responses after the server applied the request (a commit whose answer is lost
/// is then retried only after reading whether it landed): the run completes and the table holds
/// every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_behind_a_faulty_store_applies_every_event_once() {
    let endpoint = s3_endpoint();
    let proxy = crate::kit::FaultProxy::start(&endpoint, 11, 15);
    let (p, direct) = behind(&proxy, "faulty-ingest");
    let topic = unique("events");
    create_topic(&topic, 2).await;
    produce(&topic, &json_msgs(0..400)).await;
    let cfg = config(
        &p,
        kafka(),
        &topic,
        "max_records = 40\nmax_interval_ms = 200",
        "decoder = \"json\"\nkey = [\"id\"]\nmode = \"append\"",
    );
    let out = lake_env(&["ingest", "--config", &cfg, "--until-caught-up"], &p.env);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(proxy.injected() > 0, "no fault was injected");
    each_event_once(&p.uri, &direct, 400, &log);
}
