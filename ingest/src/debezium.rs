//! Debezium MySQL change events (JSON converter, with or without the schema envelope).
//!
//! `op` c (create), r (snapshot read) and u (update) upsert the `after` image; d (delete) deletes by
//! the `before` image; a `null` value is a tombstone and is skipped. The source position
//! (`source.file`, `source.pos`, `source.row`) becomes the `_source_position` ordering column when
//! the table orders by it, so replays and out-of-order events resolve by binlog position.

use arrow::array::BooleanArray;
use lake_table::ChangeBatch;
use lake_table::config::SOURCE_POSITION_FIELD;
use serde_json::Value;

use crate::rows::{Decoded, TableShape, rows_to_batch, take_object};
use crate::{DecodeError, Result};

/// The sortable position of an event in the source: `{binlog file number}.{pos}.{row}`, zero padded,
/// or the Postgres LSN, or the event time, whichever the source block carries.
pub fn source_position(payload: &Value) -> Option<String> {
    let src = payload.get("source").unwrap_or(&Value::Null);
    let num = |v: Option<&Value>| {
        v.and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
    };
    if let (Some(file), Some(pos)) = (src.get("file").and_then(Value::as_str), num(src.get("pos")))
    {
        let seq = file
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let row = num(src.get("row")).unwrap_or(0);
        return Some(format!("{seq:012}.{pos:020}.{row:010}"));
    }
    if let Some(lsn) = num(src.get("lsn")) {
        return Some(format!("{lsn:020}"));
    }
    num(payload.get("ts_ms"))
        .or_else(|| num(src.get("ts_ms")))
        .map(|t| format!("{t:020}"))
}

/// Decodes JSON Lines of Debezium change-event values.
pub fn decode_debezium(source: &str, text: &str, shape: &TableShape) -> Result<Decoded> {
    let mut rows = Vec::new();
    let mut deletes = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| DecodeError::new(source, line_no, format!("malformed JSON: {e}")))?;
        match decode_event(v).map_err(|e| DecodeError::new(source, line_no, e))? {
            Event::Tombstone => skipped += 1,
            Event::Change {
                mut row,
                delete,
                position,
            } => {
                if shape.ordering_field.as_deref() == Some(SOURCE_POSITION_FIELD) {
                    let pos = position.ok_or_else(|| {
                        DecodeError::new(
                            source,
                            line_no,
                            "event has no source position (source.file/pos, lsn or ts_ms)",
                        )
                    })?;
                    row.insert(SOURCE_POSITION_FIELD.into(), Value::String(pos));
                }
                rows.push((line_no, Value::Object(row)));
                deletes.push(delete);
            }
        }
    }
    let batch = rows_to_batch(source, shape, &rows)?;
    Ok(Decoded {
        batch: ChangeBatch::new(batch, BooleanArray::from(deletes)),
        skipped,
    })
}

enum Event {
    Tombstone,
    Change {
        row: serde_json::Map<String, Value>,
        delete: bool,
        position: Option<String>,
    },
}

fn decode_event(v: Value) -> std::result::Result<Event, String> {
    let payload = match v {
        Value::Null => return Ok(Event::Tombstone),
        Value::Object(mut m) if m.contains_key("payload") && m.contains_key("schema") => {
            m.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    };
    if payload.is_null() {
        return Ok(Event::Tombstone);
    }
    let op = payload
        .get("op")
        .and_then(Value::as_str)
        .ok_or("not a Debezium change event: no \"op\" field")?
        .to_owned();
    let position = source_position(&payload);
    let (image, delete) = match op.as_str() {
        "c" | "r" | "u" => ("after", false),
        "d" => ("before", true),
        other => {
            return Err(format!(
                "unknown Debezium op {other:?} (expected c, r, u or d)"
            ));
        }
    };
    let mut payload = take_object(payload).ok_or("payload is not an object")?;
    let row = payload
        .remove(image)
        .and_then(take_object)
        .ok_or_else(|| format!("op {op:?} event has no {image:?} image"))?;
    Ok(Event::Change {
        row,
        delete,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> TableShape {
        TableShape {
            schema: None,
            key_fields: vec!["id".into()],
            ordering_field: Some(SOURCE_POSITION_FIELD.into()),
            hints: Vec::new(),
        }
    }

    #[test]
    fn envelope_and_bare_events_decode_alike() {
        let bare = r#"{"before":null,"after":{"id":1,"s":"a"},"source":{"file":"mysql-bin.000003","pos":154,"row":0},"op":"c"}"#;
        let wrapped = format!(r#"{{"schema":{{}},"payload":{bare}}}"#);
        let text = format!(
            "{bare}\n{wrapped}\nnull\n{}",
            r#"{"before":{"id":2,"s":"b"},"after":null,"source":{"file":"mysql-bin.000010","pos":4,"row":1},"op":"d"}"#
        );
        let d = decode_debezium("f.jsonl", &text, &shape()).expect("decodes");
        assert_eq!(d.skipped, 1);
        let b = &d.batch.rows;
        assert_eq!(b.num_rows(), 3);
        let del = d.batch.is_delete.expect("flags");
        assert_eq!(
            (0..3).map(|i| del.value(i)).collect::<Vec<_>>(),
            [false, false, true]
        );
        let pos = b.column_by_name(SOURCE_POSITION_FIELD).expect("pos");
        let pos = pos
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("strings");
        assert_eq!(pos.value(0), "000000000003.00000000000000000154.0000000000");
        assert!(pos.value(2) > pos.value(0));
    }

    #[test]
    fn bad_events_name_the_line() {
        for (text, want) in [
            (
                "{\"op\":\"c\",\"after\":{\"id\":1},\"ts_ms\":1}\n{not json",
                "f:2: malformed JSON",
            ),
            (
                "{\"op\":\"x\",\"after\":{\"id\":1}}",
                "f:1: unknown Debezium op",
            ),
            (
                "{\"op\":\"c\",\"after\":{\"s\":1},\"source\":{\"file\":\"a.1\",\"pos\":1}}",
                "f:1: record key field \"id\"",
            ),
            (
                "{\"op\":\"d\",\"after\":null,\"source\":{\"file\":\"a.1\",\"pos\":1}}",
                "f:1: op \"d\" event has no \"before\"",
            ),
        ] {
            let err = decode_debezium("f", text, &shape())
                .expect_err(text)
                .to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_line() {
        let schema = arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, true),
        ]);
        let shape = TableShape {
            schema: Some(std::sync::Arc::new(schema)),
            ..shape()
        };
        let src = r#""source":{"file":"a.1","pos":1}"#;
        let text = format!(
            "{{\"op\":\"c\",\"after\":{{\"id\":1,\"n\":2}},{src}}}\n{{\"op\":\"c\",\"after\":{{\"id\":2,\"n\":\"x\"}},{src}}}"
        );
        let err = decode_debezium("f", &text, &shape)
            .expect_err("bad type")
            .to_string();
        assert!(err.starts_with("f:2:"), "{err}");
    }
}
