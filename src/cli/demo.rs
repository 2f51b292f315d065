//! `lake demo`: the whole pipeline in one process, with no services. An embedded Kafka-protocol
//! cluster (librdkafka's mock cluster) receives Debezium change events of an e-commerce `orders`
//! table and a clickstream; `lake ingest` commits them into a copy-on-write `orders` table and a
//! merge-on-read `clickstream` table in a local folder; the clickstream is compacted; and SQL answers
//! questions about the current state, the changes since an instant and the table as of it. The
//! tables stay on disk for `lake sql`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use lake_compaction::{CompactionStrategy, execute_pending, schedule};
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

/// The source database and click stream, producing messages.
struct Source {
    rng: Gen,
    orders: BTreeMap<u64, Value>,
    next_id: u64,
    binlog_pos: u64,
    clock_ms: u64,
}

type Kv = (String, Option<String>);

impl Source {
    fn order_event(&mut self, op: &str, before: Option<Value>, after: Option<Value>) -> String {
        self.binlog_pos += 217;
        self.clock_ms += 13;
        json!({
            "schema": {"type": "struct", "fields": [
                {"type": "struct", "field": "after", "fields": [
                    {"type": "int64", "field": "id"}, {"type": "string", "field": "customer"},
                    {"type": "string", "field": "status"},
                    {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                     "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
                    {"type": "int32", "name": "io.debezium.time.Date", "field": "order_date"}]},
                {"type": "struct", "field": "before", "fields": [
                    {"type": "int64", "field": "id"}, {"type": "string", "field": "customer"},
                    {"type": "string", "field": "status"},
                    {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
                     "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "amount"},
                    {"type": "int32", "name": "io.debezium.time.Date", "field": "order_date"}]}]},
            "payload": {"before": before, "after": after, "op": op, "ts_ms": self.clock_ms,
                "source": {"connector": "mysql", "db": "shop", "table": "orders",
                           "file": "mysql-bin.000001", "pos": self.binlog_pos, "row": 0}}
        })
        .to_string()
    }

    fn amount(cents: u64) -> String {
        // Kafka Connect decimals: big-endian two's complement bytes, base64.
        let bytes = (cents as i64).to_be_bytes();
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(7).min(7);
        let mut b = bytes[start..].to_vec();
        if b[0] & 0x80 != 0 {
            b.insert(0, 0);
        }
        lake_ingest::messages::base64_encode(&b)
    }

    /// Orders: new ones, status changes, some cancelled (deleted, with the tombstone Debezium sends).
    fn orders(&mut self, new: usize, changes: usize) -> Vec<Kv> {
        let mut out = Vec::new();
        for _ in 0..new {
            self.next_id += 1;
            let id = self.next_id;
            let row = json!({"id": id, "customer": format!("c{:03}", self.rng.below(300)),
                "status": "created", "amount": Self::amount(500 + self.rng.below(50_000)),
                "order_date": 20_400 + self.rng.below(30)});
            self.orders.insert(id, row.clone());
            let v = self.order_event("c", None, Some(row));
            out.push((json!({"id": id}).to_string(), Some(v)));
        }
        for _ in 0..changes {
            let ids: Vec<u64> = self.orders.keys().copied().collect();
            if ids.is_empty() {
                break;
            }
            let id = ids[self.rng.below(ids.len() as u64) as usize];
            let before = self.orders[&id].clone();
            let key = json!({"id": id}).to_string();
            if self.rng.below(10) == 0 {
                self.orders.remove(&id);
                out.push((key.clone(), Some(self.order_event("d", Some(before), None))));
                out.push((key, None));
            } else {
                let mut after = before.clone();
                after["status"] = json!(STATUSES[self.rng.below(4) as usize]);
                self.orders.insert(id, after.clone());
                out.push((key, Some(self.order_event("u", Some(before), Some(after)))));
            }
        }
        out
    }

    /// Clicks keyed by user id: `{"timestamp","event_name","event_value"}`.
    fn clicks(&mut self, n: usize) -> Vec<Kv> {
        (0..n)
            .map(|_| {
                self.clock_ms += 7;
                let user = format!("u{:03}", self.rng.below(200));
                let v = json!({"timestamp": self.clock_ms, "event_name": EVENTS[self.rng.below(4) as usize],
                    "event_value": self.rng.below(1000) as f64 / 10.0});
                (user, Some(v.to_string()))
            })
            .collect()
    }
}

async fn produce(producer: &FutureProducer, topic: &str, msgs: &[Kv]) -> anyhow::Result<()> {
    let sends = msgs.iter().map(|(k, v)| {
        let mut rec: FutureRecord<'_, String, String> = FutureRecord::to(topic).key(k);
        if let Some(v) = v {
            rec = rec.payload(v);
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
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()?;
    let config_text = format!(
        r#"
[source]
brokers = "{brokers}"
group_id = "lake-demo"

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
buckets = 2

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
    };

    // Round 1: the first orders and clicks.
    let orders = source.orders(a.orders, a.orders / 2);
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
    let orders = source.orders(a.orders / 10, a.orders);
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
