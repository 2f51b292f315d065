//! End-to-end tests of the `lake` binary: local folders and a real S3 server (SeaweedFS on
//! 127.0.0.1), every table checked against hudi-rs, the reference reader.

mod archive;
mod avro;
mod changes;
mod cli_errors;
mod cluster;
mod corrupt;
mod cow;
mod crash;
mod faults;
mod fixtures;
mod global;
mod info;
mod ingest;
mod kit;
mod mor;
mod operate;
mod race;
mod s3_conformance;
mod scale;
mod services;
mod sizing;
mod sql;
