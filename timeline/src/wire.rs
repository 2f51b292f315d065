//! Hudi's Avro records on the timeline, typed: one serde struct per record (field names as in
//! Hudi's `.avsc` files, `["null", T]` unions as `Option`), the schema lake writes each with, and
//! the object-container encoding through the `apache-avro` crate. Readers resolve the writer's
//! schema (whatever Hudi release wrote the file) against lake's reader schema by field name, so
//! fields a release adds are skipped and fields it lacks take their defaults.
//!
//! Every file read here comes from the store, so it is untrusted: before `apache-avro` decodes it,
//! lake's bounded decoder ([`crate::avro`]) walks it once and refuses counts and lengths the bytes
//! cannot hold (`apache-avro` 0.22 bounds each collection on its own, so nested collections of
//! zero-width values could still claim memory without bound).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Reader, Writer};

/// A parsed Avro schema (`apache-avro`'s).
pub use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The most any one decoded timeline file may allocate (a process-wide `apache-avro` setting).
const MAX_ALLOCATION: usize = 64 << 20;

/// `HoodieInstantInfo`.
pub const INSTANT_INFO_SCHEMA: &str = r#"{"type":"record","name":"HoodieInstantInfo","namespace":"org.apache.hudi.avro.model","fields":[{"name":"commitTime","type":"string"},{"name":"action","type":"string"}]}"#;

/// `HoodieCleanerPlan`.
pub const CLEANER_PLAN_SCHEMA: &str = r#"{"type":"record","name":"HoodieCleanerPlan","namespace":"org.apache.hudi.avro.model","fields":[{"name":"earliestInstantToRetain","type":["null",{"type":"record","name":"HoodieActionInstant","fields":[{"name":"timestamp","type":"string"},{"name":"action","type":"string"},{"name":"state","type":"string"}]}],"default":null},{"name":"policy","type":"string"},{"name":"filesToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":"string"}}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"filePathsToBeDeletedPerPartition","type":["null",{"type":"map","values":{"type":"array","items":{"type":"record","name":"HoodieCleanFileInfo","fields":[{"name":"filePath","type":["null","string"],"default":null},{"name":"isBootstrapBaseFile","type":["null","boolean"],"default":null}]}}}],"default":null},{"name":"partitionsToBeDeleted","type":["null",{"type":"array","items":"string"}],"default":null}]}"#;

/// `HoodieCleanMetadata`.
pub const CLEAN_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieCleanMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"policy","type":"string","default":""},{"name":"startCleanTime","type":"string"},{"name":"timeTakenInMillis","type":"long"},{"name":"totalFilesDeleted","type":"int"},{"name":"earliestCommitToRetain","type":"string"},{"name":"lastCompletedCommitTimestamp","type":"string","default":""},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieCleanPartitionMetadata","fields":[{"name":"partitionPath","type":"string"},{"name":"policy","type":"string"},{"name":"deletePathPatterns","type":{"type":"array","items":"string"}},{"name":"successDeleteFiles","type":{"type":"array","items":"string"}},{"name":"failedDeleteFiles","type":{"type":"array","items":"string"}},{"name":"isPartitionDeleted","type":["null","boolean"],"default":null}]}}},{"name":"version","type":["int","null"],"default":1},{"name":"bootstrapPartitionMetadata","type":["null",{"type":"map","values":"HoodieCleanPartitionMetadata"}],"default":null}]}"#;

/// `HoodieSavepointMetadata`.
pub const SAVEPOINT_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieSavepointMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"savepointedBy","type":"string"},{"name":"savepointedAt","type":"long"},{"name":"comments","type":"string"},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieSavepointPartitionMetadata","fields":[{"name":"partitionPath","type":"string"},{"name":"savepointDataFile","type":{"type":"array","items":"string"}}]}}},{"name":"version","type":["int","null"],"default":1}]}"#;

/// `HoodieCompactionPlan` with `HoodieCompactionOperation`.
pub const COMPACTION_PLAN_SCHEMA: &str = r#"{"namespace":"org.apache.hudi.avro.model","type":"record","name":"HoodieCompactionPlan","fields":[{"name":"operations","type":["null",{"type":"array","items":{"name":"HoodieCompactionOperation","type":"record","fields":[{"name":"baseInstantTime","type":["null","string"]},{"name":"deltaFilePaths","type":["null",{"type":"array","items":"string"}],"default":null},{"name":"dataFilePath","type":["null","string"],"default":null},{"name":"fileId","type":["null","string"]},{"name":"partitionPath","type":["null","string"],"default":null},{"name":"metrics","type":["null",{"type":"map","values":"double"}],"default":null},{"name":"bootstrapFilePath","type":["null","string"],"default":null}]}}],"default":null},{"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},{"name":"version","type":["int","null"],"default":1}]}"#;

/// `HoodieCommitMetadata` with `HoodieWriteStat` (the fields every Hudi release knows).
pub const COMMIT_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieCommitMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"partitionToWriteStats","type":["null",{"type":"map","values":{"type":"array","items":{"type":"record","name":"HoodieWriteStat","fields":[{"name":"fileId","type":["null","string"],"default":null},{"name":"path","type":["null","string"],"default":null},{"name":"prevCommit","type":["null","string"],"default":null},{"name":"numWrites","type":["null","long"],"default":null},{"name":"numDeletes","type":["null","long"],"default":null},{"name":"numUpdateWrites","type":["null","long"],"default":null},{"name":"totalWriteBytes","type":["null","long"],"default":null},{"name":"totalWriteErrors","type":["null","long"],"default":null},{"name":"partitionPath","type":["null","string"],"default":null},{"name":"totalLogRecords","type":["null","long"],"default":null},{"name":"totalLogFiles","type":["null","long"],"default":null},{"name":"totalUpdatedRecordsCompacted","type":["null","long"],"default":null},{"name":"numInserts","type":["null","long"],"default":null},{"name":"totalLogBlocks","type":["null","long"],"default":null},{"name":"totalCorruptLogBlock","type":["null","long"],"default":null},{"name":"totalRollbackBlocks","type":["null","long"],"default":null},{"name":"fileSizeInBytes","type":["null","long"],"default":null},{"name":"cdcStats","type":["null",{"type":"map","values":"long"}],"default":null}]}}}],"default":null},{"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"operationType","type":["null","string"],"default":null}]}"#;

fn with_instant_info(template: &str) -> String {
    template.replacen("HoodieInstantInfo", INSTANT_INFO_SCHEMA, 1)
}

/// `HoodieRollbackPlan` (with `HoodieInstantInfo` inlined).
pub fn rollback_plan_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| with_instant_info(r#"{"type":"record","name":"HoodieRollbackPlan","namespace":"org.apache.hudi.avro.model","fields":[{"name":"instantToRollback","type":["null",HoodieInstantInfo],"default":null},{"name":"RollbackRequests","type":["null",{"type":"array","items":{"type":"record","name":"HoodieRollbackRequest","fields":[{"name":"partitionPath","type":"string"},{"name":"fileId","type":["null","string"],"default":null},{"name":"latestBaseInstant","type":["null","string"],"default":null},{"name":"filesToBeDeleted","type":{"type":"array","items":"string"},"default":[]},{"name":"logBlocksToBeDeleted","type":["null",{"type":"map","values":"long"}],"default":null}]}}],"default":null},{"name":"version","type":["int","null"],"default":1}]}"#))
}

const ROLLBACK_METADATA_TEMPLATE: &str = r#"{"type":"record","name":"HoodieRollbackMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"startRollbackTime","type":"string"},{"name":"timeTakenInMillis","type":"long"},{"name":"totalFilesDeleted","type":"int"},{"name":"commitsRollback","type":{"type":"array","items":"string"}},{"name":"partitionMetadata","type":{"type":"map","values":{"type":"record","name":"HoodieRollbackPartitionMetadata","fields":[{"name":"partitionPath","type":"string"},{"name":"successDeleteFiles","type":{"type":"array","items":"string"}},{"name":"failedDeleteFiles","type":{"type":"array","items":"string"}},{"name":"rollbackLogFiles","type":["null",{"type":"map","values":"long"}],"default":null},{"name":"writtenLogFiles","type":["null",{"type":"map","values":"long"}],"default":null}]}}},{"name":"version","type":["int","null"],"default":1},{"name":"instantsRollback","type":{"type":"array","items":HoodieInstantInfo},"default":[]}]}"#;

/// `HoodieRollbackMetadata` (with `HoodieInstantInfo` inlined).
pub fn rollback_metadata_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| with_instant_info(ROLLBACK_METADATA_TEMPLATE))
}

/// `HoodieRestorePlan` (with `HoodieInstantInfo` inlined).
pub fn restore_plan_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| with_instant_info(r#"{"type":"record","name":"HoodieRestorePlan","namespace":"org.apache.hudi.avro.model","fields":[{"name":"instantsToRollback","default":[],"type":{"type":"array","items":HoodieInstantInfo}},{"name":"version","type":["int","null"],"default":1},{"name":"savepointToRestoreTimestamp","type":["null","string"],"default":null}]}"#))
}

/// `HoodieRestoreMetadata` (with `HoodieRollbackMetadata` and `HoodieInstantInfo` inlined).
pub fn restore_metadata_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        format!(
            r#"{{"type":"record","name":"HoodieRestoreMetadata","namespace":"org.apache.hudi.avro.model","fields":[{{"name":"startRestoreTime","type":"string"}},{{"name":"timeTakenInMillis","type":"long"}},{{"name":"instantsToRollback","type":{{"type":"array","items":"string"}}}},{{"name":"hoodieRestoreMetadata","type":{{"type":"map","values":{{"type":"array","items":["null",{}]}}}}}},{{"name":"version","type":["int","null"],"default":1}},{{"name":"restoreInstantInfo","default":[],"type":{{"type":"array","items":"HoodieInstantInfo"}}}},{{"name":"extraMetadata","type":["null",{{"type":"map","values":"string"}}],"default":null}}]}}"#,
            rollback_metadata_schema()
        )
    })
}

/// `HoodieReplaceCommitMetadata` (the commit metadata's fields and the replaced file groups).
pub fn replace_metadata_schema() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        COMMIT_METADATA_SCHEMA
            .replacen("HoodieCommitMetadata", "HoodieReplaceCommitMetadata", 1)
            .trim_end_matches("]}")
            .to_owned()
            + r#",{"name":"partitionToReplaceFileIds","type":["null",{"type":"map","values":{"type":"array","items":"string"}}],"default":null}]}"#
    })
}

/// `HoodieInstantInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstantInfo {
    /// Requested time.
    pub commit_time: String,
    /// Action name.
    pub action: String,
}

impl From<&crate::Instant> for InstantInfo {
    fn from(i: &crate::Instant) -> Self {
        Self {
            commit_time: i.time.to_string(),
            action: i.action.name().to_owned(),
        }
    }
}

/// `HoodieRollbackRequest`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    /// Partition path.
    pub partition_path: String,
    /// File group, if the request is about one.
    #[serde(default)]
    pub file_id: Option<String>,
    /// Base instant of the file group's slice.
    #[serde(default)]
    pub latest_base_instant: Option<String>,
    /// Root-relative paths to delete.
    #[serde(default)]
    pub files_to_be_deleted: Vec<String>,
    /// Log files whose blocks a command block rolls back, with their sizes.
    #[serde(default)]
    pub log_blocks_to_be_deleted: Option<BTreeMap<String, i64>>,
}

/// `HoodieRollbackPlan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPlan {
    /// The instant rolled back.
    #[serde(default)]
    pub instant_to_rollback: Option<InstantInfo>,
    /// One request per partition (or file group).
    #[serde(rename = "RollbackRequests", default)]
    pub rollback_requests: Option<Vec<RollbackRequest>>,
    /// Plan version.
    #[serde(default)]
    pub version: Option<i32>,
}

/// `HoodieRollbackPartitionMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPartitionMetadata {
    /// Partition path.
    pub partition_path: String,
    /// Files deleted.
    #[serde(default)]
    pub success_delete_files: Vec<String>,
    /// Files that could not be deleted.
    #[serde(default)]
    pub failed_delete_files: Vec<String>,
    /// Log files that got a rollback command block, with sizes.
    #[serde(default)]
    pub rollback_log_files: Option<BTreeMap<String, i64>>,
    /// Log files written by the rolled-back instant, with sizes.
    #[serde(default)]
    pub written_log_files: Option<BTreeMap<String, i64>>,
}

/// `HoodieRollbackMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackMetadata {
    /// Time of the rollback.
    pub start_rollback_time: String,
    /// Duration.
    pub time_taken_in_millis: i64,
    /// Files deleted.
    pub total_files_deleted: i32,
    /// Requested times of the rolled-back instants.
    #[serde(default)]
    pub commits_rollback: Vec<String>,
    /// Per partition.
    #[serde(default)]
    pub partition_metadata: BTreeMap<String, RollbackPartitionMetadata>,
    /// Metadata version.
    #[serde(default)]
    pub version: Option<i32>,
    /// The rolled-back instants with their actions.
    #[serde(default)]
    pub instants_rollback: Vec<InstantInfo>,
}

/// `HoodieActionInstant`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionInstant {
    /// Requested time.
    pub timestamp: String,
    /// Action name.
    pub action: String,
    /// State name.
    pub state: String,
}

/// `HoodieCleanFileInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanFileInfo {
    /// Root-relative path.
    #[serde(default)]
    pub file_path: Option<String>,
    /// Whether it is a bootstrap base file.
    #[serde(default)]
    pub is_bootstrap_base_file: Option<bool>,
}

/// `HoodieCleanerPlan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanerPlan {
    /// The earliest write whose snapshot stays readable.
    #[serde(default)]
    pub earliest_instant_to_retain: Option<ActionInstant>,
    /// Hudi's policy name.
    pub policy: String,
    /// File names by partition (plan version 1).
    #[serde(default)]
    pub files_to_be_deleted_per_partition: Option<BTreeMap<String, Vec<String>>>,
    /// Plan version.
    #[serde(default)]
    pub version: Option<i32>,
    /// Files by partition (plan version 2).
    #[serde(default)]
    pub file_paths_to_be_deleted_per_partition: Option<BTreeMap<String, Vec<CleanFileInfo>>>,
    /// Partitions deleted whole.
    #[serde(default)]
    pub partitions_to_be_deleted: Option<Vec<String>>,
}

/// `HoodieCleanPartitionMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanPartitionMetadata {
    /// Partition path.
    pub partition_path: String,
    /// Hudi's policy name.
    pub policy: String,
    /// What was to be deleted.
    #[serde(default)]
    pub delete_path_patterns: Vec<String>,
    /// Deleted.
    #[serde(default)]
    pub success_delete_files: Vec<String>,
    /// Not deleted.
    #[serde(default)]
    pub failed_delete_files: Vec<String>,
    /// Whether the partition went whole.
    #[serde(default)]
    pub is_partition_deleted: Option<bool>,
}

/// `HoodieCleanMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanMetadata {
    /// Hudi's policy name.
    #[serde(default)]
    pub policy: String,
    /// Time of the clean.
    pub start_clean_time: String,
    /// Duration.
    pub time_taken_in_millis: i64,
    /// Files deleted.
    pub total_files_deleted: i32,
    /// The earliest write whose snapshot stays readable (`""` when none).
    pub earliest_commit_to_retain: String,
    /// The latest completed write when the clean ran.
    #[serde(default)]
    pub last_completed_commit_timestamp: String,
    /// Per partition.
    #[serde(default)]
    pub partition_metadata: BTreeMap<String, CleanPartitionMetadata>,
    /// Metadata version.
    #[serde(default)]
    pub version: Option<i32>,
    /// Bootstrap files cleaned, per partition.
    #[serde(default)]
    pub bootstrap_partition_metadata: Option<BTreeMap<String, CleanPartitionMetadata>>,
}

/// `HoodieSavepointPartitionMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointPartitionMetadata {
    /// Partition path.
    pub partition_path: String,
    /// File names the savepoint pins.
    #[serde(default)]
    pub savepoint_data_file: Vec<String>,
}

/// `HoodieSavepointMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointMetadata {
    /// Who created it.
    pub savepointed_by: String,
    /// When (Unix seconds).
    pub savepointed_at: i64,
    /// Comment.
    pub comments: String,
    /// Pinned files per partition.
    #[serde(default)]
    pub partition_metadata: BTreeMap<String, SavepointPartitionMetadata>,
    /// Metadata version.
    #[serde(default)]
    pub version: Option<i32>,
}

/// `HoodieRestorePlan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    /// The instants the restore rolls back.
    #[serde(default)]
    pub instants_to_rollback: Vec<InstantInfo>,
    /// Plan version.
    #[serde(default)]
    pub version: Option<i32>,
    /// The savepoint restored to.
    #[serde(default)]
    pub savepoint_to_restore_timestamp: Option<String>,
}

/// `HoodieRestoreMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreMetadata {
    /// Time of the restore.
    pub start_restore_time: String,
    /// Duration.
    pub time_taken_in_millis: i64,
    /// Requested times of the rolled-back instants.
    #[serde(default)]
    pub instants_to_rollback: Vec<String>,
    /// Rollback metadata per rolled-back instant.
    #[serde(default)]
    pub hoodie_restore_metadata: BTreeMap<String, Vec<Option<RollbackMetadata>>>,
    /// Metadata version.
    #[serde(default)]
    pub version: Option<i32>,
    /// The rolled-back instants with their actions.
    #[serde(default)]
    pub restore_instant_info: Vec<InstantInfo>,
    /// Free-form metadata.
    #[serde(default)]
    pub extra_metadata: Option<BTreeMap<String, String>>,
}

/// `HoodieCompactionOperation`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionOperation {
    /// Base instant of the slice compacted.
    #[serde(default)]
    pub base_instant_time: Option<String>,
    /// Log file names.
    #[serde(default)]
    pub delta_file_paths: Option<Vec<String>>,
    /// Base file name, if the slice has one.
    #[serde(default)]
    pub data_file_path: Option<String>,
    /// File group.
    #[serde(default)]
    pub file_id: Option<String>,
    /// Partition path.
    #[serde(default)]
    pub partition_path: Option<String>,
    /// Sizes and counts.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Bootstrap source file.
    #[serde(default)]
    pub bootstrap_file_path: Option<String>,
}

/// `HoodieCompactionPlan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionPlan {
    /// One operation per file group.
    #[serde(default)]
    pub operations: Option<Vec<CompactionOperation>>,
    /// Free-form metadata.
    #[serde(default)]
    pub extra_metadata: Option<BTreeMap<String, String>>,
    /// Plan version.
    #[serde(default)]
    pub version: Option<i32>,
}

/// `HoodieWriteStat`: the fields lake reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WriteStat {
    /// File group.
    pub file_id: Option<String>,
    /// Root-relative path of the file written.
    pub path: Option<String>,
    /// Previous base instant, or `"null"`.
    pub prev_commit: Option<String>,
    /// Records written.
    pub num_writes: Option<i64>,
    /// Records deleted.
    pub num_deletes: Option<i64>,
    /// Records updated.
    pub num_update_writes: Option<i64>,
    /// Bytes written.
    pub total_write_bytes: Option<i64>,
    /// Records that failed.
    pub total_write_errors: Option<i64>,
    /// Partition path.
    pub partition_path: Option<String>,
    /// Log records read while compacting.
    pub total_log_records: Option<i64>,
    /// Log files read while compacting.
    pub total_log_files: Option<i64>,
    /// Records updated by compaction.
    pub total_updated_records_compacted: Option<i64>,
    /// Records inserted.
    pub num_inserts: Option<i64>,
    /// Log blocks read.
    pub total_log_blocks: Option<i64>,
    /// Corrupt log blocks seen.
    pub total_corrupt_log_block: Option<i64>,
    /// Rollback blocks seen.
    pub total_rollback_blocks: Option<i64>,
    /// Size of the file written.
    pub file_size_in_bytes: Option<i64>,
    /// CDC log files written beside the file: root-relative path → bytes.
    pub cdc_stats: Option<BTreeMap<String, i64>>,
}

/// `HoodieCommitMetadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommitMetadata {
    /// Write stats by partition.
    pub partition_to_write_stats: Option<BTreeMap<String, Vec<WriteStat>>>,
    /// Free-form metadata (schema, checkpoint).
    pub extra_metadata: Option<BTreeMap<String, String>>,
    /// Metadata version.
    pub version: Option<i32>,
    /// Hudi's operation name.
    pub operation_type: Option<String>,
}

/// `HoodieReplaceCommitMetadata`: the commit metadata's fields and the replaced file groups.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplaceCommitMetadata {
    /// Write stats by partition.
    pub partition_to_write_stats: Option<BTreeMap<String, Vec<WriteStat>>>,
    /// Free-form metadata (schema, checkpoint).
    pub extra_metadata: Option<BTreeMap<String, String>>,
    /// Metadata version.
    pub version: Option<i32>,
    /// Hudi's operation name.
    pub operation_type: Option<String>,
    /// Replaced file groups by partition.
    pub partition_to_replace_file_ids: Option<BTreeMap<String, Vec<String>>>,
}

/// A parsed schema, kept per schema text for the life of the process.
pub fn schema(json: &str) -> Result<Schema, String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<String, Schema>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().ok().and_then(|c| c.get(json).cloned()) {
        return Ok(s);
    }
    let parsed = Schema::parse_str(json).map_err(|e| format!("bad Avro schema: {e}"))?;
    if let Ok(mut c) = cache.lock()
        && c.len() < 256
    {
        c.insert(json.to_owned(), parsed.clone());
    }
    Ok(parsed)
}

/// An Avro object container file (null codec) holding `value`, written with `schema_json`.
pub fn write_container<T: Serialize>(schema_json: &str, value: &T) -> Result<Vec<u8>, String> {
    let schema = schema(schema_json)?;
    let mut w = Writer::new(&schema, Vec::new()).map_err(|e| e.to_string())?;
    w.append_ser(value)
        .map_err(|e| format!("cannot encode as {}: {e}", record_name(&schema)))?;
    w.into_inner().map_err(|e| e.to_string())
}

/// The first record of an Avro object container file, resolved against `reader_schema` (`None` for
/// an empty file or a container without records).
pub fn read_container<T: DeserializeOwned>(
    reader_schema: &str,
    bytes: &[u8],
) -> Result<Option<T>, String> {
    read_container_by(bytes, |_| reader_schema)
}

/// [`read_container`] with the reader schema chosen by the full name of the record the file's
/// writer schema describes (Hudi writes commit and replace metadata under different names).
pub fn read_container_by<'s, T: DeserializeOwned>(
    bytes: &[u8],
    reader_schema: impl FnOnce(&str) -> &'s str,
) -> Result<Option<T>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    // Bounded first: a file whose counts or lengths its bytes cannot hold is refused here.
    let (writer_json, _) = crate::avro::read_container(bytes)?;
    let writer_name = serde_json::from_str::<serde_json::Value>(&writer_json)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_default();
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
    let reader_schema = schema(reader_schema(&writer_name))?;
    let reader = Reader::builder(bytes)
        .reader_schema(&reader_schema)
        .build()
        .map_err(|e| e.to_string())?;
    let Some(value) = reader.into_iter().next() else {
        return Ok(None);
    };
    let value = value.map_err(|e| e.to_string())?;
    apache_avro::from_value::<T>(&value)
        .map(Some)
        .map_err(|e| format!("not a {}: {e}", record_name(&reader_schema)))
}

/// One datum (no container), as Hudi's log blocks hold records.
pub fn encode_datum<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, String> {
    GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_ser_to_vec(value))
        .map_err(|e| format!("cannot encode as {}: {e}", record_name(schema)))
}

/// One datum written with `writer`, resolved against `reader` (the bytes were bounds-checked by the
/// caller with [`crate::avro::decode`]).
pub fn decode_datum<T: DeserializeOwned>(
    writer: &Schema,
    reader: &Schema,
    mut bytes: &[u8],
) -> Result<T, String> {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
    // `read_value` resolves the writer's schema against the reader's (0.22's `read_deser` does not).
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .and_then(|r| r.read_value(&mut bytes))
        .map_err(|e| e.to_string())?;
    apache_avro::from_value::<T>(&value).map_err(|e| format!("not a {}: {e}", record_name(reader)))
}

/// A timeline file's content as JSON (Hudi's field names), typed by the instant's action and state:
/// JSON metadata (table version 6 commits) as it is, Avro containers through the record they hold;
/// `null` for an empty file or an action whose file holds nothing lake reads.
pub fn content_json(
    action: crate::Action,
    state: crate::State,
    bytes: &[u8],
) -> Result<serde_json::Value, String> {
    use crate::{Action as A, State as S};
    fn typed<T: DeserializeOwned + Serialize>(
        schema: &str,
        bytes: &[u8],
    ) -> Result<serde_json::Value, String> {
        let v: Option<T> = read_container(schema, bytes)?;
        serde_json::to_value(v).map_err(|e| e.to_string())
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(serde_json::Value::Null),
        Some(b'{') => return serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Some(_) => {}
    }
    match (action, state) {
        (A::Commit | A::DeltaCommit, S::Completed) => {
            typed::<CommitMetadata>(COMMIT_METADATA_SCHEMA, bytes)
        }
        (A::ReplaceCommit | A::Clustering, S::Completed) => {
            typed::<ReplaceCommitMetadata>(replace_metadata_schema(), bytes)
        }
        (A::ReplaceCommit | A::Clustering, S::Inflight) => {
            typed::<CommitMetadata>(COMMIT_METADATA_SCHEMA, bytes)
        }
        (A::Clean, S::Completed) => typed::<CleanMetadata>(CLEAN_METADATA_SCHEMA, bytes),
        (A::Clean, _) => typed::<CleanerPlan>(CLEANER_PLAN_SCHEMA, bytes),
        (A::Rollback, S::Completed) => typed::<RollbackMetadata>(rollback_metadata_schema(), bytes),
        (A::Rollback, _) => typed::<RollbackPlan>(rollback_plan_schema(), bytes),
        (A::Savepoint, S::Completed) => {
            typed::<SavepointMetadata>(SAVEPOINT_METADATA_SCHEMA, bytes)
        }
        (A::Restore, S::Completed) => typed::<RestoreMetadata>(restore_metadata_schema(), bytes),
        (A::Restore, _) => typed::<RestorePlan>(restore_plan_schema(), bytes),
        (A::Compaction | A::LogCompaction, _) => {
            typed::<CompactionPlan>(COMPACTION_PLAN_SCHEMA, bytes)
        }
        _ => Ok(serde_json::Value::Null),
    }
}

fn record_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.name().to_owned(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses() {
        for s in [
            INSTANT_INFO_SCHEMA,
            CLEANER_PLAN_SCHEMA,
            CLEAN_METADATA_SCHEMA,
            SAVEPOINT_METADATA_SCHEMA,
            COMPACTION_PLAN_SCHEMA,
            COMMIT_METADATA_SCHEMA,
            rollback_plan_schema(),
            rollback_metadata_schema(),
            restore_plan_schema(),
            restore_metadata_schema(),
            replace_metadata_schema(),
        ] {
            schema(s).expect("apache-avro parses it");
            crate::avro::Schema::parse(s).expect("lake's validator parses it");
        }
    }

    #[test]
    fn records_round_trip_and_resolve_by_field_name() {
        let meta = RollbackMetadata {
            start_rollback_time: "20250101000000002".into(),
            time_taken_in_millis: 5,
            total_files_deleted: 1,
            commits_rollback: vec!["20250101000000001".into()],
            partition_metadata: [(
                "p".to_owned(),
                RollbackPartitionMetadata {
                    partition_path: "p".into(),
                    success_delete_files: vec!["f.parquet".into()],
                    rollback_log_files: Some([("l".to_owned(), 3)].into()),
                    ..Default::default()
                },
            )]
            .into(),
            version: Some(1),
            instants_rollback: vec![InstantInfo {
                commit_time: "20250101000000001".into(),
                action: "commit".into(),
            }],
        };
        let bytes = write_container(rollback_metadata_schema(), &meta).expect("write");
        let back: RollbackMetadata = read_container(rollback_metadata_schema(), &bytes)
            .expect("read")
            .expect("a record");
        assert_eq!(back, meta);
        // lake's bounded decoder reads what apache-avro wrote.
        let (_, data) = crate::avro::read_container(&bytes).expect("bounded decoder");
        assert_eq!(data.len(), 1);
        // Commit metadata written with the plain schema reads as replace metadata without ids.
        let commit = CommitMetadata {
            partition_to_write_stats: Some(
                [(
                    "p".to_owned(),
                    vec![WriteStat {
                        file_id: Some("f-0".into()),
                        num_inserts: Some(3),
                        ..Default::default()
                    }],
                )]
                .into(),
            ),
            extra_metadata: Some([("schema".to_owned(), "{}".to_owned())].into()),
            version: Some(1),
            operation_type: Some("UPSERT".into()),
        };
        let bytes = write_container(COMMIT_METADATA_SCHEMA, &commit).expect("write");
        let back: CommitMetadata = read_container(COMMIT_METADATA_SCHEMA, &bytes)
            .expect("read")
            .expect("record");
        assert_eq!(back, commit);
        let mut writer = String::new();
        let _: Option<CommitMetadata> = read_container_by(&bytes, |w| {
            writer = w.to_owned();
            COMMIT_METADATA_SCHEMA
        })
        .expect("read");
        assert_eq!(writer, "HoodieCommitMetadata");
        let plan = CleanerPlan {
            policy: "KEEP_LATEST_COMMITS".into(),
            version: Some(2),
            ..Default::default()
        };
        let bytes = write_container(CLEANER_PLAN_SCHEMA, &plan).expect("write");
        assert_eq!(
            read_container::<CleanerPlan>(CLEANER_PLAN_SCHEMA, &bytes).expect("read"),
            Some(plan)
        );
        assert_eq!(
            read_container::<CleanerPlan>(CLEANER_PLAN_SCHEMA, b""),
            Ok(None)
        );
        assert!(read_container::<CleanerPlan>(CLEANER_PLAN_SCHEMA, b"Obj\x01garbage").is_err());
    }
}
