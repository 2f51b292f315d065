//! Change-event decoding: JSON Lines rows, Debezium change events (JSON, with or without the
//! `{"schema","payload"}` envelope, or Confluent-framed Avro with a schema registry), CSV and
//! Parquet files become [`lake_table::ChangeBatch`]es.
//!
//! Decoding is pure (no I/O): callers pass bytes and a source name, and every error names the
//! source and the line (or offset) of the bad record. Nothing is silently dropped: only Debezium
//! tombstones (`null` values) are skipped, as Kafka log compaction intends.

pub mod avro;
pub mod checkpoint;
pub mod config;
mod debezium;
mod direct;
mod error;
mod http;
pub mod messages;
pub mod metrics;
pub mod pipeline;
mod rows;

pub use apache_avro;
pub use debezium::{decode_debezium, source_position};
pub use error::{DecodeError, Result};
pub use rdkafka;
pub use rows::{Decoded, TableShape, decode_csv, decode_json_lines, decode_parquet, rows_to_batch};
