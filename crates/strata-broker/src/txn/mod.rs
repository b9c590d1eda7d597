//! The transaction coordinator (`docs/transactions.md`). Its state lives in
//! `__transaction_state` as Kafka keeps it: one shard per partition of that
//! topic, which appends every change of a transactional id (Kafka's
//! `TransactionLogValue`) before it is applied or answered, and rebuilds its
//! ids from its partition on load. The requests' orchestration (markers,
//! timeouts) is the broker's (`txn_apis.rs`); the state machine is `state`.

pub mod records;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use strata_stream::Stream;

use crate::BrokerError;
pub use records::TxnState;
pub use state::{TxnError, TxnMeta};

/// The internal topic of transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.state.log.num.partitions` default.
pub const TXN_PARTITIONS: i32 = 50;

/// The coordinator's settings (Kafka's names).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval: Duration,
    /// `transactional.id.expiration.ms`: an id idle this long with no open
    /// transaction is removed (a tombstone in its partition).
    pub id_expiration: Duration,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval: Duration,
    /// The `transaction.version` finalized in ApiVersions (1 or 2): with 2,
    /// Kafka 4.x Java clients use KIP-890's second protocol. Both are
    /// served whatever the level.
    pub version: i16,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            abort_check_interval: Duration::from_millis(10_000),
            id_expiration: Duration::from_millis(604_800_000),
            remove_expired_interval: Duration::from_millis(3_600_000),
            version: 2,
        }
    }
}

/// Waits until a record appended to a shard's partition is durable.
async fn durable(pending: Result<(i64, strata_stream::Completion), BrokerError>) -> Result<(), String> {
    match pending {
        Ok((_, mut completion)) => completion.wait().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// One shard: the transactional ids of one `__transaction_state` partition.
struct Shard {
    stream: Arc<Stream>,
    ids: Mutex<HashMap<String, TxnMeta>>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, TxnMeta>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shards by partition; `None` where another broker of a cluster
/// leads the partition.
type Shards = Arc<Vec<Option<Arc<Shard>>>>;

/// The coordinator: its shards once loaded.
pub struct TxnCoordinator {
    pub(crate) config: TxnConfig,
    shards: Mutex<Option<Shards>>,
    loading: tokio::sync::Mutex<()>,
}

impl TxnCoordinator {
    /// A coordinator not yet loaded.
    pub fn new(config: TxnConfig) -> Self {
        TxnCoordinator { config, shards: Mutex::new(None), loading: tokio::sync::Mutex::new(()) }
    }

    fn loaded(&self) -> Option<Shards> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the shards are loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded().is_some()
    }

    /// Loads the shards from their partitions' streams (once); a partition
    /// led by another broker of a cluster (`None`) has no shard here until
    /// [`TxnCoordinator::load_shard`]. Returns the transactions found
    /// deciding (Prepare*), whose markers must be written.
    pub(crate) async fn load(
        &self,
        streams: Vec<Option<Arc<Stream>>>,
    ) -> Result<Vec<(String, TxnMeta)>, BrokerError> {
        let _guard = self.loading.lock().await;
        if self.loaded().is_some() {
            return Ok(Vec::new());
        }
        let mut shards = Vec::with_capacity(streams.len());
        let mut deciding = Vec::new();
        for stream in streams {
            match stream {
                Some(stream) => {
                    let (shard, found) = replay_shard(stream).await?;
                    deciding.extend(found);
                    shards.push(Some(shard));
                }
                None => shards.push(None),
            }
        }
        let total: usize = shards.iter().flatten().map(|s| s.lock().len()).sum();
        tracing::info!(
            partitions = shards.len(),
            ids = total,
            deciding = deciding.len(),
            "transaction coordinator loaded"
        );
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(shards));
        Ok(deciding)
    }

    /// Loads the shard of partition `p` (this broker now leads it), once the
    /// coordinator is loaded; returns its deciding transactions.
    pub(crate) async fn load_shard(
        &self,
        p: usize,
        stream: Arc<Stream>,
    ) -> Result<Vec<(String, TxnMeta)>, BrokerError> {
        let _guard = self.loading.lock().await;
        let Some(current) = self.loaded() else { return Ok(Vec::new()) };
        let (shard, deciding) = replay_shard(stream).await?;
        let mut next: Vec<Option<Arc<Shard>>> = current.as_ref().clone();
        if let Some(slot) = next.get_mut(p) {
            tracing::info!(partition = p, ids = shard.lock().len(), "transaction coordinator shard loaded");
            *slot = Some(shard);
        }
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
        Ok(deciding)
    }

    /// Drops the shard of partition `p` (moved to another broker).
    pub(crate) async fn unload_shard(&self, p: usize) {
        let _guard = self.loading.lock().await;
        let Some(current) = self.loaded() else { return };
        let mut next: Vec<Option<Arc<Shard>>> = current.as_ref().clone();
        if let Some(slot) = next.get_mut(p) {
            *slot = None;
        }
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
        tracing::info!(partition = p, "transaction coordinator shard unloaded");
    }

    fn shard(&self, id: &str) -> Result<Arc<Shard>, TxnError> {
        let shards = self.loaded().ok_or(TxnError::CoordinatorLoadInProgress)?;
        let p = crate::groups::partition_for(id, shards.len() as i32) as usize;
        shards.get(p).ok_or(TxnError::CoordinatorNotAvailable)?.clone().ok_or(TxnError::NotCoordinator)
    }

    /// A copy of an id's state.
    pub fn get(&self, id: &str) -> Result<Option<TxnMeta>, TxnError> {
        Ok(self.shard(id)?.lock().get(id).cloned())
    }

    /// Every id's state.
    pub fn all(&self) -> Result<Vec<(String, TxnMeta)>, TxnError> {
        let shards = self.loaded().ok_or(TxnError::CoordinatorLoadInProgress)?;
        Ok(shards
            .iter()
            .flatten()
            .flat_map(|s| s.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>())
            .collect())
    }

    /// Decides on an id under its shard's lock: `decide` sees its state and
    /// returns the next one to write (if any) and an answer. A next state is
    /// marked pending and appended in the same critical section, applied once
    /// durable, and dropped when the write fails (the answer is then
    /// COORDINATOR_NOT_AVAILABLE).
    pub(crate) async fn transition<T>(
        &self,
        id: &str,
        decide: impl FnOnce(Option<&TxnMeta>) -> Result<(Option<TxnMeta>, T), TxnError>,
    ) -> Result<T, TxnError> {
        let shard = self.shard(id)?;
        let (next, pending, answer, was_new) = {
            let mut ids = shard.lock();
            let (next, answer) = decide(ids.get(id))?;
            let Some(next) = next else { return Ok(answer) };
            let was_new = !ids.contains_key(id);
            let entry = ids.entry(id.to_string()).or_insert_with(|| next.clone());
            entry.begin(&next);
            let record = (records::encode_key(id), Some(records::encode_value(&next.to_value())));
            let pending = crate::internal_records::append(&shard.stream, vec![record]);
            (next, pending, answer, was_new)
        };
        let outcome = durable(pending).await;
        let mut ids = shard.lock();
        match outcome {
            Ok(()) => {
                if let Some(m) = ids.get_mut(id) {
                    m.apply(next);
                }
                Ok(answer)
            }
            Err(e) => {
                tracing::warn!(transactional_id = id, error = %e, "a transaction state write failed");
                if was_new {
                    ids.remove(id);
                } else if let Some(m) = ids.get_mut(id) {
                    m.abandon();
                }
                Err(TxnError::CoordinatorNotAvailable)
            }
        }
    }

    /// Removes every id idle past `transactional.id.expiration.ms` with no
    /// open transaction (Kafka's expiry): a tombstone is written to its
    /// partition first, with the id pending (Dead) meanwhile, so that a
    /// request for it waits (CONCURRENT_TRANSACTIONS) and a failed write
    /// leaves it as it was. Returns how many were removed.
    pub(crate) async fn expire_ids(&self, now_ms: i64) -> usize {
        let Some(shards) = self.loaded() else { return 0 };
        let expiration = i64::try_from(self.config.id_expiration.as_millis()).unwrap_or(i64::MAX);
        let mut removed = 0;
        for shard in shards.iter().flatten() {
            let candidates: Vec<String> = shard
                .lock()
                .iter()
                .filter(|(_, m)| m.expired(now_ms, expiration))
                .map(|(id, _)| id.clone())
                .collect();
            for id in candidates {
                let pending = {
                    let mut ids = shard.lock();
                    match ids.get_mut(&id) {
                        Some(m) if m.expired(now_ms, expiration) => {
                            m.pending = Some(TxnState::Dead);
                            crate::internal_records::append(
                                &shard.stream,
                                vec![(records::encode_key(&id), None)],
                            )
                        }
                        _ => continue,
                    }
                };
                let outcome = durable(pending).await;
                let mut ids = shard.lock();
                match outcome {
                    Ok(()) => {
                        ids.remove(&id);
                        removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "expiring a transactional id failed");
                        if let Some(m) = ids.get_mut(&id) {
                            m.abandon();
                        }
                    }
                }
            }
        }
        removed
    }

    /// The ids whose open transaction is past its timeout.
    pub fn timed_out(&self, now_ms: i64) -> Vec<String> {
        let Some(shards) = self.loaded() else { return Vec::new() };
        shards
            .iter()
            .flatten()
            .flat_map(|s| {
                s.lock()
                    .iter()
                    .filter(|(_, m)| m.timed_out(now_ms))
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Rebuilds one shard from its partition; also returns the transactions it
/// found deciding.
async fn replay_shard(stream: Arc<Stream>) -> Result<(Arc<Shard>, Vec<(String, TxnMeta)>), BrokerError> {
    let mut ids: HashMap<String, TxnMeta> = HashMap::new();
    crate::internal_records::replay(&stream, |entry| {
        let crate::internal_records::Entry::Record { key, value, producer: None, .. } = entry else {
            return;
        };
        let id = match records::decode_key(key) {
            Ok(Some(id)) => id,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable transaction key skipped");
                return;
            }
        };
        match value.map(records::decode_value) {
            None => {
                ids.remove(&id);
            }
            Some(Ok(v)) => {
                ids.insert(id, TxnMeta::from_value(v));
            }
            Some(Err(e)) => tracing::warn!(error = %e, "unreadable transaction value skipped"),
        }
    })
    .await?;
    let deciding = ids
        .iter()
        .filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
        .map(|(id, m)| (id.clone(), m.clone()))
        .collect();
    Ok((Arc::new(Shard { stream, ids: Mutex::new(ids) }), deciding))
}
