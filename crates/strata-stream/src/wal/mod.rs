//! The file write-ahead log: segment files of [`record`]s, written by one thread
//! with group commit (every append waiting at the moment of a write shares that
//! write and its fsync), replayed on open.
//!
//! Optionally (`preallocate`), segments are zero-filled in the background before
//! use: `fdatasync` of a write that grows a file (or fills a `fallocate`d,
//! unwritten extent) must also commit file-system metadata, which on the
//! development machine stalled for up to ~300 ms; overwriting existing blocks did
//! not (alone: max 294 ms appending vs 13 ms overwriting zeros at 50 MB/s). Inside
//! the broker, with object uploads on the same disk, it made no measurable
//! difference (docs/benchmarks.md), so it is off by default. A zero record
//! length marks the end of the written part of a segment.

pub mod object;
pub mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::stream::{ReadBatch, Source};
use crate::{AppendMeta, BatchInfo, StreamError, StreamId};
use record::{Decoded, WalRecord};

/// One append waiting for the writer. The WAL knows streams only by id: a
/// durable entry goes back through the [`DurableSink`], whose receiver (the
/// stream store) applies it to its stream and then answers `done`.
pub(crate) struct WalEntry {
    pub stream: StreamId,
    pub base_offset: i64,
    pub meta: AppendMeta,
    pub payload: Bytes,
    pub done: Option<oneshot::Sender<Result<(), AckError>>>,
    /// The append's final outcome, for [`crate::Completion`] holders: set once
    /// the batch is durable or refused for good, never by an early
    /// "not in time" answer.
    pub outcome: Option<watch::Sender<Option<Result<(), AckError>>>>,
    /// When the append was submitted (the object WAL's gather window starts
    /// at its first entry's submission).
    pub submitted: std::time::Instant,
}

/// Why an append was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckError {
    /// A newer owner exists: this process acknowledges nothing more.
    Fenced,
    /// The write did not complete in time (the store is failing); the batch
    /// keeps its offsets and becomes durable if the write lands later.
    Unavailable,
    /// The WAL failed for good (a local write or sync error).
    Failed,
}

impl From<AckError> for StreamError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::Fenced => StreamError::Fenced,
            AckError::Unavailable => StreamError::AckTimeout,
            AckError::Failed => StreamError::Failed,
        }
    }
}

/// An entry the WAL made durable at `position` of `segment`.
pub(crate) struct Durable {
    pub entry: WalEntry,
    pub segment: u64,
    pub position: u64,
}

/// Where a WAL writer sends each group commit, in write order. The receiver
/// applies the group to its streams, then publishes the segment as durable
/// ([`Wal::note_durable`]) and answers the appends.
pub(crate) type DurableSink = mpsc::UnboundedSender<Vec<Durable>>;

impl WalEntry {
    /// The batch's facts.
    pub(crate) fn info(&self) -> BatchInfo {
        BatchInfo { base_offset: self.base_offset, meta: self.meta, size: self.payload.len() as u32 }
    }

    /// Answers the append (once; later calls do nothing). A final outcome
    /// (durable, fenced, failed) also resolves its completion handle.
    pub(crate) fn answer(&mut self, outcome: Result<(), AckError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
        if outcome != Err(AckError::Unavailable)
            && let Some(tx) = self.outcome.take()
        {
            let _ = tx.send(Some(outcome));
        }
    }
}

/// The WAL's health, shared by its handle and its writer thread.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// A local write or sync failed: appends are refused for good.
    failed: AtomicBool,
    /// Writes are failing transiently: appends are refused until one lands.
    stalled: AtomicBool,
    /// A newer owner exists: appends are refused for good.
    fenced: AtomicBool,
}

impl Health {
    /// The error an append gets now, if any.
    pub(crate) fn check(&self) -> Result<(), StreamError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(StreamError::Fenced);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(StreamError::Failed);
        }
        if self.stalled.load(Ordering::Acquire) {
            return Err(StreamError::Unavailable("object store writes are failing; retry".into()));
        }
        Ok(())
    }
    pub(crate) fn set_fenced(&self) {
        self.fenced.store(true, Ordering::Release);
    }
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }
    pub(crate) fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }
    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
    }
    /// Whether appends are refused for good.
    pub(crate) fn is_down(&self) -> bool {
        self.fenced.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire)
    }
}

/// How long a flush tries before its appends are answered `Unavailable` (the
/// flush itself goes on until it is confirmed).
pub(crate) const ACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Settings of the file WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Upper bound of bytes gathered into one write.
    pub max_write_bytes: usize,
    /// Zero-fill segments ahead of use (see the module docs).
    pub preallocate: bool,
}

/// A replayed record and where its payload sits.
pub(crate) struct Replayed {
    pub record: WalRecord,
    pub segment: u64,
    pub position: u64,
}

impl Replayed {
    /// The replayed batch's facts.
    pub(crate) fn info(&self) -> BatchInfo {
        BatchInfo {
            base_offset: self.record.base_offset,
            meta: self.record.meta,
            size: self.record.payload.len() as u32,
        }
    }
}

/// Decodes the records of one segment (file or object) into `out`; returns
/// how many bytes of `data` they cover (the rest is a torn tail or zeros).
pub(crate) fn decode_segment(data: &Bytes, segment: u64, out: &mut Vec<Replayed>) -> usize {
    let mut pos = 0usize;
    while pos < data.len() {
        match record::decode(&data.slice(pos..)) {
            Decoded::Record(record, len) => {
                out.push(Replayed { record, segment, position: (pos + record::RECORD_OVERHEAD) as u64 });
                pos += len;
            }
            Decoded::End => break,
        }
    }
    pos
}

/// The WAL: a channel into the writer thread plus read handles on segments.
pub struct Wal {
    tx: mpsc::UnboundedSender<WalEntry>,
    segments: Arc<Segments>,
    health: Arc<Health>,
    /// The segment the writer last synced to, published after the synced
    /// batches reached their streams.
    durable_segment: Arc<AtomicU64>,
    dir: PathBuf,
    /// Bytes submitted and not yet written (what the writer has queued).
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// Where a WAL segment's bytes are: a local file, or an object (object WAL).
#[derive(Clone)]
pub(crate) enum SegmentHandle {
    File(Arc<File>),
    Object(Arc<dyn ObjectStore>, ObjectPath),
}

impl From<Arc<File>> for SegmentHandle {
    fn from(f: Arc<File>) -> Self {
        SegmentHandle::File(f)
    }
}

#[derive(Default)]
struct Segments {
    files: RwLock<BTreeMap<u64, SegmentHandle>>,
}

impl Segments {
    fn get(&self, id: u64) -> Option<SegmentHandle> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
    fn insert(&self, id: u64, handle: impl Into<SegmentHandle>) {
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(id, handle.into());
    }
    fn remove_before(&self, id: u64) -> Vec<(u64, SegmentHandle)> {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        let old: Vec<u64> = files.range(..id).map(|(k, _)| *k).collect();
        old.into_iter().filter_map(|k| files.remove(&k).map(|h| (k, h))).collect()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the WAL in `config.dir`, replays every segment (truncating a torn
    /// tail of the last one) and starts the writer thread. Returns the WAL and
    /// the replayed records in write order; every group commit goes to `sink`.
    pub(crate) fn open(
        config: WalConfig,
        from_segment: u64,
        sink: DurableSink,
        meta: Arc<dyn strata_meta::MetaStore>,
    ) -> Result<(Arc<Wal>, Vec<Replayed>), StreamError> {
        std::fs::create_dir_all(&config.dir)?;
        let mut ids: Vec<u64> = std::fs::read_dir(&config.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse::<u64>().ok()
            })
            .collect();
        ids.sort_unstable();
        // Segments before the checkpoint are entirely in objects.
        for id in ids.iter().filter(|id| **id < from_segment) {
            let _ = std::fs::remove_file(segment_path(&config.dir, *id));
        }
        ids.retain(|id| *id >= from_segment);
        // Half-prepared segments from a previous run.
        for e in std::fs::read_dir(&config.dir)?.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with(".wal.prep") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let segments = Arc::new(Segments::default());
        let mut replayed = Vec::new();
        let mut tail: Option<(u64, u64, bool)> = None; // (segment id, valid length, preallocated)
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(&config.dir, id);
            let data = Bytes::from(std::fs::read(&path)?);
            let pos = decode_segment(&data, id, &mut replayed);
            let zero_tail = data[pos..].iter().all(|b| *b == 0);
            if pos < data.len() && !zero_tail {
                if i + 1 != ids.len() {
                    return Err(StreamError::Corrupt {
                        segment: path.display().to_string(),
                        reason: format!("undecodable record at byte {pos} of a sealed segment"),
                    });
                }
                tracing::warn!(segment = %path.display(), valid = pos, len = data.len(),
                    "truncating torn wal tail");
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(pos as u64)?;
                f.sync_all()?;
            }
            segments.insert(id, Arc::new(File::open(&path)?));
            tail = Some((id, pos as u64, zero_tail && pos < data.len()));
        }
        let (seg_id, seg_len, preallocated) = match tail {
            Some(t) => t,
            None => {
                let path = segment_path(&config.dir, from_segment);
                File::create(&path)?.sync_all()?;
                sync_dir(&config.dir)?;
                segments.insert(from_segment, Arc::new(File::open(&path)?));
                (from_segment, 0, false)
            }
        };
        let file = OpenOptions::new().write(true).open(segment_path(&config.dir, seg_id))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let durable_segment = Arc::new(AtomicU64::new(seg_id));
        let dir = config.dir.clone();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = Writer {
            queued: Arc::clone(&queued),
            config,
            rx,
            file,
            seg_id,
            seg_len,
            preallocated,
            prep: None,
            segments: Arc::clone(&segments),
            health: Arc::clone(&health),
            sink,
            meta,
            runtime: tokio::runtime::Handle::current(),
        };
        std::thread::Builder::new().name("strata-wal".into()).spawn(move || writer.run())?;
        Ok((Arc::new(Wal { tx, segments, health, durable_segment, dir, queued }), replayed))
    }

    /// Queues an entry for the writer.
    pub(crate) fn submit(&self, entry: WalEntry) -> Result<(), StreamError> {
        self.health.check()?;
        // Count before sending, so the writer never subtracts first.
        let len = entry.payload.len();
        self.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(entry).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(StreamError::Failed);
        }
        Ok(())
    }

    /// The error an append would get now, if any.
    pub(crate) fn check_health(&self) -> Result<(), StreamError> {
        self.health.check()
    }

    /// Makes the WAL refuse every further append (the broker was fenced).
    pub(crate) fn refuse(&self) {
        self.health.set_fenced();
    }

    /// Whether the WAL refuses appends because a newer owner exists.
    pub fn is_fenced(&self) -> bool {
        self.health.is_fenced()
    }

    /// Bytes waiting for the writer.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether the WAL refuses appends for good (a failed write or sync, or
    /// fencing).
    pub fn is_failed(&self) -> bool {
        self.health.is_down()
    }

    /// A read handle on a segment.
    pub(crate) fn segment(&self, id: u64) -> Result<SegmentHandle, StreamError> {
        self.segments.get(id).ok_or_else(|| StreamError::Corrupt {
            segment: segment_path(&self.dir, id).display().to_string(),
            reason: "segment already deleted".into(),
        })
    }

    /// The segment up to which every durable batch is applied to its stream.
    pub(crate) fn durable_segment(&self) -> u64 {
        self.durable_segment.load(Ordering::Acquire)
    }

    /// Publishes `segment` as durable, once the group commit that reached it
    /// is applied to its streams (so a checkpoint read before the streams'
    /// tails never passes a batch still on its way).
    pub(crate) fn note_durable(&self, segment: u64) {
        self.durable_segment.fetch_max(segment, Ordering::AcqRel);
    }

    /// Deletes every segment before `id` (their batches are all in objects).
    pub(crate) async fn delete_before(&self, id: u64) {
        for (old, handle) in self.segments.remove_before(id) {
            match handle {
                SegmentHandle::File(_) => {
                    let path = segment_path(&self.dir, old);
                    match std::fs::remove_file(&path) {
                        Ok(()) => tracing::debug!(segment = %path.display(), "wal segment reclaimed"),
                        Err(e) => {
                            tracing::warn!(segment = %path.display(), error = %e, "cannot delete wal segment")
                        }
                    }
                }
                SegmentHandle::Object(store, path) => match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => tracing::warn!(object = %path, error = %e, "cannot delete wal object"),
                },
            }
        }
    }
}

/// Encodes `first` and whatever else is queued into `buf`, up to about `max`
/// bytes, appending each entry with its payload's position (`base` plus its
/// place in `buf`) to `group`: one group commit's worth.
/// The further entries come from `more` (what is queued right now).
pub(crate) fn gather(
    mut more: impl FnMut() -> Option<WalEntry>,
    first: WalEntry,
    buf: &mut BytesMut,
    base: u64,
    max: usize,
    group: &mut Vec<(WalEntry, u64)>,
) {
    let mut next = Some(first);
    while let Some(entry) = next.take() {
        let start = buf.len() as u64;
        let at = record::encode(buf, entry.stream, entry.base_offset, &entry.meta, &entry.payload);
        group.push((entry, base + start + at as u64));
        if buf.len() < max {
            next = more();
        }
    }
}

/// Answers every entry still to come on `rx` with `error` (the WAL is down
/// for good); returns when the channel closes.
pub(crate) fn refuse_queued(rx: &mut mpsc::UnboundedReceiver<WalEntry>, error: AckError) {
    while let Some(mut entry) = rx.blocking_recv() {
        entry.answer(Err(error));
    }
}

/// Records one WAL flush (write plus sync, or one object PUT plus fence check).
pub(crate) fn record_flush(took: std::time::Duration, bytes: usize) {
    metrics::histogram!("strata_wal_flush_seconds").record(took.as_secs_f64());
    metrics::histogram!("strata_wal_flush_bytes").record(bytes as f64);
}

/// Reads batches from memory, WAL files or WAL objects.
pub(crate) async fn read_sources(sources: Vec<(BatchInfo, Source)>) -> Result<Vec<ReadBatch>, StreamError> {
    let mut out: Vec<Option<ReadBatch>> = Vec::with_capacity(sources.len());
    let mut files = Vec::new();
    for (i, (info, source)) in sources.into_iter().enumerate() {
        match source {
            Source::Memory(data) => out.push(Some(ReadBatch { info, data })),
            Source::File(SegmentHandle::Object(store, path), position) => {
                let data = store.get_range(&path, position..position + u64::from(info.size)).await?;
                out.push(Some(ReadBatch { info, data }));
            }
            Source::File(SegmentHandle::File(file), position) => {
                out.push(None);
                files.push((i, info, file, position));
            }
        }
    }
    if !files.is_empty() {
        let task = tokio::task::spawn_blocking(move || {
            let mut read = Vec::with_capacity(files.len());
            for (i, info, file, position) in files {
                let mut buf = vec![0u8; info.size as usize];
                file.read_exact_at(&mut buf, position)?;
                read.push((i, ReadBatch { info, data: Bytes::from(buf) }));
            }
            Ok::<_, StreamError>(read)
        });
        for (i, batch) in task.await.map_err(|e| StreamError::Io(std::io::Error::other(e)))?? {
            out[i] = Some(batch);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The writer thread's state.
struct Writer {
    config: WalConfig,
    rx: mpsc::UnboundedReceiver<WalEntry>,
    file: File,
    seg_id: u64,
    seg_len: u64,
    /// Whether the open segment was zero-filled ahead of use.
    preallocated: bool,
    /// The next segment being zero-filled in the background.
    prep: Option<std::thread::JoinHandle<std::io::Result<PathBuf>>>,
    segments: Arc<Segments>,
    health: Arc<Health>,
    sink: DurableSink,
    /// Asked after every write whether a newer owner exists.
    meta: Arc<dyn strata_meta::MetaStore>,
    runtime: tokio::runtime::Handle,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// Bytes zero-filled per segment: its roll size and some room for the last write.
fn prepared_len(segment_bytes: u64) -> u64 {
    segment_bytes + segment_bytes / 8
}

/// Below this, an un-preallocated segment is not worth leaving early.
const EARLY_ROLL_BYTES: u64 = 8 << 20;

fn zero_fill(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < len {
        let n = (len - written).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], written)?;
        written += n as u64;
        // Sync as we go so that little dirty data is left for the file
        // system's journal commit, which the WAL's fdatasync may wait on.
        file.sync_data()?;
    }
    file.sync_all()
}

impl Writer {
    fn run(mut self) {
        let mut buf = BytesMut::new();
        let mut group: Vec<(WalEntry, u64)> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            buf.clear();
            group.clear();
            let rx = &mut self.rx;
            gather(
                || rx.try_recv().ok(),
                first,
                &mut buf,
                self.seg_len,
                self.config.max_write_bytes,
                &mut group,
            );
            if self.health.is_fenced() {
                // Fenced while these waited: nothing more is written or acked.
                for (mut entry, _) in group.drain(..) {
                    entry.answer(Err(AckError::Fenced));
                }
                refuse_queued(&mut self.rx, AckError::Fenced);
                return;
            }
            let written_payload: usize = group.iter().map(|(e, _)| e.payload.len()).sum();
            let started = std::time::Instant::now();
            let result = self.file.write_all_at(&buf, self.seg_len).and_then(|()| self.file.sync_data());
            let took = started.elapsed();
            record_flush(took, buf.len());
            if took > std::time::Duration::from_millis(200) {
                tracing::warn!(
                    bytes = buf.len(),
                    batches = group.len(),
                    took_ms = took.as_millis() as u64,
                    "slow wal write"
                );
            }
            match result {
                Ok(()) => {
                    self.seg_len += buf.len() as u64;
                    if !self.confirm_owner(&mut group) {
                        self.queued.fetch_sub(written_payload, Ordering::AcqRel);
                        for (mut entry, _) in group.drain(..) {
                            entry.answer(Err(AckError::Fenced));
                        }
                        refuse_queued(&mut self.rx, AckError::Fenced);
                        return;
                    }
                    let seg = self.seg_id;
                    let done =
                        group.drain(..).map(|(entry, position)| Durable { entry, segment: seg, position });
                    // A closed sink means the store is gone: the entries
                    // drop and their appends see a failure.
                    let _ = self.sink.send(done.collect());
                    self.queued.fetch_sub(written_payload, Ordering::AcqRel);
                    self.maybe_prepare();
                    let ready_early = !self.preallocated
                        && self.seg_len >= EARLY_ROLL_BYTES
                        && self.prep.as_ref().is_some_and(|p| p.is_finished());
                    if (self.seg_len >= self.config.segment_bytes || ready_early)
                        && let Err(e) = self.roll()
                    {
                        self.fail(&e);
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    self.queued.fetch_sub(written_payload, Ordering::AcqRel);
                    for (mut entry, _) in group.drain(..) {
                        entry.answer(Err(AckError::Failed));
                    }
                }
            }
            if self.health.is_down() {
                // Refuse everything still queued; nothing more is written.
                let error = if self.health.is_fenced() { AckError::Fenced } else { AckError::Failed };
                refuse_queued(&mut self.rx, error);
                return;
            }
        }
    }

    /// Confirms, after the write, that no newer owner exists: only then is
    /// the group acknowledged (a zombie acknowledges nothing written after it
    /// resumed). A check that keeps failing answers the group "not in time"
    /// after [`ACK_DEADLINE`] and goes on until it gets an answer; false
    /// once fenced.
    fn confirm_owner(&self, group: &mut [(WalEntry, u64)]) -> bool {
        let started = std::time::Instant::now();
        let mut backoff = std::time::Duration::from_millis(20);
        let mut answered = false;
        loop {
            match self.runtime.block_on(self.meta.check_fenced()) {
                Ok(()) => return true,
                Err(strata_meta::MetaError::Fenced(_)) => {
                    tracing::error!("fenced by a newer owner: refusing all appends");
                    self.health.set_fenced();
                    return false;
                }
                Err(e) => {
                    if !answered && started.elapsed() >= ACK_DEADLINE {
                        tracing::warn!(error = %e, "owner epoch check failing; appends wait");
                        answered = true;
                        for (entry, _) in group.iter_mut() {
                            entry.answer(Err(AckError::Unavailable));
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                }
            }
        }
    }

    fn fail(&self, e: &std::io::Error) {
        tracing::error!(error = %e, "wal write failed; refusing further appends");
        self.health.set_failed();
    }

    /// Starts zero-filling the next segment once this one is half used (or,
    /// when this one was not preallocated, once it sees real load).
    fn maybe_prepare(&mut self) {
        let threshold = if self.preallocated {
            self.config.segment_bytes / 2
        } else {
            EARLY_ROLL_BYTES.min(self.config.segment_bytes / 2)
        };
        if !self.config.preallocate || self.prep.is_some() || self.seg_len < threshold {
            return;
        }
        let path = self.config.dir.join(format!("{:020}.wal.prep", self.seg_id + 1));
        let len = prepared_len(self.config.segment_bytes);
        let spawned = std::thread::Builder::new().name("strata-wal-prep".into()).spawn(move || {
            zero_fill(&path, len)?;
            Ok(path)
        });
        match spawned {
            Ok(handle) => self.prep = Some(handle),
            Err(e) => tracing::warn!(error = %e, "cannot start wal preallocation"),
        }
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let id = self.seg_id + 1;
        let path = segment_path(&self.config.dir, id);
        let prepared = match self.prep.take().map(|h| h.join()) {
            Some(Ok(Ok(prep))) => match std::fs::rename(&prep, &path) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the preallocated wal segment");
                    false
                }
            },
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e, "wal preallocation failed; appending instead");
                false
            }
            Some(Err(_)) => false,
            None => false,
        };
        let file = if prepared {
            OpenOptions::new().write(true).open(&path)?
        } else {
            OpenOptions::new().create_new(true).write(true).open(&path)?
        };
        self.preallocated = prepared;
        sync_dir(&self.config.dir)?;
        self.segments.insert(id, Arc::new(File::open(&path)?));
        self.file = file;
        self.seg_id = id;
        self.seg_len = 0;
        Ok(())
    }
}
