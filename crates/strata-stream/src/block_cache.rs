//! The block cache: fixed-size, aligned blocks of objects, kept within a byte
//! budget, shared by every catch-up read. Adjacent misses of one read share one
//! GET; concurrent misses on one block share one GET.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use quick_cache::Weighter;
use quick_cache::sync::{Cache, GuardResult};

use crate::StreamError;

/// Most blocks fetched by one GET.
pub(crate) const MAX_RUN_BLOCKS: usize = 8;

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

    /// The block size.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Whether some block overlapping `[start, end)` of `object` is not cached.
    pub fn any_missing(&self, object: &Arc<str>, start: u64, end: u64) -> bool {
        end > start
            && (start / self.block_size..=(end - 1) / self.block_size)
                .any(|i| self.cache.peek(&(Arc::clone(object), i)).is_none())
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

    /// Reads `[start, end)` of an object of `object_size` bytes. Missing
    /// blocks are fetched with one GET per run of up to `MAX_RUN_BLOCKS`
    /// adjacent blocks, runs concurrently; blocks another read is already
    /// fetching are waited for, not fetched twice.
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
        let bs = self.block_size;
        let (first, last) = (start / bs, (end - 1) / bs);
        let mut blocks: Vec<Option<Bytes>> = vec![None; (last - first + 1) as usize];
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        for i in first..=last {
            match self.cache.get_value_or_guard(&(Arc::clone(object), i), Some(Duration::ZERO)) {
                GuardResult::Value(v) => {
                    crate::shared::count_cache(crate::shared::CacheKind::Block, true);
                    blocks[(i - first) as usize] = Some(v);
                }
                GuardResult::Guard(g) => mine.push((i, g)),
                GuardResult::Timeout => theirs.push(i),
            }
        }
        // Our misses, as runs of adjacent blocks: one GET each, all at once.
        let mut runs: Vec<Vec<(u64, _)>> = Vec::new();
        for (i, g) in mine {
            match runs.last_mut() {
                Some(run) if run.last().is_some_and(|(j, _)| *j + 1 == i) && run.len() < MAX_RUN_BLOCKS => {
                    run.push((i, g))
                }
                _ => runs.push(vec![(i, g)]),
            }
        }
        let path = Path::from(object.as_ref());
        let fetches = runs.iter().map(|run| {
            let from = run.first().map_or(0, |(i, _)| i * bs);
            let to = run.last().map_or(0, |(i, _)| ((i + 1) * bs).min(object_size));
            self.store.get_range(&path, from..to)
        });
        let results = futures::future::join_all(fetches).await;
        let mut failure = None;
        for (run, result) in runs.into_iter().zip(results) {
            crate::shared::count_cache_misses(crate::shared::CacheKind::Block, run.len() as u64);
            let data = match result {
                Ok(d) => d,
                Err(e) => {
                    failure = Some(StreamError::from(e)); // dropping the guards frees the blocks
                    continue;
                }
            };
            let base = run.first().map_or(0, |(i, _)| *i);
            for (i, guard) in run {
                let from = ((i - base) * bs) as usize;
                let to = (from + bs as usize).min(data.len());
                if from >= to {
                    failure = Some(StreamError::ShortObject(object.to_string()));
                    continue;
                }
                let block = data.slice(from..to);
                let _ = guard.insert(block.clone());
                blocks[(i - first) as usize] = Some(block);
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for i in theirs {
            blocks[(i - first) as usize] = Some(self.block(object, object_size, i).await?);
        }
        if first == last {
            let block = blocks.pop().flatten().unwrap_or_default();
            let from = (start - first * bs) as usize;
            let to = (end - first * bs) as usize;
            if to > block.len() {
                return Err(StreamError::ShortObject(object.to_string()));
            }
            return Ok(block.slice(from..to));
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for (n, block) in blocks.into_iter().enumerate() {
            let i = first + n as u64;
            let block = block.unwrap_or_default();
            let base = i * bs;
            let from = start.max(base) - base;
            let to = end.min(base + block.len() as u64) - base;
            if to < from || (i < last && block.len() as u64 != bs) {
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
