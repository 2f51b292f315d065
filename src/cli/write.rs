//! `lake write`: decodes input files and writes them into a table as one commit.

use anyhow::Context;
use lake_ingest::{TableShape, decode_csv, decode_debezium, decode_json_lines, decode_parquet};
use lake_table::{Table, WriteOperation, WriteOptions};

/// Input formats of `lake write`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines, one row object per line.
    Json,
    /// JSON Lines of Debezium change-event values (with or without the schema envelope).
    Debezium,
    /// Parquet files.
    Parquet,
    /// CSV with a header line.
    Csv,
}

/// Write operations.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Op {
    /// Insert or update by record key (the ordering field decides); apply Debezium deletes.
    Upsert,
    /// Append rows without looking up existing keys.
    Insert,
    /// Delete the keys of the input rows.
    Delete,
}

/// Arguments of `lake write`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Input files (all written as one commit).
    #[arg(long = "input", short, required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// Input format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write operation.
    #[arg(long, value_enum, default_value = "upsert")]
    pub op: Op,
    /// The `_source_position` of rows that carry none (json/csv/parquet into a table ordered by
    /// source position). Default: just after the highest position the table has applied, so the
    /// rows win over every event applied so far and lose to later ones.
    #[arg(long)]
    pub ordering_value: Option<String>,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let timeline = table.timeline().await?;
    let config = table.config();
    let shape = TableShape {
        schema: table.data_schema(&timeline).await?,
        key_fields: config.record_key_fields.clone(),
        ordering_field: config.ordering_field.clone(),
        partition_fields: config.partition_fields.clone(),
        unpositioned: match &a.ordering_value {
            Some(v) => v.clone(),
            None => table.manual_position(&timeline).await?,
        },
        hints: Vec::new(),
    };
    let deletes = matches!(a.op, Op::Delete);
    let mut batches = Vec::with_capacity(a.inputs.len());
    let mut skipped = 0;
    for input in &a.inputs {
        let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
        let decoded = match a.format {
            Format::Json => decode_json_lines(input, utf8(input, &bytes)?, &shape, deletes)?,
            Format::Debezium => decode_debezium(input, &bytes, &shape)?,
            Format::Parquet => decode_parquet(input, bytes.into(), &shape, deletes)?,
            Format::Csv => decode_csv(input, bytes.into(), &shape, deletes)?,
        };
        skipped += decoded.skipped;
        batches.push(decoded.batch);
    }
    let operation = match a.op {
        Op::Upsert => WriteOperation::Upsert,
        Op::Insert => WriteOperation::Insert,
        Op::Delete => WriteOperation::Delete,
    };
    let opts = WriteOptions {
        operation,
        ..Default::default()
    };
    // A conflict with a concurrent writer or a compaction scheduled meanwhile is retried.
    let s = table
        .write_retrying(batches, opts, 10)
        .await
        .with_context(|| format!("writing to {}", a.table))?;
    for t in &s.rolled_back {
        println!("rolled back failed instant {t}");
    }
    match s.instant {
        Some(t) => println!(
            "committed {t}: {} rows in ({} after dedupe, {skipped} tombstones skipped), {} inserted, {} updated, {} deleted, {} stale ignored; {} files, {} bytes, {} partitions{}",
            s.rows_in,
            s.rows_deduped,
            s.inserts,
            s.updates,
            s.deletes,
            s.stale,
            s.files_written,
            s.bytes_written,
            s.partitions,
            match s.retries {
                0 => String::new(),
                n => format!("; retried {n} times after conflicts"),
            }
        ),
        None => println!("nothing to commit ({skipped} tombstones skipped)"),
    }
    Ok(())
}

/// The text of an input file; bytes that are not UTF-8 are an error naming the line, never
/// replaced.
fn utf8<'a>(input: &str, bytes: &'a [u8]) -> anyhow::Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{input}:{line}: the line is not valid UTF-8")
    })
}
