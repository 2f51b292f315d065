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
//! - on merge-on-read, a deltacommit whose logs a latest file slice still holds (compaction plans
//!   take the logs active deltacommits name), and the deltacommits since the latest compaction;
//! - a time some process has claimed or runs under that is not a completed instant yet;
//! - a replacecommit whose replaced file groups still have files (readers must keep hiding them).
//!
//! Order, as Hudi's archiver (HUDI-7207): the archive file is written whole (a new version each
//! time: object stores cannot append); the timeline is listed again — an instant or savepoint that
//! appeared below the cutoff meanwhile stops the archival, everything staying active; files failed
//! writes below the cutoff left behind are removed (they would count as committed once the timeline
//! starts after them); then the archived instants' requested and inflight files are deleted, then
//! their completed files one by one, oldest first. A crash leaves a readable table at every step;
//! the next run archives what is left again, and readers de-duplicate. Tables with a Hudi metadata
//! table are left to Hudi.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use lake_table::archive::v1::{self, Entry};
use lake_table::timeline::wire;
use lake_table::timeline::{Action, Instant, InstantTime, Layout, State, Timeline};
use lake_table::view::FileSystemView;
use lake_table::{Error, Result, Table, TableType};

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
    let storage = table.storage();
    let nothing = |reason: String| ArchiveReport {
        reason,
        ..Default::default()
    };
    // Hudi archives a table with a metadata table only behind the metadata table's compactions;
    // lake does not maintain one, so it leaves such tables to Hudi.
    let (_, dirs) = storage.list_dir(".hoodie").await?;
    if dirs.iter().any(|d| d == "metadata") {
        return Ok(nothing(
            "the table has a Hudi metadata table (.hoodie/metadata), whose archival Hudi coordinates".into(),
        ));
    }
    let timeline = lake_table::commit::start(table).await?.timeline;
    let (cutoff, reason) = cutoff(table, &timeline, policy).await?;
    let Some(cutoff) = cutoff else {
        return Ok(nothing(reason));
    };
    let archived: Vec<Instant> = timeline
        .instants()
        .iter()
        .filter(|i| i.time < cutoff)
        .copied()
        .collect();
    if archived.is_empty() {
        return Ok(nothing(reason));
    }
    // Every state file of the archived instants (one entry per file). Any other instant file below
    // the cutoff appeared after the timeline was read: archival stops without touching anything.
    let files = match state_files(table, &timeline, cutoff).await? {
        Ok(files) => files,
        Err(why) => return Ok(nothing(format!("{why}; archive again later"))),
    };
    let mut entries = Vec::new();
    for (inst, name) in files.values().flatten() {
        let rel = format!("{}/{name}", Layout::V1.dir());
        let bytes = storage.get_opt(&rel).await?.unwrap_or_default();
        let payload = match Entry::payload_field(inst.action, inst.state) {
            Some(field) => {
                let v = wire::content_json(inst.action, inst.state, &bytes).map_err(|reason| {
                    Error::Corrupt(format!("{}: {reason}", storage.display(&rel)))
                })?;
                (!v.is_null()).then(|| (field.to_owned(), v))
            }
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
    // Listed again after the archive file exists: an instant or savepoint that appeared below the
    // cutoff meanwhile keeps everything where it is (a savepoint checks the archive after publishing,
    // so one of the two always sees the other).
    if let Err(why) = state_files(table, &timeline, cutoff).await? {
        return Ok(nothing(format!(
            "{why}; the instants stay active (also in {file}); archive again later"
        )));
    }
    // Files failed writes below the cutoff left behind would count as committed once the active
    // timeline starts after them.
    lake_table::commit::remove_orphans(storage, &timeline, cutoff).await?;
    // Pending states first, then completed files one by one, oldest first.
    let mut deleted = 0;
    for completed in [false, true] {
        for ((_, state), group) in &files {
            if (*state == State::Completed) == completed {
                for (_, name) in group {
                    storage
                        .delete(&format!("{}/{name}", Layout::V1.dir()))
                        .await?;
                    deleted += 1;
                }
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

/// The timeline files of the instants below `cutoff`, by (time, state) — or why not: a file below
/// the cutoff that is not a state of an instant `timeline` holds (it appeared since).
async fn state_files(
    table: &Table,
    timeline: &Timeline,
    cutoff: InstantTime,
) -> Result<std::result::Result<StateFiles, String>> {
    let (listed, _) = table.storage().list_dir(Layout::V1.dir()).await?;
    let mut files: StateFiles = BTreeMap::new();
    for m in &listed {
        let Some(name) = m.location.filename() else {
            continue;
        };
        let Some(i) = Instant::parse_file_name(name) else {
            continue;
        };
        if i.time >= cutoff {
            continue;
        }
        let known = i.action != Action::Savepoint
            && timeline
                .find(i.time)
                .is_some_and(|t| t.is_completed() && i.state <= t.state);
        if !known {
            return Ok(Err(format!(
                "{name} appeared below the archival cutoff {cutoff}"
            )));
        }
        files
            .entry((i.time, i.state))
            .or_default()
            .push((i, name.to_owned()));
    }
    Ok(Ok(files))
}

type StateFiles = BTreeMap<(InstantTime, State), Vec<(Instant, String)>>;

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
    // A time claimed (or a transaction running) but not on the timeline yet is an instant about to
    // be published there (claims older than the active timeline are of archived instants).
    let start = timeline.first_time();
    limit(
        lake_table::commit::claimed_times(table.storage())
            .await?
            .into_iter()
            .filter(|t| start.is_some_and(|s| *t >= s))
            .find(|t| timeline.find(*t).is_none_or(|i| !i.is_completed())),
        "stops at a time claimed by an action not yet completed",
    );
    limit(
        lake_table::view::earliest_retained(timeline).await?,
        "keeps what the cleaner retains",
    );
    if table.config().table_type == TableType::MergeOnRead {
        limit(
            uncompacted_delta(timeline).await?,
            "keeps the deltacommits whose logs are not compacted yet",
        );
    }
    limit(
        live_replace(table, timeline).await?,
        "keeps a replacecommit whose replaced files remain",
    );
    Ok((Some(bound), reason))
}

/// The earliest completed deltacommit whose logs a latest file slice still holds (compaction
/// plans take only the logs active deltacommits name), or the first deltacommit after the latest
/// completed compaction (what scheduling counts).
async fn uncompacted_delta(timeline: &Timeline) -> Result<Option<InstantTime>> {
    let last_compaction = timeline
        .compactions()
        .filter(|i| i.is_completed())
        .last()
        .map(|i| i.time);
    let since_compaction = timeline
        .completed_writes()
        .find(|i| i.action == Action::DeltaCommit && last_compaction.is_none_or(|c| i.time > c))
        .map(|i| i.time);
    let view = FileSystemView::load(timeline, None, None).await?;
    let live: HashSet<(String, String)> = view
        .latest_slices()
        .into_iter()
        .flat_map(|s| {
            s.log_files
                .into_iter()
                .map(move |l| (s.partition.clone(), l.name))
        })
        .collect();
    let deltas: Vec<Instant> = timeline
        .completed_writes()
        .filter(|i| i.action == Action::DeltaCommit)
        .copied()
        .collect();
    for d in deltas {
        if since_compaction.is_some_and(|s| d.time >= s) {
            break;
        }
        let meta = timeline.commit_metadata_cached(&d).await?;
        let holds_live = meta.write_stats().any(|w| {
            w.path.as_deref().is_some_and(|p| {
                let (part, name) = p.rsplit_once('/').unwrap_or(("", p));
                live.contains(&(part.to_owned(), name.to_owned()))
            })
        });
        if holds_live {
            return Ok(Some(d.time));
        }
    }
    Ok(since_compaction)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use lake_table::{ChangeBatch, TableConfig, WriteOptions};

    use super::*;

    async fn table_with_writes(name: &str, n: i64) -> (Table, Vec<InstantTime>) {
        let cfg = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(1),
        )
        .expect("config");
        let t = Table::create(&format!("memory://{name}"), cfg)
            .await
            .expect("create");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let mut times = Vec::new();
        for i in 0..n {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![i])),
                    Arc::new(Int64Array::from(vec![i])),
                ],
            )
            .expect("batch");
            let s = t
                .write(vec![ChangeBatch::upserts(batch)], WriteOptions::default())
                .await
                .expect("write");
            times.push(s.instant.expect("instant"));
            // Room between instant times for the claims the tests plant.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        (t, times)
    }

    const TIGHT: ArchivePolicy = ArchivePolicy {
        min_commits: 2,
        max_commits: 3,
    };

    #[tokio::test]
    async fn an_instant_that_appears_below_the_cutoff_stops_archival() {
        let (t, times) = table_with_writes("archive_appears", 6).await;
        let timeline = t.timeline().await.expect("timeline");
        let cutoff = times[4];
        assert!(
            state_files(&t, &timeline, cutoff)
                .await
                .expect("list")
                .is_ok()
        );
        // A savepoint of an old write, created after the archiver read the timeline.
        let sp = Instant::new(times[1], Action::Savepoint, State::Inflight);
        t.storage()
            .put(&timeline.instant_path(&sp), bytes::Bytes::new())
            .await
            .expect("put");
        let why = state_files(&t, &timeline, cutoff)
            .await
            .expect("list")
            .expect_err("stops");
        assert!(why.contains("savepoint.inflight"), "{why}");
    }

    #[tokio::test]
    async fn claimed_times_and_failed_writes_below_the_cutoff() {
        let (t, times) = table_with_writes("archive_claims", 6).await;
        let storage = t.storage().clone();
        // A time claimed between two writes by an action that has not published yet.
        let between: InstantTime = format!("{}", times[1].as_u64() + 1).parse().expect("time");
        assert!(between < times[2]);
        storage
            .put(
                &format!(".hoodie/.lake/instants/{between}"),
                bytes::Bytes::new(),
            )
            .await
            .expect("claim");
        let r = archive(&t, TIGHT).await.expect("archive");
        assert_eq!(
            r.archived.iter().map(|i| i.time).collect::<Vec<_>>(),
            times[..2],
            "{r:?}"
        );
        assert!(r.reason.contains("claimed"), "{r:?}");
        // Once the claim is gone, a failed write's leftover file below the cutoff is removed before
        // the timeline moves past it (it would count as committed).
        storage
            .delete(&format!(".hoodie/.lake/instants/{between}"))
            .await
            .expect("unclaim");
        let orphan = format!("f-0_0-0-0_{between}.parquet");
        storage
            .put(&orphan, bytes::Bytes::from_static(b"PAR1"))
            .await
            .expect("orphan");
        storage
            .put(
                &lake_table::layout::marker_path(between, &orphan, "CREATE"),
                bytes::Bytes::new(),
            )
            .await
            .expect("marker");
        let r = archive(
            &t,
            ArchivePolicy {
                min_commits: 1,
                max_commits: 2,
            },
        )
        .await
        .expect("archive");
        assert_eq!(r.archived.len(), 3, "{r:?}");
        assert!(!storage.exists(&orphan).await.expect("exists"));
        let (_, markers) = storage
            .list_dir(lake_table::layout::MARKERS_DIR)
            .await
            .expect("markers");
        assert!(!markers.contains(&between.to_string()), "{markers:?}");
    }
}
