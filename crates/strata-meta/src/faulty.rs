//! `FaultyStore`: injects failures, lost responses, latency and hangs into
//! chosen operations of a wrapped store, for tests of the layers above (it
//! lives in the lowest crate so that every layer's tests can use it).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// The operations faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Puts (and multipart starts).
    Put,
    /// Gets and ranged gets.
    Get,
    /// Listings.
    List,
    /// Deletes.
    Delete,
}

/// What happens to the targeted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next `n` calls fail with a transient error (like a 503).
    Fail(u32),
    /// Every call fails until cleared.
    FailAlways,
    /// Every call is delayed.
    Latency(Duration),
    /// Every call waits forever (until cleared calls are made).
    Hang,
    /// The next `n` calls are applied by the wrapped store, but their
    /// response is lost: the caller gets a transient error.
    LoseResponse(u32),
    /// Calls wait, before reaching the wrapped store, until the fault is
    /// cleared (a process paused just before a write).
    PauseBefore,
    /// Calls are applied, then wait until the fault is cleared before they
    /// answer (a process paused just after a write, before it acts on it).
    PauseAfter,
}

impl Fault {
    /// A short name for counting hits.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Fail(_) | Fault::FailAlways => "fail",
            Fault::Latency(_) => "latency",
            Fault::Hang => "hang",
            Fault::LoseResponse(_) => "lose-response",
            Fault::PauseBefore => "pause-before",
            Fault::PauseAfter => "pause-after",
        }
    }
}

/// A fault and the paths it applies to.
#[derive(Debug, Clone)]
struct Target {
    fault: Fault,
    /// Only paths starting with this (all when `None`).
    prefix: Option<String>,
}

/// One kind of injected fault at one kind of write point: operation, fault
/// kind and the first segment of the path (`wal`, `data`, `meta`, ...).
pub type HitKey = (Operation, &'static str, String);

/// A store with injectable faults; cheap to clone (shares its faults and its
/// hit counts).
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Mutex<HashMap<Operation, Target>>>,
    hits: Arc<Mutex<HashMap<HitKey, u64>>>,
}

impl FaultyStore {
    /// Wraps `inner` with no faults.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore { inner, faults: Default::default(), hits: Default::default() }
    }

    /// Sets the fault of an operation, for every path.
    pub fn set(&self, op: Operation, fault: Fault) {
        self.lock_faults().insert(op, Target { fault, prefix: None });
    }

    /// Sets the fault of an operation, for paths starting with `prefix`.
    pub fn set_on(&self, op: Operation, prefix: &str, fault: Fault) {
        self.lock_faults().insert(op, Target { fault, prefix: Some(prefix.to_string()) });
    }

    /// Removes every fault (and releases paused calls).
    pub fn clear(&self) {
        self.lock_faults().clear();
    }

    /// How many times each fault fired, by operation, kind and path segment.
    pub fn hits(&self) -> HashMap<HitKey, u64> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock_faults(&self) -> std::sync::MutexGuard<'_, HashMap<Operation, Target>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the fault of `op` at `path`, counting down the counted ones and
    /// counting the hit.
    fn take(&self, op: Operation, path: &Path) -> Option<Fault> {
        let mut faults = self.lock_faults();
        let target = faults.get(&op)?.clone();
        if target.prefix.as_deref().is_some_and(|p| !path.as_ref().starts_with(p)) {
            return None;
        }
        let fault = target.fault;
        match fault {
            Fault::Fail(n) | Fault::LoseResponse(n) if n <= 1 => {
                faults.remove(&op);
            }
            Fault::Fail(n) => {
                faults.insert(op, Target { fault: Fault::Fail(n - 1), ..target });
            }
            Fault::LoseResponse(n) => {
                faults.insert(op, Target { fault: Fault::LoseResponse(n - 1), ..target });
            }
            _ => {}
        }
        drop(faults);
        let segment = path.parts().next().map(|p| p.as_ref().to_string()).unwrap_or_default();
        *self
            .hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((op, fault.kind(), segment))
            .or_default() += 1;
        Some(fault)
    }

    /// Waits while a pause fault of `op` is set.
    async fn paused(&self, op: Operation) {
        while self
            .lock_faults()
            .get(&op)
            .is_some_and(|t| matches!(t.fault, Fault::PauseBefore | Fault::PauseAfter))
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs `call` at `path` under the fault of `op`.
    async fn run<T>(
        &self,
        op: Operation,
        path: &Path,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.take(op, path) {
            None => call.await,
            Some(Fault::LoseResponse(_)) => {
                let _ = call.await;
                Err(object_store::Error::Generic {
                    store: "Faulty",
                    source: format!("injected lost {op:?} response (the call was applied)").into(),
                })
            }
            Some(Fault::Fail(_)) | Some(Fault::FailAlways) => Err(object_store::Error::Generic {
                store: "Faulty",
                source: format!("injected {op:?} failure (503 SlowDown)").into(),
            }),
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                call.await
            }
            Some(Fault::Hang) => futures::future::pending().await,
            Some(Fault::PauseBefore) => {
                self.paused(op).await;
                call.await
            }
            Some(Fault::PauseAfter) => {
                let result = call.await;
                self.paused(op).await;
                result
            }
        }
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.run(Operation::Put, location, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.run(Operation::Put, location, self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.run(Operation::Get, location, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.run(Operation::Get, location, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        use futures::StreamExt;
        let this = self.clone();
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    let inner = Arc::clone(&this.inner);
                    this.run(Operation::Delete, &location, async { inner.delete(&location).await }).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        use futures::StreamExt;
        let at = prefix.cloned().unwrap_or_default();
        match self.take(Operation::List, &at) {
            Some(Fault::Fail(_) | Fault::FailAlways) => futures::stream::once(async {
                Err(object_store::Error::Generic { store: "Faulty", source: "injected List failure".into() })
            })
            .boxed(),
            _ => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        self.run(Operation::List, &at, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.run(Operation::Put, to, self.inner.copy_opts(from, to, options)).await
    }
}
