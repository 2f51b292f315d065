//! JSON objects, CSV and Parquet into Arrow record batches shaped by the table schema.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_json::reader::{ReaderBuilder, infer_json_schema_from_iterator};
use bytes::Bytes;
use lake_table::ChangeBatch;
use lake_table::config::SOURCE_POSITION_FIELD;
use serde_json::Value;

use crate::{DecodeError, Result};

/// What the decoders need to know of the target table.
#[derive(Clone, Debug, Default)]
pub struct TableShape {
    /// The table's data schema, if it has been written before (types of known columns).
    pub schema: Option<SchemaRef>,
    /// Columns every record must carry non-null (record key fields).
    pub key_fields: Vec<String>,
    /// The ordering field, if any.
    pub ordering_field: Option<String>,
    /// The `_source_position` given to rows that carry none (a manual write of plain rows into a
    /// table ordered by source position): lake stamps them just after the highest position the
    /// table has applied, so the correction wins over everything before it and loses to any later
    /// source event. Empty: such rows sort first.
    pub unpositioned: String,
    /// The partition columns: a Debezium update whose `before` image has other values in them
    /// moves the row, and becomes a delete in the old partition plus the upsert.
    pub partition_fields: Vec<String>,
    /// Types of columns the source declares (e.g. Debezium's schema envelope), used for columns the
    /// table does not have yet instead of inferring them from the values.
    pub hints: Vec<Field>,
}

impl TableShape {
    fn fills_source_position(&self) -> bool {
        self.ordering_field.as_deref() == Some(SOURCE_POSITION_FIELD)
    }
}

/// A decoded batch with the number of records skipped (tombstones).
#[derive(Debug)]
pub struct Decoded {
    /// The changes.
    pub batch: ChangeBatch,
    /// Records skipped on purpose (Debezium tombstones).
    pub skipped: usize,
}

fn merged_schema(shape: &TableShape, rows: &[&Value]) -> std::result::Result<SchemaRef, String> {
    let inferred =
        infer_json_schema_from_iterator(rows.iter().map(|v| Ok::<_, arrow::error::ArrowError>(*v)))
            .map_err(|e| e.to_string())?;
    let mut fields: Vec<Field> = shape
        .schema
        .as_ref()
        .map(|s| {
            s.fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect()
        })
        .unwrap_or_default();
    for f in inferred.fields() {
        if !fields.iter().any(|x| x.name() == f.name()) {
            if let Some(h) = shape.hints.iter().find(|h| h.name() == f.name()) {
                fields.push(h.clone().with_nullable(true));
                continue;
            }
            let dt = if f.data_type() == &DataType::Null {
                DataType::Utf8
            } else {
                f.data_type().clone()
            };
            fields.push(Field::new(f.name(), dt, true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn utc_as_offset(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC"))
    {
        return schema.clone();
    }
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Timestamp(u, Some(tz)) if tz.as_ref() == "UTC" => f
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Timestamp(*u, Some("+00:00".into()))),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

/// Refuses values that the JSON decoder would silently change to fit their column: a fraction or an
/// out-of-range number in an integer column, more fraction digits than a decimal column's scale.
fn check_fit(schema: &Schema, row: &Value) -> std::result::Result<(), String> {
    let Value::Object(map) = row else {
        return Ok(());
    };
    for f in schema.fields() {
        let Some(v) = map.get(f.name()) else { continue };
        let bad = |why: &str| {
            Err(format!(
                "column {}: {v} {why} ({})",
                f.name(),
                f.data_type()
            ))
        };
        let range = match f.data_type() {
            DataType::Int8 => Some((i8::MIN as i128, i8::MAX as i128)),
            DataType::Int16 => Some((i16::MIN as i128, i16::MAX as i128)),
            DataType::Int32 => Some((i32::MIN as i128, i32::MAX as i128)),
            DataType::Int64 => Some((i64::MIN as i128, i64::MAX as i128)),
            DataType::UInt8 => Some((0, u8::MAX as i128)),
            DataType::UInt16 => Some((0, u16::MAX as i128)),
            DataType::UInt32 => Some((0, u32::MAX as i128)),
            DataType::UInt64 => Some((0, u64::MAX as i128)),
            _ => None,
        };
        if let Some((lo, hi)) = range {
            let n: Option<i128> = match v {
                Value::Number(n) => n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
                    .or_else(|| {
                        n.as_f64()
                            .filter(|x| x.fract() == 0.0 && x.abs() < 1e38)
                            .map(|x| x as i128)
                    }),
                Value::String(t) => match t.trim().parse::<i128>() {
                    Ok(n) => Some(n),
                    Err(_) => return bad("is not an integer"),
                },
                _ => continue,
            };
            match n {
                Some(n) if n >= lo && n <= hi => {}
                Some(_) => return bad("is out of range"),
                None => return bad("is not an integer"),
            }
        }
        if let DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) = f.data_type() {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(t) => t.trim().to_owned(),
                _ => continue,
            };
            let frac = text
                .split_once('.')
                .map_or(0, |(_, f)| f.trim_end_matches('0').len());
            if text.contains(['e', 'E']) || frac > (*scale).max(0) as usize {
                return bad("has more fraction digits than the column's scale");
            }
        }
    }
    Ok(())
}

/// Converts JSON objects (with their line numbers) into a batch in the table's types plus any new
/// columns (types inferred). A value that does not fit its column names its line.
pub fn rows_to_batch(
    source: &str,
    shape: &TableShape,
    rows: &[(u64, Value)],
) -> Result<RecordBatch> {
    let first_line = rows.first().map_or(0, |(l, _)| *l);
    let values: Vec<&Value> = rows.iter().map(|(_, v)| v).collect();
    for (line, v) in rows {
        for k in &shape.key_fields {
            match v.get(k) {
                None | Some(Value::Null) => {
                    return Err(DecodeError::new(
                        source,
                        *line,
                        format!("record key field {k:?} is missing or null"),
                    ));
                }
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(DecodeError::new(
                        source,
                        *line,
                        format!("record key field {k:?} is empty"),
                    ));
                }
                _ => {}
            }
        }
    }
    let schema = match merged_schema(shape, &values) {
        Ok(s) => s,
        Err(e) => {
            // Inference over a prefix fails from the first bad row on: find that row.
            let (mut lo, mut hi) = (0, values.len());
            while lo + 1 < hi {
                let mid = (lo + hi) / 2;
                if merged_schema(shape, &values[..mid]).is_ok() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let bad = if merged_schema(shape, &values[..1]).is_err() {
                0
            } else {
                hi - 1
            };
            let line = rows.get(bad).map_or(first_line, |(l, _)| *l);
            return Err(DecodeError::new(source, line, e));
        }
    };
    for (line, v) in rows {
        check_fit(&schema, v).map_err(|e| DecodeError::new(source, *line, e))?;
    }
    // JSON decoding parses offset time zones only: decode "UTC" columns as "+00:00", then relabel.
    let decode_schema = utc_as_offset(&schema);
    let decode = |vals: &[&Value]| -> std::result::Result<Option<RecordBatch>, String> {
        let mut d = ReaderBuilder::new(decode_schema.clone())
            .with_coerce_primitive(true)
            .with_batch_size(vals.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        d.serialize(vals).map_err(|e| e.to_string())?;
        d.flush().map_err(|e| e.to_string())
    };
    match decode(&values) {
        Ok(Some(b)) if decode_schema == schema => Ok(b),
        Ok(Some(b)) => {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| DecodeError::new(source, first_line, e.to_string()))?;
            RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| DecodeError::new(source, first_line, e.to_string()))
        }
        Ok(None) => Ok(RecordBatch::new_empty(schema)),
        Err(whole) => {
            for (line, v) in rows {
                if let Err(e) = decode(&[v]) {
                    return Err(DecodeError::new(source, *line, e));
                }
            }
            Err(DecodeError::new(source, first_line, whole))
        }
    }
}

/// Decodes JSON Lines of row objects. `deletes` marks every row as a delete (delete by key).
pub fn decode_json_lines(
    source: &str,
    text: &str,
    shape: &TableShape,
    deletes: bool,
) -> Result<Decoded> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut v: Value = serde_json::from_str(line)
            .map_err(|e| DecodeError::new(source, line_no, format!("malformed JSON: {e}")))?;
        let Some(obj) = v.as_object_mut() else {
            return Err(DecodeError::new(source, line_no, "expected a JSON object"));
        };
        if shape.fills_source_position() && !obj.contains_key(SOURCE_POSITION_FIELD) {
            obj.insert(
                SOURCE_POSITION_FIELD.into(),
                Value::String(shape.unpositioned.clone()),
            );
        }
        rows.push((line_no, v));
    }
    let batch = rows_to_batch(source, shape, &rows)?;
    Ok(all_or_no_deletes(batch, deletes))
}

/// A file's rows as a change batch: all deletes (`--op delete`) or all upserts.
fn all_or_no_deletes(batch: RecordBatch, deletes: bool) -> Decoded {
    let n = batch.num_rows();
    let batch = if deletes {
        ChangeBatch::new(batch, BooleanArray::from(vec![true; n]))
    } else {
        ChangeBatch::upserts(batch)
    };
    Decoded { batch, skipped: 0 }
}

fn with_source_position(
    batch: RecordBatch,
    shape: &TableShape,
) -> std::result::Result<RecordBatch, String> {
    if !shape.fills_source_position()
        || batch
            .schema()
            .field_with_name(SOURCE_POSITION_FIELD)
            .is_ok()
    {
        return Ok(batch);
    }
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SOURCE_POSITION_FIELD, DataType::Utf8, true));
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols.push(Arc::new(StringArray::from(vec![
        shape.unpositioned.as_str();
        batch.num_rows()
    ])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}

/// Decodes a CSV file with a header line; known columns take the table's types.
pub fn decode_csv(
    source: &str,
    bytes: Bytes,
    shape: &TableShape,
    deletes: bool,
) -> Result<Decoded> {
    use arrow::csv::reader::{Format, ReaderBuilder as CsvBuilder};
    let err = |line: u64, e: String| DecodeError::new(source, line, e);
    let format = Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(Cursor::new(bytes.as_ref()), Some(1000))
        .map_err(|e| err(1, format!("cannot read the CSV header: {e}")))?;
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| {
            let known = shape
                .schema
                .as_ref()
                .and_then(|s| s.field_with_name(f.name()).ok().cloned());
            known
                .unwrap_or_else(|| f.as_ref().clone())
                .with_nullable(true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let reader = CsvBuilder::new(schema.clone())
        .with_format(format)
        .with_batch_size(64 * 1024)
        .build(Cursor::new(bytes.as_ref()))
        .map_err(|e| err(1, e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            // The CSV reader counts data rows from 1 ("at line N"); the file line adds the header.
            let msg = e.to_string();
            let line = msg
                .split_once(" at line ")
                .and_then(|(_, rest)| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .map_or(0, |n| n + 1);
            err(line, msg)
        })?;
    let batch =
        arrow::compute::concat_batches(&schema, &batches).map_err(|e| err(0, e.to_string()))?;
    finish_file_batch(source, batch, shape, deletes)
}

/// Decodes a Parquet file.
pub fn decode_parquet(
    source: &str,
    bytes: Bytes,
    shape: &TableShape,
    deletes: bool,
) -> Result<Decoded> {
    let (schema, batches) = lake_table::read_parquet(source, bytes)
        .map_err(|e| DecodeError::new(source, 0, e.to_string()))?;
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| DecodeError::new(source, 0, e.to_string()))?;
    finish_file_batch(source, batch, shape, deletes)
}

fn finish_file_batch(
    source: &str,
    batch: RecordBatch,
    shape: &TableShape,
    deletes: bool,
) -> Result<Decoded> {
    for k in &shape.key_fields {
        let col = batch.column_by_name(k).ok_or_else(|| {
            DecodeError::new(source, 1, format!("record key column {k:?} is missing"))
        })?;
        if let Some(row) = (0..col.len()).find(|i| col.is_null(*i)) {
            return Err(DecodeError::new(
                source,
                row as u64 + 2,
                format!("record key field {k:?} is null"),
            ));
        }
    }
    let batch = with_source_position(batch, shape).map_err(|e| DecodeError::new(source, 0, e))?;
    Ok(all_or_no_deletes(batch, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(schema: Schema) -> TableShape {
        TableShape {
            schema: Some(Arc::new(schema)),
            key_fields: vec!["id".into()],
            ..Default::default()
        }
    }

    #[test]
    fn csv_errors_name_the_file_line() {
        let s = shape(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let csv = Bytes::from_static(b"id,v\n1,2\n2,abc\n");
        let err = decode_csv("f.csv", csv, &s, false).expect_err("bad value");
        assert_eq!(err.line, 3, "{err}");
    }

    #[test]
    fn values_that_do_not_fit_their_column_are_errors() {
        let s = shape(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("n", DataType::Int32, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
        ]));
        for (line, want) in [
            (r#"{"id":1,"n":7.9}"#, "column n"),
            (r#"{"id":1.9,"n":1}"#, "column id"),
            (r#"{"id":1,"n":3000000000}"#, "out of range"),
            (r#"{"id":1,"d":"1.234"}"#, "scale"),
            (r#"{"id":1,"n":"x"}"#, "not an integer"),
        ] {
            let text = format!("{{\"id\":0}}\n{line}\n");
            let err = decode_json_lines("f.jsonl", &text, &s, false).expect_err(line);
            assert_eq!(err.line, 2, "{line}: {err}");
            assert!(err.reason.contains(want), "{line}: {err}");
        }
        let ok = "{\"id\":1,\"n\":7.0,\"d\":\"1.20\"}\n";
        decode_json_lines("f.jsonl", ok, &s, false).expect("integral float and exact decimal fit");
    }
}
