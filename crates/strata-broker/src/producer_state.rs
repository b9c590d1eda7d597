//! Idempotent producers: producer-id allocation (InitProducerId) and, per
//! partition, each producer's epoch and last five batches, so that a retried
//! batch is answered with its original offset instead of being written twice;
//! and transactions as a partition sees them (`docs/transactions.md`): each
//! producer's open transaction, the aborted ones, and the last stable offset.
//!
//! Persistence: ids are allocated in blocks whose upper bound is committed to
//! the metadata store before use (`ids/next-producer`), so an id is never handed
//! out twice, even across restarts. A partition's producer state is
//! snapshotted to `p/<stream>` (only batches already durable, with the offset
//! the snapshot covers) and rebuilt on first use by replaying the batch headers
//! written after that offset.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_meta::{Condition, MetaStore, Op, TxnOutcome};
use strata_stream::Stream;
use tokio::sync::OnceCell;

use crate::{BrokerError, records};

/// Kafka keeps this many batches per producer for duplicate detection.
const CACHED_BATCHES: usize = 5;
const ID_BLOCK: i64 = 1000;
const NEXT_PRODUCER_KEY: &str = "ids/next-producer";

/// One batch remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeqBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// A producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SeqBatch>,
    /// The first offset of its open transaction here.
    #[serde(default)]
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker (-1: none yet).
    #[serde(default)]
    pub coordinator_epoch: i32,
    /// The timestamp of its last batch or marker here (Kafka's
    /// `lastTimestamp`), from which it expires; -1 when a snapshot written
    /// before this field was loaded (the load sets it to the load's time).
    #[serde(default = "no_timestamp")]
    pub last_timestamp: i64,
}

fn no_timestamp() -> i64 {
    -1
}

impl Default for ProducerEntry {
    /// A producer not seen before (Kafka's empty `ProducerStateEntry`).
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            txn_first_offset: None,
            coordinator_epoch: -1,
            last_timestamp: -1,
        }
    }
}

/// An aborted transaction of a partition (Kafka's `.txnindex` entry): a
/// `read_committed` consumer drops the producer's batches from `first_offset`
/// up to the abort marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A transaction whose marker is appended but may not be durable yet: it
/// stays unstable until the high watermark passes its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completing {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
    pub aborted: bool,
}

/// A transaction marker as a partition applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    /// Where it was appended.
    pub offset: i64,
    pub timestamp: i64,
}

/// What to do with an idempotent batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    /// Next in sequence: append it.
    Append,
    /// Already written: answer with this batch's offsets.
    Duplicate(SeqBatch),
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// The last sequence of a batch starting at `first` with `count` records.
pub(crate) fn last_seq(first: i32, count: i32) -> i32 {
    ((i64::from(first) + i64::from(count) - 1) % (i64::from(i32::MAX) + 1)) as i32
}

/// Producers of one partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionProducers {
    pub producers: HashMap<i64, ProducerEntry>,
    /// The completion of each batch this process appended, by
    /// `(producer id, first sequence)`, while the batch is among its
    /// producer's remembered ones: a retry waits on its original's outcome.
    /// Batches without one were loaded from durable state.
    pub completions: HashMap<(i64, i32), strata_stream::Completion>,
    /// Aborted transactions, in marker order.
    pub aborted: Vec<AbortedTxn>,
    /// Transactions ended by a marker the high watermark has not passed.
    pub completing: Vec<Completing>,
    /// The open transactions, by first offset (each producer's
    /// `txn_first_offset`): the last stable offset without a scan of every
    /// producer.
    open: std::collections::BTreeMap<i64, i64>,
}

impl PartitionProducers {
    /// Decides on a batch from `pid` at `epoch` with sequences `[first, last]`;
    /// `transactional` says whether the batch is part of a transaction.
    pub fn check(
        &self,
        pid: i64,
        epoch: i16,
        first: i32,
        last: i32,
        transactional: bool,
    ) -> Result<SeqCheck, BrokerError> {
        if !transactional && self.producers.get(&pid).is_some_and(|e| e.txn_first_offset.is_some()) {
            return Err(BrokerError::InvalidTxnState(format!(
                "producer {pid} sent a non-transactional batch while its transaction is open"
            )));
        }
        let Some(entry) = self.producers.get(&pid) else {
            return if first == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(BrokerError::UnknownProducerId(format!(
                    "no state for producer {pid} in this partition and sequence {first} is not 0"
                )))
            };
        };
        if epoch < entry.epoch {
            return Err(BrokerError::InvalidProducerEpoch(format!(
                "producer {pid} epoch {epoch} is older than {}",
                entry.epoch
            )));
        }
        if epoch > entry.epoch {
            return if first == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(BrokerError::OutOfOrderSequence(format!(
                    "producer {pid} starts epoch {epoch} at sequence {first}, not 0"
                )))
            };
        }
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == first && b.last_seq == last) {
            return Ok(SeqCheck::Duplicate(*dup));
        }
        let expected = entry.batches.back().map(|b| next_seq(b.last_seq)).unwrap_or(0);
        if first == expected {
            Ok(SeqCheck::Append)
        } else {
            Err(BrokerError::OutOfOrderSequence(format!(
                "producer {pid} sent sequence {first}, expected {expected}"
            )))
        }
    }

    /// Records an appended (or replayed) batch whose largest timestamp is
    /// `timestamp`.
    pub fn record(&mut self, pid: i64, epoch: i16, batch: SeqBatch, timestamp: i64) {
        let entry = self.producers.entry(pid).or_default();
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        if entry.batches.is_empty() || epoch > entry.epoch {
            entry.batches.clear();
            entry.epoch = epoch;
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
        let kept: Vec<i32> = entry.batches.iter().map(|b| b.first_seq).collect();
        self.completions.retain(|(p, first), _| *p != pid || kept.contains(first));
    }

    /// Notes a transactional batch appended at `offset`: the producer's
    /// transaction is open here from its first batch.
    pub fn record_txn(&mut self, pid: i64, offset: i64) {
        let entry = self.producers.entry(pid).or_default();
        if entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(offset);
            self.open.insert(offset, pid);
        }
    }

    /// Rebuilds the index of open transactions from the producers (after
    /// they were loaded from a snapshot).
    fn index_open(&mut self) {
        self.open = self
            .producers
            .iter()
            .filter_map(|(pid, e)| e.txn_first_offset.map(|first| (first, *pid)))
            .collect();
    }

    /// Checks a transaction marker of `pid` at `epoch` (Kafka's
    /// `appendEndTxnMarker`): an older epoch than the producer's is
    /// INVALID_PRODUCER_EPOCH.
    pub fn check_marker(&self, pid: i64, epoch: i16) -> Result<(), BrokerError> {
        match self.producers.get(&pid) {
            Some(e) if epoch < e.epoch => Err(BrokerError::InvalidProducerEpoch(format!(
                "marker of producer {pid} at epoch {epoch} is older than {}",
                e.epoch
            ))),
            _ => Ok(()),
        }
    }

    /// Applies a marker appended at `offset`: the producer's epoch is the
    /// marker's from now on, its open transaction (if any) ends.
    pub fn record_marker(&mut self, marker: Marker) {
        let Marker { producer_id: pid, epoch, commit, coordinator_epoch, offset, timestamp } = marker;
        let entry = self.producers.entry(pid).or_default();
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        if let Some(first) = entry.txn_first_offset.take() {
            self.open.remove(&first);
            if !commit {
                self.aborted.push(AbortedTxn { producer_id: pid, first_offset: first, last_offset: offset });
            }
            self.completing.push(Completing {
                producer_id: pid,
                first_offset: first,
                marker_offset: offset,
                aborted: !commit,
            });
        }
    }

    /// Forgets the producers idle for `expiration_ms` or more (Kafka's
    /// `producer.id.expiration.ms`, judged by each one's last timestamp)
    /// that have no open transaction here. Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        let gone = before - self.producers.len();
        if gone > 0 {
            let producers = &self.producers;
            self.completions.retain(|(pid, _), _| producers.contains_key(pid));
        }
        gone
    }

    /// The last stable offset under high watermark `hw`: the first offset
    /// of a transaction still open, or ended by a marker not yet below `hw`.
    pub fn last_stable_offset(&mut self, hw: i64) -> i64 {
        if !self.completing.is_empty() {
            self.completing.retain(|c| c.marker_offset >= hw);
        }
        let open = self.open.keys().next().copied();
        let ending = self.completing.iter().map(|c| c.first_offset);
        open.into_iter().chain(ending).min().map_or(hw, |first| first.min(hw))
    }

    /// The aborted transactions a `read_committed` fetch of `[from, to)`
    /// needs: every one whose range overlaps it.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // In marker order: those ending before `from` are skipped by a search.
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < to).copied().collect()
    }

    /// Remembers the completion of a batch just appended (after [`record`]).
    ///
    /// [`record`]: PartitionProducers::record
    pub fn track(&mut self, pid: i64, first_seq: i32, completion: strata_stream::Completion) {
        self.completions.insert((pid, first_seq), completion);
    }
}

/// The persisted form of a partition's producers.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    /// Every batch below this offset is reflected.
    offset: i64,
    producers: Vec<(i64, ProducerEntry)>,
    /// Aborted transactions whose marker is below `offset`.
    #[serde(default)]
    aborted: Vec<AbortedTxn>,
}

/// A partition's producer state and whether it was loaded and changed.
#[derive(Default)]
pub(crate) struct PartitionState {
    pub producers: Mutex<PartitionProducers>,
    loaded: OnceCell<()>,
    dirty: AtomicBool,
    /// The stream's leader epoch this state was loaded for.
    epoch: i32,
}

impl PartitionState {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, PartitionProducers> {
        self.producers.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }
}

/// Producer snapshots per metadata transaction (a condition and a put
/// each, within etcd's 128 operations).
const SNAPSHOTS_PER_COMMIT: usize = 50;

fn snapshot_key(stream: u64) -> String {
    format!("p/{stream:020}")
}

/// Producer ids and per-partition producer states.
pub(crate) struct Producers {
    meta: Arc<dyn MetaStore>,
    ids: tokio::sync::Mutex<(i64, i64)>,
    /// The latest epoch handed out per producer id, for KIP-360 bumps.
    epochs: Mutex<HashMap<i64, i16>>,
    partitions: Mutex<HashMap<u64, Arc<PartitionState>>>,
    /// `producer.id.expiration.ms`: a partition's load drops the producers
    /// already expired, as Kafka's does.
    expiration_ms: i64,
}

impl Producers {
    pub fn new(meta: Arc<dyn MetaStore>, expiration_ms: i64) -> Self {
        Producers {
            meta,
            expiration_ms,
            ids: tokio::sync::Mutex::new((0, 0)),
            epochs: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh producer id, never handed out before.
    pub(crate) async fn allocate(&self) -> Result<i64, BrokerError> {
        let mut ids = self.ids.lock().await;
        if ids.0 >= ids.1 {
            for _ in 0..16 {
                let current =
                    self.meta.get(NEXT_PRODUCER_KEY).await.map_err(strata_cluster::ClusterError::from)?;
                let (next, cond) = match &current {
                    Some(e) => (
                        String::from_utf8_lossy(&e.value).parse::<i64>().map_err(|err| {
                            BrokerError::Cluster(strata_cluster::ClusterError::Corrupt {
                                key: NEXT_PRODUCER_KEY.into(),
                                reason: err.to_string(),
                            })
                        })?,
                        Condition::Version(NEXT_PRODUCER_KEY.into(), e.mod_revision),
                    ),
                    None => (0, Condition::Absent(NEXT_PRODUCER_KEY.into())),
                };
                let limit = next + ID_BLOCK;
                let outcome = self
                    .meta
                    .txn(vec![cond], vec![Op::Put(NEXT_PRODUCER_KEY.into(), Bytes::from(limit.to_string()))])
                    .await
                    .map_err(strata_cluster::ClusterError::from)?;
                if let TxnOutcome::Committed(_) = outcome {
                    *ids = (next, limit);
                    break;
                }
            }
            if ids.0 >= ids.1 {
                return Err(BrokerError::Cluster(strata_cluster::ClusterError::Contended));
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// InitProducerId for an idempotent producer. With the producer's current
    /// id and epoch (v3+, KIP-360) the epoch is bumped; otherwise a new id.
    pub async fn init(&self, current: Option<(i64, i16)>) -> Result<(i64, i16), BrokerError> {
        if let Some((pid, epoch)) = current {
            let known = self.epochs.lock().unwrap_or_else(|e| e.into_inner()).get(&pid).copied();
            if known.is_none_or(|k| k == epoch) && epoch < i16::MAX - 1 {
                let next = epoch + 1;
                self.epochs.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, next);
                return Ok((pid, next));
            }
            if known.is_some_and(|k| k != epoch) {
                return Err(BrokerError::InvalidProducerEpoch(format!(
                    "producer {pid} epoch {epoch} is not its current epoch"
                )));
            }
        }
        let pid = self.allocate().await?;
        self.epochs.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, 0);
        Ok((pid, 0))
    }

    /// Notes the epoch a producer uses (from produce).
    pub fn observe(&self, pid: i64, epoch: i16) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let e = epochs.entry(pid).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// The loaded producer state of a partition's stream.
    pub async fn partition(&self, stream: &Stream) -> Result<Arc<PartitionState>, BrokerError> {
        let epoch = stream.epoch();
        let fresh = || Arc::new(PartitionState { epoch, ..Default::default() });
        let state = {
            let mut map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            // Offsets are final (a failed WAL write is retried, never
            // rewound), so what this state recorded stays true within one
            // leader epoch. A takeover at a newer epoch loads afresh (what
            // the previous leader wrote is in the stream by then), and
            // nothing drops the state while the stream takes appends.
            let entry = map.entry(stream.id()).or_insert_with(fresh);
            if entry.epoch < epoch {
                *entry = fresh();
            }
            if entry.epoch > epoch {
                // A stale stream handle: its appends are refused anyway.
                fresh()
            } else {
                Arc::clone(entry)
            }
        };
        state.loaded.get_or_try_init(|| self.load(stream, &state)).await?;
        Ok(state)
    }

    /// Loads the snapshot and replays batch headers written after it.
    async fn load(&self, stream: &Stream, state: &PartitionState) -> Result<(), BrokerError> {
        let snapshot: Snapshot = match self
            .meta
            .get(&snapshot_key(stream.id()))
            .await
            .map_err(strata_cluster::ClusterError::from)?
        {
            Some(e) => serde_json::from_slice(&e.value).map_err(|err| {
                BrokerError::Cluster(strata_cluster::ClusterError::Corrupt {
                    key: e.key.clone(),
                    reason: err.to_string(),
                })
            })?,
            None => Snapshot::default(),
        };
        let (start, end) = stream.offsets();
        let mut producers = PartitionProducers {
            producers: snapshot.producers.into_iter().collect(),
            aborted: snapshot.aborted,
            ..Default::default()
        };
        producers.index_open();
        let mut at = snapshot.offset.max(start);
        let mut replayed = 0usize;
        while at < end {
            let batches = stream.read(at, 8 << 20).await?;
            if batches.is_empty() {
                break;
            }
            for b in batches {
                at = b.info.end_offset();
                let Some(h) = records::parse_header(&b.data) else { continue };
                if h.producer_id < 0 {
                    continue;
                }
                if h.is_control() {
                    if let Some(kind) = records::control_type(&b.data) {
                        let coordinator_epoch = 0;
                        producers.record_marker(Marker {
                            producer_id: h.producer_id,
                            epoch: h.producer_epoch,
                            commit: kind == 1,
                            coordinator_epoch,
                            offset: b.info.base_offset,
                            timestamp: h.max_timestamp,
                        });
                    }
                    replayed += 1;
                    continue;
                }
                if h.is_transactional() {
                    producers.record_txn(h.producer_id, b.info.base_offset);
                }
                // A compacted batch keeps its offset span in the stream while
                // its header starts at its first surviving record: sequences
                // follow offsets, so the span gives the original ones.
                let shift = (h.base_offset - b.info.base_offset) as i32;
                let first_seq = h.base_sequence.wrapping_sub(shift);
                let span = (b.info.end_offset() - b.info.base_offset) as i32;
                let seq = SeqBatch {
                    first_seq,
                    last_seq: last_seq(first_seq, span),
                    base_offset: b.info.base_offset,
                    last_offset: b.info.end_offset() - 1,
                };
                producers.record(h.producer_id, h.producer_epoch, seq, h.max_timestamp);
                replayed += 1;
            }
        }
        let now = crate::broker::now_ms();
        for (pid, entry) in producers.producers.iter_mut() {
            if entry.last_timestamp < 0 {
                entry.last_timestamp = now;
            }
            self.observe(*pid, entry.epoch);
        }
        if producers.expire(now, self.expiration_ms) > 0 {
            state.mark_dirty();
        }
        if replayed > 0 {
            tracing::debug!(stream = stream.id(), replayed, "producer state rebuilt");
            state.mark_dirty();
        }
        *state.lock() = producers;
        Ok(())
    }

    /// Snapshots every changed partition (only its durable batches) of the
    /// streams `served` still gives; each snapshot is conditional on this
    /// broker still owning the stream, so that one that lost it (a paused
    /// zombie) cannot overwrite its successor's producer state.
    pub async fn snapshot(
        &self,
        served: &(dyn Fn(u64) -> Option<Arc<Stream>> + Sync),
    ) -> Result<usize, BrokerError> {
        let states: Vec<(u64, Arc<PartitionState>)> = {
            let map = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (*k, Arc::clone(v))).collect()
        };
        let mut pending = Vec::new();
        for (id, state) in states {
            if !state.dirty.swap(false, Ordering::AcqRel) {
                continue;
            }
            let Some(stream) = served(id) else { continue };
            if stream.epoch() != state.epoch {
                continue;
            }
            let op = Op::Put(snapshot_key(id), encode_snapshot(&state, stream.offsets()));
            pending.push((state, stream.owner_condition(), op));
        }
        let mut written = 0;
        for chunk in pending.chunks(SNAPSHOTS_PER_COMMIT) {
            let conditions = chunk.iter().map(|(_, c, _)| c.clone()).collect();
            let ops = chunk.iter().map(|(_, _, op)| op.clone()).collect();
            match self.meta.txn(conditions, ops).await {
                Ok(TxnOutcome::Committed(_)) => written += chunk.len(),
                // One of them is no longer ours (or its meta record moved
                // on meanwhile): one at a time.
                Ok(TxnOutcome::Conflict) => {
                    for (state, condition, op) in chunk {
                        match self.meta.txn(vec![condition.clone()], vec![op.clone()]).await {
                            Ok(TxnOutcome::Committed(_)) => written += 1,
                            Ok(TxnOutcome::Conflict) => state.mark_dirty(),
                            Err(e) => {
                                state.mark_dirty();
                                return Err(strata_cluster::ClusterError::from(e).into());
                            }
                        }
                    }
                }
                Err(e) => {
                    for (state, ..) in &pending {
                        state.mark_dirty();
                    }
                    return Err(strata_cluster::ClusterError::from(e).into());
                }
            }
        }
        Ok(written)
    }

    /// Snapshots one partition now (its stream is being handed over, its
    /// appends settled), whether changed or not; nothing when never loaded.
    /// Conditional on this broker still owning the stream.
    pub async fn snapshot_stream(&self, stream: &Stream) -> Result<(), BrokerError> {
        let state = self.partitions.lock().unwrap_or_else(|e| e.into_inner()).get(&stream.id()).cloned();
        let Some(state) = state.filter(|s| s.loaded.get().is_some()) else { return Ok(()) };
        let op = Op::Put(snapshot_key(stream.id()), encode_snapshot(&state, stream.offsets()));
        match self.meta.txn(vec![stream.owner_condition()], vec![op]).await {
            Ok(TxnOutcome::Committed(_)) => Ok(()),
            Ok(TxnOutcome::Conflict) => {
                Err(BrokerError::Storage(strata_stream::StreamError::NotOwner(stream.id())))
            }
            Err(e) => Err(strata_cluster::ClusterError::from(e).into()),
        }
    }

    /// Forgets a partition's loaded state (its stream moved away, or has
    /// just been taken over here and must load afresh).
    pub fn drop_partition(&self, stream: u64) {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream);
    }

    /// Expires idle producers in every loaded partition (Kafka's
    /// `producer.id.expiration.ms`); the next snapshot leaves them out.
    pub fn expire(&self, now_ms: i64) -> usize {
        let expiration_ms = self.expiration_ms;
        let states: Vec<Arc<PartitionState>> =
            self.partitions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        let mut gone_in_all = 0;
        for state in states {
            if state.loaded.get().is_none() {
                continue;
            }
            let gone = state.lock().expire(now_ms, expiration_ms);
            if gone > 0 {
                state.mark_dirty();
                gone_in_all += gone;
            }
        }
        gone_in_all
    }

    /// Forgets a deleted partition.
    pub async fn forget(&self, stream: u64) {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream);
        let _ = self.meta.txn(vec![], vec![Op::Delete(snapshot_key(stream))]).await;
    }
}

/// A partition's snapshot covering `(start, durable_end)`: only batches
/// already durable.
fn encode_snapshot(state: &PartitionState, (start, durable_end): (i64, i64)) -> Bytes {
    let snap = {
        let guard = state.lock();
        // A transaction whose marker is not durable yet is open in
        // the snapshot (the replay after it finds the marker).
        let reopened: HashMap<i64, i64> = guard
            .completing
            .iter()
            .filter(|c| c.marker_offset >= durable_end && c.first_offset < durable_end)
            .map(|c| (c.producer_id, c.first_offset))
            .collect();
        let producers: Vec<(i64, ProducerEntry)> = guard
            .producers
            .iter()
            .filter_map(|(pid, e)| {
                let batches: VecDeque<SeqBatch> =
                    e.batches.iter().filter(|b| b.last_offset < durable_end).copied().collect();
                let txn_first_offset = e
                    .txn_first_offset
                    .filter(|first| *first < durable_end)
                    .or_else(|| reopened.get(pid).copied());
                // A producer whose batches are not durable yet is left
                // to the replay (as an unknown producer if they are
                // lost); one a marker emptied is kept: its epoch
                // fences older writers.
                let keep = !batches.is_empty() || txn_first_offset.is_some() || e.batches.is_empty();
                let entry = ProducerEntry {
                    epoch: e.epoch,
                    batches,
                    txn_first_offset,
                    coordinator_epoch: e.coordinator_epoch,
                    last_timestamp: e.last_timestamp,
                };
                keep.then_some((*pid, entry))
            })
            .collect();
        let aborted = guard
            .aborted
            .iter()
            .filter(|a| a.last_offset < durable_end && a.last_offset >= start)
            .copied()
            .collect();
        Snapshot { offset: durable_end, producers, aborted }
    };
    Bytes::from(serde_json::to_vec(&snap).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: i32, last: i32, base: i64) -> SeqBatch {
        SeqBatch {
            first_seq: first,
            last_seq: last,
            base_offset: base,
            last_offset: base + i64::from(last - first),
        }
    }

    fn m(pid: i64, epoch: i16, commit: bool, offset: i64) -> Marker {
        Marker { producer_id: pid, epoch, commit, coordinator_epoch: 0, offset, timestamp: 0 }
    }

    #[test]
    fn idle_producers_expire_unless_a_transaction_is_open() {
        let mut p = PartitionProducers::default();
        p.record(1, 0, b(0, 0, 0), 1_000);
        p.record(2, 0, b(0, 0, 1), 1_000);
        p.record_txn(2, 1);
        p.record(3, 0, b(0, 0, 2), 5_000);
        assert_eq!(p.expire(5_999, 5_000), 0, "1 has been idle for 4999 ms only");
        assert_eq!(p.expire(6_000, 5_000), 1);
        assert!(!p.producers.contains_key(&1), "1 expired");
        assert!(p.producers.contains_key(&2), "2 has an open transaction");
        p.record_marker(Marker { timestamp: 2_000, ..m(2, 0, true, 3) });
        assert_eq!(p.expire(7_000, 5_000), 1, "2 goes once its transaction ended and it idled");
        assert_eq!(p.producers.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert!(
            matches!(p.check(1, 0, 1, 1, false), Err(BrokerError::UnknownProducerId(_))),
            "an expired producer continuing its sequence is unknown, as on Kafka"
        );
    }

    #[test]
    fn the_open_transactions_index_follows_the_producers_and_a_snapshot() {
        let mut p = PartitionProducers::default();
        p.record(1, 0, b(0, 0, 5), 0);
        p.record_txn(1, 5);
        p.record_txn(1, 9);
        p.record(2, 0, b(0, 0, 7), 0);
        p.record_txn(2, 7);
        assert_eq!(p.last_stable_offset(20), 5);
        // As loaded from a snapshot: the producers only.
        let mut loaded = PartitionProducers { producers: p.producers.clone(), ..Default::default() };
        loaded.index_open();
        assert_eq!(loaded.last_stable_offset(20), 5, "the index is rebuilt from the producers");
        loaded.record_marker(m(1, 0, true, 21));
        assert_eq!(loaded.last_stable_offset(21), 5, "until the high watermark passes 1's marker");
        assert_eq!(loaded.last_stable_offset(22), 7, "then 2's transaction");
        loaded.record_marker(m(2, 0, false, 22));
        assert_eq!(loaded.last_stable_offset(23), 23);
        assert_eq!(loaded.aborted_in(0, 23).len(), 1);
        assert_eq!(loaded.aborted_in(23, 30).len(), 0, "the abort ended before 23");
    }

    #[test]
    fn sequence_rules() {
        let mut p = PartitionProducers::default();
        assert_eq!(p.check(7, 0, 0, 4, false).expect("first"), SeqCheck::Append);
        assert!(matches!(p.check(7, 0, 3, 4, false), Err(BrokerError::UnknownProducerId(_))));
        p.record(7, 0, b(0, 4, 100), 0);
        assert_eq!(p.check(7, 0, 0, 4, false).expect("dup"), SeqCheck::Duplicate(b(0, 4, 100)));
        assert_eq!(p.check(7, 0, 5, 9, false).expect("next"), SeqCheck::Append);
        assert!(matches!(p.check(7, 0, 6, 9, false), Err(BrokerError::OutOfOrderSequence(_))));
        for i in 1..=6 {
            p.record(7, 0, b(i * 5, i * 5 + 4, 100 + i64::from(i) * 5), 0);
        }
        // Only the last five batches are remembered.
        assert!(matches!(p.check(7, 0, 0, 4, false), Err(BrokerError::OutOfOrderSequence(_))));
        assert_eq!(p.check(7, 0, 30, 34, false).expect("dup"), SeqCheck::Duplicate(b(30, 34, 130)));
        assert!(matches!(p.check(7, -1, 35, 35, false).err(), Some(BrokerError::InvalidProducerEpoch(_))));
        assert!(matches!(p.check(7, 1, 35, 35, false), Err(BrokerError::OutOfOrderSequence(_))));
        assert_eq!(p.check(7, 1, 0, 0, false).expect("new epoch"), SeqCheck::Append);
        p.record(7, 1, b(0, 0, 200), 0);
        assert!(matches!(p.check(7, 0, 35, 35, false), Err(BrokerError::InvalidProducerEpoch(_))));
        assert_eq!(last_seq(i32::MAX, 2), 0);
    }

    #[test]
    fn transactions_hold_the_last_stable_offset_and_aborts_are_listed() {
        let mut p = PartitionProducers::default();
        // Producer 7 opens a transaction at 10, producer 8 at 12.
        p.record(7, 0, b(0, 1, 10), 0);
        p.record_txn(7, 10);
        p.record(8, 0, b(0, 0, 12), 0);
        p.record_txn(8, 12);
        p.record_txn(7, 13);
        assert_eq!(p.last_stable_offset(14), 10, "the first open transaction");
        assert!(
            matches!(p.check(7, 0, 2, 2, false), Err(BrokerError::InvalidTxnState(_))),
            "no plain batch inside a transaction"
        );
        // 7 aborts at 14; until the high watermark passes its marker, its
        // start still holds the LSO.
        p.record_marker(m(7, 0, false, 14));
        assert_eq!(p.last_stable_offset(14), 10);
        assert_eq!(p.last_stable_offset(15), 12, "then 8's open transaction");
        p.record_marker(m(8, 0, true, 15));
        assert_eq!(p.last_stable_offset(16), 16, "nothing open: the high watermark");
        assert_eq!(
            p.aborted_in(0, 16),
            vec![AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 14 }]
        );
        assert_eq!(p.aborted_in(15, 20), vec![], "a fetch after the abort needs none");
        assert_eq!(p.aborted_in(11, 12).len(), 1, "one inside it does");
        // A marker at a newer epoch fences the producer's older batches.
        p.record_marker(m(8, 3, false, 16));
        assert!(matches!(p.check(8, 2, 1, 1, true), Err(BrokerError::InvalidProducerEpoch(_))));
        assert!(matches!(p.check_marker(8, 2), Err(BrokerError::InvalidProducerEpoch(_))));
        assert_eq!(p.check(8, 3, 0, 0, true).expect("new epoch"), SeqCheck::Append);
        assert_eq!(p.aborted_in(0, 20).len(), 1, "a marker with nothing open aborts nothing");
    }
}
