//! `lake create`: writes `hoodie.properties` for a new table.

use anyhow::Context;
use lake_table::config::{DEFAULT_TARGET_FILE_SIZE, SOURCE_POSITION_FIELD};
use lake_table::{CdcMode, Table, TableConfig, TableType};

/// Arguments of `lake create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table URI: a local path, file:///abs/path or s3://bucket/prefix.
    pub table: String,
    /// Table type: cow (copy-on-write) or mor (merge-on-read).
    #[arg(long = "type", default_value = "cow")]
    pub table_type: TableType,
    /// Record key field(s), comma-separated.
    #[arg(long)]
    pub key: String,
    /// Ordering (precombine) field deciding between two versions of a record; defaults to
    /// `_source_position`, which lake fills from the source (the binlog position for Debezium).
    #[arg(long)]
    pub ordering: Option<String>,
    /// Partition field(s), comma-separated (Hive-style folders field=value).
    #[arg(long)]
    pub partition_by: Option<String>,
    /// Table name (defaults to the last path segment of the URI).
    #[arg(long)]
    pub name: Option<String>,
    /// Record index: `bucket` (hash of the key into a fixed number of file groups per partition; no
    /// lookup cost), `simple` (key lookup in the touched partitions; file groups sized by
    /// --target-file-size) or `global` (table-wide keys: an upsert whose partition value changed
    /// deletes the key's copy in its old partition; every write looks keys up in all partitions).
    #[arg(long, value_enum, default_value = "bucket")]
    pub index: Index,
    /// Buckets of the bucket index per partition: each bucket is one file group, so choose about
    /// (partition size / target file size).
    #[arg(long, default_value_t = 4)]
    pub buckets: u32,
    /// Target base-file size in bytes for the simple index (new records top up files smaller than
    /// 5/6 of it, then fill new file groups of this size).
    #[arg(long, default_value_t = DEFAULT_TARGET_FILE_SIZE)]
    pub target_file_size: u64,
    /// Write Hudi CDC log files (`hoodie.table.cdc.enabled`) in this logging mode: op_key_only,
    /// data_before or data_before_after. Copy-on-write writes put one next to every base file they
    /// rewrite, for Hudi's CDC readers and `lake changes`.
    #[arg(long, value_name = "MODE")]
    pub cdc: Option<CdcMode>,
}

/// Record index of a new table.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Index {
    /// Hudi's bucket index.
    Bucket,
    /// Hudi's simple (key lookup) index.
    Simple,
    /// Hudi's global simple index, moving keys whose partition changed.
    Global,
}

pub(crate) async fn run(a: Args) -> anyhow::Result<()> {
    let name = a
        .name
        .unwrap_or_else(|| TableConfig::name_from_uri(&a.table));
    let partitions = a
        .partition_by
        .as_deref()
        .map(super::fields)
        .unwrap_or_default();
    let ordering = a
        .ordering
        .unwrap_or_else(|| SOURCE_POSITION_FIELD.to_owned());
    let mut config = TableConfig::new(
        &name,
        a.table_type,
        super::fields(&a.key),
        partitions,
        Some(ordering),
        match a.index {
            Index::Bucket => Some(a.buckets),
            Index::Simple | Index::Global => None,
        },
    )?;
    config.global_index = matches!(a.index, Index::Global);
    config.target_file_size = a.target_file_size;
    config.small_file_limit = a.target_file_size / 6 * 5;
    config.cdc = a.cdc;
    let table = Table::create(&a.table, config)
        .await
        .with_context(|| format!("creating table {}", a.table))?;
    let c = table.config();
    println!(
        "created {} table {:?} at {} (key {}, ordering {}, partitions [{}], {}, table version {}{})",
        c.table_type,
        c.name,
        a.table,
        c.record_key_fields.join(","),
        c.ordering_field.as_deref().unwrap_or("-"),
        c.partition_fields.join(","),
        match c.bucket_count {
            Some(n) => format!("bucket index with {n} buckets"),
            None => format!(
                "{} index, target file size {} bytes",
                if c.global_index {
                    "global (table-wide keys)"
                } else {
                    "simple"
                },
                c.target_file_size
            ),
        },
        c.version,
        c.cdc.map(|m| format!(", CDC logs {m}")).unwrap_or_default()
    );
    Ok(())
}
