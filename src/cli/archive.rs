//! `lake archive`: moves the oldest completed instants out of the active timeline into
//! `.hoodie/archived/` (Hudi's keep-min/keep-max commits retention).

use lake_compaction::{ArchivePolicy, ArchiveReport, archive};
use lake_table::Table;

/// Retention of the active timeline, shared by `lake archive` and `lake compact`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Retention {
    /// Completed writes the active timeline keeps after archiving (`hoodie.keep.min.commits`).
    #[arg(long, default_value_t = 20)]
    pub keep_min_commits: usize,
    /// Archive once the active timeline holds more completed writes than this
    /// (`hoodie.keep.max.commits`).
    #[arg(long, default_value_t = 30)]
    pub keep_max_commits: usize,
}

impl Retention {
    /// The archival policy.
    pub fn policy(self) -> ArchivePolicy {
        ArchivePolicy {
            min_commits: self.keep_min_commits,
            max_commits: self.keep_max_commits,
        }
    }
}

/// Arguments of `lake archive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI.
    pub table: String,
    /// How many writes stay active.
    #[command(flatten)]
    pub retention: Retention,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let table = Table::open(&a.table).await?;
    let started = std::time::Instant::now();
    let r = archive(&table, a.retention.policy()).await?;
    println!("{}", describe(&r, started.elapsed().as_secs_f64()));
    Ok(())
}

/// One line saying what an archival did.
pub(crate) fn describe(r: &ArchiveReport, secs: f64) -> String {
    match (&r.file, r.archived.first(), r.archived.last()) {
        (Some(file), Some(first), Some(last)) => format!(
            "archived {} instants ({} .. {}) into {file}, {} timeline files deleted; {} in {secs:.2}s",
            r.archived.len(),
            first.time,
            last.time,
            r.files_deleted,
            r.reason
        ),
        _ => format!("nothing to archive: {}", r.reason),
    }
}
