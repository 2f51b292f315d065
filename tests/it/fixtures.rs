//! lake's snapshot reader on tables written by Apache Hudi (../shared/fixtures/hudi), compared row
//! by row with hudi-rs.

use std::process::Command;

use std::sync::Arc;

use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::{ReadOptions, Table};

use crate::kit::{hudi_read, parquet_rows, python, shared};

fn unzip(zip: &str, into: &std::path::Path) -> std::path::PathBuf {
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

async fn compare(zip: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let table_dir = unzip(zip, dir.path());
    let uri = format!("file://{}", table_dir.display());
    let table = Table::open(&uri).await.expect("lake opens the fixture");
    let (schema, batches) = table
        .read_snapshot(&ReadOptions::default())
        .await
        .expect("lake reads the fixture");
    let file = dir.path().join("lake.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&file).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    for b in &batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    let expected = hudi_read(&uri, &["--sort", "id"], &[]);
    let got = parquet_rows(&file, "id");
    assert_eq!(got.len(), expected.len(), "{zip}: row count");
    assert_eq!(got, expected, "{zip}");

    // The same through the DataFusion provider.
    let ctx = lake_query::session();
    let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
        .await
        .expect("provider");
    ctx.register_table("t", Arc::new(provider))
        .expect("register");
    let df = ctx.sql("SELECT * FROM t").await.expect("plan");
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.expect("query");
    let file = dir.path().join("sql.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&file).expect("create"),
        schema,
        None,
    )
    .expect("writer");
    for b in &batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    assert_eq!(parquet_rows(&file, "id"), expected, "{zip} through SQL");
}

macro_rules! fixture_tests {
    ($($name:ident: $zip:literal,)*) => {
        $(
            #[tokio::test]
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
