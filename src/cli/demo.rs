//! `lake demo`: the whole pipeline in one process, with no services. An embedded Kafka-protocol
//! cluster (librdkafka's mock cluster) receives Debezium change events of an e-commerce `orders`
//! table and a clickstream; `lake ingest` commits them into a copy-on-write `orders` table and a
//! merge-on-read `clickstream` table in a local folder; the clickstream is compacted; and SQL answers
//! questions about the current state, the changes since an instant and the table as of it. The
//! tables stay on disk for `lake sql`. With `--format avro` the orders topic carries Debezium's Avro
//! converter's messages (Confluent-framed, schemas in a registry this process serves).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use lake_compaction::{CompactionStrategy, execute_pending, schedule};
use lake_ingest::apache_avro::types::Value as Avro;
use lake_ingest::avro::{EmbeddedRegistry, Registered};
use lake_ingest::config::PipelineConfig;
use lake_ingest::pipeline::{RunOptions, run as run_pipeline};
use lake_ingest::rdkafka::ClientConfig;
use lake_ingest::rdkafka::mocking::MockCluster;
use lake_ingest::rdkafka::producer::{FutureProducer, FutureRecord};
use lake_table::Table;
use serde_json::{Value, json};

/// Arguments of `lake demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the tables (replaced if it holds an earlier demo).
    #[arg(long, default_value = "lake-demo")]
    pub dir: String,
    /// Orders to create.
    #[arg(long, default_value_t = 2000)]
    pub orders: usize,
    /// Wire format of the orders topic: Debezium's JSON converter, or its Avro converter with a
    /// schema registry (served by the demo on 127.0.0.1).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// The orders topic's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Debezium JSON (`{"schema","payload"}` envelopes).
    Json,
    /// Confluent-framed Avro keys and values, schemas in a registry.
    Avro,
}

/// A tiny deterministic generator.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const STATUSES: [&str; 4] = ["paid", "shipped", "delivered", "returned"];
const EVENTS: [&str; 4] = ["view", "add_to_cart", "checkout", "search"];

/// A row of the source database's `orders` table.
#[derive(Clone, Debug)]
struct Order {
    id: u64,
    customer: String,
    status: String,
    /// The amount in cents (a `DECIMAL(10,2)` column).
    cents: i64,
    /// Days since 1970-01-01 (a `DATE` column).
    order_date: i32,
}

impl Order {
    /// Kafka Connect's decimal bytes: big-endian two's complement, shortest form.
    fn amount_bytes(&self) -> Vec<u8> {
        let bytes = self.cents.to_be_bytes();
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(7).min(7);
        let mut b = bytes[start..].to_vec();
        if b[0] & 0x80 != 0 {
            b.insert(0, 0);
        }
        b
    }

    fn json(&self) -> Value {
        json!({"id": self.id, "customer": self.customer, "status": self.status,
            "amount": lake_ingest::messages::base64_encode(&self.amount_bytes()),
            "order_date": self.order_date})
    }

    fn avro(&self) -> Avro {
        Avro::Record(vec![
            ("id".into(), Avro::Long(self.id as i64)),
            ("customer".into(), Avro::String(self.customer.clone())),
            ("status".into(), Avro::String(self.status.clone())),
            ("amount".into(), Avro::Decimal(self.amount_bytes().into())),
            ("order_date".into(), Avro::Int(self.order_date)),
        ])
    }
}

/// A change of the `orders` table as Debezium captures it (`op` c, u or d).
struct Change {
    op: &'static str,
    before: Option<Order>,
    after: Option<Order>,
    pos: u64,
    ts_ms: u64,
}

/// Debezium's Avro schemas of the `orders` topic: key and envelope, as registered.
struct AvroWire {
    key: Registered,
    value: Registered,
}

const AVRO_KEY: &str = r#"{"type":"record","name":"Key","namespace":"dbserver1.shop.orders",
  "fields":[{"name":"id","type":"long"}],"connect.name":"dbserver1.shop.orders.Key"}"#;

const AVRO_ENVELOPE: &str = r#"{"type":"record","name":"Envelope","namespace":"dbserver1.shop.orders",
  "connect.name":"dbserver1.shop.orders.Envelope","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value",
    "connect.name":"dbserver1.shop.orders.Value","fields":[
    {"name":"id","type":"long"},
    {"name":"customer","type":"string"},
    {"name":"status","type":"string"},
    {"name":"amount","type":{"type":"bytes","scale":2,"precision":10,"connect.version":1,
      "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
      "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}},
    {"name":"order_date","type":{"type":"int","connect.version":1,
      "connect.name":"io.debezium.time.Date"}}]}],"default":null},
  {"name":"after","type":["null","Value"],"default":null},
  {"name":"source","type":{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql",
    "fields":[{"name":"connector","type":"string"},{"name":"db","type":"string"},
      {"name":"table","type":["null","string"],"default":null},
      {"name":"file","type":"string"},{"name":"pos","type":"long"},{"name":"row","type":"int"}]}},
  {"name":"op","type":"string"},
  {"name":"ts_ms","type":["null","long"],"default":null}]}"#;

impl AvroWire {
    /// Registers the schemas with `registry`.
    fn register(registry: &EmbeddedRegistry) -> anyhow::Result<Self> {
        Ok(Self {
            key: registry.register(AVRO_KEY).map_err(anyhow::Error::msg)?,
            value: registry
                .register(AVRO_ENVELOPE)
                .map_err(anyhow::Error::msg)?,
        })
    }

    fn encode(&self, c: &Change) -> anyhow::Result<Kv> {
        let id = c.after.as_ref().or(c.before.as_ref()).map_or(0, |o| o.id);
        let key = Avro::Record(vec![("id".into(), Avro::Long(id as i64))]);
        let image = |o: &Option<Order>| match o {
            Some(o) => Avro::Union(1, Box::new(o.avro())),
            None => Avro::Union(0, Box::new(Avro::Null)),
        };
        let source = Avro::Record(vec![
            ("connector".into(), Avro::String("mysql".into())),
            ("db".into(), Avro::String("shop".into())),
            (
                "table".into(),
                Avro::Union(1, Box::new(Avro::String("orders".into()))),
            ),
            ("file".into(), Avro::String("mysql-bin.000001".into())),
            ("pos".into(), Avro::Long(c.pos as i64)),
            ("row".into(), Avro::Int(0)),
        ]);
        let value = Avro::Record(vec![
            ("before".into(), image(&c.before)),
            ("after".into(), image(&c.after)),
            ("source".into(), source),
            ("op".into(), Avro::String(c.op.into())),
            (
                "ts_ms".into(),
                Avro::Union(1, Box::new(Avro::Long(c.ts_ms as i64))),
            ),
        ]);
        Ok((
            self.key.encode(key).map_err(anyhow::Error::msg)?,
            Some(self.value.encode(value).map_err(anyhow::Error::msg)?),
        ))
    }
}

/// The source database and click stream, producing messages.
struct Source {
    rng: Gen,
    orders: BTreeMap<u64, Order>,
    next_id: u64,
    binlog_pos: u64,
    clock_ms: u64,
    /// How the orders topic is written: `None` for Debezium JSON.
    avro: Option<AvroWire>,
}

/// A message's key and value (`None`: a tombstone).
type Kv = (Vec<u8>, Option<Vec<u8>>);

/// Debezium JSON's Connect schema of the `orders` row.
fn json_row_schema(field: &str) -> Value {
    json!({"type": "struct", "field": field, "fields": [
        {"type": "int64", "field": "id"}, {"type": "string", "field": "customer"},
        {"type": "string", "field": "status"},
        {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
         "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
        {"type": "int32", "name": "io.debezium.time.Date", "field": "order_date"}]})
}

impl Source {
    fn order_event(
        &mut self,
        op: &'static str,
        before: Option<Order>,
        after: Option<Order>,
    ) -> anyhow::Result<Kv> {
        self.binlog_pos += 217;
        self.clock_ms += 13;
        let c = Change {
            op,
            before,
            after,
            pos: self.binlog_pos,
            ts_ms: self.clock_ms,
        };
        if let Some(avro) = &self.avro {
            return avro.encode(&c);
        }
        let id = c.after.as_ref().or(c.before.as_ref()).map_or(0, |o| o.id);
        let value = json!({
            "schema": {"type": "struct", "fields": [json_row_schema("after"), json_row_schema("before")]},
            "payload": {"before": c.before.as_ref().map(Order::json),
                "after": c.after.as_ref().map(Order::json), "op": c.op, "ts_ms": c.ts_ms,
                "source": {"connector": "mysql", "db": "shop", "table": "orders",
                           "file": "mysql-bin.000001", "pos": c.pos, "row": 0}}
        });
        Ok((
            json!({"id": id}).to_string().into_bytes(),
            Some(value.to_string().into_bytes()),
        ))
    }

    /// Orders: new ones, status changes, some cancelled (deleted, with the tombstone Debezium sends).
    fn orders(&mut self, new: usize, changes: usize) -> anyhow::Result<Vec<Kv>> {
        let mut out = Vec::new();
        for _ in 0..new {
            self.next_id += 1;
            let id = self.next_id;
            let row = Order {
                id,
                customer: format!("c{:03}", self.rng.below(300)),
                status: "created".into(),
                cents: 500 + self.rng.below(50_000) as i64,
                order_date: 20_400 + self.rng.below(30) as i32,
            };
            self.orders.insert(id, row.clone());
            out.push(self.order_event("c", None, Some(row))?);
        }
        for _ in 0..changes {
            let ids: Vec<u64> = self.orders.keys().copied().collect();
            if ids.is_empty() {
                break;
            }
            let id = ids[self.rng.below(ids.len() as u64) as usize];
            let Some(before) = self.orders.get(&id).cloned() else {
                continue;
            };
            if self.rng.below(10) == 0 {
                self.orders.remove(&id);
                let (key, value) = self.order_event("d", Some(before), None)?;
                out.push((key.clone(), value));
                out.push((key, None));
            } else {
                let mut after = before.clone();
                after.status = STATUSES[self.rng.below(4) as usize].into();
                self.orders.insert(id, after.clone());
                out.push(self.order_event("u", Some(before), Some(after))?);
            }
        }
        Ok(out)
    }

    /// Clicks keyed by user id: `{"timestamp","event_name","event_value"}`.
    fn clicks(&mut self, n: usize) -> Vec<Kv> {
        (0..n)
            .map(|_| {
                self.clock_ms += 7;
                let user = format!("u{:03}", self.rng.below(200));
                let v = json!({"timestamp": self.clock_ms, "event_name": EVENTS[self.rng.below(4) as usize],
                    "event_value": self.rng.below(1000) as f64 / 10.0});
                (user.into_bytes(), Some(v.to_string().into_bytes()))
            })
            .collect()
    }
}

async fn produce(producer: &FutureProducer, topic: &str, msgs: &[Kv]) -> anyhow::Result<()> {
    let sends = msgs.iter().map(|(k, v)| {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(k.as_slice());
        if let Some(v) = v {
            rec = rec.payload(v.as_slice());
        }
        producer.send(rec, Duration::from_secs(10))
    });
    for r in futures::future::join_all(sends).await {
        r.map_err(|(e, _)| anyhow::anyhow!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

async fn sql(
    ctx: &lake_query::datafusion::prelude::SessionContext,
    title: &str,
    q: &str,
) -> anyhow::Result<()> {
    println!("\n-- {title}\n{q};");
    let batches = ctx.sql(q).await?.collect().await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    Ok(())
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let dir = std::path::absolute(&a.dir).context("demo folder")?;
    prepare_demo_dir(&dir)?;
    let cluster = MockCluster::new(1).context("starting the embedded Kafka cluster")?;
    let brokers = cluster.bootstrap_servers();
    let (orders_topic, clicks_topic) = ("dbserver1.shop.orders", "clickstream");
    cluster.create_topic(orders_topic, 3, 1)?;
    cluster.create_topic(clicks_topic, 3, 1)?;
    println!("embedded Kafka cluster at {brokers}: topics {orders_topic}, {clicks_topic}");
    // Debezium's Avro converter: schemas in a registry (here one this process serves), messages
    // framed with the schema id.
    let (avro, registry_line, format_line) = match a.format {
        Format::Json => (None, String::new(), ""),
        Format::Avro => {
            let registry = EmbeddedRegistry::new();
            let wire = AvroWire::register(&registry)?;
            let url = registry
                .serve()
                .await
                .context("starting the embedded schema registry")?;
            println!("embedded schema registry at {url}: {orders_topic} is Debezium Avro");
            (
                Some(wire),
                format!("schema_registry_url = \"{url}\"\n"),
                "format = \"avro\"\n",
            )
        }
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let config_text = format!(
        r#"
[source]
brokers = "{brokers}"
group_id = "lake-demo"
{registry_line}
[commit]
max_records = 5000
max_interval_ms = 500

[progress]
interval_ms = 0

[[tables]]
topic = "{orders_topic}"
table = "{root}/{{table}}"
type = "cow"
decoder = "debezium"
{format_line}buckets = 2

[[tables]]
topic = "{clicks_topic}"
table = "{root}/clickstream"
type = "mor"
decoder = "json"
message_key_field = "user_id"
key = ["user_id"]
ordering = "timestamp"
buckets = 2
[tables.compaction]
max_delta_commits = 0
"#,
        root = dir.display()
    );
    let config = PipelineConfig::parse(&config_text, |_| None).map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        until_caught_up: true,
        stop: Some(super::ingest::stop_on_signals()),
        verbose: false,

        ..Default::default()
    };
    let mut source = Source {
        rng: Gen(0x2545_f491_4f6c_dd1d),
        orders: BTreeMap::new(),
        next_id: 0,
        binlog_pos: 4,
        clock_ms: 1_763_900_000_000,
        avro,
    };

    // Round 1: the first orders and clicks.
    let orders = source.orders(a.orders, a.orders / 2)?;
    let clicks = source.clicks(a.orders * 2);
    produce(&producer, orders_topic, &orders).await?;
    produce(&producer, clicks_topic, &clicks).await?;
    let r = run_pipeline(&config, opts.clone()).await?;
    for (uri, n) in &r.records {
        println!("ingested {n} messages into {uri}");
    }
    let orders_uri = format!("{}/orders", dir.display());
    let clicks_uri = format!("{}/clickstream", dir.display());
    let orders_table = Table::open(&orders_uri).await?;
    let first = orders_table
        .timeline()
        .await?
        .last_completed_write()
        .map(|i| i.time.to_string())
        .context("the first round committed nothing")?;

    // Round 2: status changes, cancellations and more clicks.
    let orders = source.orders(a.orders / 10, a.orders)?;
    let clicks = source.clicks(a.orders);
    produce(&producer, orders_topic, &orders).await?;
    produce(&producer, clicks_topic, &clicks).await?;
    let r = run_pipeline(&config, opts).await?;
    for (uri, n) in &r.records {
        println!("ingested {n} messages into {uri}");
    }

    // Compact the merge-on-read clickstream table.
    let clicks_table = Table::open(&clicks_uri).await?;
    let strategy = CompactionStrategy {
        max_delta_commits: 1,
        max_log_bytes: 0,
    };
    schedule(&clicks_table, strategy).await?;
    for c in execute_pending(&clicks_table, 2).await? {
        println!(
            "compacted {}: {} file groups, {} records",
            c.instant.map(|i| i.to_string()).unwrap_or_default(),
            c.file_groups,
            c.records
        );
    }

    let ctx = lake_query::session();
    for (name, uri) in [("orders", &orders_uri), ("clickstream", &clicks_uri)] {
        let provider =
            lake_query::HudiTableProvider::try_new(uri, lake_query::QueryOptions::default())
                .await?;
        ctx.register_table(name, std::sync::Arc::new(provider))?;
    }
    sql(
        &ctx,
        "current orders by status",
        "SELECT status, count(*) AS orders, sum(amount) AS amount FROM orders GROUP BY status ORDER BY status",
    )
    .await?;
    sql(
        &ctx,
        &format!("order changes since instant {first}: inserts, updates, deletes"),
        &format!(
            "SELECT op, count(*) AS changes FROM lake_changes('{orders_uri}', '{first}') GROUP BY op ORDER BY op"
        ),
    )
    .await?;
    sql(
        &ctx,
        &format!("orders as of instant {first}"),
        &format!(
            "SELECT status, count(*) AS orders FROM lake_as_of('{orders_uri}', '{first}') GROUP BY status ORDER BY status"
        ),
    )
    .await?;
    sql(
        &ctx,
        "each user's latest click, by event (merge-on-read table, compacted)",
        "SELECT event_name, count(*) AS users FROM clickstream GROUP BY event_name ORDER BY event_name",
    )
    .await?;
    println!(
        "\nThe tables are in {}. Query them:\n  lake sql --table orders={orders_uri} --table clickstream={clicks_uri}",
        dir.display()
    );
    let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    drop(cluster);
    Ok(())
}

/// The file that marks a folder as one `lake demo` made (and may therefore clear).
const DEMO_MARK: &str = ".lake-demo";

/// Makes `dir` ready for the demo: created if missing; cleared only if it is empty or a previous
/// demo's folder (it holds the demo's mark and nothing but the demo's tables). Anything else is
/// refused, so `--dir .` can never wipe a checkout.
fn prepare_demo_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        let entries: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let ours = |n: &String| matches!(n.as_str(), DEMO_MARK | "orders" | "clickstream");
        if !entries.is_empty() {
            // A folder from before the mark existed holds just the demo's two tables.
            let marked = entries.iter().any(|n| n == DEMO_MARK)
                || entries
                    .iter()
                    .all(|n| dir.join(n).join(".hoodie/hoodie.properties").is_file());
            if !marked || !entries.iter().all(ours) {
                anyhow::bail!(
                    "{} is not empty and is not a previous lake demo folder; pass --dir with a new or empty folder",
                    dir.display()
                );
            }
            for name in &entries {
                let p = dir.join(name);
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .with_context(|| format!("clearing {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(DEMO_MARK),
        "a folder made by `lake demo`; it clears it on its next run\n",
    )
    .with_context(|| format!("marking {}", dir.display()))?;
    Ok(())
}
