//! Hudi tables: the table config, schemas and meta columns, key generation and the bucket index,
//! file naming, the file-system view, Parquet base files, the copy-on-write write client with
//! rollback of failed writes, and the snapshot reader that the DataFusion provider builds on.

pub mod avro_block;
pub mod commit;
pub mod compaction_plan;
pub mod config;
mod error;
mod index;
pub mod keys;
pub mod layout;
pub mod log_format;
pub mod merge;
mod parquet_io;
mod properties;
mod read;
pub mod schema;
mod table;
pub mod view;
mod write;

pub use config::{TableConfig, TableType};
pub use error::{Error, Result};
pub use lake_timeline as timeline;
pub use parquet_io::{encode_parquet, read_parquet};
pub use read::ReadOptions;
pub use table::Table;
pub use write::{ChangeBatch, WriteOperation, WriteOptions, WriteSummary};
