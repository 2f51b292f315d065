//! Table functions for ad-hoc reads without DDL:
//! `lake_snapshot('uri')`, `lake_as_of('uri', 'instant or timestamp')`,
//! `lake_incremental('uri', 'begin' [, 'end'])` (the records written by commits in (begin, end], in
//! their latest state) and `lake_changes('uri', 'begin' [, 'end'])` (the change feed of the range).

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use crate::{QueryOptions, QueryType};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Snapshot,
    AsOf,
    Incremental,
    Changes,
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
    ] {
        ctx.register_udtf(name, Arc::new(LakeFunction { name, kind }));
    }
}
