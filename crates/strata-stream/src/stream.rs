//! One stream: its offsets, leader epochs, where each batch lives (the WAL tail
//! or an object range) and reads.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::index::RangeEntry;
use crate::object_format::{self, ObjectBatch};
use crate::shared::Shared;
use crate::wal::WalEntry;
use crate::{StreamError, StreamMeta};

/// A stream's identifier, unique for the life of the store (never reused).
pub type StreamId = u64;

/// Facts stored with each batch; the stream keeps but does not interpret them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendMeta {
    /// How many offsets the batch covers (at least one).
    pub record_count: u32,
    /// The largest timestamp in the batch.
    pub max_timestamp: i64,
    /// The leader epoch the batch was written under.
    pub leader_epoch: i32,
}

/// What the stream knows about one durable batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// The first offset of the batch.
    pub base_offset: i64,
    /// The stored facts.
    pub meta: AppendMeta,
    /// The batch's size in bytes.
    pub size: u32,
}

impl BatchInfo {
    /// The offset after the batch's last one.
    pub fn end_offset(&self) -> i64 {
        self.base_offset + i64::from(self.meta.record_count.max(1))
    }
}

/// A batch read back from the stream.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// Its position and facts.
    pub info: BatchInfo,
    /// Its bytes, exactly as appended.
    pub data: Bytes,
}

/// A durable batch still in the WAL (not yet in an object).
#[derive(Debug, Clone)]
pub(crate) struct TailBatch {
    pub info: BatchInfo,
    pub segment: u64,
    pub position: u64,
    /// The bytes, when the tail cache admitted them.
    pub data: Option<Bytes>,
}

impl TailBatch {
    /// Where to read this batch from: the tail cache, else its WAL segment.
    fn source(&self, shared: &Shared) -> Result<Source, StreamError> {
        Ok(match &self.data {
            Some(d) => Source::Memory(d.clone()),
            None => Source::File(shared.wal.segment(self.segment)?, self.position),
        })
    }
}

/// Where a tail batch's bytes come from at upload or read time.
pub(crate) enum Source {
    Memory(Bytes),
    File(crate::wal::SegmentHandle, u64),
}

/// One object range of the stream, as the metadata index holds it.
#[derive(Debug)]
pub(crate) struct ObjRange {
    pub entry: RangeEntry,
    pub object: Arc<str>,
}

pub(crate) struct Inner {
    /// The offset the next append gets.
    pub next_offset: i64,
    /// The first readable offset.
    pub start_offset: i64,
    /// Every offset below this is durable and readable.
    pub durable_end: i64,
    /// The current leader epoch and the history `(epoch, start offset)`.
    pub epochs: Vec<(i32, i64)>,
    /// Object ranges by start offset.
    pub ranges: BTreeMap<i64, Arc<ObjRange>>,
    /// The starts of the ranges recorded inline (`s/<id>/r/<start>`); the
    /// others are in the index manifest [`Inner::index`].
    pub inline: BTreeSet<i64>,
    /// The stream's index manifest, as its meta record names it.
    pub index: Option<crate::index::IndexRef>,
    /// Durable batches not yet in objects, in offset order.
    pub tail: VecDeque<TailBatch>,
    pub closed: bool,
    /// Whether appends are taken (false once released or lost).
    pub accepting: bool,
    /// Whether this process may commit the stream's index (false once another
    /// process took it over, or it was handed over in the WAL).
    pub owned: bool,
    /// The revision of the stream's meta record as this process last wrote or
    /// read it (`None`: absent). Every index commit of the stream is
    /// conditional on it, so once another process takes the stream over (and
    /// rewrites the record) this process's commits for it conflict.
    pub meta_rev: Option<strata_meta::Revision>,
}

impl Inner {
    pub fn epoch(&self) -> i32 {
        self.epochs.last().map(|(e, _)| *e).unwrap_or(0)
    }
    pub fn objects_end(&self) -> Option<i64> {
        self.ranges.values().next_back().map(|r| r.entry.end)
    }
    pub fn meta(&self) -> StreamMeta {
        StreamMeta { start: self.start_offset, epochs: self.epochs.clone(), index: self.index.clone() }
    }

    /// The condition every index commit of the stream carries.
    /// The refusal an append gets from the stream itself: closed, or no
    /// longer taking appends here.
    fn check_open(&self, id: StreamId) -> Result<(), StreamError> {
        if self.closed {
            return Err(StreamError::Closed(id));
        }
        if !self.accepting {
            return Err(StreamError::NotOwner(id));
        }
        Ok(())
    }

    pub fn owner_condition(&self, id: StreamId) -> strata_meta::Condition {
        let key = crate::index::meta_key(id);
        match self.meta_rev {
            Some(rev) => strata_meta::Condition::Version(key, rev),
            None => strata_meta::Condition::Absent(key),
        }
    }

    /// Drops tail batches that end at or before `end` (all when `None`),
    /// releasing their tail-cache and upload-backlog accounting.
    pub fn drop_tail(&mut self, shared: &Shared, end: Option<i64>) {
        while self.tail.front().is_some_and(|b| end.is_none_or(|e| b.info.end_offset() <= e)) {
            if let Some(b) = self.tail.pop_front() {
                shared.sub_pending(b.info.size as usize);
                if let Some(d) = &b.data {
                    shared.tail_budget.release(d.len());
                }
            }
        }
    }
}

/// The batch index of `stream`'s part of `range`'s object (cached).
async fn load_index(
    shared: &Shared,
    stream: StreamId,
    range: &ObjRange,
) -> Result<Arc<Vec<ObjectBatch>>, StreamError> {
    let key = (Arc::clone(&range.object), stream);
    let entry = &range.entry;
    shared
        .index_cache
        .get_or_insert_async(&key, async {
            let (from, to) = (entry.index_pos, entry.index_pos + u64::from(entry.index_len));
            let data = shared.blocks.read(&range.object, entry.object_size, from, to).await?;
            object_format::parse_index(data)
                .map(Arc::new)
                .map_err(|reason| StreamError::Corrupt { segment: entry.object.clone(), reason })
        })
        .await
}

/// Read-ahead: fetches the `budget` bytes of the stream that follow position
/// `from` of `range` — the rest of its part of that object, then its parts of
/// the objects of the `next` ranges — into the block cache, one GET-sized chunk
/// per task, within the catch-up concurrency budget (when that is used up,
/// nothing more is fetched ahead).
async fn read_ahead(
    shared: Arc<Shared>,
    stream: StreamId,
    range: Arc<ObjRange>,
    from: u64,
    next: Vec<Arc<ObjRange>>,
) {
    let chunk = shared.blocks.block_size() * crate::block_cache::MAX_RUN_BLOCKS as u64;
    let mut budget = shared.read_ahead_bytes;
    let mut at = Some(from);
    for r in std::iter::once(range).chain(next) {
        let index = match load_index(&shared, stream, &r).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(object = %r.object, error = %e, "read-ahead failed");
                return;
            }
        };
        let (Some(first), Some(last)) = (index.first(), index.last()) else { continue };
        let mut pos = at.take().unwrap_or(first.position);
        let end = last.position + u64::from(last.info.size);
        while pos < end && budget > 0 {
            let stop = (pos - pos % chunk + chunk).min(end).min(pos + budget);
            budget -= stop - pos;
            if shared.blocks.any_missing(&r.object, pos, stop) {
                let Ok(permit) = Arc::clone(&shared.catch_up).try_acquire_owned() else { return };
                let lease = shared.leases.take(&r.object);
                let (shared, r) = (Arc::clone(&shared), Arc::clone(&r));
                tokio::spawn(async move {
                    let _held = (permit, lease);
                    if let Err(e) = shared.blocks.read(&r.object, r.entry.object_size, pos, stop).await {
                        tracing::debug!(object = %r.object, error = %e, "read-ahead failed");
                    }
                });
            }
            pos = stop;
        }
        if budget == 0 {
            return;
        }
    }
}

/// An append-only stream of opaque batches. Cheap to share behind an `Arc`.
pub struct Stream {
    id: StreamId,
    inner: Mutex<Inner>,
    pub(crate) shared: Arc<Shared>,
}

/// The outcome of an accepted append: its offset, and a future that resolves
/// once the batch is durable in the WAL.
#[derive(Debug)]
pub struct Appended {
    /// The offset assigned to the batch's first record.
    pub base_offset: i64,
    durable: oneshot::Receiver<Result<(), crate::wal::AckError>>,
}

/// The final outcome of one append, shareable by everyone waiting on that
/// batch (an idempotent retry waits on its original through it). Unlike
/// [`Appended::durable`], it is not resolved by an early "did not complete in
/// time" answer: it resolves once the batch is durable at its offsets, or once
/// it is refused for good (fenced, failed, the store gone).
#[derive(Debug, Clone)]
pub struct Completion {
    rx: tokio::sync::watch::Receiver<Option<Result<(), crate::wal::AckError>>>,
}

impl Completion {
    /// Waits for the batch's final outcome.
    pub async fn wait(&mut self) -> Result<(), StreamError> {
        loop {
            if let Some(outcome) = *self.rx.borrow_and_update() {
                return outcome.map_err(StreamError::from);
            }
            if self.rx.changed().await.is_err() {
                return Err(StreamError::Failed); // the entry dropped unanswered
            }
        }
    }
}

impl Appended {
    /// Waits until the batch is durable (and readable).
    pub async fn durable(self) -> Result<i64, StreamError> {
        match self.durable.await {
            Ok(Ok(())) => Ok(self.base_offset),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StreamError::Failed),
        }
    }
}

impl Stream {
    pub(crate) fn new(
        id: StreamId,
        shared: Arc<Shared>,
        meta: &StreamMeta,
        meta_rev: Option<strata_meta::Revision>,
    ) -> Self {
        Stream {
            id,
            inner: Mutex::new(Inner {
                next_offset: meta.start,
                start_offset: meta.start,
                durable_end: meta.start,
                epochs: meta.epochs.clone(),
                ranges: BTreeMap::new(),
                inline: BTreeSet::new(),
                index: meta.index.clone(),
                tail: VecDeque::new(),
                closed: false,
                accepting: true,
                owned: true,
                meta_rev,
            }),
            shared,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic while holding it; every mutation keeps
        // the state consistent, so go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's identifier.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The current leader epoch.
    pub fn epoch(&self) -> i32 {
        self.lock().epoch()
    }

    /// The condition of a commit made as this stream's owner: its meta
    /// record is as this owner last wrote it. It fails once another owner
    /// claimed the stream (docs/ownership.md).
    pub fn owner_condition(&self) -> strata_meta::Condition {
        self.lock().owner_condition(self.id)
    }

    /// For `epoch`, the largest known epoch at or below it and the offset where
    /// that epoch ended (the start of the next one, or the end of the stream).
    /// `None` when `epoch` is older than every known epoch.
    pub fn epoch_end(&self, epoch: i32) -> Option<(i32, i64)> {
        let inner = self.lock();
        let idx = inner.epochs.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = inner.epochs.get(idx + 1).map(|(_, start)| *start).unwrap_or(inner.durable_end);
        Some((inner.epochs[idx].0, end))
    }

    /// Appends a batch at the next offset. `build` receives that offset and the
    /// current epoch and returns the bytes to store (so a caller can stamp them
    /// in); appends to one stream are ordered exactly as the calls are.
    pub fn append(
        self: &Arc<Self>,
        record_count: u32,
        max_timestamp: i64,
        build: impl FnOnce(i64, i32) -> Bytes,
    ) -> Result<Appended, StreamError> {
        self.append_inner(record_count, max_timestamp, build, None)
    }

    /// [`Stream::append`], also returning a [`Completion`] of the batch that
    /// others may wait on.
    pub fn append_tracked(
        self: &Arc<Self>,
        record_count: u32,
        max_timestamp: i64,
        build: impl FnOnce(i64, i32) -> Bytes,
    ) -> Result<(Appended, Completion), StreamError> {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let appended = self.append_inner(record_count, max_timestamp, build, Some(tx))?;
        Ok((appended, Completion { rx }))
    }

    /// Whether an append would be taken now: the error it would get if not
    /// (closed, no longer owned, the WAL fenced, failed or stalled). A caller
    /// that checks something of its own before appending (the producer
    /// sequence) asks first, so that a refused append is not followed by a
    /// misleading answer from that check for the next batch.
    pub fn check_appendable(&self) -> Result<(), StreamError> {
        self.lock().check_open(self.id)?;
        self.shared.wal.check_health()
    }

    fn append_inner(
        self: &Arc<Self>,
        record_count: u32,
        max_timestamp: i64,
        build: impl FnOnce(i64, i32) -> Bytes,
        outcome: Option<tokio::sync::watch::Sender<Option<Result<(), crate::wal::AckError>>>>,
    ) -> Result<Appended, StreamError> {
        let mut inner = self.lock();
        inner.check_open(self.id)?;
        let base_offset = inner.next_offset;
        let epoch = inner.epoch();
        let payload = build(base_offset, epoch);
        let meta = AppendMeta { record_count: record_count.max(1), max_timestamp, leader_epoch: epoch };
        let (tx, rx) = oneshot::channel();
        let len = payload.len() as u64;
        self.shared.wal.submit(WalEntry {
            stream: self.id,
            base_offset,
            meta,
            payload,
            done: Some(tx),
            outcome,
            submitted: std::time::Instant::now(),
        })?;
        inner.next_offset += i64::from(meta.record_count);
        self.shared.appended_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        Ok(Appended { base_offset, durable: rx })
    }

    /// Records a batch that reached the WAL's disk (the WAL writer and replay
    /// call this in offset order).
    pub(crate) fn on_durable(&self, info: BatchInfo, segment: u64, position: u64, payload: &Bytes) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let end = info.end_offset();
        if let Some(objects_end) = inner.objects_end()
            && end <= objects_end
        {
            return; // replayed record already in an object
        }
        if end <= inner.start_offset {
            return; // replayed record already trimmed away
        }
        if inner.tail.is_empty() && inner.ranges.is_empty() && inner.durable_end < info.base_offset {
            // First batch of a stream whose earlier data was trimmed away.
            inner.durable_end = info.base_offset;
        }
        // The overlap rule (docs/ownership.md, rule 5): offsets are final, so
        // a batch whose offsets are already taken by durable data is never
        // served a second time.
        if info.base_offset < inner.durable_end {
            tracing::error!(
                stream = self.id,
                durable_end = inner.durable_end,
                base = info.base_offset,
                end,
                "batch overlaps durable offsets; skipped"
            );
            metrics::counter!("strata_wal_overlapping_batches_total").increment(1);
            return;
        }
        if info.base_offset > inner.durable_end {
            tracing::warn!(
                stream = self.id,
                expected = inner.durable_end,
                got = info.base_offset,
                "gap in stream offsets; continuing from the batch"
            );
        }
        let data = self.shared.tail_budget.try_admit(payload.len()).then(|| payload.clone());
        self.shared.add_pending(payload.len());
        inner.tail.push_back(TailBatch { info, segment, position, data });
        inner.durable_end = end;
        if inner.next_offset < end {
            inner.next_offset = end;
        }
    }

    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.drop_tail(&self.shared, None);
        inner.ranges.clear();
    }

    /// `(start, end)`: the first readable offset and the offset after the last
    /// durable one (Kafka's log start offset and high watermark).
    pub fn offsets(&self) -> (i64, i64) {
        let inner = self.lock();
        (inner.start_offset, inner.durable_end)
    }

    /// Bytes held by the stream in objects and the WAL tail.
    pub fn size_bytes(&self) -> u64 {
        let inner = self.lock();
        inner.ranges.values().map(|r| r.entry.bytes).sum::<u64>()
            + inner.tail.iter().map(|b| u64::from(b.info.size)).sum::<u64>()
    }

    /// Object ranges, oldest first, as `(start, end, max timestamp, bytes)`:
    /// what retention decides on.
    pub fn ranges(&self) -> Vec<(i64, i64, i64, u64)> {
        let inner = self.lock();
        inner.ranges.values().map(|r| (r.entry.start, r.entry.end, r.entry.max_ts, r.entry.bytes)).collect()
    }

    pub(crate) async fn range_index(&self, range: &ObjRange) -> Result<Arc<Vec<ObjectBatch>>, StreamError> {
        load_index(&self.shared, self.id, range).await
    }

    /// The first batch at or after offset `from` holding a timestamp at or after
    /// `timestamp`.
    pub async fn find_by_timestamp(
        &self,
        timestamp: i64,
        from: i64,
    ) -> Result<Option<BatchInfo>, StreamError> {
        let (ranges, tail): (Vec<Arc<ObjRange>>, Vec<BatchInfo>) = {
            let inner = self.lock();
            let from = from.max(inner.start_offset);
            (
                inner
                    .ranges
                    .values()
                    .filter(|r| r.entry.end > from && r.entry.max_ts >= timestamp)
                    .cloned()
                    .collect(),
                inner.tail.iter().filter(|b| b.info.end_offset() > from).map(|b| b.info).collect(),
            )
        };
        for r in ranges {
            let index = self.range_index(&r).await?;
            if let Some(b) =
                index.iter().find(|b| b.info.end_offset() > from && b.info.meta.max_timestamp >= timestamp)
            {
                return Ok(Some(b.info));
            }
        }
        Ok(tail.into_iter().find(|b| b.meta.max_timestamp >= timestamp))
    }

    /// The first batch holding the stream's largest timestamp.
    pub async fn max_timestamp_batch(&self) -> Result<Option<BatchInfo>, StreamError> {
        let (best_range, best_tail, start) = {
            let inner = self.lock();
            let start = inner.start_offset;
            let mut best_range: Option<Arc<ObjRange>> = None;
            for r in inner.ranges.values().filter(|r| r.entry.end > start) {
                if best_range.as_ref().is_none_or(|b| r.entry.max_ts > b.entry.max_ts) {
                    best_range = Some(Arc::clone(r));
                }
            }
            let mut best_tail: Option<BatchInfo> = None;
            for b in inner.tail.iter().filter(|b| b.info.end_offset() > start) {
                if best_tail.is_none_or(|x| b.info.meta.max_timestamp > x.meta.max_timestamp) {
                    best_tail = Some(b.info);
                }
            }
            (best_range, best_tail, start)
        };
        let from_range = match &best_range {
            Some(r) => {
                let index = self.range_index(r).await?;
                let mut best: Option<BatchInfo> = None;
                for b in index.iter().filter(|b| b.info.end_offset() > start) {
                    if best.is_none_or(|x| b.info.meta.max_timestamp > x.meta.max_timestamp) {
                        best = Some(b.info);
                    }
                }
                best
            }
            None => None,
        };
        Ok(match (from_range, best_tail) {
            (Some(a), Some(b)) => Some(if b.meta.max_timestamp > a.meta.max_timestamp { b } else { a }),
            (a, b) => a.or(b),
        })
    }

    /// Reads durable batches from the one holding `offset`, up to `max_bytes` in
    /// all, except that the first batch is returned whole however large it is.
    /// Reading at the end returns nothing.
    pub async fn read(&self, mut offset: i64, max_bytes: usize) -> Result<Vec<ReadBatch>, StreamError> {
        enum Plan {
            Tail(Vec<(BatchInfo, Source)>),
            Object(Arc<ObjRange>, Vec<Arc<ObjRange>>),
        }
        // Each turn either answers or moves `offset` past a gap a range
        // rewrite left (docs/compaction.md).
        loop {
            let plan = {
                let inner = self.lock();
                if offset < inner.start_offset || offset > inner.durable_end {
                    return Err(StreamError::OutOfRange {
                        offset,
                        start: inner.start_offset,
                        end: inner.durable_end,
                    });
                }
                if offset == inner.durable_end {
                    return Ok(Vec::new());
                }
                match inner.tail.front() {
                    Some(front) if offset >= front.info.base_offset => {
                        let first = inner.tail.partition_point(|b| b.info.end_offset() <= offset);
                        let mut total = 0usize;
                        let mut out = Vec::new();
                        for b in inner.tail.range(first..) {
                            let size = b.info.size as usize;
                            if !out.is_empty() && total + size > max_bytes {
                                break;
                            }
                            total += size;
                            out.push((b.info, b.source(&self.shared)?));
                            if total >= max_bytes {
                                break;
                            }
                        }
                        Plan::Tail(out)
                    }
                    _ => {
                        let containing =
                            inner.ranges.range(..=offset).next_back().filter(|(_, r)| offset < r.entry.end);
                        match containing.or_else(|| inner.ranges.range(offset + 1..).next()) {
                            Some((start, r)) => {
                                // The ranges after it, as far as read-ahead may reach.
                                let mut reach = 0u64;
                                let next = inner
                                    .ranges
                                    .range(start + 1..)
                                    .map(|(_, r)| r)
                                    .take_while(|r| {
                                        let more = reach < self.shared.read_ahead_bytes;
                                        reach += r.entry.bytes;
                                        more
                                    })
                                    .cloned()
                                    .collect();
                                Plan::Object(Arc::clone(r), next)
                            }
                            None => match inner.tail.front() {
                                Some(front) if front.info.base_offset > offset => {
                                    offset = front.info.base_offset;
                                    continue;
                                }
                                _ => {
                                    return Err(StreamError::Corrupt {
                                        segment: format!("stream {}", self.id),
                                        reason: format!("no object or wal batch holds offset {offset}"),
                                    });
                                }
                            },
                        }
                    }
                }
            };
            match plan {
                Plan::Tail(sources) => {
                    if sources.is_empty() {
                        return Ok(Vec::new());
                    }
                    for (_, source) in &sources {
                        crate::shared::count_cache(
                            crate::shared::CacheKind::Tail,
                            matches!(source, Source::Memory(_)),
                        );
                    }
                    return crate::wal::read_sources(sources).await;
                }
                Plan::Object(range, next) => {
                    // Hold the object against garbage collection until the read ends.
                    let _lease = self.shared.leases.take(&range.object);
                    let index = self.range_index(&range).await?;
                    let first = index.partition_point(|b| b.info.end_offset() <= offset);
                    let mut total = 0usize;
                    let mut chosen: Vec<ObjectBatch> = Vec::new();
                    for b in &index[first..] {
                        let size = b.info.size as usize;
                        if !chosen.is_empty() && total + size > max_bytes {
                            break;
                        }
                        total += size;
                        chosen.push(*b);
                        if total >= max_bytes {
                            break;
                        }
                    }
                    let (Some(first), Some(last)) = (chosen.first(), chosen.last()) else {
                        // Past the range's last batch: on from its end.
                        offset = offset.max(range.entry.end);
                        continue;
                    };
                    let from = first.position;
                    let to = last.position + u64::from(last.info.size);
                    self.shared.catch_up_throttle.take(to - from).await;
                    let data =
                        self.shared.blocks.read(&range.object, range.entry.object_size, from, to).await?;
                    if self.shared.read_ahead_bytes > 0 {
                        let shared = Arc::clone(&self.shared);
                        tokio::spawn(read_ahead(shared, self.id, Arc::clone(&range), to, next));
                    }
                    let mut out = Vec::with_capacity(chosen.len());
                    for b in chosen {
                        let at = (b.position - from) as usize;
                        let end = at + b.info.size as usize;
                        if end > data.len() {
                            return Err(StreamError::ShortObject(range.entry.object.clone()));
                        }
                        out.push(ReadBatch { info: b.info, data: data.slice(at..end) });
                    }
                    return Ok(out);
                }
            }
        }
    }

    /// Starts fetching, in the background and within the catch-up budget, the
    /// object bytes a `read(offset, max_bytes)` would need, so that reads of
    /// several streams can be served one after the other with their GETs
    /// already in flight. Does nothing for the tail, or when the budget is used.
    pub fn prefetch(&self, offset: i64, max_bytes: usize) {
        let range = {
            let inner = self.lock();
            if offset < inner.start_offset || offset >= inner.durable_end {
                return;
            }
            if inner.tail.front().is_some_and(|f| offset >= f.info.base_offset) {
                return;
            }
            match inner.ranges.range(..=offset).next_back() {
                Some((_, r)) if offset < r.entry.end => Arc::clone(r),
                _ => return,
            }
        };
        let Ok(permit) = Arc::clone(&self.shared.catch_up).try_acquire_owned() else { return };
        let lease = self.shared.leases.take(&range.object);
        let (shared, id) = (Arc::clone(&self.shared), self.id);
        tokio::spawn(async move {
            let _held = (permit, lease);
            let Ok(index) = load_index(&shared, id, &range).await else { return };
            let first = index.partition_point(|b| b.info.end_offset() <= offset);
            let Some(start) = index.get(first).map(|b| b.position) else { return };
            let mut end = start;
            for b in &index[first..] {
                if end > start && (end - start) as usize + b.info.size as usize > max_bytes {
                    break;
                }
                end = b.position + u64::from(b.info.size);
            }
            if let Err(e) = shared.blocks.read(&range.object, range.entry.object_size, start, end).await {
                tracing::debug!(object = %range.object, error = %e, "prefetch failed");
            }
        });
    }

    /// Replaces the ranges starting at `old_starts` by `entry` (compaction).
    pub(crate) fn replace_ranges(&self, old_starts: &[i64], entry: Option<RangeEntry>) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        for start in old_starts {
            inner.ranges.remove(start);
        }
        if let Some(entry) = entry {
            let object: Arc<str> = Arc::from(entry.object.as_str());
            inner.ranges.insert(entry.start, Arc::new(ObjRange { entry, object }));
        }
    }

    /// Tail batches to upload, at most `max_bytes` (at least one if any).
    pub(crate) fn upload_candidates(
        &self,
        max_bytes: usize,
    ) -> Result<Vec<(BatchInfo, Source)>, StreamError> {
        let inner = self.lock();
        let mut out = Vec::new();
        if !inner.owned {
            return Ok(out); // its new owner indexes it
        }
        let mut total = 0usize;
        for b in inner.tail.iter().filter(|b| b.info.end_offset() > inner.start_offset) {
            if !out.is_empty() && total + b.info.size as usize > max_bytes {
                break;
            }
            total += b.info.size as usize;
            out.push((b.info, b.source(&self.shared)?));
        }
        Ok(out)
    }

    /// Makes an uploaded range visible and drops the tail batches it covers.
    pub(crate) fn on_uploaded(&self, entry: RangeEntry) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let end = entry.end;
        let object: Arc<str> = Arc::from(entry.object.as_str());
        inner.ranges.insert(entry.start, Arc::new(ObjRange { entry, object }));
        inner.drop_tail(&self.shared, Some(end));
    }

    /// Refuses appends from now on (a release or a loss).
    pub(crate) fn stop_appends(&self) {
        self.lock().accepting = false;
    }

    /// Gives up the index: another process owns the stream now. The tail
    /// stays (its WAL segments pinned) until the new owner's index covers it.
    pub(crate) fn disown(&self) {
        let mut inner = self.lock();
        if inner.owned {
            tracing::warn!(stream = self.id, "stream owned by another process now; appends refused");
            metrics::counter!("strata_streams_lost_total").increment(1);
        }
        inner.accepting = false;
        inner.owned = false;
    }

    /// The end of the durable data this process holds for the stream.
    pub(crate) fn durable_end(&self) -> i64 {
        self.lock().durable_end
    }

    /// Whether every accepted append has reached the WAL (or failed for good).
    pub(crate) fn settled(&self) -> bool {
        let inner = self.lock();
        inner.durable_end >= inner.next_offset
    }

    /// The WAL segment of the oldest batch not yet in an object.
    pub(crate) fn oldest_wal_segment(&self) -> Option<u64> {
        self.lock().tail.front().map(|b| b.segment)
    }

    /// Adds a range while loading the store (`inline`: recorded as its own
    /// key, not in the index manifest).
    pub(crate) fn load_range(&self, entry: RangeEntry, inline: bool) {
        let mut inner = self.lock();
        let end = entry.end;
        if inline {
            inner.inline.insert(entry.start);
        }
        let object: Arc<str> = Arc::from(entry.object.as_str());
        inner.ranges.insert(entry.start, Arc::new(ObjRange { entry, object }));
        if inner.durable_end < end {
            inner.durable_end = end;
            inner.next_offset = end;
        }
    }
}
