//! Command-line parsing and dispatch; each subcommand lives in its own module.

mod archive;
mod changes;
mod clean;
mod cluster;
mod compact;
mod create;
mod demo;
mod info;
mod ingest;
mod read;
mod rollback;
mod savepoint;
mod sql;
mod timeline;
mod write;

use clap::{Parser, Subcommand};

/// lake: Hudi-compatible lakehouse tables from change events.
#[derive(Debug, Parser)]
#[command(name = "lake", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on an embedded Kafka cluster: events in, tables out, SQL answers.
    Demo(demo::Args),
    /// Create a new table.
    Create(create::Args),
    /// Write files of rows or change events into a table as one commit.
    Write(write::Args),
    /// Consume Kafka topics into tables, exactly once (long-running).
    Ingest(ingest::Args),
    /// Show the instants of a table's timeline.
    Timeline(timeline::Args),
    /// Show a table's health at a glance: config, files, pending services, last commit, timeline.
    Info(info::Args),
    /// Print the rows of a table (snapshot, or as of an instant).
    Read(read::Args),
    /// Print the change feed of a range of commits: inserts, updates and deletes with before and
    /// after images, and the instant to resume from.
    Changes(changes::Args),
    /// Delete file versions no retained instant needs (a clean instant).
    Clean(clean::Args),
    /// Table services for cron: roll back failed writes, schedule and execute compactions, clean,
    /// archive the timeline.
    Compact(compact::Args),
    /// Move the oldest completed instants into the archived timeline (keeps the active one bounded).
    Archive(archive::Args),
    /// Roll back failed (inflight) writes.
    Rollback(rollback::Args),
    /// Create, delete or list savepoints (pinned snapshots the cleaner keeps).
    Savepoint(savepoint::Args),
    /// Restore the table to a savepoint.
    Restore(savepoint::RestoreArgs),
    /// Query tables with SQL (DataFusion; datafusion-cli conventions).
    Sql(sql::Args),
    /// Run a distributed SQL scheduler (DataFusion Ballista) for `lake sql --cluster`.
    Scheduler(cluster::SchedulerArgs),
    /// Run a distributed SQL executor that takes tasks from a `lake scheduler`.
    Executor(cluster::ExecutorArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a).await,
        Command::Create(a) => create::run(a).await,
        Command::Write(a) => write::run(a).await,
        Command::Ingest(a) => ingest::run(a).await,
        Command::Timeline(a) => timeline::run(a).await,
        Command::Info(a) => info::run(a).await,
        Command::Read(a) => read::run(a).await,
        Command::Changes(a) => changes::run(a).await,
        Command::Clean(a) => clean::run(a).await,
        Command::Compact(a) => compact::run(a).await,
        Command::Archive(a) => archive::run(a).await,
        Command::Rollback(a) => rollback::run(a).await,
        Command::Savepoint(a) => savepoint::run(a).await,
        Command::Restore(a) => savepoint::run_restore(a).await,
        Command::Sql(a) => sql::run(a).await,
        Command::Scheduler(a) => cluster::run_scheduler(a).await,
        Command::Executor(a) => cluster::run_executor(a).await,
    }
}

/// An error and its causes on one line, each cause once: a cause whose text the message before it
/// already carries (DataFusion's `External error: …`, errors that quote their source) is left out.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        let text = text.trim();
        if text.is_empty() || out.contains(text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
}

/// Splits a comma-separated field list.
pub(crate) fn fields(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
