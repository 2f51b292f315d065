//! `lake compact`: the table-service job run from cron. Per table: roll back writes whose writer is
//! gone, schedule a compaction when due, execute every pending compaction, clean, then archive the
//! timeline's oldest instants.

use lake_compaction::{
    CleanPolicy, CompactionStrategy, Scheduled, clean, execute_pending, schedule,
};
use lake_table::{Table, TableType};

/// Arguments of `lake compact`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URIs.
    #[arg(required = true)]
    pub tables: Vec<String>,
    /// Schedule a compaction after this many deltacommits since the last one.
    #[arg(long, default_value_t = 5)]
    pub max_delta_commits: usize,
    /// Also schedule once the table's logs hold this many bytes (0: never by size).
    #[arg(long, default_value_t = 0)]
    pub max_log_bytes: u64,
    /// Only schedule; leave execution to a later run.
    #[arg(long, conflicts_with = "execute_only")]
    pub schedule_only: bool,
    /// Only execute pending compactions; schedule nothing.
    #[arg(long)]
    pub execute_only: bool,
    /// Do not clean.
    #[arg(long)]
    pub skip_clean: bool,
    /// Cleaning keeps what snapshots as of the last N completed writes need.
    #[arg(long, default_value_t = 10)]
    pub retain_commits: usize,
    /// File groups compacted at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Do not archive the timeline.
    #[arg(long)]
    pub skip_archive: bool,
    /// How many writes the active timeline keeps.
    #[command(flatten)]
    pub retention: super::archive::Retention,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    for uri in &a.tables {
        compact_one(&a, uri)
            .await
            .map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
    }
    Ok(())
}

async fn compact_one(a: &Args, uri: &str) -> anyhow::Result<()> {
    let table = Table::open(uri).await?;
    let started = std::time::Instant::now();
    let rolled = table.rollback_expired_writes().await?;
    for t in &rolled {
        println!("{uri}: rolled back failed write {t}");
    }
    let mor = table.config().table_type == TableType::MergeOnRead;
    if mor && !a.execute_only {
        let strategy = CompactionStrategy {
            max_delta_commits: a.max_delta_commits,
            max_log_bytes: a.max_log_bytes,
        };
        match schedule(&table, strategy).await? {
            Scheduled::Planned {
                instant,
                file_groups,
                log_bytes,
            } => println!(
                "{uri}: scheduled compaction {instant}: {file_groups} file groups, {log_bytes} log bytes"
            ),
            Scheduled::NotDue(why) => println!("{uri}: no compaction scheduled: {why}"),
        }
    }
    if mor && !a.schedule_only {
        let t = std::time::Instant::now();
        for r in execute_pending(&table, a.parallelism).await? {
            println!(
                "{uri}: compacted {}: {} file groups, {} records, {} bytes read, {} bytes written in {:.2}s",
                r.instant.map(|i| i.to_string()).unwrap_or_default(),
                r.file_groups,
                r.records,
                r.bytes_read,
                r.bytes_written,
                t.elapsed().as_secs_f64()
            );
        }
    }
    if !a.skip_clean {
        let r = clean(&table, CleanPolicy::KeepLatestCommits(a.retain_commits)).await?;
        match r.instant {
            Some(t) => println!(
                "{uri}: cleaned {t}: {} files, {} bytes deleted",
                r.deleted.len(),
                r.bytes_deleted
            ),
            None => println!("{uri}: nothing to clean"),
        }
    }
    if !a.skip_archive && table.config().layout() != lake_table::timeline::Layout::V1 {
        println!("{uri}: timeline not archived: lake archives table version 6 timelines only");
    } else if !a.skip_archive {
        let t = std::time::Instant::now();
        let r = lake_compaction::archive(&table, a.retention.policy()).await?;
        println!(
            "{uri}: {}",
            super::archive::describe(&r, t.elapsed().as_secs_f64())
        );
    }
    println!("{uri}: done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
