//! The object WAL: batches from every stream are gathered for a few
//! milliseconds and written as one object `wal/<sequence>.wal` (the same record
//! format as a file segment); an append is acknowledged only after the PUT
//! succeeded and a check found no newer owner of the metadata prefix. No local
//! disk holds state, so any process can replay a dead broker's WAL objects.
//!
//! Fencing: a new owner commits its takeover and then lists the WAL objects. A
//! zombie's WAL object written before that listing is replayed by the new owner;
//! one written after it is followed by the zombie's fence check, which then sees
//! the takeover and withholds the ack. So no acknowledged batch is missed.
//!
//! A failed PUT (after the retrying store gave up) fails the batches of that
//! flush and of everything queued behind it, rewinds those streams' next offsets
//! to their durable end, refuses appends for a short pause, and then serves again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_meta::{MetaError, MetaStore};
use tokio::sync::{mpsc, watch};

use super::{Replayed, SegmentHandle, Segments, Wal, WalEntry};
use crate::{BatchInfo, Stream, StreamError};

/// Settings of the object WAL.
#[derive(Debug, Clone, Copy)]
pub struct ObjectWalConfig {
    /// How long a flush gathers batches, from the first one's submission.
    pub flush_delay: Duration,
    /// A flush starts at once past this many bytes.
    pub flush_bytes: usize,
}

fn wal_object(seq: u64) -> ObjectPath {
    ObjectPath::from(format!("wal/{seq:020}.wal"))
}

/// Opens the object WAL: replays every WAL object from `from_segment` on and
/// starts the writer. `wal_dir` is only used for naming in errors.
pub(crate) async fn open(
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    config: ObjectWalConfig,
    from_segment: u64,
    generation: watch::Sender<u64>,
    wal_dir: std::path::PathBuf,
) -> Result<(Arc<Wal>, Vec<Replayed>), StreamError> {
    let listed: Vec<_> = store.list(Some(&ObjectPath::from("wal"))).try_collect().await?;
    let mut seqs: Vec<u64> = listed
        .iter()
        .filter_map(|m| m.location.filename()?.strip_suffix(".wal")?.parse::<u64>().ok())
        .collect();
    seqs.sort_unstable();
    let segments = Arc::new(Segments::default());
    let mut replayed = Vec::new();
    for &seq in &seqs {
        let path = wal_object(seq);
        if seq < from_segment {
            let _ = store.delete(&path).await;
            continue;
        }
        let data = store.get(&path).await?.bytes().await?;
        // Objects are written whole: anything undecodable is corruption.
        let pos = super::decode_segment(&data, seq, &mut replayed);
        if pos < data.len() {
            return Err(StreamError::Corrupt {
                segment: path.to_string(),
                reason: format!("undecodable record at byte {pos} of a wal object"),
            });
        }
        segments.insert(seq, SegmentHandle::Object(Arc::clone(&store), path));
    }
    let next = seqs.last().map(|s| s + 1).unwrap_or(0).max(from_segment);
    let (tx, rx) = mpsc::unbounded_channel();
    let failed = Arc::new(AtomicBool::new(false));
    let durable_segment = Arc::new(AtomicU64::new(next.saturating_sub(1)));
    let queued = Arc::new(AtomicUsize::new(0));
    let writer = ObjectWriter {
        rx,
        store,
        meta,
        config,
        runtime: tokio::runtime::Handle::current(),
        seq: next,
        segments: Arc::clone(&segments),
        failed: Arc::clone(&failed),
        generation,
        durable_segment: Arc::clone(&durable_segment),
        queued: Arc::clone(&queued),
    };
    std::thread::Builder::new().name("strata-object-wal".into()).spawn(move || writer.run())?;
    Ok((Arc::new(Wal { tx, segments, failed, durable_segment, dir: wal_dir, queued }), replayed))
}

struct ObjectWriter {
    rx: mpsc::UnboundedReceiver<WalEntry>,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    config: ObjectWalConfig,
    runtime: tokio::runtime::Handle,
    seq: u64,
    segments: Arc<Segments>,
    failed: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    durable_segment: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
}

enum Flush {
    Done,
    Fenced,
    Failed(StreamError),
}

impl ObjectWriter {
    fn run(mut self) {
        let mut buf = BytesMut::new();
        while let Some(first) = self.rx.blocking_recv() {
            // The gather window runs from the first entry's submission: under
            // load it has passed during the previous PUT, and the next one
            // starts at once with everything that queued meanwhile.
            let wait = self.config.flush_delay.saturating_sub(first.submitted.elapsed());
            if !wait.is_zero() && self.queued.load(Ordering::Acquire) < self.config.flush_bytes {
                std::thread::sleep(wait);
            }
            buf.clear();
            let mut group: Vec<(WalEntry, u64)> = Vec::new();
            super::gather(&mut self.rx, first, &mut buf, 0, self.config.flush_bytes, &mut group);
            let bytes: usize = group.iter().map(|(e, _)| e.payload.len()).sum();
            let path = wal_object(self.seq);
            let data = Bytes::from(std::mem::take(&mut buf));
            let flushed = data.len();
            let started = std::time::Instant::now();
            let outcome = self.runtime.block_on(async {
                let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
                if let Err(e) = self.store.put_opts(&path, PutPayload::from_bytes(data), opts).await {
                    return match e {
                        object_store::Error::AlreadyExists { .. } => Flush::Fenced,
                        other => Flush::Failed(other.into()),
                    };
                }
                match self.meta.check_fenced().await {
                    Ok(()) => Flush::Done,
                    Err(MetaError::Fenced(_)) => Flush::Fenced,
                    Err(e) => Flush::Failed(e.into()),
                }
            });
            super::record_flush(started.elapsed(), flushed);
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            match outcome {
                Flush::Done => {
                    self.segments.insert(self.seq, SegmentHandle::Object(Arc::clone(&self.store), path));
                    for (entry, position) in group {
                        let info = BatchInfo {
                            base_offset: entry.base_offset,
                            meta: entry.meta,
                            size: entry.payload.len() as u32,
                        };
                        entry.stream.on_durable(info, self.seq, position, &entry.payload);
                        if let Some(done) = entry.done {
                            let _ = done.send(Ok(()));
                        }
                    }
                    self.durable_segment.store(self.seq, Ordering::Release);
                    self.generation.send_modify(|g| *g += 1);
                    self.seq += 1;
                }
                Flush::Fenced => {
                    tracing::error!(object = %path, "fenced by a newer owner: refusing all appends");
                    self.failed.store(true, Ordering::Release);
                    self.fail_all(group);
                    return;
                }
                Flush::Failed(e) => {
                    tracing::warn!(object = %path, error = %e, "wal object write failed; failing its batches");
                    // The object may exist after all (a lost response): never
                    // reuse its name, and remove it so replay cannot see
                    // batches that were refused (best effort: see NOTES.md).
                    self.seq += 1;
                    if let Err(e) = self.runtime.block_on(self.store.delete(&path))
                        && !matches!(e, object_store::Error::NotFound { .. })
                    {
                        tracing::error!(object = %path, error = %e, "cannot remove a failed wal object");
                    }
                    self.recover(group);
                }
            }
        }
    }

    /// Fails `group` and everything queued, rewinds the streams involved and
    /// pauses appends briefly.
    fn recover(&mut self, group: Vec<(WalEntry, u64)>) {
        self.failed.store(true, Ordering::Release);
        let mut streams: HashMap<u64, Arc<Stream>> = HashMap::new();
        for (entry, _) in &group {
            streams.insert(entry.stream.id(), Arc::clone(&entry.stream));
        }
        self.fail_entries(group.into_iter().map(|(e, _)| e), &mut streams);
        // An append that saw the WAL healthy just before may still be sending:
        // rewinding takes each stream's lock (so it has finished), then the
        // queue is drained again.
        for _ in 0..2 {
            for s in streams.values() {
                s.rewind_to_durable();
            }
            let queued: Vec<WalEntry> = std::iter::from_fn(|| self.rx.try_recv().ok()).collect();
            self.fail_entries(queued.into_iter(), &mut streams);
        }
        for s in streams.values() {
            s.rewind_to_durable();
        }
        std::thread::sleep(Duration::from_millis(200));
        self.failed.store(false, Ordering::Release);
    }

    fn fail_entries(&self, entries: impl Iterator<Item = WalEntry>, streams: &mut HashMap<u64, Arc<Stream>>) {
        for entry in entries {
            streams.insert(entry.stream.id(), Arc::clone(&entry.stream));
            if let Some(done) = entry.done {
                let _ = done.send(Err(()));
            }
        }
    }

    fn fail_all(&mut self, group: Vec<(WalEntry, u64)>) {
        for (entry, _) in group {
            if let Some(done) = entry.done {
                let _ = done.send(Err(()));
            }
        }
        while let Some(entry) = self.rx.blocking_recv() {
            if let Some(done) = entry.done {
                let _ = done.send(Err(()));
            }
        }
    }
}
