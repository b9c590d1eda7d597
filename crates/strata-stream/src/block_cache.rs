//! The block cache: fixed-size, aligned blocks of objects, kept within a byte
//! budget, shared by every catch-up read. Concurrent misses on one block share
//! one GET.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::StreamError;

#[derive(Clone)]
struct ByLen;

impl Weighter<(Arc<str>, u64), Bytes> for ByLen {
    fn weight(&self, _key: &(Arc<str>, u64), val: &Bytes) -> u64 {
        val.len() as u64
    }
}

/// Object blocks in memory, bounded by bytes.
pub struct BlockCache {
    store: Arc<dyn ObjectStore>,
    block_size: u64,
    cache: Cache<(Arc<str>, u64), Bytes, ByLen>,
}

impl BlockCache {
    /// A cache of `budget` bytes of `block_size`-byte blocks.
    pub fn new(store: Arc<dyn ObjectStore>, block_size: u64, budget: u64) -> Self {
        let items = (budget / block_size).max(16) as usize;
        BlockCache { store, block_size, cache: Cache::with_weighter(items, budget, ByLen) }
    }

    /// Bytes currently held.
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// The blocks overlapping `[start, end)` of `object` that are not cached,
    /// as byte ranges (for read-ahead).
    pub fn missing_blocks(&self, object: &Arc<str>, start: u64, end: u64) -> Vec<(u64, u64)> {
        if end <= start {
            return Vec::new();
        }
        let first = start / self.block_size;
        let last = (end - 1) / self.block_size;
        (first..=last)
            .filter(|i| self.cache.peek(&(Arc::clone(object), *i)).is_none())
            .map(|i| ((i * self.block_size).max(start), ((i + 1) * self.block_size).min(end)))
            .collect()
    }

    async fn block(&self, object: &Arc<str>, object_size: u64, index: u64) -> Result<Bytes, StreamError> {
        let key = (Arc::clone(object), index);
        let start = index * self.block_size;
        let end = (start + self.block_size).min(object_size);
        let missed = std::sync::atomic::AtomicBool::new(false);
        let block = self
            .cache
            .get_or_insert_async(&key, async {
                missed.store(true, std::sync::atomic::Ordering::Relaxed);
                let path = Path::from(object.as_ref());
                self.store.get_range(&path, start..end).await.map_err(StreamError::from)
            })
            .await;
        crate::shared::count_cache(
            crate::shared::CacheKind::Block,
            !missed.load(std::sync::atomic::Ordering::Relaxed),
        );
        block
    }

    /// Reads `[start, end)` of an object of `object_size` bytes.
    pub async fn read(
        &self,
        object: &Arc<str>,
        object_size: u64,
        start: u64,
        end: u64,
    ) -> Result<Bytes, StreamError> {
        if end <= start {
            return Ok(Bytes::new());
        }
        let first = start / self.block_size;
        let last = (end - 1) / self.block_size;
        if first == last {
            let block = self.block(object, object_size, first).await?;
            let from = (start - first * self.block_size) as usize;
            let to = (end - first * self.block_size) as usize;
            if to > block.len() {
                return Err(StreamError::ShortObject(object.to_string()));
            }
            return Ok(block.slice(from..to));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for i in first..=last {
            let block = self.block(object, object_size, i).await?;
            let base = i * self.block_size;
            let from = start.max(base) - base;
            let to = end.min(base + block.len() as u64) - base;
            if to < from || (i < last && block.len() as u64 != self.block_size) {
                return Err(StreamError::ShortObject(object.to_string()));
            }
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        if out.len() as u64 != end - start {
            return Err(StreamError::ShortObject(object.to_string()));
        }
        Ok(out.freeze())
    }
}
