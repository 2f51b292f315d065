//! `lake rollback`: rolls back failed (inflight) writes and records rollback instants.

use anyhow::Context;
use lake_table::Table;

/// Arguments of `lake rollback`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// The pending instant to roll back (default: every failed write).
    #[arg(long)]
    pub instant: Option<String>,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    match a.instant {
        Some(t) => {
            let time = t.parse().context("--instant")?;
            match table.rollback_pending(time).await? {
                Some(r) => println!("rolled back {time} (rollback instant {r})"),
                None => println!(
                    "{time} was not rolled back: its commit had been decided first (now published) or another rollback owns it"
                ),
            }
        }
        None => {
            let rolled = table.rollback_failed_writes().await?;
            if rolled.is_empty() {
                println!("no failed writes to roll back");
            }
            for t in rolled {
                println!("rolled back {t}");
            }
        }
    }
    Ok(())
}
