//! Query options, with Hudi's Spark option names.

use std::collections::HashMap;

use lake_table::timeline::InstantTime;

/// `hoodie.datasource.query.type`.
pub const QUERY_TYPE: &str = "hoodie.datasource.query.type";
/// `hoodie.datasource.read.begin.instanttime` (exclusive).
pub const BEGIN_INSTANT: &str = "hoodie.datasource.read.begin.instanttime";
/// `hoodie.datasource.read.end.instanttime` (inclusive).
pub const END_INSTANT: &str = "hoodie.datasource.read.end.instanttime";
/// `as.of.instant`: time travel.
pub const AS_OF: &str = "as.of.instant";

/// What a query reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueryType {
    /// The latest completed state (or the state as of an instant).
    #[default]
    Snapshot,
    /// Base files only (for merge-on-read tables: without log merging).
    ReadOptimized,
    /// Records written by commits in (begin, end], in their latest state within the range.
    Incremental,
}

/// Options of a [`crate::HudiTableProvider`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// The query type.
    pub query_type: QueryType,
    /// Time travel: an instant time or a timestamp, resolved to the last completed write at or
    /// before it (snapshot and read-optimized).
    pub as_of: Option<String>,
    /// Incremental: exclusive begin.
    pub begin: Option<String>,
    /// Incremental: inclusive end (latest when unset).
    pub end: Option<String>,
}

impl QueryOptions {
    /// Parses Hudi option names (unknown keys are ignored; DataFusion's `format.` prefix is accepted).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| {
            map.get(k)
                .or_else(|| map.get(&format!("format.{k}")))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let query_type = match get(QUERY_TYPE).as_deref() {
            None | Some("snapshot") => QueryType::Snapshot,
            Some("read_optimized") => QueryType::ReadOptimized,
            Some("incremental") => QueryType::Incremental,
            Some(other) => return Err(format!("{QUERY_TYPE}: unknown query type {other:?}")),
        };
        let opts = Self {
            query_type,
            as_of: get(AS_OF),
            begin: get(BEGIN_INSTANT),
            end: get(END_INSTANT),
        };
        if query_type == QueryType::Incremental && opts.begin.is_none() {
            return Err(format!("an incremental query needs {BEGIN_INSTANT}"));
        }
        Ok(opts)
    }
}

/// Parses an instant time (14 or 17 digits) or a timestamp (RFC 3339, `YYYY-MM-DD[ HH:MM:SS[.fff]]`,
/// taken as UTC) into an instant time.
pub fn parse_time(s: &str) -> Result<InstantTime, String> {
    if let Ok(t) = s.parse::<InstantTime>() {
        return Ok(t);
    }
    let text = if s.len() == 10 {
        format!("{s}T00:00:00")
    } else {
        s.to_owned()
    };
    arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, &text)
        .map(InstantTime::from_datetime)
        .map_err(|_| format!("{s:?} is neither an instant time nor a timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_instants_or_timestamps() {
        assert_eq!(
            parse_time("20250101000000123").map(|t| t.to_string()),
            Ok("20250101000000123".into())
        );
        assert_eq!(
            parse_time("2025-01-02 03:04:05").map(|t| t.to_string()),
            Ok("20250102030405000".into())
        );
        assert_eq!(
            parse_time("2025-01-02").map(|t| t.to_string()),
            Ok("20250102000000000".into())
        );
        assert!(parse_time("yesterday").is_err());
        let m: HashMap<String, String> = [(QUERY_TYPE.to_owned(), "incremental".to_owned())].into();
        assert!(
            QueryOptions::from_map(&m).is_err(),
            "incremental needs a begin instant"
        );
    }
}
