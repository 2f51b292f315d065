//! Loading, filtering and publishing the timeline of one table.
//!
//! The timeline is read by listing `.hoodie/` (layout 1, table version 6) or `.hoodie/timeline/`
//! (layout 2, versions 8 and 9). Each instant time appears once, in the furthest state whose file
//! exists. Transitions are published with create-if-absent: the completed file is the commit point.

use bytes::Bytes;

use crate::metadata::CommitMetadata;
use crate::{Action, Error, Instant, InstantTime, Result, State, Storage};

/// The timeline layout version (`hoodie.timeline.layout.version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Layout 1: instants flat in `.hoodie/`, JSON commit metadata (table versions ≤ 7).
    V1,
    /// Layout 2: instants in `.hoodie/timeline/`, completion times in names, Avro metadata (8, 9).
    V2,
}

impl Layout {
    /// The root-relative folder holding the instant files.
    pub fn dir(self) -> &'static str {
        match self {
            Layout::V1 => ".hoodie",
            Layout::V2 => ".hoodie/timeline",
        }
    }
}

/// A loaded, immutable view of a table's timeline, sorted by instant time.
#[derive(Clone, Debug)]
pub struct Timeline {
    storage: Storage,
    layout: Layout,
    instants: Vec<Instant>,
    /// Times of compaction instants (a completed compaction is listed as a `commit`).
    compactions: Vec<InstantTime>,
    /// Savepoints, which share the time of the commit they pin and so are kept apart.
    savepoints: Vec<Instant>,
}

impl Timeline {
    /// Lists and parses the instant files of the table.
    pub async fn load(storage: &Storage, layout: Layout) -> Result<Self> {
        let (files, _) = storage.list_dir(layout.dir()).await?;
        Ok(Self::from_file_names(
            storage,
            layout,
            files.iter().filter_map(|m| m.location.filename()),
        ))
    }

    /// The timeline made of these instant file names (names that are not instants are ignored):
    /// what [`Timeline::load`] builds from a listing, and what [`Timeline::file_names`] gives back.
    pub fn from_file_names<'a>(
        storage: &Storage,
        layout: Layout,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut parsed: Vec<Instant> = names
            .into_iter()
            .filter_map(Instant::parse_file_name)
            .collect();
        // Keep, per instant time, only the furthest state; a completed compaction keeps the action of
        // its completed file (commit), as Hudi reports it.
        parsed.sort_by_key(|i| (i.time, i.state));
        let mut savepoints: Vec<Instant> = Vec::new();
        parsed.retain(|i| {
            if i.action != Action::Savepoint {
                return true;
            }
            match savepoints.last_mut() {
                Some(last) if last.time == i.time => *last = *i,
                _ => savepoints.push(*i),
            }
            false
        });
        let mut compactions: Vec<InstantTime> = parsed
            .iter()
            .filter(|i| i.action == Action::Compaction)
            .map(|i| i.time)
            .collect();
        compactions.dedup();
        let mut instants: Vec<Instant> = Vec::with_capacity(parsed.len());
        for inst in parsed {
            match instants.last_mut() {
                Some(last) if last.time == inst.time => *last = inst,
                _ => instants.push(inst),
            }
        }
        Self {
            storage: storage.clone(),
            layout,
            instants,
            compactions,
            savepoints,
        }
    }

    /// Instant file names that rebuild this timeline with [`Timeline::from_file_names`] (each
    /// instant in its furthest state, savepoints, and the request of every compaction), so a
    /// timeline can travel with a query plan to another process.
    pub fn file_names(&self) -> Vec<String> {
        self.instants
            .iter()
            .chain(&self.savepoints)
            .map(Instant::file_name)
            .chain(
                self.compactions
                    .iter()
                    .map(|t| Instant::new(*t, Action::Compaction, State::Requested).file_name()),
            )
            .collect()
    }

    /// Savepoints in any state, oldest first (a savepoint has the time of the commit it pins).
    pub fn savepoints(&self) -> &[Instant] {
        &self.savepoints
    }

    /// Whether the instant at `time` is a compaction (pending, or completed as a `commit`).
    pub fn is_compaction(&self, time: InstantTime) -> bool {
        self.compactions.binary_search(&time).is_ok()
    }

    /// Compaction instants in any state, oldest first (completed ones as their `commit`).
    pub fn compactions(&self) -> impl Iterator<Item = &Instant> {
        self.instants
            .iter()
            .filter(|i| self.compactions.binary_search(&i.time).is_ok())
    }

    /// The storage of the table.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The layout of this timeline.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Every instant, oldest first.
    pub fn instants(&self) -> &[Instant] {
        &self.instants
    }

    /// Completed instants, oldest first.
    pub fn completed(&self) -> impl Iterator<Item = &Instant> {
        self.instants.iter().filter(|i| i.is_completed())
    }

    /// Requested or inflight instants, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Instant> {
        self.instants.iter().filter(|i| !i.is_completed())
    }

    /// Completed instants that make data visible (commit, deltacommit, replacecommit), oldest first.
    pub fn completed_writes(&self) -> impl Iterator<Item = &Instant> {
        self.completed().filter(|i| i.action.writes_data())
    }

    /// Completed data-writing instants at or before `until` (all when `None`).
    pub fn completed_writes_until(
        &self,
        until: Option<InstantTime>,
    ) -> impl Iterator<Item = &Instant> {
        self.completed_writes()
            .filter(move |i| until.is_none_or(|u| i.time <= u))
    }

    /// Instants of the given actions, in any state.
    pub fn by_actions<'a>(&'a self, actions: &'a [Action]) -> impl Iterator<Item = &'a Instant> {
        self.instants.iter().filter(|i| actions.contains(&i.action))
    }

    /// The instant with this time, if any.
    pub fn find(&self, time: InstantTime) -> Option<&Instant> {
        // Instants are sorted by time, one per time.
        self.instants
            .binary_search_by(|i| i.time.cmp(&time))
            .ok()
            .map(|idx| &self.instants[idx])
    }

    /// The latest completed data-writing instant.
    pub fn last_completed_write(&self) -> Option<&Instant> {
        self.completed_writes().last()
    }

    /// The latest instant time on the timeline, in any state.
    pub fn latest_time(&self) -> Option<InstantTime> {
        self.instants.last().map(|i| i.time)
    }

    /// The earliest instant time on the (active) timeline; files older than it count as committed.
    pub fn first_time(&self) -> Option<InstantTime> {
        self.instants.first().map(|i| i.time)
    }

    /// Whether files written at `time` are visible at `as_of` (all completed when `None`): the time is
    /// a completed data-writing instant, or is older than the whole active timeline (archived). On an
    /// empty timeline nothing is committed: files there belong to a first write still in flight
    /// (its REQUESTED file appeared after this timeline was read), never to an archived one.
    pub fn is_committed(&self, time: InstantTime, as_of: Option<InstantTime>) -> bool {
        if as_of.is_some_and(|a| time > a) {
            return false;
        }
        match self.instants.binary_search_by(|i| i.time.cmp(&time)) {
            Ok(idx) => {
                let i = &self.instants[idx];
                i.is_completed() && i.action.writes_data()
            }
            Err(_) => self.first_time().is_some_and(|first| time < first),
        }
    }

    /// A fingerprint of every instant and its state: equal fingerprints mean an unchanged timeline,
    /// so anything derived from it (file listings, schemas) can be reused.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.instants.hash(&mut h);
        h.finish()
    }

    /// The root-relative path of an instant's file.
    pub fn instant_path(&self, instant: &Instant) -> String {
        format!("{}/{}", self.layout.dir(), instant.file_name())
    }

    /// Reads the commit metadata of a completed commit, deltacommit or replacecommit (JSON on
    /// timeline layout 1, Avro on layout 2).
    pub async fn commit_metadata(&self, instant: &Instant) -> Result<CommitMetadata> {
        let path = self.instant_path(instant);
        let bytes = self.storage.get(&path).await?;
        let parsed = match self.layout {
            Layout::V1 => CommitMetadata::from_json_bytes(&bytes).map_err(|e| e.to_string()),
            Layout::V2 => CommitMetadata::from_avro_bytes(&bytes),
        };
        parsed.map_err(|reason| Error::Metadata {
            path: self.storage.display(&path),
            reason,
        })
    }

    /// The commit metadata of each of `instants`, in order (up to 16 read at once, through the
    /// cache of [`Timeline::commit_metadata_cached`]).
    pub async fn commit_metadata_all(
        &self,
        instants: &[Instant],
    ) -> Result<Vec<std::sync::Arc<CommitMetadata>>> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(instants.iter().copied())
            .map(|w| async move { self.commit_metadata_cached(&w).await })
            .buffered(16)
            .try_collect()
            .await
    }

    /// [`Timeline::commit_metadata`] through a process-wide cache (completed instant files never
    /// change; the cache holds at most a few thousand).
    pub async fn commit_metadata_cached(
        &self,
        instant: &Instant,
    ) -> Result<std::sync::Arc<CommitMetadata>> {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<CommitMetadata>>>> = OnceLock::new();
        const MAX: usize = 4096;
        let key = self.storage.display(&self.instant_path(instant));
        let cache = CACHE.get_or_init(Default::default);
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let meta = Arc::new(self.commit_metadata(instant).await?);
        if instant.is_completed()
            && let Ok(mut c) = cache.lock()
        {
            if c.len() >= MAX {
                c.clear();
            }
            c.insert(key, meta.clone());
        }
        Ok(meta)
    }

    /// Publishes an instant state: creates its file only if absent. Losing the race to another writer
    /// is [`Error::CommitConflict`].
    pub async fn publish(
        storage: &Storage,
        layout: Layout,
        instant: &Instant,
        content: Bytes,
    ) -> Result<()> {
        let rel = format!("{}/{}", layout.dir(), instant.file_name());
        if storage.put_if_absent(&rel, content).await? {
            Ok(())
        } else {
            Err(Error::CommitConflict {
                instant: instant.time.to_string(),
                path: storage.display(&rel),
            })
        }
    }

    /// Starts a new instant: publishes its REQUESTED then INFLIGHT files.
    pub async fn start(
        storage: &Storage,
        layout: Layout,
        time: InstantTime,
        action: Action,
        plan: Bytes,
    ) -> Result<Instant> {
        let requested = Instant::new(time, action, State::Requested);
        Self::publish(storage, layout, &requested, plan).await?;
        let inflight = Instant::new(time, action, State::Inflight);
        Self::publish(storage, layout, &inflight, Bytes::new()).await?;
        Ok(inflight)
    }

    /// Completes an inflight instant with its metadata: the commit point.
    pub async fn complete(
        storage: &Storage,
        layout: Layout,
        inflight: &Instant,
        metadata: Bytes,
    ) -> Result<Instant> {
        let done = Instant::new(inflight.time, inflight.action, State::Completed);
        Self::publish(storage, layout, &done, metadata).await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> InstantTime {
        s.parse().expect("valid")
    }

    #[tokio::test]
    async fn load_collapses_states_and_orders_instants() {
        let s = Storage::try_from_uri("memory://timeline_load").expect("store");
        let t1 = t("20250101000000001");
        let t2 = t("20250101000000002");
        let t3 = t("20250101000000003");
        Timeline::start(&s, Layout::V1, t1, Action::Commit, Bytes::new())
            .await
            .expect("start t1");
        let i1 = Instant::new(t1, Action::Commit, State::Inflight);
        Timeline::complete(&s, Layout::V1, &i1, Bytes::new())
            .await
            .expect("complete t1");
        Timeline::start(&s, Layout::V1, t3, Action::Compaction, Bytes::new())
            .await
            .expect("t3");
        let req = Instant::new(t2, Action::Clean, State::Requested);
        Timeline::publish(&s, Layout::V1, &req, Bytes::new())
            .await
            .expect("t2");
        s.put(".hoodie/hoodie.properties", Bytes::new())
            .await
            .expect("props");

        let tl = Timeline::load(&s, Layout::V1).await.expect("load");
        let got: Vec<String> = tl.instants().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "20250101000000001 commit COMPLETED",
                "20250101000000002 clean REQUESTED",
                "20250101000000003 compaction INFLIGHT"
            ]
        );
        assert!(tl.is_committed(t1, None));
        assert!(!tl.is_committed(t1, Some(t("20250101000000000"))));
        assert!(!tl.is_committed(t3, None));
        assert!(
            tl.is_committed(t("20240101000000000"), None),
            "archived instants count as committed"
        );
        // A write that began after the timeline was read is not on it: never committed, even when
        // it is the table's first.
        assert!(!tl.is_committed(t("20260101000000000"), None));
        let fresh = Storage::try_from_uri("memory://timeline_empty").expect("store");
        let empty = Timeline::load(&fresh, Layout::V1).await.expect("load");
        assert!(!empty.is_committed(t1, None));
        assert_eq!(tl.pending().count(), 2);
    }

    #[tokio::test]
    async fn completing_twice_is_a_conflict() {
        let s = Storage::try_from_uri("memory://timeline_conflict").expect("store");
        let time = t("20250101000000001");
        let inflight = Timeline::start(&s, Layout::V1, time, Action::Commit, Bytes::new())
            .await
            .expect("start");
        let (a, b) = tokio::join!(
            Timeline::complete(&s, Layout::V1, &inflight, Bytes::from_static(b"{}")),
            Timeline::complete(&s, Layout::V1, &inflight, Bytes::from_static(b"{}"))
        );
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(loser, Err(Error::CommitConflict { .. })),
            "{loser:?}"
        );
        assert!(matches!(
            Timeline::start(&s, Layout::V1, time, Action::Commit, Bytes::new()).await,
            Err(Error::CommitConflict { .. })
        ));
    }

    #[test]
    fn file_names_rebuild_the_same_timeline() {
        let s = Storage::try_from_uri("memory://timeline_names").expect("store");
        for layout in [Layout::V1, Layout::V2] {
            let names = [
                "20250101000000001.commit.requested",
                "20250101000000001.commit.inflight",
                "20250101000000001_20250101000000009.commit",
                "20250101000000002.compaction.requested",
                "20250101000000002.compaction.inflight",
                "20250101000000002_20250101000000003.commit",
                "20250101000000001.savepoint.inflight",
                "20250101000000001.savepoint",
                "20250101000000004.compaction.requested",
                "20250101000000005.deltacommit.requested",
                "20250101000000005.deltacommit.inflight",
                "hoodie.properties",
            ];
            let tl = Timeline::from_file_names(&s, layout, names);
            let again =
                Timeline::from_file_names(&s, layout, tl.file_names().iter().map(String::as_str));
            assert_eq!(again.instants(), tl.instants());
            assert_eq!(again.savepoints(), tl.savepoints());
            assert_eq!(again.compactions, tl.compactions);
            assert_eq!(
                tl.compactions,
                [t("20250101000000002"), t("20250101000000004")]
            );
            assert_eq!(tl.instants().len(), 4);
            assert_eq!(tl.savepoints().len(), 1);
            assert_eq!(again.fingerprint(), tl.fingerprint());
        }
    }
}
