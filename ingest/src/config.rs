//! The pipeline config of `lake ingest`: a TOML file mapping Kafka topics to tables.
//!
//! Any value may reference the environment as `${VAR}` or `${VAR:-default}`; the reference is
//! replaced before parsing, so deployments override brokers, table URIs or credentials without
//! editing the file. See docs/examples/ingest.toml for every key.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole pipeline.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The Kafka source.
    pub source: SourceConfig,
    /// When to commit.
    #[serde(default)]
    pub commit: CommitPolicy,
    /// Progress reporting.
    #[serde(default)]
    pub progress: ProgressConfig,
    /// The metrics and health endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Topic → table mappings.
    pub tables: Vec<TableSpec>,
}

/// The Kafka (or Redpanda) source.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group, used to publish committed offsets for monitoring (positions come from the
    /// tables' checkpoints).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where a table without a checkpoint starts: `earliest` or `latest`.
    #[serde(default = "default_reset")]
    pub auto_offset_reset: String,
    /// Any librdkafka setting (security.protocol, sasl.*, ssl.*, client.id, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The schema registry of `format = "avro"` topics (Confluent, Redpanda, Karapace, or
    /// Apicurio's `/apis/ccompat/v7`).
    pub schema_registry_url: Option<String>,
    /// Basic-auth user of the schema registry.
    pub schema_registry_username: Option<String>,
    /// Basic-auth password of the schema registry (`${VAR}` to take it from the environment).
    pub schema_registry_password: Option<String>,
}

impl SourceConfig {
    /// The schema registry settings, if a registry is configured.
    pub fn registry(&self) -> Option<crate::avro::RegistryConfig> {
        Some(crate::avro::RegistryConfig {
            url: self.schema_registry_url.clone()?,
            username: self.schema_registry_username.clone(),
            password: self.schema_registry_password.clone(),
        })
    }
}

fn default_group() -> String {
    "lake-ingest".into()
}

fn default_reset() -> String {
    "earliest".into()
}

/// When the open batch of a table is committed: whichever limit is reached first.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommitPolicy {
    /// Records per commit.
    pub max_records: usize,
    /// Bytes of message values per commit.
    pub max_bytes: usize,
    /// Milliseconds between the first record of a batch and its commit.
    pub max_interval_ms: u64,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self {
            max_records: 100_000,
            max_bytes: 64 << 20,
            max_interval_ms: 5_000,
        }
    }
}

/// Progress reporting.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProgressConfig {
    /// Milliseconds between progress lines (0: none).
    pub interval_ms: u64,
}

/// The metrics and health endpoint (`/metrics`, `/health`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve on (none: no endpoint); `lake ingest --metrics-addr` overrides it.
    pub addr: Option<String>,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
        }
    }
}

/// How message values decode.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderKind {
    /// Debezium change events (JSON converter, with or without the schema envelope, or the Avro
    /// converter with `format = "avro"`).
    #[default]
    Debezium,
    /// Plain records, one per message: JSON objects, or Avro records with `format = "avro"`.
    Json,
}

/// How message values (and keys) are encoded.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MessageFormat {
    /// JSON text (Kafka Connect's JSON converter, or plain JSON objects).
    #[default]
    Json,
    /// Confluent-framed Avro: magic byte 0, a 4-byte schema id, an Avro datum; the schemas come
    /// from `source.schema_registry_url`.
    Avro,
}

/// What happens to a message that cannot be decoded.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Stop with an error naming the topic, partition, offset and reason.
    #[default]
    Fail,
    /// Record the raw message and the reason in the dead-letter table and go on.
    DeadLetter,
}

/// Inline compaction of merge-on-read tables.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InlineCompaction {
    /// Schedule a compaction after this many deltacommits since the last one (0: never inline).
    pub max_delta_commits: usize,
    /// Execute scheduled compactions inline too (else `lake compact` does).
    pub execute: bool,
}

impl Default for InlineCompaction {
    fn default() -> Self {
        Self {
            max_delta_commits: 5,
            execute: false,
        }
    }
}

/// One topic (or set of topics) into one table per topic.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// One topic.
    pub topic: Option<String>,
    /// Several topics.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Every topic matching this regular expression (resolved at start).
    pub topic_regex: Option<String>,
    /// Table URI; may use `{topic}`, and for Debezium topics `<prefix>.<db>.<table>` also `{prefix}`,
    /// `{db}` and `{table}`.
    pub table: String,
    /// `cow` or `mor`.
    #[serde(default = "default_type", rename = "type")]
    pub table_type: String,
    /// The decoder.
    #[serde(default)]
    pub decoder: DecoderKind,
    /// The encoding of values and keys: `json` (default) or `avro`.
    #[serde(default)]
    pub format: MessageFormat,
    /// Record key fields (default: the fields of the Debezium message key).
    #[serde(default)]
    pub key: Vec<String>,
    /// For `json`: the column that receives the Kafka message key (as a string).
    pub message_key_field: Option<String>,
    /// Ordering field (default `_source_position`: the binlog position for Debezium, the Kafka
    /// offset for JSON).
    pub ordering: Option<String>,
    /// Partition fields.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Key index of a table this job creates: `bucket` (default), `simple`, or `global` (table-wide
    /// keys: a record whose partition value changed is deleted from its old partition — for sources
    /// without before images).
    #[serde(default = "default_index")]
    pub index: String,
    /// Buckets per partition (bucket index).
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// For `json`: `upsert` by the key (default) or `append` (insert without lookup).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Bad-message policy.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Dead-letter table URI (required with `on_error = "dead-letter"`).
    pub dead_letter: Option<String>,
    /// Inline compaction (merge-on-read tables).
    #[serde(default)]
    pub compaction: InlineCompaction,
    /// Hudi CDC log files of a table this job creates (`hoodie.table.cdc.enabled`), in this
    /// logging mode: `op_key_only`, `data_before` or `data_before_after`.
    pub cdc: Option<String>,
}

fn default_type() -> String {
    "cow".into()
}

fn default_index() -> String {
    "bucket".into()
}

fn default_buckets() -> u32 {
    4
}

fn default_mode() -> String {
    "upsert".into()
}

impl TableSpec {
    /// The table URI of `topic`, with the template filled in.
    pub fn table_uri(&self, topic: &str) -> String {
        let parts: Vec<&str> = topic.splitn(3, '.').collect();
        let (prefix, db, table) = match parts.as_slice() {
            [p, d, t] => (*p, *d, *t),
            [d, t] => ("", *d, *t),
            _ => ("", "", topic),
        };
        self.table
            .replace("{topic}", topic)
            .replace("{prefix}", prefix)
            .replace("{db}", db)
            .replace("{table}", table)
    }
}

impl PipelineConfig {
    /// Parses a config, replacing `${VAR}` and `${VAR:-default}` from `env` first.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let expanded = expand(text, env)?;
        let cfg: PipelineConfig = toml::from_str(&expanded).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.tables.is_empty() {
            return Err("no [[tables]] configured".into());
        }
        for (i, t) in self.tables.iter().enumerate() {
            let n = usize::from(t.topic.is_some())
                + usize::from(!t.topics.is_empty())
                + usize::from(t.topic_regex.is_some());
            if n != 1 {
                return Err(format!(
                    "tables[{i}]: set exactly one of topic, topics, topic_regex"
                ));
            }
            if !matches!(t.table_type.as_str(), "cow" | "mor") {
                return Err(format!(
                    "tables[{i}]: type must be cow or mor, not {:?}",
                    t.table_type
                ));
            }
            if !matches!(t.mode.as_str(), "upsert" | "append") {
                return Err(format!(
                    "tables[{i}]: mode must be upsert or append, not {:?}",
                    t.mode
                ));
            }
            if t.on_error == ErrorPolicy::DeadLetter && t.dead_letter.is_none() {
                return Err(format!(
                    "tables[{i}]: on_error = \"dead-letter\" needs dead_letter = \"<table uri>\""
                ));
            }
            if t.decoder == DecoderKind::Json && t.key.is_empty() && t.message_key_field.is_none() {
                return Err(format!(
                    "tables[{i}]: the json decoder needs key = [...] or message_key_field"
                ));
            }
            if t.format == MessageFormat::Avro && self.source.schema_registry_url.is_none() {
                return Err(format!(
                    "tables[{i}]: format = \"avro\" needs schema_registry_url in [source]"
                ));
            }
            if !matches!(t.index.as_str(), "bucket" | "simple" | "global") {
                return Err(format!(
                    "tables[{i}]: index must be bucket, simple or global, not {:?}",
                    t.index
                ));
            }
            if t.buckets == 0 {
                return Err(format!("tables[{i}]: buckets must be at least 1"));
            }
            if let Some(m) = &t.cdc {
                m.parse::<lake_table::CdcMode>()
                    .map_err(|e| format!("tables[{i}]: cdc: {e}"))?;
            }
        }
        if !matches!(
            self.source.auto_offset_reset.as_str(),
            "earliest" | "latest"
        ) {
            return Err("source.auto_offset_reset must be earliest or latest".into());
        }
        Ok(())
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` outside comment lines; an unset variable without a
/// default is an error.
fn expand(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(&expand_line(line, &env)?);
        }
    }
    Ok(out)
}

fn expand_line(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in the config".to_owned())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!("the config uses ${{{name}}}, which is not set"));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# A comment may mention ${UNSET} freely.
[source]
brokers = "${BROKERS:-127.0.0.1:9092}"

[commit]
max_records = 10

[[tables]]
topic = "dbserver1.shop.orders"
table = "${WAREHOUSE}/{db}/{table}"
partition_by = ["region"]

[[tables]]
topic_regex = "^clicks\\..*"
table = "/tmp/{topic}"
type = "mor"
decoder = "json"
message_key_field = "user_id"
key = ["user_id"]
ordering = "timestamp"
"#;

    #[test]
    fn parses_with_environment_and_templates() {
        let env = |k: &str| (k == "WAREHOUSE").then(|| "s3://wh".to_owned());
        let cfg = PipelineConfig::parse(TEXT, env).expect("parses");
        assert_eq!(cfg.source.brokers, "127.0.0.1:9092");
        assert_eq!(cfg.source.auto_offset_reset, "earliest");
        assert_eq!(cfg.commit.max_records, 10);
        assert_eq!(cfg.commit.max_interval_ms, 5_000);
        let orders = &cfg.tables[0];
        assert_eq!(orders.decoder, DecoderKind::Debezium);
        assert_eq!(
            orders.table_uri("dbserver1.shop.orders"),
            "s3://wh/shop/orders"
        );
        assert_eq!(cfg.tables[1].table_type, "mor");
        assert_eq!(cfg.tables[1].table_uri("clicks.eu"), "/tmp/clicks.eu");
        let env = |k: &str| match k {
            "WAREHOUSE" => Some("/w".to_owned()),
            "BROKERS" => Some("b:1".to_owned()),
            _ => None,
        };
        assert_eq!(
            PipelineConfig::parse(TEXT, env)
                .expect("parses")
                .source
                .brokers,
            "b:1"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = PipelineConfig::parse(TEXT, |_| None).expect_err("unset");
        assert!(err.contains("${WAREHOUSE}"), "{err}");
        let both = "[source]\nbrokers='b'\n[[tables]]\ntopic='a'\ntopics=['b']\ntable='t'\n";
        let err = PipelineConfig::parse(both, |_| None).expect_err("both");
        assert!(err.contains("exactly one of topic"), "{err}");
        let dl =
            "[source]\nbrokers='b'\n[[tables]]\ntopic='a'\ntable='t'\non_error='dead-letter'\n";
        let err = PipelineConfig::parse(dl, |_| None).expect_err("no dlq");
        assert!(err.contains("dead_letter"), "{err}");
        let typo = "[source]\nbrokers='b'\nbrokerz='c'\n[[tables]]\ntopic='a'\ntable='t'\n";
        let err = PipelineConfig::parse(typo, |_| None).expect_err("typo");
        assert!(err.contains("brokerz"), "{err}");
    }
}
