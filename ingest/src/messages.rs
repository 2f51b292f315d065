//! Kafka messages into change batches (pure: no I/O).
//!
//! Debezium values (JSON converter, with or without the schema envelope): `c`/`r`/`u` upsert the
//! `after` image, `d` deletes by the `before` image, `null` values (tombstones) are skipped. With the
//! envelope, Debezium's logical types become Arrow types: `io.debezium.time.Date` → date32,
//! `Timestamp` → timestamp(ms), `MicroTimestamp`/`NanoTimestamp` → timestamp(µs), `ZonedTimestamp` →
//! timestamp(µs, UTC), Kafka Connect `Decimal` (base64 two's complement + `scale`) → decimal128,
//! `io.debezium.data.Json` → string; `int8`–`int32` → int32, `int64` → int64, `boolean` (also 0/1)
//! → boolean. Plain JSON values are rows; the message key can fill a column.
//!
//! Confluent-framed Avro values and keys ([`crate::avro`]) decode by the same rules: a datum becomes
//! the payload the JSON converter would send and its writer schema's Connect view gives the types.
//! A writer schema that the table cannot take (a column whose type the table's column cannot hold,
//! a record key field it lacks) rejects every message written with it.
//!
//! Every message either becomes a row, is a tombstone, or is rejected with a reason; a rejected
//! message fails the batch (naming topic, partition and offset) or goes to the dead letters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::datatypes::{DataType, Field, TimeUnit};
use lake_table::ChangeBatch;
use lake_table::config::SOURCE_POSITION_FIELD;
use serde_json::{Map, Value};

use crate::avro::{BatchSchemas, WriterSchema, datum_reader, decode_datum, frame};
use crate::config::{DecoderKind, MessageFormat};
use crate::debezium::source_position;
use crate::rows::{TableShape, rows_to_batch};

/// One consumed Kafka message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
}

/// How a table's messages decode.
#[derive(Clone, Debug, Default)]
pub struct DecodeSpec {
    /// The decoder.
    pub kind: DecoderKind,
    /// The table's shape (schema, key fields, ordering field).
    pub shape: TableShape,
    /// JSON decoder: the column the message key (as a string) goes to.
    pub message_key_field: Option<String>,
    /// How values and keys are encoded.
    pub format: MessageFormat,
    /// Avro: the writer schemas the batch's messages name (fetched from the registry first).
    pub schemas: Option<Arc<BatchSchemas>>,
}

/// A message that could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("topic {topic} partition {partition} offset {offset}: {reason}")]
pub struct MessageError {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// What is wrong.
    pub reason: String,
}

impl MessageError {
    fn of(m: &Message, reason: impl Into<String>) -> Self {
        Self {
            topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            reason: reason.into(),
        }
    }
}

/// The outcome of decoding a batch of messages.
#[derive(Debug, Default)]
pub struct DecodedMessages {
    /// The changes (`None` when no message produced a row).
    pub batch: Option<ChangeBatch>,
    /// Tombstones skipped.
    pub tombstones: usize,
    /// Rejected messages (index into the input) and why; empty unless `keep_going`.
    pub rejected: Vec<(usize, MessageError)>,
}

/// The record key fields of a Debezium message key (`{"id":1}` or its schema envelope), in order.
pub fn debezium_key_fields(key: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(key).ok()?;
    let payload = match v {
        Value::Object(mut m) if m.contains_key("payload") && m.contains_key("schema") => {
            m.remove("payload")?
        }
        other => other,
    };
    match payload {
        Value::Object(m) if !m.is_empty() => Some(m.keys().cloned().collect()),
        _ => None,
    }
}

/// Decodes messages into one change batch. With `keep_going`, bad messages are returned in
/// `rejected` and the others decode; without it the first bad message is the error.
///
/// A batch of the common shape (every value a flat value of an existing column) decodes directly
/// into Arrow columns; any other batch takes the general decoder, which gives the same result.
pub fn decode_messages(
    msgs: &[Message],
    spec: &DecodeSpec,
    keep_going: bool,
) -> Result<DecodedMessages, MessageError> {
    decode_with_prefix(msgs, spec, keep_going, SCHEMA_PREFIX)
}

/// Messages of a new table's first batch that the general decoder reads to infer the schema for
/// the rest.
const SCHEMA_PREFIX: usize = 1000;

/// [`decode_messages`], where a batch for a table without a schema takes the schema the general
/// decoder infers from its first `prefix` messages, and decodes directly against it: if every
/// message fits that schema, inferring it from the whole batch gives the same schema.
pub(crate) fn decode_with_prefix(
    msgs: &[Message],
    spec: &DecodeSpec,
    keep_going: bool,
    prefix: usize,
) -> Result<DecodedMessages, MessageError> {
    if let Some(decoded) = crate::direct::decode(msgs, spec) {
        return Ok(decoded);
    }
    if spec.shape.schema.is_none()
        && msgs.len() > 2 * prefix
        && every_schema_in(&msgs[..prefix], msgs, spec)
        && let Ok(head) = decode_general(&msgs[..prefix], spec, false)
        && let Some(batch) = head.batch
    {
        let mut inferred = spec.clone();
        inferred.shape.schema = Some(batch.rows.schema());
        if let Some(decoded) = crate::direct::decode(msgs, &inferred) {
            return Ok(decoded);
        }
    }
    decode_general(msgs, spec, keep_going)
}

/// Whether the prefix of an Avro batch names every schema id the batch does (JSON batches: always).
/// A schema id first seen after the prefix may declare a column's type, which decides the new
/// table's column, so the prefix's inferred schema would not be the whole batch's.
fn every_schema_in(prefix: &[Message], msgs: &[Message], spec: &DecodeSpec) -> bool {
    if spec.format != MessageFormat::Avro {
        return true;
    }
    let ids = |ms: &[Message]| -> std::collections::HashSet<Option<u32>> {
        ms.iter()
            .filter_map(|m| m.value.as_deref())
            .map(|v| frame(v).ok().map(|(id, _)| id))
            .collect()
    };
    ids(msgs).is_subset(&ids(prefix))
}

/// The general decoder: a JSON tree per message, every rule and every error message.
pub(crate) fn decode_general(
    msgs: &[Message],
    spec: &DecodeSpec,
    keep_going: bool,
) -> Result<DecodedMessages, MessageError> {
    let mut out = DecodedMessages::default();
    let mut rows: Vec<(u64, Value)> = Vec::with_capacity(msgs.len());
    let mut deletes: Vec<bool> = Vec::with_capacity(msgs.len());
    let mut hints: BTreeMap<String, DataType> = BTreeMap::new();
    let readers = Readers::new(spec, clashing_schemas(msgs, spec));
    for (i, m) in msgs.iter().enumerate() {
        match decode_one(m, spec, &readers, &mut hints) {
            Ok(None) => out.tombstones += 1,
            Ok(Some(decoded)) => {
                for (row, delete) in decoded {
                    rows.push((i as u64, Value::Object(row)));
                    deletes.push(delete);
                }
            }
            Err(reason) if keep_going => out.rejected.push((i, MessageError::of(m, reason))),
            Err(reason) => return Err(MessageError::of(m, reason)),
        }
    }
    let mut shape = spec.shape.clone();
    shape.hints = hints
        .into_iter()
        .map(|(n, t)| Field::new(n, t, true))
        .collect();
    // A value that does not fit its column fails the batch, or (keep_going) is rejected and the
    // batch decodes again without it.
    loop {
        if rows.is_empty() {
            return Ok(out);
        }
        match rows_to_batch("", &shape, &rows) {
            Ok(batch) => {
                out.batch = Some(ChangeBatch::new(batch, BooleanArray::from(deletes)));
                return Ok(out);
            }
            Err(e) => {
                let pos = rows.iter().position(|(i, _)| *i == e.line).unwrap_or(0);
                let bad = rows[pos].0;
                let m = &msgs[bad as usize];
                let err = MessageError::of(m, e.reason);
                if !keep_going {
                    return Err(err);
                }
                out.rejected.push((bad as usize, err));
                // Every row of that message goes (a partition move is a delete and an upsert).
                let mut k = 0;
                rows.retain(|(i, _)| {
                    let keep = *i != bad;
                    if !keep {
                        deletes.remove(k);
                    } else {
                        k += 1;
                    }
                    keep
                });
            }
        }
    }
}

/// The Avro readers of a batch, one per writer schema it names, built once (or why its messages
/// are rejected).
struct Readers<'a> {
    by_id: HashMap<
        u32,
        Result<
            (
                &'a WriterSchema,
                apache_avro::reader::datum::GenericDatumReader<'a>,
            ),
            String,
        >,
    >,
}

impl<'a> Readers<'a> {
    fn new(spec: &'a DecodeSpec, mut clashes: HashMap<u32, String>) -> Self {
        let mut by_id = HashMap::new();
        for (id, s) in spec.schemas.iter().flat_map(|m| m.iter()) {
            let entry = match (s, clashes.remove(id)) {
                (Err(why), _) => Err(why.clone()),
                (Ok(_), Some(clash)) => Err(clash),
                (Ok(ws), None) => table_takes(ws, spec)
                    .and_then(|()| datum_reader(ws))
                    .map(|r| (ws.as_ref(), r)),
            };
            by_id.insert(*id, entry);
        }
        Self { by_id }
    }

    /// The JSON payload and the writer schema of a framed datum.
    fn decode(&self, bytes: &[u8]) -> Result<(Value, &'a WriterSchema), String> {
        let (id, datum) = frame(bytes)?;
        match self.by_id.get(&id) {
            Some(Ok((ws, reader))) => Ok((
                decode_datum(ws, reader, datum).map_err(|e| format!("schema id {id}: {e}"))?,
                *ws,
            )),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("schema id {id} was not fetched")),
        }
    }
}

/// The schema ids of a new table's first batch (no columns yet) that the batch's earlier schema
/// ids contradict, with why. The table's columns take their types from the first schema id (in
/// message order) that declares them; a later one that gives a column a type that column cannot hold
/// is refused as [`table_takes`] refuses it once the table exists.
fn clashing_schemas(msgs: &[Message], spec: &DecodeSpec) -> HashMap<u32, String> {
    let mut clashes = HashMap::new();
    let Some(schemas) = spec.schemas.as_deref() else {
        return clashes;
    };
    if spec.format != MessageFormat::Avro || spec.shape.schema.is_some() {
        return clashes;
    }
    let image = match spec.kind {
        DecoderKind::Debezium => Some("after"),
        DecoderKind::Json => None,
    };
    let mut seen = std::collections::HashSet::new();
    let mut declared: HashMap<String, (DataType, u32)> = HashMap::new();
    for m in msgs {
        let Some(Ok((id, _))) = m.value.as_deref().map(frame) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let Some(fields) = schemas
            .get(&id)
            .and_then(|s| s.as_ref().ok())
            .and_then(|ws| ws.connect_fields(image))
        else {
            continue;
        };
        let types = field_types(fields);
        let clash = types.iter().find_map(|(name, _, dt)| {
            let (first, by) = declared.get(name)?;
            (!fits(dt, first)).then(|| {
                format!(
                    "schema id {id} gives column {name} the type {dt}, which schema id {by} gave \
                     the type {first} earlier in the batch that creates the table; lake does not \
                     change a column's type"
                )
            })
        });
        match clash {
            Some(why) => {
                clashes.insert(id, why);
            }
            None => {
                for (name, _, dt) in types {
                    declared.entry(name).or_insert((dt, id));
                }
            }
        }
    }
    clashes
}

/// Whether the table can take records written with `ws`: every record key field is in it, and
/// every column it declares that the table has fits the table's column (Avro's promotions: int →
/// long → float → double, float → double, a decimal into one as wide with as many fraction
/// digits; a timestamp into a finer one). A table without columns yet takes anything.
fn table_takes(ws: &WriterSchema, spec: &DecodeSpec) -> Result<(), String> {
    let image = match spec.kind {
        DecoderKind::Debezium => Some("after"),
        DecoderKind::Json => None,
    };
    let Some(fields) = ws.connect_fields(image) else {
        return Ok(());
    };
    let declared = field_types(fields);
    for k in &spec.shape.key_fields {
        if spec.message_key_field.as_ref() == Some(k) {
            continue;
        }
        if !fields
            .iter()
            .any(|f| f.get("field").and_then(Value::as_str) == Some(k))
        {
            return Err(format!(
                "schema id {} has no field {k:?}, a record key field of the table",
                ws.id
            ));
        }
    }
    let Some(table) = &spec.shape.schema else {
        return Ok(());
    };
    for (name, _, dt) in &declared {
        let Ok(col) = table.field_with_name(name) else {
            continue;
        };
        if !fits(dt, col.data_type()) {
            return Err(format!(
                "schema id {} gives column {name} the type {dt}, which the table's column ({}) \
                 cannot hold; lake does not change a column's type (write to a new table, or \
                 keep the column's type at the source)",
                ws.id,
                col.data_type()
            ));
        }
    }
    Ok(())
}

/// Whether the direct decoder may decode records written with `ws` ([`table_takes`], and every
/// field of every image it may read — `before` too — is one the general decoder leaves as it is:
/// no logical type to convert, a type the table's column holds).
pub(crate) fn direct_takes(ws: &WriterSchema, spec: &DecodeSpec) -> bool {
    if table_takes(ws, spec).is_err() {
        return false;
    }
    let images: &[Option<&str>] = match spec.kind {
        DecoderKind::Debezium => &[Some("before"), Some("after")],
        DecoderKind::Json => &[None],
    };
    images.iter().all(|image| {
        let Some(fields) = ws.connect_fields(*image) else {
            return true;
        };
        field_types(fields).iter().all(|(name, conv, dt)| {
            matches!(conv, Conv::None | Conv::Bool)
                && spec.shape.schema.as_ref().is_none_or(|t| {
                    t.field_with_name(name)
                        .is_ok_and(|col| fits(dt, col.data_type()))
                })
        })
    })
}

/// Whether values of type `from` fit a column of type `to` without loss.
fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (a, b) if a == b => true,
        (Int8 | Int16 | Int32, Int32 | Int64 | Float64) | (Int64, Int64) => true,
        (Int8 | Int16, Float32) | (Float32, Float64) => true,
        (Utf8 | LargeUtf8, Utf8 | LargeUtf8) => true,
        (Timestamp(a, tz_a), Timestamp(b, tz_b)) => {
            tz_a.is_some() == tz_b.is_some() && unit_rank(*a) <= unit_rank(*b)
        }
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s1 <= s2 && i16::from(*p1) - i16::from(*s1) <= i16::from(*p2) - i16::from(*s2)
        }
        _ => false,
    }
}

fn unit_rank(u: TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

/// A decoded row and whether it is a delete.
type Row = (Map<String, Value>, bool);

/// One message: `None` for a tombstone, else its rows (one; two for an update that moves the row
/// to another partition: the delete of the old copy, then the upsert) and whether each is a delete.
fn decode_one(
    m: &Message,
    spec: &DecodeSpec,
    readers: &Readers<'_>,
    hints: &mut BTreeMap<String, DataType>,
) -> Result<Option<Vec<Row>>, String> {
    let Some(bytes) = &m.value else {
        return Ok(None);
    };
    // The payload and the Connect schema that types it, if the message has one.
    let (schema, v): (Option<Cow<'_, Value>>, Value) = match spec.format {
        MessageFormat::Json => {
            let v: Value =
                serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
            match (spec.kind, v) {
                (DecoderKind::Debezium, Value::Object(mut o))
                    if o.contains_key("payload") && o.contains_key("schema") =>
                {
                    (
                        o.remove("schema").map(Cow::Owned),
                        o.remove("payload").unwrap_or(Value::Null),
                    )
                }
                (_, other) => (None, other),
            }
        }
        MessageFormat::Avro => {
            let (v, ws) = readers.decode(bytes)?;
            (Some(Cow::Borrowed(&ws.connect)), v)
        }
    };
    let key = message_key(m, spec, readers)?;
    let mut moved_from: Option<Map<String, Value>> = None;
    let (mut row, delete, position) = match spec.kind {
        DecoderKind::Debezium => {
            let payload = v;
            if payload.is_null() {
                return Ok(None);
            }
            let op = payload
                .get("op")
                .and_then(Value::as_str)
                .ok_or("not a Debezium change event: no \"op\" field")?
                .to_owned();
            let (image, delete) = match op.as_str() {
                "c" | "r" | "u" => ("after", false),
                "d" => ("before", true),
                other => {
                    return Err(format!(
                        "unknown Debezium op {other:?} (expected c, r, u or d)"
                    ));
                }
            };
            let position = source_position(&payload);
            let Value::Object(mut p) = payload else {
                return Err("payload is not an object".into());
            };
            let Some(Value::Object(mut row)) = p.remove(image) else {
                return Err(format!("op {op:?} event has no {image:?} image"));
            };
            if let Some(schema) = &schema {
                convert_image(image_schema(schema, image), &mut row, hints)?;
            }
            if op == "u"
                && let Some(Value::Object(mut before)) = p.remove("before")
                && spec
                    .shape
                    .partition_fields
                    .iter()
                    .any(|f| before.get(f).is_some_and(|b| Some(b) != row.get(f)))
            {
                if let Some(schema) = &schema {
                    convert_image(image_schema(schema, "before"), &mut before, hints)?;
                }
                moved_from = Some(before);
            }
            (row, delete, position)
        }
        DecoderKind::Json => {
            let Value::Object(mut row) = v else {
                return Err(match spec.format {
                    MessageFormat::Json => "the message value is not a JSON object".into(),
                    MessageFormat::Avro => "the message value is not an Avro record".into(),
                });
            };
            if let Some(schema) = &schema {
                convert_image(schema.get("fields"), &mut row, hints)?;
            }
            (row, false, Some(format!("{:020}", m.offset)))
        }
    };
    let mut out = Vec::with_capacity(2);
    if let Some(before) = moved_from {
        out.push((
            finish_row(spec, before, key.as_deref(), position.clone())?,
            true,
        ));
    }
    row = finish_row(spec, row, key.as_deref(), position)?;
    out.push((row, delete));
    Ok(Some(out))
}

/// The message key as the text of a column (`message_key_field`), if the spec asks for it: the
/// key's UTF-8 text, or for a Confluent-framed Avro key its value (a record's single field).
fn message_key(
    m: &Message,
    spec: &DecodeSpec,
    readers: &Readers<'_>,
) -> Result<Option<String>, String> {
    let Some(col) = &spec.message_key_field else {
        return Ok(None);
    };
    let key = m
        .key
        .as_deref()
        .ok_or_else(|| format!("the message has no key for column {col:?}"))?;
    if spec.format == MessageFormat::Avro && frame(key).is_ok() {
        let (v, _) = readers
            .decode(key)
            .map_err(|e| format!("the message key: {e}"))?;
        let v = match v {
            Value::Object(o) if o.len() == 1 => o.into_iter().next().map(|(_, v)| v),
            other => Some(other),
        };
        return match v {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            _ => Err(format!(
                "the message key is not one value for column {col:?}"
            )),
        };
    }
    let key = std::str::from_utf8(key).map_err(|_| "the message key is not UTF-8")?;
    Ok(Some(key.to_owned()))
}

/// The `fields` of the `image` struct of an envelope schema.
fn image_schema<'s>(schema: &'s Value, image: &str) -> Option<&'s Value> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(image))?
        .get("fields")
}

/// Converts a row's values by the logical types of its struct's Connect `fields` and records the
/// types.
fn convert_image(
    fields: Option<&Value>,
    row: &mut Map<String, Value>,
    hints: &mut BTreeMap<String, DataType>,
) -> Result<(), String> {
    let Some(fields) = fields.and_then(Value::as_array) else {
        return Ok(());
    };
    for (name, conv, dt) in field_types(fields) {
        if let Some(v) = row.get_mut(&name) {
            let taken = std::mem::take(v);
            *v = convert(&conv, taken).map_err(|e| format!("column {name}: {e}"))?;
        }
        hints.entry(name).or_insert(dt);
    }
    Ok(())
}

/// Fills the message-key column and the source position, and checks the record key.
fn finish_row(
    spec: &DecodeSpec,
    mut row: Map<String, Value>,
    key: Option<&str>,
    position: Option<String>,
) -> Result<Map<String, Value>, String> {
    if let (Some(col), Some(key)) = (&spec.message_key_field, key) {
        row.insert(col.clone(), Value::String(key.to_owned()));
    }
    if spec.shape.ordering_field.as_deref() == Some(SOURCE_POSITION_FIELD) {
        let pos =
            position.ok_or("the event has no source position (source.file/pos, lsn or ts_ms)")?;
        row.insert(SOURCE_POSITION_FIELD.into(), Value::String(pos));
    }
    for k in &spec.shape.key_fields {
        match row.get(k) {
            None | Some(Value::Null) => {
                return Err(format!("record key field {k:?} is missing or null"));
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(format!("record key field {k:?} is empty"));
            }
            _ => {}
        }
    }
    Ok(row)
}

/// A conversion of a Debezium value into a form the JSON decoder reads as the column's type.
#[derive(Clone, Debug, PartialEq)]
enum Conv {
    None,
    Bool,
    Date,
    Millis,
    Micros,
    Nanos,
    Decimal(u32),
}

/// The (column, conversion, Arrow type) of every field of a struct's Connect `fields`.
fn field_types(fields: &[Value]) -> Vec<(String, Conv, DataType)> {
    fields
        .iter()
        .filter_map(|f| {
            let name = f.get("field")?.as_str()?.to_owned();
            let ty = f.get("type").and_then(Value::as_str).unwrap_or_default();
            let logical = f.get("name").and_then(Value::as_str).unwrap_or_default();
            let param = |k: &str| {
                f.get("parameters")
                    .and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u32>().ok())
            };
            let (conv, dt) = match (logical, ty) {
                ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) => {
                    (Conv::Date, DataType::Date32)
                }
                ("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp", _) => (
                    Conv::Millis,
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                ),
                ("io.debezium.time.MicroTimestamp", _) => (
                    Conv::Micros,
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
                ("io.debezium.time.NanoTimestamp", _) => (
                    Conv::Nanos,
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
                ("io.debezium.time.ZonedTimestamp", _) => (
                    Conv::None,
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                ),
                ("org.apache.kafka.connect.data.Decimal", _) => {
                    let scale = param("scale").unwrap_or(0);
                    let precision = param("connect.decimal.precision")
                        .unwrap_or(38)
                        .clamp(1, 38);
                    (
                        Conv::Decimal(scale),
                        DataType::Decimal128(precision as u8, scale.min(38) as i8),
                    )
                }
                ("io.debezium.data.Json", _) => (Conv::None, DataType::Utf8),
                (_, "boolean") => (Conv::Bool, DataType::Boolean),
                (_, "int8" | "int16" | "int32") => (Conv::None, DataType::Int32),
                (_, "int64") => (Conv::None, DataType::Int64),
                (_, "float" | "float32") => (Conv::None, DataType::Float32),
                (_, "double" | "float64") => (Conv::None, DataType::Float64),
                (_, "string") => (Conv::None, DataType::Utf8),
                (_, "bytes") => (Conv::None, DataType::Utf8),
                _ => return None,
            };
            Some((name, conv, dt))
        })
        .collect()
}

fn convert(conv: &Conv, v: Value) -> Result<Value, String> {
    if v.is_null() {
        return Ok(v);
    }
    let int = |v: &Value| {
        v.as_i64()
            .ok_or_else(|| format!("expected an integer, found {v}"))
    };
    Ok(match conv {
        Conv::None => v,
        Conv::Bool => match &v {
            Value::Bool(_) => v,
            Value::Number(n) => Value::Bool(n.as_i64() != Some(0)),
            other => return Err(format!("expected a boolean, found {other}")),
        },
        Conv::Date => {
            let days = int(&v)?;
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(
                i32::try_from(days + 719_163).map_err(|_| "date out of range")?,
            )
            .ok_or("date out of range")?;
            Value::String(d.format("%Y-%m-%d").to_string())
        }
        Conv::Millis | Conv::Micros | Conv::Nanos => {
            let n = int(&v)?;
            let micros = match conv {
                Conv::Millis => n.saturating_mul(1000),
                Conv::Micros => n,
                _ => n / 1000,
            };
            let t =
                chrono::DateTime::from_timestamp_micros(micros).ok_or("timestamp out of range")?;
            let fmt = if *conv == Conv::Millis {
                "%Y-%m-%dT%H:%M:%S%.3f"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6f"
            };
            Value::String(t.naive_utc().format(fmt).to_string())
        }
        Conv::Decimal(scale) => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("expected base64 decimal bytes, found {v}"))?;
            let bytes = base64_decode(s).ok_or("bad base64 in a decimal")?;
            if bytes.len() > 16 {
                return Err("decimal wider than 16 bytes".into());
            }
            let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                0xff
            } else {
                0
            };
            let mut full = [fill; 16];
            full[16 - bytes.len()..].copy_from_slice(&bytes);
            Value::String(decimal_string(i128::from_be_bytes(full), *scale))
        }
    })
}

fn decimal_string(unscaled: i128, scale: u32) -> String {
    let neg = unscaled < 0;
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let body = if scale == 0 {
        digits
    } else if digits.len() > scale {
        format!(
            "{}.{}",
            &digits[..digits.len() - scale],
            &digits[digits.len() - scale..]
        )
    } else {
        format!("0.{}{digits}", "0".repeat(scale - digits.len()))
    };
    if neg { format!("-{body}") } else { body }
}

/// Standard base64 with padding, the encoding Kafka Connect's JSON converter gives `bytes` values
/// (e.g. `Decimal`s).
pub fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= u32::from(*c) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, TimestampMicrosecondType};

    use super::*;

    fn msg(offset: i64, key: Option<&str>, value: Option<&str>) -> Message {
        Message {
            topic: "db.shop.orders".into(),
            partition: 2,
            offset,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
        }
    }

    fn debezium_spec() -> DecodeSpec {
        DecodeSpec {
            kind: DecoderKind::Debezium,
            shape: TableShape {
                key_fields: vec!["id".into()],
                ordering_field: Some(SOURCE_POSITION_FIELD.into()),
                ..Default::default()
            },
            message_key_field: None,
            ..Default::default()
        }
    }

    const ENVELOPE: &str = r#"{"schema":{"type":"struct","fields":[{"type":"struct","field":"before","fields":[]},{"type":"struct","field":"after","fields":[
        {"type":"int32","field":"id"},
        {"type":"int32","name":"io.debezium.time.Date","field":"d"},
        {"type":"int64","name":"io.debezium.time.MicroTimestamp","field":"ts"},
        {"type":"string","name":"io.debezium.time.ZonedTimestamp","field":"z"},
        {"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"},
        {"type":"int16","field":"flag"},
        {"type":"boolean","field":"ok"},
        {"type":"string","name":"io.debezium.data.Json","field":"doc"}]}]},
      "payload":{"before":null,"after":{"id":7,"d":19000,"ts":1700000000123456,"z":"2024-01-02T03:04:05.5Z","price":"AeJA","flag":1,"ok":1,"doc":"{\"a\":1}"},
        "op":"c","source":{"file":"mysql-bin.000003","pos":154,"row":0}}}"#;

    #[test]
    fn debezium_logical_types_become_arrow_types() {
        let d = decode_messages(
            &[msg(0, Some(r#"{"id":7}"#), Some(ENVELOPE))],
            &debezium_spec(),
            false,
        )
        .expect("decodes");
        let b = d.batch.expect("rows").rows;
        let col = |n: &str| b.column_by_name(n).expect(n).clone();
        assert_eq!(col("d").as_primitive::<Date32Type>().value(0), 19000);
        assert_eq!(
            col("ts")
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_700_000_000_123_456
        );
        assert_eq!(
            col("z").data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            col("z").as_primitive::<TimestampMicrosecondType>().value(0),
            1_704_164_645_500_000
        );
        // 0x01E240 = 123456 unscaled, scale 2.
        let price = col("price");
        assert_eq!(price.data_type(), &DataType::Decimal128(10, 2));
        assert_eq!(price.as_primitive::<Decimal128Type>().value(0), 123_456);
        assert_eq!(col("flag").data_type(), &DataType::Int32);
        assert!(col("ok").as_boolean().value(0));
        assert_eq!(col("doc").as_string::<i32>().value(0), r#"{"a":1}"#);
        assert_eq!(
            debezium_key_fields(br#"{"schema":{},"payload":{"id":7,"region":"x"}}"#),
            Some(vec!["id".to_owned(), "region".to_owned()])
        );
    }

    #[test]
    fn tombstones_skip_and_bad_messages_name_their_offset() {
        let good = r#"{"op":"c","after":{"id":1},"source":{"file":"f.1","pos":1}}"#;
        let msgs = vec![
            msg(10, None, Some(good)),
            msg(11, None, None),
            msg(12, None, Some("{not json")),
            msg(13, None, Some(r#"{"op":"x","after":{"id":1}}"#)),
            msg(
                14,
                None,
                Some(r#"{"op":"c","after":{"v":1},"source":{"file":"f.1","pos":2}}"#),
            ),
            msg(
                15,
                None,
                Some(r#"{"op":"c","after":{"id":{"nested":1}},"source":{"file":"f.1","pos":3}}"#),
            ),
        ];
        let err = decode_messages(&msgs, &debezium_spec(), false).expect_err("fails");
        assert_eq!((err.partition, err.offset), (2, 12));
        assert!(
            err.to_string()
                .starts_with("topic db.shop.orders partition 2 offset 12: malformed JSON"),
            "{err}"
        );
        let d = decode_messages(&msgs, &debezium_spec(), true).expect("keeps going");
        assert_eq!(d.tombstones, 1);
        let rejected: Vec<i64> = d.rejected.iter().map(|(_, e)| e.offset).collect();
        assert_eq!(rejected, [12, 13, 14, 15]);
        assert!(d.rejected[1].1.reason.contains("unknown Debezium op"));
        assert!(d.rejected[2].1.reason.contains("record key field \"id\""));
        assert_eq!(d.batch.expect("rows").rows.num_rows(), 1);
    }

    #[test]
    fn json_messages_take_their_key_and_offset() {
        let spec = DecodeSpec {
            kind: DecoderKind::Json,
            shape: TableShape {
                key_fields: vec!["user_id".into()],
                ordering_field: Some(SOURCE_POSITION_FIELD.into()),
                ..Default::default()
            },
            message_key_field: Some("user_id".into()),
            ..Default::default()
        };
        let d = decode_messages(
            &[
                msg(
                    5,
                    Some("u1"),
                    Some(r#"{"timestamp":1,"event_name":"view","event_value":2.5}"#),
                ),
                msg(6, None, Some(r#"{"timestamp":2}"#)),
            ],
            &spec,
            true,
        )
        .expect("decodes");
        let b = d.batch.expect("rows").rows;
        assert_eq!(b.num_rows(), 1);
        let user = b.column_by_name("user_id").expect("key column");
        assert_eq!(user.as_string::<i32>().value(0), "u1");
        let pos = b.column_by_name(SOURCE_POSITION_FIELD).expect("position");
        assert_eq!(pos.as_string::<i32>().value(0), "00000000000000000005");
        assert!(d.rejected[0].1.reason.contains("no key"));
        assert!(user.null_count() == 0);
    }

    /// Property: for random decimals, scales and dates, the conversion is exact.
    #[test]
    fn conversions_are_exact_for_random_values() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let unscaled = (next() as i64 as i128) >> (next() % 40);
            let scale = (next() % 10) as u32;
            let bytes = unscaled.to_be_bytes();
            let enc = base64_encode(&bytes[8..]);
            let v = convert(&Conv::Decimal(scale), Value::String(enc)).expect("decimal");
            let s = v.as_str().expect("string").replace('.', "");
            assert_eq!(s.parse::<i128>().expect("digits"), unscaled as i64 as i128);
            let days = (next() % 100_000) as i64 - 50_000;
            let v = convert(&Conv::Date, Value::from(days)).expect("date");
            let d =
                chrono::NaiveDate::parse_from_str(v.as_str().expect("s"), "%Y-%m-%d").expect("iso");
            assert_eq!(
                (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days(),
                days
            );
        }
    }

    /// In the batch that creates a table, the first schema id to declare a column fixes its type; a
    /// later schema id that contradicts it is refused (its messages fail or go to the dead letters),
    /// one that only adds a column is taken.
    #[test]
    fn schema_ids_of_a_new_tables_batch_must_agree_on_column_types() {
        use crate::avro::{WriterSchema, encode_framed};
        use apache_avro::types::Value as Avro;
        let texts = [
            (
                1,
                r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"amount","type":"int"}]}"#,
            ),
            (
                2,
                r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"amount","type":"string"}]}"#,
            ),
            (
                3,
                r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"amount","type":"long"}]}"#,
            ),
            (
                4,
                r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"amount","type":"int"},{"name":"note","type":["null","string"],"default":null}]}"#,
            ),
        ];
        let schemas: BatchSchemas = texts
            .iter()
            .map(|(id, t)| {
                (
                    *id,
                    Ok(Arc::new(WriterSchema::parse(*id, t).expect("schema"))),
                )
            })
            .collect();
        let encode = |offset: i64, id: u32, amount: Avro, note: Option<&str>| {
            let Some(Ok(ws)) = schemas.get(&id) else {
                unreachable!("every id has a schema")
            };
            let mut fields = vec![("id".into(), Avro::Long(offset)), ("amount".into(), amount)];
            if let Some(n) = note {
                fields.push((
                    "note".into(),
                    Avro::Union(1, Box::new(Avro::String(n.into()))),
                ));
            }
            Message {
                value: Some(encode_framed(id, &ws.schema, Avro::Record(fields)).expect("encodes")),
                ..msg(offset, None, None)
            }
        };
        let msgs = vec![
            encode(0, 1, Avro::Int(5), None),
            encode(1, 4, Avro::Int(6), Some("gift")),
            encode(2, 2, Avro::String("7".into()), None),
            encode(3, 3, Avro::Long(8), None),
        ];
        let spec = DecodeSpec {
            kind: DecoderKind::Json,
            shape: TableShape {
                key_fields: vec!["id".into()],
                ..Default::default()
            },
            format: MessageFormat::Avro,
            schemas: Some(Arc::new(schemas.clone())),
            ..Default::default()
        };
        let err = decode_messages(&msgs, &spec, false).expect_err("a clash");
        assert_eq!(err.offset, 2);
        assert!(
            err.reason
                .contains("schema id 2 gives column amount the type Utf8, which schema id 1 gave the type Int32"),
            "{}",
            err.reason
        );
        let kept = decode_messages(&msgs, &spec, true).expect("dead letters");
        let rejected: Vec<i64> = kept.rejected.iter().map(|(_, e)| e.offset).collect();
        assert_eq!(rejected, [2, 3]);
        let batch = kept.batch.expect("rows").rows;
        assert_eq!(batch.num_rows(), 2);
        let schema = batch.schema();
        assert_eq!(
            schema
                .field_with_name("amount")
                .map(|f| f.data_type().clone())
                .ok(),
            Some(DataType::Int32)
        );
        assert!(schema.field_with_name("note").is_ok());
        // In another order the first to appear fixes the type: long takes int's values; string
        // does not.
        let widest_first = vec![msgs[3].clone(), msgs[0].clone()];
        let kept = decode_messages(&widest_first, &spec, false).expect("int fits long");
        let amount = kept
            .batch
            .expect("rows")
            .rows
            .schema()
            .field_with_name("amount")
            .map(|f| f.data_type().clone())
            .ok();
        assert_eq!(amount, Some(DataType::Int64));
        let text_first = vec![msgs[2].clone(), msgs[0].clone()];
        let kept = decode_messages(&text_first, &spec, true).expect("dead letters");
        let rejected: Vec<i64> = kept.rejected.iter().map(|(_, e)| e.offset).collect();
        assert_eq!(rejected, [0]);
    }
}
