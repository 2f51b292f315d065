//! Kafka offsets as Hudi Streamer checkpoints: `topic,partition:offset,partition:offset,...`, the next
//! offset to read of every partition, stored in each commit under `deltastreamer.checkpoint.key`.

use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_in_hudis_format() {
        let c = Checkpoint::parse("dbserver1.shop.orders,0:17,1:0,2:5").expect("parses");
        assert_eq!(c.topic, "dbserver1.shop.orders");
        assert_eq!(c.offsets, BTreeMap::from([(0, 17), (1, 0), (2, 5)]));
        assert_eq!(c.render(), "dbserver1.shop.orders,0:17,1:0,2:5");
        assert_eq!(
            Checkpoint::parse("t").expect("no partitions").offsets.len(),
            0
        );
        for bad in ["", ",0:1", "t,0", "t,x:1", "t,0:y"] {
            assert!(Checkpoint::parse(bad).is_none(), "{bad}");
        }
    }
}
