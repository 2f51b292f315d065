//! An in-memory object store that fails requests on purpose: a put either fails before it is
//! applied, or is applied and its response is lost (the error reaches the caller anyway).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A small seeded generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The store; clones share state.
#[derive(Clone)]
pub struct FaultStore {
    inner: Arc<InMemory>,
    rng: Arc<Mutex<Rng>>,
    on: Arc<AtomicBool>,
    /// Paths ending with one of these lose the response of their next put (once each).
    targeted: Arc<Mutex<Vec<String>>>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultStore")
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultStore")
    }
}

/// What the next put suffers.
enum Fault {
    None,
    Refused,
    ResponseLost,
}

impl FaultStore {
    /// A store injecting faults from `seed` (0: never).
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Arc::new(InMemory::new()),
            rng: Arc::new(Mutex::new(Rng::new(seed))),
            on: Arc::new(AtomicBool::new(seed != 0)),
            targeted: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The next put to a path ending with `part` is applied and its response lost.
    pub fn lose_response_of(&self, part: &str) {
        self.targeted.lock().expect("targets").push(part.to_owned());
    }

    /// Turns faults on or off.
    pub fn set_faults(&self, on: bool) {
        self.on.store(on, Ordering::SeqCst);
    }

    fn fault(&self, location: &Path) -> Fault {
        let mut targeted = self.targeted.lock().expect("targets");
        let at = location.as_ref();
        if let Some(i) = targeted.iter().position(|t| at.ends_with(t.as_str())) {
            targeted.remove(i);
            return Fault::ResponseLost;
        }
        drop(targeted);
        if !self.on.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let mut rng = self.rng.lock().expect("rng");
        match rng.below(40) {
            0 => Fault::Refused,
            1 => Fault::ResponseLost,
            _ => Fault::None,
        }
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: what.to_owned().into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match self.fault(location) {
            Fault::None => self.inner.put_opts(location, payload, opts).await,
            Fault::Refused => Err(injected("connection reset before the request was applied")),
            Fault::ResponseLost => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected("connection reset after the request was applied"))
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
