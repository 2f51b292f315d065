//! lake's snapshot reader on tables written by Apache Hudi (../shared/fixtures/hudi), compared row
//! by row with hudi-rs.

use std::process::Command;

use std::sync::Arc;

use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::{ReadOptions, Table};

use crate::kit::{
    hudi_read, hudi_read_as_of, hudi_read_changes, lake_ok, parquet_rows, python, shared,
};

pub(crate) fn unzip(zip: &str, into: &std::path::Path) -> std::path::PathBuf {
    let src = shared().join("fixtures/hudi").join(format!("{zip}.zip"));
    let out = Command::new(python())
        .args(["-m", "zipfile", "-e"])
        .arg(&src)
        .arg(into)
        .output()
        .expect("python unzips");
    assert!(
        out.status.success(),
        "unzip {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The table is the folder holding .hoodie/.
    let mut stack = vec![into.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join(".hoodie").is_dir() {
            return d;
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with("__MACOSX") {
                stack.push(e.path());
            }
        }
    }
    panic!("no table in {zip}");
}

/// `lake timeline` (and `--archived`) decodes every instant file Hudi wrote — commit metadata,
/// cleans, rollbacks, clustering, indexing — and lists each completed write with its details.
async fn timeline_shows_every_write(table: &Table, uri: &str) {
    let timeline = table.timeline().await.expect("timeline");
    for args in [vec!["timeline", uri], vec!["timeline", uri, "--archived"]] {
        let out = lake_ok(&args, &[]);
        for w in timeline.completed_writes() {
            let line = out
                .lines()
                .find(|l| l.starts_with(&w.time.to_string()))
                .unwrap_or_else(|| panic!("{args:?}: no line for {w}:\n{out}"));
            assert!(line.contains(" partitions, "), "{line}");
        }
    }
}

async fn compare(zip: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let table_dir = unzip(zip, dir.path());
    let uri = format!("file://{}", table_dir.display());
    let table = Table::open(&uri).await.expect("lake opens the fixture");
    timeline_shows_every_write(&table, &uri).await;
    let (schema, batches) = table
        .read_snapshot(&ReadOptions::default())
        .await
        .expect("lake reads the fixture");
    let got = batch_rows_by(schema, &batches, &dir.path().join("lake.parquet"), "id");
    let expected = hudi_read(&uri, &["--sort", "id"], &[]);
    assert_eq!(got.len(), expected.len(), "{zip}: row count");
    assert_eq!(got, expected, "{zip}");

    // The same through the DataFusion provider.
    let ctx = lake_query::session();
    let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
        .await
        .expect("provider");
    ctx.register_table("t", Arc::new(provider))
        .expect("register");
    let through_sql = sql_rows_by(
        &ctx,
        "SELECT * FROM t",
        &dir.path().join("sql.parquet"),
        "id",
    )
    .await;
    assert_eq!(through_sql, expected, "{zip} through SQL");

    // Time travel to, and changes since, every completed commit but the last.
    let timeline = table.timeline().await.expect("timeline");
    let commits: Vec<String> = timeline
        .completed_writes()
        .map(|i| i.time.to_string())
        .collect();
    let bounds: Vec<String> = timeline
        .completed_writes()
        .map(|i| i.completion.unwrap_or(i.time).to_string())
        .collect();
    for (i, c) in commits
        .iter()
        .enumerate()
        .take(commits.len().saturating_sub(1))
    {
        let as_of = sql_rows_by(
            &ctx,
            &format!("SELECT * FROM lake_as_of('{uri}', '{c}')"),
            &dir.path().join(format!("a{i}.parquet")),
            "id",
        )
        .await;
        assert_eq!(
            as_of,
            hudi_read_as_of(&uri, c, "id", &[]),
            "{zip} as of {c}"
        );
        // Version 6 ranges are of requested times, versions 8/9 of completion times (Hudi 1.x),
        // for lake and hudi-rs alike.
        let bound = &bounds[i];
        let changes = sql_rows_by(
            &ctx,
            &format!("SELECT * FROM lake_incremental('{uri}', '{bound}')"),
            &dir.path().join(format!("c{i}.parquet")),
            "id",
        )
        .await;
        let expected = hudi_read_changes(&uri, bound, None, "id", &[]);
        assert!(
            !changes.is_empty(),
            "{zip}: the last commit changed something"
        );
        assert_eq!(changes, expected, "{zip} changes since {c}");
    }
}

macro_rules! fixture_tests {
    ($($name:ident: $zip:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                compare($zip).await;
            }
        )*
    };
}

fixture_tests! {
    cow_v6_nonpartitioned: "sample_table_cow_v6_nonpartitioned",
    cow_v6_complexkeygen_hivestyle: "sample_table_cow_v6_complexkeygen_hivestyle",
    cow_v6_simplekeygen_nonhivestyle: "sample_table_cow_v6_simplekeygen_nonhivestyle",
    cow_v6_simplekeygen_hivestyle_no_metafields: "sample_table_cow_v6_simplekeygen_hivestyle_no_metafields",
    cow_v6_overwritetable: "sample_table_cow_v6_simplekeygen_nonhivestyle_overwritetable",
    cow_v6_timebasedkeygen_nonhivestyle: "sample_table_cow_v6_timebasedkeygen_nonhivestyle",
    cow_v6_empty: "sample_table_cow_v6_empty",
    cow_v8_nonpartitioned: "sample_table_cow_v8_nonpartitioned",
    cow_v8_complexkeygen_hivestyle: "sample_table_cow_v8_complexkeygen_hivestyle",
    cow_v8_simplekeygen_nonhivestyle: "sample_table_cow_v8_simplekeygen_nonhivestyle",
    cow_v8_simplekeygen_hivestyle_no_metafields: "sample_table_cow_v8_simplekeygen_hivestyle_no_metafields",
    cow_v8_empty: "sample_table_cow_v8_empty",
}

/// lake's reader on a merge-on-read fixture: the snapshot (base files merged with logs) and the
/// read-optimized view equal hudi-rs's.
async fn compare_mor(zip: &str, sort: &str) {
    compare_mor_archived(zip, sort, 0).await;
}

/// [`compare_mor`] with the first `archived` completed instants of a layout-2 table moved into its
/// LSM history (as Hudi 1.x's archiver leaves it): lake reads the archived copy, hudi-rs (which does
/// not read the history) the untouched one, and every view and range must agree.
async fn compare_mor_archived(zip: &str, sort: &str, archived: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let table_dir = unzip(zip, dir.path());
    let hudi_uri = format!("file://{}", table_dir.display());
    let copy = tempfile::tempdir().expect("tmp");
    let uri = if archived == 0 {
        hudi_uri.clone()
    } else {
        let lake_dir = unzip(zip, copy.path());
        archive_to_lsm(&lake_dir, archived);
        format!("file://{}", lake_dir.display())
    };
    let table = Table::open(&uri).await.expect("lake opens the fixture");
    timeline_shows_every_write(&table, &uri).await;
    if archived > 0 {
        let history = lake_table::archive::ArchivedTimeline::load(
            table.storage(),
            lake_table::timeline::Layout::V2,
        )
        .await
        .expect("lake reads the history");
        assert_eq!(history.completed_writes().count(), archived, "{zip}");
        let active = table.timeline().await.expect("timeline");
        assert!(
            history
                .completed_writes()
                .all(|w| w.completion.is_some() && active.find(w.time).is_none())
        );
    }
    let mut views = Vec::new();
    for (query, read_optimized) in [("snapshot", false), ("read_optimized", true)] {
        let opts = ReadOptions {
            read_optimized,
            ..Default::default()
        };
        let (schema, batches) = table
            .read_snapshot(&opts)
            .await
            .expect("lake reads the fixture");
        let file = dir.path().join(format!("lake-{query}.parquet"));
        let got = batch_rows_by(schema, &batches, &file, sort);
        let expected = hudi_read(&hudi_uri, &["--sort", sort, "--query", query], &[]);
        assert_eq!(got, expected, "{zip} {query}");
        views.push(got);
    }
    // The same through SQL, and time travel to every completed deltacommit but the last.
    let ctx = lake_query::session();
    for (name, query) in [("snap", "snapshot"), ("ro", "read_optimized")] {
        let options = std::collections::HashMap::from([(
            "hoodie.datasource.query.type".to_owned(),
            query.to_owned(),
        )]);
        let provider =
            HudiTableProvider::try_new(&uri, QueryOptions::from_map(&options).expect("options"))
                .await
                .expect("provider");
        ctx.register_table(name, Arc::new(provider))
            .expect("register");
        let rows = sql_rows_by(
            &ctx,
            &format!("SELECT * FROM {name}"),
            &dir.path().join(format!("{name}.parquet")),
            sort,
        )
        .await;
        let i = usize::from(name == "ro");
        assert_eq!(rows, views[i], "{zip} {query} through SQL");
    }
    // Every write, the archived ones included (the untouched copy's timeline).
    let timeline = Table::open(&hudi_uri)
        .await
        .expect("open")
        .timeline()
        .await
        .expect("timeline");
    let commits: Vec<String> = timeline
        .completed_writes()
        .map(|i| i.time.to_string())
        .collect();
    for (i, c) in commits
        .iter()
        .enumerate()
        .take(commits.len().saturating_sub(1))
    {
        let as_of = sql_rows_by(
            &ctx,
            &format!("SELECT * FROM lake_as_of('{uri}', '{c}')"),
            &dir.path().join(format!("a{i}.parquet")),
            sort,
        )
        .await;
        assert_eq!(
            as_of,
            hudi_read_as_of(&hudi_uri, c, sort, &[]),
            "{zip} as of {c}"
        );
    }
    // The changes of every range between consecutive completed writes (completion times on versions
    // 8/9, requested times on 6), as hudi-rs reads them.
    let bounds: Vec<String> = timeline
        .completed_writes()
        .map(|i| i.completion.unwrap_or(i.time).to_string())
        .collect();
    for (i, w) in bounds.windows(2).enumerate() {
        let (b, e) = (&w[0], &w[1]);
        let changes = sql_rows_by(
            &ctx,
            &format!("SELECT * FROM lake_incremental('{uri}', '{b}', '{e}')"),
            &dir.path().join(format!("r{i}.parquet")),
            sort,
        )
        .await;
        assert_eq!(
            changes,
            hudi_read_changes(&hudi_uri, b, Some(e), sort, &[]),
            "{zip} changes in ({b}, {e}]"
        );
    }
    // These fixtures' latest slices hold log records, so the two views differ.
    // (The v9 fixtures end with a clustering and inserts: every latest slice is a base file.)
    if ![
        "_empty",
        "_no_metafields",
        "_overwritetable",
        "_v9_txns_simple_meta",
    ]
    .iter()
    .any(|s| zip.ends_with(s))
    {
        assert_ne!(views[0], views[1], "{zip}: the snapshot merged no logs");
    }
}

/// Runs a query and returns its rows converted like hudi-read.py (meta columns dropped), sorted by
/// `sort`.
async fn sql_rows_by(
    ctx: &lake_query::datafusion::prelude::SessionContext,
    query: &str,
    file: &std::path::Path,
    sort: &str,
) -> Vec<serde_json::Value> {
    let df = ctx.sql(query).await.expect("plan");
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.expect("query");
    batch_rows_by(schema, &batches, file, sort)
}

/// Writes batches to a Parquet file and returns its rows converted like hudi-read.py, sorted by
/// `sort`.
fn batch_rows_by(
    schema: arrow::datatypes::SchemaRef,
    batches: &[arrow::array::RecordBatch],
    file: &std::path::Path,
    sort: &str,
) -> Vec<serde_json::Value> {
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(file).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    parquet_rows(file, sort)
}

/// Moves the instants before the `n+1`-th completed write of a layout-2 table into
/// `.hoodie/timeline/history/`: one layer-0 Parquet file of `HoodieLSMTimelineInstant` rows (requested
/// and completion time, action, the completed file's bytes, the plan's), `manifest_1` and
/// `_version_`, then deletes their active files — what Hudi 1.x's archiver does.
fn archive_to_lsm(table: &std::path::Path, n: usize) {
    use arrow::array::{BinaryArray, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let dir = table.join(".hoodie/timeline");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("timeline")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.as_bytes().first().is_some_and(u8::is_ascii_digit))
        .collect();
    names.sort();
    // Completed files are `<requested>_<completed>.<action>`.
    let completed: Vec<(String, String, String)> = names
        .iter()
        .filter_map(|n| {
            let (times, action) = n.split_once('.')?;
            let (req, done) = times.split_once('_')?;
            (!action.contains('.')).then(|| (req.to_owned(), done.to_owned(), action.to_owned()))
        })
        .collect();
    let writes: Vec<&(String, String, String)> = completed
        .iter()
        .filter(|(_, _, a)| ["commit", "deltacommit", "replacecommit"].contains(&a.as_str()))
        .collect();
    let cutoff = writes[n].0.clone();
    let moved: Vec<&(String, String, String)> =
        completed.iter().filter(|(r, _, _)| *r < cutoff).collect();
    let read = |name: &str| std::fs::read(dir.join(name)).ok().filter(|b| !b.is_empty());
    let metadata: Vec<Option<Vec<u8>>> = moved
        .iter()
        .map(|(r, d, a)| read(&format!("{r}_{d}.{a}")))
        .collect();
    let plans: Vec<Option<Vec<u8>>> = moved
        .iter()
        .map(|(r, _, a)| {
            let pending = match a.as_str() {
                "commit" => "compaction",
                other => other,
            };
            read(&format!("{r}.{pending}.inflight"))
                .or_else(|| read(&format!("{r}.{pending}.requested")))
        })
        .collect();
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("instantTime", DataType::Utf8, true),
        Field::new("completionTime", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, true),
        Field::new("metadata", DataType::Binary, true),
        Field::new("plan", DataType::Binary, true),
        Field::new("version", DataType::Int32, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from_iter(
                moved.iter().map(|m| Some(m.0.clone())),
            )),
            std::sync::Arc::new(StringArray::from_iter(
                moved.iter().map(|m| Some(m.1.clone())),
            )),
            std::sync::Arc::new(StringArray::from_iter(
                moved.iter().map(|m| Some(m.2.clone())),
            )),
            std::sync::Arc::new(BinaryArray::from_iter(
                metadata.iter().map(|m| m.as_deref()),
            )),
            std::sync::Arc::new(BinaryArray::from_iter(plans.iter().map(|m| m.as_deref()))),
            std::sync::Arc::new(Int32Array::from(vec![1; moved.len()])),
        ],
    )
    .expect("batch");
    let history = dir.join("history");
    std::fs::create_dir_all(&history).expect("history");
    let file = format!(
        "{}_{}_0.parquet",
        moved.first().expect("instants").0,
        moved.last().expect("instants").0
    );
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(history.join(&file)).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let len = std::fs::metadata(history.join(&file)).expect("len").len();
    std::fs::write(
        history.join("manifest_1"),
        format!("{{\n  \"files\" : [ {{\n    \"fileName\" : \"{file}\",\n    \"fileLen\" : {len}\n  }} ]\n}}"),
    )
    .expect("manifest");
    std::fs::write(history.join("_version_"), "1").expect("version");
    for name in &names {
        if name.get(..17).is_some_and(|t| t < cutoff.as_str()) {
            std::fs::remove_file(dir.join(name)).expect("remove");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cow_v9_with_an_lsm_history() {
    compare_mor_archived("sample_table_cow_v9_txns_simple_meta", "txn_id", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mor_v9_with_an_lsm_history() {
    compare_mor_archived("sample_table_mor_avro_v9_txns_simple_meta", "txn_id", 3).await;
}

macro_rules! mor_fixture_tests {
    ($($name:ident: $zip:literal by $sort:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                compare_mor($zip, $sort).await;
            }
        )*
    };
}

mor_fixture_tests! {
    mor_avro_v9_txns: "sample_table_mor_avro_v9_txns_simple_meta" by "txn_id",
    cow_v9_txns: "sample_table_cow_v9_txns_simple_meta" by "txn_id",
    mor_avro_v6_8i1u: "quickstart_trips_table_mor_avro_v6_trips_8i1u" by "uuid",
    mor_avro_v6_8i3d: "quickstart_trips_table_mor_avro_v6_trips_8i3d" by "uuid",
    mor_avro_v8_8i3u1d: "quickstart_trips_table_mor_avro_v8_trips_8i3u1d" by "uuid",
    mor_parquet_v6_nonpartitioned: "sample_table_mor_parquet_v6_nonpartitioned" by "id",
    mor_parquet_v6_rollback: "sample_table_mor_parquet_v6_nonpartitioned_rollback" by "id",
    mor_parquet_v6_complexkeygen_hivestyle: "sample_table_mor_parquet_v6_complexkeygen_hivestyle" by "id",
    mor_parquet_v6_simplekeygen_nonhivestyle: "sample_table_mor_parquet_v6_simplekeygen_nonhivestyle" by "id",
    mor_parquet_v6_no_metafields: "sample_table_mor_parquet_v6_simplekeygen_hivestyle_no_metafields" by "id",
    mor_parquet_v6_overwritetable: "sample_table_mor_parquet_v6_simplekeygen_nonhivestyle_overwritetable" by "id",
    mor_parquet_v6_empty: "sample_table_mor_parquet_v6_empty" by "id",
}
