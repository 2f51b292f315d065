//! Distributed SQL: a `lake scheduler` and three `lake executor`s on 127.0.0.1 (DataFusion
//! Ballista), copy-on-write and merge-on-read tables on the S3 server. Every query type answers
//! through `lake sql --cluster` exactly what local `lake sql` answers; the work is spread over the
//! executors; an executor killed mid-query costs a retry or a clear error, never a wrong answer.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kit::{Place, free_port, lake_env, lake_ok};

/// A scheduler and its executors, killed when dropped.
struct Cluster {
    addr: String,
    scheduler: Child,
    executors: Vec<Option<Child>>,
    /// Each executor's work folder (shuffle files of the tasks it ran).
    work: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

fn wait_port(port: u16, what: &str, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}:\n{}",
            std::fs::read_to_string(logs).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Cluster {
    fn start(executors: usize, env: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let logs = dir.path().to_path_buf();
        let spawn = |args: &[String], log: &str| -> Child {
            let out = std::fs::File::create(logs.join(log)).expect("log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_lake"));
            cmd.args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log"))
                .stderr(out);
            cmd.spawn().expect("lake starts")
        };
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let scheduler = spawn(
            &[
                "scheduler".into(),
                "--bind".into(),
                addr.clone(),
                // Long enough for executors whose heartbeats wait behind busy tasks (debug
                // builds, a loaded machine); a killed executor is noticed by its failed tasks.
                "--executor-timeout-secs".into(),
                "30".into(),
            ],
            "scheduler.log",
        );
        wait_port(port, "the scheduler", &dir.path().join("scheduler.log"));
        let mut cluster = Self {
            addr,
            scheduler,
            executors: Vec::new(),
            work: Vec::new(),
            dir,
        };
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let work = cluster.dir.path().join(format!("work-{i}"));
            std::fs::create_dir_all(&work).expect("work dir");
            let log = format!("executor-{i}.log");
            let child = spawn(
                &[
                    "executor".into(),
                    "--scheduler".into(),
                    cluster.addr.clone(),
                    "--bind".into(),
                    format!("127.0.0.1:{flight}"),
                    "--grpc-port".into(),
                    grpc.to_string(),
                    "--concurrent-tasks".into(),
                    "2".into(),
                    "--heartbeat-secs".into(),
                    "1".into(),
                    "--work-dir".into(),
                    work.display().to_string(),
                ],
                &log,
            );
            wait_port(flight, "an executor", &cluster.dir.path().join(&log));
            wait_port(grpc, "an executor", &cluster.dir.path().join(&log));
            cluster.executors.push(Some(child));
            cluster.work.push(work);
        }
        // Registered executors heartbeat within a second; give them two.
        std::thread::sleep(Duration::from_secs(2));
        cluster
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        for p in names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out += &format!("--- {}\n", p.display());
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    /// Executors whose work folder holds files (they ran tasks).
    fn busy_executors(&self) -> usize {
        (0..self.work.len())
            .filter(|i| self.work_has_files(*i))
            .count()
    }

    /// Whether executor `i`'s work folder holds a file.
    fn work_has_files(&self, i: usize) -> bool {
        fn has_files(p: &Path) -> bool {
            std::fs::read_dir(p).is_ok_and(|d| {
                d.filter_map(Result::ok).any(|e| {
                    let p = e.path();
                    if p.is_dir() { has_files(&p) } else { true }
                })
            })
        }
        has_files(&self.work[i])
    }

    fn kill_executor(&mut self, i: usize) {
        if let Some(mut c) = self.executors[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.executors.len() {
            self.kill_executor(i);
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

/// `lake sql -q --format nd-json -c sql`, locally or on the cluster at `cluster`.
fn query(sql: &str, cluster: Option<&str>, env: &[(String, String)]) -> std::process::Output {
    let mut args = vec!["sql", "-q", "--format", "nd-json", "-c", sql];
    if let Some(addr) = cluster {
        args.extend(["--cluster", addr]);
    }
    lake_env(&args, env)
}

fn answer(sql: &str, cluster: Option<&Cluster>, env: &[(String, String)]) -> String {
    let out = query(sql, cluster.map(|c| c.addr.as_str()), env);
    assert!(
        out.status.success(),
        "{sql} ({}) failed:\n{}{}",
        if cluster.is_some() {
            "cluster"
        } else {
            "local"
        },
        String::from_utf8_lossy(&out.stderr),
        cluster.map(Cluster::logs).unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_json(p: &Place, name: &str, rows: impl Iterator<Item = serde_json::Value>, op: &str) {
    let f = p.dir.path().join(name);
    let text: String = rows.map(|r| r.to_string() + "\n").collect();
    std::fs::write(&f, text).expect("input");
    lake_ok(
        &[
            "write",
            &p.uri,
            "--op",
            op,
            "--input",
            f.to_str().expect("utf8"),
        ],
        &p.env,
    );
}

fn row(id: u64, region: u64, amount: u64) -> serde_json::Value {
    serde_json::json!({"id": id, "region": format!("r{region}"), "amount": amount})
}

/// A new table of `kind` (cow, mor) on the S3 server, keyed by `id`, partitioned by `region`.
fn create(prefix: &str, kind: &str) -> Place {
    let p = Place::s3(prefix);
    let args = ["create", &p.uri, "--type", kind, "--key", "id"];
    lake_ok(&[&args[..], &["--partition-by", "region"]].concat(), &p.env);
    p
}

/// Completed data commits of a table, oldest first.
fn commits(p: &Place) -> Vec<String> {
    lake_ok(&["timeline", &p.uri], &p.env)
        .lines()
        .filter(|l| l.contains("COMPLETED") && (l.contains("commit") || l.contains("deltacommit")))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A table with three writes: 3000 rows over three regions (4 buckets each), an update of every
/// third row (some moving region), a delete of every fifth; merge-on-read tables are compacted
/// after the second write, so slices have base files and logs.
fn table(kind: &str) -> (Place, Vec<String>) {
    let p = create(&format!("cluster-{kind}"), kind);
    // Region r3 is written once: after the compaction its slices have no logs, so merge-on-read
    // scans mix merged slices and plain base files.
    write_json(
        &p,
        "1.json",
        (0..3000)
            .map(|i| row(i, i % 3, i * 7 % 1000))
            .chain((3000..3300).map(|i| row(i, 3, i % 1000))),
        "upsert",
    );
    write_json(
        &p,
        "2.json",
        (0..3000).step_by(3).map(|i| {
            row(
                i,
                if i % 2 == 0 { i % 3 } else { (i + 1) % 3 },
                i * 7 % 1000 + 1,
            )
        }),
        "upsert",
    );
    if kind == "mor" {
        lake_ok(&["compact", &p.uri, "--max-delta-commits", "1"], &p.env);
    }
    write_json(
        &p,
        "3.json",
        (0..3000).step_by(5).map(|i| row(i, i % 3, 0)),
        "delete",
    );
    if kind == "mor" {
        write_json(
            &p,
            "4.json",
            (1..3000).step_by(7).map(|i| row(i, i % 3, 5)),
            "upsert",
        );
    }
    let c = commits(&p);
    assert!(c.len() >= 3, "{c:?}");
    (p, c)
}

/// The (id, region) pairs [`table`] leaves.
fn model(kind: &str) -> std::collections::BTreeSet<(u64, u64)> {
    let mut rows: std::collections::BTreeSet<(u64, u64)> = (0..3000)
        .map(|i| (i, i % 3))
        .chain((3000..3300).map(|i| (i, 3)))
        .collect();
    for i in (0..3000).step_by(3) {
        rows.insert((i, if i % 2 == 0 { i % 3 } else { (i + 1) % 3 }));
    }
    for i in (0..3000).step_by(5) {
        rows.remove(&(i, i % 3));
    }
    if kind == "mor" {
        for i in (1..3000).step_by(7) {
            rows.insert((i, i % 3));
        }
    }
    rows
}

fn queries(uri: &str, c: &[String]) -> Vec<String> {
    let (c1, c2) = (&c[0], &c[1]);
    vec![
        format!("SELECT * FROM lake_snapshot('{uri}') ORDER BY id, region"),
        format!(
            "SELECT region, count(*) AS n, sum(amount) AS s, min(id) AS lo, max(id) AS hi \
             FROM lake_snapshot('{uri}') GROUP BY region ORDER BY region"
        ),
        format!(
            "SELECT count(*) AS n FROM lake_snapshot('{uri}') WHERE region = 'r1' AND amount > 500"
        ),
        format!("SELECT id, region, amount FROM lake_as_of('{uri}', '{c1}') ORDER BY id, region"),
        format!(
            "SELECT id, region, amount, _hoodie_commit_time FROM lake_incremental('{uri}', '{c1}', '{c2}') \
             ORDER BY id, region"
        ),
        format!(
            "SELECT id, region, amount FROM lake_incremental('{uri}', '{c1}') ORDER BY id, region"
        ),
        format!(
            "CREATE EXTERNAL TABLE ro STORED AS HUDI LOCATION '{uri}' \
             OPTIONS ('hoodie.datasource.query.type' 'read_optimized'); \
             SELECT id, region, amount FROM ro ORDER BY id, region"
        ),
        format!(
            "CREATE EXTERNAL TABLE t STORED AS HUDI LOCATION '{uri}'; \
             SELECT a.region, count(*) AS n, sum(a.amount + b.amount) AS s \
             FROM t a JOIN lake_as_of('{uri}', '{c1}') b ON a.id = b.id \
             GROUP BY a.region ORDER BY a.region"
        ),
        format!(
            "SELECT op, record_key, partition_path FROM lake_changes('{uri}', '{c1}') \
             ORDER BY record_key, op, partition_path"
        ),
        format!(
            "SELECT instant, action, state, inserts FROM lake_timeline('{uri}') ORDER BY instant"
        ),
    ]
}

fn the_cluster_answers_like_one_process(kind: &str) {
    let (p, c) = table(kind);
    if kind == "mor" {
        let plan = answer(
            &format!("EXPLAIN SELECT * FROM lake_snapshot('{}')", p.uri),
            None,
            &p.env,
        );
        assert!(
            plan.contains("MergeOnReadExec") && plan.contains("file_type=parquet"),
            "merged slices and plain base files: {plan}"
        );
    }
    let cluster = Cluster::start(3, &p.env);
    for q in queries(&p.uri, &c) {
        let local = answer(&q, None, &p.env);
        assert!(!local.trim().is_empty(), "{q}: no rows");
        let remote = answer(&q, Some(&cluster), &p.env);
        assert!(
            remote == local,
            "{q}: the cluster answered {} lines, locally {}; first difference:\n{:?}",
            remote.lines().count(),
            local.lines().count(),
            remote.lines().zip(local.lines()).find(|(a, b)| a != b)
        );
    }
    // The snapshot holds what the writes left: (key, partition) pairs of a model of the writes (the
    // bucket index keys records per partition, so an update into another region adds a copy there).
    let n = answer(
        &format!("SELECT count(*) AS n FROM lake_snapshot('{}')", p.uri),
        Some(&cluster),
        &p.env,
    );
    assert_eq!(n.trim(), format!("{{\"n\":{}}}", model(kind).len()));
    assert_eq!(
        cluster.busy_executors(),
        3,
        "every executor ran tasks\n{}",
        cluster.logs()
    );
}

#[test]
fn the_cluster_answers_like_one_process_cow() {
    the_cluster_answers_like_one_process("cow");
}

#[test]
fn the_cluster_answers_like_one_process_mor() {
    the_cluster_answers_like_one_process("mor");
}

/// Tables Apache Hudi wrote (timeline layouts 1 and 2, versions 6, 8 and 9; key generators, no
/// meta fields) answer on the cluster as in one process.
#[test]
fn hudi_written_tables_answer_alike_on_the_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = Cluster::start(2, &[]);
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    for (zip, incremental) in [
        ("quickstart_trips_table_mor_avro_v8_trips_8i3u1d", true),
        ("sample_table_mor_avro_v9_txns_simple_meta", true),
        ("sample_table_mor_parquet_v6_complexkeygen_hivestyle", true),
        (
            "sample_table_mor_parquet_v6_simplekeygen_hivestyle_no_metafields",
            false,
        ),
        ("sample_table_cow_v8_complexkeygen_hivestyle", true),
    ] {
        let path = crate::fixtures::unzip(zip, &dir.path().join(zip));
        let uri = path.display().to_string();
        let mut queries = vec![
            format!("SELECT * FROM lake_snapshot('{uri}')"),
            format!(
                "CREATE EXTERNAL TABLE ro STORED AS HUDI LOCATION '{uri}' \
                 OPTIONS ('hoodie.datasource.query.type' 'read_optimized'); SELECT * FROM ro"
            ),
        ];
        if incremental {
            queries.push(format!("SELECT * FROM lake_incremental('{uri}', '000')"));
        }
        for q in queries {
            let local = sorted(answer(&q, None, &[]));
            assert!(!local.is_empty(), "{zip}: {q}: no rows");
            assert_eq!(sorted(answer(&q, Some(&cluster), &[])), local, "{zip}: {q}");
        }
    }
}

#[test]
fn a_cluster_that_is_not_there_is_a_clear_error() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = query("SELECT 1", Some(&addr), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: cannot reach a lake scheduler at {addr}")),
        "{err}"
    );
}

#[test]
fn an_executor_killed_mid_query_never_gives_a_wrong_answer() {
    // 20,000 keys over three regions, then updates in logs: a join that fans out (each row meets a
    // quarter of the rows) keeps the executors busy for seconds.
    let p = create("cluster-kill", "mor");
    write_json(
        &p,
        "1.json",
        (0..20_000).map(|i| row(i, i % 3, i % 1000)),
        "upsert",
    );
    write_json(
        &p,
        "2.json",
        (0..20_000).step_by(9).map(|i| row(i, i % 3, 7)),
        "upsert",
    );
    let mut cluster = Cluster::start(3, &p.env);
    let q = format!(
        "SELECT a.region, count(*) AS n, sum(a.amount * b.amount) AS s \
         FROM lake_snapshot('{u}') a JOIN lake_snapshot('{u}') b ON a.id % 4 = b.id % 4 \
         GROUP BY a.region ORDER BY a.region",
        u = p.uri
    );
    let local = answer(&q, None, &p.env);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lake"))
        .args([
            "sql",
            "-q",
            "--format",
            "nd-json",
            "-c",
            &q,
            "--cluster",
            &cluster.addr,
        ])
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lake sql");
    // Kill executor 1 as soon as it has run a task of this query (its work folder fills).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cluster.work_has_files(1) {
        assert!(
            Instant::now() < deadline,
            "executor 1 ran no task\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.kill_executor(1);
    assert!(
        child.try_wait().expect("status").is_none(),
        "the query ended before the executor was killed: make it heavier"
    );
    let out = wait_with_timeout(&mut child, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert_eq!(stdout, local, "a query that succeeded answered wrongly");
    } else {
        assert!(
            stdout.trim().is_empty(),
            "a failed query printed rows: {stdout}"
        );
        assert!(
            stderr.starts_with("error: ") && stderr.trim().len() > 10,
            "a failed query says why: {stderr}"
        );
    }
    eprintln!(
        "killed executor: query {} ({})",
        if out.status.success() {
            "retried and answered"
        } else {
            "failed"
        },
        stderr.trim()
    );
    // The cluster goes on with the executors left.
    assert_eq!(answer(&q, Some(&cluster), &p.env), local);
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                panic!("the query did not end within {limit:?}");
            }
        }
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut o, &mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut e, &mut stderr);
    }
    let status = child.wait().expect("status");
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}
