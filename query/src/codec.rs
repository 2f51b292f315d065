//! What lets a distributed DataFusion engine (Ballista: a client, a scheduler, executors) plan and
//! run queries over lake tables in other processes.
//!
//! - [`LakeLogicalCodec`] carries a [`HudiTableProvider`] or [`ChangeFeedProvider`] as its table URI
//!   and query options. The receiver (the scheduler) gets a [`RemoteProvider`], which opens the
//!   table when the scan is planned, so the query reads the table as it is then, as a local query
//!   does.
//! - [`LakePhysicalCodec`] carries a [`MergeOnReadExec`] with the timeline it was planned against,
//!   its schemas and the table's properties; its file slices are its input, an in-memory scan
//!   DataFusion serializes (and a distributed engine restricts to a task's partitions): an executor
//!   merges exactly the slices planned, with no listing and no read of `hoodie.properties`. DataFusion's Parquet scans need no codec of lake's; executors resolve
//!   their store URLs through [`LakeObjectStores`].
//!
//! In-memory tables (`lake_timeline(uri)`'s rows, tables a session made) travel with their rows.
//!
//! Each payload is the tag `LAKE` + a kind byte, then JSON (or an Arrow IPC stream). Payloads without the tag go to the
//! fallback codec (Ballista's, which carries its shuffle plans), and so does everything else.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::{MemTable, TableType};
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::logical_expr::{
    AggregateUDF, Expr, Extension, LogicalPlan, ScalarUDF, TableProviderFilterPushDown, WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::{DefaultLogicalExtensionCodec, LogicalExtensionCodec};
use datafusion_proto::physical_plan::{
    DefaultPhysicalExtensionCodec, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use lake_table::Table;
use lake_table::timeline::{InstantTime, Storage, Timeline};
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::mor::MergeOnReadExec;
use crate::{ChangeFeedProvider, HudiTableProvider, QueryOptions, QueryType};

/// The first bytes of every payload lake's codecs write (JSON follows).
const TAG: &[u8] = b"LAKE\x01";
/// The first bytes of an in-memory table (an Arrow IPC stream follows).
const TAG_MEMORY: &[u8] = b"LAKE\x02";

fn corrupt(what: &str, reason: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("a lake {what} in a query plan: {reason}"))
}

fn write_tagged(buf: &mut Vec<u8>, value: &impl Serialize) -> Result<()> {
    buf.extend_from_slice(TAG);
    serde_json::to_writer(&mut *buf, value).map_err(|e| corrupt("plan", e))
}

/// The table's URI as another process (another working folder) opens it: local paths made
/// absolute `file://` URIs, others unchanged.
fn portable_uri(storage: &Storage) -> String {
    let uri = storage.uri();
    if uri.contains("://") && !uri.starts_with("file://") {
        return uri.to_owned();
    }
    format!("file:///{}", storage.root())
}

/// Which provider a [`ProviderWire`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProviderKind {
    Table,
    Changes,
}

/// A provider on the wire: where the table is and how it is queried.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ProviderWire {
    kind: ProviderKind,
    uri: String,
    options: BTreeMap<String, String>,
}

impl ProviderWire {
    fn new(kind: ProviderKind, table: &Table, options: &QueryOptions) -> Self {
        Self {
            kind,
            uri: portable_uri(table.storage()),
            options: options.to_map().into_iter().collect(),
        }
    }

    fn options(&self) -> Result<QueryOptions> {
        QueryOptions::from_map(&self.options.clone().into_iter().collect())
            .map_err(|e| corrupt("table", e))
    }
}

fn parse_instant(s: &str) -> Result<InstantTime> {
    s.parse::<InstantTime>()
        .map_err(|e| corrupt("instant", format!("{s:?}: {e}")))
}

/// A [`MergeOnReadExec`] on the wire (its input, the slices, travels as its child).
#[derive(Debug, Serialize, Deserialize)]
struct MergeWire {
    uri: String,
    /// The table's `hoodie.properties`.
    properties: String,
    /// The timeline's instant file names ([`Timeline::file_names`]).
    timeline: Vec<String>,
    /// Slices and log files planned.
    counts: (usize, usize),
    /// Arrow IPC stream bytes holding only the schema.
    read_schema: Vec<u8>,
    out_schema: Vec<u8>,
    projection: Option<Vec<usize>>,
    as_of: Option<String>,
}

fn schema_bytes(schema: &SchemaRef) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

fn schema_from(bytes: &[u8]) -> Result<SchemaRef> {
    let r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(r.schema())
}

fn encode_merge(exec: &MergeOnReadExec) -> Result<MergeWire> {
    let p = exec.parts();
    Ok(MergeWire {
        uri: portable_uri(p.table.storage()),
        properties: p.table.config().render_as_read(),
        timeline: p.timeline.file_names(),
        counts: p.counts,
        read_schema: schema_bytes(p.read_schema)?,
        out_schema: schema_bytes(p.out_schema)?,
        projection: p.projection.map(<[usize]>::to_vec),
        as_of: p.as_of.map(|t| t.to_string()),
    })
}

fn decode_merge(wire: MergeWire, inputs: &[Arc<dyn ExecutionPlan>]) -> Result<MergeOnReadExec> {
    let [input] = inputs else {
        return Err(corrupt(
            "merge-on-read scan",
            format!("{} inputs instead of one", inputs.len()),
        ));
    };
    let table = Table::from_properties(&wire.uri, &wire.properties)
        .map_err(|e| corrupt("merge-on-read scan", e))?;
    let timeline = Timeline::from_file_names(
        table.storage(),
        table.config().layout(),
        wire.timeline.iter().map(String::as_str),
    );
    let read_schema = schema_from(&wire.read_schema)?;
    if let Some(bad) = wire
        .projection
        .iter()
        .flatten()
        .find(|i| **i >= read_schema.fields().len())
    {
        return Err(corrupt(
            "merge-on-read scan",
            format!("projected column {bad} is not in its schema"),
        ));
    }
    MergeOnReadExec::from_parts(
        table,
        timeline,
        input.clone(),
        wire.counts,
        read_schema,
        schema_from(&wire.out_schema)?,
        wire.projection,
        wire.as_of.as_deref().map(parse_instant).transpose()?,
    )
}

/// An in-memory table (`lake_timeline(uri)`, tables a session made) travels with its rows.
fn encode_memory(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(TAG_MEMORY);
    let schema = table.schema();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut *buf, &schema)?;
    for part in &table.batches {
        let batches = part.try_read().map_err(|_| {
            DataFusionError::Execution("an in-memory table is being written to".into())
        })?;
        for b in batches.iter() {
            w.write(b)?;
        }
    }
    w.finish()?;
    Ok(())
}

fn decode_memory(ipc: &[u8], schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// The function (UDF, UDAF, UDWF) methods both codecs leave to their fallback.
macro_rules! delegate_functions {
    () => {
        fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
            self.fallback.try_decode_udf(name, buf)
        }

        fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.fallback.try_encode_udf(node, buf)
        }

        fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
            self.fallback.try_decode_udaf(name, buf)
        }

        fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.fallback.try_encode_udaf(node, buf)
        }

        fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
            self.fallback.try_decode_udwf(name, buf)
        }

        fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
            self.fallback.try_encode_udwf(node, buf)
        }
    };
}

/// Carries lake's table providers (see the module docs); everything else goes to `fallback`.
#[derive(Debug)]
pub struct LakeLogicalCodec {
    fallback: Arc<dyn LogicalExtensionCodec>,
}

impl LakeLogicalCodec {
    /// lake's providers, and `fallback` for the rest (Ballista's codec in a Ballista cluster).
    pub fn new(fallback: Arc<dyn LogicalExtensionCodec>) -> Self {
        Self { fallback }
    }
}

impl Default for LakeLogicalCodec {
    fn default() -> Self {
        Self::new(Arc::new(DefaultLogicalExtensionCodec {}))
    }
}

impl LogicalExtensionCodec for LakeLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.fallback.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.fallback.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(ipc) = buf.strip_prefix(TAG_MEMORY) {
            return decode_memory(ipc, schema);
        }
        let Some(json) = buf.strip_prefix(TAG) else {
            return self
                .fallback
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let wire: ProviderWire = serde_json::from_slice(json).map_err(|e| corrupt("table", e))?;
        Ok(Arc::new(RemoteProvider::try_new(wire, schema)?))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let wire = if let Some(p) = node.downcast_ref::<HudiTableProvider>() {
            ProviderWire::new(ProviderKind::Table, p.table(), &p.pinned_options())
        } else if let Some(p) = node.downcast_ref::<ChangeFeedProvider>() {
            ProviderWire::new(ProviderKind::Changes, p.table(), p.options())
        } else if let Some(p) = node.downcast_ref::<RemoteProvider>() {
            p.wire.clone()
        } else if let Some(m) = node.downcast_ref::<MemTable>() {
            return encode_memory(m, buf);
        } else {
            return self
                .fallback
                .try_encode_table_provider(table_ref, node, buf);
        };
        write_tagged(buf, &wire)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.fallback.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.fallback.try_encode_file_format(buf, node)
    }

    delegate_functions!();
}

/// Carries [`MergeOnReadExec`] (see the module docs); everything else goes to `fallback`.
#[derive(Debug)]
pub struct LakePhysicalCodec {
    fallback: Arc<dyn PhysicalExtensionCodec>,
}

impl LakePhysicalCodec {
    /// lake's plans, and `fallback` for the rest (Ballista's codec in a Ballista cluster).
    pub fn new(fallback: Arc<dyn PhysicalExtensionCodec>) -> Self {
        Self { fallback }
    }
}

impl Default for LakePhysicalCodec {
    fn default() -> Self {
        Self::new(Arc::new(DefaultPhysicalExtensionCodec {}))
    }
}

impl PhysicalExtensionCodec for LakePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(TAG) else {
            return self.fallback.try_decode(buf, inputs, ctx, proto_converter);
        };
        let wire: MergeWire =
            serde_json::from_slice(json).map_err(|e| corrupt("merge-on-read scan", e))?;
        Ok(Arc::new(decode_merge(wire, inputs)?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<MergeOnReadExec>() {
            Some(exec) => write_tagged(buf, &encode_merge(exec)?),
            None => self.fallback.try_encode(node, buf, proto_converter),
        }
    }

    delegate_functions!();
}

/// A lake provider received from another process: the table and options it names are opened
/// when the first scan is planned, then that provider plans every scan. Its schema is the one the
/// sender planned with; a table whose schema changed in between is an error, not a different
/// answer.
#[derive(Debug)]
pub struct RemoteProvider {
    wire: ProviderWire,
    options: QueryOptions,
    schema: SchemaRef,
    opened: tokio::sync::OnceCell<Arc<dyn TableProvider>>,
}

impl RemoteProvider {
    fn try_new(wire: ProviderWire, schema: SchemaRef) -> Result<Self> {
        let options = wire.options()?;
        let kind = if options.query_type == QueryType::Changes {
            ProviderKind::Changes
        } else {
            ProviderKind::Table
        };
        if kind != wire.kind {
            return Err(corrupt("table", "its kind does not match its options"));
        }
        Ok(Self {
            wire,
            options,
            schema,
            opened: tokio::sync::OnceCell::new(),
        })
    }

    /// The table URI.
    pub fn uri(&self) -> &str {
        &self.wire.uri
    }

    async fn open(&self) -> Result<&Arc<dyn TableProvider>> {
        self.opened
            .get_or_try_init(|| async {
                let p = crate::open_provider(&self.wire.uri, self.options.clone()).await?;
                let (have, want) = (p.schema(), &self.schema);
                let same = have.fields().len() == want.fields().len()
                    && have
                        .fields()
                        .iter()
                        .zip(want.fields())
                        .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
                if !same {
                    return Err(DataFusionError::Plan(format!(
                        "the table at {} changed its schema while the query was planned; run \
                         the query again",
                        self.wire.uri
                    )));
                }
                Ok(p)
            })
            .await
    }
}

#[async_trait]
impl TableProvider for RemoteProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // As the providers it opens: a table prunes with every filter inexactly, a change feed
        // takes none.
        let how = match self.wire.kind {
            ProviderKind::Table => TableProviderFilterPushDown::Inexact,
            ProviderKind::Changes => TableProviderFilterPushDown::Unsupported,
        };
        Ok(vec![how; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.open()
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// An object-store registry that opens the store of a lake table URL on first use (`s3://bucket`
/// configured from the `AWS_*` environment, as lake opens tables; `file://`), so a process that
/// receives a plan can read the files it names.
#[derive(Debug, Default)]
pub struct LakeObjectStores {
    inner: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for LakeObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let (scheme, bucket) = (url.scheme(), url.host_str().unwrap_or_default());
        if !matches!(scheme, "s3" | "s3a") || bucket.is_empty() {
            return self.inner.get_store(url);
        }
        let storage = Storage::try_from_uri(&format!("s3://{bucket}"))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let store = storage.object_store().clone();
        self.inner.register_store(url, store.clone());
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
    use futures::TryStreamExt;
    use lake_table::{TableConfig, WriteOptions};

    use super::*;

    async fn sorted(plan: Arc<dyn ExecutionPlan>) -> Vec<String> {
        let ctx = crate::session();
        let mut out = Vec::new();
        for p in 0..plan.properties().output_partitioning().partition_count() {
            let batches: Vec<RecordBatch> = plan
                .execute(p, ctx.task_ctx())
                .expect("execute")
                .try_collect()
                .await
                .expect("run");
            for b in &batches {
                let col = |i: usize| {
                    b.column(i)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .expect("int64 column")
                        .clone()
                };
                let (ids, vs) = (col(0), col(1));
                out.extend((0..b.num_rows()).map(|r| format!("{},{}", ids.value(r), vs.value(r))));
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_merge_on_read_scan_round_trips_and_reads_the_same_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let cfg = TableConfig::new(
            "t",
            lake_table::TableType::MergeOnRead,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            Some(2),
        )
        .expect("config");
        let table = Table::create(&uri, cfg).await.expect("create");
        table
            .write(vec![crate::test_rows(0..20, 1)], WriteOptions::default())
            .await
            .expect("write");
        table
            .write(vec![crate::test_rows(5..10, 2)], WriteOptions::default())
            .await
            .expect("write");
        let ctx = crate::session();
        let provider = HudiTableProvider::try_new(&uri, QueryOptions::default())
            .await
            .expect("provider");
        let scan = provider
            .scan(&ctx.state(), Some(&vec![5, 6]), &[], None)
            .await
            .expect("scan");
        // The merge is the scan, or an input of the union it plans.
        let merge = if scan.is::<MergeOnReadExec>() {
            scan
        } else {
            scan.children()
                .into_iter()
                .find(|c| c.is::<MergeOnReadExec>())
                .cloned()
                .expect("a merge-on-read scan")
        };
        let codec = LakePhysicalCodec::default();
        let mut buf = Vec::new();
        codec
            .try_encode(merge.clone(), &mut buf, &DefaultPhysicalProtoConverter {})
            .expect("encode");
        assert!(buf.starts_with(TAG));
        let input = merge.children()[0].clone();
        let back = codec
            .try_decode(
                &buf,
                std::slice::from_ref(&input),
                &ctx.task_ctx(),
                &DefaultPhysicalProtoConverter {},
            )
            .expect("decode");
        let (a, b) = (
            merge
                .downcast_ref::<MergeOnReadExec>()
                .expect("merge")
                .parts(),
            back.downcast_ref::<MergeOnReadExec>()
                .expect("merge")
                .parts(),
        );
        assert_eq!(a.table.config(), b.table.config());
        assert_eq!(a.timeline.instants(), b.timeline.instants());
        assert_eq!(a.counts, b.counts);
        assert_eq!(a.read_schema, b.read_schema);
        assert_eq!(a.out_schema, b.out_schema);
        assert_eq!(a.projection, b.projection);
        let want = sorted(merge.clone()).await;
        assert_eq!(want.len(), 20);
        assert_eq!(
            want.iter().filter(|r| r.ends_with(",2")).count(),
            5,
            "{want:?}"
        );
        assert_eq!(sorted(back).await, want);

        // A task given some of the partitions gets the input restricted to them (as a distributed
        // engine restricts in-memory scans) and merges exactly their slices: every row once.
        let parts = input.properties().output_partitioning().partition_count();
        assert!(parts > 1, "{parts} partitions");
        let mut pieces = Vec::new();
        for p in 0..parts {
            let batches: Vec<RecordBatch> = input
                .execute(p, ctx.task_ctx())
                .expect("input")
                .try_collect()
                .await
                .expect("slices");
            let only = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[batches],
                input.schema(),
                None,
            )
            .expect("restricted input");
            let task =
                datafusion::physical_plan::replace_children_if_necessary(merge.clone(), vec![only])
                    .expect("task");
            assert_eq!(task.properties().output_partitioning().partition_count(), 1);
            pieces.extend(sorted(task).await);
        }
        pieces.sort();
        assert_eq!(pieces, want);
    }

    #[tokio::test]
    async fn a_provider_travels_as_its_uri_and_options() {
        let dir = tempfile::tempdir().expect("tmp");
        let uri = dir.path().join("t").display().to_string();
        let cfg = TableConfig::new(
            "t",
            lake_table::TableType::CopyOnWrite,
            vec!["id".into()],
            vec![],
            Some("v".into()),
            None,
        )
        .expect("config");
        let table = Table::create(&uri, cfg).await.expect("create");
        table
            .write(vec![crate::test_rows(0..7, 1)], WriteOptions::default())
            .await
            .expect("write");
        let options = QueryOptions {
            query_type: QueryType::ReadOptimized,
            ..QueryOptions::default()
        };
        let provider: Arc<dyn TableProvider> = Arc::new(
            HudiTableProvider::try_new(&uri, options.clone())
                .await
                .expect("provider"),
        );
        let codec = LakeLogicalCodec::default();
        let ctx = crate::session();
        let name = TableReference::bare("t");
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&name, provider.clone(), &mut buf)
            .expect("encode");
        let back = codec
            .try_decode_table_provider(&buf, &name, provider.schema(), &ctx.task_ctx())
            .expect("decode");
        let remote = back.downcast_ref::<RemoteProvider>().expect("remote");
        assert_eq!(remote.options, options);
        assert_eq!(
            remote.uri(),
            format!("file://{}", dir.path().join("t").display())
        );
        ctx.register_table("t", back).expect("register");
        let n = ctx
            .sql("SELECT count(*) FROM t")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let n = n[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("count")
            .value(0);
        assert_eq!(n, 7);
        // A schema that is not the table's is refused when the scan is planned.
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let wrong = codec
            .try_decode_table_provider(&buf, &name, other, &ctx.task_ctx())
            .expect("decode");
        let err = wrong
            .scan(&ctx.state(), None, &[], None)
            .await
            .expect_err("schema changed");
        assert!(err.to_string().contains("changed its schema"), "{err}");
        // Payloads that are not lake's go to the fallback codec.
        assert!(
            codec
                .try_decode_table_provider(b"other", &name, provider.schema(), &ctx.task_ctx())
                .is_err()
        );
    }
}
