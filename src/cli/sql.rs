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
    /// Run queries on a `lake scheduler` at HOST:PORT and its executors instead of in this process.
    #[arg(long, value_name = "HOST:PORT")]
    pub cluster: Option<String>,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let ctx = match &a.cluster {
        Some(addr) => super::cluster::cluster_session(addr)?,
        None => lake_query::session(),
    };
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
        timing: std::cell::Cell::new(true),
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
    /// Whether the row-count line shows the elapsed time (`\timing` toggles it).
    timing: std::cell::Cell<bool>,
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
                if self.timing.get() {
                    eprintln!(
                        "{rows} row(s) fetched. Elapsed {:.3} seconds.\n",
                        started.elapsed().as_secs_f64()
                    );
                } else {
                    eprintln!("{rows} row(s) fetched.\n");
                }
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

    /// Reads statements until EOF or `\q`: with line editing and history on a terminal, line by line
    /// otherwise. Errors are printed and the shell goes on (piped input exits non-zero at the end).
    async fn repl(&self) -> anyhow::Result<()> {
        if std::io::stdin().is_terminal() {
            return self.interactive().await;
        }
        let mut pending = String::new();
        let mut failed = false;
        for line in std::io::stdin().lock().lines() {
            match self.feed(&line?, &mut pending, false).await {
                Step::Quit => break,
                Step::Failed => failed = true,
                Step::Go => {}
            }
        }
        if !pending.trim().is_empty()
            && let Err(e) = self.execute(&pending).await
        {
            eprintln!("error: {}", one_line(&e));
            failed = true;
        }
        if failed {
            bail!("some statements failed");
        }
        Ok(())
    }

    /// The terminal shell: rustyline editing, history in `$LAKE_HISTORY` (default
    /// `~/.lake_history`), Ctrl-C cancels the line or the running query, Ctrl-D quits.
    async fn interactive(&self) -> anyhow::Result<()> {
        let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
        let history = std::env::var_os("LAKE_HISTORY")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".lake_history"))
            });
        if let Some(h) = &history {
            // A missing history file is a first session.
            let _ = editor.load_history(h);
        }
        eprintln!(
            "lake sql {} (DataFusion {}): end statements with ';', \\? for help, \\q to quit",
            env!("CARGO_PKG_VERSION"),
            lake_query::datafusion::DATAFUSION_VERSION
        );
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                "lake> "
            } else {
                "  ... "
            };
            match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(h) = &history {
                            let _ = editor.append_history(h);
                        }
                    }
                    if let Step::Quit = self.feed(&line, &mut pending, true).await {
                        break;
                    }
                }
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt drops the statement being typed.
                    pending.clear();
                }
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => return Err(e).context("reading a line"),
            }
        }
        Ok(())
    }

    /// Takes one line of input: a backslash command (never part of SQL), `quit`/`exit`, or SQL that
    /// runs once a line ends with `;`.
    async fn feed(&self, line: &str, pending: &mut String, cancellable: bool) -> Step {
        let trimmed = line.trim();
        if let Some(command) = trimmed.strip_prefix('\\') {
            return self.backslash(command, cancellable).await;
        }
        if pending.is_empty() && matches!(trimmed, "quit" | "exit") {
            return Step::Quit;
        }
        pending.push_str(line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            return Step::Go;
        }
        let sql = std::mem::take(pending);
        self.run_reporting(&sql, cancellable).await
    }

    /// Runs SQL, printing an error instead of returning it; with `cancellable`, Ctrl-C stops it.
    async fn run_reporting(&self, sql: &str, cancellable: bool) -> Step {
        let result = if cancellable {
            tokio::select! {
                r = self.execute(sql) => r,
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("query cancelled");
                    return Step::Go;
                }
            }
        } else {
            self.execute(sql).await
        };
        match result {
            Ok(()) => Step::Go,
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                Step::Failed
            }
        }
    }

    /// `\d`, `\d NAME`, `\timing`, `\?`, `\q`.
    async fn backslash(&self, command: &str, cancellable: bool) -> Step {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        match (name, arg) {
            ("q", "") => Step::Quit,
            ("?", "") => {
                println!("{}", HELP.trim_end());
                Step::Go
            }
            ("d", "") => self.run_reporting("SHOW TABLES;", cancellable).await,
            ("d", table) => {
                let table = table.trim_end_matches(';');
                self.run_reporting(&format!("SHOW COLUMNS FROM {table};"), cancellable)
                    .await
            }
            ("timing", "") => {
                let on = !self.timing.get();
                self.timing.set(on);
                eprintln!("timing is {}", if on { "on" } else { "off" });
                Step::Go
            }
            _ => {
                eprintln!("error: unknown command \\{command}; \\? lists the commands");
                Step::Failed
            }
        }
    }
}

/// What the shell does after a line.
enum Step {
    /// Read the next line.
    Go,
    /// A statement or command failed; read the next line.
    Failed,
    /// Leave the shell.
    Quit,
}

const HELP: &str = r"
\d              list tables
\d NAME         describe a table's columns
\timing         show or hide each statement's elapsed time
\?              this help
\q              quit (also quit, exit or Ctrl-D)
Statements end with ';' and may span lines. Ctrl-C cancels the running query or the line being typed.
Tables: CREATE EXTERNAL TABLE t STORED AS HUDI LOCATION '<uri>'; or lake sql --table t=<uri>.
Table functions: lake_snapshot(uri), lake_as_of(uri, instant), lake_incremental(uri, begin[, end]),
lake_changes(uri, begin[, end]), lake_timeline(uri).
";

fn one_line(e: &anyhow::Error) -> String {
    super::error_text(e)
}
