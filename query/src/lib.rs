//! DataFusion over lake (Hudi) tables: a [`HudiTableProvider`] serving snapshot, read-optimized,
//! incremental and time-travel queries, a [`ChangeFeedProvider`] serving the change feed, a [`HudiTableFactory`] for
//! `CREATE EXTERNAL TABLE … STORED AS HUDI`, table functions for ad-hoc reads, [`session`], a
//! DataFusion session with all of them registered, and [`codec`], what a distributed engine needs
//! to run lake's plans in other processes.

mod changes;
pub mod codec;
mod factory;
mod functions;
pub mod mor;
mod options;
mod partitions;
mod provider;

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use changes::ChangeFeedProvider;
pub use codec::{LakeLogicalCodec, LakeObjectStores, LakePhysicalCodec, RemoteProvider};
pub use datafusion;
pub use factory::HudiTableFactory;
pub use options::{QueryOptions, QueryType, parse_time};
pub use provider::HudiTableProvider;

/// A DataFusion session with the `HUDI` table factory and the table functions `lake_snapshot(uri)`,
/// `lake_as_of(uri, instant)`, `lake_incremental(uri, begin[, end])` and
/// `lake_changes(uri, begin[, end])` registered.
pub fn session() -> SessionContext {
    session_with_config(SessionConfig::new().with_information_schema(true))
}

/// [`session`] with a given DataFusion config.
pub fn session_with_config(config: SessionConfig) -> SessionContext {
    session_from_state(session_state(config))
}

/// The session state [`session_with_config`] starts from: DataFusion's defaults, the `HUDI` table
/// factory, and object stores opened from table URLs on first use ([`LakeObjectStores`]). A
/// distributed engine upgrades it (planner, codecs) before [`session_from_state`].
pub fn session_state(config: SessionConfig) -> SessionState {
    let builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    // Building a runtime only fails where DataFusion's own default would (no temporary folder
    // is made until a query spills).
    let builder = match RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(LakeObjectStores::default()))
        .build_arc()
    {
        Ok(runtime) => builder.with_runtime_env(runtime),
        Err(_) => builder,
    };
    let mut state = builder.build();
    state
        .table_factories_mut()
        .insert("HUDI".to_owned(), Arc::new(HudiTableFactory));
    state
}

/// A session over `state` (see [`session_state`]) with lake's table functions registered.
pub fn session_from_state(state: SessionState) -> SessionContext {
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    ctx
}

/// The provider for a query: the change feed for [`QueryType::Changes`], the table otherwise.
pub async fn open_provider(
    uri: &str,
    options: QueryOptions,
) -> datafusion::common::Result<Arc<dyn datafusion::catalog::TableProvider>> {
    Ok(if options.query_type == QueryType::Changes {
        Arc::new(ChangeFeedProvider::try_new(uri, &options).await?)
    } else {
        Arc::new(HudiTableProvider::try_new(uri, options).await?)
    })
}

/// Rows `(id, v)` of `ids`, all with `v`, as an upsert batch (unit tests).
#[cfg(test)]
pub(crate) fn test_rows(ids: std::ops::Range<i64>, v: i64) -> lake_table::ChangeBatch {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let ids: Vec<i64> = ids.collect();
    let vs = vec![v; ids.len()];
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(vs)),
        ],
    );
    lake_table::ChangeBatch::upserts(batch.expect("test batch"))
}
