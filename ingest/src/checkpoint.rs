//! Kafka offsets as Hudi Streamer checkpoints: `topic,partition:offset,partition:offset,...`, the next
//! offset to read of each partition, stored in each commit under `deltastreamer.checkpoint.key`.
//!
//! Several `lake ingest` processes may feed one table, each owning some of the topic's partitions
//! (Kafka's consumer group decides which): a commit records the partitions its batch consumed, so
//! a partition's position is the highest offset any completed commit recorded for it (see
//! [`effective`]). A partition whose checkpoint was reset (`--reset-checkpoint`) starts over at the
//! commit that records the reset under [`RESET_KEY`]. [`KafkaFence`] keeps two processes from
//! applying one offset range twice: offsets recorded for a partition only grow, in the order the
//! commits were decided, and so in instant order too (a batch starts only after the commit before
//! it completed) — the newest record of a partition is never archived while an older one stays.

use std::collections::BTreeMap;
use std::sync::Arc;

use lake_table::timeline::CommitMetadata;

/// Commit metadata key of the partitions whose checkpoint a commit reset (`topic,p:offset,...`):
/// offsets that earlier commits recorded for them no longer count.
pub const RESET_KEY: &str = "lake.checkpoint.reset";

/// The next offset to read of each partition of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The topic.
    pub topic: String,
    /// partition → next offset.
    pub offsets: BTreeMap<i32, i64>,
}

impl Checkpoint {
    /// An empty checkpoint of `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            offsets: BTreeMap::new(),
        }
    }

    /// Parses Hudi's format; `None` if the text is not a checkpoint of this form.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(',');
        let topic = parts.next()?.trim();
        if topic.is_empty() {
            return None;
        }
        let mut offsets = BTreeMap::new();
        for p in parts {
            let (part, off) = p.trim().split_once(':')?;
            offsets.insert(part.trim().parse().ok()?, off.trim().parse().ok()?);
        }
        Some(Self {
            topic: topic.to_owned(),
            offsets,
        })
    }

    /// Hudi's text form, partitions in order.
    pub fn render(&self) -> String {
        let mut s = self.topic.clone();
        for (p, o) in &self.offsets {
            s.push_str(&format!(",{p}:{o}"));
        }
        s
    }
}

/// The position of each partition of `topic` after `commits` (oldest first): the highest offset
/// recorded for it since its last reset.
pub fn effective<'a>(
    topic: &str,
    commits: impl IntoIterator<Item = &'a CommitMetadata>,
) -> BTreeMap<i32, i64> {
    let mut at: BTreeMap<i32, i64> = BTreeMap::new();
    for meta in commits {
        if let Some(reset) = meta
            .extra_metadata
            .get(RESET_KEY)
            .and_then(|t| Checkpoint::parse(t))
            .filter(|c| c.topic == topic)
        {
            at.extend(reset.offsets);
        }
        if let Some(c) = meta.checkpoint().and_then(Checkpoint::parse)
            && c.topic == topic
        {
            for (p, o) in c.offsets {
                let e = at.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
    }
    at
}

/// The fence of one batch: the offset each of its partitions starts at. The batch may commit only
/// while the table's position of each of them is that offset (or none is recorded), and no other
/// commit records one of them before it completes. Otherwise another process has applied part of
/// the batch (the partition moved to it, or it was reset), or the batch's own earlier attempt
/// landed although its answer was lost.
#[derive(Debug)]
pub struct KafkaFence {
    /// The topic.
    pub topic: String,
    /// partition → the batch's first offset (the checkpoint it continues from).
    pub starts: BTreeMap<i32, i64>,
}

impl KafkaFence {
    fn moved(&self, p: i32, o: i64, start: i64) -> String {
        format!(
            "topic {} partition {p}: the table's offset is {o}, and this batch starts at {start} \
             (the partition moved between processes or was reset, or an earlier attempt of this \
             batch landed)",
            self.topic
        )
    }
}

impl lake_table::SourceFence for KafkaFence {
    fn check(&self, committed: &[Arc<CommitMetadata>]) -> Result<(), String> {
        let at = effective(&self.topic, committed.iter().map(Arc::as_ref));
        for (p, start) in &self.starts {
            if let Some(o) = at.get(p).filter(|o| *o != start) {
                return Err(self.moved(*p, *o, *start));
            }
        }
        Ok(())
    }

    fn check_since(&self, decided: &CommitMetadata) -> Result<(), String> {
        // Only this batch may record its partitions from its start on.
        let at = effective(&self.topic, [decided]);
        for (p, start) in &self.starts {
            if let Some(o) = at.get(p) {
                return Err(self.moved(*p, *o, *start));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lake_table::SourceFence;

    fn commit(checkpoint: &str, reset: Option<&str>) -> CommitMetadata {
        let mut m = CommitMetadata::default();
        m.extra_metadata.insert(
            lake_table::timeline::CHECKPOINT_KEY.into(),
            checkpoint.into(),
        );
        if let Some(r) = reset {
            m.extra_metadata.insert(RESET_KEY.into(), r.into());
        }
        m
    }

    #[test]
    fn a_partition_is_at_the_highest_offset_recorded_since_its_reset() {
        let commits = [
            commit("t,0:10,1:5", None),
            // Another process owns partition 2; a late commit of a former owner of 0.
            commit("t,2:7", None),
            commit("t,0:8", None),
            commit("other,0:99", None),
            // Partition 1 was reset to 3 (topic recreated), then went on.
            commit("t,1:3", Some("t,1:3")),
            commit("t,1:4,2:9", None),
        ];
        assert_eq!(
            effective("t", commits.iter()),
            BTreeMap::from([(0, 10), (1, 4), (2, 9)])
        );
    }

    #[test]
    fn a_batch_is_fenced_unless_the_table_stands_at_its_start() {
        let fence = KafkaFence {
            topic: "t".into(),
            starts: BTreeMap::from([(0, 10), (1, 4)]),
        };
        let at_start = [Arc::new(commit("t,0:10,1:4,2:50", None))];
        assert!(fence.check(&at_start).is_ok());
        // Nothing recorded for a partition yet: it starts where the process placed it.
        assert!(fence.check(&[Arc::new(commit("t,0:10", None))]).is_ok());
        let past = [Arc::new(commit("t,1:6", None))];
        let err = fence.check(&past).expect_err("fenced");
        assert!(
            err.contains("partition 1") && err.contains("offset is 6"),
            "{err}"
        );
        // Reset below the batch's start (the topic was recreated): the batch belongs to the old one.
        let reset = [
            Arc::new(commit("t,0:10,1:4", None)),
            Arc::new(commit("t,1:0", Some("t,1:0"))),
        ];
        assert!(fence.check(&reset).is_err());
        // Decided after the write began: any commit recording one of its partitions.
        assert!(fence.check_since(&commit("t,1:4", None)).is_err());
        assert!(fence.check_since(&commit("t,2:60", None)).is_ok());
        assert!(fence.check_since(&commit("other,1:9", None)).is_ok());
    }
}
