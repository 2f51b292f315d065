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

use crate::log_format::{BlockType, LogBlock, ReadBlock, header, read_blocks};
use crate::{Error, Result};
use bytes::Bytes;
use lake_timeline::avro;
use lake_timeline::wire::{
    self, CLEAN_METADATA_SCHEMA, CLEANER_PLAN_SCHEMA, COMMIT_METADATA_SCHEMA,
    COMPACTION_PLAN_SCHEMA, SAVEPOINT_METADATA_SCHEMA,
};
use lake_timeline::{Action, InstantTime, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Root-relative folder of the archived timeline (`hoodie.archivelog.folder`, default `archived`).
pub const ARCHIVE_DIR: &str = ".hoodie/archived";
/// Write token of archive files (Hudi's `UNKNOWN_WRITE_TOKEN`).
const TOKEN: &str = "1-0-1";
/// Records per Avro block (`hoodie.commits.archival.batch`).
pub const BATCH: usize = 10;
/// Block content version.
const BLOCK_VERSION: i32 = 3;

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
            nullable(field::ROLLBACK, wire::rollback_metadata_schema()),
            nullable(field::SAVEPOINT, SAVEPOINT_METADATA_SCHEMA),
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

/// `HoodieArchivedMetaEntry` as lake writes and reads it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct MetaEntry {
    #[serde(rename = "hoodieCommitMetadata")]
    commit: Option<wire::CommitMetadata>,
    #[serde(rename = "hoodieCleanMetadata")]
    clean: Option<wire::CleanMetadata>,
    #[serde(rename = "hoodieRollbackMetadata")]
    rollback: Option<wire::RollbackMetadata>,
    #[serde(rename = "hoodieSavePointMetadata")]
    savepoint: Option<wire::SavepointMetadata>,
    #[serde(rename = "commitTime")]
    commit_time: Option<String>,
    #[serde(rename = "actionType")]
    action_type: Option<String>,
    version: Option<i32>,
    #[serde(rename = "hoodieCompactionPlan")]
    compaction_plan: Option<wire::CompactionPlan>,
    #[serde(rename = "hoodieCleanerPlan")]
    cleaner_plan: Option<wire::CleanerPlan>,
    #[serde(rename = "actionState")]
    action_state: Option<String>,
    #[serde(rename = "hoodieReplaceCommitMetadata")]
    replace: Option<wire::ReplaceCommitMetadata>,
    #[serde(rename = "HoodieInflightReplaceMetadata")]
    inflight_replace: Option<wire::CommitMetadata>,
    #[serde(rename = "stateTransitionTime")]
    state_transition_time: Option<String>,
}

impl MetaEntry {
    /// The payload as JSON with its field name.
    fn payload(&self) -> Option<(String, Value)> {
        let json = |f: &str, v: serde_json::Result<Value>| {
            v.ok().map(|mut v| {
                drop_nulls(&mut v);
                (f.to_owned(), v)
            })
        };
        if let Some(p) = &self.commit {
            return json(field::COMMIT, serde_json::to_value(p));
        }
        if let Some(p) = &self.replace {
            return json(field::REPLACE, serde_json::to_value(p));
        }
        if let Some(p) = &self.inflight_replace {
            return json(field::INFLIGHT_REPLACE, serde_json::to_value(p));
        }
        if let Some(p) = &self.clean {
            return json(field::CLEAN, serde_json::to_value(p));
        }
        if let Some(p) = &self.cleaner_plan {
            return json(field::CLEANER_PLAN, serde_json::to_value(p));
        }
        if let Some(p) = &self.rollback {
            return json(field::ROLLBACK, serde_json::to_value(p));
        }
        if let Some(p) = &self.savepoint {
            return json(field::SAVEPOINT, serde_json::to_value(p));
        }
        if let Some(p) = &self.compaction_plan {
            return json(field::COMPACTION_PLAN, serde_json::to_value(p));
        }
        None
    }

    /// Sets the payload from JSON (Hudi's field names; unknown fields are ignored).
    fn set_payload(&mut self, field_name: &str, v: &Value) -> std::result::Result<(), String> {
        fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> std::result::Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| e.to_string())
        }
        match field_name {
            field::COMMIT => self.commit = Some(typed(v)?),
            field::REPLACE => self.replace = Some(typed(v)?),
            field::INFLIGHT_REPLACE => self.inflight_replace = Some(typed(v)?),
            field::CLEAN => self.clean = Some(typed(v)?),
            field::CLEANER_PLAN => self.cleaner_plan = Some(typed(v)?),
            field::ROLLBACK => self.rollback = Some(typed(v)?),
            field::SAVEPOINT => self.savepoint = Some(typed(v)?),
            field::COMPACTION_PLAN => self.compaction_plan = Some(typed(v)?),
            other => return Err(format!("unknown archive payload field {other}")),
        }
        Ok(())
    }
}

/// Removes null members, so that readers' defaults apply (as to fields a writer did not set).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn parsed_entry_schema() -> Result<wire::Schema> {
    wire::schema(entry_schema())
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

    fn to_record(&self) -> Result<Vec<u8>> {
        let bad = |e: String| {
            Error::Corrupt(format!(
                "instant {} {} cannot be archived: {e}",
                self.time, self.action
            ))
        };
        let mut entry = MetaEntry {
            commit_time: Some(self.time.to_string()),
            action_type: Some(self.action.clone()),
            version: Some(1),
            action_state: Some(state_name(self.state).into()),
            state_transition_time: self.completion.map(|c| c.to_string()),
            ..Default::default()
        };
        if let Some((f, v)) = &self.payload {
            entry.set_payload(f, v).map_err(bad)?;
        }
        wire::encode_datum(&parsed_entry_schema()?, &entry).map_err(bad)
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
            let rec = e.to_record()?;
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
        // Bounded first (lake's decoder refuses what the bytes cannot hold), then typed.
        let bounded = avro::Schema::parse(schema_json).map_err(bad)?;
        let writer = wire::schema(schema_json).map_err(bad)?;
        let reader = parsed_entry_schema()?;
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
            let (rec, rest) = buf.split_at(len);
            buf = rest;
            avro::decode(&bounded, &mut &rec[..]).map_err(&bad)?;
            let entry: MetaEntry = wire::decode_datum(&writer, &reader, rec).map_err(&bad)?;
            out.push(entry_from(entry).map_err(&bad)?);
        }
    }
    Ok(out)
}

fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}

fn entry_from(e: MetaEntry) -> std::result::Result<Entry, String> {
    let time = e
        .commit_time
        .as_deref()
        .and_then(|t| t.parse::<InstantTime>().ok())
        .ok_or("an archive entry without a valid commitTime")?;
    let action = e
        .action_type
        .clone()
        .ok_or("an archive entry without actionType")?;
    // Entries of Hudi releases before action states were recorded are completed instants.
    let state = match e.action_state.as_deref() {
        Some(s) => parse_state(s).ok_or_else(|| format!("unknown action state {s:?}"))?,
        None => State::Completed,
    };
    let completion = e
        .state_transition_time
        .as_deref()
        .and_then(|t| t.parse().ok());
    Ok(Entry {
        time,
        action,
        state,
        completion,
        payload: e.payload(),
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
        avro::Schema::parse(entry_schema()).expect("lake's validator parses it");
        wire::schema(entry_schema()).expect("every named type is defined once");
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
        let typed = |e: &Entry| {
            e.payload.as_ref().map(|(f, v)| {
                let c: wire::CommitMetadata = serde_json::from_value(v.clone()).expect("typed");
                (f.clone(), c)
            })
        };
        assert_eq!(back.len(), entries.len());
        for (b, e) in back.iter().zip(&entries) {
            assert_eq!(
                (b.time, &b.action, b.state, b.completion, typed(b)),
                (e.time, &e.action, e.state, e.completion, typed(e))
            );
        }
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
