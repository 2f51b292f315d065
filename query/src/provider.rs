//! The DataFusion `TableProvider` of a lake (Hudi) table.
//!
//! `scan` only plans: it lists the file slices visible for the query (latest, as of an instant, or
//! the commits of an incremental range), prunes partitions exactly with the partition filters, and
//! returns DataFusion's own Parquet scan over the base files of slices without logs (copy-on-write
//! tables, read-optimized queries), with projection, limit and the remaining filters (row groups,
//! page index) pushed into it by DataFusion, plus a [`MergeOnReadExec`] over the slices with logs.
//! Incremental queries add an exact filter on `_hoodie_commit_time`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result, Statistics};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType, col, lit};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use futures::{StreamExt, TryStreamExt};
use lake_table::Table;
use lake_table::archive::ArchivedTimeline;
use lake_table::layout::BaseFile;
use lake_table::schema::COMMIT_TIME;
use lake_table::timeline::InstantTime;
use lake_table::timeline::{Layout, Timeline};
use lake_table::view::{FileSlice, FileSystemView};

use crate::mor::MergeOnReadExec;

use crate::options::{QueryOptions, QueryType, parse_time};
use crate::partitions::{keep_partitions, partition_filters};

/// `schema` with top-level strings and binaries as view types.
fn view_types(schema: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                let dt = match f.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                    DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                    other => other.clone(),
                };
                Arc::new(Field::new(f.name(), dt, f.is_nullable()))
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

fn ext(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn plan_err(msg: String) -> DataFusionError {
    DataFusionError::Plan(msg)
}

/// An incremental range of completion times (timeline layout 2, Hudi 1.x): the requested times of
/// the writes that completed in (begin, end] — active or archived (`archived`: requested and
/// completion times) — and the range to read them in: from the earliest of them, as of the last
/// write completed by `end`.
fn completion_range(
    timeline: &Timeline,
    archived: &[(InstantTime, InstantTime)],
    begin: InstantTime,
    end: Option<InstantTime>,
) -> (Resolved, Vec<InstantTime>) {
    let writes: Vec<(InstantTime, InstantTime)> = archived
        .iter()
        .copied()
        .chain(
            timeline
                .completed_writes()
                .map(|i| (i.time, i.completion.unwrap_or(i.time))),
        )
        .collect();
    let selected: Vec<InstantTime> = writes
        .iter()
        .filter(|(_, done)| *done > begin && end.is_none_or(|e| *done <= e))
        .map(|(t, _)| *t)
        .collect();
    let view_end = end.map(|e| {
        writes
            .iter()
            .filter(|(_, done)| *done <= e)
            .map(|(t, _)| *t)
            .max()
            .unwrap_or(e)
    });
    let first = selected.iter().min().copied().unwrap_or(begin);
    (
        Resolved::Incremental {
            begin: first,
            end: view_end,
        },
        selected,
    )
}

/// The archived writes (requested and completion times) an incremental query may need. Layout 1
/// archives a prefix of requested times, so a range beginning at or after the first active write
/// needs none; on layout 2 an archived write may have completed after active ones, so the history
/// is read whenever there is one.
async fn archived_writes(
    timeline: &Timeline,
    begin: InstantTime,
) -> Result<Vec<(InstantTime, InstantTime)>> {
    let first = timeline.completed_writes().next().map(|i| i.time);
    if timeline.layout() == Layout::V1 && first.is_some_and(|f| begin >= f) {
        return Ok(Vec::new());
    }
    Ok(
        ArchivedTimeline::load(timeline.storage(), timeline.layout())
            .await
            .map_err(ext)?
            .completed_writes()
            .filter(|i| timeline.find(i.time).is_none())
            .map(|i| (i.time, i.completion.unwrap_or(i.time)))
            .collect(),
    )
}

/// Writes as (requested, completion) times.
type Writes = Vec<(InstantTime, InstantTime)>;

/// What the provider reads, with instants resolved against the table's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolved {
    Snapshot {
        as_of: Option<InstantTime>,
        read_optimized: bool,
    },
    Incremental {
        begin: InstantTime,
        end: Option<InstantTime>,
    },
}

/// A lake/Hudi table as a DataFusion table.
pub struct HudiTableProvider {
    table: Table,
    /// The file slices of the last scan, keyed by the timeline fingerprint they were listed at.
    listing: Mutex<Option<(u64, Vec<FileSlice>)>>,
    /// Statistics of base files by path (files are immutable, so entries never go stale).
    file_stats: Mutex<HashMap<String, Arc<Statistics>>>,
    /// The exposed schema: strings and binaries as view types, as DataFusion's Parquet reader
    /// produces them fastest (its `schema_force_view_types` default).
    schema: SchemaRef,
    /// The table's schema as stored, which merged slices are read in before conversion.
    read_schema: SchemaRef,
    statistics: Statistics,
    resolved: Resolved,
    /// Incremental queries on timeline layout 2: the range of completion times; each scan selects
    /// the writes that completed in it (records are selected by their instants, not a time range).
    completion: Option<(InstantTime, Option<InstantTime>)>,
    /// An incremental range that ends before the table's first write: nothing to read.
    empty: bool,
    /// Archived writes (requested, completion) an incremental range reaches, with the fingerprint of
    /// the timeline they were read against (more may be archived as the timeline moves on).
    archived: Mutex<(u64, Arc<Writes>)>,
    options: QueryOptions,
}

impl fmt::Debug for HudiTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HudiTableProvider")
            .field("table", &self.table.storage().uri())
            .field("options", &self.options)
            .finish()
    }
}

impl HudiTableProvider {
    /// Opens the table at `uri` for the given query.
    pub async fn try_new(uri: &str, options: QueryOptions) -> Result<Self> {
        let table = Table::open(uri).await.map_err(ext)?;
        Self::try_new_with_table(table, options).await
    }

    /// Wraps an open table for the given query.
    pub async fn try_new_with_table(table: Table, options: QueryOptions) -> Result<Self> {
        if options.query_type == QueryType::Changes {
            return Err(plan_err(
                "the change feed is read through ChangeFeedProvider (lake_changes)".into(),
            ));
        }
        let timeline = table.timeline().await.map_err(ext)?;
        // A timestamp resolves to the last completed write at or before it.
        let resolve = |s: &str| -> Result<InstantTime> {
            let t = parse_time(s).map_err(plan_err)?;
            Ok(timeline
                .completed_writes_until(Some(t))
                .last()
                .map_or(t, |i| i.time))
        };
        let mut completion = None;
        let archived = match options.begin.as_deref() {
            Some(b) if options.query_type == QueryType::Incremental => {
                archived_writes(&timeline, parse_time(b).map_err(plan_err)?).await?
            }
            _ => Vec::new(),
        };
        let resolved =
            match options.query_type {
                QueryType::Incremental if timeline.layout() == lake_table::timeline::Layout::V2 => {
                    let begin = options.begin.as_deref().ok_or_else(|| {
                        plan_err("an incremental query needs a begin instant".into())
                    })?;
                    let end = options.end.as_deref().map(parse_time).transpose();
                    let bounds = (parse_time(begin).map_err(plan_err)?, end.map_err(plan_err)?);
                    completion = Some(bounds);
                    completion_range(&timeline, &archived, bounds.0, bounds.1).0
                }
                QueryType::Incremental => {
                    let begin = options.begin.as_deref().ok_or_else(|| {
                        plan_err("an incremental query needs a begin instant".into())
                    })?;
                    Resolved::Incremental {
                        begin: parse_time(begin).map_err(plan_err)?,
                        end: options.end.as_deref().map(resolve).transpose()?,
                    }
                }
                q => Resolved::Snapshot {
                    as_of: options.as_of.as_deref().map(resolve).transpose()?,
                    read_optimized: q == QueryType::ReadOptimized,
                },
            };
        // An incremental range that ends before the first write reads nothing (and lists the latest
        // state for the schema).
        let empty = match (resolved, completion) {
            (_, Some((_, Some(e)))) => {
                !timeline
                    .completed_writes()
                    .any(|i| i.completion.unwrap_or(i.time) <= e)
                    && !archived.iter().any(|(_, done)| *done <= e)
            }
            (Resolved::Incremental { end: Some(e), .. }, None) => {
                timeline.completed_writes_until(Some(e)).next().is_none()
                    && !archived.iter().any(|(t, _)| *t <= e)
            }
            _ => false,
        };
        let as_of = match resolved {
            Resolved::Snapshot { as_of, .. } => as_of,
            Resolved::Incremental { .. } if empty => None,
            Resolved::Incremental { end, .. } => end,
        };
        let slices = FileSystemView::load(&timeline, None, as_of)
            .await
            .map_err(ext)?
            .latest_slices();
        let read_schema = table
            .snapshot_schema(&timeline, &slices)
            .await
            .map_err(ext)?;
        let schema = view_types(&read_schema);
        // Sizes come with the listing; row counts would cost a footer read per file.
        let bytes: u64 = slices
            .iter()
            .filter_map(|s| s.base_file.as_ref())
            .map(|b| b.size)
            .sum();
        let statistics = Statistics {
            num_rows: Precision::Absent,
            total_byte_size: Precision::Inexact(bytes as usize),
            column_statistics: Statistics::unknown_column(&schema),
        };
        Ok(Self {
            table,
            listing: Mutex::new(None),
            file_stats: Mutex::new(HashMap::new()),
            schema,
            read_schema,
            statistics,
            resolved,
            completion,
            empty,
            archived: Mutex::new((timeline.fingerprint(), Arc::new(archived))),
            options,
        })
    }

    /// The underlying table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The options the provider was opened with.
    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    /// [`HudiTableProvider::options`] with a time-travel instant or timestamp, or an incremental end
    /// on table version 6, replaced by the instant it resolved to when the provider was opened: a
    /// provider opened elsewhere, later, with these options reads what this one reads.
    pub fn pinned_options(&self) -> QueryOptions {
        let mut pinned = self.options.clone();
        match self.resolved {
            Resolved::Snapshot { as_of: Some(t), .. } => pinned.as_of = Some(t.to_string()),
            Resolved::Incremental { end: Some(t), .. }
                if self.completion.is_none() && pinned.end.is_some() =>
            {
                pinned.end = Some(t.to_string());
            }
            _ => {}
        }
        pinned
    }

    /// [`archived_writes`] for this timeline, read again only when the timeline changed.
    async fn archived_for(&self, timeline: &Timeline, begin: InstantTime) -> Result<Arc<Writes>> {
        let key = timeline.fingerprint();
        if let Ok(guard) = self.archived.lock()
            && guard.0 == key
        {
            return Ok(guard.1.clone());
        }
        let fresh = Arc::new(archived_writes(timeline, begin).await?);
        if let Ok(mut guard) = self.archived.lock() {
            *guard = (key, fresh.clone());
        }
        Ok(fresh)
    }

    /// DataFusion's Parquet scan over base files, in up to `target_partitions` groups.
    async fn parquet_scan(
        &self,
        state: &dyn Session,
        files: &[BaseFile],
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
        incremental: bool,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let storage = self.table.storage();
        let url = ObjectStoreUrl::parse(storage.object_store_url())?;
        state
            .runtime_env()
            .register_object_store(url.as_ref(), storage.object_store().clone());
        let target = state.config().target_partitions().max(1);
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        // Per-file statistics (row counts, column min/max) from the footers, read once per file
        // (base files never change) with bounded concurrency; they let DataFusion skip files and
        // answer from statistics, and the footers land in the metadata cache the scan reads.
        let store = storage.object_store().clone();
        let cached: HashMap<String, Arc<Statistics>> = self
            .file_stats
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let stats: Vec<Arc<Statistics>> = futures::stream::iter(0..files.len())
            .map(|i| {
                let (format, store, cached) = (&format, &store, &cached);
                let schema = self.schema.clone();
                let f = &files[i];
                async move {
                    let path = f.path();
                    if let Some(s) = cached.get(&path) {
                        return Ok::<_, DataFusionError>(s.clone());
                    }
                    let meta =
                        PartitionedFile::new(storage.path(&path).to_string(), f.size).object_meta;
                    let s = format.infer_stats(state, store, schema, &meta).await?;
                    Ok(Arc::new(s))
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        if let Ok(mut c) = self.file_stats.lock() {
            for (f, s) in files.iter().zip(&stats) {
                c.insert(f.path(), s.clone());
            }
        }
        // Files go to the least loaded group, largest first.
        let n = target.min(files.len());
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(files[*i].size));
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        let mut load = vec![0u64; n];
        for i in order {
            let g = (0..n).min_by_key(|g| load[*g]).unwrap_or(0);
            load[g] += files[i].size;
            groups[g].push(
                PartitionedFile::new(storage.path(&files[i].path()).to_string(), files[i].size)
                    .with_statistics(stats[i].clone()),
            );
        }
        let source = format.file_source(TableSchema::from(self.schema.clone()));
        let scan_config = FileScanConfigBuilder::new(url, source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection)?
            .with_limit(if incremental { None } else { limit })
            .build();
        format.create_physical_plan(state, scan_config).await
    }

    /// The file slices the query reads (read-optimized: their base files only), and for incremental
    /// queries on timeline layout 2 the instants whose records it returns. The listing is reused
    /// while the timeline is unchanged: a query then costs one listing of the timeline folder.
    async fn slices(&self) -> Result<(Timeline, Vec<FileSlice>, Option<Arc<Vec<InstantTime>>>)> {
        let timeline = self.table.timeline().await.map_err(ext)?;
        if self.empty {
            return Ok((timeline, Vec::new(), Some(Arc::new(Vec::new()))));
        }
        // Layout 2: the writes completed in the range, as of this timeline.
        let (resolved, commits) = match self.completion {
            Some((begin, end)) => {
                let archived = self.archived_for(&timeline, begin).await?;
                let (r, selected) = completion_range(&timeline, &archived, begin, end);
                (r, Some(Arc::new(selected)))
            }
            None => (self.resolved, None),
        };
        let (as_of, begin, read_optimized) = match resolved {
            Resolved::Snapshot {
                as_of,
                read_optimized,
            } => (as_of, None, read_optimized),
            Resolved::Incremental { begin, end } => (end, Some(begin), false),
        };
        let key = timeline.fingerprint();
        if let Ok(guard) = self.listing.lock()
            && let Some((k, slices)) = guard.as_ref()
            && *k == key
        {
            return Ok((timeline, slices.clone(), commits));
        }
        let view = FileSystemView::load(&timeline, None, as_of)
            .await
            .map_err(ext)?;
        let mut slices: Vec<FileSlice> = view.latest_slices();
        if read_optimized || self.table.config().table_type == lake_table::TableType::CopyOnWrite {
            slices.retain(|s| s.base_file.is_some());
            slices.iter_mut().for_each(|s| s.log_files.clear());
        }
        // Incremental: only slices written in the range can hold changed records (logs may).
        slices.retain(|s| match &commits {
            // Layout 2: `begin` is the earliest write that completed in the range.
            Some(c) => {
                !c.is_empty()
                    && (!s.log_files.is_empty()
                        || s.base_file
                            .as_ref()
                            .is_some_and(|b| begin.is_none_or(|begin| b.instant >= begin)))
            }
            None => begin.is_none_or(|begin| {
                !s.log_files.is_empty() || s.base_file.as_ref().is_some_and(|b| b.instant > begin)
            }),
        });
        if let Ok(mut guard) = self.listing.lock() {
            *guard = Some((key, slices.clone()));
        }
        Ok((timeline, slices, commits))
    }
}

#[async_trait]
impl TableProvider for HudiTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Partition filters prune exactly, and every filter also goes to the Parquet scan; DataFusion
        // re-checks them all, which keeps results exact whatever the files' statistics say.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (timeline, mut slices, commits) = self.slices().await?;
        let config = self.table.config();
        let part_filters = partition_filters(config, filters);
        if !part_filters.is_empty() {
            let mut partitions: Vec<String> = slices.iter().map(|f| f.partition.clone()).collect();
            partitions.sort();
            partitions.dedup();
            let keep = keep_partitions(state, config, &self.schema, &partitions, &part_filters)?;
            let kept: std::collections::HashSet<&String> = partitions
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(p, _)| p)
                .collect();
            slices.retain(|f| kept.contains(&f.partition));
        }
        slices.sort_by(|a, b| (&a.partition, &a.file_id).cmp(&(&b.partition, &b.file_id)));
        // Slices with logs are merged; the others are plain Parquet files.
        let (merged, plain): (Vec<FileSlice>, Vec<FileSlice>) =
            slices.into_iter().partition(|s| !s.log_files.is_empty());
        let files: Vec<BaseFile> = plain.into_iter().filter_map(|s| s.base_file).collect();

        // Incremental queries filter on the commit time, which must be scanned even if not projected.
        let commit_time_idx = self.schema.index_of(COMMIT_TIME).ok();
        let (incremental, as_of) = match self.resolved {
            Resolved::Incremental { begin, end } => (Some((begin, end)), end),
            Resolved::Snapshot { as_of, .. } => (None, as_of),
        };
        let mut scan_projection = projection.cloned();
        let mut added_commit_time = false;
        if let (Some(_), Some(p), Some(ct)) =
            (incremental, scan_projection.as_mut(), commit_time_idx)
            && !p.contains(&ct)
        {
            p.push(ct);
            added_commit_time = true;
        }
        let projected_schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        if files.is_empty() && merged.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected_schema)));
        }
        let target = state.config().target_partitions().max(1);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !merged.is_empty() {
            let out_schema = match &scan_projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            inputs.push(Arc::new(MergeOnReadExec::try_new(
                self.table.clone(),
                timeline,
                merged,
                self.read_schema.clone(),
                scan_projection.clone(),
                as_of,
                target,
                out_schema,
            )?));
        }
        if !files.is_empty() {
            inputs.push(
                self.parquet_scan(state, &files, scan_projection, limit, incremental.is_some())
                    .await?,
            );
        }
        let plan = UnionExec::try_new(inputs)?;
        let Some((begin, end)) = incremental else {
            return Ok(plan);
        };
        let predicate = match &commits {
            Some(c) if c.is_empty() => lit(false),
            Some(c) => {
                col(COMMIT_TIME).in_list(c.iter().map(|t| lit(t.to_string())).collect(), false)
            }
            None => {
                let mut p = col(COMMIT_TIME).gt(lit(begin.to_string()));
                if let Some(end) = end {
                    p = p.and(col(COMMIT_TIME).lt_eq(lit(end.to_string())));
                }
                p
            }
        };
        let df_schema = DFSchema::try_from(plan.schema())?;
        let filter = Arc::new(FilterExec::try_new(
            state.create_physical_expr(predicate, &df_schema)?,
            plan,
        )?);
        if !added_commit_time {
            return Ok(filter);
        }
        let exprs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> =
            projected_schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (Arc::new(Column::new(f.name(), i)) as _, f.name().clone()))
                .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, filter)?))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use lake_table::{TableConfig, TableType, WriteOptions};

    use super::*;

    async fn count(ctx: &datafusion::prelude::SessionContext) -> i64 {
        let b = ctx
            .sql("SELECT count(*) FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        b[0].column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0)
    }

    #[tokio::test]
    async fn a_provider_sees_commits_made_after_it_was_created() {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let cfg = TableConfig::new(
            "t",
            TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        let table = Table::create(&uri, cfg).await.expect("create");
        table
            .write(vec![crate::test_rows(0..10, 1)], WriteOptions::default())
            .await
            .expect("write");
        let ctx = crate::session();
        let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
            .await
            .expect("provider");
        ctx.register_table("t", Arc::new(provider))
            .expect("register");
        assert_eq!(count(&ctx).await, 10);
        assert_eq!(count(&ctx).await, 10, "served from the cached listing");
        table
            .write(vec![crate::test_rows(10..25, 1)], WriteOptions::default())
            .await
            .expect("write");
        assert_eq!(
            count(&ctx).await,
            25,
            "a new commit invalidates the listing"
        );
    }
}
