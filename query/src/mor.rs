//! The merge-on-read scan: an execution plan whose partitions each merge a share of the file slices
//! (base file ⋈ log blocks, see `lake_table::merge`), one slice at a time while the next is
//! fetched, so memory is bounded by a few file groups' projected columns.
//!
//! The slices are the plan's input, not its state: an in-memory scan whose partition `i` holds the
//! slices output partition `i` merges (one JSON text per slice). A distributed engine that hands a
//! task a subset of the partitions restricts that input as it restricts any in-memory scan, and the
//! merge follows — each slice is merged by exactly one task.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
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
use lake_table::layout::{BaseFile, LogFile};
use lake_table::merge::SliceMerge;
use lake_table::timeline::{InstantTime, Timeline};
use lake_table::view::FileSlice;
use serde::{Deserialize, Serialize};

/// A file slice as JSON: file names and sizes (the names carry ids, tokens and instants).
#[derive(Debug, Serialize, Deserialize)]
struct SliceText {
    partition: String,
    file_id: String,
    base_instant: String,
    base: Option<(String, u64)>,
    logs: Vec<(String, u64)>,
}

fn slice_text(s: &FileSlice) -> Result<String> {
    serde_json::to_string(&SliceText {
        partition: s.partition.clone(),
        file_id: s.file_id.clone(),
        base_instant: s.base_instant.to_string(),
        base: s.base_file.as_ref().map(|b| (b.name.clone(), b.size)),
        logs: s
            .log_files
            .iter()
            .map(|l| (l.name.clone(), l.size))
            .collect(),
    })
    .map_err(|e| DataFusionError::Internal(format!("encoding a file slice: {e}")))
}

fn slice_from_text(text: &str) -> Result<FileSlice> {
    let bad =
        |reason: String| DataFusionError::Internal(format!("a file slice in a plan: {reason}"));
    let t: SliceText = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let not_hudi = |name: &str| bad(format!("{name:?} is not a Hudi file name"));
    let base_file = match &t.base {
        Some((name, size)) => {
            Some(BaseFile::parse(&t.partition, name, *size).ok_or_else(|| not_hudi(name))?)
        }
        None => None,
    };
    let log_files = t
        .logs
        .iter()
        .map(|(name, size)| LogFile::parse(&t.partition, name, *size).ok_or_else(|| not_hudi(name)))
        .collect::<Result<Vec<_>>>()?;
    Ok(FileSlice {
        base_instant: t
            .base_instant
            .parse()
            .map_err(|e| bad(format!("{:?}: {e}", t.base_instant)))?,
        partition: t.partition,
        file_id: t.file_id,
        base_file,
        log_files,
        cdc_files: Vec::new(),
    })
}

/// The schema of a merge's input: one slice per row, as JSON text.
fn slices_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "slice",
        DataType::Utf8,
        false,
    )]))
}

/// The slices of one input batch.
fn slices_of(batch: &RecordBatch) -> Result<Vec<FileSlice>> {
    let texts = batch
        .columns()
        .first()
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| DataFusionError::Internal("the slices of a merge are not text".into()))?;
    (0..texts.len())
        .map(|i| slice_from_text(texts.value(i)))
        .collect()
}

/// Reads merge-on-read file slices: each output partition merges the slices of its input
/// partition in turn.
#[derive(Debug)]
pub struct MergeOnReadExec {
    table: Table,
    timeline: Timeline,
    /// The slices, partition `i` for output partition `i` (see the module docs).
    input: Arc<dyn ExecutionPlan>,
    /// Slices and log files planned (for display).
    counts: (usize, usize),
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
        let counts = (slices.len(), slices.iter().map(|s| s.log_files.len()).sum());
        let mut groups: Vec<Vec<String>> = vec![Vec::new(); n];
        for (i, s) in slices.iter().enumerate() {
            groups[i % n].push(slice_text(s)?);
        }
        let text_schema = Arc::new(Schema::new(vec![Field::new(
            "slice",
            DataType::Utf8,
            false,
        )]));
        let partitions = groups
            .into_iter()
            .map(|g| {
                let batch = RecordBatch::try_new(
                    text_schema.clone(),
                    vec![Arc::new(StringArray::from(g))],
                )?;
                Ok(vec![batch])
            })
            .collect::<Result<Vec<_>>>()?;
        let input: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_exec(&partitions, text_schema, None)?;
        Self::from_parts(
            table,
            timeline,
            input,
            counts,
            read_schema,
            out_schema,
            projection,
            as_of,
        )
    }

    /// The plan's own state, for [`crate::codec`] (the input travels as the plan's child).
    pub(crate) fn parts(&self) -> MergeParts<'_> {
        MergeParts {
            table: &self.table,
            timeline: &self.timeline,
            counts: self.counts,
            read_schema: &self.read_schema,
            out_schema: self.properties.eq_properties.schema(),
            projection: self.projection.as_deref(),
            as_of: self.as_of,
        }
    }

    /// A plan over `input` (see the module docs) with the state [`MergeOnReadExec::parts`] gave.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        table: Table,
        timeline: Timeline,
        input: Arc<dyn ExecutionPlan>,
        counts: (usize, usize),
        read_schema: SchemaRef,
        out_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        as_of: Option<InstantTime>,
    ) -> Result<Self> {
        if input.schema().fields() != slices_schema().fields() {
            return Err(DataFusionError::Internal(format!(
                "a merge-on-read scan over an input that is not its slices: {}",
                input.schema()
            )));
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(out_schema),
            Partitioning::UnknownPartitioning(
                input.properties().output_partitioning().partition_count(),
            ),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self {
            table,
            timeline,
            input,
            counts,
            read_schema,
            projection,
            as_of,
            properties,
        })
    }
}

/// Borrowed state of a [`MergeOnReadExec`] (see [`MergeOnReadExec::parts`]).
pub(crate) struct MergeParts<'a> {
    pub table: &'a Table,
    pub timeline: &'a Timeline,
    pub counts: (usize, usize),
    pub read_schema: &'a SchemaRef,
    pub out_schema: &'a SchemaRef,
    pub projection: Option<&'a [usize]>,
    pub as_of: Option<InstantTime>,
}

impl DisplayAs for MergeOnReadExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "MergeOnReadExec: file_slices={}, log_files={}, partitions={}",
            self.counts.0,
            self.counts.1,
            self.properties.output_partitioning().partition_count()
        )?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .filter_map(|i| self.read_schema.fields().get(*i))
                .map(|f| f.name().as_str())
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
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Partition `i` of the input is what output partition `i` merges: never repartition it.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("MergeOnReadExec takes one input, not {}", c.len()))
        })?;
        Ok(Arc::new(Self::from_parts(
            self.table.clone(),
            self.timeline.clone(),
            input,
            self.counts,
            self.read_schema.clone(),
            self.properties.eq_properties.schema().clone(),
            self.projection.clone(),
            self.as_of,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let slices = self
            .input
            .execute(partition, context)?
            .map(|batch| slices_of(&batch?))
            .map_ok(|slices| futures::stream::iter(slices.into_iter().map(Ok)))
            .try_flatten();
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
        let stream = slices
            .map(move |slice: Result<FileSlice>| {
                let (table, timeline, plan, out) = (
                    table.clone(),
                    timeline.clone(),
                    plan.clone(),
                    out_schema.clone(),
                );
                async move {
                    let slice = slice?;
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
