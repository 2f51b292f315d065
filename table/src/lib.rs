//! Hudi tables, by part: the table config ([`config`]), key generation ([`keys`]) and the indexes,
//! file naming ([`layout`]); [`format`](mod@format) — the bytes (schemas, Avro blocks, log framing, Parquet,
//! compaction plans); [`commit`] — the one home of the commit lifecycle (transaction, ledger,
//! heartbeats, rollback); the write client (upsert, insert, delete as one commit); and [`read`] —
//! the file-system view, the merge-on-read merge and the snapshot reader the DataFusion provider
//! builds on; [`archive`] — the archived timeline (both layouts); [`info`] — a table's health at a
//! glance.

pub mod archive;
pub mod commit;
pub mod config;
mod error;
pub mod format;
mod index;
pub mod info;
pub mod keys;
pub mod layout;
mod properties;
pub mod read;
mod table;
mod write;

pub(crate) use format::parquet_io;
pub use format::{avro_block, cdc, compaction_plan, log_format, schema};
pub use read::{changes, merge, view};

pub use config::{CdcMode, TableConfig, TableType};
pub use error::{Error, Result};
pub use lake_timeline as timeline;
pub use parquet_io::{encode_parquet, encode_parquet_batches, read_parquet};
pub use read::ReadOptions;
pub use table::Table;
pub use write::{ChangeBatch, SourceFence, WriteOperation, WriteOptions, WriteSummary};
