//! `lake ingest`: consumes Kafka topics and commits them into tables, exactly once.
//!
//! Positions live in the tables, not in the consumer group: every commit stores the next offset of
//! each partition its process owns under `deltastreamer.checkpoint.key` (Hudi Streamer's format).
//! Any number of processes with one `group.id` share the topics' partitions: the group assigns
//! them, and an assigned partition starts at the highest offset any completed commit of its table
//! recorded for it (a table without one starts at `auto_offset_reset`). A crash between the table
//! commit and anything else therefore re-reads exactly the uncommitted messages. Each batch carries
//! a fence (the offset each of its partitions starts at): a commit that finds another completed
//! commit past that offset — a partition that moved to another process which committed first, or
//! an earlier attempt of this batch whose answer was lost — is rolled back, and the flow reads on
//! from the table's offsets, so a message is never committed twice. Consumer-group offsets are
//! committed after each table commit, for monitoring only.
//!
//! Each table has its own open batch, committed when it reaches `max_records`, `max_bytes` or
//! `max_interval_ms`; tables commit independently. Bad messages fail the job (naming topic,
//! partition, offset and reason) or, with the dead-letter policy, are written to the dead-letter
//! table — in the same step, before the table commit that moves the checkpoint past them. A revoked
//! partition's messages not yet committing are dropped (its new owner reads them from the table's
//! offset).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lake_compaction::{CompactionStrategy, Scheduled, execute_pending, schedule};
use lake_table::archive::ArchivedTimeline;
use lake_table::config::SOURCE_POSITION_FIELD;
use lake_table::timeline::CHECKPOINT_KEY;
use lake_table::timeline::State;
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOperation, WriteOptions};
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use tracing::{info, warn};

use crate::avro::{SchemaRegistry, frame};
use crate::checkpoint::{Checkpoint, KafkaFence, RESET_KEY, effective};
use crate::config::{DecoderKind, ErrorPolicy, MessageFormat, PipelineConfig, TableSpec};
use crate::messages::{DecodeSpec, Message, MessageError, debezium_key_fields, decode_messages};
use crate::metrics::Metrics;
use crate::rows::TableShape;

/// Errors that stop the job.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The broker could not be reached or refused a request.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A message could not be decoded (policy `fail`).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A table read or write failed.
    #[error("table {uri} (topic {topic}): {source}")]
    Table {
        /// The table.
        uri: String,
        /// Its topic.
        topic: String,
        /// The failure.
        #[source]
        source: lake_table::Error,
    },
    /// The configuration does not fit the topics found.
    #[error("config: {0}")]
    Config(String),
    /// The job was stopped while a batch waited to be retried (it is read again on the next start).
    #[error("stopped before the batch was committed")]
    Stopped,
    /// A table's checkpoint lies outside the offsets its topic's partition holds.
    #[error(
        "table {table}: its checkpoint of topic {topic} partition {partition} is offset \
         {checkpoint}, but the partition holds offsets {low} to {high}: {why}. Nothing was \
         consumed; start with --reset-checkpoint earliest or latest to continue from the \
         partition's first or end offset"
    )]
    CheckpointOutOfRange {
        /// The table's short name.
        table: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The checkpoint's next offset.
        checkpoint: i64,
        /// The partition's first offset.
        low: i64,
        /// The partition's end offset.
        high: i64,
        /// What that means.
        why: String,
    },
}

fn kafka(context: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Kafka(format!("{context}: {e}"))
}

/// Attempts of a table write that conflicts with another writer or a compaction.
const WRITE_ATTEMPTS: u32 = 8;

/// With `until_caught_up`, how long no message may arrive before the job counts as caught up.
const CAUGHT_UP_IDLE: Duration = Duration::from_millis(1500);

/// How long the broker may take to answer at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the partitions' watermarks are read (lag, metrics, the broker's health).
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// How long one watermark request may take before the broker counts as not answering.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause before retrying a batch whose commit failed on a store error.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long moving a partition's position back to its table's offset may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// The same broker warning is repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Where partitions whose table checkpoint lies outside the topic's offsets start, instead of
/// stopping ingest with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetCheckpoint {
    /// The partition's first offset still held (the messages before it are gone).
    Earliest,
    /// The partition's end offset (what it holds now is skipped).
    Latest,
}

impl std::str::FromStr for ResetCheckpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => Err(format!("expected earliest or latest, got {other:?}")),
        }
    }
}

/// How a run ends and reports.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop once every partition has been committed up to its end offset as of the start and no
    /// message arrived for 1.5 s.
    pub until_caught_up: bool,
    /// A flag that stops the job (set by SIGINT/SIGTERM); the open batches are abandoned, not
    /// half-committed, and will be read again.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Log progress lines (every `progress.interval_ms`) and one line per commit, through `tracing`.
    pub verbose: bool,
    /// Start partitions whose checkpoint lies outside the topic here (else that is an error).
    pub reset_checkpoint: Option<ResetCheckpoint>,
    /// The metrics to update (served when the config names `metrics.addr`); fresh ones when `None`.
    pub metrics: Option<Arc<Metrics>>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Records committed per table URI.
    pub records: BTreeMap<String, u64>,
    /// Commits per table URI.
    pub commits: BTreeMap<String, u64>,
    /// Messages sent to dead letters.
    pub dead_letters: u64,
    /// Messages consumed but not committed when the job stopped.
    pub abandoned: usize,
}

/// The Kafka client's context: keeps the last error librdkafka reported, so that messages can name
/// the cause (`Connect to ipv4#127.0.0.1:9092 failed: Connection refused`), and counts them.
struct BrokerContext {
    last_error: std::sync::Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    assigner: Assigner,
}

/// Decides where partitions the consumer group assigns start (their tables' checkpoints), inside
/// the rebalance callback, and tells the main loop what changed.
struct Assigner {
    /// topic → (table URI, short name), set before the consumer subscribes.
    tables: std::sync::OnceLock<HashMap<String, (String, String)>>,
    reset: Option<ResetCheckpoint>,
    /// A partition no commit recorded starts at its end (`auto_offset_reset = "latest"`).
    latest_when_new: bool,
    events: std::sync::Mutex<Vec<Rebalanced>>,
}

/// A partition the group assigned to this process, and where it starts.
struct Placed {
    topic: String,
    partition: i32,
    start: i64,
    high: i64,
}

/// What a rebalance changed, taken in by the main loop before the next message.
enum Rebalanced {
    /// Partitions now owned (possibly none: the group has more members than partitions).
    Assigned(Vec<Placed>),
    /// Partitions no longer owned.
    Revoked(Vec<(String, i32)>),
    /// Every partition was taken away (a rebalance error).
    RevokedAll,
    /// Starting positions could not be decided: the job stops.
    Failed(IngestError),
}

impl Assigner {
    fn push(&self, e: Rebalanced) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    fn take(&self) -> Vec<Rebalanced> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The assignment with each partition's start offset, from its table's checkpoint (or the
    /// reset policy); what could not be decided (after two retries) is reported as
    /// [`Rebalanced::Failed`] and nothing is assigned.
    #[allow(clippy::result_large_err)]
    fn place(
        &self,
        base: &BaseConsumer<BrokerContext>,
        tpl: &TopicPartitionList,
    ) -> TopicPartitionList {
        match retrying("placing assigned partitions", || self.try_place(base, tpl)) {
            Ok((out, placed)) => {
                self.push(Rebalanced::Assigned(placed));
                out
            }
            Err(e) => {
                self.push(Rebalanced::Failed(e));
                TopicPartitionList::new()
            }
        }
    }

    // Errors end the job, once: their size does not matter.
    #[allow(clippy::result_large_err)]
    fn try_place(
        &self,
        base: &BaseConsumer<BrokerContext>,
        tpl: &TopicPartitionList,
    ) -> Result<(TopicPartitionList, Vec<Placed>), IngestError> {
        let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for e in tpl.elements() {
            wanted
                .entry(e.topic().to_owned())
                .or_default()
                .push(e.partition());
        }
        let empty = HashMap::new();
        let tables = self.tables.get().unwrap_or(&empty);
        let positions = on_own_runtime(|| table_positions(tables, &wanted))?;
        let mut out = TopicPartitionList::new();
        let mut placed = Vec::new();
        // Resets are recorded in the tables before consuming, so that whoever owns the partition
        // next starts there too.
        let mut resets: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for (topic, partitions) in &wanted {
            let name = tables.get(topic).map_or(topic.as_str(), |t| t.1.as_str());
            for &p in partitions {
                let (low, high) = base
                    .fetch_watermarks(topic, p, CONNECT_TIMEOUT)
                    .map_err(|e| kafka(&format!("watermarks of {topic}/{p}"), e))?;
                let recorded = positions.get(topic).and_then(|o| o.get(&p)).copied();
                let start = match recorded {
                    Some(o) if o > high || o < low => {
                        let err = out_of_range(name, topic, p, o, low, high);
                        let to = match self.reset {
                            Some(ResetCheckpoint::Earliest) => low,
                            Some(ResetCheckpoint::Latest) => high,
                            None => return Err(err),
                        };
                        warn!("{err}; --reset-checkpoint: starting partition {p} at offset {to}");
                        resets.entry(topic.clone()).or_default().insert(p, to);
                        to
                    }
                    Some(o) => o,
                    // Nothing recorded: `latest` is the end as of this placement (a batch of the
                    // previous owner that lands later moves it back; see `settle`).
                    None if self.latest_when_new => high,
                    None => low,
                };
                out.add_partition_offset(topic, p, Offset::Offset(start))
                    .map_err(|e| kafka("assign", e))?;
                placed.push(Placed {
                    topic: topic.clone(),
                    partition: p,
                    start,
                    high,
                });
            }
        }
        if !resets.is_empty() {
            on_own_runtime(|| record_resets(tables, &resets))?;
        }
        Ok((out, placed))
    }
}

/// Runs `f` up to three times (1 s, then 2 s apart) while it fails: a store or broker hiccup during
/// a rebalance should not stop the job (and with it, rebalance the whole group again).
// Errors end the job, once: their size does not matter.
#[allow(clippy::result_large_err)]
fn retrying<T>(
    what: &str,
    mut f: impl FnMut() -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if attempt < 2 && !matches!(e, IngestError::CheckpointOutOfRange { .. }) => {
                warn!("{what}: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1 << attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Runs the future `make` builds on a thread of its own, with its own runtime (and so its own store
/// clients): the rebalance callback runs inside the consumer's poll and may not await.
// Errors end the job, once: their size does not matter.
#[allow(clippy::result_large_err)]
fn on_own_runtime<T, F, Fut>(make: F) -> Result<T, IngestError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T, IngestError>>,
{
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| IngestError::Config(format!("starting a runtime: {e}")))?;
            rt.block_on(make())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(IngestError::Config(
                "reading or recording the tables' checkpoints failed (a panic)".into(),
            ))
        })
    })
}

/// The offsets the tables of `wanted`'s topics recorded for their partitions.
// Errors end the job, once: their size does not matter.
#[allow(clippy::result_large_err)]
async fn table_positions(
    tables: &HashMap<String, (String, String)>,
    wanted: &BTreeMap<String, Vec<i32>>,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, IngestError> {
    let mut out = BTreeMap::new();
    for (topic, partitions) in wanted {
        let Some((uri, _)) = tables.get(topic) else {
            continue;
        };
        let err = |source| IngestError::Table {
            uri: uri.clone(),
            topic: topic.clone(),
            source,
        };
        let offsets = match Table::open_if_exists(uri).await.map_err(err)? {
            Some(t) => table_offsets(&t, topic, partitions).await.map_err(err)?,
            None => BTreeMap::new(),
        };
        out.insert(topic.clone(), offsets);
    }
    Ok(out)
}

/// Commits reset checkpoints (topic → partition → offset) into their tables at once, without rows.
// Errors end the job, once: their size does not matter.
#[allow(clippy::result_large_err)]
async fn record_resets(
    tables: &HashMap<String, (String, String)>,
    resets: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> Result<(), IngestError> {
    for (topic, offsets) in resets {
        let Some((uri, name)) = tables.get(topic) else {
            continue;
        };
        let err = |source| IngestError::Table {
            uri: uri.clone(),
            topic: topic.clone(),
            source,
        };
        let Some(table) = Table::open_if_exists(uri).await.map_err(err)? else {
            continue;
        };
        let render = |offsets: &BTreeMap<i32, i64>| {
            Checkpoint {
                topic: topic.clone(),
                offsets: offsets.clone(),
            }
            .render()
        };
        let opts = WriteOptions {
            extra_metadata: [
                (CHECKPOINT_KEY.to_owned(), render(offsets)),
                (RESET_KEY.to_owned(), render(offsets)),
            ]
            .into(),
            commit_empty: true,
            ..Default::default()
        };
        let done = table
            .write_retrying(Vec::new(), opts, WRITE_ATTEMPTS)
            .await
            .map_err(err)?;
        info!(
            table = %name,
            instant = %done.instant.map(|t| t.to_string()).unwrap_or_default(),
            start = %render(offsets),
            "reset checkpoint committed"
        );
    }
    Ok(())
}

impl BrokerContext {
    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for BrokerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", "{fac}: {message}");
        // Connection failures arrive here first (`FAIL`), from librdkafka's own threads, before
        // any poll could deliver them as errors.
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.broker_errors.inc();
        let text = if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_owned()
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

impl ConsumerContext for BrokerContext {
    /// Partitions are placed at their tables' checkpoints before they are assigned (never at the
    /// group's offsets, which are for monitoring only); revoked ones are reported to the main loop,
    /// which drops their uncommitted messages.
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let placed = self.assigner.place(base, tpl);
                let done = if cooperative {
                    base.incremental_assign(&placed)
                } else {
                    base.assign(&placed)
                };
                if let Err(e) = done {
                    self.assigner
                        .push(Rebalanced::Failed(kafka("assigning partitions", e)));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                self.assigner.push(Rebalanced::Revoked(revoked));
                let done = if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                };
                if let Err(e) = done {
                    warn!("giving partitions back: {e}");
                }
            }
            other => {
                warn!("consumer group rebalance failed: {other:?}; giving every partition back");
                let _ = base.unassign();
                self.assigner.push(Rebalanced::RevokedAll);
            }
        }
    }
}

type KafkaConsumer = StreamConsumer<BrokerContext>;

/// The part of a flow that commits: held by the flow while idle, by its commit task while a batch
/// is being decoded and committed.
struct Writer {
    spec: TableSpec,
    topic: String,
    uri: String,
    /// The table's short name (logs and metric labels).
    name: String,
    table: Option<Table>,
    dead_letter: Option<Table>,
    metrics: Arc<Metrics>,
    /// The schema registry of Avro topics.
    registry: Option<Arc<SchemaRegistry>>,
}

/// What a commit task did.
struct Committed {
    /// The checkpoint the commit recorded: the batch's partitions (or, when `fenced`, the
    /// table's offsets for them).
    next: BTreeMap<i32, i64>,
    records: u64,
    instant: Option<String>,
    dead_letters: u64,
    /// The batch was not committed: another commit had applied part of it. The flow goes back to
    /// the table's offsets.
    fenced: bool,
}

/// A batch of one flow, handed to its commit task.
#[derive(Clone)]
struct Batch {
    msgs: Arc<Vec<Message>>,
    /// The next offset of every partition the process owns, after the batch.
    next: BTreeMap<i32, i64>,
    /// The offset each partition with messages in the batch starts at (its fence); the commit
    /// records these partitions only.
    starts: BTreeMap<i32, i64>,
}

/// A batch whose commit failed: kept whole, to be retried or abandoned.
struct Failed {
    batch: Batch,
    attempt: u32,
    error: IngestError,
}

/// A batch being committed: the flow's index, its writer, and the outcome.
type Commit = Pin<Box<dyn Future<Output = (usize, Writer, Result<Committed, Failed>)>>>;

/// One topic flowing into one table. Consuming goes on while the previous batch commits: at most one
/// batch per flow is committing while the next one fills.
struct Flow {
    topic: String,
    uri: String,
    name: String,
    writer: Option<Writer>,
    /// A batch of this flow is being committed.
    busy: bool,
    /// Its partitions are paused: a full batch waits for the batch being committed.
    paused: bool,
    /// Next offset to read of each partition this process owns, as of the last completed table
    /// commit (its keys are the owned partitions).
    committed: BTreeMap<i32, i64>,
    /// Next offset to read per partition, as of the last batch handed to the commit task.
    dispatched: BTreeMap<i32, i64>,
    /// End offsets at start (for `until_caught_up`).
    end_at_start: BTreeMap<i32, i64>,
    /// Lag per partition at the last watermark check (high watermark − committed, unclamped).
    lag: BTreeMap<i32, i64>,
    /// Received since the last metrics update: partition → (next offset, records, bytes).
    received: BTreeMap<i32, (i64, u64, u64)>,
    pending: Vec<Message>,
    pending_bytes: usize,
    first_pending: Option<Instant>,
    last_instant: Option<String>,
    records_since_progress: u64,
}

impl Flow {
    fn next_offsets(&self) -> BTreeMap<i32, i64> {
        let mut next = self.dispatched.clone();
        for m in &self.pending {
            let e = next.entry(m.partition).or_insert(0);
            *e = (*e).max(m.offset + 1);
        }
        next
    }

    /// Recomputes the pending bytes (and the batch's age) after messages were dropped.
    fn recount_pending(&mut self) {
        self.pending_bytes = self
            .pending
            .iter()
            .map(|m| m.value.as_ref().map_or(0, Vec::len))
            .sum();
        if self.pending.is_empty() {
            self.first_pending = None;
        }
    }

    fn full(&self, commit: &crate::config::CommitPolicy) -> bool {
        self.pending.len() >= commit.max_records || self.pending_bytes >= commit.max_bytes
    }

    fn caught_up(&self) -> bool {
        self.pending.is_empty()
            && !self.busy
            && self
                .end_at_start
                .iter()
                .all(|(p, end)| self.committed.get(p).copied().unwrap_or(0) >= *end)
    }

    /// Moves what was received since the last call into the metrics.
    fn publish_received(&mut self, metrics: &Metrics) {
        for (p, (next, records, bytes)) in std::mem::take(&mut self.received) {
            let l = Metrics::partition(&self.topic, p);
            metrics.consumed_offset.get_or_create(&l).set(next);
            metrics.records.get_or_create(&l).inc_by(records);
            metrics.bytes.get_or_create(&l).inc_by(bytes);
        }
    }
}

/// The watermarks of every partition of every flow, with the committed offsets as of the moment
/// they were asked for (so a commit landing meanwhile never looks like a checkpoint beyond the end).
struct Watch {
    /// The partitions' marks, or why the broker did not answer.
    marks: Result<Vec<Mark>, String>,
}

/// One partition's watermarks next to the position they are compared with.
struct Mark {
    flow: usize,
    partition: i32,
    /// The committed (or consumed) offset when the watermarks were asked for.
    position: i64,
    low: i64,
    high: i64,
}

fn read_watermarks(
    consumer: &KafkaConsumer,
    asked: &[(usize, String, i32, i64)],
    timeout: Duration,
) -> Watch {
    let mut marks = Vec::with_capacity(asked.len());
    for (flow, topic, p, committed) in asked {
        match consumer.fetch_watermarks(topic, *p, timeout) {
            Ok((low, high)) => marks.push(Mark {
                flow: *flow,
                partition: *p,
                position: *committed,
                low,
                high,
            }),
            Err(e) => {
                let cause = consumer
                    .context()
                    .last_error()
                    .unwrap_or_else(|| e.to_string());
                return Watch { marks: Err(cause) };
            }
        }
    }
    Watch { marks: Ok(marks) }
}

/// Why the bootstrap brokers cannot be reached over TCP (address resolution, refused or timed-out
/// connections), or `None` when one of them accepts a connection.
fn probe(brokers: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let mut causes = Vec::new();
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let b = b.split_once("://").map_or(b, |(_, rest)| rest);
        match b.to_socket_addrs() {
            Err(e) => causes.push(format!("{b}: {e}")),
            Ok(addrs) => {
                for a in addrs {
                    match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                        Ok(_) => return None,
                        Err(e) => causes.push(format!("{a}: {e}")),
                    }
                }
            }
        }
    }
    Some(causes.join("; "))
}

/// The error for a partition whose checkpoint lies outside `low..=high`.
fn out_of_range(
    table: &str,
    topic: &str,
    partition: i32,
    checkpoint: i64,
    low: i64,
    high: i64,
) -> IngestError {
    let why = if checkpoint > high {
        "the topic ends before the checkpoint (it was recreated or truncated since that commit)"
            .to_owned()
    } else {
        format!("offsets before {low} were deleted (retention) before they were ingested")
    };
    IngestError::CheckpointOutOfRange {
        table: table.to_owned(),
        topic: topic.to_owned(),
        partition,
        checkpoint,
        low,
        high,
        why,
    }
}

/// Runs the pipeline until stopped (or caught up).
pub async fn run(config: &PipelineConfig, opts: RunOptions) -> Result<RunReport, IngestError> {
    let metrics = opts.metrics.clone().unwrap_or_default();
    if let Some(addr) = &config.metrics.addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| IngestError::Config(format!("metrics endpoint {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_or_else(|_| addr.clone(), |a| a.to_string());
        info!("metrics on http://{bound}/metrics, health on http://{bound}/health");
        tokio::spawn(crate::metrics::serve(listener, metrics.clone()));
    }
    let registry = match config.source.registry() {
        Some(r) => Some(Arc::new(
            SchemaRegistry::new(r).map_err(IngestError::Config)?,
        )),
        None => None,
    };
    let brokers = config.source.brokers.clone();
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &brokers)
        .set("group.id", &config.source.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A process that dies (kill -9, a lost machine) sends no goodbye: its partitions move to
        // the others once its session times out. 10 s instead of librdkafka's 45 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000");
    for (k, v) in &config.source.properties {
        client.set(k, v);
    }
    // Positions come from the tables' checkpoints; one outside the partition is an error, never a
    // silent jump to another offset (whatever the properties say).
    client.set("auto.offset.reset", "error");
    let context = BrokerContext {
        last_error: std::sync::Mutex::new(None),
        metrics: metrics.clone(),
        assigner: Assigner {
            tables: std::sync::OnceLock::new(),
            reset: opts.reset_checkpoint,
            latest_when_new: config.source.auto_offset_reset == "latest",
            events: std::sync::Mutex::new(Vec::new()),
        },
    };
    let consumer: KafkaConsumer = client
        .create_with_context(context)
        .map_err(|e| kafka("creating the consumer", e))?;
    let consumer = Arc::new(consumer);
    info!("connecting to Kafka at {brokers}");

    // Topics of every table spec, and their partitions.
    let fetched = {
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || c.fetch_metadata(None, CONNECT_TIMEOUT))
            .await
            .map_err(|e| kafka("metadata", e))?
    };
    let metadata = match fetched {
        Ok(m) => m,
        Err(e) => {
            let b = brokers.clone();
            let unreachable = tokio::task::spawn_blocking(move || probe(&b))
                .await
                .unwrap_or(None);
            let cause = unreachable.unwrap_or_else(|| {
                let said = consumer.context().last_error().unwrap_or_default();
                format!(
                    "it accepts connections but did not answer Kafka requests (is it a Kafka \
                     broker? do security.protocol and sasl.* match it?): {e} {said}"
                )
            });
            return Err(IngestError::Kafka(format!(
                "cannot reach the Kafka broker at {brokers} within {} s: {cause}",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    };
    metrics.set_broker_down(None);
    let mut partitions_of: HashMap<String, Vec<i32>> = HashMap::new();
    for t in metadata.topics() {
        if t.error().is_none() {
            partitions_of.insert(
                t.name().to_owned(),
                t.partitions().iter().map(|p| p.id()).collect(),
            );
        }
    }
    let mut flows: Vec<Flow> = Vec::new();
    for spec in &config.tables {
        let topics: Vec<String> = if let Some(t) = &spec.topic {
            vec![t.clone()]
        } else if !spec.topics.is_empty() {
            spec.topics.clone()
        } else {
            let re = Regex::new(spec.topic_regex.as_deref().unwrap_or_default())
                .map_err(|e| IngestError::Config(format!("topic_regex: {e}")))?;
            let mut found: Vec<String> = partitions_of
                .keys()
                .filter(|t| re.is_match(t))
                .cloned()
                .collect();
            found.sort();
            found
        };
        for topic in topics {
            if !partitions_of.contains_key(&topic) {
                return Err(IngestError::Config(format!(
                    "topic {topic} does not exist on {brokers}"
                )));
            }
            let uri = spec.table_uri(&topic);
            let name = TableConfig::name_from_uri(&uri);
            flows.push(Flow {
                topic: topic.clone(),
                uri: uri.clone(),
                name: name.clone(),
                writer: Some(Writer {
                    spec: spec.clone(),
                    topic,
                    uri,
                    name,
                    table: None,
                    dead_letter: None,
                    metrics: metrics.clone(),
                    registry: registry.clone(),
                }),
                busy: false,
                paused: false,
                committed: BTreeMap::new(),
                dispatched: BTreeMap::new(),
                end_at_start: BTreeMap::new(),
                lag: BTreeMap::new(),
                received: BTreeMap::new(),
                pending: Vec::new(),
                pending_bytes: 0,
                first_pending: None,
                last_instant: None,
                records_since_progress: 0,
            });
        }
    }
    if flows.is_empty() {
        return Err(IngestError::Config(
            "no topic matches the configured tables".into(),
        ));
    }

    // Positions come from the tables: the consumer group decides which partitions this process
    // owns, and each assigned partition starts at its table's offset (see `Assigner::place`).
    for f in flows.iter_mut() {
        let table = Table::open_if_exists(&f.uri)
            .await
            .map_err(|source| IngestError::Table {
                uri: f.uri.clone(),
                topic: f.topic.clone(),
                source,
            })?;
        if let Some(t) = &table {
            let timeline = t.timeline().await.map_err(|source| IngestError::Table {
                uri: f.uri.clone(),
                topic: f.topic.clone(),
                source,
            })?;
            f.last_instant = timeline.last_completed_write().map(|i| i.time.to_string());
        }
        if let Some(w) = f.writer.as_mut() {
            w.table = table;
        }
        info!(table = %f.name, topic = %f.topic, uri = %f.uri, "ingest");
    }
    let tables: HashMap<String, (String, String)> = flows
        .iter()
        .map(|f| (f.topic.clone(), (f.uri.clone(), f.name.clone())))
        .collect();
    let topics: Vec<String> = tables.keys().cloned().collect();
    let _ = consumer.context().assigner.tables.set(tables);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| kafka("subscribe", e))?;
    metrics.set_running();
    let index: HashMap<String, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.topic.clone(), i))
        .collect();

    let mut report = RunReport::default();
    let ctx = Ctx {
        consumer: consumer.clone(),
        metrics: metrics.clone(),
        verbose: opts.verbose,
        stop: opts.stop.clone(),
    };
    let max_interval = Duration::from_millis(config.commit.max_interval_ms.max(1));
    let progress_every = Duration::from_millis(config.progress.interval_ms);
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_message = Instant::now();
    let mut commits: FuturesUnordered<Commit> = FuturesUnordered::new();
    let (watch_tx, mut watch_rx) = tokio::sync::mpsc::channel::<Watch>(1);
    let mut watching = false;
    let mut watch_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_watch = Instant::now();
    let mut warned: HashMap<String, Instant> = HashMap::new();
    // Until the group assigns partitions, nothing counts as caught up.
    let mut assigned = false;
    let outcome: Result<(), IngestError> = loop {
        if ctx.stopped() {
            break Ok(());
        }
        if let Err(e) = rebalanced(&mut flows, &index, &ctx, &mut assigned) {
            break Err(e);
        }
        // Caught up: every partition committed to its end offset as of the start, and no message for
        // a while (some brokers report end offsets late).
        if opts.until_caught_up
            && assigned
            && last_message.elapsed() >= CAUGHT_UP_IDLE
            && flows.iter().all(Flow::caught_up)
        {
            break Ok(());
        }
        tokio::select! {
            received = consumer.recv() => {
                let m = match received {
                    Ok(m) => m,
                    Err(KafkaError::MessageConsumption(
                        code @ (RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange),
                    )) => {
                        break Err(position_lost(&flows, &consumer, code).await);
                    }
                    Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                        break Err(kafka("consuming", e));
                    }
                    Err(e) => {
                        // Transport trouble: librdkafka reconnects by itself; the positions stay.
                        let text = e.to_string();
                        if warned.get(&text).is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                            let cause = consumer.context().last_error().unwrap_or_default();
                            warn!("consuming from {brokers}: {text} ({cause}); still running");
                            warned.insert(text, Instant::now());
                        }
                        continue;
                    }
                };
                last_message = Instant::now();
                // A rebalance inside `recv` comes first: the message may be from a partition it
                // just assigned.
                if let Err(e) = rebalanced(&mut flows, &index, &ctx, &mut assigned) {
                    break Err(e);
                }
                let Some(&i) = index.get(m.topic()) else { continue };
                let f = &mut flows[i];
                // Only owned partitions, and only offsets not yet handed to a commit.
                if f.dispatched.get(&m.partition()).is_none_or(|d| m.offset() < *d) {
                    continue;
                }
                let msg = Message {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                };
                let size = msg.value.as_ref().map_or(0, Vec::len);
                let r = f.received.entry(msg.partition).or_insert((0, 0, 0));
                r.0 = r.0.max(msg.offset + 1);
                r.1 += 1;
                r.2 += (size + msg.key.as_ref().map_or(0, Vec::len)) as u64;
                f.pending_bytes += size;
                f.pending.push(msg);
                f.first_pending.get_or_insert_with(Instant::now);
                if f.full(&config.commit) {
                    if f.busy {
                        // A full batch waits for the previous one to commit: back-pressure on this
                        // flow only.
                        set_paused(f, &consumer, true);
                    } else if let Err(e) = dispatch(i, &mut flows, &mut commits, &ctx) {
                        break Err(e);
                    }
                }
            }
            Some((i, writer, result)) = commits.next(), if !commits.is_empty() => {
                // A rebalance run by an earlier poll of `recv` is taken in first: only partitions
                // still owned are moved back after a fenced batch.
                if let Err(e) = rebalanced(&mut flows, &index, &ctx, &mut assigned) {
                    break Err(e);
                }
                if let Err(e) = land(i, writer, result, &mut flows, &mut commits, &ctx, &mut report) {
                    break Err(e);
                }
                let f = &mut flows[i];
                if !f.busy {
                    set_paused(f, &consumer, false);
                    if f.full(&config.commit)
                        && let Err(e) = dispatch(i, &mut flows, &mut commits, &ctx)
                    {
                        break Err(e);
                    }
                }
            }
            Some(w) = watch_rx.recv() => {
                watching = false;
                last_watch = Instant::now();
                watched(w, &mut flows, &metrics, &brokers);
            }
            _ = tick.tick() => {
                if let Err(e) = rebalanced(&mut flows, &index, &ctx, &mut assigned) {
                    break Err(e);
                }
                for f in &mut flows {
                    f.publish_received(&metrics);
                }
                let mut failed = None;
                for i in 0..flows.len() {
                    let f = &flows[i];
                    let due = f.first_pending.is_some_and(|t| t.elapsed() >= max_interval);
                    let tail = opts.until_caught_up
                        && !f.pending.is_empty()
                        && last_message.elapsed() >= CAUGHT_UP_IDLE;
                    if (due || tail) && !f.busy
                        && let Err(e) = dispatch(i, &mut flows, &mut commits, &ctx)
                    {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if !watching && last_watch.elapsed() >= WATCH_EVERY {
                    watching = true;
                    let asked: Vec<(usize, String, i32, i64)> = flows
                        .iter()
                        .enumerate()
                        .flat_map(|(i, f)| {
                            f.committed.iter().map(move |(p, c)| (i, f.topic.clone(), *p, *c))
                        })
                        .collect();
                    let (c, tx) = (consumer.clone(), watch_tx.clone());
                    watch_task = Some(tokio::task::spawn_blocking(move || {
                        let _ = tx.blocking_send(read_watermarks(&c, &asked, WATCH_TIMEOUT));
                    }));
                }
                if opts.verbose && !progress_every.is_zero() && last_progress.elapsed() >= progress_every {
                    progress(&mut flows, &metrics, last_progress.elapsed());
                    last_progress = Instant::now();
                }
            }
        }
    };
    metrics.set_stopping();
    // Batches already committing finish (their commit is not abandoned halfway); a batch waiting to
    // retry after a store error is abandoned and read again on the next start.
    let mut first_error = outcome.err();
    while let Some((i, writer, result)) = commits.next().await {
        match result {
            Ok(done) => {
                settle(&mut flows[i], writer, done, &mut report, &metrics);
            }
            Err(failed) => {
                let f = &mut flows[i];
                f.writer = Some(writer);
                f.busy = false;
                report.abandoned += failed.batch.msgs.len();
                if first_error.is_none() && !abandonable(&failed.error) {
                    first_error = Some(failed.error);
                }
            }
        }
    }
    // The consumer leaves the group when its last handle is dropped (which can block): a watermark
    // check still running holds one, so it ends first; then the close runs off the async threads
    // and completes before the job returns, so that a process started next joins at once.
    drop(watch_rx);
    if let Some(t) = watch_task {
        let _ = t.await;
    }
    drop(ctx);
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    if let Some(e) = first_error {
        return Err(e);
    }
    report.abandoned += flows.iter().map(|f| f.pending.len()).sum::<usize>();
    Ok(report)
}

/// Takes in what rebalances changed: assigned partitions start at their tables' offsets (a reset
/// one is committed soon); revoked ones leave the flow with their uncommitted messages (the new
/// owner reads them again from the table's offset; a batch of theirs already committing lands, and
/// the fence keeps the new owner from applying it twice).
#[allow(clippy::result_large_err)]
fn rebalanced(
    flows: &mut [Flow],
    index: &HashMap<String, usize>,
    ctx: &Ctx,
    assigned: &mut bool,
) -> Result<(), IngestError> {
    let metrics = &ctx.metrics;
    for event in ctx.consumer.context().assigner.take() {
        match event {
            Rebalanced::Failed(e) => return Err(e),
            Rebalanced::Assigned(placed) => {
                *assigned = true;
                let mut by_flow: BTreeMap<usize, BTreeMap<i32, i64>> = BTreeMap::new();
                for Placed {
                    topic,
                    partition: p,
                    start,
                    high,
                } in placed
                {
                    let Some(&i) = index.get(&topic) else {
                        continue;
                    };
                    let f = &mut flows[i];
                    f.committed.insert(p, start);
                    f.dispatched.insert(p, start);
                    f.end_at_start.insert(p, high);
                    f.lag.insert(p, high - start);
                    let l = Metrics::partition(&f.topic, p);
                    metrics.committed_offset.get_or_create(&l).set(start);
                    metrics.consumed_offset.get_or_create(&l).set(start);
                    metrics.high_watermark.get_or_create(&l).set(high);
                    metrics.lag.get_or_create(&l).set(high - start);
                    by_flow.entry(i).or_default().insert(p, start);
                }
                for (i, offsets) in by_flow {
                    let f = &mut flows[i];
                    metrics
                        .assigned_partitions
                        .get_or_create(&Metrics::topic(&f.topic))
                        .set(f.committed.len() as i64);
                    if f.paused {
                        // New partitions of a paused flow wait with the others.
                        f.paused = false;
                        set_paused(f, &ctx.consumer, true);
                    }
                    info!(
                        table = %f.name,
                        start = %Checkpoint { topic: f.topic.clone(), offsets }.render(),
                        "partitions assigned"
                    );
                }
            }
            Rebalanced::Revoked(revoked) => {
                let mut by_flow: BTreeMap<usize, Vec<i32>> = BTreeMap::new();
                for (topic, p) in revoked {
                    if let Some(&i) = index.get(&topic) {
                        by_flow.entry(i).or_default().push(p);
                    }
                }
                for (i, partitions) in by_flow {
                    revoke(&mut flows[i], &partitions, metrics);
                }
            }
            Rebalanced::RevokedAll => {
                for f in flows.iter_mut() {
                    let partitions: Vec<i32> = f.committed.keys().copied().collect();
                    revoke(f, &partitions, metrics);
                }
            }
        }
    }
    Ok(())
}

/// Drops revoked partitions from a flow: their positions, and their messages not yet committing.
fn revoke(f: &mut Flow, partitions: &[i32], metrics: &Metrics) {
    for p in partitions {
        f.committed.remove(p);
        f.dispatched.remove(p);
        f.end_at_start.remove(p);
        f.lag.remove(p);
        f.received.remove(p);
        let l = Metrics::partition(&f.topic, *p);
        metrics.committed_offset.remove(&l);
        metrics.consumed_offset.remove(&l);
        metrics.high_watermark.remove(&l);
        metrics.lag.remove(&l);
    }
    metrics
        .assigned_partitions
        .get_or_create(&Metrics::topic(&f.topic))
        .set(f.committed.len() as i64);
    let before = f.pending.len();
    f.pending.retain(|m| !partitions.contains(&m.partition));
    f.recount_pending();
    info!(
        table = %f.name,
        partitions = ?partitions,
        dropped = before - f.pending.len(),
        "partitions revoked"
    );
}

/// What commit tasks share.
struct Ctx {
    consumer: Arc<KafkaConsumer>,
    metrics: Arc<Metrics>,
    verbose: bool,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Takes in a watermark check: lag and metrics, and the broker's health.
fn watched(w: Watch, flows: &mut [Flow], metrics: &Metrics, brokers: &str) {
    match w.marks {
        Err(cause) => {
            if !metrics.broker_down() {
                warn!(
                    "Kafka broker at {brokers} does not answer: {cause}; still running, consuming \
                     resumes from the uncommitted position when it is back"
                );
            }
            metrics.set_broker_down(Some(cause));
        }
        Ok(marks) => {
            if metrics.broker_down() {
                info!("Kafka broker at {brokers} answers again");
            }
            metrics.set_broker_down(None);
            for Mark {
                flow: i,
                partition: p,
                position: committed,
                high,
                ..
            } in marks
            {
                let f = &mut flows[i];
                if !f.committed.contains_key(&p) {
                    // Revoked since the watermarks were asked for.
                    continue;
                }
                let lag = high - committed;
                if lag < 0 && f.lag.get(&p).is_none_or(|l| *l >= 0) {
                    warn!(
                        "table {} topic {} partition {p}: the checkpoint {committed} is beyond the \
                         partition's end offset {high} (topic recreated?)",
                        f.name, f.topic
                    );
                }
                f.lag.insert(p, lag);
                let l = Metrics::partition(&f.topic, p);
                metrics.high_watermark.get_or_create(&l).set(high);
                metrics.lag.get_or_create(&l).set(lag);
            }
        }
    }
}

/// The error when the consumer's position left the partition's offsets mid-run: names the partition
/// by comparing positions with the watermarks now.
async fn position_lost(
    flows: &[Flow],
    consumer: &Arc<KafkaConsumer>,
    code: RDKafkaErrorCode,
) -> IngestError {
    let asked: Vec<(usize, String, i32, i64)> = flows
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            f.next_offsets()
                .into_iter()
                .map(move |(p, o)| (i, f.topic.clone(), p, o))
        })
        .collect();
    let c = consumer.clone();
    let w = tokio::task::spawn_blocking(move || read_watermarks(&c, &asked, CONNECT_TIMEOUT)).await;
    if let Ok(Watch { marks: Ok(marks) }) = w {
        for Mark {
            flow: i,
            partition: p,
            position,
            low,
            high,
        } in marks
        {
            if position > high || position < low {
                return out_of_range(&flows[i].name, &flows[i].topic, p, position, low, high);
            }
        }
    }
    IngestError::Kafka(format!(
        "consuming: a partition's position was outside its offsets ({code}) but is within them \
         now (a leader change?); restart lake ingest: it resumes at the tables' checkpoints"
    ))
}

/// An error and its causes on one line, each cause once (left out when the text before already
/// carries it).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn table_err(f: &Writer, source: lake_table::Error) -> IngestError {
    IngestError::Table {
        uri: f.uri.clone(),
        topic: f.topic.clone(),
        source,
    }
}

/// The position of every partition of `topic` the table recorded (see [`effective`]), as a
/// checkpoint; `None` when no commit recorded one.
pub async fn last_checkpoint(
    table: &Table,
    topic: &str,
) -> Result<Option<Checkpoint>, lake_table::Error> {
    let offsets = table_offsets(table, topic, &[]).await?;
    Ok((!offsets.is_empty()).then(|| Checkpoint {
        topic: topic.to_owned(),
        offsets,
    }))
}

/// The offset the table recorded for each partition of `topic`: the highest any completed commit
/// recorded since the partition's last reset. The active timeline is read first; the archived one
/// only when it lacks one of `wanted` (or every partition).
pub async fn table_offsets(
    table: &Table,
    topic: &str,
    wanted: &[i32],
) -> Result<BTreeMap<i32, i64>, lake_table::Error> {
    let timeline = lake_table::commit::start(table).await?.timeline;
    let writes: Vec<_> = timeline
        .completed_writes()
        .filter(|w| !timeline.is_compaction(w.time))
        .copied()
        .collect();
    let metas = timeline.commit_metadata_all(&writes).await?;
    let active = effective(topic, metas.iter().map(Arc::as_ref));
    if !active.is_empty() && wanted.iter().all(|p| active.contains_key(p)) {
        return Ok(active);
    }
    let (storage, layout) = (table.storage(), timeline.layout());
    let archived = ArchivedTimeline::load(storage, layout).await?;
    let mut older = Vec::new();
    for w in archived.completed_writes() {
        older.push(
            w.commit_metadata()
                .map_err(|r| lake_table::archive::bad_details(w, r))?,
        );
    }
    Ok(effective(
        topic,
        older.iter().chain(metas.iter().map(Arc::as_ref)),
    ))
}

/// The record key fields of an Avro topic: the fields of the first framed message key's schema.
async fn avro_key_fields(f: &Writer, msgs: &[Message]) -> Result<Vec<String>, IngestError> {
    if let Some(registry) = &f.registry {
        for m in msgs {
            let Some(Ok((id, _))) = m.key.as_deref().map(frame) else {
                continue;
            };
            let schema = registry.schema(id).await.map_err(|e| {
                IngestError::Config(format!(
                    "topic {} partition {} offset {}: the message key: {e}",
                    m.topic, m.partition, m.offset
                ))
            })?;
            let fields = schema.field_names();
            if !fields.is_empty() {
                return Ok(fields);
            }
        }
    }
    Err(IngestError::Config(format!(
        "topic {}: no record key configured and no Avro record key to take it from",
        f.topic
    )))
}

/// Creates the table of a flow on its first batch (the key comes from the config or, for Debezium,
/// from the message keys).
async fn ensure_table(f: &mut Writer, msgs: &[Message]) -> Result<Table, IngestError> {
    if let Some(t) = &f.table {
        return Ok(t.clone());
    }
    let key = if !f.spec.key.is_empty() {
        f.spec.key.clone()
    } else if let Some(k) = f.spec.message_key_field.clone() {
        vec![k]
    } else if f.spec.format == MessageFormat::Avro {
        avro_key_fields(f, msgs).await?
    } else {
        msgs.iter()
            .find_map(|m| m.key.as_deref().and_then(debezium_key_fields))
            .ok_or_else(|| {
                IngestError::Config(format!(
                    "topic {}: no record key configured and no message key to take it from",
                    f.topic
                ))
            })?
    };
    let table_type = if f.spec.table_type == "mor" {
        TableType::MergeOnRead
    } else {
        TableType::CopyOnWrite
    };
    let ordering = Some(
        f.spec
            .ordering
            .clone()
            .unwrap_or_else(|| SOURCE_POSITION_FIELD.to_owned()),
    );
    let mut cfg = TableConfig::new(
        &TableConfig::name_from_uri(&f.uri),
        table_type,
        key,
        f.spec.partition_by.clone(),
        ordering,
        (f.spec.index == "bucket").then_some(f.spec.buckets),
    )
    .map_err(|source| table_err(f, source))?;
    cfg.global_index = f.spec.index == "global";
    cfg.cdc = match &f.spec.cdc {
        Some(m) => Some(m.parse().map_err(|reason: String| {
            table_err(
                f,
                lake_table::Error::Config {
                    path: f.uri.clone(),
                    reason,
                },
            )
        })?),
        None => None,
    };
    let table = match Table::create(&f.uri, cfg).await {
        Ok(t) => t,
        Err(lake_table::Error::TableExists { .. }) => Table::open(&f.uri)
            .await
            .map_err(|source| table_err(f, source))?,
        Err(source) => return Err(table_err(f, source)),
    };
    f.table = Some(table.clone());
    Ok(table)
}

async fn dead_letter_table(f: &mut Writer) -> Result<Table, IngestError> {
    if let Some(t) = &f.dead_letter {
        return Ok(t.clone());
    }
    let uri = f
        .spec
        .dead_letter
        .clone()
        .ok_or_else(|| IngestError::Config("dead-letter policy without a table".into()))?;
    let t = match Table::open_if_exists(&uri)
        .await
        .map_err(|source| table_err(f, source))?
    {
        Some(t) => t,
        None => {
            let cfg = TableConfig::new(
                &TableConfig::name_from_uri(&uri),
                TableType::CopyOnWrite,
                vec!["topic".into(), "partition".into(), "offset".into()],
                vec![],
                None,
                Some(1),
            )
            .map_err(|source| table_err(f, source))?;
            match Table::create(&uri, cfg).await {
                Ok(t) => t,
                Err(lake_table::Error::TableExists { .. }) => Table::open(&uri)
                    .await
                    .map_err(|source| table_err(f, source))?,
                Err(source) => return Err(table_err(f, source)),
            }
        }
    };
    f.dead_letter = Some(t.clone());
    Ok(t)
}

/// Starts committing a flow's open batch, unless its previous batch is still committing (the
/// caller pauses the flow's partitions meanwhile) or the job is stopping.
// The error ends the job, once: its size does not matter.
#[allow(clippy::result_large_err)]
fn dispatch(
    i: usize,
    flows: &mut [Flow],
    commits: &mut FuturesUnordered<Commit>,
    ctx: &Ctx,
) -> Result<(), IngestError> {
    let f = &mut flows[i];
    if f.pending.is_empty() || f.busy || ctx.stopped() {
        return Ok(());
    }
    let Some(writer) = f.writer.take() else {
        return Err(IngestError::Config(format!(
            "topic {}: no writer after its commit ended",
            f.topic
        )));
    };
    let next = f.next_offsets();
    let mut starts = BTreeMap::new();
    for m in &f.pending {
        if let Some(o) = f.dispatched.get(&m.partition) {
            starts.entry(m.partition).or_insert(*o);
        }
    }
    let batch = Batch {
        msgs: Arc::new(std::mem::take(&mut f.pending)),
        next: next.clone(),
        starts,
    };
    f.dispatched = next;
    f.pending_bytes = 0;
    f.first_pending = None;
    f.busy = true;
    commits.push(attempt(i, writer, batch, 1, ctx));
    Ok(())
}

/// Stops (`pause`) or restarts fetching a flow's partitions: a full batch waits for the flow's
/// previous commit without holding up the other flows.
fn set_paused(f: &mut Flow, consumer: &KafkaConsumer, pause: bool) {
    if f.paused == pause {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for p in f.committed.keys() {
        tpl.add_partition(&f.topic, *p);
    }
    let done = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match done {
        Ok(()) => f.paused = pause,
        Err(e) => warn!(table = %f.name, "pausing or resuming topic {}: {e}", f.topic),
    }
}

/// One attempt to commit a batch; attempts after the first wait (growing pauses, at most
/// `MAX_BACKOFF`). A retry whose earlier attempt landed after all (its answer lost) is stopped by
/// the batch's fence, never applied twice.
fn attempt(i: usize, mut writer: Writer, batch: Batch, attempt: u32, ctx: &Ctx) -> Commit {
    let consumer = ctx.consumer.clone();
    let verbose = ctx.verbose;
    let stop = ctx.stop.clone();
    Box::pin(async move {
        if attempt > 1 {
            let pause = Duration::from_secs(1 << (attempt - 2).min(6)).min(MAX_BACKOFF);
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if stop
                    .as_ref()
                    .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
                {
                    let error = IngestError::Stopped;
                    return (
                        i,
                        writer,
                        Err(Failed {
                            batch,
                            attempt,
                            error,
                        }),
                    );
                }
                tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
            }
        }
        let result = commit_batch(&mut writer, &batch, &consumer, verbose).await;
        let result = result.map_err(|error| Failed {
            batch,
            attempt,
            error,
        });
        (i, writer, result)
    })
}

/// Whether a failed commit is worth retrying: the store did not answer, or answered that the
/// commit's outcome is unknown. Bad data, a schema clash or a damaged table are not.
fn transient(e: &IngestError) -> bool {
    match e {
        IngestError::Table { source, .. } => {
            source.is_retryable()
                || matches!(source, lake_table::Error::CommitOutcomeUnknown { .. })
                || matches!(source, lake_table::Error::Parquet { source, .. }
                    if matches!(source, parquet::errors::ParquetError::External(_)))
        }
        _ => false,
    }
}

/// Whether a failed batch may simply be left for the next start when the job stops.
fn abandonable(e: &IngestError) -> bool {
    transient(e) || matches!(e, IngestError::Stopped)
}

/// Takes in a commit task's outcome: a commit settles; a transient failure is retried after a pause
/// (the batch stays whole, and nothing of it is visible until a commit completes); any other
/// failure stops the job.
// The error ends the job, once: its size does not matter.
#[allow(clippy::result_large_err)]
fn land(
    i: usize,
    writer: Writer,
    result: Result<Committed, Failed>,
    flows: &mut [Flow],
    commits: &mut FuturesUnordered<Commit>,
    ctx: &Ctx,
    report: &mut RunReport,
) -> Result<(), IngestError> {
    match result {
        Ok(done) => {
            let topic = flows[i].topic.clone();
            if let Some(back) = settle(&mut flows[i], writer, done, report, &ctx.metrics) {
                for (p, o) in back {
                    ctx.consumer
                        .seek(&topic, p, Offset::Offset(o), SEEK_TIMEOUT)
                        .map_err(|e| kafka(&format!("seeking {topic}/{p} to offset {o}"), e))?;
                }
            }
            Ok(())
        }
        Err(failed) if ctx.stopped() && abandonable(&failed.error) => {
            // Stopping: the batch is read again on the next start, and nothing after it may be
            // committed (its checkpoint would skip this batch).
            let f = &mut flows[i];
            f.writer = Some(writer);
            f.busy = false;
            f.dispatched = f.committed.clone();
            report.abandoned += failed.batch.msgs.len();
            Ok(())
        }
        Err(failed) if transient(&failed.error) => {
            let text = chain(&failed.error);
            ctx.metrics.table_failed(&writer.name, text.clone());
            warn!(
                table = %writer.name,
                attempt = failed.attempt,
                "commit failed, retrying the batch: {text}"
            );
            commits.push(attempt(i, writer, failed.batch, failed.attempt + 1, ctx));
            Ok(())
        }
        Err(failed) => {
            let f = &mut flows[i];
            f.writer = Some(writer);
            f.busy = false;
            Err(failed.error)
        }
    }
}

/// Takes in what a flow's commit did. Offsets of partitions revoked meanwhile are left out; a fenced
/// batch sends the flow back to the table's offsets. Returns the partitions to seek, and where.
fn settle(
    f: &mut Flow,
    writer: Writer,
    done: Committed,
    report: &mut RunReport,
    metrics: &Metrics,
) -> Option<BTreeMap<i32, i64>> {
    f.writer = Some(writer);
    f.busy = false;
    if let Some(instant) = done.instant {
        f.last_instant = Some(instant);
        *report.commits.entry(f.uri.clone()).or_default() += 1;
    }
    report.dead_letters += done.dead_letters;
    *report.records.entry(f.uri.clone()).or_default() += done.records;
    f.records_since_progress += done.records;
    let mut back = BTreeMap::new();
    for (p, o) in &done.next {
        if let Some(c) = f.committed.get_mut(p) {
            *c = *o;
            metrics
                .committed_offset
                .get_or_create(&Metrics::partition(&f.topic, *p))
                .set(*o);
            if done.fenced {
                continue;
            }
            // Re-assigned to this process while the batch committed, the partition was placed
            // where the table stood before the batch landed: at the batch's start (what arrives
            // again below the batch's end is dropped), or — nothing recorded yet, `latest` — at
            // its end (it goes back to the batch's end, so nothing in between is skipped).
            let d = f.dispatched.entry(*p).or_insert(*o);
            if *d > *o {
                back.insert(*p, *o);
            }
            *d = *o;
            f.pending
                .retain(|m| m.partition != *p || (m.offset >= *o && !back.contains_key(p)));
        }
    }
    if !done.fenced {
        f.recount_pending();
        return (!back.is_empty()).then_some(back);
    }
    // Everything read since the fenced batch is read again from where the table stands.
    report.abandoned += f.pending.len();
    f.pending.clear();
    f.pending_bytes = 0;
    f.first_pending = None;
    f.dispatched = f.committed.clone();
    Some(f.committed.clone())
}

/// Commits one batch: dead letters first, then the table commit carrying the checkpoint `next`
/// (a commit without rows when every message was dead-lettered or a tombstone, so the checkpoint
/// still moves past them), then the consumer-group offsets; then inline compaction scheduling for
/// merge-on-read tables.
async fn commit_batch(
    f: &mut Writer,
    batch: &Batch,
    consumer: &KafkaConsumer,
    verbose: bool,
) -> Result<Committed, IngestError> {
    let started = Instant::now();
    let msgs = batch.msgs.clone();
    let next = batch.next.clone();
    let table = ensure_table(f, &msgs).await?;
    let timeline = table.timeline().await.map_err(|s| table_err(f, s))?;
    let schema = table
        .data_schema(&timeline)
        .await
        .map_err(|s| table_err(f, s))?;
    let config = table.config();
    let schemas = match (&f.registry, f.spec.format) {
        (Some(registry), MessageFormat::Avro) => {
            Some(Arc::new(registry.batch_schemas(&msgs).await?))
        }
        _ => None,
    };
    let spec = DecodeSpec {
        kind: f.spec.decoder,
        shape: TableShape {
            schema,
            key_fields: config.record_key_fields.clone(),
            ordering_field: config.ordering_field.clone(),
            partition_fields: config.partition_fields.clone(),
            unpositioned: String::new(),
            hints: Vec::new(),
        },
        message_key_field: f.spec.message_key_field.clone(),
        format: f.spec.format,
        schemas,
    };
    let keep_going = f.spec.on_error == ErrorPolicy::DeadLetter;
    // Decoding is CPU work: off the async threads, which keep consuming meanwhile.
    let to_decode = msgs.clone();
    let decoded =
        tokio::task::spawn_blocking(move || decode_messages(&to_decode, &spec, keep_going))
            .await
            .map_err(|e| IngestError::Config(format!("topic {}: decoding failed: {e}", f.topic)))?;
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            f.metrics
                .decode_errors
                .get_or_create(&Metrics::topic(&f.topic))
                .inc();
            return Err(e.into());
        }
    };
    let mut dead_letters = 0;
    if !decoded.rejected.is_empty() {
        let dlq = dead_letter_table(f).await?;
        let rows = dead_letter_rows(&msgs, &decoded.rejected);
        dlq.write_retrying(
            vec![ChangeBatch::upserts(rows)],
            WriteOptions::default(),
            WRITE_ATTEMPTS,
        )
        .await
        .map_err(|s| table_err(f, s))?;
        dead_letters = decoded.rejected.len() as u64;
        for (_, e) in &decoded.rejected {
            warn!(table = %f.name, "dead-letter {e}");
        }
    }
    // The batch's partitions only: a partition's position is what the commits that consumed it
    // recorded (an idle one's owner may have changed since this batch began).
    let next: BTreeMap<i32, i64> = next
        .into_iter()
        .filter(|(p, _)| batch.starts.contains_key(p))
        .collect();
    let checkpoint = Checkpoint {
        topic: f.topic.clone(),
        offsets: next.clone(),
    };
    let operation = if f.spec.decoder == DecoderKind::Json && f.spec.mode == "append" {
        WriteOperation::Insert
    } else {
        WriteOperation::Upsert
    };
    let records = msgs.len() as u64;
    let opts = WriteOptions {
        operation,
        extra_metadata: [(CHECKPOINT_KEY.to_owned(), checkpoint.render())].into(),
        commit_empty: true,
        fence: Some(Arc::new(KafkaFence {
            topic: f.topic.clone(),
            starts: batch.starts.clone(),
        })),
        ..Default::default()
    };
    let range = offset_ranges(&msgs);
    let batches: Vec<ChangeBatch> = decoded.batch.into_iter().collect();
    let written = table.write_retrying(batches, opts, WRITE_ATTEMPTS).await;
    if let Err(lake_table::Error::SourceFenced { reason, .. }) = &written {
        // Part of this batch is in the table already: go back to where the table stands.
        let partitions: Vec<i32> = next.keys().copied().collect();
        let at = table_offsets(&table, &f.topic, &partitions)
            .await
            .map_err(|s| table_err(f, s))?;
        let back: BTreeMap<i32, i64> = next
            .keys()
            .filter_map(|p| at.get(p).map(|o| (*p, *o)))
            .collect();
        warn!(
            table = %f.name,
            "batch not committed ({range}): {reason}; reading on from the table's offsets {}",
            Checkpoint { topic: f.topic.clone(), offsets: back.clone() }.render()
        );
        f.metrics
            .fenced
            .get_or_create(&Metrics::table(&f.name))
            .inc();
        return Ok(Committed {
            next: back,
            records: 0,
            instant: None,
            dead_letters,
            fenced: true,
        });
    }
    let summary = written.map_err(|source| match source {
        lake_table::Error::Schema { reason } => IngestError::Table {
            uri: f.uri.clone(),
            topic: f.topic.clone(),
            source: lake_table::Error::Schema {
                reason: format!("{reason} (messages {range}); nothing of this batch was committed"),
            },
        },
        source => table_err(f, source),
    })?;
    let m = &f.metrics;
    let labels = Metrics::table(&f.name);
    let topic = Metrics::topic(&f.topic);
    m.decode_errors
        .get_or_create(&topic)
        .inc_by(decoded.rejected.len() as u64);
    m.dead_letters.get_or_create(&topic).inc_by(dead_letters);
    let instant = summary.instant.map(|t| t.to_string());
    if let Some(t) = &instant {
        let seconds = started.elapsed().as_secs_f64();
        m.commits.get_or_create(&labels).inc();
        m.commit_seconds.get_or_create(&labels).observe(seconds);
        m.inserted.get_or_create(&labels).inc_by(summary.inserts);
        m.updated.get_or_create(&labels).inc_by(summary.updates);
        m.deleted.get_or_create(&labels).inc_by(summary.deletes);
        m.files_written
            .get_or_create(&labels)
            .inc_by(summary.files_written as u64);
        m.bytes_written
            .get_or_create(&labels)
            .inc_by(summary.bytes_written);
        m.write_retries
            .get_or_create(&labels)
            .inc_by(u64::from(summary.retries));
        m.table_committed(&f.name, std::time::SystemTime::now());
        if verbose {
            info!(
                table = %f.name,
                instant = %t,
                records,
                inserts = summary.inserts,
                updates = summary.updates,
                deletes = summary.deletes,
                dead_letters,
                checkpoint = %checkpoint.render(),
                ms = started.elapsed().as_millis() as u64,
                "commit"
            );
        }
    }
    // Monitoring only: the group's offsets follow the table's checkpoint.
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        let _ = tpl.add_partition_offset(&f.topic, *p, Offset::Offset(*o));
    }
    let _ = consumer.commit(&tpl, CommitMode::Async);
    if table.config().table_type == TableType::MergeOnRead
        && f.spec.compaction.max_delta_commits > 0
    {
        let strategy = CompactionStrategy {
            max_delta_commits: f.spec.compaction.max_delta_commits,
            max_log_bytes: 0,
        };
        if let Scheduled::Planned { instant, .. } = schedule(&table, strategy)
            .await
            .map_err(|s| table_err(f, s))?
        {
            if verbose {
                info!(table = %f.name, instant = %instant, "compaction scheduled");
            }
            if f.spec.compaction.execute {
                execute_pending(&table, 2)
                    .await
                    .map_err(|s| table_err(f, s))?;
            }
        }
        let timeline = table.timeline().await.map_err(|s| table_err(f, s))?;
        let (mut requested, mut inflight) = (0, 0);
        for i in timeline
            .pending()
            .filter(|i| timeline.is_compaction(i.time))
        {
            if i.state == State::Requested {
                requested += 1;
            } else {
                inflight += 1;
            }
        }
        m.compactions_pending.get_or_create(&labels).set(requested);
        m.compactions_running.get_or_create(&labels).set(inflight);
    }
    Ok(Committed {
        next,
        records,
        instant,
        dead_letters,
        fenced: false,
    })
}

/// `partition@first-last` of the messages in a batch, for error messages.
fn offset_ranges(msgs: &[Message]) -> String {
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for m in msgs {
        let r = ranges.entry(m.partition).or_insert((m.offset, m.offset));
        r.0 = r.0.min(m.offset);
        r.1 = r.1.max(m.offset);
    }
    let topic = msgs.first().map(|m| m.topic.as_str()).unwrap_or_default();
    let parts: Vec<String> = ranges
        .iter()
        .map(|(p, (a, b))| format!("partition {p} offsets {a}-{b}"))
        .collect();
    format!("topic {topic} {}", parts.join(", "))
}

/// Rows of the dead-letter table: where the message was, its key and value, and why. A key or value
/// that is not UTF-8 text is kept byte for byte in `key_bytes` / `value_bytes` (its text column is
/// then null), never replaced.
fn dead_letter_rows(msgs: &[Message], rejected: &[(usize, MessageError)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
        Field::new("offset", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("key_bytes", DataType::Binary, true),
        Field::new("value_bytes", DataType::Binary, true),
    ]));
    let pick = |f: &dyn Fn(&Message, &MessageError) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            rejected
                .iter()
                .map(|(i, e)| f(&msgs[*i], e))
                .collect::<Vec<_>>(),
        ))
    };
    let text = |b: Option<&[u8]>| b.and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned));
    let raw = |get: &dyn Fn(&Message) -> Option<&[u8]>| -> ArrayRef {
        Arc::new(BinaryArray::from(
            rejected
                .iter()
                .map(|(i, _)| get(&msgs[*i]).filter(|b| std::str::from_utf8(b).is_err()))
                .collect::<Vec<_>>(),
        ))
    };
    let columns = vec![
        pick(&|m, _| Some(m.topic.clone())),
        pick(&|m, _| Some(m.partition.to_string())),
        pick(&|m, _| Some(m.offset.to_string())),
        pick(&|m, _| text(m.key.as_deref())),
        pick(&|m, _| text(m.value.as_deref())),
        pick(&|_, e| Some(e.reason.clone())),
        raw(&|m| m.key.as_deref()),
        raw(&|m| m.value.as_deref()),
    ];
    // The schema and columns are built together above; they always agree.
    RecordBatch::try_new(schema.clone(), columns).unwrap_or_else(|_| RecordBatch::new_empty(schema))
}

/// One progress line per flow: records/s since the last line, lag (as of the last watermark check;
/// negative: checkpoint beyond the end), pending records, last instant.
fn progress(flows: &mut [Flow], metrics: &Metrics, elapsed: Duration) {
    for f in flows.iter_mut() {
        let lag: i64 = f.lag.values().sum();
        info!(
            table = %f.name,
            topic = %f.topic,
            records_per_s = (f.records_since_progress as f64 / elapsed.as_secs_f64().max(0.001)).round() as u64,
            lag,
            pending = f.pending.len(),
            last_instant = f.last_instant.as_deref().unwrap_or("none"),
            broker = if metrics.broker_down() { "down" } else { "up" },
            "progress"
        );
        f.records_since_progress = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let cfg = PipelineConfig::parse(
            "[source]\nbrokers = \"x\"\n[[tables]]\ntopic = \"t\"\ntable = \"memory://t\"\n",
            |_| None,
        )
        .expect("config");
        Writer {
            spec: cfg.tables[0].clone(),
            topic: "t".into(),
            uri: "memory://t".into(),
            name: "t".into(),
            table: None,
            dead_letter: None,
            metrics: Arc::new(Metrics::new()),
            registry: None,
        }
    }

    /// A busy flow owning partition 0, placed at `placed`, with messages `pending` of it received.
    fn flow(placed: i64, pending: std::ops::Range<i64>) -> Flow {
        let msgs: Vec<Message> = pending
            .map(|offset| Message {
                topic: "t".into(),
                partition: 0,
                offset,
                key: None,
                value: Some(b"{}".to_vec()),
            })
            .collect();
        Flow {
            topic: "t".into(),
            uri: "memory://t".into(),
            name: "t".into(),
            writer: None,
            busy: true,
            paused: false,
            committed: BTreeMap::from([(0, placed)]),
            dispatched: BTreeMap::from([(0, placed)]),
            end_at_start: BTreeMap::new(),
            lag: BTreeMap::new(),
            received: BTreeMap::new(),
            pending_bytes: msgs.len() * 2,
            pending: msgs,
            first_pending: Some(Instant::now()),
            last_instant: None,
            records_since_progress: 0,
        }
    }

    fn landed(next: i64) -> Committed {
        Committed {
            next: BTreeMap::from([(0, next)]),
            records: 50,
            instant: Some("20261203000000000".into()),
            dead_letters: 0,
            fenced: false,
        }
    }

    fn offsets(f: &Flow) -> Vec<i64> {
        f.pending.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn a_partition_placed_again_while_its_batch_commits_keeps_the_batch_s_end() {
        let metrics = Metrics::new();
        let mut report = RunReport::default();
        // Re-assigned during the commit of 100..150 and placed at 100 (the batch had not landed):
        // what was fetched again below 150 is dropped, nothing is sought.
        let mut f = flow(100, 100..160);
        let back = settle(&mut f, writer(), landed(150), &mut report, &metrics);
        assert_eq!(back, None);
        assert_eq!((f.committed[&0], f.dispatched[&0]), (150, 150));
        assert_eq!(offsets(&f), (150..160).collect::<Vec<_>>());
        assert_eq!(f.pending_bytes, 20);
        // Placed at the partition's end (nothing recorded, `latest`) before its first batch landed:
        // it goes back to the batch's end, so nothing in between is skipped.
        let mut f = flow(300, 300..305);
        let back = settle(&mut f, writer(), landed(150), &mut report, &metrics);
        assert_eq!(back, Some(BTreeMap::from([(0, 150)])));
        assert_eq!((f.committed[&0], f.dispatched[&0]), (150, 150));
        assert!(f.pending.is_empty() && f.first_pending.is_none());
        // Not placed again: the messages after the batch stay.
        let mut f = flow(150, 150..155);
        let back = settle(&mut f, writer(), landed(150), &mut report, &metrics);
        assert_eq!(back, None);
        assert_eq!(offsets(&f), (150..155).collect::<Vec<_>>());
    }
}
