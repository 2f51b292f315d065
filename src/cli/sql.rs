//! `lake sql`: a SQL shell over lake tables with datafusion-cli's conventions.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use lake_query::datafusion::prelude::SessionContext;
use lake_query::datafusion::sql::parser::DFParser;
use lake_query::datafusion::sql::sqlparser::dialect::{GenericDialect, dialect_from_str};
use lake_query::{HudiTableProvider, QueryOptions};

/// Output formats (datafusion-cli's names).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// Tab-separated values with a header.
    Tsv,
    /// One JSON array of row objects.
    Json,
    /// JSON Lines.
    NdJson,
}

/// Arguments of `lake sql`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run these SQL statements and exit (repeatable; `;` separates statements).
    #[arg(short = 'c', long = "command")]
    pub commands: Vec<String>,
    /// Run the SQL statements in these files and exit (repeatable).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<String>,
    /// Register a table without DDL: NAME=URI (snapshot query; repeatable).
    #[arg(long = "table", value_name = "NAME=URI")]
    pub tables: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Quiet: no row counts or timings.
    #[arg(short, long)]
    pub quiet: bool,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let ctx = lake_query::session();
    for t in &a.tables {
        let (name, uri) = t
            .split_once('=')
            .with_context(|| format!("--table {t:?}: expected NAME=URI"))?;
        let provider = HudiTableProvider::try_new(uri, QueryOptions::default())
            .await
            .with_context(|| format!("opening table {uri}"))?;
        ctx.register_table(name, std::sync::Arc::new(provider))?;
    }
    let shell = Shell {
        ctx,
        format: a.format,
        quiet: a.quiet,
    };
    if a.commands.is_empty() && a.files.is_empty() {
        return shell.repl().await;
    }
    for c in &a.commands {
        shell.execute(c).await?;
    }
    for f in &a.files {
        let sql = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        shell.execute(&sql).await?;
    }
    Ok(())
}

struct Shell {
    ctx: SessionContext,
    format: Format,
    quiet: bool,
}

impl Shell {
    /// Runs every statement of `sql`, printing each result.
    async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let name = self
            .ctx
            .state()
            .config()
            .options()
            .sql_parser
            .dialect
            .to_string();
        let dialect = dialect_from_str(&name).unwrap_or_else(|| Box::new(GenericDialect {}));
        let statements = DFParser::parse_sql_with_dialect(sql, dialect.as_ref())?;
        for statement in statements {
            let started = Instant::now();
            let plan = self.ctx.state().statement_to_plan(statement).await?;
            let df = self.ctx.execute_logical_plan(plan).await?;
            let schema = df.schema().as_arrow().clone();
            let batches = df.collect().await?;
            self.print(&schema, &batches)?;
            if !self.quiet {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                eprintln!(
                    "{rows} row(s) fetched. Elapsed {:.3} seconds.\n",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }

    fn print(
        &self,
        schema: &arrow::datatypes::Schema,
        batches: &[RecordBatch],
    ) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        let empty = batches.iter().all(|b| b.num_rows() == 0);
        match self.format {
            Format::Table => {
                if empty && schema.fields().is_empty() {
                    return Ok(());
                }
                // An empty result still shows its columns.
                writeln!(
                    out,
                    "{}",
                    arrow::util::pretty::pretty_format_batches_with_schema(
                        std::sync::Arc::new(schema.clone()),
                        batches
                    )?
                )?;
            }
            Format::Csv | Format::Tsv => {
                let delimiter = if matches!(self.format, Format::Tsv) {
                    b'\t'
                } else {
                    b','
                };
                if empty {
                    // The header alone: the writer prints nothing without rows.
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    if !names.is_empty() {
                        writeln!(out, "{}", names.join(&(delimiter as char).to_string()))?;
                    }
                    return Ok(());
                }
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_delimiter(delimiter)
                    .build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            Format::Json => {
                let mut w = arrow::json::ArrayWriter::new(&mut out);
                w.write_batches(&batches.iter().collect::<Vec<_>>())?;
                w.finish()?;
                writeln!(out)?;
            }
            Format::NdJson => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                w.write_batches(&batches.iter().collect::<Vec<_>>())?;
                w.finish()?;
            }
        }
        Ok(())
    }

    /// Reads statements from standard input until EOF or `\q`; errors are printed and the shell goes on.
    async fn repl(&self) -> anyhow::Result<()> {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        let mut pending = String::new();
        let prompt = |pending: &str| {
            if interactive {
                eprint!(
                    "{}",
                    if pending.is_empty() {
                        "lake> "
                    } else {
                        "  ... "
                    }
                );
                let _ = std::io::stderr().flush();
            }
        };
        prompt(&pending);
        let mut failed = false;
        for line in stdin.lock().lines() {
            let line = line?;
            if pending.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                break;
            }
            pending.push_str(&line);
            pending.push('\n');
            if line.trim_end().ends_with(';') {
                if let Err(e) = self.execute(&pending).await {
                    eprintln!("error: {}", one_line(&e));
                    failed = true;
                }
                pending.clear();
            }
            prompt(&pending);
        }
        if !pending.trim().is_empty()
            && let Err(e) = self.execute(&pending).await
        {
            eprintln!("error: {}", one_line(&e));
            failed = true;
        }
        if failed && !interactive {
            bail!("some statements failed");
        }
        Ok(())
    }
}

fn one_line(e: &anyhow::Error) -> String {
    super::error_text(e)
}
