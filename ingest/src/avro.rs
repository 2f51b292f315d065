//! Confluent-framed Avro messages (Debezium's Avro converter, plain Avro records) and the schema
//! registry they name.
//!
//! A framed message is magic byte 0, a 4-byte big-endian schema id, then an Avro binary datum
//! written with that schema. [`SchemaRegistry`] fetches schemas by id (`GET /schemas/ids/{id}`),
//! caches them and retries a registry that does not answer. A [`WriterSchema`] keeps the parsed
//! schema and, read from its JSON (the Avro library drops attributes of primitive types), the
//! Kafka Connect schema of its fields in the form the JSON converter's envelope gives them, so
//! Avro and JSON events decode by the same rules: a datum becomes the JSON payload the JSON
//! converter would have sent (bytes and decimals as base64, dates as days, timestamps as epoch
//! numbers), and the Connect schema carries the logical types (`io.debezium.time.*`, Kafka
//! Connect's `Decimal`, `Date`, `Timestamp`, and Avro's own `date`, `timestamp-*`, `decimal`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value, json};

use crate::messages::{Message, base64_encode};

/// The magic byte that starts a Confluent-framed message.
const MAGIC: u8 = 0;

/// The schema id and the datum of a Confluent-framed message.
pub fn frame(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC, a, b, c, d, datum @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        [MAGIC, ..] => Err(format!(
            "a Confluent-framed message needs 5 header bytes, this one has {}",
            bytes.len()
        )),
        [m, ..] => Err(format!(
            "not Confluent-framed Avro: magic byte {m}, expected 0 (is the topic's converter the \
             Avro converter with a schema registry?)"
        )),
        [] => Err("an empty message is not Confluent-framed Avro".into()),
    }
}

/// Encodes `value` with `schema` as a Confluent-framed message naming schema `id` (what Kafka
/// Connect's Avro converter produces).
pub fn encode_framed(id: u32, schema: &Schema, value: Avro) -> Result<Vec<u8>, String> {
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| format!("encoding an Avro datum: {e}"))?;
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&datum);
    Ok(out)
}

/// A writer schema from the registry, with the Kafka Connect view of its fields.
#[derive(Debug)]
pub struct WriterSchema {
    /// The registry's id of the schema.
    pub id: u32,
    /// The parsed schema.
    pub schema: Schema,
    /// The schema as lake's bounded decoder reads it: every datum passes it first, so a count or
    /// length its bytes cannot hold is an error, never an allocation the size of the claim.
    bounded: lake_table::timeline::avro::Schema,
    /// The schema as the JSON converter's envelope gives it: for a record, a `struct` whose
    /// `fields` are its fields (`field`, Connect `type`, logical `name`, `parameters`); a field
    /// whose value is a record (Debezium's `before` and `after`) has its own `fields`.
    pub connect: Value,
}

impl WriterSchema {
    /// Parses a schema's JSON text.
    pub fn parse(id: u32, text: &str) -> Result<Self, String> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| format!("schema id {id} is not JSON: {e}"))?;
        let schema = Schema::parse(&json)
            .map_err(|e| format!("schema id {id} is not a valid Avro schema: {e}"))?;
        let bounded = lake_table::timeline::avro::Schema::parse(text)
            .map_err(|e| format!("schema id {id} is not a valid Avro schema: {e}"))?;
        let mut names = HashMap::new();
        collect_names(&json, None, &mut names);
        let connect = connect_schema(&json, &names, None, 0);
        Ok(Self {
            id,
            schema,
            bounded,
            connect,
        })
    }

    /// The top-level fields of a record schema (the key fields of a Debezium message key).
    pub fn field_names(&self) -> Vec<String> {
        match &self.schema {
            Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// The Connect fields of a record-valued field of this record (`before`, `after`), or of the
    /// record itself for `None`.
    pub fn connect_fields(&self, field: Option<&str>) -> Option<&Vec<Value>> {
        let rec = match field {
            None => &self.connect,
            Some(f) => self
                .connect
                .get("fields")?
                .as_array()?
                .iter()
                .find(|x| x.get("field").and_then(Value::as_str) == Some(f))?,
        };
        rec.get("fields")?.as_array()
    }
}

/// Named types (records, enums, fixed) of a schema's JSON by full and short name.
fn collect_names(json: &Value, ns: Option<&str>, out: &mut HashMap<String, Value>) {
    match json {
        Value::Array(branches) => {
            for b in branches {
                collect_names(b, ns, out);
            }
        }
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or_default();
            let mut inner_ns = ns.map(str::to_owned);
            if matches!(ty, "record" | "error" | "enum" | "fixed")
                && let Some(name) = o.get("name").and_then(Value::as_str)
            {
                let space = o.get("namespace").and_then(Value::as_str).or(ns);
                let (full, own_ns) = match (name.rsplit_once('.'), space) {
                    (Some((n, _)), _) => (name.to_owned(), Some(n.to_owned())),
                    (None, Some(s)) if !s.is_empty() => (format!("{s}.{name}"), Some(s.to_owned())),
                    (None, _) => (name.to_owned(), None),
                };
                let short = full.rsplit('.').next().unwrap_or(&full).to_owned();
                out.insert(full, json.clone());
                out.entry(short).or_insert_with(|| json.clone());
                inner_ns = own_ns;
            }
            if let Some(fields) = o.get("fields").and_then(Value::as_array) {
                for f in fields {
                    if let Some(t) = f.get("type") {
                        collect_names(t, inner_ns.as_deref(), out);
                    }
                }
            }
            for k in ["items", "values"] {
                if let Some(t) = o.get(k) {
                    collect_names(t, inner_ns.as_deref(), out);
                }
            }
            if let Some(t) = o.get("type").filter(|t| !t.is_string()) {
                collect_names(t, inner_ns.as_deref(), out);
            }
        }
        _ => {}
    }
}

/// The Connect view of a type: `{"type": ..., "name": ..., "parameters": ...}` (and `fields` for
/// a record). `null` for a type lake gives no declared column type (unions of several types,
/// arrays, maps): such columns take the type their values infer, as JSON does.
fn connect_schema(
    json: &Value,
    names: &HashMap<String, Value>,
    field: Option<&str>,
    depth: usize,
) -> Value {
    if depth > 64 {
        return Value::Null;
    }
    let mut out = match json {
        Value::String(s) => match primitive(s) {
            Some(t) => json!({ "type": t }),
            None => match names.get(s.as_str()) {
                Some(named) => {
                    return with_field(connect_schema(named, names, field, depth + 1), field);
                }
                None => Value::Null,
            },
        },
        Value::Array(branches) => {
            let mut real = branches.iter().filter(|b| b.as_str() != Some("null"));
            match (real.next(), real.next()) {
                (Some(one), None) => {
                    return with_field(connect_schema(one, names, field, depth + 1), field);
                }
                _ => Value::Null,
            }
        }
        Value::Object(o) => {
            let ty = o.get("type").cloned().unwrap_or(Value::Null);
            match ty.as_str() {
                Some("record" | "error") => {
                    let fields: Vec<Value> = o
                        .get("fields")
                        .and_then(Value::as_array)
                        .map(|fs| {
                            fs.iter()
                                .filter_map(|f| {
                                    let name = f.get("name")?.as_str()?;
                                    let t = f.get("type")?;
                                    let c = connect_schema(t, names, Some(name), depth + 1);
                                    (!c.is_null()).then_some(c)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({ "type": "struct", "fields": fields })
                }
                Some("enum") => json!({ "type": "string" }),
                Some("fixed") => logical(o, "bytes"),
                Some(p) => match primitive(p) {
                    Some(t) => logical(o, t),
                    None => return connect_schema(&ty, names, field, depth + 1),
                },
                None => return connect_schema(&ty, names, field, depth + 1),
            }
        }
        _ => Value::Null,
    };
    if out.is_null() {
        return out;
    }
    if let (Some(f), Some(m)) = (field, out.as_object_mut()) {
        m.insert("field".into(), Value::String(f.to_owned()));
    }
    out
}

/// `c` with its `field` set (a named type or a union reached through a field).
fn with_field(mut c: Value, field: Option<&str>) -> Value {
    if let (Some(f), Some(m)) = (field, c.as_object_mut()) {
        m.insert("field".into(), Value::String(f.to_owned()));
    }
    c
}

/// The Connect type of an Avro primitive type.
fn primitive(t: &str) -> Option<&'static str> {
    Some(match t {
        "int" => "int32",
        "long" => "int64",
        "float" => "float32",
        "double" => "float64",
        "boolean" => "boolean",
        "string" => "string",
        "bytes" => "bytes",
        _ => return None,
    })
}

/// A primitive (or fixed) type object with its logical type: Connect's `connect.name` and
/// `connect.parameters` when the Avro converter wrote them, else Avro's `logicalType`.
fn logical(o: &Map<String, Value>, connect_type: &str) -> Value {
    let mut out = json!({ "type": connect_type });
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let decimal_params = || {
        let mut p = Map::new();
        if let Some(s) = o.get("scale").and_then(text) {
            p.insert("scale".into(), Value::String(s));
        }
        if let Some(s) = o.get("precision").and_then(text) {
            p.insert("connect.decimal.precision".into(), Value::String(s));
        }
        Value::Object(p)
    };
    let name = match o.get("connect.name").and_then(Value::as_str) {
        Some(n) => Some(n.to_owned()),
        None => match o.get("logicalType").and_then(Value::as_str) {
            Some("date") => Some("org.apache.kafka.connect.data.Date".to_owned()),
            Some("timestamp-millis" | "local-timestamp-millis") => {
                Some("org.apache.kafka.connect.data.Timestamp".to_owned())
            }
            Some("timestamp-micros" | "local-timestamp-micros") => {
                Some("io.debezium.time.MicroTimestamp".to_owned())
            }
            Some("timestamp-nanos" | "local-timestamp-nanos") => {
                Some("io.debezium.time.NanoTimestamp".to_owned())
            }
            Some("decimal") => Some("org.apache.kafka.connect.data.Decimal".to_owned()),
            _ => None,
        },
    };
    if let (Some(name), Some(m)) = (name, out.as_object_mut()) {
        if name == "org.apache.kafka.connect.data.Decimal" {
            let params = match o.get("connect.parameters") {
                Some(Value::Object(p)) if p.contains_key("scale") => Value::Object(p.clone()),
                _ => decimal_params(),
            };
            m.insert("parameters".into(), params);
        }
        m.insert("name".into(), Value::String(name));
    }
    out
}

/// The most a datum may make the Avro library allocate for one value.
const MAX_ALLOCATION: usize = 64 << 20;

/// Decodes a datum written with `schema` (read by `reader`, built from it) into the JSON the JSON
/// converter would give. Every byte must belong to the datum.
pub fn decode_datum(
    schema: &WriterSchema,
    reader: &GenericDatumReader<'_>,
    datum: &[u8],
) -> Result<Value, String> {
    to_json(read_datum(schema, reader, datum)?)
}

/// Reads a datum written with `schema` (read by `reader`, built from it): lake's bounded decoder
/// first (no allocation a datum's bytes cannot back), then the Avro library. Every byte must belong
/// to the datum.
pub fn read_datum(
    schema: &WriterSchema,
    reader: &GenericDatumReader<'_>,
    datum: &[u8],
) -> Result<Avro, String> {
    let mut bounded = datum;
    lake_table::timeline::avro::decode(&schema.bounded, &mut bounded)
        .map_err(|e| format!("the Avro datum does not match its schema: {e}"))?;
    if !bounded.is_empty() {
        return Err(format!(
            "the Avro datum does not match its schema: {} bytes left after the datum",
            bounded.len()
        ));
    }
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
    let mut input = Exact {
        rest: datum,
        short: false,
    };
    let value = reader
        .read_value(&mut input)
        .map_err(|e| format!("the Avro datum does not match its schema: {e}"))?;
    // apache-avro reads a union at the end of its input as null: a datum cut short at a union
    // would decode; any read past the end means the datum is not whole.
    if input.short {
        return Err("the Avro datum does not match its schema: it ends early".into());
    }
    if !input.rest.is_empty() {
        return Err(format!(
            "the Avro datum does not match its schema: {} bytes left after the datum",
            input.rest.len()
        ));
    }
    Ok(value)
}

/// A datum's bytes, noting any read past their end.
struct Exact<'a> {
    rest: &'a [u8],
    short: bool,
}

impl std::io::Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.rest.read(buf)?;
        if n < buf.len() {
            self.short = true;
        }
        Ok(n)
    }
}

/// A reader for datums written with `schema`.
pub fn datum_reader(schema: &WriterSchema) -> Result<GenericDatumReader<'_>, String> {
    GenericDatumReader::builder(&schema.schema)
        .build()
        .map_err(|e| format!("schema id {}: {e}", schema.id))
}

/// An Avro value as the JSON converter's JSON.
fn to_json(v: Avro) -> Result<Value, String> {
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON form (NaN and infinities are not stored)"))
    };
    Ok(match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::from(i),
        Avro::Long(i)
        | Avro::TimeMicros(i)
        | Avro::TimestampMillis(i)
        | Avro::TimestampMicros(i)
        | Avro::TimestampNanos(i)
        | Avro::LocalTimestampMillis(i)
        | Avro::LocalTimestampMicros(i)
        | Avro::LocalTimestampNanos(i) => Value::from(i),
        Avro::Float(f) => float(f64::from(f))?,
        Avro::Double(f) => float(f)?,
        Avro::Bytes(b) | Avro::Fixed(_, b) => Value::String(base64_encode(&b)),
        Avro::Decimal(d) => {
            let bytes = Vec::<u8>::try_from(&d).map_err(|e| format!("a decimal: {e}"))?;
            Value::String(base64_encode(&bytes))
        }
        Avro::BigDecimal(d) => Value::String(d.to_string()),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Union(_, inner) => to_json(*inner)?,
        Avro::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Avro::Map(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Avro::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Avro::Duration(_) => return Err("Avro durations are not supported".into()),
    })
}

/// The writer schemas a batch's messages name, fetched before decoding (which does no I/O): an id
/// the registry does not know maps to why, and its messages are rejected with it.
pub type BatchSchemas = HashMap<u32, Result<Arc<WriterSchema>, String>>;

/// Where the schema registry is and how to log in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryConfig {
    /// Base URL (`http://host:8081`, or Apicurio's `.../apis/ccompat/v7`).
    pub url: String,
    /// HTTP basic-auth user.
    pub username: Option<String>,
    /// HTTP basic-auth password.
    pub password: Option<String>,
}

/// Why a schema could not be had.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that it has no schema with this id.
    #[error("schema id {id} is not in the schema registry at {url}")]
    Unknown {
        /// The id.
        id: u32,
        /// The registry.
        url: String,
    },
    /// The schema is there but is not an Avro schema lake reads.
    #[error("{0}")]
    Invalid(String),
    /// The registry did not answer (after retries), or answered with an error.
    #[error("the schema registry at {url} did not give schema id {id}: {reason}")]
    Unreachable {
        /// The id.
        id: u32,
        /// The registry.
        url: String,
        /// The last failure.
        reason: String,
    },
}

/// A schema-registry client with a cache of schemas by id (a registry never changes the schema of
/// an id, so an entry never goes stale).
#[derive(Debug)]
pub struct SchemaRegistry {
    config: RegistryConfig,
    http: reqwest::Client,
    cache: Mutex<HashMap<u32, Arc<WriterSchema>>>,
    attempts: u32,
}

impl SchemaRegistry {
    /// A client of the registry at `config.url`.
    pub fn new(config: RegistryConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("schema registry client: {e}"))?;
        Ok(Self {
            config: RegistryConfig {
                url: config.url.trim_end_matches('/').to_owned(),
                ..config
            },
            http,
            cache: Mutex::new(HashMap::new()),
            attempts: 5,
        })
    }

    /// The registry's URL.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    fn cached(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// The schema with this id, from the cache or the registry (retried with backoff while the
    /// registry does not answer or answers with a server error).
    pub async fn schema(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        let url = format!("{}/schemas/ids/{id}", self.config.url);
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let mut req = self.http.get(&url).header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            );
            if let Some(user) = &self.config.username {
                req = req.basic_auth(user, self.config.password.as_deref());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = error_chain(&e);
                    continue;
                }
            };
            let status = resp.status();
            let body = match resp.text().await {
                Ok(b) => b,
                Err(e) => {
                    last = error_chain(&e);
                    continue;
                }
            };
            if status.as_u16() == 404 {
                return Err(RegistryError::Unknown {
                    id,
                    url: self.config.url.clone(),
                });
            }
            if status.is_server_error() || status.as_u16() == 429 {
                last = format!("HTTP {status}: {}", body.trim());
                continue;
            }
            if !status.is_success() {
                return Err(RegistryError::Unreachable {
                    id,
                    url: self.config.url.clone(),
                    reason: format!("HTTP {status}: {}", body.trim()),
                });
            }
            let schema = parse_answer(id, &body).map_err(RegistryError::Invalid)?;
            let schema = Arc::new(schema);
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, schema.clone());
            return Ok(schema);
        }
        Err(RegistryError::Unreachable {
            id,
            url: self.config.url.clone(),
            reason: last,
        })
    }

    /// The writer schemas of every framed value (and key) of `msgs`. An id the registry does not
    /// know, or a schema lake cannot read, maps to why; a registry that does not answer is an
    /// error naming the first message that needs it.
    pub async fn batch_schemas(
        &self,
        msgs: &[Message],
    ) -> Result<BatchSchemas, crate::messages::MessageError> {
        let mut first: Vec<(u32, usize)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, m) in msgs.iter().enumerate() {
            for bytes in [m.value.as_deref(), m.key.as_deref()].into_iter().flatten() {
                if let Ok((id, _)) = frame(bytes)
                    && seen.insert(id)
                {
                    first.push((id, i));
                }
            }
        }
        let mut out = BatchSchemas::new();
        for (id, i) in first {
            match self.schema(id).await {
                Ok(s) => {
                    out.insert(id, Ok(s));
                }
                Err(e @ (RegistryError::Unknown { .. } | RegistryError::Invalid(_))) => {
                    out.insert(id, Err(e.to_string()));
                }
                Err(e) => {
                    let m = &msgs[i];
                    return Err(crate::messages::MessageError {
                        topic: m.topic.clone(),
                        partition: m.partition,
                        offset: m.offset,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A `GET /schemas/ids/{id}` answer: `{"schema": "<schema JSON as text>", "schemaType": ...}`.
fn parse_answer(id: u32, body: &str) -> Result<WriterSchema, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("schema id {id}: the registry's answer is not JSON: {e}"))?;
    let kind = v
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO");
    if kind != "AVRO" {
        return Err(format!(
            "schema id {id} is a {kind} schema; lake reads Avro (format = \"avro\")"
        ));
    }
    if v.get("references")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        return Err(format!(
            "schema id {id} references other schemas, which lake does not resolve yet"
        ));
    }
    let text = v
        .get("schema")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("schema id {id}: the registry's answer has no \"schema\""))?;
    WriterSchema::parse(id, text)
}

/// A schema registered with an [`EmbeddedRegistry`]: its id and the parsed schema.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The registry's id of the schema.
    pub id: u32,
    /// The parsed schema.
    pub schema: Schema,
}

impl Registered {
    /// Encodes `value` as a Confluent-framed message naming this schema.
    pub fn encode(&self, value: Avro) -> Result<Vec<u8>, String> {
        encode_framed(self.id, &self.schema, value)
    }
}

/// A schema registry served by this process on 127.0.0.1: the one endpoint lake reads
/// (`GET /schemas/ids/{id}`, Confluent's REST API). `lake demo` and the benches serve their
/// schemas with it; production pipelines use the registry their converters write to.
#[derive(Clone, Debug, Default)]
pub struct EmbeddedRegistry {
    schemas: Arc<Mutex<Vec<String>>>,
}

impl EmbeddedRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a schema (its JSON text): its id (the same text keeps its id) and the parsed
    /// schema to encode with.
    pub fn register(&self, schema: &str) -> Result<Registered, String> {
        let parsed = Schema::parse_str(schema).map_err(|e| format!("not an Avro schema: {e}"))?;
        let mut schemas = self
            .schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = match schemas.iter().position(|s| s == schema) {
            Some(at) => at,
            None => {
                schemas.push(schema.to_owned());
                schemas.len() - 1
            }
        };
        let id = u32::try_from(at + 1).map_err(|_| "the registry is full".to_owned())?;
        Ok(Registered { id, schema: parsed })
    }

    fn schema(&self, id: u32) -> Option<String> {
        let at = usize::try_from(id.checked_sub(1)?).ok()?;
        self.schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(at)
            .cloned()
    }

    /// Serves the registry on an ephemeral port of 127.0.0.1 until the process ends; its URL.
    pub async fn serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let registry = self.clone();
        tokio::spawn(crate::http::serve(listener, move |path| {
            let known = path
                .strip_prefix("/schemas/ids/")
                .and_then(|id| id.parse::<u32>().ok())
                .and_then(|id| registry.schema(id));
            match known {
                Some(schema) => crate::http::Response {
                    status: "200 OK",
                    kind: "application/vnd.schemaregistry.v1+json",
                    body: json!({ "schema": schema }).to_string(),
                },
                None => crate::http::Response {
                    status: "404 Not Found",
                    kind: "application/vnd.schemaregistry.v1+json",
                    body: json!({"error_code": 40403, "message": "Schema not found"}).to_string(),
                },
            }
        }));
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::writer::datum::GenericDatumWriter;

    use super::*;

    const ENVELOPE: &str = r#"{"type":"record","name":"Envelope","namespace":"srv.shop.orders","fields":[
      {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
        {"name":"id","type":"int"},
        {"name":"d","type":{"type":"int","connect.version":1,"connect.name":"io.debezium.time.Date"}},
        {"name":"price","type":["null",{"type":"bytes","scale":2,"precision":10,"connect.version":1,
          "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
          "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null},
        {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}}]}],"default":null},
      {"name":"after","type":["null","Value"],"default":null},
      {"name":"op","type":"string"},
      {"name":"ts_ms","type":["null","long"],"default":null}]}"#;

    #[test]
    fn frames_need_the_magic_byte_and_an_id() {
        assert_eq!(frame(&[0, 0, 0, 1, 2, 9]), Ok((258, &[9u8][..])));
        assert!(frame(&[0, 0, 1]).unwrap_err().contains("5 header bytes"));
        assert!(frame(b"{\"a\":1}").unwrap_err().contains("magic byte 123"));
        assert!(frame(&[]).is_err());
    }

    #[test]
    fn connect_view_follows_named_types_and_logical_types() {
        let s = WriterSchema::parse(3, ENVELOPE).expect("parses");
        let after = s.connect_fields(Some("after")).expect("after fields");
        let before = s.connect_fields(Some("before")).expect("before fields");
        assert_eq!(after, before);
        let by_name = |n: &str| {
            after
                .iter()
                .find(|f| f["field"] == n)
                .unwrap_or_else(|| panic!("{n}"))
                .clone()
        };
        assert_eq!(by_name("id"), json!({"field":"id","type":"int32"}));
        assert_eq!(
            by_name("d"),
            json!({"field":"d","type":"int32","name":"io.debezium.time.Date"})
        );
        assert_eq!(by_name("price")["parameters"]["scale"], "2");
        assert_eq!(by_name("status")["type"], "string");
        assert_eq!(s.field_names(), ["before", "after", "op", "ts_ms"]);
    }

    #[test]
    fn datums_become_the_json_converters_payload() {
        let s = WriterSchema::parse(3, ENVELOPE).expect("parses");
        let row = Avro::Record(vec![
            ("id".into(), Avro::Int(7)),
            ("d".into(), Avro::Int(19000)),
            (
                "price".into(),
                Avro::Union(1, Box::new(Avro::Decimal(vec![0x01, 0xE2, 0x40].into()))),
            ),
            ("status".into(), Avro::Enum(1, "PAID".into())),
        ]);
        let env = Avro::Record(vec![
            ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
            ("after".into(), Avro::Union(1, Box::new(row))),
            ("op".into(), Avro::String("c".into())),
            ("ts_ms".into(), Avro::Union(1, Box::new(Avro::Long(5)))),
        ]);
        let bytes = GenericDatumWriter::builder(&s.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(env))
            .expect("encodes");
        let reader = datum_reader(&s).expect("reader");
        let v = decode_datum(&s, &reader, &bytes).expect("decodes");
        assert_eq!(
            v,
            json!({"before":null,"after":{"id":7,"d":19000,"price":"AeJA","status":"PAID"},
                   "op":"c","ts_ms":5})
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            decode_datum(&s, &reader, &longer)
                .unwrap_err()
                .contains("1 bytes left")
        );
        // Cut anywhere (also just before a union, which apache-avro alone reads as null).
        for cut in 0..bytes.len() {
            let err = decode_datum(&s, &reader, &bytes[..cut]).expect_err("a cut datum");
            assert!(err.contains("does not match its schema"), "{cut}: {err}");
        }
    }

    #[test]
    fn registry_answers_parse_and_refuse_what_lake_cannot_read() {
        let ok = parse_answer(1, r#"{"schema":"{\"type\":\"record\",\"name\":\"K\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"}]}"}"#)
            .expect("avro");
        assert_eq!(ok.field_names(), ["id"]);
        assert!(
            parse_answer(2, r#"{"schema":"{}","schemaType":"PROTOBUF"}"#)
                .unwrap_err()
                .contains("PROTOBUF")
        );
        assert!(parse_answer(3, "<html>").unwrap_err().contains("not JSON"));
        assert!(
            parse_answer(4, r#"{"schema":"{\"type\":\"nope\"}"}"#)
                .unwrap_err()
                .contains("not a valid Avro schema")
        );
    }

    #[tokio::test]
    async fn the_embedded_registry_serves_what_the_client_reads() {
        let registry = EmbeddedRegistry::new();
        let text = r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#;
        let id = registry.register(text).expect("a schema").id;
        assert_eq!(
            registry.register(text).expect("a schema").id,
            id,
            "the same schema keeps its id"
        );
        let url = registry.serve().await.expect("serves");
        let client = SchemaRegistry::new(RegistryConfig {
            url,
            ..Default::default()
        })
        .expect("client");
        let ws = client.schema(id).await.expect("known id");
        let framed = encode_framed(
            id,
            &ws.schema,
            Avro::Record(vec![("id".into(), Avro::Long(-3))]),
        )
        .expect("encodes");
        let (got_id, datum) = frame(&framed).expect("framed");
        assert_eq!(got_id, id);
        let reader = datum_reader(&ws).expect("reader");
        assert_eq!(
            decode_datum(&ws, &reader, datum).expect("decodes"),
            json!({"id": -3})
        );
        assert!(matches!(
            client.schema(id + 1).await,
            Err(RegistryError::Unknown { .. })
        ));
    }
}
