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
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
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
}

/// A store with injectable faults; cheap to clone (shares its faults).
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Mutex<HashMap<Operation, Fault>>>,
}

impl FaultyStore {
    /// Wraps `inner` with no faults.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore { inner, faults: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Sets the fault of an operation.
    pub fn set(&self, op: Operation, fault: Fault) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).insert(op, fault);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Takes the fault of `op`, counting down the counted ones.
    fn take(&self, op: Operation) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match faults.get(&op).copied() {
            Some(Fault::Fail(n)) => {
                if n <= 1 {
                    faults.remove(&op);
                } else {
                    faults.insert(op, Fault::Fail(n - 1));
                }
                Some(Fault::Fail(n))
            }
            Some(Fault::LoseResponse(n)) => {
                if n <= 1 {
                    faults.remove(&op);
                } else {
                    faults.insert(op, Fault::LoseResponse(n - 1));
                }
                Some(Fault::LoseResponse(n))
            }
            other => other,
        }
    }

    /// Runs `call` under the fault of `op`.
    async fn run<T>(&self, op: Operation, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match self.take(op) {
            Some(Fault::LoseResponse(_)) => {
                let _ = call.await;
                Err(object_store::Error::Generic {
                    store: "Faulty",
                    source: format!("injected lost {op:?} response (the call was applied)").into(),
                })
            }
            fault => {
                self.inject(fault, op).await?;
                call.await
            }
        }
    }

    async fn inject(&self, fault: Option<Fault>, op: Operation) -> Result<()> {
        match fault {
            None | Some(Fault::LoseResponse(_)) => Ok(()),
            Some(Fault::Fail(_)) | Some(Fault::FailAlways) => Err(object_store::Error::Generic {
                store: "Faulty",
                source: format!("injected {op:?} failure (503 SlowDown)").into(),
            }),
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Fault::Hang) => {
                futures::future::pending::<()>().await;
                Ok(())
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
        self.run(Operation::Put, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.run(Operation::Put, self.inner.put_multipart_opts(location, opts)).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.run(Operation::Get, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.run(Operation::Get, self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        use futures::StreamExt;
        let lost = |_| {
            Err(object_store::Error::Generic {
                store: "Faulty",
                source: "injected lost Delete response".into(),
            })
        };
        match self.take(Operation::Delete) {
            None => self.inner.delete_stream(locations),
            Some(Fault::LoseResponse(_)) => self.inner.delete_stream(locations).map(lost).boxed(),
            Some(_) => locations
                .map(|_| {
                    Err(object_store::Error::Generic {
                        store: "Faulty",
                        source: "injected Delete failure".into(),
                    })
                })
                .boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let faulty = self.faults.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&Operation::List);
        if faulty {
            use futures::StreamExt;
            return futures::stream::once(async {
                Err(object_store::Error::Generic { store: "Faulty", source: "injected List failure".into() })
            })
            .boxed();
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.run(Operation::List, self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.run(Operation::Put, self.inner.copy_opts(from, to, options)).await
    }
}
