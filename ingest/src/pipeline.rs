//! `lake ingest`: consumes Kafka topics and commits them into tables, exactly once.
//!
//! Positions live in the tables, not in the consumer group: every commit stores the next offset of
//! every partition of its topic under `deltastreamer.checkpoint.key` (Hudi Streamer's format), and
//! on start each topic's partitions are assigned at the checkpoint of its table's last completed
//! commit (a table without one starts at `auto_offset_reset`). A crash between the table commit and
//! anything else therefore re-reads exactly the uncommitted messages, and a re-read message can never
//! be committed twice. Consumer-group offsets are committed after each table commit, for monitoring.
//!
//! Each table has its own open batch, committed when it reaches `max_records`, `max_bytes` or
//! `max_interval_ms`; tables commit independently. Bad messages fail the job (naming topic,
//! partition, offset and reason) or, with the dead-letter policy, are written to the dead-letter
//! table — in the same step, before the table commit that moves the checkpoint past them.

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
use lake_table::{ChangeBatch, Table, TableConfig, TableType, WriteOperation, WriteOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;

use crate::checkpoint::Checkpoint;
use crate::config::{DecoderKind, ErrorPolicy, PipelineConfig, TableSpec};
use crate::messages::{DecodeSpec, Message, MessageError, debezium_key_fields, decode_messages};
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
}

fn kafka(context: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Kafka(format!("{context}: {e}"))
}

/// Attempts of a table write that conflicts with another writer or a compaction.
const WRITE_ATTEMPTS: u32 = 8;

/// With `until_caught_up`, how long no message may arrive before the job counts as caught up.
const CAUGHT_UP_IDLE: Duration = Duration::from_millis(1500);

/// How a run ends and reports.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stop once every partition has been committed up to its end offset as of the start and no
    /// message arrived for 1.5 s.
    pub until_caught_up: bool,
    /// A flag that stops the job (set by SIGINT/SIGTERM); the open batches are abandoned, not
    /// half-committed, and will be read again.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Print progress and commit lines to stderr.
    pub verbose: bool,
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

/// The part of a flow that commits: held by the flow while idle, by its commit task while a batch
/// is being decoded and committed.
struct Writer {
    spec: TableSpec,
    topic: String,
    uri: String,
    table: Option<Table>,
    dead_letter: Option<Table>,
}

/// What a commit task did.
struct Committed {
    /// The checkpoint the commit recorded.
    next: BTreeMap<i32, i64>,
    records: u64,
    instant: Option<String>,
    dead_letters: u64,
}

/// A batch being committed: the flow's index, its writer, and the outcome.
type Commit = Pin<Box<dyn Future<Output = (usize, Writer, Result<Committed, IngestError>)>>>;

/// One topic flowing into one table. Consuming goes on while the previous batch commits: at most one
/// batch per flow is committing while the next one fills.
struct Flow {
    topic: String,
    uri: String,
    writer: Option<Writer>,
    /// A batch of this flow is being committed.
    busy: bool,
    /// Next offset to read per partition, as of the last completed table commit.
    committed: BTreeMap<i32, i64>,
    /// Next offset to read per partition, as of the last batch handed to the commit task.
    dispatched: BTreeMap<i32, i64>,
    /// End offsets at start (for `until_caught_up`).
    end_at_start: BTreeMap<i32, i64>,
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

    fn caught_up(&self) -> bool {
        self.pending.is_empty()
            && !self.busy
            && self
                .end_at_start
                .iter()
                .all(|(p, end)| self.committed.get(p).copied().unwrap_or(0) >= *end)
    }
}

fn log(verbose: bool, line: &str) {
    if verbose {
        eprintln!("{line}");
    }
}

/// Runs the pipeline until stopped (or caught up).
pub async fn run(config: &PipelineConfig, opts: RunOptions) -> Result<RunReport, IngestError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.source.brokers)
        .set("group.id", &config.source.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", &config.source.auto_offset_reset);
    for (k, v) in &config.source.properties {
        client.set(k, v);
    }
    let consumer: StreamConsumer = client
        .create()
        .map_err(|e| kafka("creating the consumer", e))?;
    let consumer = Arc::new(consumer);
    let timeout = Duration::from_secs(30);

    // Topics of every table spec, and their partitions.
    let metadata = {
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || c.fetch_metadata(None, timeout))
            .await
            .map_err(|e| kafka("metadata", e))?
            .map_err(|e| {
                kafka(
                    &format!("reading metadata from {}", config.source.brokers),
                    e,
                )
            })?
    };
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
                    "topic {topic} does not exist on {}",
                    config.source.brokers
                )));
            }
            let uri = spec.table_uri(&topic);
            flows.push(Flow {
                topic: topic.clone(),
                uri: uri.clone(),
                writer: Some(Writer {
                    spec: spec.clone(),
                    topic,
                    uri,
                    table: None,
                    dead_letter: None,
                }),
                busy: false,
                committed: BTreeMap::new(),
                dispatched: BTreeMap::new(),
                end_at_start: BTreeMap::new(),
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

    // Start positions: each table's checkpoint, else the reset policy resolved to a real offset.
    let mut tpl = TopicPartitionList::new();
    for f in &mut flows {
        let table = Table::open_if_exists(&f.uri)
            .await
            .map_err(|source| IngestError::Table {
                uri: f.uri.clone(),
                topic: f.topic.clone(),
                source,
            })?;
        let checkpoint = match &table {
            Some(t) => last_checkpoint(t, &f.topic)
                .await
                .map_err(|source| IngestError::Table {
                    uri: f.uri.clone(),
                    topic: f.topic.clone(),
                    source,
                })?,
            None => None,
        };
        if let Some(w) = f.writer.as_mut() {
            w.table = table;
        }
        for &p in &partitions_of[&f.topic] {
            let (c, topic) = (consumer.clone(), f.topic.clone());
            let (low, high) =
                tokio::task::spawn_blocking(move || c.fetch_watermarks(&topic, p, timeout))
                    .await
                    .map_err(|e| kafka("watermarks", e))?
                    .map_err(|e| kafka(&format!("watermarks of {}/{p}", f.topic), e))?;
            let start = match checkpoint.as_ref().and_then(|c| c.offsets.get(&p)) {
                Some(o) => *o,
                None if config.source.auto_offset_reset == "latest" => high,
                None => low,
            };
            f.committed.insert(p, start);
            f.dispatched.insert(p, start);
            f.end_at_start.insert(p, high);
            tpl.add_partition_offset(&f.topic, p, Offset::Offset(start))
                .map_err(|e| kafka("assign", e))?;
        }
        log(
            opts.verbose,
            &format!(
                "ingest topic={} table={} start={}",
                f.topic,
                f.uri,
                Checkpoint {
                    topic: f.topic.clone(),
                    offsets: f.committed.clone()
                }
                .render()
            ),
        );
    }
    consumer.assign(&tpl).map_err(|e| kafka("assign", e))?;
    let index: HashMap<String, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.topic.clone(), i))
        .collect();

    let mut report = RunReport::default();
    let max_interval = Duration::from_millis(config.commit.max_interval_ms.max(1));
    let progress_every = Duration::from_millis(config.progress.interval_ms);
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_message = Instant::now();
    let mut commits: FuturesUnordered<Commit> = FuturesUnordered::new();
    loop {
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            break;
        }
        // Caught up: every partition committed to its end offset as of the start, and no message for
        // a while (some brokers report end offsets late).
        if opts.until_caught_up
            && last_message.elapsed() >= CAUGHT_UP_IDLE
            && flows.iter().all(Flow::caught_up)
        {
            break;
        }
        tokio::select! {
            received = consumer.recv() => {
                let m = received.map_err(|e| kafka("consuming", e))?;
                last_message = Instant::now();
                let Some(&i) = index.get(m.topic()) else { continue };
                let f = &mut flows[i];
                let msg = Message {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                };
                f.pending_bytes += msg.value.as_ref().map_or(0, Vec::len);
                f.pending.push(msg);
                f.first_pending.get_or_insert_with(Instant::now);
                if f.pending.len() >= config.commit.max_records
                    || f.pending_bytes >= config.commit.max_bytes
                {
                    // A full batch waits for the previous one to commit: back-pressure.
                    dispatch(i, &mut flows, &mut commits, &consumer, &mut report, opts.verbose).await?;
                }
            }
            Some((i, writer, result)) = commits.next(), if !commits.is_empty() => {
                settle(&mut flows[i], writer, result?, &mut report);
            }
            _ = tick.tick() => {
                for i in 0..flows.len() {
                    let f = &flows[i];
                    let due = f.first_pending.is_some_and(|t| t.elapsed() >= max_interval);
                    let tail = opts.until_caught_up
                        && !f.pending.is_empty()
                        && last_message.elapsed() >= CAUGHT_UP_IDLE;
                    if (due || tail) && !f.busy {
                        dispatch(i, &mut flows, &mut commits, &consumer, &mut report, opts.verbose).await?;
                    }
                }
                if opts.verbose && !progress_every.is_zero() && last_progress.elapsed() >= progress_every {
                    progress(&mut flows, &consumer, last_progress.elapsed()).await;
                    last_progress = Instant::now();
                }
            }
        }
    }
    // Batches already committing finish (their commit is not abandoned halfway).
    while let Some((i, writer, result)) = commits.next().await {
        settle(&mut flows[i], writer, result?, &mut report);
    }
    report.abandoned = flows.iter().map(|f| f.pending.len()).sum();
    if report.abandoned > 0 {
        log(
            opts.verbose,
            &format!(
                "ingest stopped: {} consumed records were not committed and will be read again",
                report.abandoned
            ),
        );
    }
    // Dropping a consumer can block while it leaves the group; do it off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    Ok(report)
}

fn table_err(f: &Writer, source: lake_table::Error) -> IngestError {
    IngestError::Table {
        uri: f.uri.clone(),
        topic: f.topic.clone(),
        source,
    }
}

/// The checkpoint of `topic` in the table's latest completed commit that carries one — on the
/// active timeline, else in the archived timeline (a table whose recent writes were all table
/// services).
pub async fn last_checkpoint(
    table: &Table,
    topic: &str,
) -> Result<Option<Checkpoint>, lake_table::Error> {
    let timeline = lake_table::commit::start(table).await?.timeline;
    let writes: Vec<_> = timeline.completed_writes().copied().collect();
    for w in writes.iter().rev() {
        if timeline.is_compaction(w.time) {
            continue;
        }
        let meta = timeline.commit_metadata_cached(w).await?;
        if let Some(c) = meta.checkpoint().and_then(Checkpoint::parse)
            && c.topic == topic
        {
            return Ok(Some(c));
        }
    }
    let (storage, layout) = (table.storage(), timeline.layout());
    let archived = ArchivedTimeline::load(storage, layout).await?;
    for w in archived
        .completed_writes()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let meta = w
            .commit_metadata()
            .map_err(|r| lake_table::archive::bad_details(w, r))?;
        if let Some(c) = meta.checkpoint().and_then(Checkpoint::parse)
            && c.topic == topic
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
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

/// Starts committing a flow's open batch, after the flow's previous batch has committed.
async fn dispatch(
    i: usize,
    flows: &mut [Flow],
    commits: &mut FuturesUnordered<Commit>,
    consumer: &Arc<StreamConsumer>,
    report: &mut RunReport,
    verbose: bool,
) -> Result<(), IngestError> {
    if flows[i].pending.is_empty() {
        return Ok(());
    }
    while flows[i].busy {
        match commits.next().await {
            Some((j, writer, result)) => settle(&mut flows[j], writer, result?, report),
            None => break,
        }
    }
    let f = &mut flows[i];
    let Some(mut writer) = f.writer.take() else {
        return Err(IngestError::Config(format!(
            "topic {}: no writer after its commit ended",
            f.topic
        )));
    };
    let next = f.next_offsets();
    let msgs = std::mem::take(&mut f.pending);
    f.dispatched = next.clone();
    f.pending_bytes = 0;
    f.first_pending = None;
    f.busy = true;
    let consumer = consumer.clone();
    commits.push(Box::pin(async move {
        let result = commit_batch(&mut writer, msgs, next, &consumer, verbose).await;
        (i, writer, result)
    }));
    Ok(())
}

/// Takes in what a flow's commit did.
fn settle(f: &mut Flow, writer: Writer, done: Committed, report: &mut RunReport) {
    f.writer = Some(writer);
    f.busy = false;
    if let Some(instant) = done.instant {
        f.last_instant = Some(instant);
        *report.commits.entry(f.uri.clone()).or_default() += 1;
    }
    report.dead_letters += done.dead_letters;
    *report.records.entry(f.uri.clone()).or_default() += done.records;
    f.records_since_progress += done.records;
    f.committed = done.next;
}

/// Commits one batch: dead letters first, then the table commit carrying the checkpoint `next`,
/// then the consumer-group offsets; then inline compaction scheduling for merge-on-read tables.
async fn commit_batch(
    f: &mut Writer,
    msgs: Vec<Message>,
    next: BTreeMap<i32, i64>,
    consumer: &StreamConsumer,
    verbose: bool,
) -> Result<Committed, IngestError> {
    let started = Instant::now();
    let table = ensure_table(f, &msgs).await?;
    let timeline = table.timeline().await.map_err(|s| table_err(f, s))?;
    let schema = table
        .data_schema(&timeline)
        .await
        .map_err(|s| table_err(f, s))?;
    let config = table.config();
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
    };
    let keep_going = f.spec.on_error == ErrorPolicy::DeadLetter;
    // Decoding is CPU work: off the async threads, which keep consuming meanwhile.
    let (msgs, decoded) = tokio::task::spawn_blocking(move || {
        let decoded = decode_messages(&msgs, &spec, keep_going);
        (msgs, decoded)
    })
    .await
    .map_err(|e| IngestError::Config(format!("topic {}: decoding failed: {e}", f.topic)))?;
    let decoded = decoded?;
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
            log(verbose, &format!("dead-letter {e}"));
        }
    }
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
    let mut instant = None;
    if let Some(batch) = decoded.batch {
        let opts = WriteOptions {
            operation,
            extra_metadata: [(CHECKPOINT_KEY.to_owned(), checkpoint.render())].into(),
            ..Default::default()
        };
        let range = offset_ranges(&msgs);
        let summary = table
            .write_retrying(vec![batch], opts, WRITE_ATTEMPTS)
            .await
            .map_err(|source| match source {
                lake_table::Error::Schema { reason } => IngestError::Table {
                    uri: f.uri.clone(),
                    topic: f.topic.clone(),
                    source: lake_table::Error::Schema {
                        reason: format!(
                            "{reason} (messages {range}); nothing of this batch was committed"
                        ),
                    },
                },
                source => table_err(f, source),
            })?;
        if let Some(t) = summary.instant {
            instant = Some(t.to_string());
            log(
                verbose,
                &format!(
                    "commit table={} instant={t} records={records} inserts={} updates={} deletes={} checkpoint={} ms={}",
                    f.uri,
                    summary.inserts,
                    summary.updates,
                    summary.deletes,
                    checkpoint.render(),
                    started.elapsed().as_millis()
                ),
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
            log(
                verbose,
                &format!("compaction scheduled table={} instant={instant}", f.uri),
            );
            if f.spec.compaction.execute {
                execute_pending(&table, 2)
                    .await
                    .map_err(|s| table_err(f, s))?;
            }
        }
    }
    Ok(Committed {
        next,
        records,
        instant,
        dead_letters,
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

/// One progress line per flow: records/s since the last line, lag, last instant.
async fn progress(flows: &mut [Flow], consumer: &Arc<StreamConsumer>, elapsed: Duration) {
    for f in flows.iter_mut() {
        let mut lag = 0i64;
        for (&p, &committed) in &f.committed {
            let (c, topic) = (consumer.clone(), f.topic.clone());
            if let Ok(Ok((_, high))) = tokio::task::spawn_blocking(move || {
                c.fetch_watermarks(&topic, p, Duration::from_secs(5))
            })
            .await
            {
                lag += (high - committed).max(0);
            }
        }
        eprintln!(
            "progress table={} topic={} records_per_s={:.0} lag={} pending={} last_instant={}",
            f.uri,
            f.topic,
            f.records_since_progress as f64 / elapsed.as_secs_f64().max(0.001),
            lag,
            f.pending.len(),
            f.last_instant.as_deref().unwrap_or("-")
        );
        f.records_since_progress = 0;
    }
}
