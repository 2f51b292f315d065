//! Record keys, partition paths and bucket ids, computed the way Hudi's key generators and bucket
//! index do, so that Java writers and lake agree on where every record lives.

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;

use crate::config::{DEFAULT_PARTITION, KeyGenerator, TableConfig};
use crate::{Error, Result};

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::Schema {
        reason: format!("the batch has no column {name:?}"),
    })
}

fn as_strings(col: &ArrayRef) -> Result<StringArray> {
    let c = cast(col, &DataType::Utf8)?;
    Ok(c.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::new_null(col.len())))
}

/// The record key of every row; a null or empty key is [`Error::InvalidRecord`].
pub fn record_keys(batch: &RecordBatch, config: &TableConfig) -> Result<Vec<String>> {
    let fields = &config.record_key_fields;
    if fields.is_empty() {
        return Err(Error::Unsupported(
            "the table defines no record key (hoodie.table.recordkey.fields); lake writes keyed tables only".into(),
        ));
    }
    let cols = fields
        .iter()
        .map(|f| column(batch, f).and_then(as_strings))
        .collect::<Result<Vec<_>>>()?;
    let complex = config.key_generator.encodes_field_names(fields.len());
    let mut keys = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let missing = |f: &str| Error::InvalidRecord {
            row,
            reason: format!("record key field {f:?} is null or empty"),
        };
        if !complex {
            let v = cols[0]
                .is_valid(row)
                .then(|| cols[0].value(row))
                .filter(|v| !v.is_empty());
            keys.push(v.ok_or_else(|| missing(&fields[0]))?.to_owned());
            continue;
        }
        let mut key = String::new();
        let mut any = false;
        for (f, c) in fields.iter().zip(&cols) {
            if !key.is_empty() {
                key.push(',');
            }
            key.push_str(f);
            key.push(':');
            match c.is_valid(row).then(|| c.value(row)) {
                Some("") => key.push_str("__empty__"),
                Some(v) => {
                    any = true;
                    key.push_str(v);
                }
                None => key.push_str("__null__"),
            }
        }
        if !any {
            return Err(missing(&fields.join(",")));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// The partition path of every row (`""` for a non-partitioned table).
pub fn partition_paths(batch: &RecordBatch, config: &TableConfig) -> Result<Vec<String>> {
    let fields = &config.partition_fields;
    if fields.is_empty() || config.key_generator == KeyGenerator::NonPartitioned {
        return Ok(vec![String::new(); batch.num_rows()]);
    }
    if !matches!(
        config.key_generator,
        KeyGenerator::Simple | KeyGenerator::Complex
    ) {
        return Err(Error::Unsupported(format!(
            "writing with key generator {:?}",
            config.key_generator
        )));
    }
    let cols = fields
        .iter()
        .map(|f| column(batch, f).and_then(as_strings))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut p = String::new();
        for (f, c) in fields.iter().zip(&cols) {
            if !p.is_empty() {
                p.push('/');
            }
            let v = c
                .is_valid(row)
                .then(|| c.value(row))
                .filter(|v| !v.is_empty());
            let v = match v {
                Some(v) if config.url_encode_partitions => escape_path_name(v),
                Some(v) if v.contains('/') => {
                    return Err(Error::InvalidRecord {
                        row,
                        reason: format!("partition value {v:?} of {f:?} contains '/'"),
                    });
                }
                Some(v) => v.to_owned(),
                None => DEFAULT_PARTITION.to_owned(),
            };
            if config.hive_style_partitioning {
                p.push_str(f);
                p.push('=');
            }
            p.push_str(&v);
        }
        out.push(p);
    }
    Ok(out)
}

/// Hive's `escapePathName`: percent-encodes characters unsafe in a path segment.
fn escape_path_name(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if (c as u32) < 0x20
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\x7f'
                    | '{'
                    | '['
                    | ']'
                    | '^'
            )
        {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Hudi's bucket of a record key: `(List<String>.hashCode() & Integer.MAX_VALUE) % buckets`, with
/// the hash fields picked out of a complex key (`f1:v1,f2:v2`).
pub fn bucket_id(record_key: &str, hash_fields: &[String], buckets: u32) -> u32 {
    let mut h: i32 = 1;
    if !record_key.contains(':') {
        h = h
            .wrapping_mul(31)
            .wrapping_add(java_string_hash(record_key));
    } else {
        for f in hash_fields {
            let v = record_key
                .split(',')
                .filter_map(|p| p.split_once(':'))
                .find(|(k, _)| k == f)
                .map(|(_, v)| v);
            h = h
                .wrapping_mul(31)
                .wrapping_add(v.map_or(0, java_string_hash));
        }
    }
    ((h & i32::MAX) as u32) % buckets.max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int32Array;
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::config::TableType;

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("é"), 233);
        // List.of("1").hashCode() = 31 + 49 = 80
        assert_eq!(bucket_id("1", &["id".into()], 1000), 80);
        assert_eq!(bucket_id("id:1,name:a", &["id".into()], 1000), 80);
    }

    #[test]
    fn keys_and_partitions_follow_the_key_generators() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("p", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), Some(2)])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int32Array::from(vec![Some(10), None])),
            ],
        )
        .expect("batch");
        let simple = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["p".into()],
            None,
            Some(1),
        )
        .expect("cfg");
        assert_eq!(record_keys(&batch, &simple).expect("keys"), ["1", "2"]);
        assert_eq!(
            partition_paths(&batch, &simple).expect("parts"),
            ["p=10", "p=__HIVE_DEFAULT_PARTITION__"]
        );
        let complex = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into(), "name".into()],
            vec!["p".into(), "name".into()],
            None,
            Some(1),
        )
        .expect("cfg");
        assert_eq!(
            record_keys(&batch, &complex).expect("keys"),
            ["id:1,name:a", "id:2,name:__null__"]
        );
        assert_eq!(
            partition_paths(&batch, &complex).expect("parts")[0],
            "p=10/name=a"
        );
        let by_name = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["name".into()],
            vec![],
            None,
            Some(1),
        )
        .expect("cfg");
        let err = record_keys(&batch, &by_name).expect_err("null key");
        assert!(matches!(err, Error::InvalidRecord { row: 1, .. }), "{err}");
    }
}
