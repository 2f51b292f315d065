//! The commit lifecycle, in one place: every action that changes the timeline goes through here.
//!
//! - `heartbeat`: running transactions prove they are alive; only expired ones are rolled back.
//! - [`ledger`]: the serialization point of decisions (completions, plans, rollbacks) on the store.
//! - `transaction`: begin → markers and data files → conflict check → decide → publish, or abort.
//! - `rollback`: undoing failed instants, decided on the ledger so it never undoes a completion.
//!
//! The fencing rule: a process rolls back only instants whose heartbeat has expired, and a rollback
//! and a completion of the same instant are both ledger decisions, so exactly one of them wins; the
//! loser of a completion gets [`Error::RolledBack`](crate::Error::RolledBack) and its files go.

pub(crate) mod heartbeat;
pub mod ledger;
pub(crate) mod rollback;
pub(crate) mod transaction;

pub use heartbeat::{Heartbeat, heartbeat_expiry, heartbeat_interval};
pub use ledger::{Entry, Header};
pub use rollback::remove_orphans;
pub use transaction::{
    Start, claim_time, claimed_times, decide, decide_and_publish, publish, start, start_for_restore,
};
