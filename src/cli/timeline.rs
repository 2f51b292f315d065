//! `lake timeline`: the instants of a table and the write stats of each commit.

use lake_table::Table;

/// Arguments of `lake timeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Show every state file of every instant (requested, inflight, completed), as Hudi's CLI does.
    #[arg(long)]
    pub all: bool,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let timeline = table.timeline().await?;
    if a.all {
        let (files, _) = table
            .storage()
            .list_dir(table.config().layout().dir())
            .await?;
        let mut states: Vec<lake_table::timeline::Instant> = files
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(lake_table::timeline::Instant::parse_file_name)
            .collect();
        states.sort_by_key(|i| (i.time, i.state));
        println!("{:<17}  {:<13}  state", "instant", "action");
        for i in states {
            println!(
                "{:<17}  {:<13}  {}",
                i.time.to_string(),
                i.action.name(),
                i.state
            );
        }
        return Ok(());
    }
    println!(
        "{:<17}  {:<13}  {:<9}  details",
        "instant", "action", "state"
    );
    for inst in timeline.instants() {
        let details = if inst.is_completed() && inst.action.writes_data() {
            let m = timeline.commit_metadata(inst).await?;
            let stats: Vec<_> = m.write_stats().collect();
            let sum = |f: fn(&lake_table::timeline::WriteStat) -> i64| {
                stats.iter().map(|s| f(s)).sum::<i64>()
            };
            format!(
                "{} partitions, {} files, {} inserts, {} updates, {} deletes, {} records, {} bytes{}",
                m.partition_to_write_stats.len(),
                stats.len(),
                sum(|s| s.num_inserts),
                sum(|s| s.num_update_writes),
                sum(|s| s.num_deletes),
                sum(|s| s.num_writes),
                sum(|s| s.total_write_bytes),
                m.operation_type
                    .as_ref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            ) + &replaced(&m)
        } else {
            String::new()
        };
        // Timeline layout 2 (versions 8/9) orders instants by completion time.
        let details = match inst.completion {
            Some(c) if details.is_empty() => format!("completed {c}"),
            Some(c) => format!("completed {c}; {details}"),
            None => details,
        };
        println!(
            "{:<17}  {:<13}  {:<9}  {details}",
            inst.time.to_string(),
            inst.action.name(),
            inst.state.to_string()
        );
    }
    Ok(())
}

/// ", replaces N file groups" for a replacecommit.
fn replaced(m: &lake_table::timeline::CommitMetadata) -> String {
    let n: usize = m.partition_to_replace_file_ids.values().map(Vec::len).sum();
    if n == 0 {
        String::new()
    } else {
        format!(", replaces {n} file groups")
    }
}
