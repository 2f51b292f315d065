//! `lake savepoint` and `lake restore`: pin a completed write's snapshot, and bring the table back
//! to exactly such a pin.

use anyhow::Context;
use lake_compaction::{create_savepoint, delete_savepoint, list_savepoints, restore};
use lake_table::Table;

/// What `lake savepoint` does.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Verb {
    /// Savepoint a completed write (the latest unless --instant).
    Create,
    /// Delete a savepoint (--instant).
    Delete,
    /// List the savepoints.
    List,
}

/// Arguments of `lake savepoint`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// create, delete or list.
    #[arg(value_enum)]
    pub verb: Verb,
    /// Table URI.
    pub table: String,
    /// The instant to savepoint or whose savepoint to delete.
    #[arg(long)]
    pub instant: Option<String>,
    /// A comment stored with a new savepoint.
    #[arg(long, default_value = "")]
    pub comment: String,
}

/// Arguments of `lake restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Table URI.
    pub table: String,
    /// The savepoint to restore the table to.
    #[arg(long)]
    pub to: String,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let instant = a
        .instant
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--instant")?;
    match a.verb {
        Verb::Create => {
            let t = create_savepoint(&table, instant, &a.comment).await?;
            println!("savepoint {t} created");
        }
        Verb::Delete => {
            let t = instant.context("delete needs --instant")?;
            delete_savepoint(&table, t).await?;
            println!("savepoint {t} deleted");
        }
        Verb::List => {
            for s in list_savepoints(&table).await? {
                println!(
                    "{}  {}  {} files",
                    s.instant,
                    if s.completed { "COMPLETED" } else { "INFLIGHT" },
                    s.files
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn run_restore(a: RestoreArgs) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let to = a.to.parse().context("--to")?;
    let r = restore(&table, to).await?;
    println!(
        "restored to {to} as {}: {} instants rolled back, {} files deleted",
        r.instant.map(|t| t.to_string()).unwrap_or_default(),
        r.rolled_back.len(),
        r.files_deleted
    );
    Ok(())
}
