//! Instant times, actions, states and the instant file names of both timeline layouts.
//!
//! An instant time is Hudi's `yyyyMMddHHmmssSSS` (17 digits; 14-digit times of older tables are read
//! too). Times sort by value; lake generates them in UTC and never twice the same for one table.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use crate::{Error, Result};

/// A Hudi instant time (`yyyyMMddHHmmssSSS`), ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstantTime {
    /// The time as the 17-digit decimal number (14-digit times are scaled by 1000).
    value: u64,
    /// 17, or 14 for second-precision times of old tables.
    digits: u8,
}

impl InstantTime {
    /// The instant time of `at` (UTC wall clock), millisecond precision.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let s = at.format("%Y%m%d%H%M%S%3f").to_string();
        // The formatted string is always 17 digits for years 1000..=9999.
        let value = s.parse().unwrap_or(0);
        Self { value, digits: 17 }
    }

    /// The current time as an instant time.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// A new instant time for a writer: now, or one millisecond after `after` if the clock has not
    /// moved past it, so instants of one table strictly increase.
    pub fn next_after(after: Option<InstantTime>) -> Self {
        let now = Self::now();
        match after {
            Some(last) if now <= last => last.plus_millis(1),
            _ => now,
        }
    }

    /// This instant time shifted by `millis` milliseconds.
    pub fn plus_millis(self, millis: i64) -> Self {
        match self.to_datetime() {
            Some(dt) => Self::from_datetime(dt + TimeDelta::milliseconds(millis)),
            None => Self {
                value: self.value.saturating_add_signed(millis),
                digits: 17,
            },
        }
    }

    /// The UTC date-time this instant time names, if it is a real calendar time.
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        let s = format!("{:017}", self.value);
        let secs = NaiveDateTime::parse_from_str(&s[..14], "%Y%m%d%H%M%S").ok()?;
        let millis: i64 = s[14..].parse().ok()?;
        Some(secs.and_utc() + TimeDelta::milliseconds(millis))
    }

    /// The 17-digit numeric value (for 14-digit times, scaled by 1000).
    pub fn as_u64(self) -> u64 {
        self.value
    }
}

impl FromStr for InstantTime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidInstantTime {
            value: s.to_owned(),
        };
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = s.parse().map_err(|_| bad())?;
        match s.len() {
            17 => Ok(Self {
                value: n,
                digits: 17,
            }),
            14 => Ok(Self {
                value: n * 1000,
                digits: 14,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for InstantTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits == 14 {
            write!(f, "{:014}", self.value / 1000)
        } else {
            write!(f, "{:017}", self.value)
        }
    }
}

/// The kind of an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// A copy-on-write commit (also how a completed compaction appears).
    Commit,
    /// A merge-on-read delta commit (log appends).
    DeltaCommit,
    /// A commit that replaces file groups (insert overwrite, clustering).
    ReplaceCommit,
    /// Removal of old file versions.
    Clean,
    /// A compaction of log files into new base files; completes as a [`Action::Commit`].
    Compaction,
    /// A log compaction; completes as a [`Action::DeltaCommit`].
    LogCompaction,
    /// The undoing of a failed or unwanted instant.
    Rollback,
    /// A pin on the file slices of a completed instant.
    Savepoint,
    /// A roll-back of the table to a savepoint.
    Restore,
    /// Building of a metadata-table index.
    Indexing,
    /// A clustering (table version 9); completes as a [`Action::ReplaceCommit`].
    Clustering,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Commit,
        Action::DeltaCommit,
        Action::ReplaceCommit,
        Action::Clean,
        Action::Compaction,
        Action::LogCompaction,
        Action::Rollback,
        Action::Savepoint,
        Action::Restore,
        Action::Indexing,
        Action::Clustering,
    ];

    /// The action's name as used in instant file names.
    pub fn name(self) -> &'static str {
        match self {
            Action::Commit => "commit",
            Action::DeltaCommit => "deltacommit",
            Action::ReplaceCommit => "replacecommit",
            Action::Clean => "clean",
            Action::Compaction => "compaction",
            Action::LogCompaction => "logcompaction",
            Action::Rollback => "rollback",
            Action::Savepoint => "savepoint",
            Action::Restore => "restore",
            Action::Indexing => "indexing",
            Action::Clustering => "clustering",
        }
    }

    /// The action of the completed file of this action (compaction completes as commit).
    pub fn completed_action(self) -> Action {
        match self {
            Action::Compaction => Action::Commit,
            Action::LogCompaction => Action::DeltaCommit,
            Action::Clustering => Action::ReplaceCommit,
            other => other,
        }
    }

    /// Whether a completed instant of this action makes data files visible to readers.
    pub fn writes_data(self) -> bool {
        matches!(
            self,
            Action::Commit | Action::DeltaCommit | Action::ReplaceCommit
        )
    }

    /// The action named `name` (as in instant file names), if lake knows it.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of an instant: every instant moves REQUESTED → INFLIGHT → COMPLETED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Planned; nothing written yet.
    Requested,
    /// Being written; its files are invisible to readers.
    Inflight,
    /// Published; its files are visible.
    Completed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Requested => "REQUESTED",
            State::Inflight => "INFLIGHT",
            State::Completed => "COMPLETED",
        })
    }
}

/// One instant on the timeline, in one state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    /// The requested time of the instant.
    pub time: InstantTime,
    /// Its action. A completed compaction is reported as `Commit`, as Hudi does.
    pub action: Action,
    /// Its state.
    pub state: State,
    /// The completion time (timeline layout 2 only).
    pub completion: Option<InstantTime>,
}

impl Instant {
    /// A new instant in the given state.
    pub fn new(time: InstantTime, action: Action, state: State) -> Self {
        Self {
            time,
            action,
            state,
            completion: None,
        }
    }

    /// Whether the instant is completed.
    pub fn is_completed(&self) -> bool {
        self.state == State::Completed
    }

    /// The file name of this instant in timeline layout 1 (table version 6).
    pub fn file_name(&self) -> String {
        let t = self.time;
        match self.state {
            State::Requested => format!("{t}.{}.requested", self.action),
            State::Inflight if self.action == Action::Commit => format!("{t}.inflight"),
            State::Inflight => format!("{t}.{}.inflight", self.action),
            State::Completed => match self.completion {
                Some(c) => format!("{t}_{c}.{}", self.action.completed_action()),
                None => format!("{t}.{}", self.action.completed_action()),
            },
        }
    }

    /// Parses an instant file name of either layout; `None` for files that are not instants.
    pub fn parse_file_name(name: &str) -> Option<Instant> {
        let (stamp, rest) = name.split_once('.')?;
        let (time, completion) = match stamp.split_once('_') {
            Some((t, c)) => (t.parse().ok()?, Some(c.parse().ok()?)),
            None => (stamp.parse().ok()?, None),
        };
        let (action, state) = if rest == "inflight" {
            (Action::Commit, State::Inflight)
        } else if let Some(a) = rest.strip_suffix(".requested") {
            (Action::from_name(a)?, State::Requested)
        } else if let Some(a) = rest.strip_suffix(".inflight") {
            (Action::from_name(a)?, State::Inflight)
        } else {
            (Action::from_name(rest)?, State::Completed)
        };
        Some(Instant {
            time,
            action,
            state,
            completion,
        })
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.time, self.action, self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> InstantTime {
        s.parse().expect("valid instant")
    }

    #[test]
    fn instant_time_round_trips_17_and_14_digits() {
        for s in ["20240418172804498", "20240418172804", "00000000000000"] {
            assert_eq!(t(s).to_string(), s);
        }
        assert!(t("20240418172804") < t("20240418172804001"));
        assert!("2024041817280449".parse::<InstantTime>().is_err());
        assert!("2024041817280449x".parse::<InstantTime>().is_err());
    }

    #[test]
    fn next_after_strictly_increases_within_one_millisecond() {
        let far = t("29991231235959998");
        let a = InstantTime::next_after(Some(far));
        let b = InstantTime::next_after(Some(a));
        assert_eq!(a.to_string(), "29991231235959999");
        assert_eq!(b.to_string(), "30000101000000000");
        assert!(InstantTime::next_after(None) > t("20250101000000000"));
    }

    #[test]
    fn file_names_follow_layout_one() {
        let time = t("20250101000000123");
        let names: Vec<String> = [State::Requested, State::Inflight, State::Completed]
            .into_iter()
            .map(|s| Instant::new(time, Action::Commit, s).file_name())
            .collect();
        assert_eq!(
            names,
            [
                "20250101000000123.commit.requested",
                "20250101000000123.inflight",
                "20250101000000123.commit"
            ]
        );
        let c = Instant::new(time, Action::Compaction, State::Completed);
        assert_eq!(c.file_name(), "20250101000000123.commit");
        let d = Instant::new(time, Action::DeltaCommit, State::Inflight);
        assert_eq!(d.file_name(), "20250101000000123.deltacommit.inflight");
    }

    #[test]
    fn parse_file_name_reads_both_layouts_and_skips_others() {
        let i = Instant::parse_file_name("20251220210127080_20251220210127601.deltacommit")
            .expect("layout 2 name");
        assert_eq!(i.action, Action::DeltaCommit);
        assert_eq!(i.state, State::Completed);
        assert_eq!(i.completion, Some(t("20251220210127601")));
        for s in [State::Requested, State::Inflight, State::Completed] {
            for a in Action::ALL {
                let inst = Instant::new(t("20250101000000123"), a, s);
                let back = Instant::parse_file_name(&inst.file_name()).expect("own name");
                assert_eq!(back.state, s);
                assert_eq!(
                    back.action,
                    if s == State::Completed {
                        a.completed_action()
                    } else {
                        a
                    }
                );
            }
        }
        for other in [
            "hoodie.properties",
            "archived",
            "20250101.commit",
            "x.commit.crc",
        ] {
            assert_eq!(Instant::parse_file_name(other), None, "{other}");
        }
    }
}
