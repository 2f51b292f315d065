//! The table handle: storage plus the parsed config, creation and opening, and the table schema.

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use lake_timeline::{Storage, Timeline};

use std::sync::Arc;

use crate::config::{PROPERTIES_PATH, TableConfig};
use crate::schema::arrow_schema_from_avro;
use crate::{Error, Result};

/// An open Hudi table.
#[derive(Clone, Debug)]
pub struct Table {
    storage: Storage,
    config: TableConfig,
}

impl Table {
    /// Creates a new table at `uri`; fails if one already exists there.
    pub async fn create(uri: &str, config: TableConfig) -> Result<Self> {
        if config.global_index && config.bucket_count.is_some() {
            return Err(Error::Config {
                path: PROPERTIES_PATH.into(),
                reason: "table-wide keys (the global index) need the simple index, not buckets"
                    .into(),
            });
        }
        let storage = Storage::try_from_uri(uri)?;
        if !storage
            .put_if_absent(PROPERTIES_PATH, Bytes::from(config.render()))
            .await?
        {
            return Err(Error::TableExists {
                uri: uri.to_owned(),
            });
        }
        Self::open_storage(storage).await
    }

    /// Opens the table at `uri`.
    pub async fn open(uri: &str) -> Result<Self> {
        Self::open_storage(Storage::try_from_uri(uri)?).await
    }

    /// Opens the table at `uri`, or `None` if there is no table there yet.
    pub async fn open_if_exists(uri: &str) -> Result<Option<Self>> {
        let storage = Storage::try_from_uri(uri)?;
        if !storage.exists(PROPERTIES_PATH).await? {
            return Ok(None);
        }
        Self::open_storage(storage).await.map(Some)
    }

    /// The table at `uri` described by the `hoodie.properties` text `properties`, without reading
    /// the store: a table handle another process sent along (see [`TableConfig::render`]).
    pub fn from_properties(uri: &str, properties: &str) -> Result<Self> {
        Ok(Self {
            storage: Storage::try_from_uri(uri)?,
            config: TableConfig::parse(properties)?,
        })
    }

    /// Opens the table in `storage`.
    pub async fn open_storage(storage: Storage) -> Result<Self> {
        let text = match storage.get_opt(PROPERTIES_PATH).await? {
            Some(b) => b,
            None => storage
                .get_opt(".hoodie/hoodie.properties.backup")
                .await?
                .ok_or_else(|| Error::Config {
                    path: storage.display(PROPERTIES_PATH),
                    reason: "no Hudi table here (hoodie.properties is missing)".into(),
                })?,
        };
        let text = String::from_utf8_lossy(&text);
        let config = TableConfig::parse(&text).map_err(|e| match e {
            Error::Config { reason, .. } => Error::Config {
                path: storage.display(PROPERTIES_PATH),
                reason,
            },
            other => other,
        })?;
        Ok(Self { storage, config })
    }

    /// The storage of the table.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The table config.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Loads the current timeline.
    pub async fn timeline(&self) -> Result<Timeline> {
        Ok(Timeline::load(&self.storage, self.config.layout()).await?)
    }

    /// The data schema (without meta columns) recorded by the latest completed write that carries
    /// one, or the create schema; `None` for a table that has never been written.
    pub async fn data_schema(&self, timeline: &Timeline) -> Result<Option<SchemaRef>> {
        if self.config.layout() == lake_timeline::Layout::V1 {
            let writes: Vec<_> = timeline.completed_writes().copied().collect();
            for inst in writes.iter().rev() {
                let meta = timeline.commit_metadata_cached(inst).await?;
                if let Some(s) = meta.schema() {
                    return Ok(Some(Arc::new(arrow_schema_from_avro(s)?)));
                }
            }
        }
        match self.config.raw.get("hoodie.table.create.schema") {
            Some(s) if !s.is_empty() => Ok(Some(Arc::new(arrow_schema_from_avro(s)?))),
            _ => Ok(None),
        }
    }
}
