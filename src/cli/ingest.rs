//! `lake ingest`: the long-running job that commits Kafka topics into tables, exactly once (see
//! `lake_ingest::pipeline`). SIGINT/SIGTERM stop it cleanly: open batches are abandoned, never
//! half-committed, and read again on the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use lake_ingest::config::PipelineConfig;
use lake_ingest::pipeline::{RunOptions, run as run_pipeline};

/// Arguments of `lake ingest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline config (TOML; see docs/examples/ingest.toml).
    #[arg(long)]
    pub config: String,
    /// Stop once everything the topics held at start is committed (for backfills and tests).
    #[arg(long)]
    pub until_caught_up: bool,
    /// No progress or commit lines.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A flag that SIGINT and SIGTERM set.
pub(crate) fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.store(true, Ordering::SeqCst);
    });
    #[cfg(unix)]
    {
        let s = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                s.store(true, Ordering::SeqCst);
            }
        });
    }
    stop
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&a.config).with_context(|| format!("reading {}", a.config))?;
    let config = PipelineConfig::parse(&text, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.config))?;
    let opts = RunOptions {
        until_caught_up: a.until_caught_up,
        stop: Some(stop_on_signals()),
        verbose: !a.quiet,
    };
    let report = run_pipeline(&config, opts).await?;
    for (uri, n) in &report.records {
        println!(
            "ingested {n} records into {uri} in {} commits",
            report.commits.get(uri).copied().unwrap_or(0)
        );
    }
    if report.dead_letters > 0 {
        println!("{} messages went to dead letters", report.dead_letters);
    }
    if report.abandoned > 0 {
        println!(
            "stopped with {} uncommitted records (they are read again on the next start)",
            report.abandoned
        );
    }
    Ok(())
}
