//! The file-system view: file groups and file slices as of a completed instant.
//!
//! Only files of committed instants are visible (see [`Timeline::is_committed`]); file groups replaced
//! by a completed replacecommit are hidden. The view lists either the whole table or only some
//! partitions (writers list just the partitions they touch).

use std::collections::{BTreeMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use lake_timeline::{Action, InstantTime, Layout, Storage, Timeline};

use crate::archive::{self, ArchivedTimeline, Details};
use crate::layout::{BaseFile, CdcFile, LogFile};
use crate::{Error, Result};

/// One version of a file group: a base file and the log files appended to it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSlice {
    /// Partition path.
    pub partition: String,
    /// File group id.
    pub file_id: String,
    /// The slice's base instant.
    pub base_instant: InstantTime,
    /// The base file, if the slice has one.
    pub base_file: Option<BaseFile>,
    /// Log files, by version.
    pub log_files: Vec<LogFile>,
    /// CDC log files the write of this slice's base file wrote (copy-on-write tables with
    /// `hoodie.table.cdc.enabled`); never read as data, deleted with the slice.
    pub cdc_files: Vec<CdcFile>,
}

/// All file slices of the table (or of some partitions), as of one instant.
#[derive(Clone, Debug, Default)]
pub struct FileSystemView {
    /// (partition, file id) → slices by base instant.
    groups: BTreeMap<(String, String), BTreeMap<InstantTime, FileSlice>>,
}

impl FileSystemView {
    /// Lists the table (or only `partitions`) and keeps what is visible as of `as_of` (latest
    /// completed when `None`).
    pub async fn load(
        timeline: &Timeline,
        partitions: Option<&[String]>,
        as_of: Option<InstantTime>,
    ) -> Result<Self> {
        if let Some(t) = as_of {
            check_not_cleaned(timeline, t).await?;
        }
        let storage = timeline.storage();
        let files: Vec<(String, String, u64)> = match partitions {
            None => {
                // The root's own files, then each top-level folder but .hoodie, listed at once.
                let (root_files, dirs) = storage.list_dir("").await?;
                let mut files: Vec<(String, String, u64)> = root_files
                    .into_iter()
                    .filter_map(|m| {
                        Some((String::new(), m.location.filename()?.to_owned(), m.size))
                    })
                    .collect();
                let dirs = dirs
                    .into_iter()
                    .filter(|d| d != ".hoodie" && d != "__MACOSX");
                let listed: Vec<Vec<object_store::ObjectMeta>> = futures::stream::iter(dirs)
                    .map(|d| async move { storage.list_recursive(&d).await })
                    .buffer_unordered(16)
                    .try_collect()
                    .await?;
                for m in listed.into_iter().flatten() {
                    let rel = storage.relative(&m.location);
                    if rel.split('/').any(|p| p == "__MACOSX") {
                        continue;
                    }
                    let (part, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
                    files.push((part.to_owned(), name.to_owned(), m.size));
                }
                files
            }
            Some(parts) => {
                let listed: Vec<Vec<(String, String, u64)>> =
                    futures::stream::iter(parts.iter().cloned())
                        .map(|p| list_partition(storage, p))
                        .buffer_unordered(16)
                        .try_collect()
                        .await?;
                listed.into_iter().flatten().collect()
            }
        };
        let replaced = replaced_file_groups(timeline, as_of).await?;
        let mut view = FileSystemView::default();
        let mut logs = Vec::new();
        let mut cdc = Vec::new();
        for (part, name, size) in files {
            if let Some(b) = BaseFile::parse(&part, &name, size) {
                if !timeline.is_committed(b.instant, as_of)
                    || replaced.contains(&(part.clone(), b.file_id.clone()))
                {
                    continue;
                }
                let slice = view.slice_mut(&part, &b.file_id, b.instant);
                slice.base_file = Some(b);
            } else if let Some(l) = LogFile::parse(&part, &name, size) {
                if as_of.is_some_and(|a| l.instant > a)
                    || replaced.contains(&(part.clone(), l.file_id.clone()))
                {
                    continue;
                }
                logs.push(l);
            } else if let Some(c) = CdcFile::parse(&part, &name, size) {
                cdc.push(c);
            }
        }
        let by_write_instant = timeline.layout() != Layout::V1;
        // Not on the active timeline: archived (committed) or rolled back (its blocks do not count):
        // either way it completed, if at all, at its own time.
        let completion_of = |l: &LogFile| match timeline.find(l.instant) {
            Some(i) => i.is_completed().then(|| i.completion.unwrap_or(i.time)),
            None => Some(l.instant),
        };
        let mut placed: Vec<(Option<InstantTime>, LogFile)> = logs
            .into_iter()
            .map(|l| (by_write_instant.then(|| completion_of(&l)).flatten(), l))
            .collect();
        if by_write_instant {
            // Completed logs first, in completion order, so that a pending write's log never opens a
            // file group's first slice (which would hide the group until that write completes).
            placed.sort_by_key(|(c, l)| (c.is_none(), *c, l.instant, l.version));
        }
        for (completion, l) in placed {
            // v6 names a log by its slice's base instant; v8+ by the deltacommit that wrote it, which
            // belongs to the slice its deltacommit *completed* in (Hudi 1.x).
            let base = if by_write_instant {
                let bases: Vec<InstantTime> = view
                    .groups
                    .get(&(l.partition.clone(), l.file_id.clone()))
                    .map(|slices| slices.keys().copied().collect())
                    .unwrap_or_default();
                slice_of_log(&bases, l.instant, completion)
            } else {
                l.instant
            };
            let slice = view.slice_mut(&l.partition.clone(), &l.file_id.clone(), base);
            slice.log_files.push(l);
        }
        // A CDC log belongs to the base file its commit wrote; without that (committed) base file it
        // is a failed write's leftover.
        for c in cdc {
            if let Some(s) = view
                .groups
                .get_mut(&(c.partition.clone(), c.file_id.clone()))
                .and_then(|slices| slices.get_mut(&c.instant))
                .filter(|s| s.base_file.is_some())
            {
                s.cdc_files.push(c);
            }
        }
        for slices in view.groups.values_mut() {
            for s in slices.values_mut() {
                s.log_files.sort_by(|a, b| {
                    (a.instant, a.version, &a.write_token).cmp(&(
                        b.instant,
                        b.version,
                        &b.write_token,
                    ))
                });
                s.cdc_files.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        if timeline.layout() == Layout::V1
            && let Err(e) = view.verify(timeline, partitions, as_of, &replaced).await
        {
            // A compaction and a clean between reading the timeline and listing look like damage:
            // if the timeline moved on meanwhile, the caller should simply read again.
            let now = Timeline::load(storage, timeline.layout()).await?;
            if now.fingerprint() != timeline.fingerprint() {
                return Err(Error::Changed {
                    reason: e.to_string(),
                });
            }
            return Err(e);
        }
        // A file group made only of log files begins with the write that created it (bucket-index
        // merge-on-read writes); until that write completes the group does not exist — it may still
        // be rolled back, or lose a race for its bucket to another writer's new group.
        view.groups.retain(|_, slices| {
            let has_base = slices.values().any(|s| s.base_file.is_some());
            let first = slices.keys().next().copied();
            has_base
                || first
                    .is_none_or(|t| timeline.is_committed(t, as_of) || timeline.is_compaction(t))
        });
        Ok(view)
    }

    /// Checks the listing against the commit metadata: the files the completed writes (as of
    /// `as_of`) put into each file group's latest slice — its newest base file and the log files of
    /// that slice — must all be there. A committed file that is missing is an error naming it, never
    /// a silently older version (the cleaner only ever removes older slices).
    async fn verify(
        &self,
        timeline: &Timeline,
        partitions: Option<&[String]>,
        as_of: Option<InstantTime>,
        replaced: &HashSet<(String, String)>,
    ) -> Result<()> {
        let in_scope = |p: &str| partitions.is_none_or(|ps| ps.iter().any(|x| x == p));
        // (partition, file id) -> (newest base instant, its path); log paths with their slice base.
        let mut bases: BTreeMap<(String, String), (InstantTime, String)> = BTreeMap::new();
        let mut logs: Vec<(String, String, InstantTime, String)> = Vec::new();
        let writes: Vec<_> = timeline.completed_writes_until(as_of).copied().collect();
        let metas = timeline.commit_metadata_all(&writes).await?;
        for (w, meta) in writes.iter().zip(metas) {
            for s in meta.write_stats() {
                let Some(path) = s.path.as_deref().filter(|p| !p.is_empty()) else {
                    continue;
                };
                let part = s.partition_path.clone().unwrap_or_default();
                if !in_scope(&part) || replaced.contains(&(part.clone(), s.file_id.clone())) {
                    continue;
                }
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                if BaseFile::parse(dir, name, 0).is_some() {
                    let slot = bases
                        .entry((part, s.file_id.clone()))
                        .or_insert((w.time, path.to_owned()));
                    if w.time >= slot.0 {
                        *slot = (w.time, path.to_owned());
                    }
                } else if let Some(l) = LogFile::parse(dir, name, 0) {
                    logs.push((part, s.file_id.clone(), l.instant, path.to_owned()));
                }
            }
        }
        let storage = timeline.storage();
        let missing = |path: &str, what: &str| Error::Damaged {
            path: storage.display(path),
            reason: format!("the timeline says {what} is committed, but it is not in the listing"),
        };
        for ((part, id), (t, path)) in &bases {
            let listed = self
                .groups
                .get(&(part.clone(), id.clone()))
                .and_then(|slices| slices.values().rev().find_map(|s| s.base_file.as_ref()));
            match listed {
                Some(b) if b.instant >= *t => {}
                _ => return Err(missing(path, "this base file")),
            }
        }
        for (part, id, base, path) in &logs {
            let Some(slices) = self.groups.get(&(part.clone(), id.clone())) else {
                // A group with no committed base file and no listed log at all.
                if !bases.contains_key(&(part.clone(), id.clone())) {
                    return Err(missing(path, "this log file"));
                }
                continue;
            };
            // Only the latest slices matter: older ones may have been cleaned.
            let newest_base = slices
                .values()
                .rev()
                .find_map(|s| s.base_file.as_ref())
                .map(|b| b.instant);
            if newest_base.is_some_and(|nb| *base < nb) {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(path);
            let present = slices
                .values()
                .any(|s| s.log_files.iter().any(|l| l.name == name));
            if !present {
                return Err(missing(path, "this log file"));
            }
        }
        Ok(())
    }

    fn slice_mut(
        &mut self,
        partition: &str,
        file_id: &str,
        base_instant: InstantTime,
    ) -> &mut FileSlice {
        self.groups
            .entry((partition.to_owned(), file_id.to_owned()))
            .or_default()
            .entry(base_instant)
            .or_insert_with(|| FileSlice {
                partition: partition.to_owned(),
                file_id: file_id.to_owned(),
                base_instant,
                base_file: None,
                log_files: Vec::new(),
                cdc_files: Vec::new(),
            })
    }

    /// The latest slice of every file group, ordered by partition and file id, merged with the
    /// slice before it when it has no base file yet (see [`FileSystemView::latest_slice`]).
    pub fn latest_slices(&self) -> Vec<FileSlice> {
        self.groups.values().filter_map(merged_latest).collect()
    }

    /// The latest slice of one file group. A slice without a base file that follows another one
    /// begins at a compaction that has not completed: readers see the latest earlier base file with
    /// the logs of every slice since (Hudi's `mergeCompactionPendingFileSlices`), while
    /// `base_instant` stays the new slice's, where writers append.
    pub fn latest_slice(&self, partition: &str, file_id: &str) -> Option<FileSlice> {
        self.groups
            .get(&(partition.to_owned(), file_id.to_owned()))
            .and_then(merged_latest)
    }

    /// The file ids of one partition.
    pub fn file_ids<'a>(&'a self, partition: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.groups
            .keys()
            .filter(move |(p, _)| p == partition)
            .map(|(_, f)| f.as_str())
    }

    /// The slices of every file group, oldest first.
    pub fn file_groups(&self) -> impl Iterator<Item = Vec<&FileSlice>> {
        self.groups.values().map(|s| s.values().collect())
    }

    /// Every slice of every file group (oldest first within a group).
    pub fn all_slices(&self) -> impl Iterator<Item = &FileSlice> {
        self.groups.values().flat_map(|s| s.values())
    }
}

/// The base instant of the slice a version-8/9 log file belongs to (Hudi 1.x's
/// `HoodieFileGroup#getBaseInstantTime`): `bases` are the group's slice base instants (ascending),
/// `written` the deltacommit that wrote the log, `completed` its completion time (`None` while it is
/// pending). A group without slices, or a completion before every base, keys the log by `written`;
/// a pending deltacommit's log goes to the latest slice; otherwise the log belongs to the slice with
/// the largest base instant at or before the completion — so a deltacommit that started before a
/// compaction but completed after it lands in the compaction's slice.
fn slice_of_log(
    bases: &[InstantTime],
    written: InstantTime,
    completed: Option<InstantTime>,
) -> InstantTime {
    let Some(latest) = bases.last() else {
        return written;
    };
    match completed {
        None => *latest,
        Some(c) => bases
            .iter()
            .rev()
            .find(|b| **b <= c)
            .copied()
            .unwrap_or(written),
    }
}

/// The latest slice of a file group, merged with every slice before it back to (and including) the
/// latest one with a base file: slices without a base file begin at compactions that have not
/// completed (or were withdrawn), and their logs apply on top of that base file.
fn merged_latest(slices: &BTreeMap<InstantTime, FileSlice>) -> Option<FileSlice> {
    let latest = slices.values().next_back()?;
    if latest.base_file.is_some() {
        return Some(latest.clone());
    }
    let mut chain: Vec<&FileSlice> = Vec::new();
    for s in slices.values().rev() {
        chain.push(s);
        if s.base_file.is_some() {
            break;
        }
    }
    let mut merged = latest.clone();
    merged.base_file = chain.last().and_then(|s| s.base_file.clone());
    merged.log_files = chain
        .iter()
        .rev()
        .flat_map(|s| s.log_files.iter().cloned())
        .collect();
    Some(merged)
}

async fn list_partition(
    storage: &Storage,
    partition: String,
) -> Result<Vec<(String, String, u64)>> {
    let (files, _) = storage.list_dir(&partition).await?;
    Ok(files
        .into_iter()
        .filter_map(|m| {
            let name = m.location.filename()?.to_owned();
            Some((partition.clone(), name, m.size))
        })
        .collect())
}

/// File groups hidden by completed replacecommits at or before `as_of`.
async fn replaced_file_groups(
    timeline: &Timeline,
    as_of: Option<InstantTime>,
) -> Result<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    let replaces: Vec<_> = timeline
        .completed_writes_until(as_of)
        .filter(|i| i.action == Action::ReplaceCommit)
        .copied()
        .collect();
    for inst in replaces {
        let meta = timeline.commit_metadata(&inst).await?;
        for (part, ids) in meta.partition_to_replace_file_ids {
            for id in ids {
                out.insert((part.clone(), id));
            }
        }
    }
    Ok(out)
}

/// The earliest instant whose snapshot the cleaner left complete: the latest
/// `earliestCommitToRetain` of the completed cleans, archived ones included (`None` when nothing was
/// cleaned).
pub async fn earliest_retained(timeline: &Timeline) -> Result<Option<InstantTime>> {
    let cleans: Vec<_> = timeline
        .by_actions(&[Action::Clean])
        .filter(|i| i.is_completed())
        .copied()
        .collect();
    let mut earliest: Option<InstantTime> = None;
    for c in cleans {
        let path = timeline.instant_path(&c);
        // Archived since the timeline was listed: the archive (read below) holds it.
        let Some(bytes) = timeline.storage().get_opt(&path).await? else {
            continue;
        };
        let point =
            clean_retain_point(&bytes).map_err(|reason| lake_timeline::Error::Metadata {
                path: timeline.storage().display(&path),
                reason,
            })?;
        earliest = earliest.max(point);
    }
    // A clean the archive holds may have retained more (a policy that kept fewer commits then).
    let archived = ArchivedTimeline::load(timeline.storage(), timeline.layout()).await?;
    for c in archived
        .instants()
        .iter()
        .filter(|i| i.action == Some(Action::Clean))
    {
        let point = match &c.details {
            Details::None => None,
            Details::Json(v) => v
                .get("earliestCommitToRetain")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok()),
            Details::Avro(b) => clean_retain_point(b).map_err(|r| archive::bad_details(c, r))?,
        };
        earliest = earliest.max(point);
    }
    Ok(earliest)
}

/// The `earliestCommitToRetain` of a clean's metadata (an Avro container; `None` when empty).
fn clean_retain_point(bytes: &[u8]) -> std::result::Result<Option<InstantTime>, String> {
    let meta: Option<lake_timeline::wire::CleanMetadata> =
        lake_timeline::wire::read_container(lake_timeline::wire::CLEAN_METADATA_SCHEMA, bytes)?;
    Ok(meta.and_then(|m| m.earliest_commit_to_retain.parse().ok()))
}

/// Refuses a read (or a savepoint) as of an instant whose file slices the cleaner has removed,
/// unless a savepoint kept them.
pub async fn check_not_cleaned(timeline: &Timeline, as_of: InstantTime) -> Result<()> {
    check_on_timeline(timeline, as_of).await?;
    if timeline
        .savepoints()
        .iter()
        .any(|s| s.time == as_of && s.is_completed())
    {
        return Ok(());
    }
    match earliest_retained(timeline).await? {
        Some(e) if as_of < e => Err(Error::Cleaned {
            as_of: as_of.to_string(),
            earliest: e.to_string(),
        }),
        _ => Ok(()),
    }
}

/// An as-of instant before the first completed write on the active timeline is read from the
/// archived timeline (files older than the active timeline count as committed, as in Hudi); before
/// the table's first write at all, it is an error saying so.
async fn check_on_timeline(timeline: &Timeline, as_of: InstantTime) -> Result<()> {
    let first_active = timeline.completed_writes().next().map(|i| i.time);
    if first_active.is_some_and(|f| as_of >= f) {
        return Ok(());
    }
    let storage = timeline.storage();
    let first_archived = ArchivedTimeline::load(storage, timeline.layout())
        .await?
        .completed_writes()
        .next()
        .map(|i| i.time);
    let Some(first) = first_archived.or(first_active) else {
        return Ok(());
    };
    if as_of >= first {
        return Ok(());
    }
    let archived = if first_archived.is_some() {
        " (archived)"
    } else {
        ""
    };
    Err(Error::BeforeTimeline {
        as_of: as_of.to_string(),
        reason: format!("the table's first commit is {first}{archived}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-8 log-only file group whose first listed log is a pending write's still shows the
    /// completed write's log (listing order must not matter).
    #[tokio::test]
    async fn a_pending_log_does_not_hide_a_log_only_group() {
        let storage = lake_timeline::Storage::try_from_uri("memory://v8_log_only").expect("store");
        for (file, body) in [
            (
                ".hoodie/timeline/20250101000000100.deltacommit.requested",
                "",
            ),
            (
                ".hoodie/timeline/20250101000000200.deltacommit.requested",
                "",
            ),
            (
                ".hoodie/timeline/20250101000000200_20250101000000250.deltacommit",
                "",
            ),
            ("p/.f-0_20250101000000100.log.1_0-0-0", "x"),
            ("p/.f-0_20250101000000200.log.1_0-0-0", "x"),
        ] {
            storage
                .put(file, bytes::Bytes::from(body))
                .await
                .expect("put");
        }
        let timeline = Timeline::load(&storage, Layout::V2)
            .await
            .expect("timeline");
        let view = FileSystemView::load(&timeline, None, None)
            .await
            .expect("view");
        let slices = view.latest_slices();
        assert_eq!(slices.len(), 1, "{slices:?}");
        let names: Vec<&str> = slices[0]
            .log_files
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert!(
            names.contains(&".f-0_20250101000000200.log.1_0-0-0"),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn a_first_write_in_flight_is_invisible_on_an_empty_timeline() {
        // Two writers of a new table each create a group for bucket 0 (log-only, merge-on-read) and
        // a base file (copy-on-write) after a third read the still empty timeline: none of it counts.
        let storage =
            lake_timeline::Storage::try_from_uri("memory://v6_first_write").expect("store");
        for file in [
            "p/.00000000-aaaa-0_20250101000000100.log.1_0-0-0",
            "p/.00000000-bbbb-0_20250101000000200.log.1_0-0-0",
            "p/00000001-cccc-0_0-0-0_20250101000000300.parquet",
        ] {
            storage
                .put(file, bytes::Bytes::from("x"))
                .await
                .expect("put");
        }
        let timeline = Timeline::load(&storage, Layout::V1)
            .await
            .expect("timeline");
        let view = FileSystemView::load(&timeline, Some(&["p".to_owned()]), None)
            .await
            .expect("view");
        assert_eq!(view.file_ids("p").count(), 0, "{:?}", view.latest_slices());
    }

    #[test]
    fn version_8_logs_belong_to_the_slice_their_deltacommit_completed_in() {
        let t = |s: &str| -> InstantTime { s.parse().expect("time") };
        let bases = [t("20250101000000100"), t("20250101000000300")];
        // Started before the compaction at 300, completed after it: the compaction's slice.
        assert_eq!(
            slice_of_log(&bases, t("20250101000000200"), Some(t("20250101000000400"))),
            t("20250101000000300")
        );
        // Started and completed before it: the older slice.
        assert_eq!(
            slice_of_log(&bases, t("20250101000000150"), Some(t("20250101000000250"))),
            t("20250101000000100")
        );
        // Still pending: the latest slice; no slices, or completed before every base: its own time.
        assert_eq!(
            slice_of_log(&bases, t("20250101000000350"), None),
            t("20250101000000300")
        );
        assert_eq!(
            slice_of_log(&[], t("20250101000000050"), Some(t("20250101000000060"))),
            t("20250101000000050")
        );
        assert_eq!(
            slice_of_log(&bases, t("20250101000000050"), Some(t("20250101000000060"))),
            t("20250101000000050")
        );
    }

    fn slice(t: &str, base: bool, logs: &[u32]) -> (InstantTime, FileSlice) {
        let time: InstantTime = t.parse().expect("time");
        let base_file =
            base.then(|| BaseFile::parse("", &format!("f-0_0-0-0_{t}.parquet"), 1).expect("base"));
        let log_files = logs
            .iter()
            .map(|v| LogFile::parse("", &format!(".f-0_{t}.log.{v}_0-0-0"), 1).expect("log"))
            .collect();
        (
            time,
            FileSlice {
                partition: String::new(),
                file_id: "f-0".into(),
                base_instant: time,
                base_file,
                log_files,
                cdc_files: Vec::new(),
            },
        )
    }

    #[test]
    fn slices_without_base_files_merge_back_to_the_latest_base_file() {
        // A base file, a slice whose compaction was withdrawn, and a pending compaction's slice.
        let slices: BTreeMap<InstantTime, FileSlice> = [
            slice("20250101000000000", true, &[1, 2]),
            slice("20250102000000000", false, &[1]),
            slice("20250103000000000", false, &[1, 2]),
        ]
        .into_iter()
        .collect();
        let m = merged_latest(&slices).expect("slice");
        assert_eq!(m.base_instant.to_string(), "20250103000000000");
        assert_eq!(
            m.base_file.as_ref().map(|b| b.instant.to_string()),
            Some("20250101000000000".to_owned())
        );
        let logs: Vec<String> = m
            .log_files
            .iter()
            .map(|l| format!("{}.{}", l.instant, l.version))
            .collect();
        assert_eq!(
            logs,
            [
                "20250101000000000.1",
                "20250101000000000.2",
                "20250102000000000.1",
                "20250103000000000.1",
                "20250103000000000.2"
            ]
        );
        // A slice with a base file stands alone.
        let mut done = slices.clone();
        let (t, s) = slice("20250104000000000", true, &[]);
        done.insert(t, s);
        assert_eq!(merged_latest(&done).expect("slice").log_files.len(), 0);
    }
}
