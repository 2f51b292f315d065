//! `lake clean`: deletes file versions no retained instant needs, as a Hudi clean instant.

use lake_compaction::{CleanPolicy, clean};
use lake_table::Table;

/// Arguments of `lake clean`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// Keep what snapshots as of the last N completed writes need (Hudi's KEEP_LATEST_COMMITS).
    #[arg(long, default_value_t = 10, conflicts_with = "retain_versions")]
    pub retain_commits: usize,
    /// Keep the newest N versions of every file group instead (KEEP_LATEST_FILE_VERSIONS).
    #[arg(long)]
    pub retain_versions: Option<usize>,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let policy = match a.retain_versions {
        Some(n) => CleanPolicy::KeepLatestFileVersions(n),
        None => CleanPolicy::KeepLatestCommits(a.retain_commits),
    };
    let started = std::time::Instant::now();
    let r = clean(&table, policy).await?;
    match r.instant {
        Some(t) => println!(
            "cleaned {t}: {} files, {} bytes deleted{} in {:.2}s",
            r.deleted.len(),
            r.bytes_deleted,
            r.earliest_retained
                .map(|e| format!(", earliest retained write {e}"))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        ),
        None => println!("nothing to clean"),
    }
    Ok(())
}
