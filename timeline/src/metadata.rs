//! Commit metadata in the JSON shape Hudi writes for table version 6 (`HoodieCommitMetadata`,
//! serialized by Jackson): partition → write stats, extra metadata (the Avro schema, the source
//! checkpoint), the operation type, and for replace commits the replaced file ids.

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
