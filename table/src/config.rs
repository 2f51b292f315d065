//! The table config: the typed form of `.hoodie/hoodie.properties`.
//!
//! Typed fields are the truth; the `hoodie.*` keys are only their on-disk encoding, parsed once here.
//! Keys lake does not interpret are kept and written back unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use lake_timeline::Layout;

use crate::properties;
use crate::{Error, Result};

/// Root-relative path of the table config.
pub const PROPERTIES_PATH: &str = ".hoodie/hoodie.properties";
/// The ordering column lake fills from the source when a table is created without `--ordering`.
pub const SOURCE_POSITION_FIELD: &str = "_source_position";
/// Hudi's partition path for null or empty partition values.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

const NAME: &str = "hoodie.table.name";
const DATABASE: &str = "hoodie.database.name";
const TYPE: &str = "hoodie.table.type";
const VERSION: &str = "hoodie.table.version";
const LAYOUT: &str = "hoodie.timeline.layout.version";
const RECORD_KEYS: &str = "hoodie.table.recordkey.fields";
const PARTITIONS: &str = "hoodie.table.partition.fields";
const PRECOMBINE: &str = "hoodie.table.precombine.field";
const ORDERING_V9: &str = "hoodie.table.ordering.fields";
const KEYGEN_CLASS: &str = "hoodie.table.keygenerator.class";
const KEYGEN_TYPE: &str = "hoodie.table.keygenerator.type";
const HIVE_STYLE: &str = "hoodie.datasource.write.hive_style_partitioning";
const URL_ENCODE: &str = "hoodie.datasource.write.partitionpath.urlencode";
const DROP_PARTITION_COLUMNS: &str = "hoodie.datasource.write.drop.partition.columns";
const BASE_FORMAT: &str = "hoodie.table.base.file.format";
const POPULATE_META: &str = "hoodie.populate.meta.fields";
const CHECKSUM: &str = "hoodie.table.checksum";
const INDEX_TYPE: &str = "hoodie.index.type";
const BUCKETS: &str = "hoodie.bucket.index.num.buckets";
const BUCKET_HASH_FIELD: &str = "hoodie.bucket.index.hash.field";
const MAX_FILE_SIZE: &str = "hoodie.parquet.max.file.size";
const SMALL_FILE_LIMIT: &str = "hoodie.parquet.small.file.limit";
const UPDATE_PARTITION_PATH: &str = "hoodie.simple.index.update.partition.path";
const CDC_ENABLED: &str = "hoodie.table.cdc.enabled";
const CDC_MODE: &str = "hoodie.table.cdc.supplemental.logging.mode";

/// Hudi's default target base-file size (`hoodie.parquet.max.file.size`, 120 MiB).
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 125_829_120;
/// Hudi's default small-file limit (`hoodie.parquet.small.file.limit`, 100 MiB).
pub const DEFAULT_SMALL_FILE_LIMIT: u64 = 104_857_600;

/// Whether a `hoodie.index.type` keeps record keys unique in the whole table.
fn is_global_index(t: &str) -> bool {
    let t = t.to_ascii_uppercase();
    t.starts_with("GLOBAL_") || t == "RECORD_INDEX" || t == "HBASE"
}

/// Copy-on-write or merge-on-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableType {
    /// Every write rewrites the touched base files.
    CopyOnWrite,
    /// Writes append log blocks; readers merge them with base files.
    MergeOnRead,
}

impl TableType {
    fn hudi_name(self) -> &'static str {
        match self {
            TableType::CopyOnWrite => "COPY_ON_WRITE",
            TableType::MergeOnRead => "MERGE_ON_READ",
        }
    }
}

impl FromStr for TableType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "COPY_ON_WRITE" | "COW" => Ok(TableType::CopyOnWrite),
            "MERGE_ON_READ" | "MOR" => Ok(TableType::MergeOnRead),
            other => Err(format!(
                "unknown table type {other:?} (expected cow or mor)"
            )),
        }
    }
}

impl fmt::Display for TableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hudi_name())
    }
}

/// What a CDC log file records per change (`hoodie.table.cdc.supplemental.logging.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CdcMode {
    /// The change type and the record key; readers look both images up in the file slices.
    OpKeyOnly,
    /// The change type, the record key and the before image; the after image is read from the new
    /// base file.
    DataBefore,
    /// The change type, the commit time and both images (Hudi's default).
    DataBeforeAfter,
}

impl CdcMode {
    /// The name Hudi 0.14+ writes (upper case).
    pub fn hudi_name(self) -> &'static str {
        match self {
            CdcMode::OpKeyOnly => "OP_KEY_ONLY",
            CdcMode::DataBefore => "DATA_BEFORE",
            CdcMode::DataBeforeAfter => "DATA_BEFORE_AFTER",
        }
    }
}

impl FromStr for CdcMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        // Hudi upper-cases the value before matching, so 0.13's lower-case names are accepted too.
        match s.trim().to_ascii_uppercase().as_str() {
            "OP_KEY_ONLY" => Ok(CdcMode::OpKeyOnly),
            "DATA_BEFORE" => Ok(CdcMode::DataBefore),
            "DATA_BEFORE_AFTER" => Ok(CdcMode::DataBeforeAfter),
            other => Err(format!(
                "unknown CDC logging mode {other:?} (op_key_only, data_before or data_before_after)"
            )),
        }
    }
}

impl fmt::Display for CdcMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hudi_name())
    }
}

/// How record keys and partition paths are derived from a row (Hudi's key generators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyGenerator {
    /// One key field, at most one partition field; the key is the value itself.
    Simple,
    /// Several key or partition fields; the key is `f1:v1,f2:v2`.
    Complex,
    /// No partition fields.
    NonPartitioned,
    /// Partition values derived from a timestamp (read only).
    TimestampBased,
    /// Any other generator class (read only).
    Other(String),
}

impl KeyGenerator {
    fn class_name(&self) -> &str {
        match self {
            KeyGenerator::Simple => "org.apache.hudi.keygen.SimpleKeyGenerator",
            KeyGenerator::Complex => "org.apache.hudi.keygen.ComplexKeyGenerator",
            KeyGenerator::NonPartitioned => "org.apache.hudi.keygen.NonpartitionedKeyGenerator",
            KeyGenerator::TimestampBased => "org.apache.hudi.keygen.TimestampBasedKeyGenerator",
            KeyGenerator::Other(c) => c,
        }
    }

    fn from_class_or_type(class: Option<&str>, ty: Option<&str>) -> Option<Self> {
        let name = class.or(ty)?;
        let short = name.rsplit('.').next().unwrap_or(name).to_ascii_uppercase();
        Some(match short.as_str() {
            "SIMPLEKEYGENERATOR" | "SIMPLE" | "SIMPLEAVROKEYGENERATOR" => KeyGenerator::Simple,
            "COMPLEXKEYGENERATOR" | "COMPLEX" | "COMPLEXAVROKEYGENERATOR" => KeyGenerator::Complex,
            "NONPARTITIONEDKEYGENERATOR" | "NON_PARTITION" | "NONPARTITIONEDAVROKEYGENERATOR" => {
                KeyGenerator::NonPartitioned
            }
            "TIMESTAMPBASEDKEYGENERATOR" | "TIMESTAMP" | "TIMESTAMPBASEDAVROKEYGENERATOR" => {
                KeyGenerator::TimestampBased
            }
            _ => KeyGenerator::Other(name.to_owned()),
        })
    }

    /// Whether keys use the `field:value` encoding of the complex key generator.
    pub fn encodes_field_names(&self, key_fields: usize) -> bool {
        matches!(self, KeyGenerator::Complex) || key_fields > 1
    }
}

/// The typed table config.
#[derive(Clone, Debug, PartialEq)]
pub struct TableConfig {
    /// `hoodie.table.name`.
    pub name: String,
    /// `hoodie.database.name`, if set.
    pub database: Option<String>,
    /// COW or MOR.
    pub table_type: TableType,
    /// `hoodie.table.version` (lake writes 6; reads 6, 8, 9).
    pub version: u32,
    /// Record key fields, in order.
    pub record_key_fields: Vec<String>,
    /// Partition fields, in order (empty: non-partitioned).
    pub partition_fields: Vec<String>,
    /// The ordering (precombine) field deciding between two versions of a record.
    pub ordering_field: Option<String>,
    /// The key generator.
    pub key_generator: KeyGenerator,
    /// `field=value` partition folders.
    pub hive_style_partitioning: bool,
    /// URL-encoded partition values.
    pub url_encode_partitions: bool,
    /// Whether the five `_hoodie_*` meta columns are stored.
    pub populate_meta_fields: bool,
    /// Number of buckets of the bucket index (lake's default index); `None`: the simple
    /// (key-lookup) index, with file groups sized by `target_file_size`.
    pub bucket_count: Option<u32>,
    /// Target size of base files written with the simple index.
    pub target_file_size: u64,
    /// Base files smaller than this receive new records (simple index).
    pub small_file_limit: u64,
    /// Fields hashed into buckets (defaults to the record key fields).
    pub bucket_hash_fields: Vec<String>,
    /// Table-wide record keys (Hudi's `GLOBAL_SIMPLE` index with
    /// `hoodie.simple.index.update.partition.path=true`): a key lives in one partition of the whole
    /// table, and an upsert whose partition value changed deletes the copy in the old partition.
    /// Needs the simple index (`bucket_count` `None`).
    pub global_index: bool,
    /// Hudi's CDC log files (`hoodie.table.cdc.enabled`) and what they record; `None`: off.
    /// Copy-on-write writes put one next to every base file they rewrite.
    pub cdc: Option<CdcMode>,
    /// Every key as read or to be written, including those lake does not interpret.
    pub raw: BTreeMap<String, String>,
}

impl TableConfig {
    /// A new version-6 config for `lake create`.
    pub fn new(
        name: &str,
        table_type: TableType,
        record_key_fields: Vec<String>,
        partition_fields: Vec<String>,
        ordering_field: Option<String>,
        bucket_count: Option<u32>,
    ) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            path: PROPERTIES_PATH.into(),
            reason,
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(format!(
                "table name {name:?} must be letters, digits and _"
            )));
        }
        if record_key_fields.is_empty() || record_key_fields.iter().any(String::is_empty) {
            return Err(bad("at least one record key field is required".into()));
        }
        if bucket_count == Some(0) {
            return Err(bad("the bucket count must be at least 1".into()));
        }
        let key_generator = if partition_fields.is_empty() {
            KeyGenerator::NonPartitioned
        } else if record_key_fields.len() == 1 && partition_fields.len() == 1 {
            KeyGenerator::Simple
        } else {
            KeyGenerator::Complex
        };
        Ok(Self {
            name: name.to_owned(),
            database: None,
            table_type,
            version: 6,
            bucket_hash_fields: record_key_fields.clone(),
            record_key_fields,
            partition_fields,
            ordering_field,
            key_generator,
            hive_style_partitioning: true,
            url_encode_partitions: false,
            populate_meta_fields: true,
            bucket_count,
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            small_file_limit: DEFAULT_SMALL_FILE_LIMIT,
            global_index: false,
            cdc: None,
            raw: BTreeMap::new(),
        })
    }

    /// A table name derived from a URI: its last path segment, with every character but letters and
    /// digits replaced by `_`.
    pub fn name_from_uri(uri: &str) -> String {
        let name: String = uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if name.is_empty() {
            "table".into()
        } else {
            name
        }
    }

    /// The timeline layout of this table version.
    pub fn layout(&self) -> Layout {
        if self.version >= 8 {
            Layout::V2
        } else {
            Layout::V1
        }
    }

    /// Parses `hoodie.properties` text.
    pub fn parse(text: &str) -> Result<Self> {
        let raw = properties::parse(text);
        let bad = |reason: String| Error::Config {
            path: PROPERTIES_PATH.into(),
            reason,
        };
        let get = |k: &str| raw.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let flag =
            |k: &str, default: bool| get(k).map_or(default, |v| v.eq_ignore_ascii_case("true"));
        let name = get(NAME)
            .ok_or_else(|| bad(format!("{NAME} is missing")))?
            .to_owned();
        let table_type = get(TYPE).unwrap_or("COPY_ON_WRITE").parse().map_err(bad)?;
        let version: u32 = get(VERSION)
            .ok_or_else(|| bad(format!("{VERSION} is missing")))?
            .parse()
            .map_err(|e| bad(format!("{VERSION}: {e}")))?;
        if ![6, 8, 9].contains(&version) {
            return Err(bad(format!(
                "table version {version} is not supported (6, 8 and 9 are)"
            )));
        }
        let layout = get(LAYOUT).unwrap_or(if version >= 8 { "2" } else { "1" });
        if layout != if version >= 8 { "2" } else { "1" } {
            return Err(bad(format!(
                "timeline layout {layout} does not match table version {version}"
            )));
        }
        if flag(DROP_PARTITION_COLUMNS, false) {
            return Err(bad(format!(
                "{DROP_PARTITION_COLUMNS}=true is not supported"
            )));
        }
        let record_key_fields = list(RECORD_KEYS);
        let partition_fields = list(PARTITIONS);
        let ordering_field = get(ORDERING_V9)
            .or(get(PRECOMBINE))
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned());
        let key_generator = KeyGenerator::from_class_or_type(get(KEYGEN_CLASS), get(KEYGEN_TYPE))
            .unwrap_or(if partition_fields.is_empty() {
                KeyGenerator::NonPartitioned
            } else if record_key_fields.len() > 1 || partition_fields.len() > 1 {
                KeyGenerator::Complex
            } else {
                KeyGenerator::Simple
            });
        let bucket_count = match (get(INDEX_TYPE), get(BUCKETS)) {
            (Some(t), Some(n)) if t.eq_ignore_ascii_case("BUCKET") => {
                Some(n.parse().map_err(|e| bad(format!("{BUCKETS}: {e}")))?)
            }
            _ => None,
        };
        let size = |k: &str, default: u64| -> Result<u64> {
            get(k).map_or(Ok(default), |v| {
                v.parse().map_err(|e| bad(format!("{k}: {e}")))
            })
        };
        let target_file_size = size(MAX_FILE_SIZE, DEFAULT_TARGET_FILE_SIZE)?;
        let small_file_limit = size(SMALL_FILE_LIMIT, DEFAULT_SMALL_FILE_LIMIT)?;
        let mut bucket_hash_fields = list(BUCKET_HASH_FIELD);
        if bucket_hash_fields.is_empty() {
            bucket_hash_fields = record_key_fields.clone();
        }
        // Hudi's global indexes (GLOBAL_SIMPLE, GLOBAL_BLOOM, RECORD_INDEX, HBASE) keep keys
        // table-wide.
        let global_index = bucket_count.is_none() && get(INDEX_TYPE).is_some_and(is_global_index);
        let cdc = if flag(CDC_ENABLED, false) {
            Some(
                get(CDC_MODE)
                    .map_or(Ok(CdcMode::DataBeforeAfter), str::parse)
                    .map_err(|e| bad(format!("{CDC_MODE}: {e}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            name,
            database: get(DATABASE).map(str::to_owned),
            table_type,
            version,
            record_key_fields,
            partition_fields,
            ordering_field,
            key_generator,
            hive_style_partitioning: flag(HIVE_STYLE, false),
            url_encode_partitions: flag(URL_ENCODE, false),
            populate_meta_fields: flag(POPULATE_META, true),
            bucket_count,
            target_file_size,
            small_file_limit,
            bucket_hash_fields,
            global_index,
            cdc,
            raw,
        })
    }

    /// The `hoodie.properties` entries of this config, checksum included.
    pub fn to_entries(&self) -> BTreeMap<String, String> {
        let mut m = self.raw.clone();
        let mut set = |k: &str, v: String| {
            m.insert(k.to_owned(), v);
        };
        set(NAME, self.name.clone());
        if let Some(db) = &self.database {
            set(DATABASE, db.clone());
        }
        set(TYPE, self.table_type.hudi_name().to_owned());
        set(VERSION, self.version.to_string());
        set(LAYOUT, if self.version >= 8 { "2" } else { "1" }.to_owned());
        set(RECORD_KEYS, self.record_key_fields.join(","));
        set(PARTITIONS, self.partition_fields.join(","));
        if let Some(o) = &self.ordering_field {
            set(PRECOMBINE, o.clone());
        }
        set(KEYGEN_CLASS, self.key_generator.class_name().to_owned());
        set(HIVE_STYLE, self.hive_style_partitioning.to_string());
        set(URL_ENCODE, self.url_encode_partitions.to_string());
        set(DROP_PARTITION_COLUMNS, "false".to_owned());
        set(BASE_FORMAT, "PARQUET".to_owned());
        set(POPULATE_META, self.populate_meta_fields.to_string());
        set("hoodie.archivelog.folder", "archived".to_owned());
        set("hoodie.table.timeline.timezone", "UTC".to_owned());
        set(
            "hoodie.compaction.payload.class",
            "org.apache.hudi.common.model.DefaultHoodieRecordPayload".to_owned(),
        );
        set(
            "hoodie.compaction.record.merger.strategy",
            "eeb8d96f-b1e4-49fd-bbf8-28ac514178e5".to_owned(),
        );
        match self.bucket_count {
            Some(n) => {
                set(INDEX_TYPE, "BUCKET".to_owned());
                set(BUCKETS, n.to_string());
                set(BUCKET_HASH_FIELD, self.bucket_hash_fields.join(","));
            }
            None if self.global_index => {
                let kept = self.raw.get(INDEX_TYPE).filter(|t| is_global_index(t));
                set(
                    INDEX_TYPE,
                    kept.cloned().unwrap_or_else(|| "GLOBAL_SIMPLE".to_owned()),
                );
                if kept.is_none() {
                    set(UPDATE_PARTITION_PATH, "true".to_owned());
                }
                set(MAX_FILE_SIZE, self.target_file_size.to_string());
                set(SMALL_FILE_LIMIT, self.small_file_limit.to_string());
            }
            None => {
                set(INDEX_TYPE, "SIMPLE".to_owned());
                set(MAX_FILE_SIZE, self.target_file_size.to_string());
                set(SMALL_FILE_LIMIT, self.small_file_limit.to_string());
            }
        }
        match self.cdc {
            Some(mode) => {
                set(CDC_ENABLED, "true".to_owned());
                set(CDC_MODE, mode.hudi_name().to_owned());
            }
            None if self.raw.contains_key(CDC_ENABLED) => set(CDC_ENABLED, "false".to_owned()),
            None => {}
        }
        let db = self.database.as_deref().unwrap_or("");
        set(
            CHECKSUM,
            crc32fast::hash(format!("{db}.{}", self.name).as_bytes()).to_string(),
        );
        m
    }

    /// Why lake cannot write this table's key index, if it cannot: a global index that keeps a moved
    /// key in its old partition (`hoodie.simple.index.update.partition.path=false`).
    pub fn unwritable_index(&self) -> Option<String> {
        if !self.global_index {
            return None;
        }
        // Each Hudi global index has its own switch, with its own default.
        let kind = self.raw.get(INDEX_TYPE).map(|t| t.to_ascii_uppercase());
        let (key, default) = match kind.as_deref() {
            Some("GLOBAL_BLOOM") => ("hoodie.bloom.index.update.partition.path", true),
            Some("RECORD_INDEX") => ("hoodie.record.index.update.partition.path", false),
            Some("HBASE") => ("hoodie.hbase.index.update.partition.path", false),
            _ => (UPDATE_PARTITION_PATH, true),
        };
        let moves = self
            .raw
            .get(key)
            .map_or(default, |v| !v.eq_ignore_ascii_case("false"));
        (!moves).then(|| format!("{key}=false (lake moves a key to its new partition)"))
    }

    /// Renders `hoodie.properties`.
    pub fn render(&self) -> String {
        properties::render("Properties saved by lake", &self.to_entries())
    }

    /// Renders the entries as they were read ([`TableConfig::raw`]), nothing added or changed:
    /// [`TableConfig::parse`] of it gives this config back, whoever wrote the file (a config
    /// built in memory, with no entries read, renders as [`TableConfig::render`]).
    pub fn render_as_read(&self) -> String {
        if self.raw.is_empty() {
            return self.render();
        }
        properties::render("Properties as read by lake", &self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_hudi() {
        let mut c = TableConfig::new(
            "v6_simplekeygen_nonhivestyle",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            None,
            Some(4),
        )
        .expect("config");
        c.database = Some("default".into());
        assert_eq!(c.to_entries()[CHECKSUM], "616688896");
    }

    #[test]
    fn render_then_parse_round_trips() {
        let c = TableConfig::new(
            "orders",
            TableType::MergeOnRead,
            vec!["id".into(), "name".into()],
            vec!["a".into(), "b".into()],
            Some("ts".into()),
            Some(8),
        )
        .expect("config");
        let back = TableConfig::parse(&c.render()).expect("parse");
        assert_eq!(back.table_type, TableType::MergeOnRead);
        assert_eq!(back.record_key_fields, ["id", "name"]);
        assert_eq!(back.partition_fields, ["a", "b"]);
        assert_eq!(back.ordering_field.as_deref(), Some("ts"));
        assert_eq!(back.key_generator, KeyGenerator::Complex);
        assert_eq!(back.bucket_count, Some(8));
        assert_eq!(back.layout(), Layout::V1);
        assert!(!back.global_index);
    }

    #[test]
    fn cdc_mode_parses_in_any_case_and_is_written_upper_case() {
        let text = |extra: &str| {
            format!(
                "hoodie.table.name=t\nhoodie.table.version=6\nhoodie.table.recordkey.fields=id\n{extra}"
            )
        };
        let parse = |extra: &str| TableConfig::parse(&text(extra));
        assert_eq!(parse("").expect("off").cdc, None);
        assert_eq!(
            parse("hoodie.table.cdc.enabled=false\n").expect("off").cdc,
            None
        );
        assert_eq!(
            parse("hoodie.table.cdc.enabled=true\n")
                .expect("default")
                .cdc,
            Some(CdcMode::DataBeforeAfter)
        );
        for (v, want) in [
            ("op_key_only", CdcMode::OpKeyOnly),
            ("DATA_BEFORE", CdcMode::DataBefore),
            ("data_before_after", CdcMode::DataBeforeAfter),
        ] {
            let c = parse(&format!("hoodie.table.cdc.enabled=TRUE\n{CDC_MODE}={v}\n")).expect(v);
            assert_eq!(c.cdc, Some(want), "{v}");
            let e = c.to_entries();
            assert_eq!(e[CDC_ENABLED], "true");
            assert_eq!(e[CDC_MODE], want.hudi_name());
            assert_eq!(
                TableConfig::parse(&c.render()).expect("back").cdc,
                Some(want)
            );
        }
        // Names Hudi itself refuses are refused, naming the key.
        for bad in ["KEY_OP", "cdc_data_before"] {
            let err = parse(&format!(
                "hoodie.table.cdc.enabled=true\n{CDC_MODE}={bad}\n"
            ))
            .expect_err(bad)
            .to_string();
            assert!(err.contains(CDC_MODE), "{err}");
        }
    }

    #[test]
    fn global_index_round_trips_as_hudi_global_simple() {
        let mut c = TableConfig::new(
            "users",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec!["country".into()],
            Some("ts".into()),
            None,
        )
        .expect("config");
        c.global_index = true;
        let e = c.to_entries();
        assert_eq!(e[INDEX_TYPE], "GLOBAL_SIMPLE");
        assert_eq!(e[UPDATE_PARTITION_PATH], "true");
        let back = TableConfig::parse(&c.render()).expect("parse");
        assert!(back.global_index);
        assert_eq!(back.bucket_count, None);
        assert_eq!(back.unwritable_index(), None);
        // Other Hudi global indexes are table-wide too; keeping moved keys in place is not written.
        let hudi = |index: &str, extra: &str| {
            let text = format!(
                "hoodie.table.name=t\nhoodie.table.version=6\nhoodie.table.recordkey.fields=id\n\
                 hoodie.index.type={index}\n{extra}"
            );
            TableConfig::parse(&text).expect("parse")
        };
        let bloom = hudi("GLOBAL_BLOOM", "");
        assert!(bloom.global_index && bloom.unwritable_index().is_none());
        let keeps = hudi(
            "GLOBAL_BLOOM",
            "hoodie.bloom.index.update.partition.path=false\n",
        );
        assert!(keeps.unwritable_index().is_some());
        // The record index keeps moved keys in place unless told otherwise (Hudi's default).
        assert!(hudi("RECORD_INDEX", "").unwritable_index().is_some());
        let moves = hudi(
            "RECORD_INDEX",
            "hoodie.record.index.update.partition.path=true\n",
        );
        assert!(moves.unwritable_index().is_none());
        assert!(!hudi("SIMPLE", "").global_index);
    }

    #[test]
    fn parse_refuses_unsupported_versions_and_missing_names() {
        assert!(TableConfig::parse("hoodie.table.name=x\nhoodie.table.version=5\n").is_err());
        assert!(TableConfig::parse("hoodie.table.version=6\n").is_err());
        assert!(
            TableConfig::new(
                "bad name",
                TableType::CopyOnWrite,
                vec!["id".into()],
                vec![],
                None,
                Some(1)
            )
            .is_err()
        );
    }
}
