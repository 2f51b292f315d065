//! `lake ingest`: the long-running job that commits Kafka topics into tables, exactly once (see
//! `lake_ingest::pipeline`). SIGINT/SIGTERM stop it cleanly: open batches are abandoned, never
//! half-committed, and read again on the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use lake_ingest::config::PipelineConfig;
use lake_ingest::pipeline::{ResetCheckpoint, RunOptions, run as run_pipeline};

/// Arguments of `lake ingest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline config (TOML; see docs/examples/ingest.toml).
    #[arg(long)]
    pub config: String,
    /// Stop once everything the topics held at start is committed (for backfills and tests).
    #[arg(long)]
    pub until_caught_up: bool,
    /// No progress or commit lines (warnings and errors only).
    #[arg(short, long)]
    pub quiet: bool,
    /// Serve Prometheus metrics at http://<addr>/metrics and health at /health (overrides the
    /// config's `[metrics] addr`).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Start partitions whose table checkpoint lies outside the topic (a recreated topic, messages
    /// deleted by retention) at the partition's earliest or latest offset instead of failing.
    #[arg(long, value_name = "earliest|latest")]
    pub reset_checkpoint: Option<ResetCheckpoint>,
    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-03T07:02:12.123456Z  INFO commit table=orders ...`
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// Sends `tracing` events to stderr: timestamped, leveled lines in `format`, at INFO (WARN when
/// `quiet`).
pub(crate) fn init_logs(format: LogFormat, quiet: bool) {
    let level = if quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false);
    // A second initialisation (tests that run commands in one process) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
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
    let mut config = PipelineConfig::parse(&text, |k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.config))?;
    if let Some(addr) = a.metrics_addr {
        config.metrics.addr = Some(addr);
    }
    init_logs(a.log_format, a.quiet);
    let opts = RunOptions {
        until_caught_up: a.until_caught_up,
        stop: Some(stop_on_signals()),
        verbose: !a.quiet,
        reset_checkpoint: a.reset_checkpoint,
        metrics: None,
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
