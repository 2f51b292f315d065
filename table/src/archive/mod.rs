//! The archived timeline: instants moved out of the active timeline by archival, read from
//! `.hoodie/archived/` (timeline layout 1, [`v1`]) or `.hoodie/timeline/history/` (layout 2, the LSM
//! history, [`lsm`]).
//!
//! Snapshot reads never need it — files older than the active timeline count as committed, as in
//! Hudi — but time travel and incremental reads whose range starts before the active timeline do,
//! and so do `lake timeline --archived` and a checkpoint recorded only by archived commits. An
//! instant can be both archived and active after an archival that was interrupted; the active copy
//! wins. Decoded archive files are kept per process (they never change once written).

pub mod lsm;
pub mod v1;

use lake_timeline::{Action, CommitMetadata, InstantTime, Layout, State, Storage};
use serde_json::Value;

use crate::{Error, Result};

/// What an archived instant's completed file held.
#[derive(Clone, Debug, PartialEq)]
pub enum Details {
    /// Nothing (an empty file, or an action archived without its content).
    None,
    /// Layout 1: the payload record as JSON (field names as in Hudi's Avro schemas).
    Json(Value),
    /// Layout 2: the completed file's exact bytes (an Avro container).
    Avro(bytes::Bytes),
}

/// One completed, archived instant.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchivedInstant {
    /// Requested time.
    pub time: InstantTime,
    /// The action of its completed file (`commit` for a compaction); `None` for an action lake
    /// does not know, which it shows by name only.
    pub action: Option<Action>,
    /// The action's name as archived.
    pub action_name: String,
    /// Completion time, when archived with one (always on layout 2).
    pub completion: Option<InstantTime>,
    /// The completed file's content.
    pub details: Details,
}

impl ArchivedInstant {
    /// Whether this instant made data visible (commit, deltacommit, replacecommit).
    pub fn writes_data(&self) -> bool {
        self.action.is_some_and(Action::writes_data)
    }

    /// The commit metadata of a commit, deltacommit or replacecommit.
    pub fn commit_metadata(&self) -> std::result::Result<CommitMetadata, String> {
        match &self.details {
            Details::None => Ok(CommitMetadata::default()),
            Details::Json(v) => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
            Details::Avro(b) => CommitMetadata::from_avro_bytes(b),
        }
    }
}

/// The archived instants of a table, oldest first.
#[derive(Clone, Debug, Default)]
pub struct ArchivedTimeline {
    instants: Vec<ArchivedInstant>,
}

impl ArchivedTimeline {
    /// Reads the table's archived timeline (empty when nothing was archived).
    pub async fn load(storage: &Storage, layout: Layout) -> Result<Self> {
        let mut instants = match layout {
            Layout::V1 => load_v1(storage).await?,
            Layout::V2 => load_v2(storage).await?,
        };
        // Stable: the first file listed keeps an instant found twice.
        instants.sort_by_key(|i| i.time);
        instants.dedup_by_key(|i| i.time);
        Ok(Self { instants })
    }

    /// Every archived completed instant, oldest first.
    pub fn instants(&self) -> &[ArchivedInstant] {
        &self.instants
    }

    /// Archived completed commits, deltacommits and replacecommits, oldest first.
    pub fn completed_writes(&self) -> impl Iterator<Item = &ArchivedInstant> {
        self.instants.iter().filter(|i| i.writes_data())
    }

    /// The archived instant at `time`, if any.
    pub fn find(&self, time: InstantTime) -> Option<&ArchivedInstant> {
        self.instants
            .binary_search_by(|i| i.time.cmp(&time))
            .ok()
            .map(|i| &self.instants[i])
    }
}

async fn load_v1(storage: &Storage) -> Result<Vec<ArchivedInstant>> {
    let (files, _) = storage.list_dir(v1::ARCHIVE_DIR).await?;
    let mut names: Vec<(u64, String, u64)> = files
        .iter()
        .filter_map(|m| {
            let n = m.location.filename()?;
            v1::file_version(n).map(|v| (v, n.to_owned(), m.size))
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for (_, name, size) in names {
        let rel = format!("{}/{name}", v1::ARCHIVE_DIR);
        let key = format!("{}#{size}", storage.display(&rel));
        if let Some(hit) = cached(&key) {
            out.extend(hit.iter().cloned());
            continue;
        }
        let bytes = storage.get(&rel).await?;
        let mut decoded = Vec::new();
        for e in v1::decode(&storage.display(&rel), &bytes)? {
            if e.state != State::Completed {
                continue;
            }
            let action = Action::from_name(&e.action);
            let details = match e.payload {
                Some((_, v)) => Details::Json(v),
                None => Details::None,
            };
            decoded.push(ArchivedInstant {
                time: e.time,
                action,
                action_name: e.action,
                completion: e.completion,
                details,
            });
        }
        remember(key, &decoded);
        out.extend(decoded);
    }
    Ok(out)
}

async fn load_v2(storage: &Storage) -> Result<Vec<ArchivedInstant>> {
    let mut out = Vec::new();
    for rel in lsm::files(storage).await? {
        let key = storage.display(&rel);
        if let Some(hit) = cached(&key) {
            out.extend(hit.iter().cloned());
            continue;
        }
        let rows = lsm::read_file(&key, storage.get(&rel).await?)?;
        let decoded: Vec<ArchivedInstant> = rows
            .into_iter()
            .map(|r| ArchivedInstant {
                time: r.time,
                action: Action::from_name(&r.action),
                action_name: r.action,
                completion: r.completion,
                details: r.metadata.map_or(Details::None, Details::Avro),
            })
            .collect();
        remember(key, &decoded);
        out.extend(decoded);
    }
    Ok(out)
}

type FileCache =
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Vec<ArchivedInstant>>>>;

/// Decoded archive files, by path and size: archive files are written once and never change, so
/// the reads that consult the archive (time travel, incremental ranges, the cleaner's retained
/// point) decode each file once per process.
fn file_cache() -> &'static FileCache {
    static CACHE: std::sync::OnceLock<FileCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cached(key: &str) -> Option<std::sync::Arc<Vec<ArchivedInstant>>> {
    file_cache().lock().ok()?.get(key).cloned()
}

fn remember(key: String, instants: &[ArchivedInstant]) {
    if let Ok(mut c) = file_cache().lock() {
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(key, std::sync::Arc::new(instants.to_vec()));
    }
}

/// An archived instant's metadata that does not decode, as an error naming the instant.
pub fn bad_details(i: &ArchivedInstant, reason: String) -> Error {
    Error::Corrupt(format!(
        "archived instant {} {}: {reason}",
        i.time, i.action_name
    ))
}
