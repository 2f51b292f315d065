//! Bad input and bad places give clear errors naming the file and line, and commit nothing.

use crate::kit::{lake_env, lake_ok};

fn stderr_of(args: &[&str]) -> String {
    let out = lake_env(args, &[]);
    assert!(!out.status.success(), "lake {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_input_names_file_and_line_and_commits_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    lake_ok(&["create", &uri, "--key", "id", "--ordering", "v"], &[]);
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, "{\"id\":1,\"v\":1,\"n\":5}\n").expect("write");
    lake_ok(
        &["write", &uri, "--input", good.to_str().expect("utf8")],
        &[],
    );
    let before = lake_ok(&["timeline", &uri], &[]);
    let cases = [
        (
            "malformed.jsonl",
            "{\"id\":2,\"v\":1}\n{\"id\":3,\"v\":\n",
            "malformed.jsonl:2: malformed JSON",
        ),
        (
            "nokey.jsonl",
            "{\"id\":2,\"v\":1}\n{\"v\":1}\n",
            "nokey.jsonl:2: record key field \"id\" is missing",
        ),
        (
            "type.jsonl",
            "{\"id\":2,\"v\":1,\"n\":1}\n{\"id\":3,\"v\":1,\"n\":\"x\"}\n",
            "type.jsonl:2:",
        ),
    ];
    for (name, text, want) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        let err = stderr_of(&[
            "write",
            &uri,
            "--input",
            good.to_str().expect("utf8"),
            f.to_str().expect("utf8"),
        ]);
        assert!(err.contains(want), "{name}: {err}");
    }
    let dbz = dir.path().join("op.jsonl");
    std::fs::write(&dbz, "{\"op\":\"z\",\"after\":{\"id\":1,\"v\":1}}\n").expect("write");
    let err = stderr_of(&[
        "write",
        &uri,
        "--format",
        "debezium",
        "--input",
        dbz.to_str().expect("utf8"),
    ]);
    assert!(
        err.contains("op.jsonl:1: unknown Debezium op \"z\""),
        "{err}"
    );
    assert_eq!(
        lake_ok(&["timeline", &uri], &[]),
        before,
        "a failed batch committed something"
    );
}

#[test]
fn incompatible_schema_changes_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    lake_ok(&["create", &uri, "--key", "id", "--ordering", "v"], &[]);
    let csv1 = dir.path().join("a.csv");
    std::fs::write(&csv1, "id,v,score\n1,1,2.5\n").expect("write");
    lake_ok(
        &[
            "write",
            &uri,
            "--format",
            "csv",
            "--input",
            csv1.to_str().expect("utf8"),
        ],
        &[],
    );
    // A Parquet file whose `score` is a string cannot go into a double column.
    let pq = dir.path().join("b.parquet");
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("v", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("score", arrow::datatypes::DataType::Utf8, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![2])),
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![1])),
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["high"])),
        ],
    )
    .expect("batch");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).expect("f"), schema, None)
            .expect("w");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let err = stderr_of(&[
        "write",
        &uri,
        "--format",
        "parquet",
        "--input",
        pq.to_str().expect("utf8"),
    ]);
    assert!(
        err.contains("schema change refused") && err.contains("\"score\""),
        "{err}"
    );
    let timeline = lake_ok(&["timeline", &uri], &[]);
    assert_eq!(
        timeline.lines().filter(|l| l.contains("commit")).count(),
        1,
        "{timeline}"
    );
}

#[test]
fn unreachable_store_and_missing_table_are_clear_errors() {
    let err = stderr_of(&["timeline", "/nonexistent/lake/table"]);
    assert!(err.contains("hoodie.properties is missing"), "{err}");
    let out = lake_env(
        &["timeline", "s3://nobucket/t"],
        &[
            ("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "x".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_RETRY_TIMEOUT".into(), "1s".into()),
            ("AWS_MAX_RETRIES".into(), "0".into()),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s3://nobucket/t"), "{err}");
}

/// Time travel to before the active timeline says why instead of returning an empty table: before the
/// first commit, or archived (lake does not read archived timelines yet).
#[test]
fn as_of_before_the_timeline_says_why() {
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    lake_ok(&["create", &uri, "--key", "id", "--ordering", "v"], &[]);
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":1,\"v\":1}\n").expect("write");
    lake_ok(
        &["write", &uri, "--input", input.to_str().expect("utf8")],
        &[],
    );
    let early = "20000101000000000";
    let err = stderr_of(&["read", &uri, "--as-of", early]);
    assert!(
        err.contains(&format!(
            "the table as of {early} cannot be read: the table's first commit is"
        )),
        "{err}"
    );
    let sql = format!("SELECT * FROM lake_as_of('{uri}', '{early}')");
    let err = stderr_of(&["sql", "-c", &sql]);
    assert!(err.contains("the table's first commit is"), "{err}");
    // Each cause once, on one line, in the shell as on the command line.
    for err in [&err, &stderr_of(&["read", &uri, "--as-of", early])] {
        assert_eq!(err.matches("cannot be read").count(), 1, "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // A change range that ends before the first commit is simply empty.
    let sql = format!(
        "SELECT count(*) AS n FROM lake_incremental('{uri}', '19990101000000000', '{early}')"
    );
    let out = lake_ok(&["sql", "--format", "csv", "-c", &sql], &[]);
    assert_eq!(out.trim(), "n\n0", "{out}");
    // Reading before the active timeline consults the archive (Hudi's .hoodie/archived/ log): a
    // damaged one is an error naming it (tests/it/archive.rs reads real ones).
    let archived = dir.path().join("t/.hoodie/archived");
    std::fs::create_dir_all(&archived).expect("mkdir");
    std::fs::write(archived.join(".commits_.archive.1_1-0-1"), b"x").expect("archive");
    let err = stderr_of(&["read", &uri, "--as-of", early]);
    assert!(
        err.contains(".commits_.archive.1_1-0-1") && err.contains("corrupt"),
        "{err}"
    );
}

/// S3 mistakes name what to set: plain http without AWS_ALLOW_HTTP, an endpoint where nothing
/// answers; each on one line.
#[test]
fn s3_errors_name_the_setting_to_fix() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let base = |allow_http: bool| {
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ACCESS_KEY_ID", "x".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "y".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("LAKE_S3_MAX_RETRIES", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if allow_http {
            env.push(("AWS_ALLOW_HTTP".into(), "true".into()));
        }
        env
    };
    for (allow_http, want) in [
        (false, "set AWS_ALLOW_HTTP=true to allow it"),
        (
            true,
            "nothing answers at the S3 endpoint: check AWS_ENDPOINT_URL",
        ),
    ] {
        let out = lake_env(&["info", "s3://bucket/table"], &base(allow_http));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(err.matches(want).count(), 1, "{err}");
    }
}
