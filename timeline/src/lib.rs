//! The Hudi timeline: typed instants, their states and actions, the commit-metadata wire format, and
//! the object-store access every other lake crate builds on.
//!
//! Invariant: a state transition of an instant is published by creating its file with
//! create-if-absent semantics, so two writers can never both complete the same instant; the loser gets
//! [`Error::CommitConflict`].

pub mod avro;
mod error;
mod instant;
mod metadata;
mod storage;
mod timeline;
pub mod wire;

pub use error::{Error, Result, StoreHint};
pub use instant::{Action, Instant, InstantTime, State};
pub use metadata::{
    CHECKPOINT_KEY, CommitMetadata, RuntimeStats, SCHEMA_KEY, WriteStat, metadata_runtime,
};
pub use storage::Storage;
pub use timeline::{Layout, Timeline};
