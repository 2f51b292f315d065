//! A minimal Avro binary encoder and object-container-file writer for Hudi's timeline metadata
//! (rollback plans and metadata; later compaction and clean plans).
//!
//! Data is built as [`Datum`] values that already carry union branch indexes and record fields in
//! schema order, so encoding needs no schema; the schema JSON goes into the container header.

/// An Avro value, in schema order.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `string`.
    String(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `array`.
    Array(Vec<Datum>),
    /// `map` (string keys).
    Map(Vec<(String, Datum)>),
    /// `record`: field values in schema order.
    Record(Vec<Datum>),
    /// A union value: branch index and value.
    Union(u32, Box<Datum>),
}

impl Datum {
    /// A string datum.
    pub fn str(s: impl Into<String>) -> Datum {
        Datum::String(s.into())
    }

    /// An array of strings.
    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Datum {
        Datum::Array(items.into_iter().map(|s| Datum::String(s.into())).collect())
    }

    /// Appends the binary encoding of this datum.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Datum::Null => {}
            Datum::Boolean(b) => out.push(u8::from(*b)),
            Datum::Int(i) => write_long(out, i64::from(*i)),
            Datum::Long(l) => write_long(out, *l),
            Datum::String(s) => write_bytes(out, s.as_bytes()),
            Datum::Bytes(b) => write_bytes(out, b),
            Datum::Array(items) => {
                if !items.is_empty() {
                    write_long(out, items.len() as i64);
                    items.iter().for_each(|d| d.encode(out));
                }
                write_long(out, 0);
            }
            Datum::Map(entries) => {
                if !entries.is_empty() {
                    write_long(out, entries.len() as i64);
                    for (k, v) in entries {
                        write_bytes(out, k.as_bytes());
                        v.encode(out);
                    }
                }
                write_long(out, 0);
            }
            Datum::Record(fields) => fields.iter().for_each(|d| d.encode(out)),
            Datum::Union(branch, d) => {
                write_long(out, i64::from(*branch));
                d.encode(out);
            }
        }
    }
}

/// Appends a zig-zag varint long.
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends length-prefixed bytes.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// An Avro object container file holding one datum, null codec, as Hudi writes timeline metadata.
pub fn container_file(schema_json: &str, datum: &Datum) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    Datum::Map(vec![(
        "avro.schema".into(),
        Datum::Bytes(schema_json.as_bytes().to_vec()),
    )])
    .encode(&mut out);
    let sync: [u8; 16] = *uuid_like_sync();
    out.extend_from_slice(&sync);
    let mut body = Vec::new();
    datum.encode(&mut body);
    write_long(&mut out, 1);
    write_bytes(&mut out, &body);
    out.extend_from_slice(&sync);
    out
}

fn uuid_like_sync() -> &'static [u8; 16] {
    // Any 16 bytes serve as the sync marker; a fixed one keeps files reproducible.
    b"lake-timeline-v1"
}

/// Hudi's `HoodieInstantInfo` record schema.
pub const INSTANT_INFO_SCHEMA: &str = r#"{"type":"record","name":"HoodieInstantInfo","namespace":"org.apache.hudi.avro.model","fields":[{"name":"commitTime","type":"string"},{"name":"action","type":"string"}]}"#;

/// Hudi's `HoodieRollbackPlan` schema (with `HoodieInstantInfo` inlined).
pub fn rollback_plan_schema() -> String {
    format!(
        r#"{{"type":"record","name":"HoodieRollbackPlan","namespace":"org.apache.hudi.avro.model","fields":[{{"name":"instantToRollback","type":["null",{INSTANT_INFO_SCHEMA}],"default":null}},{{"name":"RollbackRequests","type":["null",{{"type":"array","items":{{"type":"record","name":"HoodieRollbackRequest","fields":[{{"name":"partitionPath","type":"string"}},{{"name":"fileId","type":["null","string"],"default":null}},{{"name":"latestBaseInstant","type":["null","string"],"default":null}},{{"name":"filesToBeDeleted","type":{{"type":"array","items":"string"}},"default":[]}},{{"name":"logBlocksToBeDeleted","type":["null",{{"type":"map","values":"long"}}],"default":null}}]}}}}],"default":null}},{{"name":"version","type":["int","null"],"default":1}}]}}"#
    )
}

/// Hudi's `HoodieRollbackMetadata` schema (with `HoodieInstantInfo` inlined).
pub fn rollback_metadata_schema() -> String {
    format!(
        r#"{{"type":"record","name":"HoodieRollbackMetadata","namespace":"org.apache.hudi.avro.model","fields":[{{"name":"startRollbackTime","type":"string"}},{{"name":"timeTakenInMillis","type":"long"}},{{"name":"totalFilesDeleted","type":"int"}},{{"name":"commitsRollback","type":{{"type":"array","items":"string"}}}},{{"name":"partitionMetadata","type":{{"type":"map","values":{{"type":"record","name":"HoodieRollbackPartitionMetadata","fields":[{{"name":"partitionPath","type":"string"}},{{"name":"successDeleteFiles","type":{{"type":"array","items":"string"}}}},{{"name":"failedDeleteFiles","type":{{"type":"array","items":"string"}}}},{{"name":"rollbackLogFiles","type":["null",{{"type":"map","values":"long"}}],"default":null}},{{"name":"writtenLogFiles","type":["null",{{"type":"map","values":"long"}}],"default":null}}]}}}}}},{{"name":"version","type":["int","null"],"default":1}},{{"name":"instantsRollback","type":{{"type":"array","items":{INSTANT_INFO_SCHEMA_REF}}},"default":[]}}]}}"#
    )
}

const INSTANT_INFO_SCHEMA_REF: &str = r#""HoodieInstantInfo""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_longs_match_the_spec() {
        let enc = |v: i64| {
            let mut b = Vec::new();
            write_long(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
    }

    #[test]
    fn container_file_has_header_schema_and_one_block() {
        let schemas = [rollback_plan_schema(), rollback_metadata_schema()];
        for s in &schemas {
            serde_json::from_str::<serde_json::Value>(s).expect("schema is JSON");
        }
        let d = Datum::Record(vec![
            Datum::str("x"),
            Datum::Array(vec![]),
            Datum::Union(0, Box::new(Datum::Int(1))),
        ]);
        let f = container_file(&schemas[0], &d);
        assert!(f.starts_with(b"Obj\x01"));
        assert!(f.ends_with(uuid_like_sync()));
        let mut body = Vec::new();
        d.encode(&mut body);
        assert_eq!(body, [0x02, b'x', 0x00, 0x00, 0x02]);
    }
}

/// Hudi's `HoodieCleanerPlan` schema.
pub const CLEANER_PLAN_SCHEMA: &str = r#"{"type":"record","name":"HoodieCleanerPlan","namespace":"org.apache.hudi.avro.model","fields":[{"name":"earliestInstantToRetain","type":["null",{"type":"record","name":"HoodieActionInstant","fields":[{"name":"timestamp","type":"string"},{"name":"action","type":"string"},{"name":"state","type":"string"}]}],"default":null},{"name":"policy","type":"string"},{"name":"filesToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":"string"}}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"filePathsToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":{"type":"record","name":"HoodieCleanFileInfo","fields":[{"name":"filePath","type":["null","string"],"default":null},{"name":"isBootstrapBaseFile","type":["null","boolean"],"default":null}]}}}],"default":null},{"name":"partitionsToBeDeleted","type":["null",{"type":"array","items":"string"}],"default":null}]}"#;

/// Hudi's `HoodieCleanMetadata` schema (with `HoodieCleanPartitionMetadata` inlined).
pub const CLEAN_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieCleanMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"policy","type":"string","default":""},{"name":"startCleanTime","type":"string"},{"name":"timeTakenInMillis","type":"long"},{"name":"totalFilesDeleted","type":"int"},{"name":"earliestCommitToRetain","type":"string"},{"name":"lastCompletedCommitTimestamp","type":"string","default":""},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieCleanPartitionMetadata","fields":[{"name":"partitionPath","type":"string"},{"name":"policy","type":"string"},{"name":"deletePathPatterns","type":{"type":"array","items":"string"}},{"name":"successDeleteFiles","type":{"type":"array","items":"string"}},{"name":"failedDeleteFiles","type":{"type":"array","items":"string"}},{"name":"isPartitionDeleted","type":["null","boolean"],"default":null}]}}},{"name":"version","type":["int","null"],"default":1},{"name":"bootstrapPartitionMetadata","type":["null",{"type":"map","values":"HoodieCleanPartitionMetadata"}],"default":null}]}"#;

#[cfg(test)]
mod clean_schema_tests {
    #[test]
    fn clean_schemas_are_json() {
        for s in [super::CLEANER_PLAN_SCHEMA, super::CLEAN_METADATA_SCHEMA] {
            serde_json::from_str::<serde_json::Value>(s).expect("schema is JSON");
        }
    }
}
