//! What `lake ingest` shows operators: Prometheus metrics (`/metrics`, OpenMetrics text) and a health
//! verdict (`/health`), served by a small HTTP endpoint (`--metrics-addr`).
//!
//! Names follow `lake_<subsystem>_<name>_<unit>`: `lake_ingest_*` per topic and partition, `lake_table_*`
//! per table (labelled with the table's short name). Lag is the table's checkpoint subtracted from the
//! partition's high watermark, never clamped: a negative lag means the checkpoint is beyond the end of
//! the topic (a recreated topic), which stops ingest with an error.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::http::Response;

/// Labels of a topic partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// Labels of a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic.
    pub topic: String,
}

/// Labels of a table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// The table's short name.
    pub table: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<TableLabels, Histogram, fn() -> Histogram>;

fn commit_histogram() -> Histogram {
    // 50 ms … ~100 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// Every metric of an ingest run, and its health.
pub struct Metrics {
    registry: Registry,
    /// Next offset after the last message received, per partition.
    pub consumed_offset: Family<PartitionLabels, Gauge>,
    /// Next offset recorded in the table's last commit, per partition.
    pub committed_offset: Family<PartitionLabels, Gauge>,
    /// The partition's high watermark (end offset) at the last check.
    pub high_watermark: Family<PartitionLabels, Gauge>,
    /// High watermark minus committed offset (negative: checkpoint beyond the end).
    pub lag: Family<PartitionLabels, Gauge>,
    /// Messages received.
    pub records: Family<PartitionLabels, Counter>,
    /// Key and value bytes received.
    pub bytes: Family<PartitionLabels, Counter>,
    /// Messages that could not be decoded (either policy).
    pub decode_errors: Family<TopicLabels, Counter>,
    /// Messages written to the dead-letter table.
    pub dead_letters: Family<TopicLabels, Counter>,
    /// Partitions of the topic the consumer group assigned to this process.
    pub assigned_partitions: Family<TopicLabels, Gauge>,
    /// 1 while the broker answers, 0 while it does not.
    pub broker_up: Gauge,
    /// Errors the broker client reported (transport failures, timeouts).
    pub broker_errors: Counter,
    /// Completed commits.
    pub commits: Family<TableLabels, Counter>,
    /// Seconds of a batch's successful commit attempt (decode, write, publish).
    pub commit_seconds: Histograms,
    /// Unix time of the last completed commit.
    pub last_commit_timestamp: Family<TableLabels, FloatGauge>,
    /// Seconds since the last completed commit (as of the scrape).
    pub last_commit_age: Family<TableLabels, FloatGauge>,
    /// Records inserted.
    pub inserted: Family<TableLabels, Counter>,
    /// Records updated.
    pub updated: Family<TableLabels, Counter>,
    /// Records deleted.
    pub deleted: Family<TableLabels, Counter>,
    /// Files written.
    pub files_written: Family<TableLabels, Counter>,
    /// Bytes of files written.
    pub bytes_written: Family<TableLabels, Counter>,
    /// Write attempts the table layer retried (a conflict, a failed request).
    pub write_retries: Family<TableLabels, Counter>,
    /// Failed commit attempts (the batch is retried after a pause).
    pub commit_errors: Family<TableLabels, Counter>,
    /// Batches not committed because another commit had applied part of them (a partition moved
    /// between processes); they are read again from the table's offsets.
    pub fenced: Family<TableLabels, Counter>,
    /// Unix time of the last failed commit attempt.
    pub last_error_timestamp: Family<TableLabels, FloatGauge>,
    /// Compactions scheduled and not started.
    pub compactions_pending: Family<TableLabels, Gauge>,
    /// Compactions started and not completed.
    pub compactions_running: Family<TableLabels, Gauge>,
    health: Mutex<Health>,
    last_commit: Mutex<BTreeMap<String, SystemTime>>,
}

#[derive(Default)]
struct Health {
    running: bool,
    broker: Option<(Instant, String)>,
    tables: BTreeMap<String, (Instant, String)>,
    stopping: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let consumed_offset = Family::default();
        let committed_offset = Family::default();
        let high_watermark = Family::default();
        let lag = Family::default();
        let records = Family::default();
        let bytes = Family::default();
        let decode_errors = Family::default();
        let dead_letters = Family::default();
        let assigned_partitions = Family::default();
        let broker_up = Gauge::default();
        let broker_errors = Counter::default();
        let commits = Family::default();
        let commit_seconds = Histograms::new_with_constructor(commit_histogram);
        let last_commit_timestamp = Family::default();
        let last_commit_age = Family::default();
        let inserted = Family::default();
        let updated = Family::default();
        let deleted = Family::default();
        let files_written = Family::default();
        let bytes_written = Family::default();
        let write_retries = Family::default();
        let commit_errors = Family::default();
        let fenced = Family::default();
        let last_error_timestamp = Family::default();
        let compactions_pending = Family::default();
        let compactions_running = Family::default();
        let r = &mut registry;
        r.register(
            "lake_ingest_consumed_offset",
            "Next offset after the last message received",
            consumed_offset.clone(),
        );
        r.register(
            "lake_ingest_committed_offset",
            "Next offset to read as recorded by the table's last commit (its checkpoint)",
            committed_offset.clone(),
        );
        r.register(
            "lake_ingest_high_watermark_offset",
            "End offset of the partition at the last check",
            high_watermark.clone(),
        );
        r.register(
            "lake_ingest_lag_messages",
            "High watermark minus committed offset; negative means the checkpoint is beyond the end",
            lag.clone(),
        );
        r.register(
            "lake_ingest_consumed_records",
            "Messages received",
            records.clone(),
        );
        r.register(
            "lake_ingest_consumed_bytes",
            "Key and value bytes received",
            bytes.clone(),
        );
        r.register(
            "lake_ingest_decode_errors",
            "Messages that could not be decoded",
            decode_errors.clone(),
        );
        r.register(
            "lake_ingest_dead_letters",
            "Messages written to the dead-letter table",
            dead_letters.clone(),
        );
        r.register(
            "lake_ingest_assigned_partitions",
            "Partitions of the topic the consumer group assigned to this process",
            assigned_partitions.clone(),
        );
        r.register(
            "lake_ingest_broker_up",
            "1 while the Kafka broker answers, 0 while it does not",
            broker_up.clone(),
        );
        r.register(
            "lake_ingest_broker_errors",
            "Errors reported by the Kafka client (transport failures, timeouts)",
            broker_errors.clone(),
        );
        r.register("lake_table_commits", "Completed commits", commits.clone());
        r.register(
            "lake_table_commit_duration_seconds",
            "Time of a batch's successful commit attempt: decode, write, publish",
            commit_seconds.clone(),
        );
        r.register(
            "lake_table_last_commit_timestamp_seconds",
            "Unix time of the last completed commit",
            last_commit_timestamp.clone(),
        );
        r.register(
            "lake_table_last_commit_age_seconds",
            "Seconds since the last completed commit",
            last_commit_age.clone(),
        );
        r.register(
            "lake_table_inserted_rows",
            "Records inserted",
            inserted.clone(),
        );
        r.register(
            "lake_table_updated_rows",
            "Records updated",
            updated.clone(),
        );
        r.register(
            "lake_table_deleted_rows",
            "Records deleted",
            deleted.clone(),
        );
        r.register(
            "lake_table_written_files",
            "Files written",
            files_written.clone(),
        );
        r.register(
            "lake_table_written_bytes",
            "Bytes of files written",
            bytes_written.clone(),
        );
        r.register(
            "lake_table_write_retries",
            "Write attempts the table layer retried (a conflict with another writer, a failed request)",
            write_retries.clone(),
        );
        r.register(
            "lake_table_fenced_batches",
            "Batches not committed because another commit had applied part of them (a partition moved between processes); read again from the table's offsets",
            fenced.clone(),
        );
        r.register(
            "lake_table_commit_errors",
            "Failed commit attempts (the batch is retried after a pause)",
            commit_errors.clone(),
        );
        r.register(
            "lake_table_last_error_timestamp_seconds",
            "Unix time of the last failed commit attempt",
            last_error_timestamp.clone(),
        );
        r.register(
            "lake_table_compactions_pending",
            "Compactions scheduled and not started",
            compactions_pending.clone(),
        );
        r.register(
            "lake_table_compactions_running",
            "Compactions started and not completed",
            compactions_running.clone(),
        );
        Self {
            registry,
            consumed_offset,
            committed_offset,
            high_watermark,
            lag,
            records,
            bytes,
            decode_errors,
            dead_letters,
            assigned_partitions,
            broker_up,
            broker_errors,
            commits,
            commit_seconds,
            last_commit_timestamp,
            last_commit_age,
            inserted,
            updated,
            deleted,
            files_written,
            bytes_written,
            write_retries,
            commit_errors,
            fenced,
            last_error_timestamp,
            compactions_pending,
            compactions_running,
            health: Mutex::new(Health::default()),
            last_commit: Mutex::new(BTreeMap::new()),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Labels of a partition.
    pub fn partition(topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels {
            topic: topic.to_owned(),
            partition,
        }
    }

    /// Labels of a table.
    pub fn table(name: &str) -> TableLabels {
        TableLabels {
            table: name.to_owned(),
        }
    }

    /// Labels of a topic.
    pub fn topic(topic: &str) -> TopicLabels {
        TopicLabels {
            topic: topic.to_owned(),
        }
    }

    /// Ingest has started consuming.
    pub fn set_running(&self) {
        self.health().running = true;
    }

    /// Ingest is stopping.
    pub fn set_stopping(&self) {
        self.health().stopping = true;
    }

    /// The broker stopped answering (`Some(cause)`) or answers again (`None`).
    pub fn set_broker_down(&self, cause: Option<String>) {
        let mut h = self.health();
        match cause {
            Some(c) => {
                let since = h.broker.as_ref().map_or_else(Instant::now, |(t, _)| *t);
                h.broker = Some((since, c));
                self.broker_up.set(0);
            }
            None => {
                h.broker = None;
                self.broker_up.set(1);
            }
        }
    }

    /// Whether the broker is marked down.
    pub fn broker_down(&self) -> bool {
        self.health().broker.is_some()
    }

    /// A table's commit attempt failed with `error`.
    pub fn table_failed(&self, table: &str, error: String) {
        let labels = Self::table(table);
        self.commit_errors.get_or_create(&labels).inc();
        self.last_error_timestamp
            .get_or_create(&labels)
            .set(unix_seconds(SystemTime::now()));
        let mut h = self.health();
        let since = h.tables.get(table).map_or_else(Instant::now, |(t, _)| *t);
        h.tables.insert(table.to_owned(), (since, error));
    }

    /// A table committed at `time` (`instant_time`: when its instant was taken, `None`: now).
    pub fn table_committed(&self, table: &str, at: SystemTime) {
        self.health().tables.remove(table);
        self.last_commit_timestamp
            .get_or_create(&Self::table(table))
            .set(unix_seconds(at));
        self.last_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.to_owned(), at);
    }

    /// `Ok(detail)` while consuming and committing, `Err(reason)` otherwise.
    pub fn verdict(&self) -> Result<String, String> {
        let h = self.health();
        if h.stopping {
            return Err("stopping".into());
        }
        if !h.running {
            return Err("starting: assigning partitions at the tables' checkpoints".into());
        }
        let mut reasons = Vec::new();
        if let Some((since, cause)) = &h.broker {
            reasons.push(format!(
                "Kafka broker unreachable for {}s: {cause}",
                since.elapsed().as_secs()
            ));
        }
        for (table, (since, e)) in &h.tables {
            reasons.push(format!(
                "table {table}: commits failing for {}s: {e}",
                since.elapsed().as_secs()
            ));
        }
        if reasons.is_empty() {
            Ok("consuming and committing".into())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// The metrics in OpenMetrics text.
    pub fn render(&self) -> String {
        let now = SystemTime::now();
        for (table, at) in self
            .last_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let age = now.duration_since(*at).unwrap_or(Duration::ZERO);
            self.last_commit_age
                .get_or_create(&Self::table(table))
                .set(age.as_secs_f64());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Serves `/metrics` and `/health` on `listener` until the process ends (see [`crate::http`]).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    crate::http::serve(listener, move |path| match path {
        "/metrics" => Response {
            status: "200 OK",
            kind: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: metrics.render(),
        },
        "/health" => match metrics.verdict() {
            Ok(detail) => Response::text("200 OK", format!("ok: {detail}\n")),
            Err(reason) => Response::text(
                "503 Service Unavailable",
                format!("unavailable: {reason}\n"),
            ),
        },
        _ => Response::text("404 Not Found", "not found: try /metrics or /health\n"),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_labels_and_health_says_why() {
        let m = Metrics::new();
        let p = Metrics::partition("orders", 3);
        m.lag.get_or_create(&p).set(-5);
        m.records.get_or_create(&p).inc_by(7);
        m.commits.get_or_create(&Metrics::table("orders")).inc();
        m.commit_seconds
            .get_or_create(&Metrics::table("orders"))
            .observe(0.2);
        m.table_committed("orders", SystemTime::now());
        let text = m.render();
        assert!(
            text.contains("lake_ingest_lag_messages{topic=\"orders\",partition=\"3\"} -5"),
            "{text}"
        );
        assert!(
            text.contains("lake_ingest_consumed_records_total{topic=\"orders\",partition=\"3\"} 7"),
            "{text}"
        );
        assert!(text.contains("lake_table_commits_total{table=\"orders\"} 1"));
        assert!(
            text.contains(
                "lake_table_commit_duration_seconds_bucket{le=\"0.4\",table=\"orders\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("lake_table_last_commit_age_seconds{table=\"orders\"} 0"));
        assert!(text.ends_with("# EOF\n"));

        assert!(m.verdict().is_err_and(|r| r.starts_with("starting")));
        m.set_running();
        assert_eq!(m.verdict(), Ok("consuming and committing".into()));
        m.set_broker_down(Some("127.0.0.1:1: Connection refused".into()));
        m.table_failed("orders", "store unreachable".into());
        let why = m.verdict().expect_err("unhealthy");
        assert!(why.contains("Kafka broker unreachable") && why.contains("Connection refused"));
        assert!(why.contains("table orders: commits failing") && why.contains("store unreachable"));
        m.set_broker_down(None);
        m.table_committed("orders", SystemTime::now());
        assert!(m.verdict().is_ok());
        m.set_stopping();
        assert_eq!(m.verdict(), Err("stopping".into()));
    }
}
