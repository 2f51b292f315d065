//! Helpers the benches share: the orders rows of the upsert benches and best-of-5 query timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use lake_query::datafusion::prelude::SessionContext;

/// Orders rows (`id, customer, status, amount, region, v`) for `ids`, at `version` (the ordering).
#[allow(dead_code)]
pub fn batch(ids: impl Iterator<Item = i64>, version: i64) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let n = ids.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
    ]));
    let statuses = ["created", "approved", "shipped", "delivered"];
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("customer-{:08}", i % 100_003)),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter()
                    .map(|i| statuses[(*i as usize + version as usize) % 4]),
            )),
            Arc::new(Int64Array::from_iter_values(
                ids.iter().map(|i| (i * 7919 + version) % 100_000),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("r{}", i % 4)),
            )),
            Arc::new(Int64Array::from(vec![version; n])),
        ],
    )
    .expect("bench batch")
}

/// Runs a query 5 times; the best time and the last answer, formatted.
#[allow(dead_code)]
pub async fn best_of(ctx: &SessionContext, sql: &str) -> (Duration, String) {
    let mut best = Duration::MAX;
    let mut answer = String::new();
    for _ in 0..5 {
        let started = Instant::now();
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        best = best.min(started.elapsed());
        answer = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
    }
    (best, answer)
}

/// CPU seconds this process has used so far (user + system, from `/proc/self/stat`; Linux, 10 ms
/// resolution), for figures per CPU-second.
#[allow(dead_code)]
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds the process `pid` (or `self`) has used so far, from `/proc/<pid>/stat`.
#[allow(dead_code)]
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` `runs` times; the best time and the last result.
#[allow(dead_code)]
pub fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let v = f();
        best = best.min(started.elapsed());
        out = Some(v);
    }
    (best, out.expect("ran at least once"))
}

/// A Debezium event of the orders source (`version` 0: a create, else an update), at binlog
/// position `pos`: its key and value.
#[allow(dead_code)]
pub fn event(id: u64, version: u64, pos: u64) -> (String, String) {
    let key = format!("{{\"id\":{id}}}");
    let value = format!(
        r#"{{"before":null,"after":{{"id":{id},"customer":"c{:04}","status":"s{}","amount":{},"region":"r{}"}},"op":"{}","ts_ms":{pos},"source":{{"file":"mysql-bin.000001","pos":{pos},"row":0}}}}"#,
        id % 5000,
        version % 5,
        (id * 7919 + version) % 100_000,
        id % 4,
        if version == 0 { "c" } else { "u" }
    );
    (key, value)
}

/// Debezium's Avro key schema of the bench's orders events.
#[allow(dead_code)]
const AVRO_KEY: &str = r#"{"type":"record","name":"Key","namespace":"bench.orders",
  "fields":[{"name":"id","type":"long"}]}"#;

/// Debezium's Avro envelope of the bench's orders events (the fields of [`event`]).
#[allow(dead_code)]
const AVRO_ENVELOPE: &str = r#"{"type":"record","name":"Envelope","namespace":"bench.orders","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
    {"name":"id","type":"long"},{"name":"customer","type":"string"},{"name":"status","type":"string"},
    {"name":"amount","type":"long"},{"name":"region","type":"string"}]}],"default":null},
  {"name":"after","type":["null","Value"],"default":null},
  {"name":"op","type":"string"},
  {"name":"ts_ms","type":["null","long"],"default":null},
  {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql",
    "fields":[{"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"}]}}]}"#;

/// The bench's orders events in Debezium's Avro form: Confluent-framed keys and values whose
/// schemas are in a registry.
#[allow(dead_code)]
pub struct AvroOrders {
    key: lake_ingest::avro::Registered,
    value: lake_ingest::avro::Registered,
}

#[allow(dead_code)]
impl AvroOrders {
    /// Registers the schemas with `registry`.
    pub fn new(registry: &lake_ingest::avro::EmbeddedRegistry) -> Self {
        Self {
            key: registry.register(AVRO_KEY).expect("bench schema"),
            value: registry.register(AVRO_ENVELOPE).expect("bench schema"),
        }
    }

    /// The writer schemas by id, as the pipeline fetches them before decoding a batch.
    pub fn schemas(&self) -> lake_ingest::avro::BatchSchemas {
        [(self.key.id, AVRO_KEY), (self.value.id, AVRO_ENVELOPE)]
            .into_iter()
            .map(|(id, t)| {
                let ws = lake_ingest::avro::WriterSchema::parse(id, t).expect("bench schema");
                (id, Ok(Arc::new(ws)))
            })
            .collect()
    }

    /// [`event`] as Avro: its framed key and value.
    pub fn event(&self, id: u64, version: u64, pos: u64) -> (Vec<u8>, Vec<u8>) {
        use lake_ingest::apache_avro::types::Value as A;
        let after = A::Record(vec![
            ("id".into(), A::Long(id as i64)),
            ("customer".into(), A::String(format!("c{:04}", id % 5000))),
            ("status".into(), A::String(format!("s{}", version % 5))),
            (
                "amount".into(),
                A::Long(((id * 7919 + version) % 100_000) as i64),
            ),
            ("region".into(), A::String(format!("r{}", id % 4))),
        ]);
        let value = A::Record(vec![
            ("before".into(), A::Union(0, Box::new(A::Null))),
            ("after".into(), A::Union(1, Box::new(after))),
            (
                "op".into(),
                A::String(if version == 0 { "c" } else { "u" }.into()),
            ),
            ("ts_ms".into(), A::Union(1, Box::new(A::Long(pos as i64)))),
            (
                "source".into(),
                A::Record(vec![
                    ("file".into(), A::String("mysql-bin.000001".into())),
                    ("pos".into(), A::Long(pos as i64)),
                    ("row".into(), A::Int(0)),
                ]),
            ),
        ]);
        let key = A::Record(vec![("id".into(), A::Long(id as i64))]);
        (
            self.key.encode(key).expect("encodes"),
            self.value.encode(value).expect("encodes"),
        )
    }
}

/// The bench's `i`th event (every fifth an update of an earlier id): its key and value, as JSON or
/// (with `avro`) Avro.
#[allow(dead_code)]
pub fn nth_event(i: u64, avro: Option<&AvroOrders>) -> (Vec<u8>, Vec<u8>) {
    let (id, version) = if i % 5 == 4 { (i / 2, 1) } else { (i, 0) };
    match avro {
        Some(a) => a.event(id, version, 1000 + i),
        None => {
            let (k, v) = event(id, version, 1000 + i);
            (k.into_bytes(), v.into_bytes())
        }
    }
}

/// Produces `n` orders events to `topic` (every fifth an update of an earlier id), as JSON or (with
/// `avro`) Avro.
#[allow(dead_code)]
pub async fn produce_events(brokers: &str, topic: &str, n: u64, avro: Option<&AvroOrders>) {
    use lake_ingest::rdkafka::ClientConfig;
    use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut sends = Vec::new();
    for i in 0..n {
        let (k, v) = nth_event(i, avro);
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&k).payload(&v))
            .map_err(|(e, _)| e)
            .expect("enqueued");
        sends.push(delivery);
        if sends.len() == 10_000 {
            futures::future::join_all(sends.drain(..)).await;
        }
    }
    futures::future::join_all(sends).await;
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
}
