//! Rollback of failed writes: the files an inflight instant wrote (found through its markers) are
//! deleted and a completed rollback instant is recorded, in Hudi's Avro plan/metadata formats.
//!
//! Order: rollback REQUESTED (plan) → INFLIGHT → data files and markers deleted → rollback COMPLETED
//! → the failed instant's own files removed from the timeline. A crash anywhere is repaired by the
//! next writer: a pending rollback is resumed, a failed instant still on the timeline is rolled back.

use std::collections::BTreeMap;
use std::time::Instant as Clock;

use bytes::Bytes;
use lake_timeline::wire;
use lake_timeline::{Action, Instant, InstantTime, State, Storage, Timeline};

use super::heartbeat::expired;
use super::ledger::{self, Claim, Header};
use crate::layout::{LogFile, MARKERS_DIR, file_of_marker};
use crate::log_format::{self, ReadBlock};
use crate::{Error, Result, Table};

/// Pending instants a writer must roll back before writing: failed commits and deltacommits.
fn failed_writes(timeline: &Timeline) -> Vec<Instant> {
    timeline
        .pending()
        .filter(|i| matches!(i.action, Action::Commit | Action::DeltaCommit))
        .copied()
        .collect()
}

/// Rolls back every failed write whose writer is gone (heartbeat missing or expired) and finishes
/// interrupted rollbacks; returns the rolled-back times. Writes that are still running are left
/// alone: a writer never undoes another live writer's work.
pub(crate) async fn rollback_failed_writes(
    table: &Table,
    timeline: &Timeline,
) -> Result<Vec<InstantTime>> {
    let pending = failed_writes(timeline);
    let mut failed = if pending.is_empty() {
        Vec::new()
    } else {
        expired(table.storage(), pending.into_iter()).await?
    };
    if !failed.is_empty() {
        // A write that finished (completed, or rolled itself back) after `timeline` was read has no
        // heartbeat either: only what is still pending now is a failed write.
        let now = table.timeline().await?;
        failed.retain(|i| now.find(i.time).is_some_and(|n| !n.is_completed()));
    }
    let pending_rollback = timeline
        .pending()
        .find(|i| i.action == Action::Rollback)
        .copied();
    if failed.is_empty() && pending_rollback.is_none() {
        return Ok(Vec::new());
    }
    let time = match pending_rollback {
        Some(r) => r.time,
        None => super::transaction::claim_time(table.storage(), timeline.latest_time()).await?,
    };
    let owned = rollback(table, timeline, time, &failed).await?;
    Ok(owned.iter().map(|i| i.time).collect())
}

/// Rolls back one pending write instant.
pub(crate) async fn rollback_instant(
    table: &Table,
    timeline: &Timeline,
    target: &Instant,
) -> Result<Option<InstantTime>> {
    let time = super::transaction::claim_time(table.storage(), timeline.latest_time()).await?;
    let owned = rollback(table, timeline, time, std::slice::from_ref(target)).await?;
    Ok((!owned.is_empty()).then_some(time))
}

async fn marker_files(storage: &Storage, instant: InstantTime) -> Result<Vec<(String, String)>> {
    let dir = format!("{MARKERS_DIR}/{instant}");
    let markers = storage.list_recursive(&dir).await?;
    let mut out = Vec::new();
    for m in markers {
        let rel = storage.relative(&m.location);
        let inside = rel
            .strip_prefix(&format!("{dir}/"))
            .unwrap_or(&rel)
            .to_owned();
        if let Some(file) = file_of_marker(&inside) {
            out.push((rel.clone(), file.to_owned()));
        }
    }
    Ok(out)
}

/// Rolls back `targets` under the rollback instant `time`; returns the targets it owned (those no
/// earlier decision completed or rolled back).
async fn rollback(
    table: &Table,
    timeline: &Timeline,
    time: InstantTime,
    targets: &[Instant],
) -> Result<Vec<Instant>> {
    let storage = table.storage();
    let layout = table.config().layout();
    let started = Clock::now();
    let owned = decide(table, time, targets).await?;
    if owned.is_empty() && !targets.is_empty() {
        return Ok(owned);
    }
    let targets = owned.as_slice();
    let mut per_target = Vec::new();
    for t in targets {
        let mut files = Vec::new();
        for (marker, file) in marker_files(storage, t.time).await? {
            if written_by(storage, &file, t.time).await? {
                files.push((marker, file));
            } else {
                // A log file of the same name that another writer created: not ours to delete.
                storage.delete(&marker).await?;
            }
        }
        per_target.push((*t, files));
    }
    let requested = Instant::new(time, Action::Rollback, State::Requested);
    if timeline.find(time).is_none() {
        let plan = rollback_plan(targets.first(), &per_target)?;
        Timeline::publish(storage, layout, &requested, Bytes::from(plan)).await?;
    }
    let inflight = Instant::new(time, Action::Rollback, State::Inflight);
    if !storage.exists(&timeline.instant_path(&inflight)).await? {
        Timeline::publish(storage, layout, &inflight, Bytes::new()).await?;
    }
    let mut deleted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, files) in &per_target {
        for (marker, file) in files {
            storage.delete(file).await?;
            storage.delete(marker).await?;
            let (part, _) = file.rsplit_once('/').unwrap_or(("", file));
            deleted
                .entry(part.to_owned())
                .or_default()
                .push(storage.display(file));
        }
    }
    let total: usize = deleted.values().map(Vec::len).sum();
    let meta = wire::RollbackMetadata {
        start_rollback_time: time.to_string(),
        time_taken_in_millis: started.elapsed().as_millis() as i64,
        total_files_deleted: total as i32,
        commits_rollback: targets.iter().map(|t| t.time.to_string()).collect(),
        partition_metadata: deleted
            .iter()
            .map(|(p, files)| {
                let m = wire::RollbackPartitionMetadata {
                    partition_path: p.clone(),
                    success_delete_files: files.clone(),
                    ..Default::default()
                };
                (p.clone(), m)
            })
            .collect(),
        version: Some(1),
        instants_rollback: targets.iter().map(wire::InstantInfo::from).collect(),
    };
    let bytes = wire::write_container(wire::rollback_metadata_schema(), &meta)
        .map_err(|e| Error::Corrupt(format!("rollback metadata {time}: {e}")))?;
    let done = Instant::new(time, Action::Rollback, State::Completed);
    // Another process finishing this same decided rollback may have completed it first (its
    // metadata differs only in timing and in which of them deleted which file): done either way.
    match super::transaction::publish_file(storage, layout, &done.file_name(), &bytes).await {
        Err(Error::Timeline(e @ lake_timeline::Error::CommitConflict { .. })) => {
            let path = timeline.instant_path(&done);
            let theirs = storage.get_opt(&path).await?.unwrap_or_default();
            if !rolls_back_all(&theirs, targets) {
                return Err(e.into());
            }
        }
        other => other?,
    }
    for t in targets {
        for state in [State::Inflight, State::Requested] {
            let f = Instant::new(t.time, t.action, state);
            storage.delete(&timeline.instant_path(&f)).await?;
        }
    }
    Ok(targets.to_vec())
}

/// Whether completed rollback metadata (`HoodieRollbackMetadata`) names every one of `targets` in
/// `commitsRollback`.
fn rolls_back_all(metadata: &[u8], targets: &[Instant]) -> bool {
    let Ok(Some(meta)) =
        wire::read_container::<wire::RollbackMetadata>(wire::rollback_metadata_schema(), metadata)
    else {
        return false;
    };
    targets.iter().all(|t| {
        let t = t.time.to_string();
        meta.commits_rollback.contains(&t)
    })
}

/// Decides on the ledger to roll back `targets` under the rollback instant `time`: targets whose
/// completion was decided first are published instead (they are not failed after all) and dropped;
/// returns the targets this rollback owns.
async fn decide(table: &Table, time: InstantTime, targets: &[Instant]) -> Result<Vec<Instant>> {
    let storage = table.storage();
    let mut remaining: Vec<Instant> = targets.to_vec();
    let mut seen = 0;
    loop {
        let entries = ledger::entries_after(storage, seen).await?;
        let mut timeline: Option<Timeline> = None;
        for e in entries {
            seen = e.seq;
            if e.header.rollback.is_empty() {
                remaining.retain(|t| !e.publishes(t.time));
            } else if e.instant.time != time && remaining.iter().any(|t| e.rolls_back(t.time)) {
                // Another rollback decided first: it is on the timeline (pending rollbacks are
                // resumed, completed ones are done), so the target is not ours. One that died before
                // publishing its plan left the target for us.
                if timeline.is_none() {
                    timeline = Some(table.timeline().await?);
                }
                let Some(tl) = timeline.as_ref() else {
                    continue;
                };
                match tl.find(e.instant.time) {
                    // Finished but killed before its last step: remove the target's instant
                    // files, which is all that was left to do.
                    Some(r) if r.is_completed() => {
                        for t in remaining.iter().filter(|t| e.rolls_back(t.time)) {
                            for state in [State::Inflight, State::Requested] {
                                let f = Instant::new(t.time, t.action, state);
                                storage.delete(&tl.instant_path(&f)).await?;
                            }
                        }
                        remaining.retain(|t| !e.rolls_back(t.time));
                    }
                    Some(_) => remaining.retain(|t| !e.rolls_back(t.time)),
                    None => {}
                }
            }
        }
        if remaining.is_empty() {
            // Completions decided first: make sure they are visible.
            super::transaction::start_for_restore(table).await?;
            return Ok(remaining);
        }
        let header = Header {
            file: Instant::new(time, Action::Rollback, State::Requested).file_name(),
            rollback: remaining.iter().map(|t| t.time.to_string()).collect(),
        };
        let bytes = ledger::encode(&header, &[]);
        if ledger::claim(storage, seen + 1, bytes).await? == Claim::Won {
            if remaining.len() < targets.len() {
                super::transaction::start_for_restore(table).await?;
            }
            return Ok(remaining);
        }
    }
}

/// Whether the file a marker of `instant` names was written by it: base files carry the instant in
/// their name; a log file is checked by the instant of its first block (another writer may have
/// created a log of the same name while this one lost the race).
async fn written_by(
    storage: &lake_timeline::Storage,
    file: &str,
    instant: InstantTime,
) -> Result<bool> {
    let (part, name) = file.rsplit_once('/').unwrap_or(("", file));
    if LogFile::parse(part, name, 0).is_none() {
        return Ok(true);
    }
    let Some(bytes) = storage.get_opt(file).await? else {
        return Ok(true);
    };
    let first = log_format::read_blocks(&bytes)
        .into_iter()
        .find_map(|b| match b {
            ReadBlock::Block { block, .. } => Some(block),
            ReadBlock::Corrupt { .. } => None,
        });
    let t = instant.to_string();
    Ok(match first {
        Some(b) => b.header_value(log_format::header::INSTANT_TIME) == Some(t.as_str()),
        // Unreadable: only the writer of a torn upload leaves such a file.
        None => true,
    })
}

fn rollback_plan(
    target: Option<&Instant>,
    per_target: &[(Instant, Vec<(String, String)>)],
) -> Result<Vec<u8>> {
    let mut by_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, files) in per_target {
        for (_, file) in files {
            let (part, _) = file.rsplit_once('/').unwrap_or(("", file));
            by_partition
                .entry(part.to_owned())
                .or_default()
                .push(file.clone());
        }
    }
    let plan = wire::RollbackPlan {
        instant_to_rollback: target.map(wire::InstantInfo::from),
        rollback_requests: Some(
            by_partition
                .into_iter()
                .map(|(p, files)| wire::RollbackRequest {
                    partition_path: p,
                    files_to_be_deleted: files,
                    ..Default::default()
                })
                .collect(),
        ),
        version: Some(1),
    };
    wire::write_container(wire::rollback_plan_schema(), &plan)
        .map_err(|e| Error::Corrupt(format!("rollback plan: {e}")))
}

/// Removes what failed writes older than `before` left behind and the timeline no longer names: for
/// each marker folder `.hoodie/.temp/<t>` with `t < before`, the files its markers name that `t` wrote
/// — unless `t` is a completed instant on `timeline` — then the markers. Archival calls this before
/// the active timeline moves past `t`: from then on a file of `t` would count as committed. Returns
/// the failed instants whose files were removed.
pub async fn remove_orphans(
    storage: &Storage,
    timeline: &Timeline,
    before: InstantTime,
) -> Result<Vec<InstantTime>> {
    let (_, dirs) = storage.list_dir(MARKERS_DIR).await?;
    let mut removed = Vec::new();
    for d in dirs {
        let Ok(t) = d.parse::<InstantTime>() else {
            continue;
        };
        if t >= before {
            continue;
        }
        let completed = timeline.find(t).is_some_and(|i| i.is_completed());
        if !completed {
            for (_, file) in marker_files(storage, t).await? {
                if written_by(storage, &file, t).await? {
                    storage.delete(&file).await?;
                }
            }
            removed.push(t);
        }
        for (marker, _) in marker_files(storage, t).await? {
            storage.delete(&marker).await?;
        }
    }
    Ok(removed)
}

impl Table {
    /// Publishes decided commits, then rolls back every failed write whose heartbeat expired and
    /// finishes interrupted rollbacks; returns the rolled-back instant times.
    pub async fn rollback_failed_writes(&self) -> Result<Vec<InstantTime>> {
        let timeline = super::transaction::start(self).await?.timeline;
        rollback_failed_writes(self, &timeline).await
    }

    /// Rolls back the pending writes whose writer is gone (heartbeat missing or expired), leaving
    /// writes that are still running alone; for table services that run beside writers.
    pub async fn rollback_expired_writes(&self) -> Result<Vec<InstantTime>> {
        self.rollback_failed_writes().await
    }

    /// Rolls back one pending write instant, even if its writer is still running (that writer then
    /// fails with [`crate::Error::RolledBack`]); returns the rollback instant, or `None` when the
    /// instant's completion was decided first (it is published instead) or another rollback owns
    /// it. Completed instants are refused: undoing committed data is a restore to a savepoint.
    pub async fn rollback_pending(&self, time: InstantTime) -> Result<Option<InstantTime>> {
        let timeline = self.timeline().await?;
        let target = match timeline.find(time) {
            Some(i)
                if !i.is_completed()
                    && matches!(i.action, Action::Commit | Action::DeltaCommit) =>
            {
                *i
            }
            Some(i) => {
                return Err(crate::Error::Unsupported(format!(
                    "instant {time} is a {} {}; only failed (pending) commits and deltacommits are rolled back",
                    i.state, i.action
                )));
            }
            None => {
                return Err(crate::Error::Unsupported(format!(
                    "there is no instant {time} on the timeline"
                )));
            }
        };
        rollback_instant(self, &timeline, &target).await
    }
}
