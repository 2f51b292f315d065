//! DataFusion over lake (Hudi) tables: a [`HudiTableProvider`] serving snapshot, read-optimized,
//! incremental and time-travel queries, a [`ChangeFeedProvider`] serving the change feed, a [`HudiTableFactory`] for
//! `CREATE EXTERNAL TABLE … STORED AS HUDI`, table functions for ad-hoc reads, and [`session`], a
//! DataFusion session with all of them registered.

mod changes;
mod factory;
mod functions;
pub mod mor;
mod options;
mod partitions;
mod provider;

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use changes::ChangeFeedProvider;
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
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    state
        .table_factories_mut()
        .insert("HUDI".to_owned(), Arc::new(HudiTableFactory));
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
