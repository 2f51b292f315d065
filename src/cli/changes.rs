//! `lake changes`: prints a table's change feed over (since, until] for scripts, and the instant the
//! next run resumes from.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Field, Schema};
use lake_table::Table;
use lake_table::changes::ChangeQuery;

/// Output formats of `lake changes`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// JSON Lines: one change per line, images as nested objects.
    NdJson,
    /// One JSON array.
    Json,
    /// CSV with a header; image columns are flattened to `before.<column>` and `after.<column>`.
    Csv,
    /// An aligned text table.
    Table,
}

/// Arguments of `lake changes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Exclusive begin: an instant time or a timestamp (UTC); on table versions 8/9 a completion
    /// time, as in Hudi 1.x.
    #[arg(long)]
    pub since: String,
    /// Inclusive end (the latest completed write when absent).
    #[arg(long)]
    pub until: Option<String>,
    /// One row per record over the whole range instead of one per write.
    #[arg(long)]
    pub net: bool,
    /// Infer every change from file slices, even where the table's CDC log files hold them.
    #[arg(long)]
    pub infer: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "nd-json")]
    pub format: Format,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let begin = lake_query::parse_time(&a.since)
        .map_err(anyhow::Error::msg)
        .context("--since")?;
    let end = a
        .until
        .as_deref()
        .map(lake_query::parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--until")?;
    let table = Table::open(&a.table).await?;
    let feed = table
        .changes(&ChangeQuery {
            begin,
            end,
            net: a.net,
            schema: None,
            infer: a.infer,
        })
        .await?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::NdJson => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            w.write_batches(&feed.batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            w.write_batches(&feed.batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
            // An empty feed is `[]` too: the writer brackets whatever it was given.
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            let flat = flat_schema(&feed.schema);
            if feed.batches.is_empty() {
                let names: Vec<&str> = flat.fields().iter().map(|f| f.name().as_str()).collect();
                drop(w);
                writeln!(out, "{}", names.join(","))?;
            } else {
                for b in &feed.batches {
                    w.write(&flatten(b, &flat)?)?;
                }
            }
        }
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(&feed.batches)?
        )?,
    }
    drop(out);
    // The resume point goes to stderr so stdout stays pure data.
    let resume = feed.end.unwrap_or(begin);
    let s = feed.sources;
    let source = match (s.cdc_logs, s.inferred) {
        (0, _) => "inferred from file slices".to_owned(),
        (_, 0) => "from CDC log files".to_owned(),
        (c, i) => format!(
            "from CDC log files ({c} file-group changes) and inferred from file slices ({i})"
        ),
    };
    eprintln!(
        "{} changes from {} writes in ({begin}, {resume}], {source}; resume with --since {resume}",
        feed.num_rows(),
        feed.commits.len(),
    );
    Ok(())
}

/// The feed's schema with each image struct replaced by its columns, named `<image>.<column>`.
fn flat_schema(schema: &Schema) -> Arc<Schema> {
    let mut fields = Vec::new();
    for f in schema.fields() {
        match f.data_type() {
            arrow::datatypes::DataType::Struct(children) => {
                for c in children {
                    fields.push(Field::new(
                        format!("{}.{}", f.name(), c.name()),
                        c.data_type().clone(),
                        true,
                    ));
                }
            }
            _ => fields.push(f.as_ref().clone()),
        }
    }
    Arc::new(Schema::new(fields))
}

fn flatten(batch: &RecordBatch, flat: &Arc<Schema>) -> anyhow::Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    for col in batch.columns() {
        match col.as_struct_opt() {
            // A null image's columns are null (the feed builds them so).
            Some(s) => columns.extend(s.columns().iter().cloned()),
            None => columns.push(col.clone()),
        }
    }
    Ok(RecordBatch::try_new(flat.clone(), columns)?)
}
