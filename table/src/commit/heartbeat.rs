//! Heartbeats of running transactions (Hudi's `.hoodie/.heartbeat/<instant>`).
//!
//! A transaction refreshes its heartbeat file every interval while it runs; a pending instant
//! whose heartbeat is missing or older than the expiry belongs to a process that died, and only such
//! an instant may be rolled back by another process. The file's content is the ledger sequence
//! number the transaction started at, so the ledger is never trimmed past a live transaction.
//!
//! The interval is 10 s and the expiry six intervals (60 s); `LAKE_HEARTBEAT_INTERVAL_MS` sets the
//! interval for a process (tests use short ones to see dead writers rolled back quickly). Every
//! process on a table must use the same setting.

use std::time::Duration;

use bytes::Bytes;
use lake_timeline::{Instant, InstantTime, Storage};

use crate::Result;

/// Where a running transaction keeps its heartbeat.
pub(crate) const HEARTBEAT_DIR: &str = ".hoodie/.heartbeat";
/// Heartbeat intervals a transaction may miss before it counts as dead.
const TOLERABLE_MISSES: u32 = 6;

/// How often a running transaction refreshes its heartbeat.
pub fn heartbeat_interval() -> Duration {
    std::env::var("LAKE_HEARTBEAT_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// A heartbeat older than this belongs to a transaction whose process died.
pub fn heartbeat_expiry() -> Duration {
    heartbeat_interval() * TOLERABLE_MISSES
}

/// Keeps a transaction's heartbeat fresh until stopped or dropped.
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    storage: Storage,
    path: String,
}

impl Heartbeat {
    /// Starts the heartbeat of the transaction at `instant`, which began at ledger entry `start`.
    pub async fn start(storage: &Storage, instant: InstantTime, start: u64) -> Result<Self> {
        let path = format!("{HEARTBEAT_DIR}/{instant}");
        let content = Bytes::from(start.to_string());
        storage.put(&path, content.clone()).await?;
        let (s, p) = (storage.clone(), path.clone());
        let every = heartbeat_interval();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let _ = s.put(&p, content.clone()).await;
            }
        });
        Ok(Self {
            task,
            storage: storage.clone(),
            path,
        })
    }

    /// Stops refreshing and deletes the heartbeat.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.storage.delete(&self.path).await;
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live heartbeats: instant time → the ledger entry its transaction started at.
pub(crate) async fn live(storage: &Storage) -> Result<Vec<(String, u64)>> {
    let (beats, _) = storage.list_dir(HEARTBEAT_DIR).await?;
    let now = chrono::Utc::now();
    let expiry = heartbeat_expiry();
    let mut out = Vec::new();
    for m in beats {
        let fresh = (now - m.last_modified)
            .to_std()
            .map_or(true, |age| age < expiry);
        let Some(name) = m.location.filename().map(str::to_owned) else {
            continue;
        };
        if !fresh {
            continue;
        }
        let rel = format!("{HEARTBEAT_DIR}/{name}");
        let start = match storage.get_opt(&rel).await? {
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            None => continue,
        };
        out.push((name, start));
    }
    Ok(out)
}

/// Pending instants of `actions` whose transaction is gone: no heartbeat, or an expired one. The
/// timeline must have been loaded before this is called (a transaction writes its heartbeat before
/// its first instant file, so an instant on that timeline has its heartbeat by now if it is alive).
pub(crate) async fn expired(
    storage: &Storage,
    pending: impl Iterator<Item = Instant>,
) -> Result<Vec<Instant>> {
    let alive: std::collections::HashSet<String> =
        live(storage).await?.into_iter().map(|(n, _)| n).collect();
    Ok(pending
        .filter(|i| !alive.contains(&i.time.to_string()))
        .collect())
}
