//! The LSM timeline history of timeline layout 2 (table versions 8 and 9):
//! `.hoodie/timeline/history/` holds `_version_` (the latest snapshot version), one JSON manifest per
//! version (`manifest_<N>`: `{"files":[{"fileName","fileLen"}]}`) and Parquet files
//! `<min>_<max>_<layer>.parquet` of `HoodieLSMTimelineInstant` rows — one row per archived completed
//! action: requested and completion time, action, and the raw bytes of its completed file and plan.
//!
//! `_version_` is rewritten delete-then-create, so a missing or unreadable one falls back to the
//! highest manifest; compaction may leave an instant in two files, so the archived timeline
//! de-duplicates rows by instant time.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use bytes::Bytes;
use lake_timeline::{InstantTime, Storage};
use serde::Deserialize;

use crate::{Error, Result};

/// Root-relative folder of the LSM history.
pub const HISTORY_DIR: &str = ".hoodie/timeline/history";

/// One archived action.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Requested time.
    pub time: InstantTime,
    /// Completion time.
    pub completion: Option<InstantTime>,
    /// The completed action (`commit` for a compaction, `replacecommit` for a clustering).
    pub action: String,
    /// The completed file's bytes (an Avro container), if it was not empty.
    pub metadata: Option<Bytes>,
    /// The plan's bytes, if any.
    pub plan: Option<Bytes>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestFile {
    file_name: String,
}

/// The latest manifest version: `_version_`, else the highest `manifest_<N>`; `None` when there is
/// no history.
async fn latest_version(storage: &Storage) -> Result<Option<u64>> {
    if let Some(bytes) = storage.get_opt(&format!("{HISTORY_DIR}/_version_")).await?
        && let Ok(v) = String::from_utf8_lossy(&bytes).trim().parse::<u64>()
    {
        return Ok(Some(v));
    }
    let (files, _) = storage.list_dir(HISTORY_DIR).await?;
    Ok(files
        .iter()
        .filter_map(|m| m.location.filename())
        .filter_map(|n| n.strip_prefix("manifest_"))
        .filter_map(|n| n.parse::<u64>().ok())
        .max())
}

/// The root-relative paths of the history files the latest manifest lists.
pub async fn files(storage: &Storage) -> Result<Vec<String>> {
    let Some(version) = latest_version(storage).await? else {
        return Ok(Vec::new());
    };
    let path = format!("{HISTORY_DIR}/manifest_{version}");
    let Some(bytes) = storage.get_opt(&path).await? else {
        return Err(Error::Corrupt(format!(
            "timeline history: {} names version {version}, whose manifest is missing",
            storage.display(&format!("{HISTORY_DIR}/_version_"))
        )));
    };
    let manifest: Manifest = if bytes.iter().all(u8::is_ascii_whitespace) {
        Manifest { files: Vec::new() }
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Corrupt(format!(
                "timeline history manifest {}: {e}",
                storage.display(&path)
            ))
        })?
    };
    Ok(manifest
        .files
        .into_iter()
        .map(|f| format!("{HISTORY_DIR}/{}", f.file_name))
        .collect())
}

/// Reads the rows of one history Parquet file (`path` names it in errors).
pub fn read_file(path: &str, bytes: Bytes) -> Result<Vec<Row>> {
    let (_, batches) = crate::read_parquet(path, bytes)?;
    let bad = |reason: String| Error::Corrupt(format!("timeline history file {path}: {reason}"));
    let mut out = Vec::new();
    for batch in batches {
        let col = |name: &str| batch.column_by_name(name).cloned();
        let strings = |name: &str| -> Result<Vec<Option<String>>> {
            let Some(c) = col(name) else {
                return Ok(vec![None; batch.num_rows()]);
            };
            let c = arrow::compute::cast(&c, &DataType::Utf8)
                .map_err(|e| bad(format!("column {name}: {e}")))?;
            let c = c.as_string::<i32>();
            Ok((0..c.len())
                .map(|i| c.is_valid(i).then(|| c.value(i).to_owned()))
                .collect())
        };
        let binaries = |name: &str| -> Result<Vec<Option<Bytes>>> {
            let Some(c) = col(name) else {
                return Ok(vec![None; batch.num_rows()]);
            };
            let c = arrow::compute::cast(&c, &DataType::Binary)
                .map_err(|e| bad(format!("column {name}: {e}")))?;
            let c = c.as_binary::<i32>();
            Ok((0..c.len())
                .map(|i| c.is_valid(i).then(|| Bytes::copy_from_slice(c.value(i))))
                .collect())
        };
        let times = strings("instantTime")?;
        let completions = strings("completionTime")?;
        let actions = strings("action")?;
        let metadata = binaries("metadata")?;
        let plans = binaries("plan")?;
        for i in 0..batch.num_rows() {
            let time = times[i]
                .as_deref()
                .and_then(|t| t.parse::<InstantTime>().ok())
                .ok_or_else(|| bad(format!("row {i} has no valid instantTime")))?;
            let action = actions[i]
                .clone()
                .ok_or_else(|| bad(format!("row {i} has no action")))?;
            out.push(Row {
                time,
                completion: completions[i].as_deref().and_then(|t| t.parse().ok()),
                action,
                metadata: metadata[i].clone().filter(|b| !b.is_empty()),
                plan: plans[i].clone().filter(|b| !b.is_empty()),
            });
        }
    }
    Ok(out)
}
