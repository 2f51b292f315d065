//! Table functions for ad-hoc reads without DDL:
//! `lake_snapshot('uri')`, `lake_as_of('uri', 'instant or timestamp')`,
//! `lake_incremental('uri', 'begin' [, 'end'])` (the records written by commits in (begin, end], in
//! their latest state), `lake_changes('uri', 'begin' [, 'end'])` (the change feed of the range) and
//! `lake_timeline('uri')` (the active timeline's instants, with the write stats of completed
//! writes).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::{QueryOptions, QueryType};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Snapshot,
    AsOf,
    Incremental,
    Changes,
    Timeline,
}

#[derive(Debug)]
struct LakeFunction {
    name: &'static str,
    kind: Kind,
}

fn string_arg(name: &str, args: &[Expr], i: usize) -> Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) => match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Ok(Some(s.clone())),
            ScalarValue::Int64(Some(n)) => Ok(Some(n.to_string())),
            other => Err(DataFusionError::Plan(format!(
                "{name}: argument {} must be a string, not {other}",
                i + 1
            ))),
        },
        Some(other) => Err(DataFusionError::Plan(format!(
            "{name}: argument {} must be a literal, not {other}",
            i + 1
        ))),
    }
}

impl TableFunctionImpl for LakeFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let name = self.name;
        let uri = string_arg(name, exprs, 0)?
            .ok_or_else(|| DataFusionError::Plan(format!("{name}: missing table URI")))?;
        let second = string_arg(name, exprs, 1)?;
        let options = match self.kind {
            Kind::Timeline => {
                return tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(timeline_table(&uri))
                });
            }
            Kind::Snapshot => QueryOptions::default(),
            Kind::AsOf => QueryOptions {
                as_of: Some(
                    second
                        .ok_or_else(|| DataFusionError::Plan(format!("{name}: missing instant")))?,
                ),
                ..Default::default()
            },
            Kind::Incremental | Kind::Changes => QueryOptions {
                query_type: if matches!(self.kind, Kind::Changes) {
                    QueryType::Changes
                } else {
                    QueryType::Incremental
                },
                begin: Some(second.ok_or_else(|| {
                    DataFusionError::Plan(format!("{name}: missing begin instant"))
                })?),
                end: string_arg(name, exprs, 2)?,
                ..Default::default()
            },
        };
        // Table functions are planned synchronously; opening the table needs I/O.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(crate::open_provider(&uri, options))
        })
    }
}

/// Registers the table functions on a session.
pub(crate) fn register(ctx: &SessionContext) {
    for (name, kind) in [
        ("lake_snapshot", Kind::Snapshot),
        ("lake_as_of", Kind::AsOf),
        ("lake_incremental", Kind::Incremental),
        ("lake_changes", Kind::Changes),
        ("lake_timeline", Kind::Timeline),
    ] {
        ctx.register_udtf(name, Arc::new(LakeFunction { name, kind }));
    }
}

/// The instants of a table's active timeline, oldest first: `instant`, `action`, `state`,
/// `completion_time` (versions 8/9), and for completed writes `operation`, `partitions`, `files`,
/// `inserts`, `updates`, `deletes`, `bytes_written` and `checkpoint`.
async fn timeline_table(uri: &str) -> Result<Arc<dyn TableProvider>> {
    let ext = |e: lake_table::Error| DataFusionError::External(Box::new(e));
    let table = lake_table::Table::open(uri).await.map_err(ext)?;
    let timeline = table.timeline().await.map_err(ext)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("instant", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("completion_time", DataType::Utf8, true),
        Field::new("operation", DataType::Utf8, true),
        Field::new("partitions", DataType::Int64, true),
        Field::new("files", DataType::Int64, true),
        Field::new("inserts", DataType::Int64, true),
        Field::new("updates", DataType::Int64, true),
        Field::new("deletes", DataType::Int64, true),
        Field::new("bytes_written", DataType::Int64, true),
        Field::new("checkpoint", DataType::Utf8, true),
    ]));
    let (mut instant, mut action, mut state, mut completion) = (vec![], vec![], vec![], vec![]);
    let (mut op, mut parts, mut files, mut checkpoint) = (vec![], vec![], vec![], vec![]);
    let (mut ins, mut upd, mut del, mut bytes) = (vec![], vec![], vec![], vec![]);
    for i in timeline.instants() {
        instant.push(i.time.to_string());
        action.push(i.action.name().to_owned());
        state.push(i.state.to_string());
        completion.push(i.completion.map(|c| c.to_string()));
        let meta = if i.is_completed() && i.action.writes_data() {
            Some(
                timeline
                    .commit_metadata_cached(i)
                    .await
                    .map_err(|e| ext(e.into()))?,
            )
        } else {
            None
        };
        let sum = |f: fn(&lake_table::timeline::WriteStat) -> i64| {
            meta.as_ref().map(|m| m.write_stats().map(f).sum::<i64>())
        };
        op.push(meta.as_ref().and_then(|m| m.operation_type.clone()));
        parts.push(
            meta.as_ref()
                .map(|m| m.partition_to_write_stats.len() as i64),
        );
        files.push(meta.as_ref().map(|m| m.write_stats().count() as i64));
        ins.push(sum(|s| s.num_inserts));
        upd.push(sum(|s| s.num_update_writes));
        del.push(sum(|s| s.num_deletes));
        bytes.push(sum(|s| s.total_write_bytes));
        checkpoint.push(
            meta.as_ref()
                .and_then(|m| m.checkpoint().map(str::to_owned)),
        );
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(instant)),
        Arc::new(StringArray::from(action)),
        Arc::new(StringArray::from(state)),
        Arc::new(StringArray::from(completion)),
        Arc::new(StringArray::from(op)),
        Arc::new(Int64Array::from(parts)),
        Arc::new(Int64Array::from(files)),
        Arc::new(Int64Array::from(ins)),
        Arc::new(Int64Array::from(upd)),
        Arc::new(Int64Array::from(del)),
        Arc::new(Int64Array::from(bytes)),
        Arc::new(StringArray::from(checkpoint)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}
