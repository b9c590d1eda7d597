//! `InstrumentedStore`: counts the requests and bytes that reach the store it
//! wraps. Put it directly around the real store (under the retrying one) so that
//! every attempt is counted as the provider bills it.
//!
//! What counts as one request:
//! - `put`: a single-request upload (also conditional ones);
//! - `put_part` and `complete_multipart`: each part, and the completion
//!   (S3 bills UploadPart and CompleteMultipartUpload as PUT-class requests);
//!   starting a multipart upload is counted with them as `create_multipart`;
//! - `get` (with ranges), `head`;
//! - `list`: one per call plus one per further 1,000 keys (S3's page size);
//! - `delete`: one per object;
//! - `copy`.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// Kinds of object-store request, as counted by [`ObjectStoreStats`] (the
/// discriminant indexes its counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Single-request PUT.
    Put,
    /// CreateMultipartUpload.
    CreateMultipart,
    /// UploadPart.
    PutPart,
    /// CompleteMultipartUpload.
    CompleteMultipart,
    /// GET (whole or ranged).
    Get,
    /// HEAD.
    Head,
    /// LIST page.
    List,
    /// DELETE (per object).
    Delete,
    /// COPY.
    Copy,
}

impl RequestKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RequestKind; 9] = [
        RequestKind::Put,
        RequestKind::CreateMultipart,
        RequestKind::PutPart,
        RequestKind::CompleteMultipart,
        RequestKind::Get,
        RequestKind::Head,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Copy,
    ];

    /// The label used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Put => "put",
            RequestKind::CreateMultipart => "create_multipart",
            RequestKind::PutPart => "put_part",
            RequestKind::CompleteMultipart => "complete_multipart",
            RequestKind::Get => "get",
            RequestKind::Head => "head",
            RequestKind::List => "list",
            RequestKind::Delete => "delete",
            RequestKind::Copy => "copy",
        }
    }
}

/// Request and byte counters of one instrumented store.
#[derive(Debug, Default)]
pub struct ObjectStoreStats {
    requests: [AtomicU64; RequestKind::ALL.len()],
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

impl ObjectStoreStats {
    fn add(&self, kind: RequestKind, n: u64) {
        self.requests[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Requests of `kind` so far.
    pub fn requests(&self, kind: RequestKind) -> u64 {
        self.requests[kind as usize].load(Ordering::Relaxed)
    }

    /// PUT requests in the narrow sense the cost figures use: single PUTs,
    /// UploadPart and CompleteMultipartUpload.
    pub fn put_requests(&self) -> u64 {
        self.requests(RequestKind::Put)
            + self.requests(RequestKind::PutPart)
            + self.requests(RequestKind::CompleteMultipart)
    }

    /// Payload bytes sent to the store.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Payload bytes received from the store.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// Counts requests and bytes to the wrapped store.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<ObjectStoreStats>,
}

impl InstrumentedStore {
    /// Wraps `inner`; the counters are shared through [`Self::stats`].
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        InstrumentedStore { inner, stats: Arc::new(ObjectStoreStats::default()) }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ObjectStoreStats> {
        Arc::clone(&self.stats)
    }
}

impl std::fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    stats: Arc<ObjectStoreStats>,
}

#[async_trait::async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.stats.add(RequestKind::PutPart, 1);
        self.stats.bytes_written.fetch_add(data.content_length() as u64, Ordering::Relaxed);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.stats.add(RequestKind::CompleteMultipart, 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// Counts one list request per call plus one per further 1,000 keys.
fn counted_list(
    stats: Arc<ObjectStoreStats>,
    inner: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    stats.add(RequestKind::List, 1);
    let mut seen = 0u64;
    inner
        .inspect(move |_| {
            seen += 1;
            if seen.is_multiple_of(1000) {
                stats.add(RequestKind::List, 1);
            }
        })
        .boxed()
}

#[async_trait::async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.stats.add(RequestKind::Put, 1);
        self.stats.bytes_written.fetch_add(payload.content_length() as u64, Ordering::Relaxed);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.stats.add(RequestKind::CreateMultipart, 1);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload { inner, stats: Arc::clone(&self.stats) }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        self.stats.add(if head { RequestKind::Head } else { RequestKind::Get }, 1);
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.stats.bytes_read.fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // One GET per range, through `get_opts` (so each is counted).
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(self.get_range(location, r.clone()).await?);
        }
        Ok(out)
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let stats = Arc::clone(&self.stats);
        self.inner.delete_stream(
            locations
                .inspect(move |p| {
                    if p.is_ok() {
                        stats.add(RequestKind::Delete, 1);
                    }
                })
                .boxed(),
        )
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        counted_list(Arc::clone(&self.stats), self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        counted_list(Arc::clone(&self.stats), self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.stats.add(RequestKind::List, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.stats.add(RequestKind::Copy, 1);
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::WriteMultipart;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_each_request_and_its_bytes() {
        let store = InstrumentedStore::new(Arc::new(InMemory::new()));
        let stats = store.stats();
        let a = Path::from("a");
        store.put(&a, PutPayload::from_static(b"hello")).await.expect("put");
        assert_eq!(store.get_range(&a, 1..4).await.expect("get").as_ref(), b"ell");
        store.head(&a).await.expect("head");
        let mut upload = WriteMultipart::new(store.put_multipart(&Path::from("b")).await.expect("mpu"));
        upload.write(&[7u8; 100]);
        upload.finish().await.expect("complete");
        let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
        assert_eq!(listed.len(), 2);
        store.delete(&a).await.expect("delete");

        let counts: Vec<(&str, u64)> =
            RequestKind::ALL.iter().map(|k| (k.name(), stats.requests(*k))).collect();
        assert_eq!(
            counts,
            vec![
                ("put", 1),
                ("create_multipart", 1),
                ("put_part", 1),
                ("complete_multipart", 1),
                ("get", 1),
                ("head", 1),
                ("list", 1),
                ("delete", 1),
                ("copy", 0),
            ]
        );
        assert_eq!(stats.put_requests(), 3);
        assert_eq!(stats.bytes_written(), 105);
        assert_eq!(stats.bytes_read(), 3);
    }
}
