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
/// `hoodie.datasource.query.incremental.format`: `latest_state` (default) or `cdc` (the change
/// feed).
pub const INCREMENTAL_FORMAT: &str = "hoodie.datasource.query.incremental.format";
/// `lake.changes.net`: a change feed netted to one row per record over the range.
pub const CHANGES_NET: &str = "lake.changes.net";

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
    /// The change feed over (begin, end]: one row per changed record per write, with its change type
    /// and before and after images (Hudi's CDC query).
    Changes,
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
    /// Change feed: one row per record over the whole range instead of one per write.
    pub net: bool,
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
        let cdc = match get(INCREMENTAL_FORMAT).as_deref() {
            None | Some("latest_state") => false,
            Some("cdc") => true,
            Some(other) => {
                return Err(format!(
                    "{INCREMENTAL_FORMAT}: unknown format {other:?} (latest_state or cdc)"
                ));
            }
        };
        let query_type = match get(QUERY_TYPE).as_deref() {
            None | Some("snapshot") => QueryType::Snapshot,
            Some("read_optimized") => QueryType::ReadOptimized,
            Some("incremental") if cdc => QueryType::Changes,
            Some("incremental") => QueryType::Incremental,
            Some(other) => return Err(format!("{QUERY_TYPE}: unknown query type {other:?}")),
        };
        let net = match get(CHANGES_NET).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("{CHANGES_NET}: {other:?} is not true or false")),
        };
        let opts = Self {
            query_type,
            as_of: get(AS_OF),
            begin: get(BEGIN_INSTANT),
            end: get(END_INSTANT),
            net,
        };
        if matches!(query_type, QueryType::Incremental | QueryType::Changes) && opts.begin.is_none()
        {
            return Err(format!("an incremental query needs {BEGIN_INSTANT}"));
        }
        Ok(opts)
    }
}

impl QueryOptions {
    /// The options under Hudi's names: [`QueryOptions::from_map`] reads them back unchanged.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        let query_type = match self.query_type {
            QueryType::Snapshot => "snapshot",
            QueryType::ReadOptimized => "read_optimized",
            QueryType::Incremental | QueryType::Changes => "incremental",
        };
        map.insert(QUERY_TYPE.to_owned(), query_type.to_owned());
        if self.query_type == QueryType::Changes {
            map.insert(INCREMENTAL_FORMAT.to_owned(), "cdc".to_owned());
        }
        for (key, value) in [
            (AS_OF, &self.as_of),
            (BEGIN_INSTANT, &self.begin),
            (END_INSTANT, &self.end),
        ] {
            if let Some(v) = value {
                map.insert(key.to_owned(), v.clone());
            }
        }
        if self.net {
            map.insert(CHANGES_NET.to_owned(), "true".to_owned());
        }
        map
    }
}

/// Parses an instant time (14 or 17 digits), `earliest` or a run of zeros (before every instant, as
/// Hudi's `000`), or a timestamp (RFC 3339, `YYYY-MM-DD[ HH:MM:SS[.fff]]`, taken as UTC) into an
/// instant time.
pub fn parse_time(s: &str) -> Result<InstantTime, String> {
    // Hudi's "from the beginning": `000` (or any run of zeros), or `earliest`.
    if s == "earliest" || (!s.is_empty() && s.bytes().all(|b| b == b'0')) {
        return "00000000000000000"
            .parse::<InstantTime>()
            .map_err(|e| e.to_string());
    }
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
        assert_eq!(
            parse_time("000").map(|t| t.to_string()),
            Ok("00000000000000000".into())
        );
        assert_eq!(parse_time("earliest"), parse_time("0"));
        for opts in [
            QueryOptions::default(),
            QueryOptions {
                query_type: QueryType::ReadOptimized,
                as_of: Some("2025-01-02".into()),
                ..QueryOptions::default()
            },
            QueryOptions {
                query_type: QueryType::Changes,
                begin: Some("000".into()),
                end: Some("20250101000000001".into()),
                net: true,
                ..QueryOptions::default()
            },
        ] {
            assert_eq!(QueryOptions::from_map(&opts.to_map()), Ok(opts));
        }
        let m: HashMap<String, String> = [(QUERY_TYPE.to_owned(), "incremental".to_owned())].into();
        assert!(
            QueryOptions::from_map(&m).is_err(),
            "incremental needs a begin instant"
        );
    }
}
