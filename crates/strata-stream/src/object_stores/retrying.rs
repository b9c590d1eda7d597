//! `RetryingStore`: retries transient object-store failures (throttling such as
//! S3's 503 SlowDown, other 5xx, timeouts, broken connections — all of which
//! `object_store` reports as `Error::Generic`) with exponential backoff and full
//! jitter, bounds every attempt by a timeout so that a hung request cannot hang
//! its caller, and gives up after a total deadline so that callers (and the
//! clients waiting on them) get an error instead of waiting forever.
//!
//! Conditional puts (`PutMode::Create` / `Update`) are not retried here: after a
//! lost response the retry would see its own write as a conflict. Their callers
//! decide (the embedded metadata store re-reads what is there).

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Retry settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    /// First backoff; doubled per attempt.
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Bound of one attempt.
    pub attempt_timeout: Duration,
    /// Bound of all attempts together.
    pub deadline: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }
}

/// Whether an error may go away by itself.
pub fn is_transient(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. } | object_store::Error::JoinError { .. })
}

fn timed_out(what: &str, after: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "Retrying",
        source: format!("{what} timed out after {after:?}").into(),
    }
}

/// An object store that retries transient failures.
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    config: RetryConfig,
}

impl RetryingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: RetryConfig) -> Self {
        RetryingStore { inner, config }
    }

    async fn retry<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = tokio::time::Instant::now();
        let mut backoff = self.config.initial_backoff;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let outcome = match tokio::time::timeout(self.config.attempt_timeout, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(timed_out(op, self.config.attempt_timeout)),
            };
            match outcome {
                Err(e) if is_transient(&e) => {
                    let jitter = rand::random_range(0..=backoff.as_millis() as u64);
                    let wait = Duration::from_millis(jitter);
                    if started.elapsed() + wait >= self.config.deadline {
                        tracing::warn!(op, tries, error = %e, "object store still failing; giving up");
                        return Err(e);
                    }
                    tracing::debug!(op, tries, error = %e, "object store failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                other => return other,
            }
        }
    }
}

impl std::fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            // One attempt, but bounded like every other.
            return match tokio::time::timeout(
                self.config.attempt_timeout,
                self.inner.put_opts(location, payload, opts),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(object_store::Error::Generic {
                    store: "Retrying",
                    source: format!("conditional put timed out after {:?}", self.config.attempt_timeout)
                        .into(),
                }),
            };
        }
        self.retry("put", || self.inner.put_opts(location, payload.clone(), opts.clone())).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.retry("put_multipart", || self.inner.put_multipart_opts(location, opts.clone())).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry("get", || self.inner.get_opts(location, options.clone())).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.retry("get_ranges", || self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
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
        self.retry("list", || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.retry("copy", || self.inner.copy_opts(from, to, options.clone())).await
    }
}
