//! The change feed as a DataFusion table ([`ChangeFeedProvider`]): what `lake_changes(uri, begin
//! [, end])` and `STORED AS HUDI` tables with `hoodie.datasource.query.incremental.format = 'cdc'`
//! read. Each scan computes the feed over the range from the table's timeline at that moment.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use lake_table::Table;
use lake_table::changes::{ChangeQuery, change_schema};
use lake_table::timeline::InstantTime;
use lake_table::view::FileSystemView;

use crate::options::parse_time;
use crate::{QueryOptions, QueryType};

fn ext(e: lake_table::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A lake/Hudi table's change feed over (begin, end] as a DataFusion table: columns `op`, `ts_ms`,
/// `record_key`, `partition_path`, `before`, `after` (see [`lake_table::changes`]).
pub struct ChangeFeedProvider {
    table: Table,
    begin: InstantTime,
    end: Option<InstantTime>,
    net: bool,
    /// The table's read schema (meta columns included) when the provider was made; the images
    /// follow it.
    read_schema: arrow::datatypes::SchemaRef,
    schema: arrow::datatypes::SchemaRef,
    options: QueryOptions,
}

impl fmt::Debug for ChangeFeedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeedProvider")
            .field("table", &self.table.storage().uri())
            .field("begin", &self.begin)
            .field("end", &self.end)
            .field("net", &self.net)
            .finish()
    }
}

impl ChangeFeedProvider {
    /// Opens the table at `uri` for a change-feed query (`options.begin` is required).
    pub async fn try_new(uri: &str, options: &QueryOptions) -> Result<Self> {
        let table = Table::open(uri).await.map_err(ext)?;
        Self::try_new_with_table(table, options).await
    }

    /// Wraps an open table for a change-feed query.
    pub async fn try_new_with_table(table: Table, options: &QueryOptions) -> Result<Self> {
        if options.query_type != QueryType::Changes {
            return Err(DataFusionError::Plan(
                "a change-feed table needs the incremental query type in the cdc format".into(),
            ));
        }
        let begin = options.begin.as_deref().ok_or_else(|| {
            DataFusionError::Plan("a change-feed query needs a begin instant".into())
        })?;
        let begin = parse_time(begin).map_err(DataFusionError::Plan)?;
        let end = options
            .end
            .as_deref()
            .map(parse_time)
            .transpose()
            .map_err(DataFusionError::Plan)?;
        let timeline = table.timeline().await.map_err(ext)?;
        let slices = FileSystemView::load(&timeline, None, None)
            .await
            .map_err(ext)?
            .latest_slices();
        let read_schema = table
            .snapshot_schema(&timeline, &slices)
            .await
            .map_err(ext)?;
        let schema = change_schema(&read_schema);
        Ok(Self {
            table,
            begin,
            end,
            net: options.net,
            read_schema,
            schema,
            options: options.clone(),
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
}

#[async_trait]
impl TableProvider for ChangeFeedProvider {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let feed = self
            .table
            .changes(&ChangeQuery {
                begin: self.begin,
                end: self.end,
                net: self.net,
                schema: Some(self.read_schema.clone()),
                infer: false,
            })
            .await
            .map_err(ext)?;
        let exec = MemorySourceConfig::try_new_exec(
            &[feed.batches],
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}
