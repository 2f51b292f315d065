//! Cleaning: deleting old file slices that no retained instant needs, as a Hudi clean instant.
//!
//! Policies (Hudi's names): `KEEP_LATEST_COMMITS(n)` keeps every slice a snapshot as of any of the
//! last `n` completed writes needs (slices based at or after the earliest retained write, plus the
//! slice before it); `KEEP_LATEST_FILE_VERSIONS(n)` keeps the newest `n` slices of each file group.
//! The newest slice of a file group is never deleted, nor a slice a pending compaction reads, nor a
//! slice a write still in flight may merge (one based before its instant), nor any file a savepoint
//! pins, nor any file of a pending instant (those are not in the committed view).
//!
//! States: REQUESTED (`HoodieCleanerPlan`) → INFLIGHT (the plan again, as Hudi writes it) → files
//! deleted → COMPLETED (`HoodieCleanMetadata`). A pending clean found at start is finished under its
//! own instant time with a fresh plan (the plan only ever deletes files the current view does not need).

use std::collections::BTreeMap;
use std::time::Instant as Clock;

use bytes::Bytes;
use lake_table::timeline::wire;
use lake_table::timeline::{Action, Instant, InstantTime, State, Timeline};
use lake_table::view::FileSystemView;
use lake_table::{Error, Result, Table};

/// Which file versions to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanPolicy {
    /// Keep what the last `n` completed writes need.
    KeepLatestCommits(usize),
    /// Keep the newest `n` versions of every file group.
    KeepLatestFileVersions(usize),
}

impl CleanPolicy {
    fn hudi_name(self) -> &'static str {
        match self {
            CleanPolicy::KeepLatestCommits(_) => "KEEP_LATEST_COMMITS",
            CleanPolicy::KeepLatestFileVersions(_) => "KEEP_LATEST_FILE_VERSIONS",
        }
    }
}

/// What a clean did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanReport {
    /// The completed clean instant (`None` when there was nothing to clean).
    pub instant: Option<InstantTime>,
    /// The earliest write whose snapshot stays readable (keep-latest-commits only).
    pub earliest_retained: Option<InstantTime>,
    /// Root-relative paths of the deleted files.
    pub deleted: Vec<String>,
    /// Bytes deleted.
    pub bytes_deleted: u64,
}

/// Plans and executes a clean of `table`.
pub async fn clean(table: &Table, policy: CleanPolicy) -> Result<CleanReport> {
    let start = lake_table::commit::start(table).await?;
    let start_seq = start.seq;
    let timeline = start.timeline;
    let writes: Vec<Instant> = timeline.completed_writes().copied().collect();
    // A write still in flight (another process's commit or deltacommit, beside this clean) merges
    // the slices that were newest when it began, i.e. those based before its instant: they stay
    // until it ends (a dead writer's is rolled back first, by `lake compact` or the next writer).
    let earliest_pending_write = timeline
        .pending()
        .filter(|i| matches!(i.action, Action::Commit | Action::DeltaCommit))
        .filter(|i| !timeline.is_compaction(i.time))
        .map(|i| i.time)
        .min();
    // Slices based before `keep_before` serve no retained snapshot (but the newest of them);
    // `earliest_retained` is the earliest completed write whose snapshot stays whole.
    let (keep_before, earliest_retained) = match policy {
        CleanPolicy::KeepLatestCommits(n) if writes.len() > n.max(1) => {
            let e = writes[writes.len() - n.max(1)].time;
            match earliest_pending_write.filter(|p| *p < e) {
                Some(p) => (
                    Some(p),
                    writes.iter().rev().find(|w| w.time < p).map(|w| w.time),
                ),
                None => (Some(e), Some(e)),
            }
        }
        _ => (None, None),
    };
    let view = FileSystemView::load(&timeline, None, None).await?;
    // Files a savepoint pins stay.
    let pinned = crate::savepoint::pinned_files(table, &timeline).await?;
    let mut to_delete: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    // The earliest instant whose snapshot stays complete: for keep-latest-file-versions, the newest
    // base instant of a kept slice in a group that loses older ones.
    let mut complete_from: Option<InstantTime> = earliest_retained;
    for slices in view.file_groups() {
        let keep_from = match policy {
            CleanPolicy::KeepLatestCommits(_) => match keep_before {
                // The newest slice based before the earliest retained write serves snapshots as of it.
                Some(e) => slices.iter().rposition(|s| s.base_instant < e).unwrap_or(0),
                None => 0,
            },
            CleanPolicy::KeepLatestFileVersions(n) => slices.len().saturating_sub(n.max(1)),
        };
        // A slice without a base file (its compaction is pending) is read together with the slice
        // before it, so that one stays too.
        let mut keep_from = keep_from.min(slices.len().saturating_sub(1));
        while keep_from > 0 && slices[keep_from].base_file.is_none() {
            keep_from -= 1;
        }
        if keep_from > 0 && matches!(policy, CleanPolicy::KeepLatestFileVersions(_)) {
            complete_from = complete_from.max(Some(slices[keep_from].base_instant));
        }
        for s in &slices[..keep_from] {
            let pinned = |name: &str| pinned.contains(&(s.partition.clone(), name.to_owned()));
            // CDC logs first: the view shows one only beside its base file, so a clean cut short
            // after the base file went would strand it.
            let files = s
                .cdc_files
                .iter()
                .filter(|c| !pinned(&c.name))
                .map(|c| (c.path(), c.size))
                .chain(
                    s.base_file
                        .iter()
                        .filter(|b| !pinned(&b.name))
                        .map(|b| (b.path(), b.size)),
                )
                .chain(
                    s.log_files
                        .iter()
                        .filter(|l| !pinned(&l.name))
                        .map(|l| (l.path(), l.size)),
                );
            to_delete
                .entry(s.partition.clone())
                .or_default()
                .extend(files);
        }
    }
    let pending = timeline
        .pending()
        .find(|i| i.action == Action::Clean)
        .copied();
    if to_delete.is_empty() && pending.is_none() {
        return Ok(CleanReport {
            earliest_retained,
            ..Default::default()
        });
    }
    let started = Clock::now();
    let storage = table.storage();
    let layout = table.config().layout();
    let time = match pending {
        Some(p) => p.time,
        None => lake_table::commit::claim_time(storage, timeline.latest_time()).await?,
    };
    let heartbeat = lake_table::commit::Heartbeat::start(storage, time, start_seq).await?;
    let plan = Bytes::from(plan_bytes(policy, earliest_retained, &writes, &to_delete)?);
    for state in [State::Requested, State::Inflight] {
        let inst = Instant::new(time, Action::Clean, state);
        if !storage.exists(&timeline.instant_path(&inst)).await? {
            Timeline::publish(storage, layout, &inst, plan.clone()).await?;
        }
    }
    let meta = metadata_bytes(
        policy,
        time,
        started.elapsed().as_millis() as i64,
        complete_from,
        &writes,
        &to_delete,
    )?;
    // Decided before anything is deleted: a savepoint decided since planning may pin files of the
    // plan, so the clean then stands down (the next run plans again with the savepoint in view).
    let done = Instant::new(time, Action::Clean, State::Completed);
    let header = lake_table::commit::Header {
        file: done.file_name(),
        rollback: Vec::new(),
    };
    let decided = lake_table::commit::decide(table, start_seq, time, &header, &meta, |e| {
        if e.instant.action == Action::Savepoint && e.header.rollback.is_empty() {
            return Err(Error::WriteConflict {
                instant: time.to_string(),
                other: e.instant.time.to_string(),
                file_ids: Vec::new(),
            });
        }
        Ok(())
    })
    .await;
    match decided {
        Ok(_) => {}
        Err(Error::WriteConflict { .. }) => {
            return Ok(CleanReport {
                earliest_retained,
                ..Default::default()
            });
        }
        Err(e) => return Err(e),
    }
    let mut report = CleanReport {
        instant: Some(time),
        earliest_retained,
        ..Default::default()
    };
    for files in to_delete.values() {
        for (path, size) in files {
            storage.delete(path).await?;
            report.deleted.push(path.clone());
            report.bytes_deleted += size;
        }
    }
    match lake_table::commit::publish(table, &done, &meta).await {
        // Another run of this same clean completed it first: the files are gone either way.
        Ok(()) | Err(Error::Timeline(lake_table::timeline::Error::CommitConflict { .. })) => {}
        Err(e) => return Err(e),
    }
    heartbeat.stop().await;
    Ok(report)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn plan_bytes(
    policy: CleanPolicy,
    earliest: Option<InstantTime>,
    writes: &[Instant],
    files: &BTreeMap<String, Vec<(String, u64)>>,
) -> Result<Vec<u8>> {
    let plan = wire::CleanerPlan {
        earliest_instant_to_retain: earliest
            .and_then(|e| writes.iter().find(|w| w.time == e))
            .map(|w| wire::ActionInstant {
                timestamp: w.time.to_string(),
                action: w.action.completed_action().name().to_owned(),
                state: "COMPLETED".into(),
            }),
        policy: policy.hudi_name().to_owned(),
        files_to_be_deleted_per_partition: Some(
            files
                .iter()
                .map(|(p, fs)| {
                    let names = fs.iter().map(|(path, _)| file_name(path).to_owned());
                    (p.clone(), names.collect())
                })
                .collect(),
        ),
        version: Some(2),
        file_paths_to_be_deleted_per_partition: Some(
            files
                .iter()
                .map(|(p, fs)| {
                    let infos = fs.iter().map(|(path, _)| wire::CleanFileInfo {
                        file_path: Some(path.clone()),
                        is_bootstrap_base_file: Some(false),
                    });
                    (p.clone(), infos.collect())
                })
                .collect(),
        ),
        partitions_to_be_deleted: None,
    };
    wire::write_container(wire::CLEANER_PLAN_SCHEMA, &plan)
        .map_err(|e| Error::Corrupt(format!("cleaner plan: {e}")))
}

fn metadata_bytes(
    policy: CleanPolicy,
    time: InstantTime,
    took_ms: i64,
    earliest: Option<InstantTime>,
    writes: &[Instant],
    files: &BTreeMap<String, Vec<(String, u64)>>,
) -> Result<Vec<u8>> {
    let total: usize = files.values().map(Vec::len).sum();
    let meta = wire::CleanMetadata {
        policy: policy.hudi_name().to_owned(),
        start_clean_time: time.to_string(),
        time_taken_in_millis: took_ms,
        total_files_deleted: total as i32,
        earliest_commit_to_retain: earliest.map(|e| e.to_string()).unwrap_or_default(),
        last_completed_commit_timestamp: writes
            .last()
            .map(|w| w.time.to_string())
            .unwrap_or_default(),
        partition_metadata: files
            .iter()
            .map(|(p, fs)| {
                let names: Vec<String> = fs
                    .iter()
                    .map(|(path, _)| file_name(path).to_owned())
                    .collect();
                let m = wire::CleanPartitionMetadata {
                    partition_path: p.clone(),
                    policy: policy.hudi_name().to_owned(),
                    delete_path_patterns: names.clone(),
                    success_delete_files: names,
                    failed_delete_files: Vec::new(),
                    is_partition_deleted: Some(false),
                };
                (p.clone(), m)
            })
            .collect(),
        version: Some(2),
        bootstrap_partition_metadata: None,
    };
    wire::write_container(wire::CLEAN_METADATA_SCHEMA, &meta)
        .map_err(|e| Error::Corrupt(format!("clean metadata {time}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use lake_table::{ChangeBatch, ReadOptions, TableConfig, TableType, WriteOptions};

    use super::*;

    fn batch(ids: &[i64], v: i64) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from(vec![v; ids.len()])),
            ],
        )
        .expect("batch");
        ChangeBatch::upserts(rows)
    }

    async fn table(name: &str) -> Table {
        let cfg = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(1),
        )
        .expect("config");
        Table::create(&format!("memory://{name}"), cfg)
            .await
            .expect("create")
    }

    /// Five writes of ids 1–3 (versions 1–5), a few milliseconds apart; their instants.
    async fn five_versions(t: &Table) -> Vec<InstantTime> {
        let mut instants = Vec::new();
        for v in 1..=5 {
            let s = t
                .write(vec![batch(&[1, 2, 3], v)], WriteOptions::default())
                .await
                .expect("write");
            instants.push(s.instant.expect("committed"));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        instants
    }

    #[tokio::test]
    async fn a_write_in_flight_keeps_the_slices_it_merges() {
        let t = table("clean_beside_a_writer").await;
        let instants = five_versions(&t).await;
        // Another process's write that began after write 2 (it merges slice 2) is still running.
        let began = instants[1].plus_millis(1);
        assert!(began < instants[2]);
        let inflight = lake_table::timeline::Instant::new(began, Action::Commit, State::Inflight);
        lake_table::timeline::Timeline::publish(
            t.storage(),
            t.config().layout(),
            &inflight,
            bytes::Bytes::new(),
        )
        .await
        .expect("inflight");
        let report = clean(&t, CleanPolicy::KeepLatestCommits(2))
            .await
            .expect("clean");
        // Snapshots stay whole from the last completed write before it.
        assert_eq!(report.earliest_retained, Some(instants[1]));
        let deleted: Vec<String> = report
            .deleted
            .iter()
            .map(|p| p.rsplit('_').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(deleted, [format!("{}.parquet", instants[0])]);
    }

    #[tokio::test]
    async fn keep_latest_commits_keeps_what_the_retained_snapshots_need() {
        let t = table("clean_commits").await;
        let instants = five_versions(&t).await;
        let report = clean(&t, CleanPolicy::KeepLatestCommits(2))
            .await
            .expect("clean");
        assert_eq!(report.earliest_retained, Some(instants[3]));
        // One file group; slices 1 and 2 go, slice 3 serves snapshots as of write 4.
        let deleted: Vec<String> = report
            .deleted
            .iter()
            .map(|p| p.rsplit('_').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            deleted,
            [
                format!("{}.parquet", instants[0]),
                format!("{}.parquet", instants[1])
            ]
        );
        let timeline = t.timeline().await.expect("timeline");
        let clean_instant = timeline.instants().last().copied().expect("clean instant");
        assert_eq!(
            (clean_instant.action, clean_instant.state),
            (Action::Clean, State::Completed)
        );
        // Snapshots as of every retained write still read.
        for (i, at) in instants[3..].iter().enumerate() {
            let (_, batches) = t
                .read_snapshot(&ReadOptions {
                    as_of: Some(*at),
                    ..Default::default()
                })
                .await
                .expect("time travel");
            let v = batches[0]
                .column_by_name("v")
                .expect("v")
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("i64")
                .value(0);
            assert_eq!(v, 4 + i as i64);
        }
        // The clean metadata is a valid Avro container in Hudi's schema.
        let bytes = t
            .storage()
            .get(&format!(".hoodie/{}.clean", clean_instant.time))
            .await
            .expect("clean file");
        let meta: wire::CleanMetadata = wire::read_container(wire::CLEAN_METADATA_SCHEMA, &bytes)
            .expect("Avro container")
            .expect("a record");
        assert_eq!(meta.total_files_deleted, 2);
        assert_eq!(meta.earliest_commit_to_retain, instants[3].to_string());
        let again = clean(&t, CleanPolicy::KeepLatestCommits(2))
            .await
            .expect("clean again");
        assert_eq!(again.instant, None, "nothing left to clean");
    }

    #[tokio::test]
    async fn keep_latest_file_versions_keeps_n_versions() {
        let t = table("clean_versions").await;
        for v in 1..=4 {
            t.write(vec![batch(&[1], v)], WriteOptions::default())
                .await
                .expect("write");
        }
        let report = clean(&t, CleanPolicy::KeepLatestFileVersions(1))
            .await
            .expect("clean");
        assert_eq!(report.deleted.len(), 3);
        let slices = t.file_slices(None).await.expect("slices");
        assert_eq!(slices.len(), 1);
    }
}
