//! The file write-ahead log: segment files of [`record`]s, written by one thread
//! with group commit (every append waiting at the moment of a write shares that
//! write and its fsync), replayed on open.

pub mod record;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};

use crate::stream::{ReadBatch, Source};
use crate::{AppendMeta, BatchInfo, Stream, StreamError};
use record::{Decoded, WalRecord};

/// One append waiting for the writer.
pub(crate) struct WalEntry {
    pub stream: Arc<Stream>,
    pub base_offset: i64,
    pub meta: AppendMeta,
    pub payload: Bytes,
    pub done: Option<oneshot::Sender<Result<(), ()>>>,
}

/// Settings of the file WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Upper bound of bytes gathered into one write.
    pub max_write_bytes: usize,
}

/// A replayed record and where its payload sits.
pub(crate) struct Replayed {
    pub record: WalRecord,
    pub segment: u64,
    pub position: u64,
}

/// The WAL: a channel into the writer thread plus read handles on segments.
pub struct Wal {
    tx: mpsc::UnboundedSender<WalEntry>,
    segments: Arc<Segments>,
    failed: Arc<AtomicBool>,
    /// The segment the writer last synced to, published after the synced
    /// batches reached their streams.
    durable_segment: Arc<AtomicU64>,
    dir: PathBuf,
}

#[derive(Default)]
struct Segments {
    files: RwLock<BTreeMap<u64, Arc<File>>>,
}

impl Segments {
    fn get(&self, id: u64) -> Option<Arc<File>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
    fn insert(&self, id: u64, file: Arc<File>) {
        self.files.write().unwrap_or_else(|e| e.into_inner()).insert(id, file);
    }
    fn remove_before(&self, id: u64) -> Vec<u64> {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        let old: Vec<u64> = files.range(..id).map(|(k, _)| *k).collect();
        for k in &old {
            files.remove(k);
        }
        old
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
    /// the replayed records in write order; `generation` is bumped after every
    /// group commit.
    pub(crate) fn open(
        config: WalConfig,
        from_segment: u64,
        generation: watch::Sender<u64>,
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
        let segments = Arc::new(Segments::default());
        let mut replayed = Vec::new();
        let mut tail: Option<(u64, u64)> = None; // (segment id, valid length)
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(&config.dir, id);
            let data = Bytes::from(std::fs::read(&path)?);
            let mut pos = 0usize;
            while pos < data.len() {
                match record::decode(&data.slice(pos..)) {
                    Decoded::Record(record, len) => {
                        replayed.push(Replayed {
                            record,
                            segment: id,
                            position: (pos + record::RECORD_OVERHEAD) as u64,
                        });
                        pos += len;
                    }
                    Decoded::End => break,
                }
            }
            if pos < data.len() {
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
            tail = Some((id, pos as u64));
        }
        let (seg_id, seg_len) = match tail {
            Some(t) => t,
            None => {
                let path = segment_path(&config.dir, from_segment);
                File::create(&path)?.sync_all()?;
                sync_dir(&config.dir)?;
                segments.insert(from_segment, Arc::new(File::open(&path)?));
                (from_segment, 0)
            }
        };
        let file = OpenOptions::new().append(true).open(segment_path(&config.dir, seg_id))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(AtomicBool::new(false));
        let durable_segment = Arc::new(AtomicU64::new(seg_id));
        let dir = config.dir.clone();
        let writer = Writer {
            durable_segment: Arc::clone(&durable_segment),
            config,
            rx,
            file,
            seg_id,
            seg_len,
            segments: Arc::clone(&segments),
            failed: Arc::clone(&failed),
            generation,
        };
        std::thread::Builder::new().name("strata-wal".into()).spawn(move || writer.run())?;
        Ok((Arc::new(Wal { tx, segments, failed, durable_segment, dir }), replayed))
    }

    /// Queues an entry for the writer.
    pub(crate) fn submit(&self, entry: WalEntry) -> Result<(), StreamError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StreamError::Failed);
        }
        self.tx.send(entry).map_err(|_| StreamError::Failed)
    }

    /// Whether a write or sync has failed (the WAL then refuses appends).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// A read handle on a segment.
    pub(crate) fn segment(&self, id: u64) -> Result<Arc<File>, StreamError> {
        self.segments.get(id).ok_or_else(|| StreamError::Corrupt {
            segment: segment_path(&self.dir, id).display().to_string(),
            reason: "segment already deleted".into(),
        })
    }

    /// The segment the writer has synced up to.
    pub(crate) fn durable_segment(&self) -> u64 {
        self.durable_segment.load(Ordering::Acquire)
    }

    /// Deletes every segment before `id` (their batches are all in objects).
    pub(crate) fn delete_before(&self, id: u64) {
        for old in self.segments.remove_before(id) {
            let path = segment_path(&self.dir, old);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::debug!(segment = %path.display(), "wal segment reclaimed"),
                Err(e) => tracing::warn!(segment = %path.display(), error = %e, "cannot delete wal segment"),
            }
        }
    }

    /// Bytes of WAL segments on disk.
    pub fn disk_bytes(&self) -> u64 {
        let files = self.segments.files.read().unwrap_or_else(|e| e.into_inner());
        files.values().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum()
    }
}

/// Reads batches from memory or WAL segments.
pub(crate) async fn read_sources(sources: Vec<(BatchInfo, Source)>) -> Result<Vec<ReadBatch>, StreamError> {
    if sources.iter().all(|(_, s)| matches!(s, Source::Memory(_))) {
        return Ok(sources
            .into_iter()
            .filter_map(|(info, s)| match s {
                Source::Memory(data) => Some(ReadBatch { info, data }),
                Source::File(..) => None,
            })
            .collect());
    }
    let task = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(sources.len());
        for (info, source) in sources {
            let data = match source {
                Source::Memory(d) => d,
                Source::File(file, position) => {
                    let mut buf = vec![0u8; info.size as usize];
                    file.read_exact_at(&mut buf, position)?;
                    Bytes::from(buf)
                }
            };
            out.push(ReadBatch { info, data });
        }
        Ok(out)
    });
    task.await.map_err(|e| StreamError::Io(std::io::Error::other(e)))?
}

/// The writer thread's state.
struct Writer {
    config: WalConfig,
    rx: mpsc::UnboundedReceiver<WalEntry>,
    file: File,
    seg_id: u64,
    seg_len: u64,
    segments: Arc<Segments>,
    failed: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    durable_segment: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self) {
        let mut buf = BytesMut::new();
        let mut group: Vec<(WalEntry, u64)> = Vec::new();
        while let Some(first) = self.rx.blocking_recv() {
            buf.clear();
            group.clear();
            let mut next = Some(first);
            while let Some(entry) = next.take() {
                let start = buf.len() as u64;
                let payload_at = record::encode(
                    &mut buf,
                    entry.stream.id(),
                    entry.base_offset,
                    &entry.meta,
                    &entry.payload,
                );
                group.push((entry, self.seg_len + start + payload_at as u64));
                if buf.len() < self.config.max_write_bytes {
                    next = self.rx.try_recv().ok();
                }
            }
            let result = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
            match result {
                Ok(()) => {
                    self.seg_len += buf.len() as u64;
                    for (entry, position) in group.drain(..) {
                        let info = BatchInfo {
                            base_offset: entry.base_offset,
                            meta: entry.meta,
                            size: entry.payload.len() as u32,
                        };
                        entry.stream.on_durable(info, self.seg_id, position, &entry.payload);
                        if let Some(done) = entry.done {
                            let _ = done.send(Ok(()));
                        }
                    }
                    self.durable_segment.store(self.seg_id, Ordering::Release);
                    self.generation.send_modify(|g| *g += 1);
                    if self.seg_len >= self.config.segment_bytes
                        && let Err(e) = self.roll()
                    {
                        self.fail(&e);
                    }
                }
                Err(e) => {
                    self.fail(&e);
                    for (entry, _) in group.drain(..) {
                        if let Some(done) = entry.done {
                            let _ = done.send(Err(()));
                        }
                    }
                }
            }
            if self.failed.load(Ordering::Acquire) {
                // Refuse everything still queued; nothing more is written.
                while let Some(entry) = self.rx.blocking_recv() {
                    if let Some(done) = entry.done {
                        let _ = done.send(Err(()));
                    }
                }
                return;
            }
        }
    }

    fn fail(&self, e: &std::io::Error) {
        tracing::error!(error = %e, "wal write failed; refusing further appends");
        self.failed.store(true, Ordering::Release);
    }

    fn roll(&mut self) -> std::io::Result<()> {
        let id = self.seg_id + 1;
        let path = segment_path(&self.config.dir, id);
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        sync_dir(&self.config.dir)?;
        self.segments.insert(id, Arc::new(File::open(&path)?));
        self.file = file;
        self.seg_id = id;
        self.seg_len = 0;
        Ok(())
    }
}
