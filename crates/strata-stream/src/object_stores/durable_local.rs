//! `DurableLocalStore`: the local-directory store made durable. `object_store`'s
//! `LocalFileSystem` writes a staging file and renames it, but never fsyncs, so
//! after a power loss an object whose index entry was committed (and whose WAL
//! segment was deleted) could be missing. This decorator fsyncs the object and
//! its directory before a put returns. It also keeps dirty data from piling up
//! until the file system's next journal commit, where it would stall the WAL's
//! own `fdatasync`.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// A [`LocalFileSystem`] whose puts are durable when they return.
#[derive(Debug)]
pub struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
}

impl DurableLocalStore {
    /// Wraps a local store.
    pub fn new(inner: LocalFileSystem) -> Self {
        DurableLocalStore { inner: Arc::new(inner) }
    }

    async fn sync(&self, location: &Path) -> Result<()> {
        let path: PathBuf = self.inner.path_to_filesystem(location)?;
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&path)?.sync_all()?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await;
        match synced {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(object_store::Error::Generic { store: "DurableLocal", source: Box::new(e) }),
            Err(e) => Err(object_store::Error::Generic { store: "DurableLocal", source: Box::new(e) }),
        }
    }
}

impl std::fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocal({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // Not used by Strata on local stores; delegated without the fsync.
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
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
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutMode};

    #[tokio::test]
    async fn puts_land_and_conditional_create_still_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DurableLocalStore::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let p = Path::from("a/b.obj");
        store.put(&p, PutPayload::from_static(b"hello")).await.expect("put");
        assert_eq!(std::fs::read(dir.path().join("a/b.obj")).expect("file"), b"hello");
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        let again = store.put_opts(&p, PutPayload::from_static(b"x"), create).await;
        assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{again:?}");
        assert_eq!(store.get_range(&p, 1..3).await.expect("range"), Bytes::from_static(b"el"));
    }
}
