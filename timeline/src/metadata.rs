//! Commit metadata (`HoodieCommitMetadata`, `HoodieReplaceCommitMetadata`): partition → write stats,
//! extra metadata (the Avro schema, the source checkpoint), the operation type, and for replace
//! commits the replaced file ids. Table version 6 writes it as JSON (Jackson); timeline layout 2
//! (versions 8/9) as an Avro object container file holding one record, read through [`crate::wire`]
//! and resolved by field name, as Java's readers resolve it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Extra-metadata key of the table's Avro schema (without meta fields).
pub const SCHEMA_KEY: &str = "schema";
/// Extra-metadata key under which Hudi Streamer (and lake ingest) store the source checkpoint.
pub const CHECKPOINT_KEY: &str = "deltastreamer.checkpoint.key";

/// The metadata of a completed commit, deltacommit or replacecommit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitMetadata {
    /// Write stats of every file written, by partition path.
    #[serde(default)]
    pub partition_to_write_stats: BTreeMap<String, Vec<WriteStat>>,
    /// Whether this commit completes a compaction.
    #[serde(default)]
    pub compacted: bool,
    /// Free-form metadata: `schema`, the source checkpoint, and so on.
    #[serde(default)]
    pub extra_metadata: BTreeMap<String, String>,
    /// Hudi's `WriteOperationType` name, e.g. `UPSERT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_type: Option<String>,
    /// File groups replaced by a replacecommit, by partition path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partition_to_replace_file_ids: BTreeMap<String, Vec<String>>,
}

impl CommitMetadata {
    /// The Avro schema (JSON) recorded with the commit, if any.
    pub fn schema(&self) -> Option<&str> {
        self.extra_metadata
            .get(SCHEMA_KEY)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The source checkpoint recorded with the commit, if any.
    pub fn checkpoint(&self) -> Option<&str> {
        self.extra_metadata.get(CHECKPOINT_KEY).map(String::as_str)
    }

    /// Every write stat, with its partition.
    pub fn write_stats(&self) -> impl Iterator<Item = &WriteStat> {
        self.partition_to_write_stats.values().flatten()
    }

    /// Serializes as pretty JSON, as Hudi does.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing plain maps, strings and numbers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses the JSON form; an empty file is empty metadata.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(bytes)
    }

    /// Parses the form timeline layout 2 writes: an Avro object container file with one
    /// `HoodieCommitMetadata` (or `HoodieReplaceCommitMetadata`) record. An empty file is empty
    /// metadata, and JSON (instants Hudi 1.x flags as legacy) is accepted too.
    pub fn from_avro_bytes(bytes: &[u8]) -> Result<Self, String> {
        let text_start = bytes.iter().find(|b| !b.is_ascii_whitespace());
        match text_start {
            None => return Ok(Self::default()),
            Some(b'{') => return Self::from_json_bytes(bytes).map_err(|e| e.to_string()),
            Some(_) => {}
        }
        // Read as replace metadata, resolved against whichever of the two the file holds (commit
        // metadata then has no replaced file groups).
        let wire = crate::wire::read_container_by::<crate::wire::ReplaceCommitMetadata>(
            bytes,
            |writer| {
                if writer.ends_with("HoodieReplaceCommitMetadata") {
                    crate::wire::replace_metadata_schema()
                } else {
                    crate::wire::COMMIT_METADATA_SCHEMA
                }
            },
        )?;
        let wire = wire.ok_or("the Avro container holds no record")?;
        Ok(Self::from_wire(wire))
    }

    /// The domain form of Hudi's Avro commit (or replace commit) metadata.
    pub fn from_wire(w: crate::wire::ReplaceCommitMetadata) -> Self {
        Self {
            partition_to_write_stats: w
                .partition_to_write_stats
                .unwrap_or_default()
                .into_iter()
                .map(|(p, stats)| (p, stats.into_iter().map(WriteStat::from_wire).collect()))
                .collect(),
            compacted: false,
            extra_metadata: w.extra_metadata.unwrap_or_default(),
            operation_type: w.operation_type,
            partition_to_replace_file_ids: w.partition_to_replace_file_ids.unwrap_or_default(),
        }
    }

    /// Hudi's Avro form of this metadata (`HoodieCommitMetadata`, without replaced file groups).
    pub fn to_wire(&self) -> crate::wire::CommitMetadata {
        crate::wire::CommitMetadata {
            partition_to_write_stats: Some(
                self.partition_to_write_stats
                    .iter()
                    .map(|(p, stats)| (p.clone(), stats.iter().map(WriteStat::to_wire).collect()))
                    .collect(),
            ),
            extra_metadata: Some(self.extra_metadata.clone()),
            version: Some(1),
            operation_type: self.operation_type.clone(),
        }
    }

    /// Hudi's Avro form of this metadata as `HoodieReplaceCommitMetadata`.
    pub fn to_replace_wire(&self) -> crate::wire::ReplaceCommitMetadata {
        let c = self.to_wire();
        crate::wire::ReplaceCommitMetadata {
            partition_to_write_stats: c.partition_to_write_stats,
            extra_metadata: c.extra_metadata,
            version: c.version,
            operation_type: c.operation_type,
            partition_to_replace_file_ids: Some(self.partition_to_replace_file_ids.clone()),
        }
    }
}

/// Statistics of one file written by a commit (`HoodieWriteStat`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WriteStat {
    /// The file group id.
    pub file_id: String,
    /// Path of the written file relative to the table root.
    pub path: Option<String>,
    /// Change-data-capture stats (unused by lake).
    pub cdc_stats: Option<serde_json::Value>,
    /// The previous base instant of the file group, or `"null"` for a new file group.
    pub prev_commit: Option<String>,
    /// Records written to the file.
    pub num_writes: i64,
    /// Records deleted.
    pub num_deletes: i64,
    /// Records updated.
    pub num_update_writes: i64,
    /// Records inserted.
    pub num_inserts: i64,
    /// Bytes written.
    pub total_write_bytes: i64,
    /// Records that failed to write.
    pub total_write_errors: i64,
    /// Temporary path (unused).
    pub temp_path: Option<String>,
    /// The partition path.
    pub partition_path: Option<String>,
    /// Log records read while compacting.
    pub total_log_records: i64,
    /// Log files compacted.
    pub total_log_files_compacted: i64,
    /// Bytes of logs compacted.
    pub total_log_size_compacted: i64,
    /// Records updated by compaction.
    pub total_updated_records_compacted: i64,
    /// Log blocks read.
    pub total_log_blocks: i64,
    /// Corrupt log blocks seen.
    pub total_corrupt_log_block: i64,
    /// Rollback blocks seen.
    pub total_rollback_blocks: i64,
    /// Size of the written file.
    pub file_size_in_bytes: i64,
    /// Smallest event time (unused).
    pub min_event_time: Option<i64>,
    /// Largest event time (unused).
    pub max_event_time: Option<i64>,
    /// Timings of the write.
    pub runtime_stats: Option<RuntimeStats>,
    /// MOR: version of the log file appended to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_version: Option<i64>,
    /// MOR: offset in the log file where this write began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_offset: Option<i64>,
    /// MOR: base file of the slice appended to ("" if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_file: Option<String>,
    /// MOR: log files of the slice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_files: Option<Vec<String>>,
}

impl WriteStat {
    fn from_wire(w: crate::wire::WriteStat) -> Self {
        Self {
            file_id: w.file_id.unwrap_or_default(),
            path: w.path,
            prev_commit: w.prev_commit,
            num_writes: w.num_writes.unwrap_or(0),
            num_deletes: w.num_deletes.unwrap_or(0),
            num_update_writes: w.num_update_writes.unwrap_or(0),
            num_inserts: w.num_inserts.unwrap_or(0),
            total_write_bytes: w.total_write_bytes.unwrap_or(0),
            total_write_errors: w.total_write_errors.unwrap_or(0),
            partition_path: w.partition_path,
            total_log_records: w.total_log_records.unwrap_or(0),
            total_log_files_compacted: w.total_log_files.unwrap_or(0),
            total_updated_records_compacted: w.total_updated_records_compacted.unwrap_or(0),
            total_log_blocks: w.total_log_blocks.unwrap_or(0),
            total_corrupt_log_block: w.total_corrupt_log_block.unwrap_or(0),
            total_rollback_blocks: w.total_rollback_blocks.unwrap_or(0),
            file_size_in_bytes: w.file_size_in_bytes.unwrap_or(0),
            cdc_stats: w.cdc_stats.filter(|m| !m.is_empty()).map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k, v.into())).collect())
            }),
            ..Default::default()
        }
    }

    fn to_wire(&self) -> crate::wire::WriteStat {
        crate::wire::WriteStat {
            file_id: Some(self.file_id.clone()),
            path: self.path.clone(),
            prev_commit: self.prev_commit.clone(),
            num_writes: Some(self.num_writes),
            num_deletes: Some(self.num_deletes),
            num_update_writes: Some(self.num_update_writes),
            total_write_bytes: Some(self.total_write_bytes),
            total_write_errors: Some(self.total_write_errors),
            partition_path: self.partition_path.clone(),
            total_log_records: Some(self.total_log_records),
            total_log_files: Some(self.total_log_files_compacted),
            total_updated_records_compacted: Some(self.total_updated_records_compacted),
            num_inserts: Some(self.num_inserts),
            total_log_blocks: Some(self.total_log_blocks),
            total_corrupt_log_block: Some(self.total_corrupt_log_block),
            total_rollback_blocks: Some(self.total_rollback_blocks),
            file_size_in_bytes: Some(self.file_size_in_bytes),
            cdc_stats: self
                .cdc_stats
                .as_ref()
                .and_then(|v| v.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0)))
                        .collect()
                }),
        }
    }
}

/// Timings of one file write, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeStats {
    /// Time spent reading.
    pub total_scan_time: i64,
    /// Time spent merging updates.
    pub total_upsert_time: i64,
    /// Time spent writing new files.
    pub total_create_time: i64,
}

/// Runtime stats of a file write: `scan_ms` reading, `merge_ms` merging or creating.
pub fn metadata_runtime(scan_ms: i64, merge_ms: i64, created: bool) -> RuntimeStats {
    RuntimeStats {
        total_scan_time: scan_ms,
        total_upsert_time: if created { 0 } else { merge_ms },
        total_create_time: if created { merge_ms } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout-2 replacecommit as Hudi 1.x writes it: an Avro container with one record, unions
    /// with null everywhere, `version` written as null, fields lake does not know.
    #[test]
    fn commit_metadata_reads_hudi_1x_avro() {
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"HoodieReplaceCommitMetadata","namespace":"org.apache.hudi.avro.model","fields":[
              {"name":"partitionToWriteStats","type":["null",{"type":"map","values":{"type":"array","items":
                {"type":"record","name":"HoodieWriteStat","fields":[
                  {"name":"fileId","type":["null","string"],"default":null},
                  {"name":"path","type":["null","string"],"default":null},
                  {"name":"prevCommit","type":["null","string"],"default":null},
                  {"name":"numWrites","type":["null","long"],"default":null},
                  {"name":"numInserts","type":["null","long"],"default":null},
                  {"name":"logVersion","type":["null","int"],"default":null},
                  {"name":"logFiles","type":["null",{"type":"array","items":"string"}],"default":null},
                  {"name":"numUpdates","type":["null","long"],"default":null}]}}}],"default":null},
              {"name":"compacted","type":["null","boolean"],"default":null},
              {"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},
              {"name":"version","type":["int","null"],"default":1},
              {"name":"operationType","type":["null","string"],"default":null},
              {"name":"partitionToReplaceFileIds","type":["null",{"type":"map","values":{"type":"array","items":"string"}}],"default":null}]}"#,
        )
        .expect("schema");
        use apache_avro::types::Value as V;
        let some = |v: V| V::Union(1, Box::new(v));
        let stat = V::Record(vec![
            ("fileId".into(), some(V::String("f1-0".into()))),
            (
                "path".into(),
                some(V::String("us/f1-0_0-1-2_20260307162451860.parquet".into())),
            ),
            ("prevCommit".into(), some(V::String("null".into()))),
            ("numWrites".into(), some(V::Long(2))),
            ("numInserts".into(), some(V::Long(2))),
            ("logVersion".into(), V::Union(0, Box::new(V::Null))),
            ("logFiles".into(), V::Union(0, Box::new(V::Null))),
            ("numUpdates".into(), some(V::Long(0))),
        ]);
        let record = V::Record(vec![
            (
                "partitionToWriteStats".into(),
                some(V::Map([("us".to_owned(), V::Array(vec![stat]))].into())),
            ),
            ("compacted".into(), some(V::Boolean(false))),
            (
                "extraMetadata".into(),
                some(V::Map(
                    [("schema".to_owned(), V::String("{}".into()))].into(),
                )),
            ),
            ("version".into(), V::Union(1, Box::new(V::Null))),
            (
                "operationType".into(),
                some(V::String("INSERT_OVERWRITE".into())),
            ),
            (
                "partitionToReplaceFileIds".into(),
                some(V::Map(
                    [(
                        "us".to_owned(),
                        V::Array(vec![V::String("old-0".into()), V::String("old-1".into())]),
                    )]
                    .into(),
                )),
            ),
        ]);
        let mut writer = apache_avro::Writer::new(&schema, Vec::new()).expect("writer");
        writer.append_value(record).expect("append");
        let bytes = writer.into_inner().expect("container");
        let m = CommitMetadata::from_avro_bytes(&bytes).expect("decodes");
        assert_eq!(m.operation_type.as_deref(), Some("INSERT_OVERWRITE"));
        assert_eq!(m.schema(), Some("{}"));
        assert_eq!(m.partition_to_replace_file_ids["us"], ["old-0", "old-1"]);
        let s = &m.partition_to_write_stats["us"][0];
        assert_eq!(
            (s.file_id.as_str(), s.num_writes, s.num_inserts),
            ("f1-0", 2, 2)
        );
        assert_eq!(s.prev_commit.as_deref(), Some("null"));
        assert_eq!(s.log_files, None);
        // Empty files, legacy JSON, and garbage.
        assert_eq!(
            CommitMetadata::from_avro_bytes(b"").expect("empty"),
            CommitMetadata::default()
        );
        let json = CommitMetadata::from_avro_bytes(br#"{"operationType":"UPSERT"}"#).expect("json");
        assert_eq!(json.operation_type.as_deref(), Some("UPSERT"));
        assert!(CommitMetadata::from_avro_bytes(b"Obj\x01garbage").is_err());
    }

    #[test]
    fn commit_metadata_reads_hudi_json_and_round_trips() {
        let json = br#"{
          "partitionToWriteStats" : {
            "10" : [ {
              "fileId" : "a079bdb3-731c-4894-b855-abfcd6921007-0",
              "path" : "10/a079bdb3-731c-4894-b855-abfcd6921007-0_0-203-274_20240418173551906.parquet",
              "cdcStats" : null, "prevCommit" : "null", "numWrites" : 1, "numDeletes" : 0,
              "numUpdateWrites" : 0, "numInserts" : 1, "totalWriteBytes" : 441520,
              "totalWriteErrors" : 0, "tempPath" : null, "partitionPath" : "10",
              "totalLogRecords" : 0, "totalLogFilesCompacted" : 0, "totalLogSizeCompacted" : 0,
              "totalUpdatedRecordsCompacted" : 0, "totalLogBlocks" : 0, "totalCorruptLogBlock" : 0,
              "totalRollbackBlocks" : 0, "fileSizeInBytes" : 441520, "minEventTime" : null,
              "maxEventTime" : null, "runtimeStats" : { "totalScanTime" : 0, "totalUpsertTime" : 0,
              "totalCreateTime" : 2006 } } ]
          },
          "compacted" : false,
          "extraMetadata" : { "schema" : "{\"type\":\"record\"}" },
          "operationType" : "UPSERT"
        }"#;
        let m = CommitMetadata::from_json_bytes(json).expect("parses");
        assert_eq!(m.schema(), Some("{\"type\":\"record\"}"));
        let stat = m.write_stats().next().expect("one stat");
        assert_eq!(stat.num_inserts, 1);
        assert_eq!(stat.prev_commit.as_deref(), Some("null"));
        let back = CommitMetadata::from_json_bytes(&m.to_json_bytes()).expect("round trip");
        assert_eq!(back, m);
        assert_eq!(
            CommitMetadata::from_json_bytes(b"").expect("empty"),
            CommitMetadata::default()
        );
    }
}
