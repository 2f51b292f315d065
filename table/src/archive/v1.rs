//! The archived timeline of timeline layout 1 (table version 6): `.hoodie/archived/`, Hudi log files
//! named `.commits_.archive.<N>_<token>` whose Avro data blocks hold `HoodieArchivedMetaEntry`
//! records, one per archived timeline file (requested, inflight and completed states each).
//!
//! Each block's header holds only the writer schema (`SCHEMA`); the block content is version 3:
//! i32 version · i32 record count · per record i32 length and the record's Avro binary encoding.
//! lake's writer schema lists the entry's fields in Hudi's order with the payload records it fills
//! (commit, clean, rollback and savepoint metadata, compaction and cleaner plans, replace metadata);
//! Java readers resolve it against their own schema by field name. Each archival writes a new file
//! (object stores cannot append), so a file is complete or absent.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use lake_timeline::avro::{self, CLEAN_METADATA_SCHEMA, CLEANER_PLAN_SCHEMA, Datum, Schema};
use lake_timeline::{Action, InstantTime, State};
use serde_json::Value;

use crate::compaction_plan::COMPACTION_PLAN_SCHEMA;
use crate::log_format::{BlockType, LogBlock, ReadBlock, header, read_blocks};
use crate::{Error, Result};

/// Root-relative folder of the archived timeline (`hoodie.archivelog.folder`, default `archived`).
pub const ARCHIVE_DIR: &str = ".hoodie/archived";
/// Write token of archive files (Hudi's `UNKNOWN_WRITE_TOKEN`).
const TOKEN: &str = "1-0-1";
/// Records per Avro block (`hoodie.commits.archival.batch`).
pub const BATCH: usize = 10;
/// Block content version.
const BLOCK_VERSION: i32 = 3;

/// `HoodieCommitMetadata` with `HoodieWriteStat` (the fields Hudi's readers know in every version).
const COMMIT_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieCommitMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"partitionToWriteStats","type":["null",{"type":"map","values":{"type":"array","items":{"type":"record","name":"HoodieWriteStat","fields":[{"name":"fileId","type":["null","string"],"default":null},{"name":"path","type":["null","string"],"default":null},{"name":"prevCommit","type":["null","string"],"default":null},{"name":"prevFilePathOverwritten","type":["null","string"],"default":null},{"name":"numWrites","type":["null","long"],"default":null},{"name":"numDeletes","type":["null","long"],"default":null},{"name":"numUpdateWrites","type":["null","long"],"default":null},{"name":"totalWriteBytes","type":["null","long"],"default":null},{"name":"totalWriteErrors","type":["null","long"],"default":null},{"name":"partitionPath","type":["null","string"],"default":null},{"name":"totalLogRecords","type":["null","long"],"default":null},{"name":"totalLogFiles","type":["null","long"],"default":null},{"name":"totalUpdatedRecordsCompacted","type":["null","long"],"default":null},{"name":"numInserts","type":["null","long"],"default":null},{"name":"totalLogBlocks","type":["null","long"],"default":null},{"name":"totalCorruptLogBlock","type":["null","long"],"default":null},{"name":"totalRollbackBlocks","type":["null","long"],"default":null},{"name":"fileSizeInBytes","type":["null","long"],"default":null}]}}}],"default":null},{"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"operationType","type":["null","string"],"default":null}]}"#;

/// `HoodieReplaceCommitMetadata` (its write stats refer to the type defined above).
const REPLACE_METADATA_SCHEMA: &str = r#"{"type":"record","name":"HoodieReplaceCommitMetadata","namespace":"org.apache.hudi.avro.model","fields":[{"name":"partitionToWriteStats","type":["null",{"type":"map","values":{"type":"array","items":"HoodieWriteStat"}}],"default":null},{"name":"extraMetadata","type":["null",{"type":"map","values":"string"}],"default":null},{"name":"version","type":["int","null"],"default":1},{"name":"operationType","type":["null","string"],"default":null},{"name":"partitionToReplaceFileIds","type":["null",{"type":"map","values":{"type":"array","items":"string"}}],"default":null}]}"#;

/// Payload fields of an entry, by what the archived timeline file held.
pub mod field {
    /// Completed commit and deltacommit metadata.
    pub const COMMIT: &str = "hoodieCommitMetadata";
    /// Completed clean metadata.
    pub const CLEAN: &str = "hoodieCleanMetadata";
    /// Completed rollback metadata.
    pub const ROLLBACK: &str = "hoodieRollbackMetadata";
    /// Completed savepoint metadata.
    pub const SAVEPOINT: &str = "hoodieSavePointMetadata";
    /// A requested compaction's plan.
    pub const COMPACTION_PLAN: &str = "hoodieCompactionPlan";
    /// A requested clean's plan.
    pub const CLEANER_PLAN: &str = "hoodieCleanerPlan";
    /// Completed replacecommit metadata.
    pub const REPLACE: &str = "hoodieReplaceCommitMetadata";
    /// An inflight replacecommit's metadata.
    pub const INFLIGHT_REPLACE: &str = "HoodieInflightReplaceMetadata";
}

/// The writer schema of lake's archive entries (`HoodieArchivedMetaEntry`, fields in Hudi's order).
pub fn entry_schema() -> &'static str {
    static SCHEMA: OnceLock<String> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let nullable = |name: &str, ty: &str| {
            format!(r#"{{"name":"{name}","type":["null",{ty}],"default":null}}"#)
        };
        let fields = [
            nullable(field::COMMIT, COMMIT_METADATA_SCHEMA),
            nullable(field::CLEAN, CLEAN_METADATA_SCHEMA),
            nullable(field::ROLLBACK, &avro::rollback_metadata_schema()),
            nullable(field::SAVEPOINT, avro::SAVEPOINT_METADATA_SCHEMA),
            nullable("commitTime", r#""string""#),
            nullable("actionType", r#""string""#),
            r#"{"name":"version","type":["int","null"],"default":1}"#.to_owned(),
            nullable(field::COMPACTION_PLAN, COMPACTION_PLAN_SCHEMA),
            nullable(field::CLEANER_PLAN, CLEANER_PLAN_SCHEMA),
            nullable("actionState", r#""string""#),
            nullable(field::REPLACE, REPLACE_METADATA_SCHEMA),
            nullable(field::INFLIGHT_REPLACE, r#""HoodieCommitMetadata""#),
            nullable("stateTransitionTime", r#""string""#),
        ];
        format!(
            r#"{{"type":"record","name":"HoodieArchivedMetaEntry","namespace":"org.apache.hudi.avro.model","fields":[{}]}}"#,
            fields.join(",")
        )
    })
}

fn parsed_entry_schema() -> Result<&'static Schema> {
    static PARSED: OnceLock<std::result::Result<Schema, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| Schema::parse(entry_schema()))
        .as_ref()
        .map_err(|e| Error::Corrupt(format!("lake's archive entry schema: {e}")))
}

/// One archived timeline file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The instant's requested time.
    pub time: InstantTime,
    /// The action as written (`commit` for a completed compaction).
    pub action: String,
    /// The state of the archived file.
    pub state: State,
    /// The completion time, when known (`stateTransitionTime`, written by Hudi 1.x).
    pub completion: Option<InstantTime>,
    /// The payload: its field name and its value as JSON (field names as in Hudi's schemas).
    pub payload: Option<(String, Value)>,
}

impl Entry {
    /// The payload field an archived file's content goes to, by action and state (as Hudi's
    /// `MetadataConversionUtils` chooses it); `None` for files archived without their content.
    pub fn payload_field(action: Action, state: State) -> Option<&'static str> {
        Some(match (action, state) {
            (Action::Commit | Action::DeltaCommit, State::Completed) => field::COMMIT,
            (Action::ReplaceCommit | Action::Clustering, State::Completed) => field::REPLACE,
            (Action::ReplaceCommit | Action::Clustering, State::Inflight) => {
                field::INFLIGHT_REPLACE
            }
            (Action::Clean, State::Completed) => field::CLEAN,
            (Action::Clean, _) => field::CLEANER_PLAN,
            (Action::Rollback, State::Completed) => field::ROLLBACK,
            (Action::Savepoint, State::Completed) => field::SAVEPOINT,
            (Action::Compaction | Action::LogCompaction, State::Requested) => {
                field::COMPACTION_PLAN
            }
            _ => return None,
        })
    }

    fn to_datum(&self) -> Result<Datum> {
        let schema = parsed_entry_schema()?;
        let mut obj = serde_json::Map::new();
        obj.insert("commitTime".into(), Value::String(self.time.to_string()));
        obj.insert("actionType".into(), Value::String(self.action.clone()));
        obj.insert("version".into(), Value::from(1));
        obj.insert(
            "actionState".into(),
            Value::String(state_name(self.state).into()),
        );
        if let Some(c) = self.completion {
            obj.insert("stateTransitionTime".into(), Value::String(c.to_string()));
        }
        if let Some((f, v)) = &self.payload {
            obj.insert(f.clone(), v.clone());
        }
        avro::from_json(schema, &Value::Object(obj)).map_err(|e| {
            Error::Corrupt(format!(
                "instant {} {} cannot be archived: {e}",
                self.time, self.action
            ))
        })
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Requested => "REQUESTED",
        State::Inflight => "INFLIGHT",
        State::Completed => "COMPLETED",
    }
}

fn parse_state(name: &str) -> Option<State> {
    match name {
        "REQUESTED" => Some(State::Requested),
        "INFLIGHT" => Some(State::Inflight),
        "COMPLETED" => Some(State::Completed),
        _ => None,
    }
}

/// The archive file name of version `n`.
pub fn file_name(n: u64) -> String {
    format!(".commits_.archive.{n}_{TOKEN}")
}

/// The version of an archive file name (`^\.commits_\.archive\.([0-9]+).*`).
pub fn file_version(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(".commits_.archive.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The bytes of an archive file holding `entries`, in blocks of [`BATCH`] records.
pub fn encode(entries: &[Entry]) -> Result<Bytes> {
    let mut out = Vec::new();
    for chunk in entries.chunks(BATCH) {
        let mut content = Vec::new();
        content.extend_from_slice(&BLOCK_VERSION.to_be_bytes());
        content.extend_from_slice(&(chunk.len() as i32).to_be_bytes());
        for e in chunk {
            let mut rec = Vec::new();
            e.to_datum()?.encode(&mut rec);
            content.extend_from_slice(&(rec.len() as i32).to_be_bytes());
            content.extend_from_slice(&rec);
        }
        let block = LogBlock {
            block_type: BlockType::AvroData,
            header: BTreeMap::from([(header::SCHEMA, entry_schema().to_owned())]),
            content: Bytes::from(content),
            footer: BTreeMap::new(),
        };
        out.extend_from_slice(&block.encode());
    }
    Ok(Bytes::from(out))
}

/// Reads every entry of an archive file (`path` names it in errors). A corrupt block, a block of
/// another type or an entry that does not decode is an error: the archive is history readers rely on.
pub fn decode(path: &str, bytes: &Bytes) -> Result<Vec<Entry>> {
    let bad = |reason: String| Error::Corrupt(format!("archived timeline file {path}: {reason}"));
    let mut out = Vec::new();
    for b in read_blocks(bytes) {
        let (offset, block) = match b {
            ReadBlock::Block { offset, block } => (offset, block),
            ReadBlock::Corrupt { offset, .. } => {
                return Err(bad(format!("corrupt block at byte {offset}")));
            }
        };
        if block.block_type != BlockType::AvroData {
            return Err(bad(format!(
                "block at byte {offset} is {:?}, not Avro data",
                block.block_type
            )));
        }
        let schema_json = block
            .header_value(header::SCHEMA)
            .ok_or_else(|| bad(format!("block at byte {offset} has no schema")))?;
        let schema = Schema::parse(schema_json).map_err(bad)?;
        let mut buf: &[u8] = &block.content;
        let version = take_i32(&mut buf).ok_or_else(|| bad("truncated block".into()))?;
        if !(1..=BLOCK_VERSION).contains(&version) {
            return Err(bad(format!("unknown block version {version}")));
        }
        let count = take_i32(&mut buf).ok_or_else(|| bad("truncated block".into()))?;
        for _ in 0..count.max(0) {
            let len = take_i32(&mut buf)
                .and_then(|l| usize::try_from(l).ok())
                .filter(|l| *l <= buf.len())
                .ok_or_else(|| bad(format!("truncated record in the block at byte {offset}")))?;
            let (mut rec, rest) = buf.split_at(len);
            buf = rest;
            let datum = avro::decode(&schema, &mut rec).map_err(&bad)?;
            out.push(entry_from_json(avro::to_json(&schema, &datum)).map_err(&bad)?);
        }
    }
    Ok(out)
}

fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}

fn entry_from_json(v: Value) -> std::result::Result<Entry, String> {
    let Value::Object(mut obj) = v else {
        return Err("an archive entry is not a record".into());
    };
    let text = |obj: &serde_json::Map<String, Value>, k: &str| {
        obj.get(k).and_then(Value::as_str).map(str::to_owned)
    };
    let time = text(&obj, "commitTime")
        .and_then(|t| t.parse::<InstantTime>().ok())
        .ok_or("an archive entry without a valid commitTime")?;
    let action = text(&obj, "actionType").ok_or("an archive entry without actionType")?;
    // Entries of Hudi releases before action states were recorded are completed instants.
    let state = match text(&obj, "actionState") {
        Some(s) => parse_state(&s).ok_or_else(|| format!("unknown action state {s:?}"))?,
        None => State::Completed,
    };
    let completion = text(&obj, "stateTransitionTime").and_then(|t| t.parse().ok());
    let payload = Action::from_name(&action)
        .and_then(|a| Entry::payload_field(a, state))
        .or_else(|| {
            // Hudi 0.x names the payload of a completed compaction `commit`, of indexing its own.
            [field::COMMIT, field::REPLACE, field::CLEAN, field::ROLLBACK]
                .into_iter()
                .find(|f| obj.contains_key(*f))
        })
        .and_then(|f| obj.remove(f).map(|v| (f.to_owned(), v)));
    Ok(Entry {
        time,
        action,
        state,
        completion,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> InstantTime {
        s.parse().expect("time")
    }

    #[test]
    fn the_entry_schema_parses_and_entries_round_trip() {
        Schema::parse(entry_schema()).expect("every named type is defined once");
        let commit = serde_json::json!({
            "partitionToWriteStats": {"p=1": [{"fileId": "f-0", "path": "p=1/f-0_1-0-1_20250101000000001.parquet",
                "prevCommit": "null", "numWrites": 3, "numInserts": 3, "partitionPath": "p=1", "fileSizeInBytes": 900}]},
            "extraMetadata": {"schema": "{}", "deltastreamer.checkpoint.key": "orders,0:4"},
            "operationType": "UPSERT",
            "version": 1,
        });
        let entries: Vec<Entry> = (0..23)
            .map(|i| Entry {
                time: t(&format!("{}", 20250101000000000u64 + i)),
                action: "commit".into(),
                state: [State::Requested, State::Inflight, State::Completed][i as usize % 3],
                completion: (i % 2 == 0).then(|| t("20250102000000000")),
                payload: (i % 3 == 2).then(|| (field::COMMIT.to_owned(), commit.clone())),
            })
            .collect();
        let bytes = encode(&entries).expect("encode");
        let blocks = read_blocks(&bytes);
        assert_eq!(blocks.len(), 3, "23 records in blocks of 10");
        for b in &blocks {
            let ReadBlock::Block { block, .. } = b else {
                panic!("corrupt block");
            };
            assert_eq!(block.block_type, BlockType::AvroData);
            assert_eq!(
                block.header.keys().copied().collect::<Vec<_>>(),
                [header::SCHEMA],
                "the header holds only the schema, as Hudi writes it"
            );
        }
        let back = decode("x", &bytes).expect("decode");
        assert_eq!(back, entries);
        let meta: lake_timeline::CommitMetadata =
            serde_json::from_value(back[2].payload.clone().expect("payload").1).expect("commit");
        assert_eq!(meta.checkpoint(), Some("orders,0:4"));
        assert_eq!(meta.write_stats().next().map(|w| w.num_inserts), Some(3));
    }

    #[test]
    fn damaged_archives_are_errors() {
        let e = Entry {
            time: t("20250101000000001"),
            action: "clean".into(),
            state: State::Requested,
            completion: None,
            payload: None,
        };
        let bytes = encode(&[e]).expect("encode");
        let mut cut = bytes.to_vec();
        cut.truncate(cut.len() - 20);
        assert!(decode("x", &Bytes::from(cut)).is_err());
        assert_eq!(file_version(&file_name(12)), Some(12));
        assert_eq!(file_version(".commits_.archive.3_1-0-1"), Some(3));
        assert_eq!(file_version("commits_.archive.3_1-0-1"), None);
    }
}
