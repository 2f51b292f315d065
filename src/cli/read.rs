//! `lake read`: prints the rows of a table snapshot (or as of an instant).

use std::io::Write;

use anyhow::Context;
use lake_table::{ReadOptions, Table};

/// Output formats of `lake read`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// JSON Lines.
    Json,
}

/// Arguments of `lake read`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Read the table as of this completed instant (time travel).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Keep the `_hoodie_*` meta columns.
    #[arg(long)]
    pub meta: bool,
    /// Merge-on-read tables: read base files only (the read-optimized view).
    #[arg(long)]
    pub read_optimized: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let as_of = a
        .as_of
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--as-of")?;
    let opts = ReadOptions {
        as_of,
        with_meta_columns: a.meta,
        concurrency: None,
        read_optimized: a.read_optimized,
    };
    let (_schema, batches) = table.read_snapshot(&opts).await?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(&batches)?
        )?,
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
    }
    Ok(())
}
