//! Savepoints and restore.
//!
//! A savepoint pins the file slices a snapshot as of a completed write needs: `<t>.savepoint.inflight`
//! then `<t>.savepoint` (`HoodieSavepointMetadata`, listing those files per partition), at the time
//! of the write it pins. The cleaner never deletes a listed file.
//!
//! A restore brings the table back to exactly a savepoint: `<r>.restore.requested`
//! (`HoodieRestorePlan`: the instants after the savepoint, newest first) → `<r>.restore.inflight` →
//! for each instant: its completed file is removed first (so it stops being visible), then the files
//! it wrote, then its remaining state files → later savepoints removed → `<r>.restore`
//! (`HoodieRestoreMetadata`). It refuses to run while a write is in flight; an interrupted restore is
//! finished by running it again.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant as Clock;

use bytes::Bytes;
use lake_table::archive::ArchivedTimeline;
use lake_table::layout::{BaseFile, MARKERS_DIR, WRITE_TOKEN, join};
use lake_table::timeline::wire;
use lake_table::timeline::{Action, Instant, InstantTime, State, Timeline};
use lake_table::view::FileSystemView;
use lake_table::{Error, Result, Table};

/// A savepoint as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct SavepointInfo {
    /// The pinned write's time.
    pub instant: InstantTime,
    /// Whether it is completed.
    pub completed: bool,
    /// Files it pins.
    pub files: usize,
}

/// Creates a savepoint of the completed write at `instant` (the latest when `None`).
pub async fn create_savepoint(
    table: &Table,
    instant: Option<InstantTime>,
    comment: &str,
) -> Result<InstantTime> {
    let start = lake_table::commit::start(table).await?;
    let timeline = start.timeline.clone();
    let target = match instant {
        Some(t) => *timeline
            .completed_writes()
            .find(|i| i.time == t)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "instant {t} is not a completed write; only those can be savepointed"
                ))
            })?,
        None => *timeline
            .last_completed_write()
            .ok_or_else(|| Error::Unsupported("the table has no completed write".into()))?,
    };
    if timeline.savepoints().iter().any(|s| s.time == target.time) {
        return Err(Error::Unsupported(format!(
            "instant {} is already savepointed",
            target.time
        )));
    }
    let view = FileSystemView::load(&timeline, None, Some(target.time)).await?;
    let mut per_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in view.latest_slices() {
        let files = per_partition.entry(s.partition.clone()).or_default();
        files.extend(s.base_file.iter().map(|b| b.name.clone()));
        files.extend(s.log_files.iter().map(|l| l.name.clone()));
        files.extend(s.cdc_files.iter().map(|c| c.name.clone()));
    }
    let meta = wire::SavepointMetadata {
        savepointed_by: std::env::var("USER").unwrap_or_else(|_| "lake".into()),
        savepointed_at: chrono_now_secs(),
        comments: comment.to_owned(),
        partition_metadata: per_partition
            .iter()
            .map(|(p, files)| {
                let m = wire::SavepointPartitionMetadata {
                    partition_path: p.clone(),
                    savepoint_data_file: files.clone(),
                };
                (p.clone(), m)
            })
            .collect(),
        version: Some(1),
    };
    let meta = wire::write_container(wire::SAVEPOINT_METADATA_SCHEMA, &meta)
        .map_err(|e| Error::Corrupt(format!("savepoint {}: {e}", target.time)))?;
    let storage = table.storage();
    let layout = table.config().layout();
    let inflight = Instant::new(target.time, Action::Savepoint, State::Inflight);
    if !storage
        .exists(&start.timeline.instant_path(&inflight))
        .await?
    {
        Timeline::publish(storage, layout, &inflight, Bytes::new()).await?;
    }
    // An archival lists the timeline after writing its archive file and stops if a savepoint appeared
    // below its cutoff; here the archive is read after the savepoint's first file exists, so one of
    // the two always sees the other.
    if ArchivedTimeline::load(storage, layout)
        .await?
        .find(target.time)
        .is_some()
    {
        let _ = storage
            .delete(&start.timeline.instant_path(&inflight))
            .await;
        return Err(Error::Unsupported(format!(
            "instant {} is in the archived timeline (an archival is running or was interrupted); savepoint a newer instant",
            target.time
        )));
    }
    // Decided on the ledger: a clean decided since we listed the files may have removed some, so
    // the savepoint is then refused (create it again: the cleaner keeps what it pins from then on).
    let done = Instant::new(target.time, Action::Savepoint, State::Completed);
    let decided =
        lake_table::commit::decide_and_publish(table, start.seq, &done, Bytes::from(meta), |e| {
            if e.instant.action == Action::Clean && e.header.rollback.is_empty() {
                return Err(Error::WriteConflict {
                    instant: target.time.to_string(),
                    other: e.instant.time.to_string(),
                    file_ids: Vec::new(),
                });
            }
            Ok(())
        })
        .await;
    if let Err(e) = decided {
        let _ = storage
            .delete(&start.timeline.instant_path(&inflight))
            .await;
        return Err(e);
    }
    Ok(target.time)
}

fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Deletes the savepoint at `instant`.
pub async fn delete_savepoint(table: &Table, instant: InstantTime) -> Result<()> {
    // Not while a restore is in progress (it may be restoring to this savepoint).
    let timeline = lake_table::commit::start(table).await?.timeline;
    remove_savepoint(table, &timeline, instant).await
}

/// Removes a savepoint's files from the timeline.
async fn remove_savepoint(table: &Table, timeline: &Timeline, instant: InstantTime) -> Result<()> {
    if !timeline.savepoints().iter().any(|s| s.time == instant) {
        return Err(Error::Unsupported(format!(
            "there is no savepoint at {instant}"
        )));
    }
    for state in [State::Completed, State::Inflight] {
        let i = Instant::new(instant, Action::Savepoint, state);
        table.storage().delete(&timeline.instant_path(&i)).await?;
    }
    Ok(())
}

/// The savepoints of the table with the number of files each pins.
pub async fn list_savepoints(table: &Table) -> Result<Vec<SavepointInfo>> {
    let timeline = table.timeline().await?;
    let mut out = Vec::new();
    for s in timeline.savepoints() {
        let files = if s.is_completed() {
            savepoint_files(table, &timeline, s).await?.len()
        } else {
            0
        };
        out.push(SavepointInfo {
            instant: s.time,
            completed: s.is_completed(),
            files,
        });
    }
    Ok(out)
}

/// (partition, file name) of every file a savepoint pins.
async fn savepoint_files(
    table: &Table,
    timeline: &Timeline,
    s: &Instant,
) -> Result<HashSet<(String, String)>> {
    let bytes = table.storage().get(&timeline.instant_path(s)).await?;
    let bad = |r: String| Error::Corrupt(format!("savepoint {}: {r}", s.time));
    // A completed savepoint without metadata pins nothing lake could know: refuse, do not guess.
    let meta: wire::SavepointMetadata =
        wire::read_container(wire::SAVEPOINT_METADATA_SCHEMA, &bytes)
            .map_err(bad)?
            .ok_or_else(|| bad("the savepoint metadata is empty".into()))?;
    let mut out = HashSet::new();
    for (partition, m) in meta.partition_metadata {
        for name in m.savepoint_data_file {
            out.insert((partition.clone(), name));
        }
    }
    Ok(out)
}

/// (partition, file name) of every file any completed savepoint pins; the cleaner keeps them.
pub async fn pinned_files(table: &Table, timeline: &Timeline) -> Result<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    for s in timeline.savepoints().iter().filter(|s| s.is_completed()) {
        out.extend(savepoint_files(table, timeline, s).await?);
    }
    Ok(out)
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestoreReport {
    /// The restore instant.
    pub instant: Option<InstantTime>,
    /// Instants rolled back, newest first.
    pub rolled_back: Vec<InstantTime>,
    /// Data files deleted.
    pub files_deleted: usize,
}

/// Restores the table to the savepoint at `to`.
pub async fn restore(table: &Table, to: InstantTime) -> Result<RestoreReport> {
    let first = lake_table::commit::start_for_restore(table).await?;
    let pending_restore = first
        .timeline
        .pending()
        .find(|i| i.action == Action::Restore)
        .copied();
    // Writes whose writer is gone are rolled back first; a live one makes the restore wait. (An
    // interrupted restore finishes exactly its plan instead.)
    if pending_restore.is_none()
        && first
            .timeline
            .pending()
            .any(|i| matches!(i.action, Action::Commit | Action::DeltaCommit))
    {
        table.rollback_expired_writes().await?;
    }
    let start = lake_table::commit::start_for_restore(table).await?;
    let timeline = start.timeline.clone();
    let pending_restore = timeline
        .pending()
        .find(|i| i.action == Action::Restore)
        .copied();
    if let Some(r) = pending_restore {
        // An interrupted restore goes on to the savepoint it planned, whatever else happened since.
        let (planned_to, _) = restore_plan(table, &timeline, r.time).await?;
        if planned_to != Some(to) {
            return Err(Error::Unsupported(format!(
                "restore {} to {} was interrupted; run it again with --to {}",
                r.time,
                planned_to.map_or("?".into(), |t| t.to_string()),
                planned_to.map_or("?".into(), |t| t.to_string()),
            )));
        }
    } else if !timeline
        .savepoints()
        .iter()
        .any(|s| s.time == to && s.is_completed())
    {
        return Err(Error::Unsupported(format!(
            "there is no savepoint at {to}; restore needs one"
        )));
    }
    if pending_restore.is_none()
        && let Some(w) = timeline.pending().find(|i| {
            matches!(
                i.action,
                Action::Commit | Action::DeltaCommit | Action::ReplaceCommit
            )
        })
    {
        return Err(Error::Unsupported(format!(
            "write {} is in flight; restore refuses to run beside a writer (roll it back first)",
            w.time
        )));
    }
    let started = Clock::now();
    let planned = match pending_restore {
        Some(r) => Some(restore_plan(table, &timeline, r.time).await?.1),
        None => None,
    };
    let mut targets: Vec<Instant> = timeline
        .instants()
        .iter()
        .filter(|i| i.time > to)
        .filter(|i| {
            timeline.is_compaction(i.time)
                || (i.is_completed() && i.action.writes_data())
                || matches!(
                    i.action,
                    Action::Commit | Action::DeltaCommit | Action::ReplaceCommit
                )
        })
        .filter(|i| Some(i.time) != pending_restore.map(|r| r.time))
        // An interrupted restore finishes exactly the instants it planned.
        .filter(|i| planned.as_ref().is_none_or(|p| p.contains(&i.time)))
        .copied()
        .collect();
    targets.reverse();
    let storage = table.storage();
    let layout = table.config().layout();
    let time = match pending_restore {
        Some(r) => r.time,
        None => lake_table::commit::claim_time(storage, timeline.latest_time()).await?,
    };
    let requested = Instant::new(time, Action::Restore, State::Requested);
    if pending_restore.is_none() {
        let plan = wire::RestorePlan {
            instants_to_rollback: targets.iter().map(wire::InstantInfo::from).collect(),
            version: Some(1),
            savepoint_to_restore_timestamp: Some(to.to_string()),
        };
        let plan = wire::write_container(wire::restore_plan_schema(), &plan)
            .map_err(|e| Error::Corrupt(format!("restore plan {time}: {e}")))?;
        // Decided on the ledger, with the plan: no completion of a target can be rolled forward
        // after this, a write that began before it fails its conflict check instead of building on
        // removed data, and if this process dies now the next start publishes the plan.
        let header = lake_table::commit::Header {
            file: requested.file_name(),
            rollback: targets.iter().map(|t| t.time.to_string()).collect(),
        };
        lake_table::commit::decide(table, start.seq, time, &header, &plan, |e| {
            if e.header.rollback.is_empty() && e.instant.time > to {
                return Err(Error::WriteConflict {
                    instant: time.to_string(),
                    other: e.instant.time.to_string(),
                    file_ids: Vec::new(),
                });
            }
            Ok(())
        })
        .await?;
        lake_table::commit::publish(table, &requested, &plan).await?;
    }
    let inflight = Instant::new(time, Action::Restore, State::Inflight);
    if !storage.exists(&timeline.instant_path(&inflight)).await? {
        Timeline::publish(storage, layout, &inflight, Bytes::new()).await?;
    }
    let mut report = RestoreReport {
        instant: Some(time),
        ..Default::default()
    };
    for t in &targets {
        let compaction = timeline.is_compaction(t.time);
        let action = if compaction {
            Action::Compaction
        } else {
            t.action
        };
        // Files the instant wrote: from its commit metadata, or (pending) its markers and plan.
        let mut files: Vec<String> = Vec::new();
        if t.is_completed() {
            let m = timeline.commit_metadata(t).await?;
            files.extend(m.write_stats().filter_map(|s| s.path.clone()));
            // CDC logs, named by partition and file in `cdcStats`.
            files.extend(
                m.write_stats()
                    .filter_map(|s| s.cdc_stats.as_ref()?.as_object())
                    .flat_map(|o| o.keys().cloned()),
            );
        }
        if compaction && let Some(plan) = table.compaction_plan(t.time).await? {
            files.extend(plan.operations.iter().map(|op| {
                join(
                    &op.partition,
                    &BaseFile::name_for(&op.file_id, WRITE_TOKEN, t.time),
                )
            }));
        }
        let marker_dir = format!("{MARKERS_DIR}/{}", t.time);
        let markers = storage.list_recursive(&marker_dir).await?;
        for m in &markers {
            let rel = storage.relative(&m.location);
            if let Some(file) = rel
                .strip_prefix(&format!("{marker_dir}/"))
                .and_then(lake_table::layout::file_of_marker)
            {
                files.push(file.to_owned());
            }
        }
        // Data files first, the completed file after them: a restore killed in between still finds
        // the instant's file list when it runs again (readers meanwhile get a clear error naming a
        // missing file, never silently older rows).
        files.sort();
        files.dedup();
        for f in &files {
            storage.delete(f).await?;
        }
        report.files_deleted += files.len();
        for m in markers {
            storage.delete(&storage.relative(&m.location)).await?;
        }
        let completed = Instant::new(t.time, action, State::Completed);
        storage.delete(&timeline.instant_path(&completed)).await?;
        for state in [State::Inflight, State::Requested] {
            let i = Instant::new(t.time, action, state);
            storage.delete(&timeline.instant_path(&i)).await?;
        }
        report.rolled_back.push(t.time);
    }
    for s in timeline.savepoints().iter().filter(|s| s.time > to) {
        remove_savepoint(table, &timeline, s.time).await?;
    }
    // A roll-forward that raced the decision may have put a target's completed file back.
    for t in &targets {
        let action = if timeline.is_compaction(t.time) {
            Action::Compaction
        } else {
            t.action
        };
        let completed = Instant::new(t.time, action, State::Completed);
        storage.delete(&timeline.instant_path(&completed)).await?;
    }
    let meta = wire::RestoreMetadata {
        start_restore_time: time.to_string(),
        time_taken_in_millis: started.elapsed().as_millis() as i64,
        instants_to_rollback: targets.iter().map(|t| t.time.to_string()).collect(),
        version: Some(1),
        restore_instant_info: targets.iter().map(wire::InstantInfo::from).collect(),
        ..Default::default()
    };
    let meta = wire::write_container(wire::restore_metadata_schema(), &meta)
        .map_err(|e| Error::Corrupt(format!("restore metadata {time}: {e}")))?;
    Timeline::complete(storage, layout, &inflight, Bytes::from(meta)).await?;
    Ok(report)
}

/// The savepoint and the instants an interrupted restore planned (its `HoodieRestorePlan`).
async fn restore_plan(
    table: &Table,
    timeline: &Timeline,
    restore: InstantTime,
) -> Result<(Option<InstantTime>, Vec<InstantTime>)> {
    let requested = Instant::new(restore, Action::Restore, State::Requested);
    let path = timeline.instant_path(&requested);
    let bytes = table.storage().get(&path).await?;
    let bad = |reason: String| {
        Error::Corrupt(format!(
            "restore plan {}: {reason}",
            table.storage().display(&path)
        ))
    };
    let plan: wire::RestorePlan = wire::read_container(wire::restore_plan_schema(), &bytes)
        .map_err(bad)?
        .ok_or_else(|| bad("empty".into()))?;
    let out = plan
        .instants_to_rollback
        .iter()
        .map(|i| {
            i.commit_time
                .parse()
                .map_err(|_| bad(format!("bad instant {:?}", i.commit_time)))
        })
        .collect::<Result<Vec<InstantTime>>>()?;
    let to = plan
        .savepoint_to_restore_timestamp
        .and_then(|t| t.parse().ok());
    Ok((to, out))
}
