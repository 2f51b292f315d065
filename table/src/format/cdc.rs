//! Hudi's CDC log files (`hoodie.table.cdc.enabled`): the supplemental change log a copy-on-write
//! commit writes next to each base file it rewrites, `.<fileId>_<instant>.log.1_<token>.cdc`.
//!
//! The file is a log file of CDC data blocks (type 6): an Avro data block whose header carries the
//! commit (`INSTANT_TIME`) and the CDC record schema (`SCHEMA`). The record depends on the logging
//! mode ([`CdcMode`]), as `HoodieCDCUtils` defines it — all fields nullable:
//! - `OP_KEY_ONLY`: `op`, `record_key`;
//! - `DATA_BEFORE`: `op`, `record_key`, `before`;
//! - `DATA_BEFORE_AFTER`: `op`, `ts_ms` (the commit's instant time), `before`, `after`.
//!
//! `op` is `i`, `u` or `d`; the images are records over the table's data columns (no meta columns),
//! the table's record type (`<table>_record` in `hoodie.<table>`), defined in `before` and referenced
//! by name in `after`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use lake_timeline::InstantTime;
use serde_json::{Value, json};

use crate::avro_block::{decode_data_block, encode_data_block};
use crate::changes::{AFTER, BEFORE, KEY, OP, TS};
use crate::config::CdcMode;
use crate::log_format::{self, BlockType, LogBlock, ReadBlock, header};
use crate::schema::avro_schema_json;
use crate::{Error, Result};

/// The images' fields: the table's data columns, all nullable.
pub fn image_fields(data: &Schema) -> Fields {
    data.fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect()
}

/// The Arrow form of the CDC record of `mode` over the table's data columns.
pub fn cdc_schema(mode: CdcMode, data: &Schema) -> SchemaRef {
    let image = DataType::Struct(image_fields(data));
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let fields = match mode {
        CdcMode::OpKeyOnly => vec![s(OP), s(KEY)],
        CdcMode::DataBefore => vec![s(OP), s(KEY), Field::new(BEFORE, image, true)],
        CdcMode::DataBeforeAfter => vec![
            s(OP),
            s(TS),
            Field::new(BEFORE, image.clone(), true),
            Field::new(AFTER, image, true),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// The Avro schema (JSON text) of the CDC record of `mode`, as the block header carries it.
pub fn cdc_schema_json(mode: CdcMode, data: &Schema, table: &str) -> Result<String> {
    let record: Value =
        serde_json::from_str(&avro_schema_json(&Schema::new(image_fields(data)), table)?).map_err(
            |e| Error::Schema {
                reason: format!("table {table}: its Avro schema is not JSON: {e}"),
            },
        )?;
    let namespace = format!("hoodie.{table}");
    let string =
        |n: &str| json!({"name": n, "type": ["null", "string"], "default": null, "doc": ""});
    let image =
        |n: &str, t: Value| json!({"name": n, "type": ["null", t], "default": null, "doc": ""});
    let reference = format!("{namespace}.{table}_record");
    let fields = match mode {
        CdcMode::OpKeyOnly => vec![string(OP), string(KEY)],
        CdcMode::DataBefore => vec![string(OP), string(KEY), image(BEFORE, record)],
        CdcMode::DataBeforeAfter => vec![
            string(OP),
            string(TS),
            image(BEFORE, record),
            image(AFTER, json!(reference)),
        ],
    };
    let name = if mode == CdcMode::OpKeyOnly {
        "Record"
    } else {
        "CDC"
    };
    Ok(
        json!({"type": "record", "name": name, "namespace": namespace, "fields": fields})
            .to_string(),
    )
}

/// The bytes of a CDC log file of one block holding `rows` (in the [`cdc_schema`] of `mode`),
/// written by the commit `instant`.
pub fn encode_cdc_log(
    instant: InstantTime,
    mode: CdcMode,
    data: &Schema,
    table: &str,
    rows: &RecordBatch,
) -> Result<Vec<u8>> {
    let block = LogBlock {
        block_type: BlockType::CdcData,
        header: BTreeMap::from([
            (header::INSTANT_TIME, instant.to_string()),
            (header::SCHEMA, cdc_schema_json(mode, data, table)?),
        ]),
        content: Bytes::from(encode_data_block(rows)?),
        footer: BTreeMap::new(),
    };
    Ok(block.encode())
}

/// The records of every CDC block of a CDC log file, one batch per block (each in the schema its
/// header gives). A file with a corrupt stretch or a block of another type is an error naming
/// `path`: a change log that cannot be read whole cannot be trusted.
pub fn decode_cdc_log(path: &str, bytes: &Bytes) -> Result<Vec<RecordBatch>> {
    let damaged = |reason: String| Error::Damaged {
        path: path.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for b in log_format::read_blocks(bytes) {
        let block = match b {
            ReadBlock::Block { block, .. } => block,
            ReadBlock::Corrupt { offset, len } => {
                return Err(damaged(format!(
                    "{len} corrupt bytes at offset {offset} of a CDC log"
                )));
            }
        };
        if block.block_type != BlockType::CdcData {
            return Err(damaged(format!(
                "a {:?} block in a CDC log (only CDC data blocks belong there)",
                block.block_type
            )));
        }
        let schema = block
            .header_value(header::SCHEMA)
            .ok_or_else(|| damaged("a CDC block without a schema in its header".into()))?;
        let batch = decode_data_block(schema, &block.content)
            .map_err(|e| damaged(format!("CDC block: {e}")))?;
        out.push(batch);
    }
    Ok(out)
}

/// The column `name` of a decoded CDC block as a struct of `fields` (by name; columns the block
/// lacks are null, values cast to the field's type) — the block's images follow the schema the
/// table had when the commit wrote them.
pub fn image_column(batch: &RecordBatch, name: &str, fields: &Fields) -> Result<Option<ArrayRef>> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let Some(s) = col.as_any().downcast_ref::<arrow::array::StructArray>() else {
        return Err(Error::Schema {
            reason: format!("the CDC column {name} is not a record"),
        });
    };
    let columns = fields
        .iter()
        .map(|f| match s.column_by_name(f.name()) {
            Some(c) => Ok(arrow::compute::cast(c, f.data_type())?),
            None => Ok(arrow::array::new_null_array(f.data_type(), s.len())),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(Some(Arc::new(arrow::array::StructArray::try_new(
        fields.clone(),
        columns,
        s.nulls().cloned(),
    )?)))
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array, StringArray, StructArray};
    use arrow::buffer::NullBuffer;

    use super::*;

    fn data() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ])
    }

    fn image(ids: &[Option<i64>]) -> ArrayRef {
        let data = data();
        let fields = image_fields(&data);
        let n = ids.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from_iter(
                ids.iter().map(|i| i.map(|i| format!("n{i}"))),
            )),
            Arc::new(
                arrow::array::TimestampMicrosecondArray::from(
                    ids.iter()
                        .map(|i| i.map(|i| i * 1_000_000))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ];
        let valid = NullBuffer::from(ids.iter().map(Option::is_some).collect::<Vec<_>>());
        assert_eq!(columns[0].len(), n);
        Arc::new(StructArray::try_new(fields, columns, Some(valid)).expect("struct"))
    }

    /// Every mode's records survive a trip through the log-file bytes, images included, and the
    /// header names the commit and a schema with the image record defined once.
    #[test]
    fn cdc_logs_round_trip_in_every_mode() {
        let t: InstantTime = "20261203010203456".parse().expect("t");
        let ops = Arc::new(StringArray::from(vec!["u", "d", "i"])) as ArrayRef;
        let keys = Arc::new(StringArray::from(vec!["1", "2", "3"])) as ArrayRef;
        let ts = Arc::new(StringArray::from(vec![t.to_string(); 3])) as ArrayRef;
        let before = image(&[Some(1), Some(2), None]);
        let after = image(&[Some(1), None, Some(3)]);
        for mode in [
            CdcMode::OpKeyOnly,
            CdcMode::DataBefore,
            CdcMode::DataBeforeAfter,
        ] {
            let columns = match mode {
                CdcMode::OpKeyOnly => vec![ops.clone(), keys.clone()],
                CdcMode::DataBefore => vec![ops.clone(), keys.clone(), before.clone()],
                CdcMode::DataBeforeAfter => {
                    vec![ops.clone(), ts.clone(), before.clone(), after.clone()]
                }
            };
            let rows = RecordBatch::try_new(cdc_schema(mode, &data()), columns).expect("rows");
            let bytes =
                Bytes::from(encode_cdc_log(t, mode, &data(), "orders", &rows).expect("enc"));
            let blocks: Vec<LogBlock> = log_format::read_blocks(&bytes)
                .into_iter()
                .filter_map(|b| match b {
                    ReadBlock::Block { block, .. } => Some(block),
                    ReadBlock::Corrupt { .. } => None,
                })
                .collect();
            assert_eq!(blocks.len(), 1);
            assert_eq!(blocks[0].block_type.ordinal(), 6);
            assert_eq!(
                blocks[0].header_value(header::INSTANT_TIME),
                Some("20261203010203456")
            );
            let schema = blocks[0].header_value(header::SCHEMA).expect("schema");
            if mode == CdcMode::DataBeforeAfter {
                assert_eq!(schema.matches("\"orders_record\"").count(), 1, "{schema}");
                assert!(
                    schema.contains("\"hoodie.orders.orders_record\""),
                    "{schema}"
                );
            }
            let back = decode_cdc_log("f.cdc", &bytes).expect("decode");
            assert_eq!(back.len(), 1);
            let b = &back[0];
            assert_eq!(b.num_rows(), 3);
            assert_eq!(
                b.column_by_name(OP).expect("op").as_string::<i32>(),
                ops.as_string::<i32>()
            );
            let fields = image_fields(&data());
            for (name, want) in [(BEFORE, &before), (AFTER, &after)] {
                let got = image_column(b, name, &fields).expect("image");
                let expected = match (mode, name) {
                    (CdcMode::OpKeyOnly, _) | (CdcMode::DataBefore, AFTER) => None,
                    _ => Some(want.clone()),
                };
                assert_eq!(
                    got.as_ref().map(|g| g.to_data()),
                    expected.map(|e| e.to_data())
                );
            }
        }
    }

    /// A block as Hudi 0.14 writes it in `OP_KEY_ONLY` mode — record `Record` without namespace,
    /// fields `["string", "null"]` (the value branch first) — decodes.
    #[test]
    fn hudi_op_key_only_blocks_decode() {
        let schema = r#"{"type":"record","name":"Record","fields":[{"name":"op","type":["string","null"],"doc":""},{"name":"record_key","type":["string","null"],"doc":""}]}"#;
        let mut content = Vec::new();
        content.extend_from_slice(&3i32.to_be_bytes());
        content.extend_from_slice(&2i32.to_be_bytes());
        for (op, key) in [("u", "id:7"), ("d", "id:9")] {
            // Branch 0 (string), then the zig-zag length and the bytes, for both fields.
            let mut rec = vec![0u8, (op.len() as u8) << 1];
            rec.extend_from_slice(op.as_bytes());
            rec.extend_from_slice(&[0u8, (key.len() as u8) << 1]);
            rec.extend_from_slice(key.as_bytes());
            content.extend_from_slice(&(rec.len() as i32).to_be_bytes());
            content.extend_from_slice(&rec);
        }
        let block = LogBlock {
            block_type: BlockType::CdcData,
            header: BTreeMap::from([
                (header::INSTANT_TIME, "20240418173551906".to_owned()),
                (header::SCHEMA, schema.to_owned()),
            ]),
            content: Bytes::from(content),
            footer: BTreeMap::new(),
        };
        let back = decode_cdc_log("h.cdc", &Bytes::from(block.encode())).expect("decode");
        let b = &back[0];
        let col = |n: &str| {
            b.column_by_name(n)
                .expect(n)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(col(OP), ["u", "d"]);
        assert_eq!(col(KEY), ["id:7", "id:9"]);
    }

    /// A damaged CDC log is an error naming it, never a shorter feed.
    #[test]
    fn a_damaged_cdc_log_is_an_error_naming_it() {
        let t: InstantTime = "20261203010203456".parse().expect("t");
        let rows = RecordBatch::try_new(
            cdc_schema(CdcMode::OpKeyOnly, &data()),
            vec![
                Arc::new(StringArray::from(vec!["i"])),
                Arc::new(StringArray::from(vec!["1"])),
            ],
        )
        .expect("rows");
        let mut bytes = encode_cdc_log(t, CdcMode::OpKeyOnly, &data(), "t", &rows).expect("enc");
        bytes.extend_from_slice(b"#HUDI#garbage");
        let err = decode_cdc_log("p/x.cdc", &Bytes::from(bytes))
            .expect_err("damaged")
            .to_string();
        assert!(err.contains("p/x.cdc"), "{err}");
    }
}
