//! `lake timeline`: the instants of a table (active and, on request, archived) with the details of
//! each: write stats of commits, what cleans, rollbacks, savepoints and restores did, and the size
//! of pending compaction plans.

use lake_table::Table;
use lake_table::archive::{ArchivedTimeline, Details};
use lake_table::timeline::wire;
use lake_table::timeline::{Action, CommitMetadata, Instant, State, Timeline};
use serde_json::Value;

/// Arguments of `lake timeline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Show every state file of every instant (requested, inflight, completed), as Hudi's CLI does.
    #[arg(long)]
    pub all: bool,
    /// Also show the archived instants (`.hoodie/archived/`, or the LSM history of versions 8/9).
    #[arg(long)]
    pub archived: bool,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let timeline = table.timeline().await?;
    if a.all {
        let (files, _) = table
            .storage()
            .list_dir(table.config().layout().dir())
            .await?;
        let mut states: Vec<Instant> = files
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(Instant::parse_file_name)
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
    if a.archived {
        let archived = ArchivedTimeline::load(table.storage(), table.config().layout()).await?;
        // An archival that was interrupted leaves instants on both: the active copy is shown.
        for i in archived
            .instants()
            .iter()
            .filter(|i| timeline.find(i.time).is_none())
        {
            let content = match &i.details {
                Details::None => Value::Null,
                Details::Json(v) => v.clone(),
                Details::Avro(b) => match i.action {
                    Some(a) => wire::content_json(a, State::Completed, b).unwrap_or(Value::Null),
                    None => Value::Null,
                },
            };
            let details = with_completion(i.completion, summary(i.action, &content));
            println!(
                "{:<17}  {:<13}  {:<9}  {details}",
                i.time.to_string(),
                i.action_name,
                "ARCHIVED"
            );
        }
    }
    for inst in timeline.instants() {
        let details = with_completion(inst.completion, details(&timeline, inst).await?);
        println!(
            "{:<17}  {:<13}  {:<9}  {details}",
            inst.time.to_string(),
            inst.action.name(),
            inst.state.to_string()
        );
    }
    Ok(())
}

/// Timeline layout 2 (versions 8/9) orders instants by completion time.
fn with_completion(
    completion: Option<lake_table::timeline::InstantTime>,
    details: String,
) -> String {
    match completion {
        Some(c) if details.is_empty() => format!("completed {c}"),
        Some(c) => format!("completed {c}; {details}"),
        None => details,
    }
}

/// The details of an active instant: its completed file's content, or a pending compaction's plan.
async fn details(timeline: &Timeline, inst: &Instant) -> anyhow::Result<String> {
    if inst.is_completed() && inst.action.writes_data() {
        let m = timeline.commit_metadata(inst).await?;
        return Ok(write_summary(&m));
    }
    let file = match (inst.state, inst.action) {
        (State::Completed, _) => *inst,
        (_, Action::Compaction | Action::LogCompaction) => {
            Instant::new(inst.time, inst.action, State::Requested)
        }
        _ => return Ok(String::new()),
    };
    let path = timeline.instant_path(&file);
    let Some(bytes) = timeline.storage().get_opt(&path).await? else {
        return Ok(String::new());
    };
    let content = wire::content_json(file.action, file.state, &bytes).map_err(|e| {
        anyhow::anyhow!(
            "bad timeline metadata in {}: {e}",
            timeline.storage().display(&path)
        )
    })?;
    Ok(summary(Some(inst.action), &content))
}

/// What an instant did, from its metadata as JSON (Hudi's field names).
fn summary(action: Option<Action>, v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let len = |k: &str| v.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    match action {
        Some(a) if a.writes_data() => serde_json::from_value::<CommitMetadata>(v.clone())
            .map(|m| write_summary(&m))
            .unwrap_or_default(),
        Some(Action::Clean) => format!(
            "{} files deleted, earliest retained {}",
            n("totalFilesDeleted"),
            s("earliestCommitToRetain")
        ),
        Some(Action::Rollback) => {
            let rolled: Vec<&str> = v
                .get("commitsRollback")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "rolled back {}; {} files deleted",
                rolled.join(", "),
                n("totalFilesDeleted")
            )
        }
        Some(Action::Savepoint) => {
            let files: usize = v
                .get("partitionMetadata")
                .and_then(Value::as_object)
                .map(|m| {
                    m.values()
                        .filter_map(|p| p.get("savepointDataFile").and_then(Value::as_array))
                        .map(Vec::len)
                        .sum()
                })
                .unwrap_or(0);
            format!("pins {files} files, by {}", s("savepointedBy"))
        }
        Some(Action::Restore) => format!(
            "rolled back {} instants; {} files deleted",
            len("instantsToRollback").max(len("restoreInstantInfo")),
            n("totalFilesDeleted")
        ),
        Some(Action::Compaction | Action::LogCompaction) => {
            format!("plan of {} file groups", len("operations"))
        }
        _ => String::new(),
    }
}

fn write_summary(m: &CommitMetadata) -> String {
    let stats: Vec<_> = m.write_stats().collect();
    let sum =
        |f: fn(&lake_table::timeline::WriteStat) -> i64| stats.iter().map(|s| f(s)).sum::<i64>();
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
    ) + &replaced(m)
}

/// ", replaces N file groups" for a replacecommit.
fn replaced(m: &CommitMetadata) -> String {
    let n: usize = m.partition_to_replace_file_ids.values().map(Vec::len).sum();
    if n == 0 {
        String::new()
    } else {
        format!(", replaces {n} file groups")
    }
}
