//! Debezium MySQL change events (JSON converter, with or without the schema envelope).
//!
//! `op` c (create), r (snapshot read) and u (update) upsert the `after` image; d (delete) deletes by
//! the `before` image; a `null` value is a tombstone and is skipped. The source position
//! (`source.file`, `source.pos`, `source.row`) becomes the `_source_position` ordering column when
//! the table orders by it, so replays and out-of-order events resolve by binlog position.

use arrow::array::BooleanArray;
use lake_table::ChangeBatch;
use serde_json::Value;

use crate::config::DecoderKind;
use crate::messages::{DecodeSpec, Message, decode_messages};
use crate::rows::{Decoded, TableShape, rows_to_batch};
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
    position_text(
        src.get("file").and_then(Value::as_str),
        num(src.get("pos")),
        num(src.get("row")),
        num(src.get("lsn")),
        num(payload.get("ts_ms")).or_else(|| num(src.get("ts_ms"))),
    )
}

/// The position text of [`source_position`] from the source block's fields (`ts_ms`: the event's,
/// else the source block's).
pub(crate) fn position_text(
    file: Option<&str>,
    pos: Option<u64>,
    row: Option<u64>,
    lsn: Option<u64>,
    ts_ms: Option<u64>,
) -> Option<String> {
    let mut out = String::new();
    write_position(&mut out, file, pos, row, lsn, ts_ms).then_some(out)
}

/// Appends [`position_text`] to `out`; false (nothing appended) when the fields give no position.
pub(crate) fn write_position(
    out: &mut String,
    file: Option<&str>,
    pos: Option<u64>,
    row: Option<u64>,
    lsn: Option<u64>,
    ts_ms: Option<u64>,
) -> bool {
    if let (Some(file), Some(pos)) = (file, pos) {
        let seq = file
            .rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        push_padded(out, seq, 12);
        out.push('.');
        push_padded(out, pos, 20);
        out.push('.');
        push_padded(out, row.unwrap_or(0), 10);
        return true;
    }
    match lsn.or(ts_ms) {
        Some(v) => {
            push_padded(out, v, 20);
            true
        }
        None => false,
    }
}

/// Appends `v` in decimal, zero padded to `width` digits (as `format!("{v:0width$}")`).
pub(crate) fn push_padded(out: &mut String, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    out.extend(digits[start..].iter().map(|d| char::from(*d)));
}

/// Decodes JSON Lines of Debezium change-event values: each line is decoded exactly as a Kafka
/// message value is by `lake ingest` (one decoder, the same logical types and partition moves);
/// errors name the line.
pub fn decode_debezium(source: &str, bytes: &[u8], shape: &TableShape) -> Result<Decoded> {
    let mut msgs = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        if std::str::from_utf8(trimmed).is_err() {
            return Err(DecodeError::new(
                source,
                line_no,
                "the line is not valid UTF-8",
            ));
        }
        msgs.push(Message {
            topic: source.to_owned(),
            partition: 0,
            offset: line_no as i64,
            key: None,
            value: Some(trimmed.to_vec()),
        });
    }
    let spec = DecodeSpec {
        kind: DecoderKind::Debezium,
        shape: shape.clone(),
        message_key_field: None,
        ..Default::default()
    };
    let decoded = decode_messages(&msgs, &spec, false)
        .map_err(|e| DecodeError::new(source, e.offset as u64, e.reason))?;
    let batch = match decoded.batch {
        Some(b) => b,
        None => ChangeBatch::new(
            rows_to_batch(source, shape, &[])?,
            BooleanArray::from(Vec::<bool>::new()),
        ),
    };
    Ok(Decoded {
        batch,
        skipped: decoded.tombstones,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> TableShape {
        TableShape {
            schema: None,
            key_fields: vec!["id".into()],
            ordering_field: Some(lake_table::config::SOURCE_POSITION_FIELD.into()),
            ..Default::default()
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
        let d = decode_debezium("f.jsonl", text.as_bytes(), &shape()).expect("decodes");
        assert_eq!(d.skipped, 1);
        let b = &d.batch.rows;
        assert_eq!(b.num_rows(), 3);
        let del = d.batch.is_delete.expect("flags");
        assert_eq!(
            (0..3).map(|i| del.value(i)).collect::<Vec<_>>(),
            [false, false, true]
        );
        let pos = b
            .column_by_name(lake_table::config::SOURCE_POSITION_FIELD)
            .expect("pos");
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
            let err = decode_debezium("f", text.as_bytes(), &shape())
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
        let err = decode_debezium("f", text.as_bytes(), &shape)
            .expect_err("bad type")
            .to_string();
        assert!(err.starts_with("f:2:"), "{err}");
    }

    #[test]
    fn padded_positions_equal_formatted_ones() {
        let mut values = vec![
            0u64,
            1,
            9,
            10,
            99,
            100,
            u64::MAX,
            u64::MAX / 10,
            10u64.pow(19),
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            for width in [0, 1, 10, 12, 20] {
                let mut out = String::from("p");
                push_padded(&mut out, v, width);
                assert_eq!(out, format!("p{v:0width$}"), "{v} at width {width}");
            }
        }
        assert_eq!(
            position_text(Some("mysql-bin.000042"), Some(7), Some(3), None, None).as_deref(),
            Some("000000000042.00000000000000000007.0000000003")
        );
        assert_eq!(
            position_text(None, None, None, Some(5), Some(6)).as_deref(),
            Some("00000000000000000005")
        );
        assert_eq!(position_text(None, Some(1), None, None, None), None);
    }
}
