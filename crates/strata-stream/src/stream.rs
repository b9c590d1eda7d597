//! One stream: its offsets, the location of each durable batch, and reads.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::StreamError;
use crate::wal::{Wal, WalEntry};

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
        self.base_offset + i64::from(self.meta.record_count)
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

#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLoc {
    pub info: BatchInfo,
    pub segment: u64,
    pub position: u64,
}

pub(crate) struct Inner {
    /// The offset the next append gets.
    next_offset: i64,
    /// The first readable offset.
    start_offset: i64,
    /// Every offset below this is durable and readable.
    durable_end: i64,
    /// Durable batches in offset order.
    batches: Vec<BatchLoc>,
    closed: bool,
}

/// An append-only stream of opaque batches. Cheap to share behind an `Arc`.
pub struct Stream {
    id: StreamId,
    inner: Mutex<Inner>,
    wal: Arc<Wal>,
}

/// The outcome of an accepted append: its offset, and a future that resolves
/// once the batch is durable in the WAL.
#[derive(Debug)]
pub struct Appended {
    /// The offset assigned to the batch's first record.
    pub base_offset: i64,
    durable: oneshot::Receiver<Result<(), ()>>,
}

impl Appended {
    /// Waits until the batch is durable (and readable).
    pub async fn durable(self) -> Result<i64, StreamError> {
        match self.durable.await {
            Ok(Ok(())) => Ok(self.base_offset),
            _ => Err(StreamError::Failed),
        }
    }
}

impl Stream {
    pub(crate) fn new(id: StreamId, wal: Arc<Wal>, start_offset: i64) -> Self {
        Stream {
            id,
            inner: Mutex::new(Inner {
                next_offset: start_offset,
                start_offset,
                durable_end: start_offset,
                batches: Vec::new(),
                closed: false,
            }),
            wal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a panic while holding it; the data is still
        // consistent (every mutation is a single push or assignment).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream's identifier.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Appends a batch at the next offset. `build` receives that offset and
    /// returns the bytes to store (so a caller can stamp the offset into them);
    /// appends to one stream are ordered exactly as the calls are.
    pub fn append(
        self: &Arc<Self>,
        meta: AppendMeta,
        build: impl FnOnce(i64) -> Bytes,
    ) -> Result<Appended, StreamError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StreamError::Closed(self.id));
        }
        let base_offset = inner.next_offset;
        let payload = build(base_offset);
        let (tx, rx) = oneshot::channel();
        self.wal.submit(WalEntry { stream: Arc::clone(self), base_offset, meta, payload, done: Some(tx) })?;
        inner.next_offset += i64::from(meta.record_count.max(1));
        Ok(Appended { base_offset, durable: rx })
    }

    /// Records a batch that reached the WAL's disk (called by the WAL writer and
    /// by replay, in offset order).
    pub(crate) fn on_durable(&self, loc: BatchLoc) {
        let mut inner = self.lock();
        let end = loc.info.end_offset();
        if replaying_gap(&inner, &loc) {
            tracing::warn!(
                stream = self.id,
                expected = inner.durable_end,
                got = loc.info.base_offset,
                "wal replay found a gap in stream offsets; continuing from the batch"
            );
        }
        inner.batches.push(loc);
        inner.durable_end = end;
        if inner.next_offset < end {
            inner.next_offset = end;
        }
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// `(start, end)`: the first readable offset and the offset after the last
    /// durable one (Kafka's log start offset and high watermark).
    pub fn offsets(&self) -> (i64, i64) {
        let inner = self.lock();
        (inner.start_offset, inner.durable_end)
    }

    /// The first durable batch that holds a timestamp at or after `timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Option<BatchInfo> {
        let inner = self.lock();
        inner.batches.iter().find(|b| b.info.meta.max_timestamp >= timestamp).map(|b| b.info)
    }

    /// Like [`Stream::find_by_timestamp`], among batches from offset `from` on.
    pub fn find_by_timestamp_after(&self, timestamp: i64, from: i64) -> Option<BatchInfo> {
        let inner = self.lock();
        let first = inner.batches.partition_point(|b| b.info.end_offset() <= from);
        inner.batches[first..].iter().find(|b| b.info.meta.max_timestamp >= timestamp).map(|b| b.info)
    }

    /// The first durable batch holding the stream's largest timestamp.
    pub fn max_timestamp_batch(&self) -> Option<BatchInfo> {
        let inner = self.lock();
        let mut best: Option<BatchInfo> = None;
        for b in &inner.batches {
            if best.is_none_or(|x| b.info.meta.max_timestamp > x.meta.max_timestamp) {
                best = Some(b.info);
            }
        }
        best
    }

    /// Reads durable batches from the one holding `offset`, up to `max_bytes` in
    /// all, except that the first batch is returned whole however large it is.
    /// Reading at the end returns nothing.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<ReadBatch>, StreamError> {
        let locs: Vec<BatchLoc> = {
            let inner = self.lock();
            if offset < inner.start_offset || offset > inner.durable_end {
                return Err(StreamError::OutOfRange {
                    offset,
                    start: inner.start_offset,
                    end: inner.durable_end,
                });
            }
            let first = inner.batches.partition_point(|b| b.info.end_offset() <= offset);
            let mut total = 0usize;
            let mut out = Vec::new();
            for b in &inner.batches[first..] {
                let size = b.info.size as usize;
                if !out.is_empty() && total + size > max_bytes {
                    break;
                }
                total += size;
                out.push(*b);
                if total >= max_bytes {
                    break;
                }
            }
            out
        };
        if locs.is_empty() {
            return Ok(Vec::new());
        }
        self.wal.read(locs).await
    }
}

fn replaying_gap(inner: &Inner, loc: &BatchLoc) -> bool {
    !inner.batches.is_empty() && loc.info.base_offset != inner.durable_end
}
