//! State shared by every stream of a store: the WAL, the caches, the stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use object_store::ObjectStore;
use quick_cache::sync::Cache;
use strata_meta::MetaStore;

use crate::StreamId;
use crate::block_cache::BlockCache;
use crate::object_format::ObjectBatch;
use crate::wal::Wal;

/// The tail cache's budget: batch bytes kept in memory after their WAL write,
/// admitted while under budget and released when the batch reaches an object.
pub(crate) struct TailBudget {
    used: AtomicUsize,
    limit: usize,
}

impl TailBudget {
    pub fn new(limit: usize) -> Self {
        TailBudget { used: AtomicUsize::new(0), limit }
    }
    pub fn try_admit(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur + n > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Cache lookups of the process: `[tail, block]` × `[hits, misses]`.
static CACHE_LOOKUPS: [[AtomicU64; 2]; 2] =
    [[AtomicU64::new(0), AtomicU64::new(0)], [AtomicU64::new(0), AtomicU64::new(0)]];

/// The caches whose lookups are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheKind {
    Tail = 0,
    Block = 1,
}

/// Counts one lookup of a cache.
pub(crate) fn count_cache(cache: CacheKind, hit: bool) {
    CACHE_LOOKUPS[cache as usize][usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
}

/// Counts `n` misses of a cache.
pub(crate) fn count_cache_misses(cache: CacheKind, n: u64) {
    CACHE_LOOKUPS[cache as usize][1].fetch_add(n, Ordering::Relaxed);
}

/// `(hits, misses)` of a cache so far.
pub(crate) fn cache_lookups(cache: CacheKind) -> (u64, u64) {
    let c = &CACHE_LOOKUPS[cache as usize];
    (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
}

pub(crate) struct Shared {
    pub wal: Arc<Wal>,
    pub objects: Arc<dyn ObjectStore>,
    pub meta: Arc<dyn MetaStore>,
    pub blocks: BlockCache,
    pub index_cache: Cache<(Arc<str>, StreamId), Arc<Vec<ObjectBatch>>>,
    pub tail_budget: TailBudget,
    /// How many range entries of this process reference each object.
    pub refs: crate::object_refs::ObjectRefs,
    /// Bytes durable in the WAL and not yet in objects (all streams).
    pub pending_upload: AtomicUsize,
    /// Wakes the uploader before its interval once `upload_bytes` wait.
    pub upload_now: tokio::sync::Notify,
    /// The `upload_bytes` threshold.
    pub upload_bytes: usize,
    /// Objects that reads are using (garbage collection waits for them).
    pub leases: Arc<crate::gc::Leases>,
    /// Bounds read-ahead GETs (the catch-up concurrency budget).
    pub catch_up: Arc<tokio::sync::Semaphore>,
    /// How far read-ahead reaches past a catch-up read.
    pub read_ahead_bytes: u64,
    /// Paces the bytes catch-up reads deliver (unlimited at 0).
    pub catch_up_throttle: crate::compaction::Throttle,
    /// Bytes accepted by appends since the store opened.
    pub appended_bytes: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Counts bytes that reached the WAL; wakes the uploader past the threshold.
    pub fn add_pending(&self, n: usize) {
        let before = self.pending_upload.fetch_add(n, Ordering::AcqRel);
        if before < self.upload_bytes && before + n >= self.upload_bytes {
            self.upload_now.notify_one();
        }
    }

    /// Counts bytes that left the WAL tail.
    pub fn sub_pending(&self, n: usize) {
        let _ = self
            .pending_upload
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(n)));
    }
}
