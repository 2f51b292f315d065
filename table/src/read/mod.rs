//! Reading a table: the file-system view of committed file slices ([`view`]), the merge-on-read
//! merge of base files with their logs ([`merge`]), the snapshot reader ([`ReadOptions`]) the
//! DataFusion provider builds on, and the change feed ([`changes`]).

pub mod changes;
pub mod merge;
mod snapshot;
pub mod view;

pub use snapshot::ReadOptions;
