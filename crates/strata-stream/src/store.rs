//! The stream store: every stream of a broker over one shared WAL, with data
//! moved into objects in the background, an object index in the metadata
//! store, trimming and garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use quick_cache::sync::Cache;
use strata_meta::{MetaStore, Op, TxnOutcome};
use tokio::sync::{Notify, watch};

use crate::block_cache::BlockCache;
use crate::index::{self, Checkpoint, RangeEntry, StreamMeta};
use crate::object_format;
use crate::shared::{Shared, TailBudget};
use crate::wal::object::WalNames;
use crate::wal::{Wal, WalConfig};
use crate::{BatchInfo, Stream, StreamError, StreamId};

/// Which write-ahead log acknowledges appends.
#[derive(Debug, Clone, Copy)]
pub enum WalKind {
    /// An fsync'd local file (its volume must survive the broker).
    File,
    /// Objects in the object store: nothing local.
    Object(crate::wal::object::ObjectWalConfig),
}

/// Settings of the stream store.
#[derive(Debug, Clone)]
pub struct StreamStoreConfig {
    /// Which WAL.
    pub wal: WalKind,
    /// Directory of the WAL segments.
    pub wal_dir: PathBuf,
    /// The WAL's name in the bucket and the metadata store (`wal`): its
    /// objects, checkpoint and barriers live under it. Stores sharing a
    /// bucket and a metadata store use different prefixes.
    pub wal_prefix: String,
    /// Whether the store owns every stream of the index at open (one node
    /// owns a whole prefix). When false (a broker of a cluster), streams come
    /// one by one through [`StreamStore::take_over`]; what the WAL held for
    /// streams at open stays pinned there, unowned, until some owner's index
    /// covers it.
    pub own_all_at_open: bool,
    /// WAL segment size before rolling.
    pub segment_bytes: u64,
    /// Largest group-commit write.
    pub max_write_bytes: usize,
    /// Zero-fill WAL segments ahead of use.
    pub wal_preallocate: bool,
    /// How often the WAL tail is moved into an object.
    pub upload_interval: Duration,
    /// An upload starts early once this many bytes wait.
    pub upload_bytes: usize,
    /// Largest object written by one upload.
    pub max_object_bytes: usize,
    /// Memory for recent batches kept after their WAL write (tail cache).
    pub tail_cache_bytes: usize,
    /// Memory for object blocks (block cache).
    pub block_cache_bytes: u64,
    /// Block size of the block cache.
    pub block_bytes: u64,
    /// How long an unreferenced object stays before deletion.
    pub gc_grace: Duration,
    /// At upload, a stream with at least this many bytes waiting gets an
    /// object of its own instead of a share of the multi-stream object.
    pub split_bytes: usize,
    /// Object compaction settings.
    pub compaction: crate::compaction::CompactionConfig,
    /// How often the bucket is swept for orphans (objects no index references).
    pub orphan_interval: Duration,
    /// An unreferenced object younger than this is not an orphan yet (it may be
    /// an upload whose index commit is still on its way).
    pub orphan_age: Duration,
    /// Catch-up reads: how far past a read the next blocks are fetched.
    pub read_ahead_bytes: u64,
    /// Catch-up reads: read-ahead GETs in flight at once.
    pub catch_up_concurrency: usize,
    /// Catch-up reads: bytes per second delivered from objects, at most (0:
    /// unlimited).
    pub catch_up_bytes_per_sec: u64,
    /// A stream keeps at most this many ranges as metadata keys; past it they
    /// fold into its index manifest in the object store (0: never; bounded
    /// by half the metadata store's transaction limit).
    pub index_inline_ranges: usize,
}

impl StreamStoreConfig {
    /// Defaults for a WAL in `wal_dir`.
    pub fn new(wal_dir: PathBuf) -> Self {
        StreamStoreConfig {
            wal: WalKind::File,
            wal_dir,
            wal_prefix: "wal".into(),
            own_all_at_open: true,
            segment_bytes: 128 << 20,
            max_write_bytes: 8 << 20,
            wal_preallocate: false,
            upload_interval: Duration::from_secs(2),
            upload_bytes: 64 << 20,
            max_object_bytes: 64 << 20,
            tail_cache_bytes: 256 << 20,
            block_cache_bytes: 256 << 20,
            block_bytes: 1 << 20,
            gc_grace: Duration::from_secs(60),
            split_bytes: 16 << 20,
            compaction: crate::compaction::CompactionConfig::default(),
            orphan_interval: Duration::from_secs(300),
            orphan_age: Duration::from_secs(600),
            read_ahead_bytes: 16 << 20,
            catch_up_concurrency: 4,
            catch_up_bytes_per_sec: 0,
            index_inline_ranges: 32,
        }
    }
}

/// All streams of one broker.
pub struct StreamStore {
    pub(crate) config: StreamStoreConfig,
    pub(crate) shared: Arc<Shared>,
    streams: Mutex<HashMap<StreamId, Arc<Stream>>>,
    /// Streams another process owns now whose tail is still only in this
    /// process's WAL: kept (their segments pinned) until the new owner's index
    /// covers them.
    handed_over: Mutex<HashMap<StreamId, Arc<Stream>>>,
    deleted: Mutex<HashSet<StreamId>>,
    generation: watch::Receiver<u64>,
    /// Serialises uploads, compactions, trims, deletes and orphan sweeps (each
    /// changes or reads ranges and refcounts).
    pub(crate) changes: tokio::sync::Mutex<()>,
    /// Paces compaction's reads and writes.
    pub(crate) compaction_throttle: crate::compaction::Throttle,
    /// Data objects being written whose index commit is still to come: the
    /// orphan sweep never deletes them.
    pub(crate) protected: Mutex<HashSet<String>>,
    /// Why the store stopped for good (fenced, or a commit outcome unknown).
    stopped: watch::Sender<Option<Stop>>,
    /// The names of this store's WAL.
    pub(crate) names: WalNames,
    /// Index manifests read or written, by object name (they are immutable).
    pub(crate) manifests: Cache<String, Arc<Vec<RangeEntry>>>,
}

/// Why a store stopped for good; the process should exit so that an
/// orchestrator restarts it from the authoritative state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A newer owner holds the prefix.
    Fenced,
    /// A metadata commit's outcome could not be learnt.
    OutcomeUnknown,
}

/// Removes an object from the store's protected set when dropped (returned by
/// `write_object`).
pub(crate) struct Unprotect<'a> {
    store: &'a StreamStore,
    name: String,
}

impl Drop for Unprotect<'_> {
    fn drop(&mut self) {
        self.store.protected.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

/// How a released stream's data reaches its next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Upload the stream's tail and index it first: the next owner needs only
    /// the index.
    Indexed,
    /// Leave the tail in this process's object WAL: the next owner reads it
    /// from there ([`StreamStore::take_over`] with this store's WAL prefix).
    InWal,
}

/// How long a release waits for the stream's accepted appends to settle.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Live figures of a store, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// Open streams.
    pub streams: usize,
    /// Object ranges in the index (all streams).
    pub ranges: usize,
    /// Data objects the index references.
    pub objects: usize,
    /// Bytes durable in the WAL and not yet in objects.
    pub upload_backlog_bytes: usize,
    /// Bytes held by the tail cache.
    pub tail_cache_bytes: usize,
    /// Bytes held by the block cache.
    pub block_cache_bytes: u64,
    /// Bytes accepted by appends since the store opened.
    pub appended_bytes: u64,
    /// Tail-cache `(hits, misses)` of reads (a miss reads the WAL).
    pub tail_cache_lookups: (u64, u64),
    /// Block-cache `(hits, misses)` (a miss is a GET).
    pub block_cache_lookups: (u64, u64),
}

/// How often the store polls the owner epoch record.
pub const FENCE_POLL: Duration = Duration::from_millis(1000);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StreamError> {
    serde_json::from_slice(value)
        .map_err(|e| StreamError::BadRecord { key: key.to_string(), reason: e.to_string() })
}

/// Applies the WAL's group commits to their streams until the store is gone,
/// waking readers after each.
async fn apply_durable(
    store: std::sync::Weak<StreamStore>,
    mut durable: tokio::sync::mpsc::UnboundedReceiver<Vec<crate::wal::Durable>>,
    generation: watch::Sender<u64>,
) {
    while let Some(group) = durable.recv().await {
        let Some(store) = store.upgrade() else { return };
        store.apply_group(group);
        generation.send_modify(|g| *g += 1);
    }
}

/// A stream claimed by a takeover, not yet at its new epoch.
struct Claimed {
    id: StreamId,
    epoch: i32,
    /// The meta record as claimed (rewritten unchanged).
    meta: StreamMeta,
    /// The claim's revision: the condition of every later commit.
    claimed: strata_meta::Revision,
    /// Where the indexed data ends.
    end: i64,
    /// The index read after the claim, with whether each range is inline.
    ranges: Vec<(RangeEntry, bool)>,
}

impl StreamStore {
    /// Opens the store: loads the object index from the metadata store, replays
    /// the WAL from the checkpoint and rebuilds every stream.
    pub async fn open(
        config: StreamStoreConfig,
        objects: Arc<dyn ObjectStore>,
        meta: Arc<dyn MetaStore>,
    ) -> Result<Arc<Self>, StreamError> {
        let names = WalNames::new(&config.wal_prefix);
        let checkpoint: Checkpoint = match meta.get(&names.checkpoint_key()).await? {
            Some(e) => decode(&e.key, &e.value)?,
            None => Checkpoint::default(),
        };
        let mut metas: HashMap<StreamId, (StreamMeta, strata_meta::Revision)> = HashMap::new();
        // Every range, with whether it is inline.
        let mut ranges: BTreeMap<(StreamId, i64), (RangeEntry, bool)> = BTreeMap::new();
        for e in meta.list(index::STREAM_PREFIX).await? {
            let Some(id) = index::stream_of(&e.key) else { continue };
            if e.key.ends_with("/m") {
                metas.insert(id, (decode(&e.key, &e.value)?, e.mod_revision));
            } else {
                let r: RangeEntry = decode(&e.key, &e.value)?;
                ranges.insert((id, r.start), (r, true));
            }
        }
        let manifests: Cache<String, Arc<Vec<RangeEntry>>> = Cache::new(1024);
        // One owner of everything needs every stream's folded ranges; a
        // broker of a cluster loads a stream's index when it takes it over.
        if config.own_all_at_open {
            let refs: Vec<(StreamId, index::IndexRef)> =
                metas.iter().filter_map(|(id, (m, _))| m.index.clone().map(|r| (*id, r))).collect();
            let read = futures::stream::iter(refs.into_iter().map(|(id, r)| {
                let objects = Arc::clone(&objects);
                async move {
                    let ranges = crate::manifest::load_manifest(objects.as_ref(), &r).await?;
                    Ok::<_, StreamError>((id, r.object, ranges))
                }
            }));
            let loaded: Vec<_> =
                futures::TryStreamExt::try_collect(futures::StreamExt::buffer_unordered(read, 16)).await?;
            for (id, name, folded) in loaded {
                for r in &folded {
                    ranges.entry((id, r.start)).or_insert_with(|| (r.clone(), false));
                }
                manifests.insert(name, Arc::new(folded));
            }
        }
        let deleted: HashSet<StreamId> =
            meta.list(index::DELETED_PREFIX).await?.iter().filter_map(|e| index::stream_of(&e.key)).collect();

        let (gen_tx, gen_rx) = watch::channel(0u64);
        let (sink, durable) = tokio::sync::mpsc::unbounded_channel();
        let (wal, replayed) = match config.wal {
            WalKind::File => Wal::open(
                WalConfig {
                    dir: config.wal_dir.clone(),
                    segment_bytes: config.segment_bytes,
                    max_write_bytes: config.max_write_bytes,
                    preallocate: config.wal_preallocate,
                },
                checkpoint.segment,
                sink,
                Arc::clone(&meta),
            )?,
            WalKind::Object(wal_config) => {
                crate::wal::object::open(
                    Arc::clone(&objects),
                    Arc::clone(&meta),
                    wal_config,
                    checkpoint.segment,
                    sink,
                    names.clone(),
                    config.wal_dir.clone(),
                )
                .await?
            }
        };
        let refs = crate::object_refs::ObjectRefs::default();
        refs.add(ranges.values().map(|(r, _)| r.object.as_str()));
        let shared = Arc::new(Shared {
            wal,
            blocks: BlockCache::new(Arc::clone(&objects), config.block_bytes, config.block_cache_bytes),
            index_cache: Cache::new(4096),
            objects,
            meta,
            tail_budget: TailBudget::new(config.tail_cache_bytes),
            refs,
            pending_upload: std::sync::atomic::AtomicUsize::new(0),
            upload_now: Notify::new(),
            upload_bytes: config.upload_bytes,
            leases: Arc::new(crate::gc::Leases::default()),
            catch_up: Arc::new(tokio::sync::Semaphore::new(config.catch_up_concurrency.max(1))),
            read_ahead_bytes: config.read_ahead_bytes,
            catch_up_throttle: crate::compaction::Throttle::new(config.catch_up_bytes_per_sec),
            appended_bytes: std::sync::atomic::AtomicU64::new(0),
        });
        let mut streams: HashMap<StreamId, Arc<Stream>> = HashMap::new();
        for (id, (m, rev)) in &metas {
            streams.insert(*id, Arc::new(Stream::new(*id, Arc::clone(&shared), m, Some(*rev))));
        }
        for ((id, _), (r, inline)) in ranges {
            let stream = streams.entry(id).or_insert_with(|| {
                Arc::new(Stream::new(id, Arc::clone(&shared), &StreamMeta::default(), None))
            });
            stream.load_range(r, inline);
        }
        let count = replayed.len();
        for r in replayed {
            let id = r.record.stream_id;
            if deleted.contains(&id) {
                continue;
            }
            let stream = streams.entry(id).or_insert_with(|| {
                Arc::new(Stream::new(id, Arc::clone(&shared), &StreamMeta::default(), None))
            });
            stream.on_durable(r.info(), r.segment, r.position, &r.record.payload);
        }
        tracing::info!(
            wal_batches = count,
            streams = streams.len(),
            from_segment = checkpoint.segment,
            "stream store opened"
        );
        let handed_over = if config.own_all_at_open {
            HashMap::new()
        } else {
            for s in streams.values() {
                s.lock().owned = false;
                s.lock().accepting = false;
            }
            std::mem::take(&mut streams)
        };
        let store = Arc::new(StreamStore {
            shared,
            streams: Mutex::new(streams),
            handed_over: Mutex::new(handed_over),
            deleted: Mutex::new(deleted),
            generation: gen_rx,
            changes: tokio::sync::Mutex::new(()),
            compaction_throttle: crate::compaction::Throttle::new(config.compaction.bytes_per_sec),
            protected: Mutex::new(HashSet::new()),
            stopped: watch::channel(None).0,
            names,
            manifests,
            config,
        });
        tokio::spawn(apply_durable(Arc::downgrade(&store), durable, gen_tx));
        Ok(store)
    }

    /// Applies one group commit: each batch joins its stream's tail, the
    /// segment is published as durable, then the appends are answered.
    fn apply_group(&self, group: Vec<crate::wal::Durable>) {
        let streams: Vec<Option<Arc<Stream>>> = {
            let map = self.lock_streams();
            group.iter().map(|d| map.get(&d.entry.stream).cloned()).collect()
        };
        let mut segment = None;
        for (d, stream) in group.iter().zip(streams) {
            if let Some(s) = stream {
                s.on_durable(d.entry.info(), d.segment, d.position, &d.entry.payload);
            }
            segment = segment.max(Some(d.segment));
        }
        if let Some(segment) = segment {
            self.shared.wal.note_durable(segment);
        }
        for mut d in group {
            d.entry.answer(Ok(()));
        }
    }

    /// Starts the background uploader, garbage collector, compaction, orphan
    /// sweep and fence poll; they stop when the store is dropped or stopped.
    pub fn start_background(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let interval = self.config.upload_interval;
        let shared = Arc::clone(&self.shared);
        let full = self.config.max_object_bytes / 2;
        tokio::spawn(async move {
            let mut more = false;
            loop {
                if !more {
                    // Every interval, or early once `upload_bytes` wait.
                    let _ = tokio::time::timeout(interval, shared.upload_now.notified()).await;
                }
                let Some(store) = weak.upgrade() else { return };
                if store.is_stopped() {
                    return;
                }
                match store.upload_once().await {
                    // A large upload means more may be waiting: go again at once.
                    Ok(n) => more = n >= full,
                    Err(e) => {
                        more = false;
                        if !store.on_error(&e) {
                            return;
                        }
                        tracing::warn!(error = %e, "upload failed; retrying");
                    }
                }
            }
        });
        let every = (self.config.gc_grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        self.every(every, "garbage collection", |s| {
            Box::pin(async move { s.collect_garbage().await.map(|_| ()) })
        });
        let compaction_every = self.config.compaction.interval;
        if !compaction_every.is_zero() {
            self.every(compaction_every, "compaction", |s| {
                Box::pin(async move {
                    if s.shared.wal.is_failed() {
                        return Ok(());
                    }
                    s.compact_once().await.map(|_| ())
                })
            });
        }
        let sweep_every = self.config.orphan_interval.max(Duration::from_millis(10));
        self.every(sweep_every, "orphan sweep", |s| {
            Box::pin(async move { s.sweep_orphans().await.map(|_| ()) })
        });
        // The fence poll: a paused process learns within a poll of resuming.
        self.every(FENCE_POLL, "fence poll", |s| Box::pin(async move { s.confirm_owner().await }));
    }

    /// Runs `job` every `period` until the store is dropped or stopped.
    fn every(
        self: &Arc<Self>,
        period: Duration,
        name: &'static str,
        job: impl Fn(Arc<StreamStore>) -> futures::future::BoxFuture<'static, Result<(), StreamError>>
        + Send
        + 'static,
    ) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(store) = weak.upgrade() else { return };
                if store.is_stopped() {
                    return;
                }
                if let Err(e) = job(Arc::clone(&store)).await
                    && store.on_error(&e)
                {
                    tracing::warn!(error = %e, "{name} failed");
                }
            }
        });
    }

    /// Reacts to an error of a background job or a commit: fencing and unknown
    /// outcomes stop the store for good. Returns whether work may go on.
    pub(crate) fn on_error(&self, e: &StreamError) -> bool {
        match e.kind() {
            crate::ErrorKind::Fenced => {
                self.stop(Stop::Fenced);
                false
            }
            crate::ErrorKind::Unknown => {
                self.stop(Stop::OutcomeUnknown);
                false
            }
            _ => true,
        }
    }

    /// Stops the store for good: appends are refused, background jobs end.
    pub fn stop(&self, why: Stop) {
        self.shared.wal.refuse();
        let first = self.stopped.send_if_modified(|s| s.is_none() && s.replace(why).is_none());
        if first {
            tracing::warn!(?why, "stream store stopped: refusing all appends and background work");
        }
    }

    /// Whether the store stopped for good, and why: stopped explicitly, or a
    /// newer owner seen by the metadata store (any commit or poll) or by the
    /// WAL (a flush's epoch check).
    pub fn stopped(&self) -> Option<Stop> {
        let fenced = self.shared.meta.is_fenced() || self.shared.wal.is_fenced();
        (*self.stopped.borrow()).or(fenced.then_some(Stop::Fenced))
    }

    fn is_stopped(&self) -> bool {
        self.stopped().is_some()
    }

    /// Resolves once the store has stopped for good (and makes sure the WAL
    /// refuses appends from then on).
    pub async fn wait_stopped(&self) -> Stop {
        let mut rx = self.stopped.subscribe();
        loop {
            if let Some(why) = self.stopped() {
                self.stop(why);
                return why;
            }
            // Also polls: the WAL writer and the metadata store flip their
            // own flags without telling us.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    /// Proves, from the authoritative epoch record, that this process still
    /// owns the prefix: the last step before any delete.
    pub(crate) async fn confirm_owner(&self) -> Result<(), StreamError> {
        if self.is_stopped() {
            return Err(StreamError::Fenced);
        }
        let checked = self.shared.meta.check_fenced().await;
        self.noted(checked)
    }

    /// Passes a metadata result on, stopping the store first on fencing or an
    /// unknown outcome.
    fn noted<T>(&self, result: Result<T, strata_meta::MetaError>) -> Result<T, StreamError> {
        result.map_err(|e| {
            let e = StreamError::Meta(e);
            self.on_error(&e);
            e
        })
    }

    /// Commits `ops` in transactions of at most the store's limit. Only for
    /// ops that are independent of each other (see `docs/ownership.md`).
    pub(crate) async fn commit_chunked(&self, ops: Vec<Op>) -> Result<(), StreamError> {
        let max = self.shared.meta.max_txn_ops().max(1);
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<Op> = ops.by_ref().take(max).collect();
            self.commit(vec![], chunk).await?;
        }
        Ok(())
    }

    /// One metadata transaction; fencing and unknown outcomes stop the store.
    pub(crate) async fn commit(
        &self,
        conditions: Vec<strata_meta::Condition>,
        ops: Vec<Op>,
    ) -> Result<TxnOutcome, StreamError> {
        let outcome = self.shared.meta.txn(conditions, ops).await;
        self.noted(outcome)
    }

    pub(crate) fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream, creating it empty when it does not exist yet.
    pub fn open_stream(&self, id: StreamId) -> Arc<Stream> {
        let mut streams = self.lock_streams();
        Arc::clone(streams.entry(id).or_insert_with(|| {
            Arc::new(Stream::new(id, Arc::clone(&self.shared), &StreamMeta::default(), None))
        }))
    }

    /// The stream, if this process owns it (a broker of a cluster serves
    /// only those; [`StreamStore::open_stream`] would make an empty one).
    pub fn served(&self, id: StreamId) -> Option<Arc<Stream>> {
        self.lock_streams().get(&id).filter(|s| s.lock().owned).cloned()
    }

    /// The ids of the streams this process owns.
    pub fn served_ids(&self) -> Vec<StreamId> {
        self.lock_streams().iter().filter(|(_, s)| s.lock().owned).map(|(id, _)| *id).collect()
    }

    /// Takes ownership of `ids` for this process: each stream moves to its next
    /// leader epoch, starting at its next offset, each recorded conditional on
    /// the stream's record being as this process last saw it. Returns the new
    /// epochs; a stream another process took over meanwhile is
    /// [`StreamError::NotOwner`].
    pub async fn acquire(&self, ids: &[StreamId]) -> Result<Vec<i32>, StreamError> {
        let _guard = self.changes.lock().await;
        let mut work = Vec::new();
        let mut plans = Vec::new();
        for id in ids {
            let stream = self.open_stream(*id);
            let (epoch, next, mut meta) = {
                let inner = stream.lock();
                let epoch = if inner.epochs.is_empty() { 0 } else { inner.epoch() + 1 };
                (epoch, inner.next_offset, inner.meta())
            };
            meta.epochs.push((epoch, next));
            work.push((Arc::clone(&stream), vec![Op::Put(index::meta_key(*id), index::encode(&meta))]));
            plans.push((stream, epoch, next));
        }
        if work.is_empty() {
            return Ok(Vec::new());
        }
        // Each stream's epoch bump stands alone: parts may commit separately.
        let done = self.commit_owned(work).await?;
        plans
            .into_iter()
            .map(|(stream, epoch, next)| {
                let rev = *done.get(&stream.id()).ok_or(StreamError::NotOwner(stream.id()))?;
                let mut inner = stream.lock();
                inner.epochs.push((epoch, next));
                inner.meta_rev = Some(rev);
                Ok(epoch)
            })
            .collect()
    }

    /// Commits each stream's ops conditional on the stream's meta record
    /// being as this process last wrote or read it, packing whole streams into
    /// transactions of at most the store's limit. A stream whose record
    /// changed (another process took it over) is disowned and left out.
    /// Returns the revision at which each committed stream's ops landed.
    pub(crate) async fn commit_owned(
        &self,
        work: Vec<(Arc<Stream>, Vec<Op>)>,
    ) -> Result<HashMap<StreamId, strata_meta::Revision>, StreamError> {
        let max = self.shared.meta.max_txn_ops().max(1);
        let mut done = HashMap::new();
        let mut chunk: Vec<(Arc<Stream>, Vec<Op>)> = Vec::new();
        let mut ops_in_chunk = 0;
        for (stream, ops) in work {
            // One condition per stream counts against the limit too.
            if !chunk.is_empty() && (ops_in_chunk + ops.len() > max || chunk.len() + 1 > max) {
                self.commit_chunk(std::mem::take(&mut chunk), &mut done).await?;
                ops_in_chunk = 0;
            }
            ops_in_chunk += ops.len();
            chunk.push((stream, ops));
        }
        if !chunk.is_empty() {
            self.commit_chunk(chunk, &mut done).await?;
        }
        Ok(done)
    }

    async fn commit_chunk(
        &self,
        mut chunk: Vec<(Arc<Stream>, Vec<Op>)>,
        done: &mut HashMap<StreamId, strata_meta::Revision>,
    ) -> Result<(), StreamError> {
        while !chunk.is_empty() {
            let conditions = chunk.iter().map(|(s, _)| s.lock().owner_condition(s.id())).collect();
            let ops = chunk.iter().flat_map(|(_, ops)| ops.iter().cloned()).collect();
            match self.commit(conditions, ops).await? {
                TxnOutcome::Committed(rev) => {
                    for (s, ops) in &chunk {
                        // A stream whose record this commit rewrote (an
                        // epoch, a start, a fold) is owned at the new revision.
                        let key = index::meta_key(s.id());
                        if ops.iter().any(|op| matches!(op, Op::Put(k, _) if *k == key)) {
                            s.lock().meta_rev = Some(rev);
                        }
                    }
                    done.extend(chunk.iter().map(|(s, _)| (s.id(), rev)));
                    return Ok(());
                }
                TxnOutcome::Conflict => {
                    let before = chunk.len();
                    let mut kept = Vec::with_capacity(before);
                    for (stream, ops) in chunk {
                        if self.still_owned(&stream).await? {
                            kept.push((stream, ops));
                        }
                    }
                    if kept.len() == before {
                        return Err(StreamError::BadRecord {
                            key: index::STREAM_PREFIX.into(),
                            reason: "an index commit conflicted with no stream record changed".into(),
                        });
                    }
                    chunk = kept;
                }
            }
        }
        Ok(())
    }

    /// Reads the stream's meta record: unchanged since this process wrote or
    /// read it means still owned; otherwise the stream is disowned here.
    pub(crate) async fn still_owned(&self, stream: &Arc<Stream>) -> Result<bool, StreamError> {
        let now = self.shared.meta.get(&index::meta_key(stream.id())).await?.map(|e| e.mod_revision);
        if now == stream.lock().meta_rev {
            return Ok(true);
        }
        self.lose(stream);
        Ok(false)
    }

    /// Disowns a stream another process took over: appends are refused, and
    /// its tail stays pinned in the WAL until the new owner's index covers it.
    fn lose(&self, stream: &Arc<Stream>) {
        stream.disown();
        let mut streams = self.lock_streams();
        if streams.get(&stream.id()).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(&stream.id());
        }
        drop(streams);
        self.lock_handed_over().insert(stream.id(), Arc::clone(stream));
    }

    fn lock_handed_over(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Arc<Stream>>> {
        self.handed_over.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits one stream's ops, in transactions of at most the limit, each
    /// conditional on the stream being owned (for ops that are independent
    /// of each other). `NotOwner` once another process took it over.
    async fn commit_stream_ops(&self, stream: &Arc<Stream>, ops: Vec<Op>) -> Result<(), StreamError> {
        let max = self.shared.meta.max_txn_ops().max(1);
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let part: Vec<Op> = ops.by_ref().take(max).collect();
            let done = self.commit_owned(vec![(Arc::clone(stream), part)]).await?;
            if !done.contains_key(&stream.id()) {
                return Err(StreamError::NotOwner(stream.id()));
            }
        }
        Ok(())
    }

    /// Releases a stream this process owns, for another process to take over:
    /// appends are refused from now on, the accepted ones settle, then the
    /// tail is uploaded and indexed ([`Handover::Indexed`]) or left in this
    /// process's WAL ([`Handover::InWal`]). The stream's epoch is untouched:
    /// the next owner moves it on.
    pub async fn release(&self, id: StreamId, handover: Handover) -> Result<(), StreamError> {
        let Some(stream) = self.lock_streams().get(&id).cloned() else { return Ok(()) };
        if !stream.lock().owned {
            return Err(StreamError::NotOwner(id));
        }
        stream.stop_appends();
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        let mut commits = self.commits();
        while !stream.settled() {
            if tokio::time::Instant::now() >= deadline {
                return Err(StreamError::Unavailable(format!("appends to stream {id} did not settle")));
            }
            commits.borrow_and_update();
            let _ = tokio::time::timeout(Duration::from_millis(50), commits.changed()).await;
        }
        match handover {
            Handover::Indexed => {
                while !stream.lock().tail.is_empty() {
                    self.upload_streams(Some(id)).await?;
                    if !stream.lock().owned {
                        return Err(StreamError::NotOwner(id));
                    }
                }
                if let Some(s) = self.lock_streams().remove(&id) {
                    self.forget(&s);
                }
            }
            Handover::InWal => self.lose(&stream),
        }
        tracing::info!(stream = id, ?handover, "stream released");
        Ok(())
    }

    /// Drops a stream this process no longer owns, with its references.
    fn forget(&self, stream: &Arc<Stream>) {
        let objects: Vec<String> = stream.lock().ranges.values().map(|r| r.entry.object.clone()).collect();
        self.shared.refs.release(&objects);
        stream.close();
    }

    /// Drops handed-over streams whose tail the new owner's index covers (or
    /// that were deleted).
    async fn drop_covered_handovers(&self) -> Result<(), StreamError> {
        let held: Vec<Arc<Stream>> = self.lock_handed_over().values().cloned().collect();
        for stream in held {
            let id = stream.id();
            let end = stream.durable_end();
            let covered = if self.shared.meta.get(&index::deleted_key(id)).await?.is_some() {
                true
            } else {
                // The meta record names the manifest's end: its inline keys
                // alone may end below what is indexed.
                let (start, folded_end) = match self.shared.meta.get(&index::meta_key(id)).await? {
                    Some(e) => {
                        let m = decode::<StreamMeta>(&e.key, &e.value)?;
                        (m.start, m.index.map_or(m.start, |r| r.end))
                    }
                    None => (0, 0),
                };
                let mut indexed_end = start.max(folded_end);
                for e in self.shared.meta.list(&index::range_prefix(id)).await? {
                    indexed_end = indexed_end.max(decode::<RangeEntry>(&e.key, &e.value)?.end);
                }
                indexed_end >= end
            };
            if covered {
                let mut held = self.lock_handed_over();
                if held.get(&id).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
                    held.remove(&id);
                }
                drop(held);
                self.forget(&stream);
                tracing::debug!(stream = id, "handed-over tail covered by its new owner");
            }
        }
        Ok(())
    }

    /// Takes a stream over at leader epoch `epoch` (above its current one),
    /// whoever owned it: after the claim the previous owner can commit
    /// nothing more for it; what it had indexed is loaded, and what it left
    /// in its object WAL (`from_wal`: that WAL's prefix) is read, written
    /// into an object and indexed before the stream takes appends again.
    pub async fn take_over(
        &self,
        id: StreamId,
        epoch: i32,
        from_wal: Option<&str>,
    ) -> Result<Arc<Stream>, StreamError> {
        let mut taken = self.take_over_many(&[(id, epoch)], from_wal).await;
        taken.pop().map_or(Err(StreamError::NotOwner(id)), |(_, r)| r)
    }

    /// [`StreamStore::take_over`] of several streams from one previous
    /// owner: every claim first, then one read of its WAL for all of them
    /// and one object of their tails (a dead broker's streams fail over
    /// together; reading its WAL once per stream would take seconds each).
    /// One result per stream, with its id (not in the order asked).
    pub async fn take_over_many(
        &self,
        streams: &[(StreamId, i32)],
        from_wal: Option<&str>,
    ) -> Vec<(StreamId, Result<Arc<Stream>, StreamError>)> {
        let _guard = self.changes.lock().await;
        let mut out = Vec::with_capacity(streams.len());
        // 1-2. The claims, and the indexes read after them.
        // (Concurrently: each is a few metadata round trips of its own.)
        let claims =
            futures::future::join_all(streams.iter().map(|&(id, epoch)| self.claim(id, epoch))).await;
        let mut claimed = Vec::new();
        for (&(id, _), c) in streams.iter().zip(claims) {
            match c {
                Ok(c) => claimed.push(c),
                Err(e) => out.push((id, Err(e))),
            }
        }
        // 3. The previous owner's WAL tail, by the replay rules.
        let mut tails: HashMap<StreamId, Vec<(BatchInfo, Bytes)>> = HashMap::new();
        if let Some(prefix) = from_wal
            && !claimed.is_empty()
        {
            let names = WalNames::new(prefix);
            let wanted: HashSet<StreamId> = claimed.iter().map(|c| c.id).collect();
            let read = crate::wal::object::read_for_streams(
                &self.shared.objects,
                &self.shared.meta,
                &names,
                &wanted,
            )
            .await;
            let records =
                match read {
                    Ok(r) => r,
                    Err(e) => {
                        // Claimed but not taken: the next attempt claims again.
                        let why = e.to_string();
                        out.extend(claimed.into_iter().map(|c| {
                            (c.id, Err(StreamError::Unavailable(format!("reading {prefix}: {why}"))))
                        }));
                        return out;
                    }
                };
            // Each stream's indexed end and its last leader epoch. Only that
            // leader's batches are recovered: its WAL may also hold batches
            // it wrote in an earlier leadership of the stream, after it had
            // lost it (a zombie's write that landed past the new owner's
            // read). Those were never acknowledged, and their offsets were
            // given again by the owners after it.
            let mut ends: HashMap<StreamId, (i64, Option<i32>)> =
                claimed.iter().map(|c| (c.id, (c.end, c.meta.epochs.last().map(|(e, _)| *e)))).collect();
            for r in records {
                let info = r.info();
                let stream = r.record.stream_id;
                let Some((end, last_epoch)) = ends.get_mut(&stream) else { continue };
                if last_epoch.is_some_and(|e| e != info.meta.leader_epoch) {
                    continue;
                }
                // Offsets are final (rule 5): a batch whose offsets are
                // already covered is never served twice.
                if info.base_offset < *end {
                    continue;
                }
                *end = info.end_offset();
                tails.entry(stream).or_default().push((info, r.record.payload));
            }
        }
        // 4. Those batches become one object, indexed under each claim.
        let mut written: HashMap<StreamId, Vec<RangeEntry>> = HashMap::new();
        let sections: Vec<(StreamId, Vec<(BatchInfo, Bytes)>)> = tails.into_iter().collect();
        let recovered: HashMap<StreamId, usize> = sections.iter().map(|(id, b)| (*id, b.len())).collect();
        let mut _unprotect = None;
        if !sections.is_empty() {
            match self.write_object(sections).await {
                Ok((entries, guard)) => {
                    _unprotect = Some(guard);
                    for (id, r) in entries {
                        written.entry(id).or_default().push(r);
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    out.extend(claimed.into_iter().map(|c| {
                        (c.id, Err(StreamError::Unavailable(format!("writing the recovered tails: {why}"))))
                    }));
                    return out;
                }
            }
        }
        // 5. Each stream's new epoch, from where its data ends.
        let finishing = claimed.into_iter().map(|c| {
            let (id, ranges) = (c.id, written.remove(&c.id).unwrap_or_default());
            let n = recovered.get(&id).copied().unwrap_or(0);
            async move { (id, self.finish_take_over(c, ranges, n).await) }
        });
        out.extend(futures::future::join_all(finishing.collect::<Vec<_>>()).await);
        out
    }

    /// A takeover's claim: the stream's meta record rewritten (so that every
    /// later index commit of the previous owner conflicts) and its index
    /// read after it.
    async fn claim(&self, id: StreamId, epoch: i32) -> Result<Claimed, StreamError> {
        if self.shared.meta.get(&index::deleted_key(id)).await?.is_some() {
            return Err(StreamError::Closed(id));
        }
        if self.lock_streams().get(&id).is_some_and(|s| s.lock().owned) {
            return Err(StreamError::StaleEpoch { stream: id, asked: epoch, current: epoch });
        }
        let key = index::meta_key(id);
        let (meta, rev) = match self.shared.meta.get(&key).await? {
            Some(e) => (decode::<StreamMeta>(&e.key, &e.value)?, Some(e.mod_revision)),
            None => (StreamMeta::default(), None),
        };
        let current = meta.epochs.last().map(|(e, _)| *e);
        if current.is_some_and(|c| c >= epoch) {
            return Err(StreamError::StaleEpoch { stream: id, asked: epoch, current: current.unwrap_or(0) });
        }
        let claim = match rev {
            Some(r) => strata_meta::Condition::Version(key.clone(), r),
            None => strata_meta::Condition::Absent(key.clone()),
        };
        let TxnOutcome::Committed(claimed) =
            self.commit(vec![claim], vec![Op::Put(key.clone(), index::encode(&meta))]).await?
        else {
            return Err(StreamError::NotOwner(id));
        };
        let stored = self.read_index(id).await?;
        if stored.rev != Some(claimed) {
            return Err(StreamError::NotOwner(id));
        }
        let end = stored.end();
        Ok(Claimed { id, epoch, meta, claimed, end, ranges: stored.ranges })
    }

    /// Indexes a claimed stream's recovered tail (`recovered`, in objects
    /// already written) and records its new epoch from where its data ends.
    async fn finish_take_over(
        &self,
        c: Claimed,
        recovered: Vec<RangeEntry>,
        batches: usize,
    ) -> Result<Arc<Stream>, StreamError> {
        let Claimed { id, epoch, mut meta, claimed, mut end, mut ranges } = c;
        let key = index::meta_key(id);
        let owner = strata_meta::Condition::Version(key.clone(), claimed);
        if !recovered.is_empty() {
            let ops: Vec<Op> =
                recovered.iter().map(|r| Op::Put(index::range_key(id, r.start), index::encode(r))).collect();
            if let TxnOutcome::Conflict = self.commit(vec![owner.clone()], ops).await? {
                return Err(StreamError::NotOwner(id));
            }
            end = end.max(recovered.iter().map(|r| r.end).max().unwrap_or(end));
            ranges.extend(recovered.into_iter().map(|r| (r, true)));
        }
        meta.epochs.push((epoch, end));
        let TxnOutcome::Committed(rev) =
            self.commit(vec![owner], vec![Op::Put(key, index::encode(&meta))]).await?
        else {
            return Err(StreamError::NotOwner(id));
        };
        let stream = Arc::new(Stream::new(id, Arc::clone(&self.shared), &meta, Some(rev)));
        self.shared.refs.add(ranges.iter().map(|(r, _)| r.object.as_str()));
        for (r, inline) in ranges {
            stream.load_range(r, inline);
        }
        if let Some(old) = self.lock_streams().insert(id, Arc::clone(&stream)) {
            self.forget(&old);
        }
        tracing::info!(stream = id, epoch, end, recovered = batches, "stream taken over");
        Ok(stream)
    }

    /// Builds one object of `sections` (each a stream's batches in offset
    /// order) and writes it; returns each stream's range entry in it.
    /// The object stays protected from the orphan sweep, from before its PUT
    /// until the returned guard drops (after the caller's index commit).
    pub(crate) async fn write_object(
        &self,
        sections: Vec<(StreamId, Vec<(BatchInfo, Bytes)>)>,
    ) -> Result<(Vec<(StreamId, RangeEntry)>, Unprotect<'_>), StreamError> {
        // Building copies every byte: keep it off the async workers.
        let (data, secs) = tokio::task::spawn_blocking(move || object_format::build(&sections))
            .await
            .map_err(|e| StreamError::Io(std::io::Error::other(e)))?;
        let name = format!("data/{}.obj", uuid::Uuid::new_v4().simple());
        let size = data.len() as u64;
        self.protected.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone());
        let protected = Unprotect { store: self, name: name.clone() };
        self.shared.objects.put(&Path::from(name.as_str()), PutPayload::from_bytes(data)).await?;
        let entries = secs
            .into_iter()
            .map(|s| {
                (
                    s.stream,
                    RangeEntry {
                        object: name.clone(),
                        start: s.start,
                        end: s.end,
                        max_ts: s.max_ts,
                        bytes: s.bytes,
                        object_size: size,
                        index_pos: s.index_pos,
                        index_len: s.index_len,
                    },
                )
            })
            .collect();
        Ok((entries, protected))
    }

    /// Deletes a stream: its index entries go, its objects become garbage once
    /// no other stream references them, and its WAL records are ignored.
    pub async fn delete_stream(&self, id: StreamId) -> Result<(), StreamError> {
        let _guard = self.changes.lock().await;
        let stream = self.lock_streams().get(&id).cloned();
        // The tombstone first: once it is committed, open ignores the
        // stream's remaining records, so the rest may commit in parts.
        let tombstone =
            vec![Op::Put(index::deleted_key(id), Bytes::from_static(b"{}")), Op::Delete(index::meta_key(id))];
        let mut ops = Vec::new();
        let mut objects = Vec::new();
        match &stream {
            Some(s) => {
                let done = self.commit_owned(vec![(Arc::clone(s), tombstone)]).await?;
                if !done.contains_key(&id) {
                    return Err(StreamError::NotOwner(id));
                }
                let mut inner = s.lock();
                inner.meta_rev = None;
                for r in inner.ranges.values() {
                    if inner.inline.contains(&r.entry.start) {
                        ops.push(Op::Delete(index::range_key(id, r.entry.start)));
                    }
                    objects.push(r.entry.object.clone());
                }
                if let Some(m) = inner.index.take() {
                    ops.push(self.garbage_op(&m.object));
                }
            }
            None => {
                self.commit(vec![], tombstone).await?;
            }
        }
        ops.extend(self.release_objects(&objects));
        match &stream {
            Some(s) => self.commit_stream_ops(s, ops).await?,
            None => self.commit_chunked(ops).await?,
        }
        self.commit_release(&objects);
        self.deleted.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        if let Some(s) = self.lock_streams().remove(&id) {
            s.close();
        }
        Ok(())
    }

    /// Moves a stream's start offset forward to `new_start` (at most its end):
    /// ranges wholly before it leave the index. Returns the start after the call.
    pub async fn trim(&self, stream: &Arc<Stream>, new_start: i64) -> Result<i64, StreamError> {
        let _guard = self.changes.lock().await;
        let id = stream.id();
        let (meta, dropped) = {
            let inner = stream.lock();
            if new_start > inner.durable_end {
                return Err(StreamError::OutOfRange {
                    offset: new_start,
                    start: inner.start_offset,
                    end: inner.durable_end,
                });
            }
            if new_start <= inner.start_offset {
                return Ok(inner.start_offset);
            }
            let mut meta = inner.meta();
            meta.start = new_start;
            let dropped: Vec<(i64, String)> = inner
                .ranges
                .values()
                .filter(|r| r.entry.end <= new_start)
                .map(|r| (r.entry.start, r.entry.object.clone()))
                .collect();
            (meta, dropped)
        };
        let objects: Vec<String> = dropped.iter().map(|(_, o)| o.clone()).collect();
        // The start moves first (its own transaction): range deletes and gc
        // records below it may then commit in parts.
        let moved = self.commit_owned(vec![(
            Arc::clone(stream),
            vec![Op::Put(index::meta_key(id), index::encode(&meta))],
        )]);
        let Some(rev) = moved.await?.get(&id).copied() else { return Err(StreamError::NotOwner(id)) };
        {
            // The record says so now (and a fold below rewrites it from
            // here); `commit_owned` moved the stream to its revision.
            let mut inner = stream.lock();
            debug_assert_eq!(inner.meta_rev, Some(rev));
            inner.start_offset = inner.start_offset.max(new_start);
        }
        let starts: Vec<i64> = dropped.iter().map(|(start, _)| *start).collect();
        let mut edit = self.plan_index_edit(stream, &starts, &[], 0).await?;
        let ops = edit.take_ops();
        if edit.folds() {
            // A fold is one transaction.
            if !self.commit_owned(vec![(Arc::clone(stream), ops)]).await?.contains_key(&id) {
                self.discard_index_edit(edit).await;
                return Err(StreamError::NotOwner(id));
            }
        } else {
            // Deletes of ranges below the start stand alone.
            self.commit_stream_ops(stream, ops).await?;
        }
        self.apply_index_edit(stream, edit);
        self.commit_stream_ops(stream, self.release_objects(&objects)).await?;
        self.commit_release(&objects);
        let mut inner = stream.lock();
        inner.start_offset = inner.start_offset.max(new_start);
        for (start, _) in &dropped {
            inner.ranges.remove(start);
        }
        inner.drop_tail(&self.shared, Some(new_start));
        Ok(inner.start_offset)
    }

    /// Moves what waits in the WAL into one object, commits its index entries,
    /// then advances the WAL checkpoint and deletes WAL segments before it.
    pub async fn upload_once(&self) -> Result<usize, StreamError> {
        self.upload_streams(None).await
    }

    /// One upload of every stream's tail, or of one stream's (`only`).
    async fn upload_streams(&self, only: Option<StreamId>) -> Result<usize, StreamError> {
        let _guard = self.changes.lock().await;
        self.drop_covered_handovers().await?;
        // Read the durable segment before looking at tails (see `Wal`).
        let durable_segment = self.shared.wal.durable_segment();
        let mut streams: Vec<Arc<Stream>> = self.lock_streams().values().cloned().collect();
        streams.extend(self.lock_handed_over().values().cloned());
        streams.sort_by_key(|s| s.id());
        let mut budget = self.config.max_object_bytes;
        let mut picked = Vec::new();
        for s in &streams {
            if budget == 0 {
                break;
            }
            if only.is_some_and(|id| id != s.id()) {
                continue;
            }
            let candidates = s.upload_candidates(budget)?;
            if candidates.is_empty() {
                continue;
            }
            budget = budget.saturating_sub(candidates.iter().map(|(i, _)| i.size as usize).sum());
            picked.push((Arc::clone(s), candidates));
        }
        let mut uploaded = 0usize;
        if !picked.is_empty() {
            let mut sections = Vec::with_capacity(picked.len());
            for (s, candidates) in picked.iter_mut() {
                let batches = crate::wal::read_sources(std::mem::take(candidates)).await?;
                sections.push((s.id(), batches.into_iter().map(|b| (b.info, b.data)).collect::<Vec<_>>()));
            }
            uploaded = sections.iter().flat_map(|(_, b)| b.iter().map(|(_, d)| d.len())).sum();
            // A stream with many bytes waiting gets an object of its own (no
            // compaction needed later); the rest share one.
            let split = self.config.split_bytes;
            let (own, shared): (Vec<_>, Vec<_>) = sections
                .into_iter()
                .partition(|(_, b)| b.iter().map(|(_, d)| d.len()).sum::<usize>() >= split);
            let mut objects: Vec<Vec<_>> = own.into_iter().map(|s| vec![s]).collect();
            if !shared.is_empty() {
                objects.push(shared);
            }
            let written =
                futures::future::try_join_all(objects.into_iter().map(|o| self.write_object(o))).await?;
            let (entries, _unprotect): (Vec<_>, Vec<_>) = written.into_iter().unzip();
            crate::failpoint::reached("upload");
            let entries: Vec<(StreamId, RangeEntry)> = entries.into_iter().flatten().collect();
            // Streams deleted meanwhile must not get entries back.
            let live: Vec<(StreamId, RangeEntry)> = {
                let deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
                entries.into_iter().filter(|(id, _)| !deleted.contains(id)).collect()
            };
            let by_id: HashMap<StreamId, Arc<Stream>> =
                picked.iter().map(|(s, _)| (s.id(), Arc::clone(s))).collect();
            let mut work: Vec<(Arc<Stream>, Vec<Op>)> = Vec::new();
            let mut edits: HashMap<StreamId, crate::manifest::IndexEdit> = HashMap::new();
            let mut added: BTreeMap<StreamId, Vec<RangeEntry>> = BTreeMap::new();
            for (id, r) in &live {
                added.entry(*id).or_default().push(r.clone());
            }
            // Folds write their manifests here: many at once.
            let planned = futures::stream::iter(added.into_iter().filter_map(|(id, rs)| {
                let s = Arc::clone(by_id.get(&id)?);
                Some(async move { self.plan_index_edit(&s, &[], &rs, 0).await.map(|e| (s, e)) })
            }));
            let planned: Vec<(Arc<Stream>, crate::manifest::IndexEdit)> =
                futures::TryStreamExt::try_collect(futures::StreamExt::buffered(planned, 32)).await?;
            for (s, mut edit) in planned {
                work.push((Arc::clone(&s), edit.take_ops()));
                edits.insert(s.id(), edit);
            }
            if !work.is_empty() {
                // Split by streams: each part indexes complete ranges; the
                // checkpoint moves only after every part (replay skips what a
                // range already covers). A stream another process took over
                // is left out (its new owner indexes it).
                let done = self.commit_owned(work).await?;
                for (id, edit) in edits {
                    match by_id.get(&id) {
                        Some(s) if done.contains_key(&id) => self.apply_index_edit(s, edit),
                        _ => self.discard_index_edit(edit).await,
                    }
                }
                let live: Vec<(StreamId, RangeEntry)> =
                    live.into_iter().filter(|(id, _)| done.contains_key(id)).collect();
                self.shared.refs.add(live.iter().map(|(_, r)| r.object.as_str()));
                for (id, r) in live {
                    if let Some(s) = by_id.get(&id) {
                        s.on_uploaded(r);
                    }
                }
            }
            tracing::debug!(bytes = uploaded, streams = picked.len(), "uploaded wal tail");
        }
        // Advance the checkpoint to the oldest segment still needed.
        let oldest = streams.iter().filter_map(|s| s.oldest_wal_segment()).min();
        let segment = oldest.map_or(durable_segment, |o| o.min(durable_segment));
        let current: Checkpoint = match self.shared.meta.get(&self.names.checkpoint_key()).await? {
            Some(e) => decode(&e.key, &e.value)?,
            None => Checkpoint::default(),
        };
        if segment > current.segment {
            let cp = Checkpoint { segment, position: 0 };
            self.commit(vec![], vec![Op::Put(self.names.checkpoint_key(), index::encode(&cp))]).await?;
            self.shared.wal.delete_before(segment).await;
        }
        Ok(uploaded)
    }

    /// A receiver whose value changes after every group commit: a cheap way for
    /// readers waiting for new data to be woken.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Waits while more than `limit` bytes are queued for the WAL writer, so
    /// that producers that do not wait for acks (acks=0) cannot fill memory.
    pub async fn wal_room(&self, limit: usize) {
        if self.shared.wal.queued_bytes() <= limit {
            return; // the common case: no receiver to set up
        }
        let mut commits = self.commits();
        while self.shared.wal.queued_bytes() > limit && !self.shared.wal.is_failed() {
            commits.borrow_and_update();
            if self.shared.wal.queued_bytes() <= limit {
                return;
            }
            if tokio::time::timeout(Duration::from_millis(100), commits.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return;
            }
        }
    }

    /// Whether the WAL has failed (appends are refused).
    pub fn is_failed(&self) -> bool {
        self.shared.wal.is_failed()
    }

    /// Live figures for metrics.
    pub fn stats(&self) -> StoreStats {
        let streams: Vec<Arc<Stream>> = self.lock_streams().values().cloned().collect();
        StoreStats {
            streams: streams.len(),
            ranges: streams.iter().map(|s| s.lock().ranges.len()).sum(),
            objects: self.shared.refs.len(),
            upload_backlog_bytes: self.shared.pending_upload.load(std::sync::atomic::Ordering::Relaxed),
            tail_cache_bytes: self.shared.tail_budget.used(),
            block_cache_bytes: self.shared.blocks.weight(),
            appended_bytes: self.shared.appended_bytes.load(std::sync::atomic::Ordering::Relaxed),
            tail_cache_lookups: crate::shared::cache_lookups(crate::shared::CacheKind::Tail),
            block_cache_lookups: crate::shared::cache_lookups(crate::shared::CacheKind::Block),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use strata_meta::EmbeddedStore;

    struct Env {
        dir: tempfile::TempDir,
        objects: Arc<dyn ObjectStore>,
    }

    impl Env {
        fn new() -> Self {
            Env { dir: tempfile::tempdir().expect("tempdir"), objects: Arc::new(InMemory::new()) }
        }
        async fn open(&self, tweak: impl Fn(&mut StreamStoreConfig)) -> Arc<StreamStore> {
            let meta: Arc<dyn MetaStore> =
                Arc::new(EmbeddedStore::open(Arc::clone(&self.objects), "meta").await.expect("meta"));
            let mut cfg = StreamStoreConfig::new(self.dir.path().join("wal"));
            cfg.segment_bytes = 300;
            cfg.gc_grace = Duration::from_millis(0);
            tweak(&mut cfg);
            StreamStore::open(cfg, Arc::clone(&self.objects), meta).await.expect("open")
        }

        /// One metadata store for several stream stores (a cluster's).
        async fn shared_meta(&self) -> Arc<dyn MetaStore> {
            Arc::new(EmbeddedStore::open(Arc::clone(&self.objects), "meta").await.expect("meta"))
        }

        /// A store of a cluster's member: its own WAL prefix on the shared
        /// bucket and `meta`, streams owned only once taken over.
        async fn member(
            &self,
            meta: &Arc<dyn MetaStore>,
            prefix: &str,
            tweak: impl Fn(&mut StreamStoreConfig),
        ) -> Arc<StreamStore> {
            let mut cfg = StreamStoreConfig::new(self.dir.path().join(prefix));
            cfg.wal_prefix = prefix.into();
            cfg.own_all_at_open = false;
            tweak(&mut cfg);
            StreamStore::open(cfg, Arc::clone(&self.objects), Arc::clone(meta)).await.expect("open")
        }
    }

    async fn append(s: &Arc<Stream>, i: u32) -> i64 {
        let n = i % 3 + 1;
        s.append(n, i64::from(i) * 10, |off, epoch| Bytes::from(format!("b{i}@{off}e{epoch}")))
            .expect("append")
            .durable()
            .await
            .expect("durable")
    }

    async fn texts(s: &Stream, from: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = from;
        loop {
            let batches = s.read(at, 64).await.expect("read");
            if batches.is_empty() {
                return out;
            }
            for b in batches {
                at = b.info.end_offset();
                out.push(String::from_utf8(b.data.to_vec()).expect("utf8"));
            }
        }
    }

    #[tokio::test]
    async fn wal_to_objects_replay_trim_and_gc() {
        let env = Env::new();
        let store = env.open(|_| {}).await;
        assert_eq!(store.acquire(&[1, 2]).await.expect("acquire"), vec![0, 0]);
        let (a, b) = (store.open_stream(1), store.open_stream(2));
        for i in 0..30 {
            append(if i % 2 == 0 { &a } else { &b }, i).await;
        }
        let before = texts(&a, 0).await;
        assert_eq!(before.len(), 15);
        assert!(store.upload_once().await.expect("upload") > 0);
        // Everything now reads from the object, identically, and the WAL shrank.
        assert!(a.lock().tail.is_empty());
        assert_eq!(texts(&a, 0).await, before);
        let mid = a.read(0, 1).await.expect("read")[0].info.end_offset();
        assert_eq!(texts(&a, mid).await, before[1..].to_vec());
        // More appends stay in the tail; reads cross from the object to the tail.
        for i in 30..34 {
            append(&a, i).await;
        }
        assert_eq!(texts(&a, 0).await.len(), 19);
        let found = a.find_by_timestamp(300, 0).await.expect("find").expect("batch");
        assert!(found.meta.max_timestamp >= 300);
        drop((a, b));
        drop(store);

        // Reopen: index from metadata, tail from the WAL, next epoch on acquire.
        let store = env.open(|_| {}).await;
        let a = store.open_stream(1);
        assert_eq!(texts(&a, 0).await.len(), 19);
        assert_eq!(store.acquire(&[1]).await.expect("acquire"), vec![1]);
        let (_, end) = a.offsets();
        assert_eq!(a.epoch_end(0), Some((0, end)));
        let off = append(&a, 99).await;
        assert_eq!(off, end);
        assert_eq!(a.epoch_end(0), Some((0, end)));
        assert_eq!(a.epoch_end(1).map(|(e, _)| e), Some(1));
        assert!(texts(&a, off).await[0].ends_with("e1"));

        // Trim past the object: its range leaves the index; once stream 2 is
        // deleted too, the object is unreferenced and collected.
        store.upload_once().await.expect("upload");
        let ranges = a.ranges();
        let first_end = ranges[0].1;
        assert_eq!(store.trim(&a, first_end).await.expect("trim"), first_end);
        assert!(a.read(0, 10).await.is_err());
        assert_eq!(a.ranges().len(), ranges.len() - 1);
        store.delete_stream(2).await.expect("delete");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(store.collect_garbage().await.expect("gc") >= 1);
        assert!(!texts(&a, first_end).await.is_empty());
        drop(a);
        drop(store);
        let store = env.open(|_| {}).await;
        let a = store.open_stream(1);
        assert_eq!(a.offsets().0, first_end);
        assert!(store.open_stream(2).offsets() == (0, 0), "deleted stream stays empty");
    }

    #[tokio::test]
    async fn torn_wal_tail_is_cut_on_replay() {
        let env = Env::new();
        let store = env.open(|c| c.segment_bytes = 1 << 20).await;
        let a = store.open_stream(7);
        for i in 0..5 {
            append(&a, i).await;
        }
        drop(a);
        drop(store);
        let mut segs: Vec<_> = std::fs::read_dir(env.dir.path().join("wal"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        segs.sort();
        let last = segs.last().expect("segment").clone();
        let mut data = std::fs::read(&last).expect("read seg");
        data.extend_from_slice(&[0, 0, 1, 0, 9, 9, 9]);
        std::fs::write(&last, data).expect("write");
        let store = env.open(|c| c.segment_bytes = 1 << 20).await;
        let a = store.open_stream(7);
        assert_eq!(texts(&a, 0).await.len(), 5);
        let end = a.offsets().1;
        assert_eq!(append(&a, 5).await, end);
    }

    #[tokio::test]
    async fn preallocated_segments_replay_and_continue() {
        let env = Env::new();
        // Small segments so that several are zero-filled ahead and rolled into.
        let preallocated = |c: &mut StreamStoreConfig| {
            c.segment_bytes = 4096;
            c.wal_preallocate = true;
        };
        let store = env.open(preallocated).await;
        let a = store.open_stream(5);
        for i in 0..400 {
            append(&a, i).await;
        }
        let wal = env.dir.path().join("wal");
        let zero_tailed = std::fs::read_dir(&wal)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
            .filter(|e| std::fs::read(e.path()).map(|d| d.last() == Some(&0)).unwrap_or(false))
            .count();
        assert!(zero_tailed > 0, "some segments were preallocated with zeros");
        let before = texts(&a, 0).await;
        drop(a);
        drop(store);
        // Replay reads through zero tails of sealed and open segments alike.
        let store = env.open(preallocated).await;
        let a = store.open_stream(5);
        assert_eq!(texts(&a, 0).await, before);
        let end = a.offsets().1;
        assert_eq!(append(&a, 7).await, end);
        drop(a);
        drop(store);
        let store = env.open(|c| c.segment_bytes = 4096).await;
        assert_eq!(store.open_stream(5).offsets().1, end + 2);
    }

    #[tokio::test]
    async fn tail_cache_budget_falls_back_to_the_wal_file() {
        let env = Env::new();
        let store = env.open(|c| c.tail_cache_bytes = 10).await;
        let a = store.open_stream(3);
        for i in 0..10 {
            append(&a, i).await;
        }
        assert!(store.stats().tail_cache_bytes <= 10);
        assert_eq!(texts(&a, 0).await.len(), 10);
    }

    mod faults {
        use super::*;
        use crate::object_stores::{Fault, FaultyStore, Operation, RetryConfig, RetryingStore};
        use crate::{OrphanSweep, Stop};

        fn quick_retry() -> RetryConfig {
            RetryConfig {
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                attempt_timeout: Duration::from_millis(200),
                deadline: Duration::from_millis(600),
            }
        }

        /// A store whose data objects and metadata manifests go through separate
        /// fault injectors (over one in-memory bucket), data through retries.
        struct FaultEnv {
            dir: tempfile::TempDir,
            bucket: Arc<dyn ObjectStore>,
            data: FaultyStore,
            meta: FaultyStore,
            retry: RetryConfig,
            block_bytes: u64,
        }

        impl FaultEnv {
            fn new() -> Self {
                let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
                FaultEnv {
                    dir: tempfile::tempdir().expect("tempdir"),
                    data: FaultyStore::new(Arc::clone(&bucket)),
                    meta: FaultyStore::new(Arc::clone(&bucket)),
                    retry: quick_retry(),
                    block_bytes: 1 << 20,
                    bucket,
                }
            }
            async fn open(&self) -> Arc<StreamStore> {
                let meta: Arc<dyn MetaStore> =
                    Arc::new(EmbeddedStore::open(Arc::new(self.meta.clone()), "meta").await.expect("meta"));
                let data: Arc<dyn ObjectStore> =
                    Arc::new(RetryingStore::new(Arc::new(self.data.clone()), self.retry));
                let mut cfg = StreamStoreConfig::new(self.dir.path().join("wal"));
                cfg.gc_grace = Duration::ZERO;
                cfg.orphan_age = Duration::ZERO;
                cfg.block_bytes = self.block_bytes;
                cfg.compaction.target_bytes = 1 << 20;
                cfg.compaction.min_ranges = 4;
                StreamStore::open(cfg, data, meta).await.expect("open")
            }
            async fn object_count(&self) -> usize {
                use futures::TryStreamExt;
                let all: Vec<_> =
                    self.bucket.list(Some(&Path::from("data"))).try_collect().await.expect("list");
                all.len()
            }
        }

        #[tokio::test]
        async fn a_completion_waits_for_the_real_outcome_past_an_early_timeout_answer() {
            let env = FaultEnv::new();
            let meta: Arc<dyn MetaStore> =
                Arc::new(EmbeddedStore::open(Arc::new(env.meta.clone()), "meta").await.expect("meta"));
            let mut cfg = StreamStoreConfig::new(env.dir.path().join("wal"));
            cfg.wal =
                WalKind::Object(crate::ObjectWalConfig { flush_delay: Duration::ZERO, flush_bytes: 1 << 20 });
            let store = StreamStore::open(cfg, Arc::new(env.data.clone()), meta).await.expect("open");
            let a = store.open_stream(1);
            append(&a, 0).await;
            let mut expected = texts(&a, 0).await;
            expected.push("stalled".into());
            // WAL PUTs fail: the append gets the early "not in time" answer,
            // its completion does not resolve on it.
            env.data.set_on(Operation::Put, "wal/", Fault::FailAlways);
            let (appended, completion) =
                a.append_tracked(1, 0, |_, _| Bytes::from_static(b"stalled")).expect("accepted");
            assert!(matches!(appended.durable().await, Err(StreamError::AckTimeout)));
            let mut waiting = completion.clone();
            assert!(
                tokio::time::timeout(Duration::from_millis(300), waiting.wait()).await.is_err(),
                "a completion resolved on the early answer"
            );
            assert_eq!(a.offsets().1, 1, "not durable yet");
            // The store recovers: the flush lands at the offsets it was given,
            // and every holder of the completion learns it.
            env.data.clear();
            let mut second = completion.clone();
            tokio::time::timeout(Duration::from_secs(10), waiting.wait())
                .await
                .expect("resolved once the flush landed")
                .expect("durable");
            second.wait().await.expect("every holder sees the same outcome");
            assert_eq!(texts(&a, 0).await, expected);
        }

        #[tokio::test]
        async fn a_file_wal_acknowledges_nothing_once_a_newer_owner_exists() {
            let env = FaultEnv::new();
            let a = env.open().await;
            let s = a.open_stream(1);
            append(&s, 0).await;
            // A second owner of the prefix, with its own data dir.
            let other = tempfile::tempdir().expect("tempdir");
            let meta: Arc<dyn MetaStore> =
                Arc::new(EmbeddedStore::open(Arc::clone(&env.bucket), "meta").await.expect("meta"));
            let b = StreamStore::open(
                StreamStoreConfig::new(other.path().join("wal")),
                Arc::clone(&env.bucket),
                meta,
            )
            .await
            .expect("open b");
            // No fence poll ran in A: the write itself is confirmed.
            let late = s.append(1, 0, |_, _| Bytes::from_static(b"late")).expect("accepted");
            assert!(
                matches!(late.durable().await, Err(StreamError::Fenced)),
                "a zombie acknowledged a write"
            );
            assert!(matches!(s.append(1, 0, |_, _| Bytes::new()), Err(StreamError::Fenced)));
            assert!(b.open_stream(2).append(1, 0, |_, _| Bytes::from_static(b"b")).is_ok());
        }

        #[tokio::test]
        async fn transient_put_failures_are_retried() {
            let env = FaultEnv::new();
            let store = env.open().await;
            let a = store.open_stream(1);
            for i in 0..5 {
                append(&a, i).await;
            }
            env.data.set(Operation::Put, Fault::Fail(3));
            assert!(store.upload_once().await.expect("retried upload") > 0);
            assert!(a.lock().tail.is_empty());
            assert_eq!(texts(&a, 0).await.len(), 5);
        }

        #[tokio::test]
        async fn failing_or_hanging_object_puts_fail_the_upload_and_keep_the_tail() {
            for fault in [Fault::FailAlways, Fault::Hang] {
                let env = FaultEnv::new();
                let store = env.open().await;
                let a = store.open_stream(1);
                for i in 0..5 {
                    append(&a, i).await;
                }
                let before = texts(&a, 0).await;
                env.data.set(Operation::Put, fault);
                let started = std::time::Instant::now();
                assert!(store.upload_once().await.is_err(), "{fault:?}");
                assert!(started.elapsed() < Duration::from_secs(5), "{fault:?} did not hang the upload");
                // Nothing indexed, the tail still serves reads, appends go on.
                assert!(a.ranges().is_empty());
                assert_eq!(texts(&a, 0).await, before);
                append(&a, 5).await;
                env.data.clear();
                assert!(store.upload_once().await.expect("upload after recovery") > 0);
                assert_eq!(a.ranges().len(), 1);
                assert_eq!(texts(&a, 0).await.len(), 6);
            }
        }

        #[tokio::test]
        async fn a_failed_index_commit_stops_the_store_and_a_restart_loses_nothing() {
            let env = FaultEnv::new();
            let store = env.open().await;
            store.acquire(&[1]).await.expect("acquire");
            let a = store.open_stream(1);
            for i in 0..5 {
                append(&a, i).await;
            }
            let before = texts(&a, 0).await;
            env.meta.set(Operation::Put, Fault::FailAlways);
            assert!(store.upload_once().await.is_err());
            assert_eq!(env.object_count().await, 1, "the object was written");
            assert!(a.ranges().is_empty(), "but not indexed");
            // The commit's outcome is unknown: the store stops rather than
            // build on a view it cannot trust, and refuses appends.
            assert_eq!(store.stopped(), Some(Stop::OutcomeUnknown));
            assert!(matches!(a.append(1, 0, |_, _| Bytes::from_static(b"x")), Err(StreamError::Fenced)));
            env.meta.clear();
            drop(a);
            drop(store);
            // The restart reads back: every batch once, from the WAL.
            let store = env.open().await;
            let a = store.open_stream(1);
            assert_eq!(texts(&a, 0).await, before);
            store.upload_once().await.expect("upload after the restart");
            assert_eq!(a.ranges().len(), 1);
            assert_eq!(texts(&a, 0).await, before);
            // The first object is an orphan: the sweep removes it, and only it.
            assert_eq!(env.object_count().await, 2);
            let sweep = store.sweep_orphans().await.expect("sweep");
            assert_eq!(sweep.data_objects, 1);
            assert_eq!(env.object_count().await, 1);
            assert_eq!(texts(&a, 0).await, before);
            drop(a);
            drop(store);
            // After a restart the index and the WAL agree: every batch once.
            let store = env.open().await;
            let a = store.open_stream(1);
            assert_eq!(texts(&a, 0).await, before);
        }

        #[tokio::test]
        async fn lost_responses_at_every_write_point_lose_and_duplicate_nothing() {
            let env = FaultEnv::new();
            let store = env.open().await;
            store.acquire(&[1]).await.expect("acquire");
            let a = store.open_stream(1);
            // Data object PUT, manifest PUT, then object deletes (GC).
            for (faulty, op) in
                [(&env.data, Operation::Put), (&env.meta, Operation::Put), (&env.data, Operation::Delete)]
            {
                for i in 0..3 {
                    append(&a, i).await;
                }
                faulty.set(op, Fault::LoseResponse(1));
                store.upload_once().await.expect("upload resolves the lost response");
                let end = a.offsets().1;
                store.trim(&a, end - 1).await.expect("trim");
                store.collect_garbage().await.expect("gc");
                store.collect_garbage().await.expect("gc again");
                env.data.clear();
                env.meta.clear();
                assert!(store.stopped().is_none(), "{op:?}: not fenced by its own write");
            }
            let (start, end) = a.offsets();
            let expected = texts(&a, start).await;
            assert_eq!(expected.len(), 1, "one batch left after the trims");
            drop(a);
            drop(store);
            let store = env.open().await;
            let a = store.open_stream(1);
            assert_eq!(a.offsets(), (start, end));
            assert_eq!(texts(&a, start).await, expected);
        }

        /// Appends to streams 1 and 2 and uploads after each round: `rounds`
        /// small two-stream objects.
        async fn small_objects(store: &Arc<StreamStore>, rounds: u32) -> (Arc<Stream>, Arc<Stream>) {
            store.acquire(&[1, 2]).await.expect("acquire");
            let (a, b) = (store.open_stream(1), store.open_stream(2));
            for i in 0..rounds {
                append(&a, i).await;
                append(&b, i).await;
                store.upload_once().await.expect("upload");
            }
            (a, b)
        }

        #[tokio::test]
        async fn compaction_merges_small_objects_and_every_byte_reads_back() {
            let env = FaultEnv::new();
            let store = env.open().await;
            let (a, b) = small_objects(&store, 20).await;
            let (before_a, before_b) = (texts(&a, 0).await, texts(&b, 0).await);
            assert_eq!(env.object_count().await, 20);
            // A stream that folded its index replaces its manifest too.
            let manifests = [&a, &b].iter().filter(|s| s.lock().index.is_some()).count();
            let outcome = store.compact_once().await.expect("compact");
            assert_eq!((outcome.objects_written, outcome.ranges_merged), (2, 40));
            assert_eq!((a.ranges().len(), b.ranges().len()), (1, 1));
            assert_eq!(store.collect_garbage().await.expect("gc"), 20 + manifests);
            assert_eq!(env.object_count().await, 2, "one object per stream");
            assert_eq!(texts(&a, 0).await, before_a);
            assert_eq!(texts(&b, 0).await, before_b);
            let found = a.find_by_timestamp(100, 0).await.expect("find").expect("batch");
            assert!(found.meta.max_timestamp >= 100);
            // A second pass finds nothing to do; the index survives a restart.
            assert_eq!(store.compact_once().await.expect("compact").objects_written, 0);
            drop((a, b));
            drop(store);
            let store = env.open().await;
            assert_eq!(texts(&store.open_stream(1), 0).await, before_a);
            assert_eq!(texts(&store.open_stream(2), 0).await, before_b);
            assert_eq!(store.sweep_orphans().await.expect("sweep"), OrphanSweep::default());
        }

        #[tokio::test]
        async fn a_reader_holding_an_object_finishes_across_compaction_and_gc() {
            let mut env = FaultEnv::new();
            let store = env.open().await;
            let (a, b) = small_objects(&store, 8).await;
            let before = texts(&a, 0).await;
            drop((a, b));
            drop(store);
            // Reopen with empty caches, blocks small enough that a batch and the
            // batch index are in different ones, and attempts long enough for a
            // slow GET.
            env.block_bytes = 16;
            env.retry.attempt_timeout = Duration::from_secs(5);
            env.retry.deadline = Duration::from_secs(10);
            let store = env.open().await;
            let a = store.open_stream(1);
            let first_object =
                a.lock().ranges.values().next().map(|r| r.entry.object.clone()).expect("range");
            // Batch indexes cached (a timestamp lookup loads them); then the
            // reader's data GET waits 1 s: it holds the first object while
            // compaction and garbage collection run.
            a.find_by_timestamp(-1, 0).await.expect("find");
            env.data.set(Operation::Get, Fault::Latency(Duration::from_secs(1)));
            let reader = {
                let a = Arc::clone(&a);
                tokio::spawn(async move { a.read(0, 1 << 20).await })
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            env.data.clear();
            assert_eq!(store.compact_once().await.expect("compact").objects_written, 2);
            let collected = store.collect_garbage().await.expect("gc");
            assert_eq!(collected, 7, "every old object but the one being read");
            assert!(!reader.is_finished(), "the read was still under way");
            let read = reader.await.expect("join").expect("the held object was still there");
            assert_eq!(String::from_utf8(read[0].data.to_vec()).expect("utf8"), before[0]);
            assert_eq!(store.collect_garbage().await.expect("gc"), 1, "collected once released");
            assert!(env.bucket.head(&Path::from(first_object.as_str())).await.is_err());
            assert_eq!(texts(&a, 0).await, before);
        }

        #[tokio::test]
        async fn a_stream_with_many_bytes_waiting_gets_its_own_object() {
            let env = FaultEnv::new();
            let store = env.open().await;
            store.acquire(&[1, 2]).await.expect("acquire");
            let (a, b) = (store.open_stream(1), store.open_stream(2));
            let big = Bytes::from(vec![7u8; 20 << 20]);
            a.append(1, 0, |_, _| big.clone()).expect("append").durable().await.expect("durable");
            append(&b, 1).await;
            store.upload_once().await.expect("upload");
            let (ra, rb) = (a.lock().ranges.clone(), b.lock().ranges.clone());
            let (oa, ob) = (&ra.values().next().expect("a").entry, &rb.values().next().expect("b").entry);
            assert_ne!(oa.object, ob.object);
            // Each object holds only its stream's bytes (plus index and footer).
            assert!(oa.object_size < oa.bytes + 1024 && ob.object_size < ob.bytes + 1024);
            assert_eq!(a.read(0, 1).await.expect("read")[0].data, big);
        }

        #[tokio::test]
        async fn failing_reads_surface_as_errors_and_recover() {
            let env = FaultEnv::new();
            let store = env.open().await;
            let a = store.open_stream(1);
            for i in 0..5 {
                append(&a, i).await;
            }
            store.upload_once().await.expect("upload");
            env.data.set(Operation::Get, Fault::FailAlways);
            assert!(a.read(0, 1 << 20).await.is_err());
            env.data.clear();
            assert_eq!(texts(&a, 0).await.len(), 5);
        }
    }

    /// Per-stream index manifests (`manifest.rs`).
    mod manifests {
        use super::*;

        async fn inline_keys(store: &StreamStore, id: StreamId) -> usize {
            store.shared.meta.list(&index::range_prefix(id)).await.expect("list").len()
        }

        async fn stored_meta(store: &StreamStore, id: StreamId) -> StreamMeta {
            let e = store.shared.meta.get(&index::meta_key(id)).await.expect("get").expect("a meta record");
            decode(&e.key, &e.value).expect("decode")
        }

        async fn exists(objects: &Arc<dyn ObjectStore>, name: &str) -> bool {
            match objects.head(&Path::from(name)).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => panic!("head {name}: {e}"),
            }
        }

        fn folding(c: &mut StreamStoreConfig) {
            c.index_inline_ranges = 3;
            c.compaction.min_ranges = 4;
            c.orphan_age = Duration::ZERO;
        }

        #[tokio::test]
        async fn ranges_fold_into_a_manifest_and_read_back_after_compaction_trim_and_restart() {
            let env = Env::new();
            let store = env.open(folding).await;
            store.acquire(&[1, 2]).await.expect("acquire");
            let (a, b) = (store.open_stream(1), store.open_stream(2));
            for i in 0..12 {
                append(&a, i).await;
                append(&b, i).await;
                store.upload_once().await.expect("upload");
            }
            // Twelve ranges each: at most three as keys, the rest folded.
            let inline = inline_keys(&store, 1).await;
            assert!(inline <= 3, "{inline} inline ranges");
            let first = stored_meta(&store, 1).await.index.expect("stream 1 folded its index");
            assert_eq!(first.ranges as usize + inline, 12);
            assert!(exists(&env.objects, &first.object).await);
            let before = texts(&a, 0).await;
            assert_eq!(before.len(), 12);

            // Compaction merges folded ranges: the index folds again.
            let merged = store.compact_once().await.expect("compact");
            assert!(merged.ranges_merged >= 4, "{merged:?}");
            assert_eq!(texts(&a, 0).await, before);
            let second = stored_meta(&store, 1).await.index.expect("still folded");
            assert_ne!(second.object, first.object);
            // The replaced manifest is garbage; the current one is not, nor
            // an orphan.
            store.collect_garbage().await.expect("gc");
            assert!(!exists(&env.objects, &first.object).await, "the replaced manifest is collected");
            store.sweep_orphans().await.expect("sweep");
            assert!(exists(&env.objects, &second.object).await, "the current manifest stays");
            assert_eq!(texts(&a, 0).await, before);
            for i in 12..20 {
                append(&a, i).await;
                append(&b, i).await;
                store.upload_once().await.expect("upload");
            }
            let before = texts(&a, 0).await;
            assert_eq!(before.len(), 20);

            // A trim of the merged range, which is folded.
            let cut = a.lock().ranges.values().next().map(|r| r.entry.end).expect("a range");
            assert!(!a.lock().inline.contains(&0));
            store.trim(&a, cut).await.expect("trim");
            let (start, end) = a.offsets();
            let kept = texts(&a, start).await;
            assert!(!kept.is_empty() && kept.len() < before.len());
            let b_all = texts(&b, 0).await;
            drop((a, b));
            drop(store);

            // A restart loads the folded and the inline ranges alike.
            let store = env.open(folding).await;
            let (a, b) = (store.open_stream(1), store.open_stream(2));
            assert_eq!(a.offsets(), (start, end));
            assert_eq!(texts(&a, start).await, kept);
            assert_eq!(texts(&b, 0).await, b_all);
            store.sweep_orphans().await.expect("sweep");
            let current = stored_meta(&store, 1).await.index.expect("folded");
            assert!(exists(&env.objects, &current.object).await);
            // A deleted stream's manifest becomes garbage too.
            store.delete_stream(1).await.expect("delete");
            store.collect_garbage().await.expect("gc");
            assert!(!exists(&env.objects, &current.object).await);
            assert_eq!(texts(&b, 0).await, b_all);
        }

        /// A zombie's write that lands in its WAL after the new owner read
        /// it is never recovered later, even when the stream comes back to
        /// the zombie's WAL prefix (its node restarted and leads it again)
        /// and is taken over from that WAL once more: the recovery takes
        /// only the last leader's epoch, so the offsets the new leaders gave
        /// again keep their own batches.
        #[tokio::test]
        async fn a_zombie_write_in_a_wal_is_not_recovered_when_the_stream_comes_back() {
            let env = Env::new();
            let meta = env.shared_meta().await;
            let open = |prefix: &'static str| {
                env.member(&meta, prefix, |cfg| {
                    cfg.wal = WalKind::Object(crate::ObjectWalConfig {
                        flush_delay: Duration::ZERO,
                        flush_bytes: 1 << 20,
                    })
                })
            };
            let (one, two, three) = (open("wal-1").await, open("wal-2").await, open("wal-3").await);
            let a = one.take_over(7, 0, None).await.expect("take over");
            for i in 0..3 {
                append(&a, i).await;
            }
            // Two takes it over from one's WAL; one, not knowing yet, writes
            // once more (never acknowledged in a cluster: its lease is gone).
            let b = two.take_over(7, 1, Some("wal-1")).await.expect("second takes over");
            let end = b.offsets().1;
            let late = a.append(1, 0, |_, _| Bytes::from("zombie")).expect("zombie append");
            let _ = late.durable().await;
            let _ = one.upload_once().await; // conflicts: one learns it lost 7
            // Back to one (its node again), which writes at the same offset.
            two.release(7, Handover::Indexed).await.expect("release");
            let c = one.take_over(7, 2, None).await.expect("back to one");
            assert_eq!(c.offsets().1, end);
            append(&c, 9).await;
            let want = texts(&c, 0).await;
            // One dies; three recovers its tail from one's WAL.
            let d = three.take_over(7, 3, Some("wal-1")).await.expect("third takes over");
            let got = texts(&d, 0).await;
            assert!(!got.iter().any(|t| t == "zombie"), "the zombie's batch was recovered: {got:?}");
            assert_eq!(got, want);
        }

        #[tokio::test]
        async fn a_new_owner_reads_a_folded_index_and_its_old_owner_commits_no_fold() {
            let env = Env::new();
            let meta = env.shared_meta().await;
            let open = |prefix: &'static str| {
                env.member(&meta, prefix, |cfg| {
                    cfg.gc_grace = Duration::ZERO;
                    folding(cfg);
                })
            };
            let (one, two) = (open("wal-1").await, open("wal-2").await);
            let a = one.take_over(7, 0, None).await.expect("take over");
            for i in 0..10 {
                append(&a, i).await;
                one.upload_once().await.expect("upload");
            }
            let before = texts(&a, 0).await;
            assert!(stored_meta(&one, 7).await.index.is_some());
            // The new owner claims it and reads the manifest and the keys.
            let b = two.take_over(7, 1, Some("wal-1")).await.expect("second takes over");
            assert_eq!(texts(&b, 0).await, before);
            let theirs = stored_meta(&two, 7).await;
            // The old owner's next edits conflict: no fold of its lands.
            for i in 10..20 {
                if a.append(1, i64::from(i), |_, _| Bytes::from("late")).is_err() {
                    break;
                }
            }
            let _ = one.upload_once().await;
            let _ = one.compact_once().await;
            assert_eq!(stored_meta(&two, 7).await, theirs, "the old owner changed nothing");
            for i in 10..20 {
                append(&b, i).await;
                two.upload_once().await.expect("upload");
            }
            let all = texts(&b, 0).await;
            assert_eq!(all.len(), 20);
            assert_eq!(all[..10], before[..]);
        }
    }
}
