//! One action's way through the timeline: begin → data files → decide → publish, or abort.
//!
//! [`Transaction`] is the single home of that protocol for every action that writes data (commits,
//! deltacommits, compactions) and [`decide_and_publish`] for the ones that only publish a timeline
//! file (compaction plans, cleans): heartbeat, REQUESTED and INFLIGHT files, a marker before every
//! data file, the conflict check against the ledger entries decided since the transaction began, the
//! claim of the next ledger entry, the completed file (create-if-absent, idempotent), and on failure
//! the rollback of exactly the files this transaction created.

use std::sync::Mutex;

use bytes::Bytes;
use lake_timeline::{Action, Instant, InstantTime, Layout, State, Storage, Timeline};

use super::heartbeat::{Heartbeat, live};
use super::ledger::{self, Claim, Entry, Header};

use crate::layout::{MARKERS_DIR, marker_path};
use crate::{Error, Result, Table};

/// Publications trimmed from the ledger every this many entries.
const TRIM_EVERY: u64 = 16;
/// Attempts at publishing a decided file before giving up (the next transaction rolls it forward).
const PUBLISH_ATTEMPTS: u32 = 5;

/// The kind of a data file's marker (Hudi's `IOType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkerKind {
    /// A new base file.
    Create,
    /// A base file that rewrites a previous one.
    Merge,
    /// A log file.
    Append,
}

impl MarkerKind {
    fn name(self) -> &'static str {
        match self {
            MarkerKind::Create => "CREATE",
            MarkerKind::Merge => "MERGE",
            MarkerKind::Append => "APPEND",
        }
    }
}

/// A consistent place to start from: the ledger head and a timeline that reflects every decision up
/// to it (decided publications whose files were missing are published first).
#[derive(Clone, Debug)]
pub struct Start {
    /// The ledger head.
    pub seq: u64,
    /// The timeline, loaded after every decision up to `seq` was published.
    pub timeline: Timeline,
}

/// Reads the ledger head, then the timeline, and publishes any decision up to the head whose
/// timeline file is missing (its writer died between deciding and publishing). Refuses, retryably,
/// while a restore is decided but not finished: what it reads would still show instants the restore
/// is removing.
pub async fn start(table: &Table) -> Result<Start> {
    start_inner(table, false).await
}

/// [`start`] for the restore that finishes itself.
pub async fn start_for_restore(table: &Table) -> Result<Start> {
    start_inner(table, true).await
}

async fn start_inner(table: &Table, restoring: bool) -> Result<Start> {
    let storage = table.storage();
    let seq = ledger::head(storage).await?;
    let timeline = table.timeline().await?;
    if seq == 0 {
        return Ok(Start { seq, timeline });
    }
    let headers = ledger::headers(storage).await?;
    let mut rolled = false;
    for (i, e) in headers.iter().enumerate() {
        if e.seq > seq {
            break;
        }
        let layout = table.config().layout();
        if e.instant.action == Action::Restore {
            // A restore's entry carries its plan; a restore killed before publishing the plan is
            // put on the timeline here, so that running `lake restore` again finishes it.
            let on_timeline = timeline.find(e.instant.time);
            if on_timeline.is_some_and(|r| r.is_completed()) {
                continue;
            }
            if on_timeline.is_none()
                && let Some(full) = ledger::entry(storage, e.seq).await?
                && !full.payload.is_empty()
            {
                publish_file(storage, layout, &full.header.file, &full.payload).await?;
                rolled = true;
            }
            if !restoring {
                return Err(Error::RestoreInProgress {
                    instant: e.instant.time.to_string(),
                });
            }
            continue;
        }
        if !e.header.rollback.is_empty() {
            continue;
        }
        // A later restore undid this publication: never roll it forward. The restore removes it
        // itself (data files first); only once the restore has completed is a completed file still
        // here a leftover of a roll-forward that raced it, and removed.
        if let Some(undo) = headers[i + 1..]
            .iter()
            .find(|l| l.rolls_back(e.instant.time))
        {
            let restore_done = timeline
                .find(undo.instant.time)
                .is_some_and(|r| r.is_completed());
            if restore_done
                && timeline
                    .find(e.instant.time)
                    .is_some_and(|t| t.is_completed())
            {
                storage
                    .delete(&format!("{}/{}", layout.dir(), e.header.file))
                    .await?;
                rolled = true;
            }
            continue;
        }
        if reflected(&timeline, e) {
            continue;
        }
        let Some(full) = ledger::entry(storage, e.seq).await? else {
            continue;
        };
        publish_file(storage, layout, &full.header.file, &full.payload).await?;
        rolled = true;
        // A restore decided while we published must not find its target back.
        let now = ledger::headers(storage).await?;
        if now
            .iter()
            .any(|l| l.seq > e.seq && l.rolls_back(e.instant.time))
        {
            storage
                .delete(&format!("{}/{}", layout.dir(), full.header.file))
                .await?;
        }
    }
    let timeline = if rolled {
        table.timeline().await?
    } else {
        timeline
    };
    Ok(Start { seq, timeline })
}

/// Whether a publication is already on the timeline (or older than the active timeline: archived).
fn reflected(timeline: &Timeline, e: &Entry) -> bool {
    if timeline.first_time().is_some_and(|f| e.instant.time < f) {
        return true;
    }
    match timeline.find(e.instant.time) {
        Some(i) => i.state >= e.instant.state,
        None => timeline
            .savepoints()
            .iter()
            .any(|s| s.time == e.instant.time && s.state >= e.instant.state),
    }
}

/// Creates a timeline file if absent; an existing file with other content is a conflict.
pub(crate) async fn publish_file(
    storage: &Storage,
    layout: Layout,
    file: &str,
    content: &[u8],
) -> Result<()> {
    let rel = format!("{}/{file}", layout.dir());
    let bytes = Bytes::copy_from_slice(content);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = match storage.put_if_absent(&rel, bytes.clone()).await {
            Ok(true) => Ok(()),
            Ok(false) => match storage.get_opt(&rel).await {
                Ok(Some(found)) if found == bytes => Ok(()),
                Ok(_) => {
                    return Err(lake_timeline::Error::CommitConflict {
                        instant: file.to_owned(),
                        path: storage.display(&rel),
                    }
                    .into());
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= PUBLISH_ATTEMPTS => {
                return Err(Error::CommitOutcomeUnknown {
                    path: storage.display(&rel),
                    reason: format!(
                        "decided on the ledger but not yet published ({e}); the next writer publishes it"
                    ),
                });
            }
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            }
        }
    }
}

/// Publishes a decided timeline file (create-if-absent; the same bytes already there are ours).
pub async fn publish(table: &Table, file: &Instant, content: &[u8]) -> Result<()> {
    publish_file(
        table.storage(),
        table.config().layout(),
        &file.file_name(),
        content,
    )
    .await
}

/// Decides on the ledger to publish `file` with `content`, checking every entry decided after
/// `start` with `check` (which fails to refuse), then publishes it. A lost claim re-checks the entry
/// that won and claims the next one. Fails with [`Error::RolledBack`] if a rollback of the instant
/// was decided first.
pub async fn decide_and_publish(
    table: &Table,
    start: u64,
    file: &Instant,
    content: Bytes,
    check: impl FnMut(&Entry) -> Result<()>,
) -> Result<u64> {
    let name = file.file_name();
    let header = Header {
        file: name.clone(),
        rollback: Vec::new(),
    };
    let seq = decide(table, start, file.time, &header, &content, check).await?;
    publish_file(table.storage(), table.config().layout(), &name, &content).await?;
    if seq % TRIM_EVERY == 0 {
        let _ = trim(table, seq).await;
    }
    Ok(seq)
}

/// Claims the next ledger entry for `header` (about the instant at `time`) after checking, with
/// `check`, every entry decided since `start`; returns its sequence number.
pub async fn decide(
    table: &Table,
    start: u64,
    time: InstantTime,
    header: &Header,
    payload: &[u8],
    mut check: impl FnMut(&Entry) -> Result<()>,
) -> Result<u64> {
    let storage = table.storage();
    let bytes = ledger::encode(header, payload);
    // A rollback (or restore) of this instant decided before our start counts too.
    if let Some(r) = ledger::headers(storage)
        .await?
        .into_iter()
        .find(|e| e.seq <= start && e.rolls_back(time))
    {
        return Err(Error::RolledBack {
            instant: time.to_string(),
            by: r.instant.time.to_string(),
        });
    }
    let mut seen = start;
    loop {
        for e in ledger::entries_after(storage, seen).await? {
            if e.rolls_back(time) {
                return Err(Error::RolledBack {
                    instant: time.to_string(),
                    by: e.instant.time.to_string(),
                });
            }
            if !e.publishes(time) {
                check(&e)?;
            }
            seen = e.seq;
        }
        if ledger::claim(storage, seen + 1, bytes.clone()).await? == Claim::Won {
            return Ok(seen + 1);
        }
    }
}

/// Root-relative folder of instant-time claims.
const CLAIMS_DIR: &str = ".hoodie/.lake/instants";
/// Claims older than this are deleted when the ledger is trimmed.
const CLAIM_RETENTION_MS: i64 = 3_600_000;

/// Claims a new instant time after `after` (and after now) for this process alone: the time is the
/// create-if-absent of `.hoodie/.lake/instants/<T>`, so two actions — say a write and another
/// process's rollback — can never share a time (the timeline keeps one instant per time).
pub async fn claim_time(storage: &Storage, after: Option<InstantTime>) -> Result<InstantTime> {
    let mut t = InstantTime::next_after(after);
    loop {
        if storage
            .put_if_absent(&format!("{CLAIMS_DIR}/{t}"), Bytes::new())
            .await?
        {
            return Ok(t);
        }
        t = InstantTime::next_after(Some(t));
    }
}

/// Instant times some process has claimed or is running under: the time claims of the last hour
/// (`.hoodie/.lake/instants/`) and the live heartbeats. A claimed time not yet on the timeline
/// belongs to an action about to publish it (or one that gave up).
pub async fn claimed_times(storage: &Storage) -> Result<Vec<InstantTime>> {
    let mut out: Vec<InstantTime> = storage
        .list_recursive(CLAIMS_DIR)
        .await?
        .iter()
        .filter_map(|m| m.location.filename())
        .filter_map(|n| n.parse().ok())
        .collect();
    out.extend(
        super::heartbeat::live(storage)
            .await?
            .iter()
            .filter_map(|(name, _)| name.parse::<InstantTime>().ok()),
    );
    out.sort();
    out.dedup();
    Ok(out)
}

/// Trims published ledger entries no live transaction can still need, and old time claims.
async fn trim(table: &Table, head: u64) -> Result<()> {
    let storage = table.storage();
    let cutoff = InstantTime::now().plus_millis(-CLAIM_RETENTION_MS);
    for m in storage.list_recursive(CLAIMS_DIR).await? {
        let old = m
            .location
            .filename()
            .and_then(|n| n.parse::<InstantTime>().ok())
            .is_some_and(|t| t < cutoff);
        if old {
            storage.delete(&storage.relative(&m.location)).await?;
        }
    }
    let oldest_live = live(storage).await?.into_iter().map(|(_, s)| s).min();
    let timeline = table.timeline().await?;
    ledger::trim(storage, head, oldest_live, |e| {
        if e.instant.action == Action::Restore {
            timeline
                .find(e.instant.time)
                .is_some_and(|r| r.is_completed())
        } else {
            reflected(&timeline, e)
        }
    })
    .await
}

/// A running action that writes data files: see the module docs.
pub(crate) struct Transaction {
    table: Table,
    inflight: Instant,
    start: u64,
    heartbeat: Option<Heartbeat>,
    created: Mutex<Vec<String>>,
    log_token: String,
}

impl Transaction {
    /// Begins a new instant of `action` after everything on `start`'s timeline: heartbeat, then
    /// REQUESTED (with `plan`) and INFLIGHT.
    pub(crate) async fn begin(
        table: &Table,
        start: &Start,
        action: Action,
        plan: Bytes,
    ) -> Result<Self> {
        let storage = table.storage();
        let time = claim_time(storage, start.timeline.latest_time()).await?;
        let heartbeat = Heartbeat::start(storage, time, start.seq).await?;
        let inflight =
            Timeline::start(storage, table.config().layout(), time, action, plan).await?;
        Ok(Self {
            table: table.clone(),
            inflight,
            start: start.seq,
            heartbeat: Some(heartbeat),
            created: Mutex::new(Vec::new()),
            log_token: crate::layout::new_log_write_token(),
        })
    }

    /// The instant time.
    pub(crate) fn time(&self) -> InstantTime {
        self.inflight.time
    }

    /// The write token of this transaction's log files (its own, see
    /// [`crate::layout::new_log_write_token`]).
    pub(crate) fn log_token(&self) -> &str {
        &self.log_token
    }

    fn record(&self, rel: &str) {
        if let Ok(mut c) = self.created.lock() {
            c.push(rel.to_owned());
        }
    }

    /// Writes a data file (replacing any previous content) after its marker.
    pub(crate) async fn write_file(&self, rel: &str, kind: MarkerKind, bytes: Bytes) -> Result<()> {
        let storage = self.table.storage();
        storage
            .put(&marker_path(self.time(), rel, kind.name()), Bytes::new())
            .await?;
        self.record(rel);
        storage.put(rel, bytes).await.map_err(Into::into)
    }

    /// Creates a data file only if absent, after its marker: `false` when it existed (another
    /// writer's), in which case this transaction never deletes it. A create whose response was lost
    /// is recognised by reading the file back.
    pub(crate) async fn create_file(
        &self,
        rel: &str,
        kind: MarkerKind,
        bytes: Bytes,
    ) -> Result<bool> {
        let storage = self.table.storage();
        let marker = marker_path(self.time(), rel, kind.name());
        storage.put(&marker, Bytes::new()).await?;
        let created = match storage.put_if_absent(rel, bytes.clone()).await {
            Ok(created) => created,
            Err(e) => match storage.get_opt(rel).await? {
                Some(found) if found == bytes => true,
                Some(_) => false,
                None => return Err(e.into()),
            },
        };
        if created {
            self.record(rel);
        } else {
            storage.delete(&marker).await?;
        }
        Ok(created)
    }

    /// Decides and publishes the completed instant with `metadata`, after `check` accepted every
    /// entry decided since the transaction began; on any failure the transaction is rolled back
    /// (unless its outcome is unknown, which the next writer resolves).
    pub(crate) async fn commit(
        mut self,
        metadata: Bytes,
        check: impl FnMut(&Entry) -> Result<()>,
    ) -> Result<Instant> {
        let done = Instant::new(self.time(), self.inflight.action, State::Completed);
        match decide_and_publish(&self.table, self.start, &done, metadata, check).await {
            Ok(_) => {
                self.clear_markers().await;
                if let Some(h) = self.heartbeat.take() {
                    h.stop().await;
                }
                Ok(done)
            }
            Err(e @ Error::CommitOutcomeUnknown { .. }) => Err(e),
            Err(e @ Error::RolledBack { .. }) => {
                // The rollback that won deleted what it found; what we wrote since goes too.
                self.discard().await;
                Err(e)
            }
            Err(e) => {
                if self.abort().await {
                    // The claim did land (its answer was lost): the commit is decided and
                    // published.
                    return Ok(done);
                }
                Err(e)
            }
        }
    }

    /// Rolls this transaction back: a rollback instant on the timeline (decided on the ledger, so it
    /// can never undo a completion), its files and markers deleted. Best effort: if the rollback
    /// fails, the markers stay, so the next writer's rollback (once the heartbeat has expired)
    /// finds every file this transaction may have written.
    /// Returns whether the transaction turned out to be decided after all (its completion is on
    /// the ledger), in which case nothing is deleted.
    pub(crate) async fn abort(mut self) -> bool {
        let mut decided = false;
        let rolled_back = match self.table.timeline().await {
            Ok(timeline) => {
                match super::rollback::rollback_instant(&self.table, &timeline, &self.inflight)
                    .await
                {
                    Ok(Some(_)) => true,
                    // Not ours to roll back: if our completion was decided after all (a claim
                    // whose answer was lost), our files are committed data and stay.
                    Ok(None) => {
                        decided = ledger::is_published(self.table.storage(), self.time())
                            .await
                            .unwrap_or(true);
                        !decided
                    }
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        if rolled_back {
            self.discard().await;
        } else {
            if decided {
                self.clear_markers().await;
            }
            if let Some(h) = self.heartbeat.take() {
                h.stop().await;
            }
        }
        decided
    }

    /// Deletes the files this transaction created and its markers.
    async fn discard(&mut self) {
        let storage = self.table.storage();
        let created = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        for rel in created {
            let _ = storage.delete(&rel).await;
        }
        self.clear_markers().await;
        if let Some(h) = self.heartbeat.take() {
            h.stop().await;
        }
    }

    async fn clear_markers(&self) {
        clear_markers(self.table.storage(), self.time()).await;
    }
}

/// Deletes the markers of the instant at `time` (best effort).
pub(crate) async fn clear_markers(storage: &Storage, time: InstantTime) {
    let dir = format!("{MARKERS_DIR}/{time}");
    if let Ok(markers) = storage.list_recursive(&dir).await {
        for m in markers {
            let _ = storage.delete(&storage.relative(&m.location)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use lake_timeline::{Action, State};

    use super::*;
    use crate::{ChangeBatch, TableConfig, TableType, WriteOptions};

    async fn table(name: &str) -> Table {
        let cfg = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        Table::create(&format!("memory://{name}"), cfg)
            .await
            .expect("create")
    }

    fn rows(ids: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        ChangeBatch::upserts(
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(ids.to_vec())),
                    Arc::new(Int64Array::from(vec![1; ids.len()])),
                ],
            )
            .expect("batch"),
        )
    }

    fn states(t: &Timeline, action: Action) -> Vec<(InstantTime, State)> {
        t.instants()
            .iter()
            .filter(|i| i.action == action)
            .map(|i| (i.time, i.state))
            .collect()
    }

    #[tokio::test]
    async fn a_live_write_is_not_rolled_back_by_a_second_writer() {
        let t = table("tx_live").await;
        let s = start(&t).await.expect("start");
        let a = Transaction::begin(&t, &s, Action::Commit, Bytes::new())
            .await
            .expect("begin a");
        let b = t
            .write(vec![rows(&[1, 2])], WriteOptions::default())
            .await
            .expect("b writes beside a");
        assert!(b.rolled_back.is_empty(), "b rolled back live a");
        let done = a
            .commit(Bytes::from_static(b"{}"), |_| Ok(()))
            .await
            .expect("a completes");
        let tl = t.timeline().await.expect("timeline");
        assert!(tl.find(done.time).is_some_and(|i| i.is_completed()));
        assert!(states(&tl, Action::Rollback).is_empty());
    }

    #[tokio::test]
    async fn a_rolled_back_instant_never_completes() {
        let t = table("tx_rolled_back").await;
        let s = start(&t).await.expect("start");
        let a = Transaction::begin(&t, &s, Action::Commit, Bytes::new())
            .await
            .expect("begin a");
        let time = a.time();
        let r = t
            .rollback_pending(time)
            .await
            .expect("rollback a")
            .expect("a was rolled back");
        let res = a.commit(Bytes::from_static(b"{}"), |_| Ok(())).await;
        assert!(
            matches!(&res, Err(Error::RolledBack { by, .. }) if *by == r.to_string()),
            "{res:?}"
        );
        let tl = t.timeline().await.expect("timeline");
        assert!(tl.find(time).is_none(), "{:?}", tl.instants());
        assert_eq!(states(&tl, Action::Rollback), [(r, State::Completed)]);
        assert!(
            !t.storage()
                .exists(&format!(".hoodie/{time}.commit"))
                .await
                .expect("exists")
        );
    }

    #[tokio::test]
    async fn a_completion_decided_before_a_rollback_is_published_not_undone() {
        let t = table("tx_decided_first").await;
        let s = start(&t).await.expect("start");
        let a = Transaction::begin(&t, &s, Action::Commit, Bytes::new())
            .await
            .expect("begin a");
        let time = a.time();
        // A decides its completion, then dies before publishing it.
        let done = Instant::new(time, Action::Commit, State::Completed);
        decide(
            &t,
            s.seq,
            time,
            &Header {
                file: done.file_name(),
                rollback: Vec::new(),
            },
            b"{}",
            |_| Ok(()),
        )
        .await
        .expect("decided");
        drop(a);
        // A rollback of it loses to the earlier decision and publishes the completion instead.
        assert_eq!(t.rollback_pending(time).await.expect("rollback call"), None);
        let tl = t.timeline().await.expect("timeline");
        assert!(
            tl.find(time).is_some_and(|i| i.is_completed()),
            "{:?}",
            tl.instants()
        );
        // So does the next writer.
        t.write(vec![rows(&[3])], WriteOptions::default())
            .await
            .expect("write");
        let tl = t.timeline().await.expect("timeline");
        assert!(tl.find(time).is_some_and(|i| i.is_completed()));
    }

    #[tokio::test]
    async fn a_decided_restore_keeps_writers_out_until_it_completes() {
        let t = table("tx_restore").await;
        t.write(vec![rows(&[1])], WriteOptions::default())
            .await
            .expect("write");
        let s = start(&t).await.expect("start");
        let r = claim_time(t.storage(), s.timeline.latest_time())
            .await
            .expect("time");
        let requested = Instant::new(r, Action::Restore, State::Requested);
        decide(
            &t,
            s.seq,
            r,
            &Header {
                file: requested.file_name(),
                rollback: vec!["20200101000000000".into()],
            },
            b"",
            |_| Ok(()),
        )
        .await
        .expect("restore decided");
        let res = t.write(vec![rows(&[2])], WriteOptions::default()).await;
        assert!(
            matches!(&res, Err(Error::RestoreInProgress { instant }) if *instant == r.to_string()),
            "{res:?}"
        );
        // Once the restore completes, writers go on.
        let done = Instant::new(r, Action::Restore, State::Completed);
        t.storage()
            .put(&s.timeline.instant_path(&done), Bytes::new())
            .await
            .expect("complete");
        t.write(vec![rows(&[2])], WriteOptions::default())
            .await
            .expect("write after the restore");
    }

    #[tokio::test]
    async fn racing_writers_on_one_file_group_lose_nothing() {
        let t = table("tx_race").await;
        for round in 0..20i64 {
            let (x, y) = tokio::join!(
                t.write_retrying(vec![rows(&[round * 2])], WriteOptions::default(), 20),
                t.write_retrying(vec![rows(&[round * 2 + 1])], WriteOptions::default(), 20)
            );
            x.expect("x");
            y.expect("y");
        }
        let (_, batches) = t
            .read_snapshot(&crate::ReadOptions::default())
            .await
            .expect("read");
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 40, "rows lost by racing writers");
    }
}
