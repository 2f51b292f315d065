//! `lake compact`: the table-service job run from cron. Per table: roll back writes whose writer is
//! gone, schedule a compaction when due, execute every pending compaction, clean, then archive the
//! timeline's oldest instants.

use anyhow::Context as _;
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
    /// Also write the run's figures per table to this file in Prometheus text format (replaced
    /// atomically; for node_exporter's textfile collector).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
}

/// What one table's run did (the figures of `--metrics-file`).
#[derive(Debug, Default)]
struct Figures {
    ok: bool,
    seconds: f64,
    rolled_back: usize,
    scheduled: usize,
    compactions: usize,
    file_groups: usize,
    records: u64,
    bytes_read: u64,
    bytes_written: u64,
    cleaned_files: usize,
    cleaned_bytes: u64,
    archived: usize,
    pending: usize,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    // Every table is tried: one failing (unreachable, damaged, locked by a restore) does not keep
    // the others from their services; the run fails at the end.
    let mut figures = Vec::new();
    let mut failed = Vec::new();
    for uri in &a.tables {
        let started = std::time::Instant::now();
        let mut f = Figures::default();
        match compact_one(&a, uri, &mut f).await {
            Ok(()) => f.ok = true,
            Err(e) => {
                let text = format!("{uri}: {}", super::error_text(&e));
                if a.tables.len() > 1 {
                    eprintln!("error: {text}");
                    failed.push(uri.clone());
                } else {
                    failed.push(text);
                }
            }
        }
        f.seconds = started.elapsed().as_secs_f64();
        figures.push((uri.clone(), f));
    }
    if let Some(path) = &a.metrics_file {
        write_metrics(path, &figures)?;
    }
    if a.tables.len() > 1 {
        println!(
            "{} tables: {} done, {} failed",
            a.tables.len(),
            a.tables.len() - failed.len(),
            failed.len()
        );
    }
    match failed.len() {
        0 => Ok(()),
        1 if a.tables.len() == 1 => Err(anyhow::anyhow!("{}", failed[0])),
        n => Err(anyhow::anyhow!(
            "{n} of {} tables failed: {}",
            a.tables.len(),
            failed.join(", ")
        )),
    }
}

/// The table label of a URI: its last path segment.
fn table_label(uri: &str) -> String {
    lake_table::TableConfig::name_from_uri(uri)
}

/// Writes the figures in Prometheus text format, through a temporary file and a rename so that a
/// collector never reads half a file.
fn write_metrics(path: &std::path::Path, figures: &[(String, Figures)]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    type Get = fn(&Figures) -> f64;
    let gauges: [(&str, &str, Get); 14] = [
        (
            "lake_compact_success",
            "1 if the table's last run succeeded, else 0",
            |f| f64::from(u8::from(f.ok)),
        ),
        (
            "lake_compact_duration_seconds",
            "Duration of the table's last run",
            |f| f.seconds,
        ),
        (
            "lake_compact_rolled_back_writes",
            "Failed writes rolled back",
            |f| f.rolled_back as f64,
        ),
        (
            "lake_compact_scheduled_compactions",
            "Compactions scheduled",
            |f| f.scheduled as f64,
        ),
        (
            "lake_compact_executed_compactions",
            "Compactions executed",
            |f| f.compactions as f64,
        ),
        (
            "lake_compact_compacted_file_groups",
            "File groups compacted",
            |f| f.file_groups as f64,
        ),
        (
            "lake_compact_compacted_records",
            "Records written by compactions",
            |f| f.records as f64,
        ),
        (
            "lake_compact_read_bytes",
            "Bytes read by compactions",
            |f| f.bytes_read as f64,
        ),
        (
            "lake_compact_written_bytes",
            "Bytes written by compactions",
            |f| f.bytes_written as f64,
        ),
        (
            "lake_compact_cleaned_files",
            "Files deleted by the clean",
            |f| f.cleaned_files as f64,
        ),
        (
            "lake_compact_cleaned_bytes",
            "Bytes deleted by the clean",
            |f| f.cleaned_bytes as f64,
        ),
        (
            "lake_compact_archived_instants",
            "Instants moved to the archived timeline",
            |f| f.archived as f64,
        ),
        (
            "lake_compact_pending_compactions",
            "Compactions requested or inflight after the run",
            |f| f.pending as f64,
        ),
        (
            "lake_compact_last_run_timestamp_seconds",
            "Unix time at the end of the run",
            |_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            },
        ),
    ];
    let mut text = String::new();
    for (name, help, get) in gauges {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (uri, f) in figures {
            let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
            let (table, uri) = (escape(&table_label(uri)), escape(uri));
            let _ = writeln!(text, "{name}{{table=\"{table}\",uri=\"{uri}\"}} {}", get(f));
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn compact_one(a: &Args, uri: &str, fig: &mut Figures) -> anyhow::Result<()> {
    let table = Table::open(uri).await?;
    let started = std::time::Instant::now();
    let rolled = table.rollback_expired_writes().await?;
    fig.rolled_back = rolled.len();
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
            } => {
                fig.scheduled += 1;
                println!(
                    "{uri}: scheduled compaction {instant}: {file_groups} file groups, {log_bytes} log bytes"
                )
            }
            Scheduled::NotDue(why) => println!("{uri}: no compaction scheduled: {why}"),
        }
    }
    if mor && !a.schedule_only {
        let t = std::time::Instant::now();
        for r in execute_pending(&table, a.parallelism).await? {
            fig.compactions += 1;
            fig.file_groups += r.file_groups;
            fig.records += r.records;
            fig.bytes_read += r.bytes_read;
            fig.bytes_written += r.bytes_written;
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
        fig.cleaned_files = r.deleted.len();
        fig.cleaned_bytes = r.bytes_deleted;
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
        fig.archived = r.archived.len();
        println!(
            "{uri}: {}",
            super::archive::describe(&r, t.elapsed().as_secs_f64())
        );
    }
    let timeline = table.timeline().await?;
    fig.pending = timeline
        .pending()
        .filter(|i| timeline.is_compaction(i.time))
        .count();
    println!("{uri}: done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
