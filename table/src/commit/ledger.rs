//! The commit ledger: the one point where lake's decisions about the timeline are serialized.
//!
//! Hudi's timeline orders instants by their (requested) time and publishes each state with
//! create-if-absent, which makes one instant's completion atomic but does not order two writers'
//! conflict checks against each other's completions: two writers can both check, find nothing, and
//! both complete over the same file group. Hudi closes that gap with an external lock; lake closes
//! it on the object store itself, the way Delta's log does: every decision — an instant completes, a
//! compaction plan is scheduled, pending instants are rolled back — claims the next sequence number
//! in `.hoodie/.lake/ledger/` with create-if-absent, *after* checking the entries since the deciding
//! transaction began. A lost claim means another decision came first: check it and claim the next.
//!
//! Invariants:
//! - Entries are `<seq:020>` files holding one JSON header line and the payload of the decision
//!   (for a publication, the exact bytes of the timeline file it publishes). Sequence numbers are
//!   dense; the first decision about an instant wins (a completion before a rollback of the same
//!   instant completes it; a rollback first makes the completion fail with
//!   [`Error::RolledBack`]).
//! - A publication's timeline file is written after its entry. A transaction that begins rolls
//!   forward every entry whose file is missing, so what it reads equals the ledger up to its start,
//!   and what it checks at commit is exactly the entries after it.
//! - Old entries are trimmed only when published and older than every live transaction's start; a
//!   transaction that finds its start trimmed away fails with a retryable error.

use bytes::Bytes;
use lake_timeline::{Action, Instant, InstantTime, Storage};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Root-relative folder of the ledger.
pub const LEDGER_DIR: &str = ".hoodie/.lake/ledger";
/// Entries kept behind the head when trimming.
const KEEP: u64 = 64;

/// What a ledger entry decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The timeline file (a name in the timeline folder) this decision publishes; for a rollback,
    /// the rollback's own requested file.
    pub file: String,
    /// Instants this decision rolls back (empty for a publication).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<String>,
}

/// One decision on the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// The decision.
    pub header: Header,
    /// The instant it is about (parsed from the header's file name).
    pub instant: Instant,
    /// The published file's bytes (empty for a rollback).
    pub payload: Bytes,
}

impl Entry {
    /// Whether this entry rolls back `time`.
    pub fn rolls_back(&self, time: InstantTime) -> bool {
        let t = time.to_string();
        self.header.rollback.contains(&t)
    }

    /// Whether this entry publishes (completes or schedules) the instant at `time`.
    pub fn publishes(&self, time: InstantTime) -> bool {
        self.header.rollback.is_empty()
            && self.instant.time == time
            && self.instant.action != Action::Savepoint
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}")
}

fn entry_path(seq: u64) -> String {
    format!("{LEDGER_DIR}/{}", entry_name(seq))
}

/// Encodes an entry's file: the JSON header, a newline, the payload.
pub fn encode(header: &Header, payload: &[u8]) -> Bytes {
    let mut out = serde_json::to_vec(header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Decodes an entry's file.
pub fn decode(seq: u64, bytes: &Bytes) -> Result<Entry> {
    let bad =
        |reason: String| Error::Corrupt(format!("ledger entry {}: {reason}", entry_path(seq)));
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("no header line".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| bad(format!("bad header: {e}")))?;
    let instant = Instant::parse_file_name(&header.file)
        .ok_or_else(|| bad(format!("{:?} is not an instant file", header.file)))?;
    Ok(Entry {
        seq,
        header,
        instant,
        payload: bytes.slice(nl + 1..),
    })
}

/// Sequence numbers present in the ledger, ascending.
async fn sequence_numbers(storage: &Storage, after: Option<u64>) -> Result<Vec<u64>> {
    let listed = match after {
        Some(a) => storage.list_after(LEDGER_DIR, &entry_name(a)).await?,
        None => storage.list_recursive(LEDGER_DIR).await?,
    };
    let mut seqs: Vec<u64> = listed
        .iter()
        .filter_map(|m| m.location.filename())
        .filter(|n| n.len() == 20)
        .filter_map(|n| n.parse().ok())
        .filter(|s| after.is_none_or(|a| *s > a))
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

/// The highest sequence number on the ledger (0 when it is empty).
pub(crate) async fn head(storage: &Storage) -> Result<u64> {
    Ok(sequence_numbers(storage, None)
        .await?
        .last()
        .copied()
        .unwrap_or(0))
}

/// Every entry after `seq`, in order. Fails (retryably) if entries right after `seq` were trimmed.
pub(crate) async fn entries_after(storage: &Storage, seq: u64) -> Result<Vec<Entry>> {
    let seqs = sequence_numbers(storage, Some(seq)).await?;
    if let Some(first) = seqs.first()
        && *first != seq + 1
        && seq > 0
    {
        return Err(Error::LedgerTrimmed { seq });
    }
    let mut out = Vec::with_capacity(seqs.len());
    for s in seqs {
        match storage.get_opt(&entry_path(s)).await? {
            Some(bytes) => out.push(decode(s, &bytes)?),
            // Trimmed between listing and reading: this transaction started too long ago.
            None => return Err(Error::LedgerTrimmed { seq }),
        }
    }
    Ok(out)
}

/// The decisions of every entry still on the ledger, in order, without their payloads. Entries
/// never change, so their headers are kept in a process-wide cache: a transaction's start reads
/// only the entries it has not seen before.
pub(crate) async fn headers(storage: &Storage) -> Result<Vec<Entry>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    const MAX: usize = 16_384;
    let cache = CACHE.get_or_init(Default::default);
    let mut out = Vec::new();
    for s in sequence_numbers(storage, None).await? {
        let key = storage.display(&entry_path(s));
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            out.push(hit);
            continue;
        }
        let Some(bytes) = storage.get_opt(&entry_path(s)).await? else {
            // Trimmed since listing: it was published and old.
            continue;
        };
        let mut e = decode(s, &bytes)?;
        e.payload = Bytes::new();
        if let Ok(mut c) = cache.lock() {
            if c.len() >= MAX {
                c.clear();
            }
            c.insert(key, e.clone());
        }
        out.push(e);
    }
    Ok(out)
}

/// One entry with its payload (`None` if it was trimmed).
pub(crate) async fn entry(storage: &Storage, seq: u64) -> Result<Option<Entry>> {
    match storage.get_opt(&entry_path(seq)).await? {
        Some(bytes) => Ok(Some(decode(seq, &bytes)?)),
        None => Ok(None),
    }
}

/// Whether a completion or plan of the instant at `time` is decided on the ledger.
pub(crate) async fn is_published(storage: &Storage, time: InstantTime) -> Result<bool> {
    Ok(headers(storage).await?.iter().any(|e| e.publishes(time)))
}

/// Every entry still on the ledger, in order.
#[cfg(test)]
pub(crate) async fn entries(storage: &Storage) -> Result<Vec<Entry>> {
    entries_after(storage, 0).await
}

/// The outcome of a claim.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The entry is ours.
    Won,
    /// Another decision took this sequence number.
    Lost,
}

/// Claims sequence number `seq` for `bytes` (an encoded entry). A claim whose response was lost is
/// recognised by reading the entry back: equal bytes mean it is ours. If the outcome cannot be
/// learned, the error is [`Error::CommitOutcomeUnknown`], which is not retryable.
pub(crate) async fn claim(storage: &Storage, seq: u64, bytes: Bytes) -> Result<Claim> {
    const ATTEMPTS: u32 = 4;
    let path = entry_path(seq);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
        }
        // The same create again is harmless: it either creates our entry or finds one.
        match storage.put_if_absent(&path, bytes.clone()).await {
            Ok(true) => return Ok(Claim::Won),
            Ok(false) => {}
            Err(e) => last = e.to_string(),
        }
        match storage.get_opt(&path).await {
            Ok(Some(found)) if found == bytes => return Ok(Claim::Won),
            Ok(Some(_)) => return Ok(Claim::Lost),
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::CommitOutcomeUnknown {
        path: storage.display(&path),
        reason: format!("creating the ledger entry failed and it could not be read back: {last}"),
    })
}

/// Deletes entries older than both `KEEP` entries behind `head` and `oldest_live` (the earliest
/// start of a live transaction), but only those that are done: rollbacks, and publications whose
/// file is on the timeline (`published(entry)`) or that a later decision rolled back (a restore).
/// An unpublished one must stay for a later transaction to roll forward.
pub(crate) async fn trim(
    storage: &Storage,
    head: u64,
    oldest_live: Option<u64>,
    published: impl Fn(&Entry) -> bool,
) -> Result<()> {
    let limit = head
        .saturating_sub(KEEP)
        .min(oldest_live.unwrap_or(u64::MAX));
    if limit == 0 {
        return Ok(());
    }
    let all = headers(storage).await?;
    for (i, e) in all.iter().enumerate() {
        let superseded = all[i + 1..].iter().any(|l| l.rolls_back(e.instant.time));
        // A restore's entry must outlive the restore: it keeps writers out until it completes.
        let rollback = !e.header.rollback.is_empty() && e.instant.action != Action::Restore;
        let done = rollback || published(e) || superseded;
        if e.seq >= limit || !done {
            break;
        }
        storage.delete(&entry_path(e.seq)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_name_their_instant() {
        let h = Header {
            file: "20250101000000001.commit".into(),
            rollback: vec![],
        };
        let bytes = encode(&h, b"{\"x\":1}\n");
        let e = decode(7, &bytes).expect("decode");
        assert_eq!(e.header, h);
        assert_eq!(e.payload, Bytes::from_static(b"{\"x\":1}\n"));
        assert!(e.publishes("20250101000000001".parse().expect("t")));
        assert!(decode(7, &Bytes::from_static(b"no newline")).is_err());
        assert!(decode(7, &Bytes::from_static(b"{\"file\":\"x\"}\n")).is_err());
    }

    #[tokio::test]
    async fn claims_have_one_winner_and_a_repeated_claim_is_recognised() {
        let s = Storage::try_from_uri("memory://ledger_claims").expect("store");
        let a = encode(
            &Header {
                file: "20250101000000001.commit".into(),
                rollback: vec![],
            },
            b"a",
        );
        let b = encode(
            &Header {
                file: "20250101000000002.rollback.requested".into(),
                rollback: vec!["20250101000000001".into()],
            },
            b"",
        );
        let (x, y) = tokio::join!(claim(&s, 1, a.clone()), claim(&s, 1, b.clone()));
        let outcomes = [x.expect("a"), y.expect("b")];
        assert_eq!(outcomes.iter().filter(|c| **c == Claim::Won).count(), 1);
        // Claiming again with the same bytes (a retry after a lost response) is still a win.
        let winner = if outcomes[0] == Claim::Won { a } else { b };
        assert_eq!(claim(&s, 1, winner).await.expect("again"), Claim::Won);
        assert_eq!(head(&s).await.expect("head"), 1);
        let all = entries(&s).await.expect("entries");
        assert_eq!(all.len(), 1);
        assert_eq!(entries_after(&s, 1).await.expect("after").len(), 0);
    }

    #[tokio::test]
    async fn trimmed_starts_are_reported() {
        let s = Storage::try_from_uri("memory://ledger_trim").expect("store");
        for seq in 1..=(KEEP + 10) {
            let h = Header {
                file: format!("{:017}.commit", 20250101000000000u64 + seq),
                rollback: vec![],
            };
            assert_eq!(
                claim(&s, seq, encode(&h, b"")).await.expect("claim"),
                Claim::Won
            );
        }
        trim(&s, KEEP + 10, None, |_| true).await.expect("trim");
        assert!(matches!(
            entries_after(&s, 2).await,
            Err(Error::LedgerTrimmed { seq: 2 })
        ));
        assert_eq!(
            entries_after(&s, 9).await.expect("kept").len(),
            KEEP as usize + 1
        );
        // Unpublished entries stay.
        trim(&s, KEEP + 20, None, |e| e.seq < 11)
            .await
            .expect("trim");
        assert_eq!(
            entries(&s).await.expect("all").first().map(|e| e.seq),
            Some(11)
        );
    }
}
