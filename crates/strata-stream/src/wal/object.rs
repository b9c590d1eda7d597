//! The object WAL: batches from every stream are gathered for a few
//! milliseconds and written as one object `wal/<seq>-<epoch>.wal` (the same
//! record format as a file segment); an append is acknowledged only after the
//! PUT landed and the owner epoch was confirmed afterwards. No local disk holds
//! state, so any process can replay a dead broker's WAL objects.
//!
//! Ownership (`docs/ownership.md`, rules 3 to 6):
//! - At open, after the metadata store claimed its epoch, the WAL lists `wal/`
//!   and commits `wal/barrier/<epoch>` = the largest sequence listed before it
//!   replays or accepts anything; its own sequences start above it.
//! - Replay takes a WAL object `(seq, epoch)` only if every later epoch's
//!   barrier is at least `seq`: what a zombie wrote after a takeover is never
//!   replayed, and was never acknowledged (its epoch check came after the
//!   takeover's claim).
//! - A PUT that fails is retried under the same name with the same bytes until
//!   the store answers (`AlreadyExists` means an earlier attempt landed: only
//!   this epoch's owner writes its names). Past the retry deadline the waiting
//!   appends get a retriable error, new appends are refused, and the batches
//!   keep their offsets: they become durable when the PUT lands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_meta::{MetaError, MetaStore, Op, TxnOutcome};
use tokio::sync::mpsc;

use super::{AckError, Durable, DurableSink, Health, Replayed, SegmentHandle, Segments, Wal, WalEntry};
use crate::StreamError;

/// Settings of the object WAL.
#[derive(Debug, Clone, Copy)]
pub struct ObjectWalConfig {
    /// How long a flush gathers batches, from the first one's submission.
    pub flush_delay: Duration,
    /// A flush starts at once past this many bytes.
    pub flush_bytes: usize,
}

/// The names one WAL uses under its prefix (`wal` by default; several WALs
/// share a bucket and a metadata store under different prefixes):
/// - objects `<prefix>/<seq>-<epoch>.wal`,
/// - metadata keys `<prefix>/checkpoint` and `<prefix>/barrier/<epoch>`.
#[derive(Debug, Clone)]
pub(crate) struct WalNames {
    prefix: String,
}

impl WalNames {
    pub(crate) fn new(prefix: &str) -> Self {
        WalNames { prefix: prefix.trim_end_matches('/').to_string() }
    }
    /// The directory of the WAL's objects.
    pub(crate) fn dir(&self) -> ObjectPath {
        ObjectPath::from(self.prefix.as_str())
    }
    /// The name of WAL object `seq` written under owner `epoch`.
    pub(crate) fn object(&self, seq: u64, epoch: u64) -> ObjectPath {
        ObjectPath::from(format!("{}/{seq:020}-{epoch:020}.wal", self.prefix))
    }
    /// Whether `path` is directly in the WAL's directory (not in a WAL whose
    /// prefix is nested in this one).
    pub(crate) fn holds(&self, path: &ObjectPath) -> bool {
        path.as_ref().rsplit_once('/').is_some_and(|(dir, _)| dir == self.prefix)
    }
    /// The key of the WAL's checkpoint.
    pub(crate) fn checkpoint_key(&self) -> String {
        format!("{}/checkpoint", self.prefix)
    }
    fn barrier_prefix(&self) -> String {
        format!("{}/barrier/", self.prefix)
    }
    fn barrier_key(&self, epoch: u64) -> String {
        format!("{}{epoch:020}", self.barrier_prefix())
    }
}

/// Parses `<seq>-<epoch>.wal`; `Err` for the version-1 name `<seq>.wal`.
pub(crate) fn parse_wal_name(name: &str) -> Option<Result<(u64, u64), ()>> {
    let stem = name.strip_suffix(".wal")?;
    match stem.split_once('-') {
        Some((seq, epoch)) => Some(Ok((seq.parse().ok()?, epoch.parse().ok()?))),
        None => stem.parse::<u64>().ok().map(|_| Err(())),
    }
}

/// Whether WAL object `(seq, epoch)` may be replayed: every later epoch's
/// barrier is at least `seq`.
pub(crate) fn replayable(barriers: &BTreeMap<u64, u64>, seq: u64, epoch: u64) -> bool {
    barriers.range(epoch + 1..).all(|(_, barrier)| seq <= *barrier)
}

/// Opens the object WAL: sets this epoch's barrier, replays every replayable
/// WAL object from `from_segment` on, and starts the writer. `wal_dir` is only
/// used for naming in errors.
pub(crate) async fn open(
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    config: ObjectWalConfig,
    from_segment: u64,
    sink: DurableSink,
    names: WalNames,
    wal_dir: std::path::PathBuf,
) -> Result<(Arc<Wal>, Vec<Replayed>), StreamError> {
    let epoch = meta.owner_epoch().unwrap_or(0);
    let objects = list_objects(&store, &names).await?;
    let mut barriers = read_barriers(&meta, &names).await?;
    // The barrier: nothing listed after this point from an older epoch counts.
    let highest = objects.iter().map(|(seq, _)| *seq).max();
    let barrier = highest
        .into_iter()
        .chain(barriers.values().copied())
        .chain(std::iter::once(from_segment.saturating_sub(1)))
        .max()
        .unwrap_or(0);
    let op = Op::Put(names.barrier_key(epoch), Bytes::from(barrier.to_string()));
    if let TxnOutcome::Conflict = meta.txn(vec![], vec![op]).await? {
        return Err(StreamError::BadRecord {
            key: names.barrier_key(epoch),
            reason: "barrier commit conflicted".into(),
        });
    }
    barriers.insert(epoch, barrier);
    let segments = Arc::new(Segments::default());
    let mut replayed = Vec::new();
    let mut skipped = 0usize;
    for &(seq, written_by) in &objects {
        let path = names.object(seq, written_by);
        if seq < from_segment {
            let _ = store.delete(&path).await;
            continue;
        }
        if !replayable(&barriers, seq, written_by) {
            skipped += 1;
            tracing::info!(object = %path, "skipping a wal object written after a takeover (never acknowledged)");
            continue;
        }
        let data = store.get(&path).await?.bytes().await?;
        decode_object(&path, seq, &data, &mut replayed)?;
        segments.insert(seq, SegmentHandle::Object(Arc::clone(&store), path));
    }
    tracing::info!(epoch, barrier, objects = objects.len(), skipped, "object wal opened");
    let next = (barrier + 1).max(from_segment);
    let (tx, rx) = mpsc::unbounded_channel();
    let health = Arc::new(Health::default());
    let durable_segment = Arc::new(AtomicU64::new(next.saturating_sub(1)));
    let queued = Arc::new(AtomicUsize::new(0));
    let writer = ObjectWriter {
        rx,
        store,
        meta,
        config,
        runtime: tokio::runtime::Handle::current(),
        epoch,
        seq: next,
        names,
        segments: Arc::clone(&segments),
        health: Arc::clone(&health),
        sink,
        queued: Arc::clone(&queued),
        pending: std::collections::VecDeque::new(),
    };
    std::thread::Builder::new().name("strata-object-wal".into()).spawn(move || writer.run())?;
    Ok((Arc::new(Wal { tx, segments, health, durable_segment, dir: wal_dir, queued }), replayed))
}

/// Decodes one WAL object whole (objects are written whole: anything
/// undecodable is corruption).
fn decode_object(
    path: &ObjectPath,
    seq: u64,
    data: &Bytes,
    out: &mut Vec<Replayed>,
) -> Result<(), StreamError> {
    let pos = super::decode_segment(data, seq, out);
    if pos < data.len() {
        return Err(StreamError::Corrupt {
            segment: path.to_string(),
            reason: format!("undecodable record at byte {pos} of a wal object"),
        });
    }
    Ok(())
}

/// Lists a WAL's objects as sorted `(seq, epoch)`; a version-1 name is refused.
async fn list_objects(
    store: &Arc<dyn ObjectStore>,
    names: &WalNames,
) -> Result<Vec<(u64, u64)>, StreamError> {
    let listed: Vec<_> = store.list(Some(&names.dir())).try_collect().await?;
    let mut objects: Vec<(u64, u64)> = Vec::new();
    for m in listed.iter().filter(|m| names.holds(&m.location)) {
        match m.location.filename().and_then(parse_wal_name) {
            Some(Ok(id)) => objects.push(id),
            Some(Err(())) => {
                return Err(StreamError::Corrupt {
                    segment: m.location.to_string(),
                    reason: "a version-1 wal object (`<seq>.wal`); this build reads version 2 \
                             (`<seq>-<epoch>.wal`)"
                        .into(),
                });
            }
            None => {}
        }
    }
    objects.sort_unstable();
    Ok(objects)
}

/// Reads a WAL's takeover barriers: epoch to the largest sequence before it.
async fn read_barriers(
    meta: &Arc<dyn MetaStore>,
    names: &WalNames,
) -> Result<BTreeMap<u64, u64>, StreamError> {
    let mut barriers: BTreeMap<u64, u64> = BTreeMap::new();
    let prefix = names.barrier_prefix();
    for e in meta.list(&prefix).await? {
        let epoch_of = e.key.strip_prefix(prefix.as_str()).and_then(|k| k.parse::<u64>().ok());
        let value = std::str::from_utf8(&e.value).ok().and_then(|v| v.parse::<u64>().ok());
        match (epoch_of, value) {
            (Some(ep), Some(v)) => {
                barriers.insert(ep, v);
            }
            _ => return Err(StreamError::BadRecord { key: e.key, reason: "not a barrier".into() }),
        }
    }
    Ok(barriers)
}

/// Reads another WAL (of a process that is gone, or that handed the streams
/// over in its WAL) for the records of `streams`, by the same rules as
/// replay: from its checkpoint on, replayable objects only, in write order.
/// An object deleted meanwhile holds nothing of `streams` that is not in an
/// object already (its writer deletes only below its checkpoint, which stays
/// below every handed-over tail), so it is skipped.
pub(crate) async fn read_for_streams(
    store: &Arc<dyn ObjectStore>,
    meta: &Arc<dyn MetaStore>,
    names: &WalNames,
    streams: &std::collections::HashSet<crate::StreamId>,
) -> Result<Vec<Replayed>, StreamError> {
    let checkpoint: crate::index::Checkpoint = match meta.get(&names.checkpoint_key()).await? {
        Some(e) => crate::store::decode(&e.key, &e.value)?,
        None => crate::index::Checkpoint::default(),
    };
    let objects = list_objects(store, names).await?;
    let barriers = read_barriers(meta, names).await?;
    // Fetched READ_AHEAD at a time (a loaded WAL holds hundreds of small
    // objects: one at a time, a takeover waits seconds), decoded in order.
    let wanted: Vec<_> = objects
        .iter()
        .filter(|(seq, written_by)| *seq >= checkpoint.segment && replayable(&barriers, *seq, *written_by))
        .map(|&(seq, written_by)| {
            let (store, path) = (Arc::clone(store), names.object(seq, written_by));
            async move {
                match store.get(&path).await {
                    Ok(got) => Ok(Some((seq, path, got.bytes().await?))),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(StreamError::from(e)),
                }
            }
        })
        .collect();
    let mut fetched = futures::StreamExt::buffered(futures::stream::iter(wanted), READ_AHEAD);
    let mut out = Vec::new();
    while let Some(got) = futures::StreamExt::next(&mut fetched).await {
        let Some((seq, path, data)) = got? else { continue };
        let mut records = Vec::new();
        decode_object(&path, seq, &data, &mut records)?;
        out.extend(records.into_iter().filter(|r| streams.contains(&r.record.stream_id)));
    }
    Ok(out)
}

/// How many WAL objects [`read_for_streams`] fetches at once.
const READ_AHEAD: usize = 16;

use super::ACK_DEADLINE;

struct ObjectWriter {
    rx: mpsc::UnboundedReceiver<WalEntry>,
    store: Arc<dyn ObjectStore>,
    meta: Arc<dyn MetaStore>,
    config: ObjectWalConfig,
    runtime: tokio::runtime::Handle,
    epoch: u64,
    seq: u64,
    names: WalNames,
    segments: Arc<Segments>,
    health: Arc<Health>,
    sink: DurableSink,
    queued: Arc<AtomicUsize>,
    /// Appends drained (and answered) while a flush was stalled; written next.
    pending: std::collections::VecDeque<WalEntry>,
}

/// How one attempt at a flush ended.
enum Attempt {
    /// Written and the epoch confirmed afterwards: acknowledge.
    Durable,
    /// A newer owner exists.
    Fenced,
    /// Not known yet (the store failed): try again under the same name.
    Retry(String),
}

impl ObjectWriter {
    fn run(mut self) {
        let mut buf = BytesMut::new();
        loop {
            buf.clear();
            let mut group: Vec<(WalEntry, u64)> = Vec::new();
            if self.pending.is_empty() {
                let Some(first) = self.rx.blocking_recv() else { return };
                // The gather window runs from the first entry's submission:
                // under load it has passed during the previous PUT, and the
                // next one starts at once with everything that queued meanwhile.
                let wait = self.config.flush_delay.saturating_sub(first.submitted.elapsed());
                if !wait.is_zero() && self.queued.load(Ordering::Acquire) < self.config.flush_bytes {
                    std::thread::sleep(wait);
                }
                let rx = &mut self.rx;
                super::gather(|| rx.try_recv().ok(), first, &mut buf, 0, self.config.flush_bytes, &mut group);
            } else if let Some(first) = self.pending.pop_front() {
                let pending = &mut self.pending;
                super::gather(
                    || pending.pop_front(),
                    first,
                    &mut buf,
                    0,
                    self.config.flush_bytes,
                    &mut group,
                );
            }
            let data = Bytes::from(std::mem::take(&mut buf));
            if !self.flush(data, group) {
                return;
            }
        }
    }

    /// Writes one flush until it is durable (true) or this process is fenced
    /// (false: everything is refused from now on).
    fn flush(&mut self, data: Bytes, mut group: Vec<(WalEntry, u64)>) -> bool {
        let bytes: usize = group.iter().map(|(e, _)| e.payload.len()).sum();
        let path = self.names.object(self.seq, self.epoch);
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(20);
        let mut answered = false;
        loop {
            match self.runtime.block_on(self.attempt(&path, &data)) {
                Attempt::Durable => break,
                Attempt::Fenced => {
                    tracing::error!(object = %path, "fenced by a newer owner: refusing all appends");
                    self.health.set_fenced();
                    self.queued.fetch_sub(bytes, Ordering::AcqRel);
                    for (mut entry, _) in group {
                        entry.answer(Err(AckError::Fenced));
                    }
                    for mut entry in self.pending.drain(..) {
                        entry.answer(Err(AckError::Fenced));
                    }
                    super::refuse_queued(&mut self.rx, AckError::Fenced);
                    return false;
                }
                Attempt::Retry(error) => {
                    if !answered && started.elapsed() >= ACK_DEADLINE {
                        // Offsets stay reserved: the batches become durable
                        // when the PUT lands; their producers retry meanwhile.
                        tracing::warn!(object = %path, error, "wal object write failing; appends refused until it lands");
                        answered = true;
                        self.health.set_stalled(true);
                        for (entry, _) in group.iter_mut() {
                            entry.answer(Err(AckError::Unavailable));
                        }
                    }
                    if answered {
                        // Appends queued behind this flush keep their offsets
                        // too, and are answered now.
                        let mut more: Vec<WalEntry> =
                            std::iter::from_fn(|| self.rx.try_recv().ok()).collect();
                        for entry in more.iter_mut() {
                            entry.answer(Err(AckError::Unavailable));
                        }
                        // Written, in order, right after this flush.
                        self.pending.extend(more);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        super::record_flush(started.elapsed(), data.len());
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.segments.insert(self.seq, SegmentHandle::Object(Arc::clone(&self.store), path));
        let seq = self.seq;
        let _ = self.sink.send(
            group.into_iter().map(|(entry, position)| Durable { entry, segment: seq, position }).collect(),
        );
        self.seq += 1;
        if answered {
            self.health.set_stalled(false);
            tracing::info!("wal object writes succeed again");
        }
        true
    }

    /// One PUT (create-if-absent) and the epoch check after it.
    async fn attempt(&self, path: &ObjectPath, data: &Bytes) -> Attempt {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(path, PutPayload::from_bytes(data.clone()), opts).await {
            // Only this epoch's owner writes this name: an earlier attempt of
            // this very flush landed.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Attempt::Retry(e.to_string()),
        }
        match self.meta.check_fenced().await {
            Ok(()) => Attempt::Durable,
            Err(MetaError::Fenced(_)) => Attempt::Fenced,
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }
}
