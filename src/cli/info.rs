//! `lake info`: a table's health at a glance — config, file groups and files (small files counted),
//! pending compactions and writes, the last commit with its checkpoint, and the timeline's size.

use lake_table::Table;
use lake_table::info::{FileCounts, TableInfo};

/// Output formats of `lake info`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Aligned `field: value` lines.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `lake info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let info = table.info().await?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Text => print!("{}", render(&info)),
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn files(f: &FileCounts) -> String {
    let mut s = format!(
        "{} base files ({}, {} small), {} log files ({})",
        f.base_files,
        mib(f.base_bytes),
        f.small_base_files,
        f.log_files,
        mib(f.log_bytes)
    );
    if f.cdc_files > 0 {
        s.push_str(&format!(
            ", {} CDC logs ({})",
            f.cdc_files,
            mib(f.cdc_bytes)
        ));
    }
    s
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

/// The text form: one `field: value` line each.
fn render(i: &TableInfo) -> String {
    let index = match i.buckets {
        Some(n) => format!("{} ({n} buckets per partition)", i.index),
        None => i.index.clone(),
    };
    let last = match &i.last_commit {
        Some(c) => format!(
            "{} {}{} ({} s ago)",
            c.instant,
            c.action,
            c.completed
                .as_ref()
                .map(|t| format!(", completed {t}"))
                .unwrap_or_default(),
            c.age_seconds
        ),
        None => "- (never written)".to_owned(),
    };
    let checkpoint = i
        .last_commit
        .as_ref()
        .and_then(|c| c.checkpoint.clone())
        .unwrap_or_else(|| "-".to_owned());
    let rows = [
        ("table", format!("{} ({})", i.name, i.uri)),
        (
            "type",
            format!("{}, table version {}", i.table_type, i.version),
        ),
        ("record key", i.record_key_fields.join(",")),
        ("partitioned by", list(&i.partition_fields)),
        (
            "ordering",
            i.ordering_field.clone().unwrap_or_else(|| "-".into()),
        ),
        ("index", index),
        ("cdc logs", i.cdc.clone().unwrap_or_else(|| "off".into())),
        (
            "file groups",
            format!("{} in {} partitions", i.file_groups, i.partitions),
        ),
        ("latest slices", files(&i.latest)),
        ("all versions", files(&i.all_versions)),
        ("small file limit", mib(i.small_file_limit)),
        ("pending compactions", list(&i.pending_compactions)),
        ("pending writes", list(&i.pending_writes)),
        ("last commit", last),
        ("checkpoint", checkpoint),
        (
            "timeline",
            format!(
                "{} completed writes, {} active instants, {} archived",
                i.completed_writes, i.active_instants, i.archived_instants
            ),
        ),
    ];
    rows.iter()
        .map(|(k, v)| format!("{:<20} {v}\n", format!("{k}:")))
        .collect()
}
