//! The bytes lake reads and writes: Avro schemas and Arrow <-> Avro conversion with the meta
//! columns ([`schema`]), Avro data and delete block contents ([`avro_block`]), the log-file block
//! framing ([`log_format`]), Parquet base files (`parquet_io`), the compaction plan codec
//! ([`compaction_plan`]) and CDC log files ([`cdc`]).

pub mod avro_block;
pub mod cdc;
pub mod compaction_plan;
pub mod log_format;
pub(crate) mod parquet_io;
pub mod schema;
