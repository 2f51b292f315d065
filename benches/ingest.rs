//! Ingest bench on librdkafka's in-process mock cluster (no services): events/s from a topic to
//! committed tables (COW and MOR), and freshness — the time from produce to visible in a snapshot
//! (the commit holding the event completed) — at a 1 s commit interval, p50/p99.
//!
//! Run: `cargo bench --bench ingest`

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lake_ingest::config::PipelineConfig;
use lake_ingest::pipeline::{RunOptions, last_checkpoint, run};
use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::mocking::MockCluster;
use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
use lake_table::Table;

mod common;

/// Partitions of the throughput bench's topic.
const PARTITIONS: i32 = 8;

fn config(
    brokers: &str,
    topic: &str,
    uri: &str,
    table_type: &str,
    interval_ms: u64,
    registry: Option<&str>,
) -> PipelineConfig {
    let (registry, format) = match registry {
        Some(url) => (
            format!("schema_registry_url = \"{url}\"\n"),
            "format = \"avro\"\n",
        ),
        None => (String::new(), ""),
    };
    let text = format!(
        r#"
[source]
brokers = "{brokers}"
group_id = "bench"
{registry}[commit]
max_records = 50000
max_interval_ms = {interval_ms}
[progress]
interval_ms = 0
[[tables]]
topic = "{topic}"
table = "{uri}"
type = "{table_type}"
{format}buckets = 4
[tables.compaction]
max_delta_commits = 0
"#
    );
    PipelineConfig::parse(&text, |_| None).expect("config")
}

/// Whether the table's checkpoint has reached `ends` on every partition.
async fn committed(uri: &str, topic: &str, ends: &HashMap<i32, i64>) -> bool {
    let Ok(t) = Table::open(uri).await else {
        return false;
    };
    let Ok(Some(c)) = last_checkpoint(&t, topic).await else {
        return false;
    };
    ends.iter()
        .all(|(p, end)| c.offsets.get(p).is_some_and(|o| o >= end))
}

/// The offsets a topic holds per partition (the mock cluster keeps only the newest messages of a
/// partition, so a bench counts what is there, not what it sent).
fn held(brokers: &str, topic: &str, partitions: i32) -> (HashMap<i32, i64>, i64) {
    use lake_ingest::rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        total += high - low;
    }
    (ends, total)
}

/// The floor under the end-to-end figure: the same topic read by a consumer configured as the
/// pipeline's, copying each message out as the pipeline does, with no decoding or writing.
async fn consume_only(brokers: &str, topic: &str, held: i64) {
    use lake_ingest::messages::Message;
    use lake_ingest::rdkafka::consumer::{Consumer, StreamConsumer};
    use lake_ingest::rdkafka::{Message as _, Offset, TopicPartitionList};
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-consume-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for kv in std::env::var("LAKE_BENCH_CONSUMER")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = kv.split_once('=') {
            client.set(k, v);
        }
    }
    let consumer: StreamConsumer = client.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let (started, cpu) = (Instant::now(), common::cpu_seconds());
    let mut got: Vec<Message> = Vec::with_capacity(held as usize);
    while (got.len() as i64) < held {
        let m = consumer.recv().await.expect("message");
        got.push(Message {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        });
    }
    let (secs, cpu) = (started.elapsed().as_secs_f64(), common::cpu_seconds() - cpu);
    println!(
        "parts: consume {held} messages from the mock cluster, no decoding or writing: {secs:.2}s, {:.0} messages/s, {cpu:.2} CPU-s",
        held as f64 / secs
    );
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

/// Produces `n` events (20% updates of earlier ids), as Debezium JSON or (with `avro`) Debezium
/// Avro with its schemas in an embedded registry, then times the pipeline until all are committed.
async fn throughput(table_type: &str, n: u64, avro: bool) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    let wire = if avro { "avro" } else { "json" };
    let topic = format!("bench.{table_type}.{wire}.orders");
    cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
    let registry = lake_ingest::avro::EmbeddedRegistry::new();
    let orders = avro.then(|| common::AvroOrders::new(&registry));
    let url = match avro {
        true => Some(registry.serve().await.expect("registry")),
        false => None,
    };
    common::produce_events(&brokers, &topic, n, orders.as_ref()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let (ends, held) = {
        let (b, t) = (brokers.clone(), topic.clone());
        tokio::task::spawn_blocking(move || held(&b, &t, PARTITIONS))
            .await
            .expect("watermarks")
    };
    consume_only(&brokers, &topic, held).await;
    let cfg = config(&brokers, &topic, &uri, table_type, 2000, url.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(lake_ingest::metrics::Metrics::new());
    let opts = RunOptions {
        until_caught_up: false,
        stop: Some(stop.clone()),
        verbose: std::env::var_os("LAKE_BENCH_VERBOSE").is_some(),
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let (started, cpu) = (Instant::now(), common::cpu_seconds());
    let monitor = {
        let (uri, topic, stop, metrics) =
            (uri.clone(), topic.clone(), stop.clone(), metrics.clone());
        tokio::spawn(async move {
            // The clock starts once the consumer group has assigned every partition (joining an
            // empty group waits a few seconds for more members, whatever the load).
            let labels = lake_ingest::metrics::Metrics::topic(&topic);
            while metrics.assigned_partitions.get_or_create(&labels).get() < i64::from(PARTITIONS) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let joined = started.elapsed().as_secs_f64();
            let started = Instant::now();
            while !committed(&uri, &topic, &ends).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let secs = started.elapsed().as_secs_f64();
            println!("{topic}: the consumer group formed in {joined:.2}s (not counted below)");
            stop.store(true, Ordering::SeqCst);
            secs
        })
    };
    let report = run(&cfg, opts).await.expect("run");
    let secs = monitor.await.expect("monitor");
    let cpu = common::cpu_seconds() - cpu;
    println!(
        "{table_type} {wire}: {held} events (of {n} sent) topic -> committed table in {secs:.2}s: {:.0} events/s ({} commits); {cpu:.2} CPU-s, {:.1} µs per event",
        held as f64 / secs,
        report.commits.values().sum::<u64>(),
        cpu * 1e6 / held as f64
    );
    // What a Prometheus scrape of this run costs.
    let t = Instant::now();
    let text = metrics.render();
    println!(
        "{table_type}: /metrics renders {} bytes ({} samples) in {:.0} µs",
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count(),
        t.elapsed().as_secs_f64() * 1e6
    );
}

/// Produces at a steady rate for a while with a 1 s commit interval; reports produce-to-visible.
async fn freshness(table_type: &str, rate: u64, secs: u64) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    let topic = format!("fresh.{table_type}.orders");
    cluster.create_topic(&topic, 4, 1).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let cfg = config(&brokers, &topic, &uri, table_type, 1000, None);
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(lake_ingest::metrics::Metrics::new());
    let opts = RunOptions {
        until_caught_up: false,
        stop: Some(stop.clone()),
        verbose: false,
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    // (partition, offset) -> produce time.
    let sent: Arc<std::sync::Mutex<HashMap<(i32, i64), Instant>>> = Arc::default();
    let total = rate * secs;
    let monitor = {
        let (uri, topic, sent, stop) = (uri.clone(), topic.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: HashMap<i32, i64> = HashMap::new();
            let mut latencies = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(secs + 30);
            while (latencies.len() as u64) < total && Instant::now() < deadline {
                if let Ok(t) = Table::open(&uri).await
                    && let Ok(Some(c)) = last_checkpoint(&t, &topic).await
                {
                    let now = Instant::now();
                    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
                    for (p, next) in c.offsets {
                        let from = seen.get(&p).copied().unwrap_or(0);
                        for o in from..next {
                            if let Some(at) = sent.get(&(p, o)) {
                                latencies.push(now.duration_since(*at));
                            }
                        }
                        seen.insert(p, next.max(from));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::SeqCst);
            latencies
        })
    };
    let feeder = {
        let (topic, sent) = (topic.clone(), sent.clone());
        tokio::spawn(async move {
            // Events flow once the consumer group has assigned the partitions.
            let labels = lake_ingest::metrics::Metrics::topic(&topic);
            while metrics.assigned_partitions.get_or_create(&labels).get() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let started = Instant::now();
            for i in 0..total {
                let due = started + Duration::from_micros(i * 1_000_000 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let (id, version) = if i % 5 == 4 { (i / 2, 1) } else { (i, 0) };
                let (k, v) = common::event(id, version, 1000 + i);
                let at = Instant::now();
                let Ok(delivery) = producer
                    .send_result(FutureRecord::to(&topic).key(&k).payload(&v))
                    .map_err(|(e, _)| e)
                else {
                    continue;
                };
                let sent = sent.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(d)) = delivery.await
                        && let Ok(mut s) = sent.lock()
                    {
                        s.insert((d.partition, d.offset), at);
                    }
                });
            }
            producer
        })
    };
    run(&cfg, opts).await.expect("run");
    let mut lat = monitor.await.expect("monitor");
    let producer = feeder.await.expect("feeder");
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{table_type}: freshness at a 1 s commit interval, {rate} events/s for {secs}s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// The parts of the pipeline alone, on the bench's messages: decoding (for a new table and for an
/// existing one), and the table write of the decoded batch.
async fn parts(n: u64) {
    use lake_ingest::TableShape;
    use lake_ingest::config::MessageFormat;
    use lake_ingest::messages::{DecodeSpec, Message, decode_messages};
    use lake_table::{TableConfig, TableType, WriteOptions};

    let registry = lake_ingest::avro::EmbeddedRegistry::new();
    let orders = common::AvroOrders::new(&registry);
    let messages = |avro: Option<&common::AvroOrders>| -> Vec<Message> {
        (0..n)
            .map(|i| {
                let (k, v) = common::nth_event(i, avro);
                Message {
                    topic: "parts.orders".into(),
                    partition: (i % 4) as i32,
                    offset: (i / 4) as i64,
                    key: Some(k),
                    value: Some(v),
                }
            })
            .collect()
    };
    let msgs = messages(None);
    let avro_msgs = messages(Some(&orders));
    let schemas = Arc::new(orders.schemas());
    let dir = tempfile::tempdir().expect("tmp");
    let uri = dir.path().join("t").display().to_string();
    let cfg = TableConfig::new(
        "t",
        TableType::MergeOnRead,
        vec!["id".into()],
        vec![],
        Some(lake_table::config::SOURCE_POSITION_FIELD.into()),
        Some(4),
    )
    .expect("config");
    let table = Table::create(&uri, cfg.clone()).await.expect("table");
    let mut shape = TableShape {
        key_fields: vec!["id".into()],
        ordering_field: cfg.ordering_field.clone(),
        ..Default::default()
    };
    let spec = |shape: &TableShape, avro: bool| DecodeSpec {
        kind: Default::default(),
        shape: shape.clone(),
        message_key_field: None,
        format: if avro {
            MessageFormat::Avro
        } else {
            MessageFormat::Json
        },
        schemas: avro.then(|| schemas.clone()),
    };
    let decode = |shape: &TableShape, what: &str| {
        let avro = what.starts_with("Avro");
        let msgs = if avro { &avro_msgs } else { &msgs };
        let (took, decoded) = common::best(3, || {
            decode_messages(msgs, &spec(shape, avro), false).expect("decodes")
        });
        let secs = took.as_secs_f64();
        println!(
            "parts: decode {n} messages, {what}: {secs:.3}s, {:.0} messages/s",
            n as f64 / secs
        );
        decoded.batch.expect("rows")
    };
    let batch = decode(
        &shape,
        "for a new table (schema inferred from the first 1,000)",
    );
    shape.schema = Some(batch.rows.schema());
    let direct = decode(&shape, "direct into columns (table exists)");
    let from_avro = decode(&shape, "Avro, table exists");
    assert_eq!(from_avro.rows, direct.rows, "Avro and JSON decode alike");
    let started = Instant::now();
    table
        .write(vec![batch], WriteOptions::default())
        .await
        .expect("write");
    let first_write = started.elapsed().as_secs_f64();
    let started = Instant::now();
    table
        .write(vec![direct], WriteOptions::default())
        .await
        .expect("write");
    println!(
        "parts: MOR write of the {n} decoded rows: {first_write:.3}s into the new table, {:.3}s again (updates)",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    parts(200_000).await;
    for t in ["cow", "mor"] {
        for avro in [false, true] {
            throughput(t, 200_000, avro).await;
        }
    }
    if std::env::var_os("LAKE_BENCH_THROUGHPUT_ONLY").is_some() {
        return;
    }
    for t in ["cow", "mor"] {
        freshness(t, 2000, 15).await;
    }
}
