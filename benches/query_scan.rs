//! Query bench: a COW table of 4M rows in 4 partitions, queried through lake's DataFusion provider
//! and, as the reference, by DataFusion scanning the very same Parquet files as a listing table;
//! a selective query (partition + value filter) against the full scan; and hudi-rs reading the table
//! (when LAKE_INTEROP_PYTHON points at a Python with `hudi`). Prints the best of 5 runs.
//!
//! Run: `cargo bench --bench query_scan`

mod common;

use common::best_of;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use lake_query::datafusion::datasource::file_format::parquet::ParquetFormat;
use lake_query::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use lake_query::{HudiTableProvider, QueryOptions};
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOptions};

const ROWS: i64 = 4_000_000;

fn batch(from: i64, to: i64) -> RecordBatch {
    let ids: Vec<i64> = (from..to).collect();
    let statuses = ["created", "approved", "shipped", "delivered"];
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("customer-{:08}", i % 100_003)),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| statuses[(*i % 4) as usize]),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|i| (i * 7919) % 100_000),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("r{}", i % 4)),
            )),
            Arc::new(Int64Array::from(vec![1; ids.len()])),
        ],
    )
    .expect("bench batch")
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("t");
    let uri = path.display().to_string();
    let cfg = TableConfig::new(
        "bench",
        TableType::CopyOnWrite,
        vec!["id".into()],
        vec!["region".into()],
        Some("v".into()),
        Some(8),
    )
    .expect("config");
    let table = Table::create(&uri, cfg).await.expect("create");
    let batches: Vec<ChangeBatch> = (0..4)
        .map(|i| ChangeBatch::upserts(batch(i * ROWS / 4, (i + 1) * ROWS / 4)))
        .collect();
    table
        .write(batches, WriteOptions::default())
        .await
        .expect("load");
    let bytes: u64 = table
        .file_slices(None)
        .await
        .expect("slices")
        .iter()
        .filter_map(|s| s.base_file.as_ref())
        .map(|b| b.size)
        .sum();
    println!(
        "table: {ROWS} rows, 32 base files, {} MB, one commit",
        bytes / 1_000_000
    );

    let ctx = lake_query::session();
    let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
        .await
        .expect("provider");
    ctx.register_table("lake", Arc::new(provider))
        .expect("register");
    let url = ListingTableUrl::parse(format!("file://{}/", path.display())).expect("url");
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let state = ctx.state();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_schema(&state)
        .await
        .expect("schema");
    ctx.register_table(
        "raw",
        Arc::new(ListingTable::try_new(config).expect("listing")),
    )
    .expect("register");

    let queries = [
        (
            "full scan",
            "SELECT count(*), sum(amount), max(customer), max(status) FROM {t}",
        ),
        (
            "partition + value filter",
            "SELECT count(*), sum(amount) FROM {t} WHERE region = 'r1' AND amount < 1000",
        ),
        ("point lookup", "SELECT * FROM {t} WHERE id = 1234567"),
    ];
    for (name, q) in queries {
        let (lake, a) = best_of(&ctx, &q.replace("{t}", "lake")).await;
        let (raw, b) = best_of(&ctx, &q.replace("{t}", "raw")).await;
        assert_eq!(
            a.lines().count(),
            b.lines().count(),
            "{name}: answers differ"
        );
        println!(
            "{name}: lake provider {:.1} ms, DataFusion on the same files {:.1} ms, ratio {:.2}",
            lake.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            lake.as_secs_f64() / raw.as_secs_f64()
        );
    }

    if let Some(python) = std::env::var_os("LAKE_INTEROP_PYTHON") {
        let script = format!(
            "import time\nfrom hudi import HudiTableBuilder, HudiReadOptions\nt=HudiTableBuilder.from_base_uri('{uri}').build()\n\
             for name, opts in [('full read', HudiReadOptions()), ('partition filter', HudiReadOptions(filters=[('region','=','r1')]))]:\n\
             \x20   best=1e9\n\
             \x20   for _ in range(5):\n\
             \x20       s=time.perf_counter(); b=t.read(opts); best=min(best, time.perf_counter()-s)\n\
             \x20   print(f'hudi-rs {{name}}: {{best*1000:.1f}} ms, {{sum(x.num_rows for x in b)}} rows')\n"
        );
        let out = std::process::Command::new(python)
            .args(["-c", &script])
            .output()
            .expect("python");
        print!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
