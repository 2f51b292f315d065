//! Table schemas: Arrow ↔ Avro JSON conversion, the five `_hoodie_*` meta columns, schema evolution
//! rules, and aligning record batches to a target schema.
//!
//! Evolution: a batch may add nullable columns (they extend the table schema and older files read
//! as nulls), may omit nullable non-key columns (written as nulls), and may carry a type that widens
//! losslessly into the table's (int → long → double, float → double). A column whose type cannot be
//! reconciled, or a missing record-key/ordering column, is refused before anything is written.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::{Value, json};

use crate::{Error, Result};

/// Commit time of the write that produced this record version.
pub const COMMIT_TIME: &str = "_hoodie_commit_time";
/// `{instant}_{task}_{row}` sequence number.
pub const COMMIT_SEQNO: &str = "_hoodie_commit_seqno";
/// The record key.
pub const RECORD_KEY: &str = "_hoodie_record_key";
/// The partition path.
pub const PARTITION_PATH: &str = "_hoodie_partition_path";
/// The file name (base files) or file id (log records).
pub const FILE_NAME: &str = "_hoodie_file_name";
/// The five meta columns, in order.
pub const META_COLUMNS: [&str; 5] = [
    COMMIT_TIME,
    COMMIT_SEQNO,
    RECORD_KEY,
    PARTITION_PATH,
    FILE_NAME,
];

/// Whether a column name is a Hudi meta column.
pub fn is_meta_column(name: &str) -> bool {
    META_COLUMNS.contains(&name)
}

/// The data schema with the five meta columns prepended.
pub fn with_meta_columns(data: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = META_COLUMNS
        .iter()
        .map(|n| Arc::new(Field::new(*n, DataType::Utf8, true)))
        .collect();
    fields.extend(
        data.fields()
            .iter()
            .filter(|f| !is_meta_column(f.name()))
            .cloned(),
    );
    Arc::new(Schema::new(fields))
}

/// The schema without meta columns.
pub fn without_meta_columns(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !is_meta_column(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

fn schema_err(reason: impl Into<String>) -> Error {
    Error::Schema {
        reason: reason.into(),
    }
}

/// The Avro schema (JSON text) of an Arrow schema, as Hudi records it in commit metadata:
/// record `{table}_record` in namespace `hoodie.{table}`, nullable fields as `["null", T]`.
pub fn avro_schema_json(schema: &Schema, table_name: &str) -> Result<String> {
    let fields = schema
        .fields()
        .iter()
        .map(|f| avro_field(f, &format!("hoodie.{table_name}")))
        .collect::<Result<Vec<_>>>()?;
    let v = json!({
        "type": "record",
        "name": format!("{table_name}_record"),
        "namespace": format!("hoodie.{table_name}"),
        "fields": fields,
    });
    Ok(v.to_string())
}

fn avro_field(field: &Field, namespace: &str) -> Result<Value> {
    let ty = avro_type(field.data_type(), field.name(), namespace)?;
    Ok(if field.is_nullable() {
        json!({"name": field.name(), "type": ["null", ty], "default": null})
    } else {
        json!({"name": field.name(), "type": ty})
    })
}

pub(crate) fn decimal_fixed_size(precision: u8) -> usize {
    // The fewest bytes whose two's complement holds 10^precision - 1, as Spark sizes them.
    (1..=16)
        .find(|n| 2f64.powi(8 * *n as i32 - 1) >= 10f64.powi(precision as i32))
        .unwrap_or(16)
}

fn avro_type(dt: &DataType, name: &str, namespace: &str) -> Result<Value> {
    Ok(match dt {
        DataType::Null => json!("null"),
        DataType::Boolean => json!("boolean"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            json!("int")
        }
        DataType::Int64 | DataType::UInt32 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => json!("string"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => json!("bytes"),
        DataType::Date32 => json!({"type": "int", "logicalType": "date"}),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Millisecond => "millis",
                TimeUnit::Microsecond => "micros",
                other => {
                    return Err(schema_err(format!(
                        "column {name}: timestamp unit {other:?} has no Avro type; use micros"
                    )));
                }
            };
            let logical = if tz.is_some() {
                format!("timestamp-{unit}")
            } else {
                format!("local-timestamp-{unit}")
            };
            json!({"type": "long", "logicalType": logical})
        }
        DataType::Decimal128(p, s) => json!({
            "type": "fixed", "name": "fixed", "namespace": format!("{namespace}.{name}"),
            "size": decimal_fixed_size(*p), "logicalType": "decimal", "precision": p, "scale": s
        }),
        DataType::List(item) | DataType::LargeList(item) => {
            let inner = avro_type(item.data_type(), name, namespace)?;
            let items = if item.is_nullable() {
                json!(["null", inner])
            } else {
                inner
            };
            json!({"type": "array", "items": items})
        }
        DataType::Struct(fields) => {
            let ns = format!("{namespace}.{name}");
            let fs = fields
                .iter()
                .map(|f| avro_field(f, &ns))
                .collect::<Result<Vec<_>>>()?;
            json!({"type": "record", "name": name, "namespace": namespace, "fields": fs})
        }
        other => {
            return Err(schema_err(format!(
                "column {name}: type {other} is not supported in a table"
            )));
        }
    })
}

/// The Arrow schema of an Avro record schema (JSON text), for the types lake writes and Hudi's usual
/// ones (primitives, date, timestamps, decimals, arrays, records, maps).
pub fn arrow_schema_from_avro(avro_json: &str) -> Result<Schema> {
    let v: Value = serde_json::from_str(avro_json)
        .map_err(|e| schema_err(format!("Avro schema is not JSON: {e}")))?;
    let fields = v
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| schema_err("Avro schema is not a record"))?;
    let mut names = Names {
        types: HashMap::new(),
        namespace: v
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let fields = fields
        .iter()
        .map(|f| arrow_field(f, &mut names))
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema::new(fields))
}

/// Named records seen so far (by full and by short name), for later references to them, and the
/// enclosing namespace.
struct Names {
    types: HashMap<String, DataType>,
    namespace: Option<String>,
}

fn arrow_field(v: &Value, names: &mut Names) -> Result<Field> {
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| schema_err("Avro field without name"))?;
    let (dt, nullable) = arrow_type(v.get("type").unwrap_or(&Value::Null), names)?;
    Ok(Field::new(name, dt, nullable))
}

fn arrow_type(t: &Value, names: &mut Names) -> Result<(DataType, bool)> {
    if let Some(branches) = t.as_array() {
        let non_null: Vec<&Value> = branches
            .iter()
            .filter(|b| b.as_str() != Some("null"))
            .collect();
        return match non_null.as_slice() {
            [one] => Ok((arrow_type(one, names)?.0, true)),
            [] => Ok((DataType::Null, true)),
            _ => Err(schema_err(format!("Avro union {t} is not supported"))),
        };
    }
    if let Some(s) = t.as_str() {
        return Ok((
            match s {
                "null" => DataType::Null,
                "boolean" => DataType::Boolean,
                "int" => DataType::Int32,
                "long" => DataType::Int64,
                "float" => DataType::Float32,
                "double" => DataType::Float64,
                "string" => DataType::Utf8,
                "bytes" => DataType::Binary,
                // A reference to a record defined earlier in the schema.
                other => match names
                    .namespace
                    .as_deref()
                    .and_then(|ns| names.types.get(&format!("{ns}.{other}")))
                    .or_else(|| names.types.get(other))
                {
                    Some(dt) => dt.clone(),
                    None => return Err(schema_err(format!("Avro type {other} is not supported"))),
                },
            },
            false,
        ));
    }
    let logical = t.get("logicalType").and_then(Value::as_str);
    let base = t.get("type").and_then(Value::as_str).unwrap_or_default();
    let dt = match (base, logical) {
        ("int", Some("date")) => DataType::Date32,
        ("long", Some("timestamp-micros")) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ("long", Some("timestamp-millis")) => {
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        }
        ("long", Some("local-timestamp-micros")) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        ("long", Some("local-timestamp-millis")) => {
            DataType::Timestamp(TimeUnit::Millisecond, None)
        }
        ("fixed" | "bytes", Some("decimal")) => {
            let p = t.get("precision").and_then(Value::as_u64).unwrap_or(38) as u8;
            let s = t.get("scale").and_then(Value::as_i64).unwrap_or(0) as i8;
            DataType::Decimal128(p, s)
        }
        ("array", _) => {
            let (inner, nullable) = arrow_type(t.get("items").unwrap_or(&Value::Null), names)?;
            DataType::List(Arc::new(Field::new("element", inner, nullable)))
        }
        ("map", _) => {
            let (inner, nullable) = arrow_type(t.get("values").unwrap_or(&Value::Null), names)?;
            let entries = Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", inner, nullable),
            ]);
            DataType::Map(
                Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
                false,
            )
        }
        ("record", _) => {
            let fields = t
                .get("fields")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let (full, ns) = match name.rsplit_once('.') {
                Some((ns, _)) => (name.to_owned(), Some(ns.to_owned())),
                None => {
                    let ns = t
                        .get("namespace")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| names.namespace.clone());
                    let full = ns
                        .as_ref()
                        .map_or(name.to_owned(), |n| format!("{n}.{name}"));
                    (full, ns)
                }
            };
            let outer = std::mem::replace(&mut names.namespace, ns);
            let fields = fields
                .iter()
                .map(|f| arrow_field(f, names))
                .collect::<Result<Fields>>();
            names.namespace = outer;
            let dt = DataType::Struct(fields?);
            let short = full.rsplit('.').next().unwrap_or(&full).to_owned();
            names.types.insert(full, dt.clone());
            names.types.entry(short).or_insert_with(|| dt.clone());
            dt
        }
        ("fixed", None) => {
            DataType::FixedSizeBinary(t.get("size").and_then(Value::as_i64).unwrap_or(0) as i32)
        }
        ("enum", _) => DataType::Utf8,
        (prim, _) => return arrow_type(&Value::String(prim.to_owned()), names),
    };
    Ok((dt, false))
}

/// Whether values of `from` convert to `to` without loss (Hudi's type promotions).
pub fn is_promotion(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(
            (from, to),
            (Int8 | Int16, Int32 | Int64 | Float32 | Float64)
                | (Int32, Int64 | Float64)
                | (Int64, Float64)
                | (Float32, Float64)
                | (Utf8View | LargeUtf8, Utf8)
                | (Utf8, LargeUtf8)
                | (Null, _)
        )
        || matches!((from, to), (Timestamp(u1, _), Timestamp(u2, _)) if u1 == u2)
}

/// Whether `name` is a valid Avro name (`[A-Za-z_][A-Za-z0-9_]*`), as Hudi's schemas need.
pub fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The table schema after writing a batch with schema `incoming` (both without meta columns).
///
/// `required` are the columns every batch must carry (record key and ordering fields). New column
/// names must be valid Avro names and a batch may not name a column twice.
pub fn evolve(table: Option<&Schema>, incoming: &Schema, required: &[String]) -> Result<SchemaRef> {
    let mut seen = std::collections::HashSet::new();
    for f in incoming.fields() {
        let name = f.name();
        if !seen.insert(name.as_str()) {
            return Err(schema_err(format!(
                "the batch has two columns named {name:?}"
            )));
        }
        let new = table.is_none_or(|t| t.field_with_name(name).is_err());
        if new && !is_meta_column(name) && !is_avro_name(name) {
            return Err(schema_err(format!(
                "column name {name:?} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*), which Hudi readers refuse; rename it in the source"
            )));
        }
    }
    for name in required {
        if incoming.field_with_name(name).is_err() {
            return Err(schema_err(format!(
                "the batch has no column {name:?}, which the table requires"
            )));
        }
    }
    let Some(table) = table else {
        let fields: Vec<Field> = incoming
            .fields()
            .iter()
            .filter(|f| !is_meta_column(f.name()))
            .map(|f| {
                let dt = if f.data_type() == &DataType::Null {
                    DataType::Utf8
                } else {
                    f.data_type().clone()
                };
                Field::new(
                    f.name(),
                    dt,
                    f.is_nullable() || !required.contains(f.name()),
                )
            })
            .collect();
        return Ok(Arc::new(Schema::new(fields)));
    };
    let mut fields: Vec<Field> = Vec::with_capacity(table.fields().len());
    for tf in table.fields() {
        let f = match incoming.field_with_name(tf.name()) {
            Ok(inc) if is_promotion(inc.data_type(), tf.data_type()) => tf.as_ref().clone(),
            Ok(inc) if is_promotion(tf.data_type(), inc.data_type()) => {
                Field::new(tf.name(), inc.data_type().clone(), true)
            }
            Ok(inc) => {
                return Err(schema_err(format!(
                    "column {:?} has type {} in the table but {} in the batch",
                    tf.name(),
                    tf.data_type(),
                    inc.data_type()
                )));
            }
            Err(_) if !tf.is_nullable() => {
                return Err(schema_err(format!(
                    "the batch has no column {:?}, which is not nullable",
                    tf.name()
                )));
            }
            Err(_) => tf.as_ref().clone(),
        };
        fields.push(f);
    }
    for inc in incoming.fields() {
        if table.field_with_name(inc.name()).is_err() && !is_meta_column(inc.name()) {
            let dt = if inc.data_type() == &DataType::Null {
                DataType::Utf8
            } else {
                inc.data_type().clone()
            };
            fields.push(Field::new(inc.name(), dt, true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Reshapes a batch to `target`: columns picked by name, promoted where types differ, and columns
/// the batch lacks filled with nulls.
pub fn align_batch(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().as_ref() == target.as_ref() {
        return Ok(batch.clone());
    }
    let rows = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|f| -> Result<ArrayRef> {
            match batch.column_by_name(f.name()) {
                Some(col) if col.data_type() == f.data_type() => Ok(col.clone()),
                Some(col) => Ok(cast(col, f.data_type())?),
                None => Ok(new_null_array(f.data_type(), rows)),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let relaxed = Arc::new(Schema::new(
        target
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let schema = if columns
        .iter()
        .zip(target.fields())
        .any(|(c, f)| !f.is_nullable() && c.null_count() > 0)
    {
        relaxed
    } else {
        target.clone()
    };
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    #[test]
    fn avro_round_trip_keeps_lake_types() {
        let schema = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int32, true),
        ]);
        let avro = avro_schema_json(&schema, "orders").expect("to avro");
        assert!(avro.contains("\"name\":\"orders_record\""));
        let back = arrow_schema_from_avro(&avro).expect("from avro");
        assert_eq!(back, schema);
        assert_eq!(decimal_fixed_size(10), 5);
        assert_eq!(decimal_fixed_size(38), 16);
    }

    #[test]
    fn evolve_adds_nullable_columns_and_widens() {
        let table = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int32, true),
        ]);
        let incoming = s(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("v", DataType::Int64, true),
            Field::new("new", DataType::Utf8, false),
        ]);
        let out = evolve(Some(&table), &incoming, &["id".into()]).expect("evolves");
        assert_eq!(out.field(0).data_type(), &DataType::Int64);
        assert_eq!(out.field(1).data_type(), &DataType::Int64);
        assert_eq!(out.field(2).name(), "new");
        assert!(out.field(2).is_nullable());
    }

    #[test]
    fn evolve_refuses_clashes_and_missing_keys() {
        let table = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
        ]);
        let clash = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]);
        let err = evolve(Some(&table), &clash, &["id".into()]).expect_err("clash");
        assert!(err.to_string().contains("\"v\""), "{err}");
        let no_key = s(vec![Field::new("v", DataType::Float64, true)]);
        assert!(evolve(Some(&table), &no_key, &["id".into()]).is_err());
        // Names Hudi readers refuse, and a column named twice.
        let dashed = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("user-agent", DataType::Utf8, true),
        ]);
        let err = evolve(Some(&table), &dashed, &["id".into()]).expect_err("name");
        assert!(err.to_string().contains("user-agent"), "{err}");
        assert!(evolve(None, &dashed, &["id".into()]).is_err());
        let twice = s(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("id", DataType::Int64, false),
        ]);
        assert!(evolve(None, &twice, &["id".into()]).is_err());
        assert!(is_avro_name("_a1") && !is_avro_name("1a") && !is_avro_name(""));
    }
}
