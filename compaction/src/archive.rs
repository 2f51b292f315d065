//! Timeline archival: moves the oldest completed instants out of the active timeline into
//! `.hoodie/archived/` (the layout Hudi 0.x and hudi-rs expect of table version 6), so the active
//! timeline stays bounded and every read lists a few files instead of the table's whole history.
//!
//! What is archived (Hudi's `hoodie.keep.min.commits` / `hoodie.keep.max.commits`): nothing while the
//! completed writes number at most `max`; then the oldest writes down to `min`, and every other
//! instant older than the first write kept — always a prefix of the timeline, so "older than the
//! active timeline" keeps meaning "archived and committed" for every reader, and a ledger entry of an
//! archived instant is never rolled forward again. The prefix never reaches:
//! - the earliest savepoint, or the earliest pending instant of any action;
//! - the writes the latest clean's `earliestCommitToRetain` keeps (what the cleaner still needs);
//! - on merge-on-read, the deltacommits since the latest completed compaction (what scheduling counts);
//! - a replacecommit whose replaced file groups still have files (readers must keep hiding them).
//!
//! Order, as Hudi's archiver (HUDI-7207): the archive file is written whole (a new version each
//! time: object stores cannot append), then the archived instants' requested and inflight files are
//! deleted, then their completed files one by one, oldest first. A crash leaves a readable table at
//! every step; the next run archives what is left again, and readers de-duplicate.

use std::collections::BTreeMap;

use bytes::Bytes;
use lake_table::archive::v1::{self, Entry};
use lake_table::timeline::avro;
use lake_table::timeline::{Action, Instant, InstantTime, Layout, State, Timeline};
use lake_table::{Error, Result, Table, TableType};
use serde_json::Value;

/// How many completed writes the active timeline keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchivePolicy {
    /// Writes kept after archiving (`hoodie.keep.min.commits`, default 20).
    pub min_commits: usize,
    /// Archive only once there are more writes than this (`hoodie.keep.max.commits`, default 30).
    pub max_commits: usize,
}

impl Default for ArchivePolicy {
    fn default() -> Self {
        Self {
            min_commits: 20,
            max_commits: 30,
        }
    }
}

/// What an archival did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchiveReport {
    /// The archived instants (completed), oldest first.
    pub archived: Vec<Instant>,
    /// The archive file written (root-relative), if any.
    pub file: Option<String>,
    /// Timeline files deleted from the active timeline.
    pub files_deleted: usize,
    /// Why archival stopped where it did (or did not start).
    pub reason: String,
}

/// Archives the oldest instants of `table`'s active timeline under `policy`.
pub async fn archive(table: &Table, policy: ArchivePolicy) -> Result<ArchiveReport> {
    if policy.min_commits == 0 || policy.min_commits >= policy.max_commits {
        return Err(Error::Unsupported(format!(
            "archival keeps between min and max commits, 0 < min < max (got min {} and max {})",
            policy.min_commits, policy.max_commits
        )));
    }
    if table.config().layout() != Layout::V1 {
        return Err(Error::Unsupported(
            "lake archives timelines of table version 6 (layout 1); Hudi 1.x archives versions 8 and 9 into the LSM history, which lake reads".into(),
        ));
    }
    let timeline = lake_table::commit::start(table).await?.timeline;
    let (cutoff, reason) = cutoff(table, &timeline, policy).await?;
    let Some(cutoff) = cutoff else {
        return Ok(ArchiveReport {
            reason,
            ..Default::default()
        });
    };
    let archived: Vec<Instant> = timeline
        .instants()
        .iter()
        .filter(|i| i.time < cutoff)
        .copied()
        .collect();
    if archived.is_empty() {
        return Ok(ArchiveReport {
            reason,
            ..Default::default()
        });
    }
    // Every state file of the archived instants, as listed (one entry per file).
    let storage = table.storage();
    let (listed, _) = storage.list_dir(Layout::V1.dir()).await?;
    let mut files: BTreeMap<(InstantTime, State), Vec<(Instant, String)>> = BTreeMap::new();
    for m in &listed {
        let Some(name) = m.location.filename() else {
            continue;
        };
        if let Some(i) = Instant::parse_file_name(name)
            && i.time < cutoff
            && i.action != Action::Savepoint
        {
            files
                .entry((i.time, i.state))
                .or_default()
                .push((i, name.to_owned()));
        }
    }
    let mut entries = Vec::new();
    for (inst, name) in files.values().flatten() {
        let rel = format!("{}/{name}", Layout::V1.dir());
        let bytes = storage.get_opt(&rel).await?.unwrap_or_default();
        let payload = match Entry::payload_field(inst.action, inst.state) {
            Some(field) => payload(&bytes)
                .map_err(|reason| Error::Corrupt(format!("{}: {reason}", storage.display(&rel))))?
                .map(|v| (field.to_owned(), v)),
            None => None,
        };
        entries.push(Entry {
            time: inst.time,
            action: inst.action.name().to_owned(),
            state: inst.state,
            completion: None,
            payload,
        });
    }
    let file = write_archive(table, &v1::encode(&entries)?).await?;
    // Pending states first, then completed files one by one, oldest first.
    let mut deleted = 0;
    for ((_, state), group) in &files {
        if *state != State::Completed {
            for (_, name) in group {
                storage
                    .delete(&format!("{}/{name}", Layout::V1.dir()))
                    .await?;
                deleted += 1;
            }
        }
    }
    for ((_, state), group) in &files {
        if *state == State::Completed {
            for (_, name) in group {
                storage
                    .delete(&format!("{}/{name}", Layout::V1.dir()))
                    .await?;
                deleted += 1;
            }
        }
    }
    Ok(ArchiveReport {
        archived,
        file: Some(file),
        files_deleted: deleted,
        reason,
    })
}

/// The first instant time that stays active (everything older is archived), and why.
async fn cutoff(
    table: &Table,
    timeline: &Timeline,
    policy: ArchivePolicy,
) -> Result<(Option<InstantTime>, String)> {
    let writes: Vec<InstantTime> = timeline.completed_writes().map(|i| i.time).collect();
    if writes.len() <= policy.max_commits {
        return Ok((
            None,
            format!(
                "{} completed writes, archival starts above {}",
                writes.len(),
                policy.max_commits
            ),
        ));
    }
    let mut bound = writes[writes.len() - policy.min_commits];
    let mut reason = format!("keeps the latest {} writes", policy.min_commits);
    let mut limit = |t: Option<InstantTime>, why: &str| {
        if let Some(t) = t
            && t < bound
        {
            bound = t;
            reason = why.to_owned();
        }
    };
    limit(
        timeline.savepoints().first().map(|s| s.time),
        "stops at the earliest savepoint",
    );
    limit(
        timeline.pending().next().map(|i| i.time),
        "stops at the earliest pending instant",
    );
    limit(
        lake_table::view::earliest_retained(timeline).await?,
        "keeps what the cleaner retains",
    );
    if table.config().table_type == TableType::MergeOnRead {
        let last_compaction = timeline
            .compactions()
            .filter(|i| i.is_completed())
            .last()
            .map(|i| i.time);
        limit(
            timeline
                .completed_writes()
                .find(|i| {
                    i.action == Action::DeltaCommit && last_compaction.is_none_or(|c| i.time > c)
                })
                .map(|i| i.time),
            "keeps the deltacommits since the latest compaction",
        );
    }
    limit(
        live_replace(table, timeline).await?,
        "keeps a replacecommit whose replaced files remain",
    );
    Ok((Some(bound), reason))
}

/// The earliest completed replacecommit whose replaced file groups still have files.
async fn live_replace(table: &Table, timeline: &Timeline) -> Result<Option<InstantTime>> {
    let replaces: Vec<Instant> = timeline
        .completed_writes()
        .filter(|i| i.action == Action::ReplaceCommit)
        .copied()
        .collect();
    for r in replaces {
        let meta = timeline.commit_metadata(&r).await?;
        for (partition, ids) in &meta.partition_to_replace_file_ids {
            let (files, _) = table.storage().list_dir(partition).await?;
            let live = files.iter().filter_map(|m| m.location.filename()).any(|n| {
                ids.iter()
                    .any(|id| n.starts_with(&format!("{id}_")) || n.starts_with(&format!(".{id}_")))
            });
            if live {
                return Ok(Some(r.time));
            }
        }
    }
    Ok(None)
}

/// A timeline file's content as the JSON of its payload record: JSON metadata as is, Avro
/// containers resolved by field name; `None` for an empty file.
fn payload(bytes: &[u8]) -> std::result::Result<Option<Value>, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Ok(None),
        Some(b'{') => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(_) => {
            let (schema_json, records) = avro::read_container(bytes)?;
            let schema = avro::Schema::parse(&schema_json)?;
            Ok(records.first().map(|r| avro::to_json(&schema, r)))
        }
    }
}

/// Writes the next archive file version, create-if-absent (a concurrent archival takes the next).
async fn write_archive(table: &Table, bytes: &Bytes) -> Result<String> {
    let storage = table.storage();
    let (listed, _) = storage.list_dir(v1::ARCHIVE_DIR).await?;
    let mut version = listed
        .iter()
        .filter_map(|m| m.location.filename())
        .filter_map(v1::file_version)
        .max()
        .unwrap_or(0);
    for _ in 0..8 {
        version += 1;
        let rel = format!("{}/{}", v1::ARCHIVE_DIR, v1::file_name(version));
        if storage.put_if_absent(&rel, bytes.clone()).await? {
            return Ok(rel);
        }
    }
    Err(Error::Corrupt(format!(
        "could not claim a new archive file in {} after 8 attempts",
        storage.display(v1::ARCHIVE_DIR)
    )))
}
