//! Storage: one object store plus the table's root path. Every byte lake reads or writes goes through
//! here; paths given to it are relative to the table root and `/`-separated.
//!
//! URIs: `file:///abs/path` or a plain path (local folder), `s3://bucket/prefix` (configured from the
//! standard `AWS_*` environment variables, so MinIO and other S3-compatible servers work), and
//! `memory://name` (an in-process store shared by every open of the same name, for unit tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::{Error, Result};

/// An object store and the root path of one table inside it.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    uri: String,
    base_url: String,
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl Storage {
    /// Wraps an object store with a root path.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, uri: impl Into<String>) -> Self {
        let uri = uri.into();
        let base_url = match uri.split_once("://") {
            Some((scheme, rest)) if scheme != "file" => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            }
            _ => "file:///".to_owned(),
        };
        Self {
            store,
            root,
            uri,
            base_url,
        }
    }

    /// The URL of the object store itself (`file:///`, `s3://bucket`, `memory://name`), under which
    /// [`Storage::path`]s are absolute; query engines register the store under it.
    pub fn object_store_url(&self) -> &str {
        &self.base_url
    }

    /// Opens the store a table URI names (see the module docs for the accepted forms).
    pub fn try_from_uri(uri: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = uri
            .strip_prefix("s3://")
            .or_else(|| uri.strip_prefix("s3a://"))
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name"));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map_err(|e| invalid(&e.to_string()))?;
            let root =
                Path::parse(prefix.trim_end_matches('/')).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self::new(Arc::new(store), root, uri));
        }
        if let Some(name) = uri.strip_prefix("memory://") {
            let store = memory_stores()
                .lock()
                .map_err(|_| invalid("memory store registry poisoned"))?
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            return Ok(Self::new(store, Path::default(), uri));
        }
        let local = match uri.strip_prefix("file://") {
            Some(p) => p,
            None if uri.contains("://") => return Err(invalid("unsupported scheme")),
            None => uri,
        };
        if local.is_empty() {
            return Err(invalid("empty path"));
        }
        let abs = std::path::absolute(local).map_err(|e| invalid(&e.to_string()))?;
        let root = Path::from_absolute_path(&abs).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self::new(Arc::new(LocalFileSystem::new()), root, uri))
    }

    /// The URI this storage was opened from.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The table root inside the object store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute object path of a root-relative path.
    pub fn path(&self, rel: &str) -> Path {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |acc, part| acc.clone().join(part))
    }

    /// The root-relative form of an absolute object path.
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.root) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    fn err(&self, rel: &str, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                path: self.display(rel),
            },
            source => Error::Storage {
                path: self.display(rel),
                source,
            },
        }
    }

    /// A human-readable location of a root-relative path, for messages.
    pub fn display(&self, rel: &str) -> String {
        format!("{}/{}", self.uri.trim_end_matches('/'), rel)
    }

    /// Reads a whole file.
    pub async fn get(&self, rel: &str) -> Result<Bytes> {
        let res = self
            .store
            .get(&self.path(rel))
            .await
            .map_err(|e| self.err(rel, e))?;
        res.bytes().await.map_err(|e| self.err(rel, e))
    }

    /// Reads a whole file, or `None` if it does not exist.
    pub async fn get_opt(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.get(rel).await {
            Ok(b) => Ok(Some(b)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a whole file, replacing any previous content.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err(rel, e))?;
        Ok(())
    }

    /// Creates a file only if it does not exist yet: `Ok(false)` when it already existed.
    /// This is the atomic publish primitive of the timeline.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Whether a file exists.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        match self.store.head(&self.path(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// The size of a file in bytes.
    pub async fn head_size(&self, rel: &str) -> Result<u64> {
        self.store
            .head(&self.path(rel))
            .await
            .map(|m| m.size)
            .map_err(|e| self.err(rel, e))
    }

    /// Deletes a file; deleting a missing file is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Lists one directory level: the files directly in `rel` and the names of its sub-directories.
    pub async fn list_dir(&self, rel: &str) -> Result<(Vec<ObjectMeta>, Vec<String>)> {
        let prefix = self.path(rel);
        let res = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| self.err(rel, e))?;
        let dirs = res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        Ok((res.objects, dirs))
    }

    /// Lists the files below `rel` (recursively) whose path sorts after `rel/<after>`, in no
    /// particular order (S3's `start-after`).
    pub async fn list_after(&self, rel: &str, after: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = self.path(rel);
        let offset = self.path(&format!("{rel}/{after}"));
        self.store
            .list_with_offset(Some(&prefix), &offset)
            .try_collect()
            .await
            .map_err(|e| self.err(rel, e))
    }

    /// Lists every file below `rel`, recursively.
    pub async fn list_recursive(&self, rel: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = self.path(rel);
        self.store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(rel, e))
    }
}

/// How often and how long an S3 request is retried (transport errors, 5xx, throttling) before its
/// error surfaces: object_store's defaults (10 retries within 3 minutes, exponential back-off), or
/// `LAKE_S3_MAX_RETRIES` and `LAKE_S3_RETRY_TIMEOUT_SECS`.
fn retry_config() -> object_store::RetryConfig {
    let mut c = object_store::RetryConfig::default();
    let number = |key: &str| {
        std::env::var(key)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(n) = number("LAKE_S3_MAX_RETRIES") {
        c.max_retries = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(secs) = number("LAKE_S3_RETRY_TIMEOUT_SECS") {
        c.retry_timeout = std::time::Duration::from_secs(secs);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_if_absent_has_exactly_one_winner() {
        let s = Storage::try_from_uri("memory://put_if_absent").expect("memory store");
        let (a, b) = tokio::join!(
            s.put_if_absent("t/x", Bytes::from_static(b"a")),
            s.put_if_absent("t/x", Bytes::from_static(b"b"))
        );
        assert_eq!(
            [a.expect("a"), b.expect("b")]
                .iter()
                .filter(|w| **w)
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn local_paths_and_file_uris_address_the_same_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = Storage::try_from_uri(dir.path().to_str().expect("utf8")).expect("plain");
        let uri = format!("file://{}", dir.path().display());
        let url = Storage::try_from_uri(&uri).expect("file uri");
        plain
            .put("a/b.txt", Bytes::from_static(b"hi"))
            .await
            .expect("put");
        assert_eq!(
            url.get("a/b.txt").await.expect("get"),
            Bytes::from_static(b"hi")
        );
        let (files, dirs) = url.list_dir("").await.expect("list");
        assert!(files.is_empty());
        assert_eq!(dirs, ["a"]);
        assert!(matches!(
            url.get("missing").await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(url.relative(&url.path("a/b.txt")), "a/b.txt");
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(
            Storage::try_from_uri("gopher://x/y"),
            Err(Error::InvalidUri { .. })
        ));
    }
}
