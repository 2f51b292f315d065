//! `CREATE EXTERNAL TABLE name STORED AS HUDI LOCATION 'uri' OPTIONS (...)`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::CreateExternalTable;

use crate::QueryOptions;

/// Creates [`crate::HudiTableProvider`]s (and [`crate::ChangeFeedProvider`]s for
/// `hoodie.datasource.query.incremental.format = 'cdc'`) for `STORED AS HUDI` tables; `OPTIONS` take
/// Hudi's query option names (`hoodie.datasource.query.type`,
/// `hoodie.datasource.read.begin.instanttime`, …).
#[derive(Debug, Default)]
pub struct HudiTableFactory;

#[async_trait]
impl TableProviderFactory for HudiTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let options = QueryOptions::from_map(&cmd.options).map_err(DataFusionError::Plan)?;
        let location = match cmd.locations.as_slice() {
            [one] => one,
            other => {
                return Err(DataFusionError::Plan(format!(
                    "a HUDI table has exactly one LOCATION, not {}",
                    other.len()
                )));
            }
        };
        crate::open_provider(location, options).await
    }
}
