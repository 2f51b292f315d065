//! The merge-on-read scan: an execution plan whose partitions each merge a share of the file slices
//! (base file ⋈ log blocks, see `lake_table::merge`), one slice at a time while the next is
//! fetched, so memory is bounded by a few file groups' projected columns.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use lake_table::Table;
use lake_table::merge::SliceMerge;
use lake_table::timeline::{InstantTime, Timeline};
use lake_table::view::FileSlice;

/// Reads merge-on-read file slices: each output partition merges its slices in turn.
#[derive(Debug)]
pub struct MergeOnReadExec {
    table: Table,
    timeline: Timeline,
    /// Slices per output partition.
    groups: Vec<Vec<FileSlice>>,
    /// The full read schema (meta columns included) every slice is aligned to.
    read_schema: SchemaRef,
    /// Columns of `read_schema` to output.
    projection: Option<Vec<usize>>,
    as_of: Option<InstantTime>,
    properties: Arc<PlanProperties>,
}

impl MergeOnReadExec {
    /// Plans a merged read of `slices` over `target` partitions: rows are merged in `read_schema`,
    /// projected, then converted to `out_schema` (same columns, e.g. with view types).
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        table: Table,
        timeline: Timeline,
        slices: Vec<FileSlice>,
        read_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        as_of: Option<InstantTime>,
        target: usize,
        out_schema: SchemaRef,
    ) -> Result<Self> {
        let n = target.max(1).min(slices.len().max(1));
        let mut groups: Vec<Vec<FileSlice>> = vec![Vec::new(); n];
        for (i, s) in slices.into_iter().enumerate() {
            groups[i % n].push(s);
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(out_schema),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            table,
            timeline,
            groups,
            read_schema,
            projection,
            as_of,
            properties,
        })
    }

    fn slices(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }
}

impl DisplayAs for MergeOnReadExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let logs: usize = self
            .groups
            .iter()
            .flatten()
            .map(|s| s.log_files.len())
            .sum();
        write!(
            f,
            "MergeOnReadExec: file_slices={}, log_files={}, partitions={}",
            self.slices(),
            logs,
            self.groups.len()
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .map(|i| self.read_schema.field(*i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MergeOnReadExec {
    fn name(&self) -> &str {
        "MergeOnReadExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let slices = self.groups.get(partition).cloned().unwrap_or_default();
        let table = self.table.clone();
        let timeline = self.timeline.clone();
        let schema = self.read_schema.clone();
        let projection = self.projection.clone();
        let as_of = self.as_of;
        let out_schema = self.properties.eq_properties.schema().clone();
        let adapter_schema = out_schema.clone();
        let plan = match SliceMerge::new(table.config(), &schema, projection.as_deref()) {
            Ok(p) => Arc::new(p),
            Err(e) => return Err(external(e)),
        };
        // The next slice's files are fetched while this one merges (up to three slices in memory
        // per partition: two fetching or merging, one being consumed); only the projected, key
        // and ordering columns are decoded.
        let stream = futures::stream::iter(slices)
            .map(move |slice| {
                let (table, timeline, plan, out) = (
                    table.clone(),
                    timeline.clone(),
                    plan.clone(),
                    out_schema.clone(),
                );
                async move {
                    let bytes = plan.fetch(&table, &slice).await.map_err(external)?;
                    tokio::task::spawn_blocking(move || {
                        plan.merge(bytes, &timeline, as_of)
                            .map_err(external)?
                            .into_iter()
                            .map(|b| lake_table::schema::align_batch(&b, &out).map_err(external))
                            .collect::<Result<Vec<_>>>()
                    })
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
                }
            })
            .buffered(2)
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            adapter_schema,
            stream,
        )))
    }
}

fn external(e: lake_table::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
