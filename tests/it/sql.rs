//! `lake sql`: snapshot, time-travel, incremental and read-optimized answers equal hudi-rs's, on a
//! local folder and on S3; EXPLAIN shows partition pruning and pushed projection and filters.

use std::path::Path;

use serde_json::Value;

use crate::kit::{hudi_read, hudi_read_as_of, hudi_read_changes, lake_env, lake_ok, s3, unique};

const COLS: [&str; 4] = ["id", "region", "amount", "v"];

fn sql(uri: &str, query: &str, env: &[(String, String)]) -> Vec<Value> {
    let out = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "nd-json",
            "--table",
            &format!("orders={uri}"),
            "-c",
            query,
        ],
        env,
    );
    out.lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

/// Rows projected to COLS and sorted by id, for comparison.
fn norm(rows: Vec<Value>) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| {
            COLS.iter()
                .map(|c| r.get(*c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    out.sort_by_key(|r| r[0].as_i64());
    out
}

fn write(
    uri: &str,
    dir: &Path,
    name: &str,
    rows: &[(i64, i64, i64)],
    op: &str,
    env: &[(String, String)],
) -> String {
    let text: String = rows
        .iter()
        .map(|(id, amount, v)| {
            format!(
                "{{\"id\":{id},\"region\":\"r{}\",\"amount\":{amount},\"v\":{v}}}\n",
                id % 3
            )
        })
        .collect();
    let f = dir.join(name);
    std::fs::write(&f, text).expect("write");
    let out = lake_ok(
        &[
            "write",
            uri,
            "--input",
            f.to_str().expect("utf8"),
            "--op",
            op,
        ],
        env,
    );
    out.split_whitespace()
        .nth(1)
        .expect("instant")
        .trim_end_matches(':')
        .to_owned()
}

fn run(uri: &str, env: &[(String, String)], dir: &Path, table_type: &str) {
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
            "region",
            "--buckets",
            "2",
        ],
        env,
    );
    let c1 = write(
        uri,
        dir,
        "1.jsonl",
        &(1..=30).map(|i| (i, i, 1)).collect::<Vec<_>>(),
        "upsert",
        env,
    );
    let mut second: Vec<(i64, i64, i64)> = (1..=10).map(|i| (i, i * 10, 2)).collect();
    second.extend((31..=35).map(|i| (i, i, 2)));
    let c2 = write(uri, dir, "2.jsonl", &second, "upsert", env);
    write(
        uri,
        dir,
        "3.jsonl",
        &[(20, 0, 9), (21, 0, 9), (22, 0, 9)],
        "delete",
        env,
    );
    let c4 = write(uri, dir, "4.jsonl", &[(5, 555, 3)], "upsert", env);

    // Snapshot.
    let ours = norm(sql(
        uri,
        "SELECT id, region, amount, v FROM orders ORDER BY id",
        env,
    ));
    assert_eq!(ours.len(), 32);
    assert_eq!(ours, norm(hudi_read(uri, &[], env)));
    // Time travel.
    let ours = norm(sql(
        uri,
        &format!("SELECT id, region, amount, v FROM lake_as_of('{uri}', '{c2}')"),
        env,
    ));
    assert_eq!(ours.len(), 35);
    assert_eq!(ours, norm(hudi_read_as_of(uri, &c2, "id", env)));
    // Incremental: (c1, c2] and (c2, latest].
    let ours = norm(sql(
        uri,
        &format!("SELECT * FROM lake_incremental('{uri}', '{c1}', '{c2}')"),
        env,
    ));
    assert_eq!(ours.len(), 15);
    assert_eq!(
        ours,
        norm(hudi_read_changes(uri, &c1, Some(&c2), "id", env))
    );
    let ours = norm(sql(
        uri,
        &format!("SELECT id, region, amount, v FROM lake_incremental('{uri}', '{c2}')"),
        env,
    ));
    assert_eq!(
        ours,
        vec![vec![
            Value::from(5),
            Value::from("r2"),
            Value::from(555),
            Value::from(3)
        ]]
    );
    assert_eq!(ours, norm(hudi_read_changes(uri, &c2, None, "id", env)));
    // DDL with Hudi's option names; read-optimized equals snapshot on copy-on-write.
    let ddl = format!(
        "CREATE EXTERNAL TABLE ch STORED AS HUDI LOCATION '{uri}' OPTIONS ('hoodie.datasource.query.type' 'incremental', \
         'hoodie.datasource.read.begin.instanttime' '{c1}', 'hoodie.datasource.read.end.instanttime' '{c4}'); \
         CREATE EXTERNAL TABLE ro STORED AS HUDI LOCATION '{uri}' OPTIONS ('hoodie.datasource.query.type' 'read_optimized'); \
         SELECT (SELECT count(*) FROM ch) AS changed, (SELECT count(*) FROM ro) AS ro, (SELECT sum(amount) FROM ro) AS total"
    );
    let row = &sql(uri, &ddl, env)[0];
    let total: i64 = norm(hudi_read(uri, &["--query", "read_optimized"], env))
        .iter()
        .map(|r| r[2].as_i64().unwrap_or(0))
        .sum();
    let ro_rows = hudi_read(uri, &["--query", "read_optimized"], env).len() as i64;
    if table_type == "cow" {
        assert_eq!(
            ro_rows, 32,
            "read-optimized equals snapshot on copy-on-write"
        );
    }
    assert_eq!(
        (
            row["changed"].as_i64(),
            row["ro"].as_i64(),
            row["total"].as_i64().or(Some(0))
        ),
        (Some(15), Some(ro_rows), Some(total))
    );
    // A partition filter prunes partitions; projection and the value filter reach the scan.
    let plan = lake_ok(
        &[
            "sql",
            "-q",
            "--table",
            &format!("orders={uri}"),
            "-c",
            "EXPLAIN SELECT amount FROM orders WHERE region = 'r1' AND amount > 5",
        ],
        env,
    );
    if table_type == "mor" {
        // Merge-on-read slices with logs are merged; only region r1's two buckets are planned.
        let scan = plan
            .lines()
            .find(|l| l.contains("MergeOnReadExec"))
            .unwrap_or_else(|| panic!("{plan}"));
        assert!(scan.contains("file_slices=2,"), "{plan}");
        assert!(
            scan.contains("projection=[region, amount]")
                || scan.contains("projection=[amount, region]"),
            "{plan}"
        );
    } else {
        let scan = plan
            .lines()
            .find(|l| l.contains("DataSourceExec"))
            .unwrap_or_else(|| panic!("{plan}"));
        assert!(
            scan.contains("region=r1/")
                && !scan.contains("region=r0/")
                && !scan.contains("region=r2/"),
            "{plan}"
        );
        assert!(
            scan.contains("projection=[region, amount]")
                || scan.contains("projection=[amount, region]"),
            "{plan}"
        );
        assert!(
            scan.contains("predicate=") && scan.contains("amount@"),
            "{plan}"
        );
    }
    let pruned = sql(
        uri,
        "SELECT count(*) AS n FROM orders WHERE region = 'r1' AND amount > 5",
        env,
    );
    let expected = norm(hudi_read(uri, &[], env))
        .iter()
        .filter(|r| r[1] == "r1" && r[2].as_i64() > Some(5))
        .count();
    assert_eq!(pruned[0]["n"].as_u64(), Some(expected as u64));
}

#[test]
fn sql_answers_equal_hudi_rs_local() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("orders").display().to_string();
    run(&uri, &[], dir.path(), "cow");
}

#[test]
fn sql_answers_on_merge_on_read_equal_hudi_rs_local() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("orders").display().to_string();
    run(&uri, &[], dir.path(), "mor");
}

#[test]
fn sql_answers_on_merge_on_read_equal_hudi_rs_on_s3() {
    let dir = tempfile::tempdir().expect("tmp");
    run(
        &format!("s3://test/{}", unique("sqlmor")),
        &s3().env,
        dir.path(),
        "mor",
    );
}

#[test]
fn sql_answers_equal_hudi_rs_on_s3() {
    let dir = tempfile::tempdir().expect("tmp");
    run(
        &format!("s3://test/{}", unique("sql")),
        &s3().env,
        dir.path(),
        "cow",
    );
}

#[test]
fn sql_errors_are_one_clear_line() {
    for (args, want) in [
        (
            vec!["sql", "-c", "SELECT * FROM missing_table"],
            "missing_table",
        ),
        (vec!["sql", "-c", "SELEC 1"], "SELEC"),
        (
            vec!["sql", "--table", "t=/nonexistent/table", "-c", "SELECT 1"],
            "hoodie.properties is missing",
        ),
    ] {
        let out = lake_env(&args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
    }
}

#[test]
fn the_shell_reads_statements_from_stdin_and_goes_on_after_errors() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lake"))
        .args(["sql", "-q", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"SELECT 1 AS a;\nSELECT nope FROM\n  missing;\nSELECT 2 AS b,\n 'x' AS c;\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n1\nb,c\n2,x\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        2,
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
    assert!(
        !out.status.success(),
        "a failed statement makes a non-interactive run fail"
    );
}

#[test]
fn sql_files_run_every_statement_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("q.sql");
    std::fs::write(
        &f,
        "SELECT 1 AS x;\n-- a comment\nSELECT 'a' AS y, 2 AS z;\n",
    )
    .expect("write");
    let out = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "csv",
            "-f",
            f.to_str().expect("utf8"),
        ],
        &[],
    );
    assert_eq!(out, "x\n1\ny,z\na,2\n");
    let out = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "json",
            "-c",
            "SELECT 1 AS x UNION ALL SELECT 2 ORDER BY x",
        ],
        &[],
    );
    assert_eq!(out.trim(), r#"[{"x":1},{"x":2}]"#);
    let out = lake_ok(
        &[
            "sql",
            "-q",
            "--format",
            "tsv",
            "-c",
            "SELECT 1 AS x, 'b' AS y",
        ],
        &[],
    );
    assert_eq!(out, "x\ty\n1\tb\n");
}

/// An empty result still shows its columns: the table's header, CSV's and TSV's header line, `[]`.
#[test]
fn empty_results_show_their_columns() {
    let q = "SELECT 1 AS a, 'x' AS b WHERE false";
    let out = |format: &str| lake_ok(&["sql", "-q", "--format", format, "-c", q], &[]);
    let table = out("table");
    assert!(table.contains("| a | b |"), "{table}");
    assert_eq!(out("csv"), "a,b\n");
    assert_eq!(out("tsv"), "a\tb\n");
    assert_eq!(out("json").trim(), "[]");
    assert_eq!(out("nd-json"), "");
}

/// `lake sql` on a terminal (a pseudo-terminal from `script`): `.0` is the shell, `.1` everything it
/// wrote so far (with the terminal's echo and escape codes).
struct Pty(
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<String>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Pty {
    fn start(history: &Path) -> Self {
        use std::io::Read;
        let mut child = std::process::Command::new("script")
            .args(["-q", "-e", "-c"])
            // `exec`: the shell `script` starts (dash when SHELL is unset) must not stay as
            // lake's parent, or it sees the Ctrl-C too and exits 130 once lake is done.
            .arg(format!("exec '{}' sql", env!("CARGO_BIN_EXE_lake")))
            .arg("/dev/null")
            .env("TERM", "xterm")
            .env("LAKE_HISTORY", history)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("script runs lake sql on a pseudo-terminal");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("stdout");
        let s = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self(child, seen, Some(reader))
    }

    /// Waits for the shell to exit and for everything it printed to be read.
    fn finish(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.0.wait().expect("wait");
        if let Some(reader) = self.2.take() {
            let _ = reader.join();
        }
        (status, self.output())
    }

    fn send(&mut self, keys: &str) {
        use std::io::Write;
        let stdin = self.0.stdin.as_mut().expect("stdin");
        stdin.write_all(keys.as_bytes()).expect("send keys");
        stdin.flush().expect("flush");
    }

    /// Waits until the output holds `needle` `times` times.
    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = self.1.lock().expect("lock").clone();
            if text.matches(needle).count() >= times {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {needle:?} x{times} in:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        self.1.lock().expect("lock").clone()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The interactive shell on a pseudo-terminal: banner, backslash commands that never reach SQL,
/// Ctrl-C cancelling a long query and a half-typed line (not the shell), history kept across
/// sessions and recalled with the arrow keys.
#[test]
fn the_shell_edits_cancels_and_remembers() {
    let dir = tempfile::tempdir().expect("tmp");
    let history = dir.path().join("history");
    let mut sh = Pty::start(&history);
    sh.wait_for("\\? for help", 1);
    sh.send("SELECT 40 + 2 AS answer;\r");
    sh.wait_for("| 42 ", 1);
    sh.send("\\d\r");
    sh.wait_for("table_name", 1);
    sh.send("\\?\r");
    sh.wait_for("describe a table's columns", 1);
    sh.send("\\timing\r");
    sh.wait_for("timing is off", 1);
    // A query that would run for hours, cancelled by Ctrl-C.
    sh.send("SELECT sum(value) AS s FROM range(100000000000);\r");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh.send("\x03");
    sh.wait_for("query cancelled", 1);
    sh.send("SELECT 'after' AS x;\r");
    sh.wait_for("| after ", 1);
    // Ctrl-C drops a statement being typed: a line already entered (waiting for its `;`) and the
    // text on the current line.
    sh.send("SELECT 'lost'\r");
    sh.wait_for("  ... ", 1);
    sh.send("AND 'also lost'");
    sh.wait_for("also lost", 1);
    sh.send("\x03");
    // The next line is typed once the shell shows its prompt again (as a person would).
    std::thread::sleep(std::time::Duration::from_millis(500));
    sh.send("SELECT 'kept' AS y;\r");
    sh.wait_for("| kept ", 1);
    sh.send("\\q\r");
    let (status, out) = sh.finish();
    assert!(status.success(), "{status}: {out}");
    assert!(!out.contains("error:"), "{out}");
    assert!(!out.contains("| lost"), "{out}");
    assert!(out.contains("1 row(s) fetched.\r\n"), "timing off: {out}");
    let kept = std::fs::read_to_string(&history).expect("history file");
    assert!(kept.contains("SELECT 40 + 2 AS answer;"), "{kept}");

    // A new session recalls the earlier statements with the up arrow (the last entry is `\q`).
    let mut sh = Pty::start(&history);
    sh.wait_for("\\? for help", 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    sh.send("\x1b[A");
    sh.send("\x1b[A");
    sh.send("\r");
    sh.wait_for("| kept ", 1);
    sh.send("\x04");
    let (status, out) = sh.finish();
    assert!(status.success(), "{status}: {out}");
}
