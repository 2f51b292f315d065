//! Randomised model test of the write path: seeded sequences of upserts and deletes (duplicates,
//! out-of-order and replayed events, keys deleted in one partition and re-created in another,
//! within one batch and across batches), with compactions, cleans and archival interleaved, on copy-on-write
//! and merge-on-read tables — optionally behind a store that loses responses or fails requests.
//! After every step the snapshot must equal a replay model of the writes that reported success.
//!
//! `LAKE_SOAK=1` runs many more cases.

mod faults;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use lake_compaction::{CleanPolicy, CompactionStrategy, Scheduled};
use lake_table::keys::bucket_id;
use lake_table::timeline::Storage;
use lake_table::{ChangeBatch, ReadOptions, Table, TableConfig, TableType, WriteOptions};

use faults::{FaultStore, Rng};

const PARTITIONS: [&str; 3] = ["a", "b", "c"];
const BUCKETS: u32 = 2;

/// One event of a batch.
#[derive(Clone, Debug)]
struct Event {
    id: i64,
    p: &'static str,
    ord: i64,
    val: i64,
    delete: bool,
}

/// The replayed state: the winning version of each (key, partition), deletes included where the
/// table keeps them (merge-on-read logs until compaction).
#[derive(Default)]
struct Model {
    mor: bool,
    /// Table-wide keys (the global simple index).
    global: bool,
    versions: BTreeMap<(i64, &'static str), Event>,
    /// (partition, bucket) file groups that exist (merge-on-read: a new group never records a
    /// delete, so no tombstone is kept for it).
    groups: BTreeSet<(&'static str, u32)>,
    /// Compactions scheduled so far; a tombstone written before compaction `e` was scheduled is in
    /// its plan and gone once it completes (later ones stay in the new slice's logs).
    epoch: u32,
    /// The epoch each tombstone was written in.
    tomb_epoch: BTreeMap<(i64, &'static str), u32>,
    /// The epoch of the compaction pending now, if any.
    pending: Option<u32>,
    /// Stale deletes written while a compaction is pending, of keys whose version is a planned
    /// tombstone (the newest per key).
    shadow: BTreeMap<(i64, &'static str), Event>,
}

impl Model {
    fn apply(&mut self, batch: &[Event]) {
        if self.global {
            return self.apply_global(batch);
        }
        // In-batch: the highest ordering value per (key, partition) wins; ties go to the later row.
        let mut winners: Vec<Event> = Vec::new();
        let mut at: HashMap<(i64, &str), usize> = HashMap::new();
        for e in batch {
            match at.get(&(e.id, e.p)) {
                Some(&i) if e.ord >= winners[i].ord => winners[i] = e.clone(),
                Some(_) => {}
                None => {
                    at.insert((e.id, e.p), winners.len());
                    winners.push(e.clone());
                }
            }
        }
        let group = |e: &Event| {
            (
                e.p,
                bucket_id(&e.id.to_string(), &["id".to_owned()], BUCKETS),
            )
        };
        // A merge-on-read group gets a log (deletes included) if it exists or receives an upsert.
        let logged: Vec<_> = winners.iter().filter(|w| !w.delete).map(group).collect();
        self.groups.extend(logged);
        for w in winners {
            let cur = self.versions.get(&(w.id, w.p));
            if cur.is_some_and(|c| w.ord < c.ord) {
                self.stale_delete(&w);
                continue;
            }
            if w.delete && !(self.mor && self.groups.contains(&group(&w))) {
                self.versions.remove(&(w.id, w.p));
            } else {
                if w.delete {
                    self.tomb_epoch.insert((w.id, w.p), self.epoch);
                }
                if w.delete {
                    self.tomb_epoch.insert((w.id, w.p), self.epoch);
                }
                self.versions.insert((w.id, w.p), w);
            }
        }
    }

    /// Table-wide keys: the latest version per key wins in the batch (ties go to the later row); an
    /// upsert older than the key's live version in another partition is dropped, otherwise that
    /// copy is deleted (with the upsert's ordering value); a delete applies wherever the key lives.
    fn apply_global(&mut self, batch: &[Event]) {
        let mut winners: Vec<Event> = Vec::new();
        let mut at: HashMap<i64, usize> = HashMap::new();
        for e in batch {
            match at.get(&e.id) {
                Some(&i) if e.ord >= winners[i].ord => winners[i] = e.clone(),
                Some(_) => {}
                None => {
                    at.insert(e.id, winners.len());
                    winners.push(e.clone());
                }
            }
        }
        for w in winners {
            let elsewhere: Vec<(&'static str, i64)> = self
                .versions
                .iter()
                .filter(|((id, p), v)| *id == w.id && *p != w.p && !v.delete)
                .map(|((_, p), v)| (*p, v.ord))
                .collect();
            if !w.delete && elsewhere.iter().any(|(_, ord)| *ord > w.ord) {
                continue;
            }
            for (p, _) in elsewhere {
                self.apply_simple(Event {
                    p,
                    delete: true,
                    ..w.clone()
                });
            }
            self.apply_simple(w);
        }
    }

    /// One resolved event with the simple index: a merge-on-read delete leaves a tombstone where
    /// the partition stores the key (its base file holds it until compaction).
    fn apply_simple(&mut self, w: Event) {
        let cur = self.versions.get(&(w.id, w.p));
        if cur.is_some_and(|c| w.ord < c.ord) {
            self.stale_delete(&w);
            return;
        }
        if w.delete && !(self.mor && cur.is_some()) {
            self.versions.remove(&(w.id, w.p));
        } else {
            if w.delete {
                self.tomb_epoch.insert((w.id, w.p), self.epoch);
            }
            self.versions.insert((w.id, w.p), w);
        }
    }

    /// A compaction is planned over every file group with logs; returns its epoch.
    fn planned(&mut self) -> u32 {
        self.pending = Some(self.epoch);
        self.epoch += 1;
        self.epoch - 1
    }

    /// A stale delete is still written to the log: while a compaction is pending, one whose key's
    /// current version is a planned tombstone lands in the new slice and outlives that tombstone.
    fn stale_delete(&mut self, w: &Event) {
        let k = (w.id, w.p);
        let planned = self.pending.is_some_and(|e| {
            self.versions.get(&k).is_some_and(|c| c.delete)
                && self.tomb_epoch.get(&k).is_some_and(|t| *t <= e)
        });
        if w.delete && planned && self.shadow.get(&k).is_none_or(|s| w.ord >= s.ord) {
            self.shadow.insert(k, w.clone());
        }
    }

    /// The compaction of epoch `e` completed: tombstones written before it was planned are gone
    /// (the new slice's weaker tombstones, if any, remain).
    fn compacted(&mut self, e: u32) {
        let planned: Vec<(i64, &'static str)> = self
            .versions
            .iter()
            .filter(|(k, v)| v.delete && self.tomb_epoch.get(*k).is_some_and(|t| *t <= e))
            .map(|(k, _)| *k)
            .collect();
        for k in planned {
            match self.shadow.remove(&k) {
                Some(s) => {
                    self.tomb_epoch.insert(k, self.epoch);
                    self.versions.insert(k, s);
                }
                None => {
                    self.versions.remove(&k);
                }
            }
        }
        self.shadow.clear();
        self.pending = None;
    }

    fn rows(&self) -> Vec<(i64, String, i64, i64)> {
        self.versions
            .values()
            .filter(|v| !v.delete)
            .map(|v| (v.id, v.p.to_owned(), v.ord, v.val))
            .collect()
    }
}

fn batch_of(events: &[Event]) -> ChangeBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("p", DataType::Utf8, false),
        Field::new("ord", DataType::Int64, false),
        Field::new("val", DataType::Int64, false),
    ]));
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.id))),
            Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.p))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.ord))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.val))),
        ],
    )
    .expect("batch");
    ChangeBatch::new(
        rows,
        BooleanArray::from(events.iter().map(|e| e.delete).collect::<Vec<_>>()),
    )
}

async fn snapshot(t: &Table) -> Vec<(i64, String, i64, i64)> {
    let (_, batches) = t
        .read_snapshot(&ReadOptions::default())
        .await
        .expect("snapshot read");
    let mut out = Vec::new();
    for b in batches {
        let col = |n: &str| b.column_by_name(n).expect("column").clone();
        let (id, p, ord, val) = (col("id"), col("p"), col("ord"), col("val"));
        let p = arrow::compute::cast(&p, &DataType::Utf8).expect("utf8");
        for i in 0..b.num_rows() {
            out.push((
                id.as_primitive::<Int64Type>().value(i),
                p.as_string::<i32>().value(i).to_owned(),
                ord.as_primitive::<Int64Type>().value(i),
                val.as_primitive::<Int64Type>().value(i),
            ));
        }
    }
    out.sort();
    out
}

/// A table on a fault store.
async fn table_on(store: &FaultStore, name: &str, mor: bool, index: Index) -> Table {
    let storage = Storage::new(
        Arc::new(store.clone()),
        Default::default(),
        format!("memory://{name}"),
    );
    let mut config = TableConfig::new(
        "model",
        if mor {
            TableType::MergeOnRead
        } else {
            TableType::CopyOnWrite
        },
        vec!["id".into()],
        vec!["p".into()],
        Some("ord".into()),
        (index == Index::Bucket).then_some(BUCKETS),
    )
    .expect("config");
    config.global_index = index == Index::Global;
    storage
        .put(
            ".hoodie/hoodie.properties",
            bytes::Bytes::from(config.render()),
        )
        .await
        .expect("create");
    Table::open_storage(storage).await.expect("open")
}

/// The key index of a model table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Index {
    Bucket,
    Simple,
    /// Table-wide keys.
    Global,
}

/// One seeded case; returns the number of writes that reported success.
async fn case(seed: u64, mor: bool, index: Index, faults: bool) -> usize {
    let mut rng = Rng::new(seed);
    let name = format!("model_{seed}_{mor}_{index:?}_{faults}");
    let store = FaultStore::new(if faults { rng.next() | 1 } else { 0 });
    store.set_faults(false);
    let table = table_on(&store, &name, mor, index).await;
    store.set_faults(faults);
    let mut model = Model {
        mor,
        global: index == Index::Global,
        ..Default::default()
    };
    let mut ok = 0;
    let mut pending: Option<u32> = None;
    let steps = 3 + rng.below(8);
    for step in 0..steps {
        let roll = rng.below(10);
        if mor && roll == 0 {
            store.set_faults(false);
            // Sometimes a compaction stays pending across writes (ingest schedules, cron executes).
            if let Some(e) = pending.take() {
                lake_compaction::execute_pending(&table, 2)
                    .await
                    .expect("compact");
                model.compacted(e);
            } else {
                let s = schedule_now(&table).await;
                if matches!(s, Scheduled::Planned { .. }) {
                    let e = model.planned();
                    if rng.below(2) == 0 {
                        lake_compaction::execute_pending(&table, 2)
                            .await
                            .expect("compact");
                        model.compacted(e);
                    } else {
                        pending = Some(e);
                    }
                }
            }
            store.set_faults(faults);
        } else if roll == 1 {
            store.set_faults(false);
            lake_compaction::clean(&table, CleanPolicy::KeepLatestCommits(1))
                .await
                .expect("clean");
            store.set_faults(faults);
        } else if roll == 2 {
            // Archival as tight as it goes: everything but the latest write, where the rules allow.
            store.set_faults(false);
            let policy = lake_compaction::ArchivePolicy {
                min_commits: 1,
                max_commits: 2,
            };
            lake_compaction::archive(&table, policy)
                .await
                .expect("archive");
            store.set_faults(faults);
        } else {
            let n = 1 + rng.below(8);
            let events: Vec<Event> = (0..n)
                .map(|_| Event {
                    id: rng.below(10) as i64,
                    p: PARTITIONS[rng.below(3) as usize],
                    ord: rng.below(12) as i64,
                    val: rng.below(1000) as i64,
                    delete: rng.below(4) == 0,
                })
                .collect();
            let res = table
                .write_retrying(vec![batch_of(&events)], WriteOptions::default(), 4)
                .await;
            if std::env::var("LAKE_MODEL_DEBUG").is_ok() {
                eprintln!("write {events:?} -> {res:?}");
            }
            match res {
                Ok(_) => {
                    model.apply(&events);
                    ok += 1;
                }
                Err(e) => assert!(
                    faults,
                    "seed {seed} step {step}: a write failed without faults: {e}"
                ),
            }
        }
        store.set_faults(false);
        if std::env::var("LAKE_MODEL_DEBUG").is_ok() {
            let tl = table.timeline().await.expect("timeline");
            eprintln!(
                "step {step}: {:?}",
                tl.instants()
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
            );
            let files = table.storage().list_recursive("").await.expect("list");
            for f in files {
                eprintln!("   {}", table.storage().relative(&f.location));
            }
        }
        let got = snapshot(&table).await;
        assert_eq!(
            got,
            model.rows(),
            "seed {seed} step {step} (mor {mor}, index {index:?}, faults {faults})"
        );
        store.set_faults(faults);
    }
    ok
}

/// Schedules a compaction of every group with logs (due after one deltacommit).
async fn schedule_now(t: &Table) -> Scheduled {
    lake_compaction::schedule(
        t,
        CompactionStrategy {
            max_delta_commits: 1,
            max_log_bytes: 0,
        },
    )
    .await
    .expect("schedule")
}

/// Writes events as one commit, which must succeed.
async fn write_ok(t: &Table, events: &[Event]) -> lake_table::WriteSummary {
    t.write(vec![batch_of(events)], WriteOptions::default())
        .await
        .expect("write")
}

fn cases() -> u64 {
    if std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1") {
        3000
    } else {
        150
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_on_write_equals_the_replay_model() {
    for seed in 0..cases() {
        let index = if seed % 2 == 0 {
            Index::Bucket
        } else {
            Index::Simple
        };
        case(seed, false, index, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_on_read_equals_the_replay_model() {
    // More cases than copy-on-write: pending compactions make rarer interleavings.
    if let Some(seed) = std::env::var("LAKE_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        case(seed, true, Index::Bucket, false).await;
        return;
    }
    for seed in 0..cases() * 3 {
        case(seed, true, Index::Bucket, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_wide_keys_equal_the_replay_model() {
    if let Some(seed) = std::env::var("LAKE_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        case(seed, seed % 2 == 1, Index::Global, false).await;
        return;
    }
    for seed in 0..cases() {
        case(seed, seed % 2 == 1, Index::Global, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_behind_a_faulty_store_commit_exactly_what_reported_success() {
    let mut ok = 0;
    if let Some(seed) = std::env::var("LAKE_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        case(seed, true, Index::Bucket, true).await;
        return;
    }
    for seed in 0..cases() / 2 {
        ok += case(1000 + seed, seed % 2 == 0, Index::Bucket, true).await;
    }
    assert!(
        ok > 0,
        "no write succeeded: the faults were too many to test anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_on_the_commit_point_commits_an_insert_once() {
    for (i, part) in [
        "ledger/00000000000000000001",
        ".commit",
        ".deltacommit",
        ".parquet",
        "_0-0-0",
    ]
    .iter()
    .enumerate()
    {
        let mor = part.contains("delta") || part.contains("0-0-0") || i == 0;
        let store = FaultStore::new(0);
        let t = table_on(&store, &format!("lost_{i}"), mor, Index::Bucket).await;
        let events: Vec<Event> = (0..20)
            .map(|id| Event {
                id,
                p: PARTITIONS[(id % 3) as usize],
                ord: 1,
                val: id * 10,
                delete: false,
            })
            .collect();
        store.lose_response_of(part);
        let opts = WriteOptions {
            operation: lake_table::WriteOperation::Insert,
            ..Default::default()
        };
        let res = t.write_retrying(vec![batch_of(&events)], opts, 4).await;
        assert!(res.is_ok(), "{part}: {res:?}");
        let rows = snapshot(&t).await;
        assert_eq!(
            rows.len(),
            20,
            "{part}: rows committed twice or lost: {rows:?}"
        );
        let timeline = t.timeline().await.expect("timeline");
        assert_eq!(
            timeline.completed_writes().count(),
            1,
            "{part}: {:?}",
            timeline.instants()
        );
    }
}

/// Merge-on-read with the simple index: a key deleted in the logs, written again while a
/// compaction over its group is pending, lives only in the new slice's log once the compaction
/// drops it from the base file; later writes must still find it there (an upsert updates it, a
/// delete removes it) instead of storing a second copy or losing the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_a_log_holds_is_found_by_the_simple_index() {
    for global in [false, true] {
        let store = FaultStore::new(0);
        let index = if global { Index::Global } else { Index::Simple };
        let t = table_on(&store, &format!("log_only_{global}"), true, index).await;
        let ev = |ord: i64, val: i64, delete: bool| Event {
            id: 1,
            p: "a",
            ord,
            val,
            delete,
        };
        let write = |events: Vec<Event>| {
            let t = t.clone();
            async move {
                t.write(vec![batch_of(&events)], WriteOptions::default())
                    .await
                    .expect("write")
            }
        };
        write(vec![
            ev(1, 10, false),
            Event {
                id: 2,
                ..ev(1, 20, false)
            },
        ])
        .await;
        write(vec![ev(2, 0, true)]).await;
        let s = schedule_now(&t).await;
        assert!(matches!(s, Scheduled::Planned { .. }), "{s:?}");
        write(vec![ev(3, 30, false)]).await;
        lake_compaction::execute_pending(&t, 2)
            .await
            .expect("compact");
        let s = write(vec![ev(4, 40, false)]).await;
        assert_eq!((s.inserts, s.updates), (0, 1), "global {global}: {s:?}");
        assert_eq!(
            snapshot(&t).await,
            [(1, "a".into(), 4, 40), (2, "a".into(), 1, 20)],
            "global {global}"
        );
        write(vec![ev(5, 0, true)]).await;
        assert_eq!(
            snapshot(&t).await,
            [(2, "a".into(), 1, 20)],
            "global {global}"
        );
    }
}

/// A replayed event older than a delete, written while a compaction over its file group is
/// pending, stays deleted once the compaction completes (the compaction's base file keeps no trace
/// of the delete, so the writer drops the stale record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_older_than_a_delete_stays_deleted_across_a_pending_compaction() {
    for index in [Index::Bucket, Index::Simple, Index::Global] {
        let store = FaultStore::new(0);
        let t = table_on(&store, &format!("replay_{index:?}"), true, index).await;
        let ev = |ord: i64, val: i64, delete: bool| Event {
            id: 1,
            p: "a",
            ord,
            val,
            delete,
        };
        for e in [vec![ev(1, 10, false)], vec![ev(5, 0, true)]] {
            t.write(vec![batch_of(&e)], WriteOptions::default())
                .await
                .expect("write");
        }
        let s = schedule_now(&t).await;
        assert!(matches!(s, Scheduled::Planned { .. }), "{s:?}");
        let s = t
            .write(vec![batch_of(&[ev(3, 30, false)])], WriteOptions::default())
            .await
            .expect("replay");
        assert_eq!(s.stale, 1, "{index:?}: {s:?}");
        lake_compaction::execute_pending(&t, 2)
            .await
            .expect("compact");
        assert!(snapshot(&t).await.is_empty(), "{index:?}");
        // A newer version still comes back.
        t.write(vec![batch_of(&[ev(6, 60, false)])], WriteOptions::default())
            .await
            .expect("write");
        assert_eq!(snapshot(&t).await, [(1, "a".into(), 6, 60)], "{index:?}");
    }
}

/// Merge-on-read: compactions completing out of order leave an older deltacommit's log
/// uncompacted in a latest slice, after a newer compaction. Archival must keep that deltacommit
/// active (compaction plans take only the logs active deltacommits name): otherwise the next
/// compaction of the group builds its base file without that log, and the records are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archival_keeps_deltacommits_whose_logs_are_not_compacted() {
    let store = FaultStore::new(0);
    let t = table_on(&store, "archive_uncompacted", true, Index::Bucket).await;
    let ev = |id: i64, p: &'static str, ord: i64, val: i64| Event {
        id,
        p,
        ord,
        val,
        delete: false,
    };
    let schedule = || async {
        match schedule_now(&t).await {
            Scheduled::Planned { instant, .. } => instant,
            s => panic!("not scheduled: {s:?}"),
        }
    };
    let mut model = Model {
        mor: true,
        ..Default::default()
    };
    let mut apply = |events: &[Event]| model.apply(events);
    let w1 = vec![ev(1, "a", 1, 10), ev(2, "b", 1, 20)];
    write_ok(&t, &w1).await;
    apply(&w1);
    let c1 = schedule().await;
    // While c1 is pending: an update in its group, and a new group that the next plan takes.
    let w2 = vec![ev(1, "a", 2, 11), ev(3, "c", 1, 30)];
    let w2_time = write_ok(&t, &w2).await.instant.expect("committed");
    apply(&w2);
    let c2 = schedule().await;
    lake_compaction::execute(&t, c2, 2).await.expect("c2");
    lake_compaction::execute(&t, c1, 2).await.expect("c1");
    for i in 0..4 {
        let w = vec![ev(3, "c", 2 + i, 31 + i)];
        write_ok(&t, &w).await;
        apply(&w);
    }
    let r = lake_compaction::archive(
        &t,
        lake_compaction::ArchivePolicy {
            min_commits: 1,
            max_commits: 2,
        },
    )
    .await
    .expect("archive");
    assert!(!r.archived.is_empty(), "{r:?}");
    let kept = t.timeline().await.expect("timeline");
    assert!(
        kept.find(w2_time).is_some(),
        "the deltacommit with the uncompacted log stays active: {r:?}"
    );
    // Another log in key 1's group, then its compaction: the update of w2 must survive.
    let bucket = |id: i64| bucket_id(&id.to_string(), &["id".to_owned()], BUCKETS);
    let same_group = (2..100).find(|id| bucket(*id) == bucket(1)).expect("a key");
    let w3 = vec![ev(same_group, "a", 1, 40)];
    write_ok(&t, &w3).await;
    apply(&w3);
    let c3 = schedule().await;
    lake_compaction::execute(&t, c3, 2).await.expect("c3");
    assert_eq!(snapshot(&t).await, model.rows());
}
