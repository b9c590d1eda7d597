//! The embedded metadata store for a single node: the whole key space in memory,
//! persisted as manifest objects in the object store, owned by one process at a
//! time through owner epochs (see `docs/ownership.md`).
//!
//! - `<prefix>/epochs/<E>`: created (create-if-absent) by the process that takes
//!   the prefix over, one more than the largest listed; never deleted. Epochs
//!   are therefore dense, and "is anyone newer than me?" is one HEAD of
//!   `epochs/<E+1>`.
//! - `<prefix>/manifest/<E>-<rev>`: the key space at revision `rev`, written by
//!   the owner of epoch `E` with create-if-absent. The newest manifest is the
//!   largest `(E, rev)`, so a zombie's later commits (a lower epoch) never
//!   outrank the new owner's, and never collide with its names.
//!
//! A commit counts only once its manifest is written **and** `epochs/<E+1>` is
//! still absent afterwards. Transient failures are retried by the object store
//! underneath (`RetryingStore` in `strata serve`); a write whose answer was
//! still lost is resolved by reading it back (our bytes there: it landed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{Mutex, MutexGuard, broadcast, mpsc};

use crate::manifest::{FORMAT_VERSION, Manifest};
use crate::{Condition, Entry, Event, LeaseId, MetaError, MetaStore, Op, Revision, TxnOutcome, Watch};

/// How many of its own older manifests an owner keeps behind the newest one.
const KEEP_OLD_MANIFESTS: u64 = 2;

/// Settings of the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedConfig {
    /// The most operations one transaction may carry.
    pub max_txn_ops: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig { max_txn_ops: crate::MAX_TXN_OPS }
    }
}

/// The single-node metadata store persisted in the object store.
///
/// Leases live in this process only: a leased key is never persisted, so it
/// goes with the process that held its lease (a takeover starts without it),
/// and a background task deletes the keys of leases not kept alive.
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    sweeper: tokio::task::JoinHandle<()>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    config: EmbeddedConfig,
    /// The owner epoch this process holds.
    epoch: u64,
    state: Mutex<State>,
    fenced: AtomicBool,
    events: broadcast::Sender<Event>,
}

struct State {
    manifest: Manifest,
    /// Set once a commit's outcome could not be learnt: the view is no longer
    /// trustworthy and every further commit is refused.
    unknown: Option<String>,
    /// Live leases.
    leases: HashMap<LeaseId, Lease>,
    /// Which lease each leased key belongs to.
    key_lease: HashMap<String, LeaseId>,
    next_lease: LeaseId,
    /// The latest changes, for watches from a past revision.
    history: VecDeque<Event>,
    /// Every change after this revision is in `history`.
    compacted: Revision,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
}

/// How many changes the store keeps for watches from a past revision.
const HISTORY: usize = 10_000;
/// How often expired leases are looked for.
const LEASE_SWEEP: Duration = Duration::from_millis(100);

/// Why writing a manifest or epoch record did not succeed.
enum PutFailure {
    /// The name holds other bytes: somebody else wrote it.
    Taken,
    /// The store kept failing: the write may or may not have landed.
    Unknown(String),
}

impl EmbeddedStore {
    /// Opens the store under `prefix` (for example `meta`) with default
    /// settings: claims the next owner epoch, loads the newest manifest (or
    /// starts empty) and commits the takeover.
    pub async fn open(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, MetaError> {
        Self::open_with(store, prefix, EmbeddedConfig::default()).await
    }

    /// Opens the store with explicit settings.
    pub async fn open_with(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        config: EmbeddedConfig,
    ) -> Result<Self, MetaError> {
        let prefix = prefix.trim_end_matches('/').to_string();
        check_layout(&store, &prefix).await?;
        let token = Bytes::from(uuid::Uuid::new_v4().to_string());
        let epoch = claim_epoch(&store, &prefix, &token).await?;
        // Listed after the claim: everything a previous owner committed before
        // its epoch check could pass is visible here.
        let mut manifest = load_newest(&store, &prefix).await?;
        manifest.epoch = epoch;
        tracing::info!(epoch, revision = manifest.revision, "metadata prefix taken over");
        let (events, _) = broadcast::channel(1024);
        let compacted = manifest.revision;
        let state = State {
            manifest,
            unknown: None,
            leases: HashMap::new(),
            key_lease: HashMap::new(),
            next_lease: 1,
            history: VecDeque::new(),
            compacted,
        };
        let inner = Arc::new(Inner {
            store,
            prefix,
            config,
            epoch,
            state: Mutex::new(state),
            fenced: AtomicBool::new(false),
            events,
        });
        // The takeover commit: from now on the newest manifest is ours.
        inner.txn(vec![], vec![Op::Put(OWNER_KEY.into(), token)]).await?;
        inner.delete_older_epochs().await;
        let sweeper = tokio::spawn(sweep_leases(Arc::downgrade(&inner)));
        Ok(EmbeddedStore { inner, sweeper })
    }

    /// The revision of the last committed transaction.
    pub async fn revision(&self) -> Revision {
        self.inner.state.lock().await.manifest.revision
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

/// Deletes the keys of expired leases until the store is gone.
async fn sweep_leases(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(LEASE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let mut state = inner.state.lock().await;
        let expired: Vec<LeaseId> =
            state.leases.iter().filter(|(_, l)| l.deadline < now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Err(e) = inner.end_lease(&mut state, id).await {
                tracing::debug!(lease = id, error = %e, "could not delete the keys of an expired lease");
            }
        }
    }
}

impl Inner {
    fn manifest_path(&self, revision: u64) -> Path {
        manifest_path(&self.prefix, self.epoch, revision)
    }

    /// Removes manifests of earlier epochs (best effort: they are outranked).
    async fn delete_older_epochs(&self) {
        let dir = Path::from(format!("{}/manifest", self.prefix));
        let Ok(metas) = self.store.list(Some(&dir)).try_collect::<Vec<_>>().await else { return };
        for m in metas {
            if m.location.filename().and_then(parse_manifest_name).is_some_and(|(e, _)| e < self.epoch)
                && let Err(e) = self.store.delete(&m.location).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::debug!(error = %e, "could not delete an outranked manifest");
            }
        }
    }

    /// Marks the store fenced (logging once).
    fn set_fenced(&self, why: &str) -> MetaError {
        if !self.fenced.swap(true, Ordering::AcqRel) {
            tracing::warn!(prefix = %self.prefix, epoch = self.epoch, why,
                "a newer owner epoch exists on this metadata prefix: fenced");
        }
        MetaError::Fenced(self.prefix.clone())
    }

    /// Whether `epochs/<E+1>` exists.
    async fn newer_epoch_exists(&self) -> Result<bool, MetaError> {
        match self.store.head(&epoch_path(&self.prefix, self.epoch + 1)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Key recording which process owns the prefix.
const OWNER_KEY: &str = "owner";

fn epoch_path(prefix: &str, epoch: u64) -> Path {
    Path::from(format!("{prefix}/epochs/{epoch:020}"))
}

fn manifest_path(prefix: &str, epoch: u64, revision: u64) -> Path {
    Path::from(format!("{prefix}/manifest/{epoch:020}-{revision:020}"))
}

/// `<epoch>-<revision>`.
fn parse_manifest_name(name: &str) -> Option<(u64, u64)> {
    let (e, r) = name.split_once('-')?;
    Some((e.parse().ok()?, r.parse().ok()?))
}

/// Refuses a prefix written in the version-1 layout (`manifest/<rev>`).
async fn check_layout(store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<(), MetaError> {
    let dir = Path::from(format!("{prefix}/manifest"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let old = metas.iter().any(|m| m.location.filename().is_some_and(|n| n.parse::<u64>().is_ok()));
    if old {
        return Err(MetaError::Format { prefix: prefix.to_string(), found: 1, supported: FORMAT_VERSION });
    }
    Ok(())
}

/// Writes `bytes` at `path` with create-if-absent. A write that failed (the
/// store underneath already retried it) is resolved by reading back: our bytes
/// there mean it landed; nothing there means it did not land yet, and it is
/// tried once more.
async fn put_resolved(store: &Arc<dyn ObjectStore>, path: &Path, bytes: &Bytes) -> Result<(), PutFailure> {
    let mut error = String::new();
    for _ in 0..2 {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match store.put_opts(path, PutPayload::from_bytes(bytes.clone()), opts).await {
            Ok(_) => return Ok(()),
            Err(e) if !matches!(e, object_store::Error::AlreadyExists { .. }) => error = e.to_string(),
            Err(_) => {}
        }
        match store.get(path).await {
            Ok(got) => match got.bytes().await {
                Ok(existing) if existing == *bytes => return Ok(()),
                Ok(_) => return Err(PutFailure::Taken),
                Err(e) => return Err(PutFailure::Unknown(format!("{path}: {error}; read back: {e}"))),
            },
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(PutFailure::Unknown(format!("{path}: {error}; read back: {e}"))),
        }
    }
    Err(PutFailure::Unknown(format!("{path}: {error}")))
}

/// Claims the next owner epoch: lists `epochs/`, creates `max + 1`, and
/// retries above a racing winner.
async fn claim_epoch(store: &Arc<dyn ObjectStore>, prefix: &str, token: &Bytes) -> Result<u64, MetaError> {
    let dir = Path::from(format!("{prefix}/epochs"));
    for attempt in 0..50u64 {
        let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
        let max = metas.iter().filter_map(|m| m.location.filename()?.parse::<u64>().ok()).max().unwrap_or(0);
        let next = max + 1;
        match put_resolved(store, &epoch_path(prefix, next), token).await {
            Ok(()) => return Ok(next),
            Err(PutFailure::Taken) => {
                tokio::time::sleep(Duration::from_millis(5 * (attempt + 1))).await;
            }
            Err(PutFailure::Unknown(e)) => return Err(MetaError::OutcomeUnknown(e)),
        }
    }
    Err(MetaError::Fenced(prefix.to_string()))
}

/// Loads the newest manifest under `prefix` (largest `(epoch, revision)`), or
/// an empty one.
async fn load_newest(store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<Manifest, MetaError> {
    let dir = Path::from(format!("{prefix}/manifest"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let newest = metas
        .iter()
        .filter_map(|m| parse_manifest_name(m.location.filename()?).map(|id| (id, m.location.clone())))
        .max_by_key(|(id, _)| *id);
    match newest {
        None => Ok(Manifest::default()),
        Some(((epoch, revision), path)) => {
            let data = store.get(&path).await?.bytes().await?;
            let corrupt = |reason: String| MetaError::Corrupt { path: path.to_string(), reason };
            let m = Manifest::decode(data).map_err(corrupt)?;
            if (m.epoch, m.revision) != (epoch, revision) {
                return Err(corrupt(format!("holds epoch {} revision {}", m.epoch, m.revision)));
            }
            Ok(m)
        }
    }
}

fn check(manifest: &Manifest, cond: &Condition) -> bool {
    match cond {
        Condition::Absent(key) => !manifest.entries.contains_key(key),
        Condition::Version(key, rev) => manifest.entries.get(key).is_some_and(|(_, r)| r == rev),
    }
}

impl Inner {
    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError> {
        let mut state = self.state.lock().await;
        self.commit(&mut state, conditions, ops).await
    }

    /// One transaction, under the state lock (which orders commits).
    async fn commit(
        &self,
        state: &mut MutexGuard<'_, State>,
        conditions: Vec<Condition>,
        ops: Vec<Op>,
    ) -> Result<TxnOutcome, MetaError> {
        if self.fenced.load(Ordering::Acquire) {
            return Err(MetaError::Fenced(self.prefix.clone()));
        }
        if let Some(why) = &state.unknown {
            return Err(MetaError::OutcomeUnknown(why.clone()));
        }
        if ops.len() > self.config.max_txn_ops {
            return Err(MetaError::TooLarge { ops: ops.len(), max: self.config.max_txn_ops });
        }
        let now = Instant::now();
        for op in &ops {
            if let Op::PutWithLease(_, _, lease) = op
                && state.leases.get(lease).is_none_or(|l| l.deadline < now)
            {
                return Err(MetaError::LeaseNotFound(*lease));
            }
        }
        if !conditions.iter().all(|c| check(&state.manifest, c)) {
            return Ok(TxnOutcome::Conflict);
        }
        let mut next = state.manifest.clone();
        let mut key_lease = state.key_lease.clone();
        next.revision += 1;
        let rev = next.revision;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    key_lease.remove(&key);
                    next.entries.insert(key.clone(), (value.clone(), rev));
                    events.push(Event { key, value: Some(value), revision: rev });
                }
                Op::PutWithLease(key, value, lease) => {
                    key_lease.insert(key.clone(), lease);
                    next.entries.insert(key.clone(), (value.clone(), rev));
                    events.push(Event { key, value: Some(value), revision: rev });
                }
                Op::Delete(key) => {
                    key_lease.remove(&key);
                    if next.entries.remove(&key).is_some() {
                        events.push(Event { key, value: None, revision: rev });
                    }
                }
            }
        }
        let bytes = next.encode_keeping(|k| !key_lease.contains_key(k));
        match put_resolved(&self.store, &self.manifest_path(rev), &bytes).await {
            Ok(()) => {}
            // Only this epoch's owner writes its names: another writer means
            // two processes hold one epoch, which the claim rules out; stop.
            Err(PutFailure::Taken) => return Err(self.set_fenced("manifest name taken")),
            Err(PutFailure::Unknown(why)) => {
                state.unknown = Some(why.clone());
                return Err(MetaError::OutcomeUnknown(why));
            }
        }
        // Confirmed only if no newer owner claimed the prefix meanwhile: one
        // that did lists manifests after its claim, so if the claim is not
        // there yet, our manifest is in its view.
        match self.newer_epoch_exists().await {
            Ok(false) => {}
            Ok(true) => return Err(self.set_fenced("newer epoch after commit")),
            Err(e) => {
                let why = format!("commit {rev} written but the epoch check failed: {e}");
                state.unknown = Some(why.clone());
                return Err(MetaError::OutcomeUnknown(why));
            }
        }
        state.manifest = next;
        state.key_lease = key_lease;
        if rev > KEEP_OLD_MANIFESTS + 1 {
            let old = self.manifest_path(rev - KEEP_OLD_MANIFESTS - 1);
            if let Err(e) = self.store.delete(&old).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(error = %e, "could not delete old manifest");
            }
        }
        for event in events {
            state.history.push_back(event.clone());
            // Sent under the lock: watchers see changes in revision order.
            let _ = self.events.send(event);
        }
        while state.history.len() > HISTORY {
            if let Some(old) = state.history.pop_front() {
                state.compacted = old.revision;
            }
        }
        Ok(TxnOutcome::Committed(rev))
    }

    /// Removes a lease and deletes its keys (in transactions of the limit).
    async fn end_lease(&self, state: &mut MutexGuard<'_, State>, lease: LeaseId) -> Result<(), MetaError> {
        if state.leases.remove(&lease).is_none() {
            return Ok(());
        }
        let mut keys: Vec<String> =
            state.key_lease.iter().filter(|(_, l)| **l == lease).map(|(k, _)| k.clone()).collect();
        keys.sort();
        let max = self.config.max_txn_ops.max(1);
        for chunk in keys.chunks(max) {
            let ops = chunk.iter().map(|k| Op::Delete(k.clone())).collect();
            self.commit(state, vec![], ops).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MetaStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        let state = self.inner.state.lock().await;
        Ok(state.manifest.entries.get(key).map(|(value, rev)| Entry {
            key: key.to_string(),
            value: value.clone(),
            mod_revision: *rev,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, MetaError> {
        let state = self.inner.state.lock().await;
        Ok(state
            .manifest
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, rev))| Entry { key: k.clone(), value: v.clone(), mod_revision: *rev })
            .collect())
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError> {
        self.inner.txn(conditions, ops).await
    }

    async fn current_revision(&self) -> Result<Revision, MetaError> {
        Ok(self.revision().await)
    }

    async fn watch_from(&self, prefix: &str, from: Revision) -> Result<Watch, MetaError> {
        let state = self.inner.state.lock().await;
        if from <= state.compacted {
            return Err(MetaError::Compacted { requested: from, compacted: state.compacted });
        }
        // Subscribed under the lock, with the history copied: nothing falls
        // between the past part and the live part.
        let mut live = self.inner.events.subscribe();
        let past: Vec<Event> = state
            .history
            .iter()
            .filter(|e| e.revision >= from && e.key.starts_with(prefix))
            .cloned()
            .collect();
        let seen = state.manifest.revision;
        drop(state);
        let (tx, rx) = mpsc::channel(1024);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for event in past {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            loop {
                let event = match live.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Changes were dropped for this watcher: say so
                        // rather than deliver a gap.
                        let _ =
                            tx.send(Err(MetaError::Compacted { requested: seen + 1, compacted: seen })).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if event.revision > seen
                    && event.revision >= from
                    && event.key.starts_with(&prefix)
                    && tx.send(Ok(event)).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        if self.inner.fenced.load(Ordering::Acquire) {
            return Err(MetaError::Fenced(self.inner.prefix.clone()));
        }
        let mut state = self.inner.state.lock().await;
        let id = state.next_lease;
        state.next_lease += 1;
        state.leases.insert(id, Lease { ttl, deadline: Instant::now() + ttl });
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        if self.inner.fenced.load(Ordering::Acquire) {
            return Err(MetaError::Fenced(self.inner.prefix.clone()));
        }
        let mut state = self.inner.state.lock().await;
        let now = Instant::now();
        match state.leases.get_mut(&lease) {
            Some(l) if l.deadline >= now => {
                l.deadline = now + l.ttl;
                Ok(())
            }
            _ => Err(MetaError::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        let mut state = self.inner.state.lock().await;
        self.inner.end_lease(&mut state, lease).await
    }

    async fn check_fenced(&self) -> Result<(), MetaError> {
        if self.inner.fenced.load(Ordering::Acquire) {
            return Err(MetaError::Fenced(self.inner.prefix.clone()));
        }
        match self.inner.newer_epoch_exists().await? {
            true => Err(self.inner.set_fenced("epoch poll")),
            false => Ok(()),
        }
    }

    fn is_fenced(&self) -> bool {
        self.inner.fenced.load(Ordering::Acquire)
    }

    fn owner_epoch(&self) -> Option<u64> {
        Some(self.inner.epoch)
    }

    fn max_txn_ops(&self) -> usize {
        self.inner.config.max_txn_ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faulty::{Fault, FaultyStore, Operation};
    use object_store::memory::InMemory;

    async fn open(bucket: &Arc<dyn ObjectStore>) -> EmbeddedStore {
        EmbeddedStore::open(Arc::clone(bucket), "meta").await.expect("open")
    }

    fn bucket() -> Arc<dyn ObjectStore> {
        Arc::new(InMemory::new())
    }

    #[tokio::test]
    async fn conformance() {
        let b = bucket();
        crate::conformance::compare_and_set(&open(&b).await).await;
        crate::conformance::oversize_transaction_refused(&open(&b).await).await;
        crate::conformance::watch_from_revision(&open(&b).await).await;
        crate::conformance::lease_expiry(&open(&b).await, Duration::from_millis(400)).await;
        let first = open(&b).await;
        let second = async { Box::new(open(&b).await) as Box<dyn MetaStore> };
        crate::conformance::a_new_owner_fences_the_old(&first, second).await;
    }

    #[tokio::test]
    async fn leased_keys_are_not_persisted_and_old_revisions_are_compacted_at_takeover() {
        let b = bucket();
        let a = open(&b).await;
        let lease = a.grant_lease(Duration::from_secs(60)).await.expect("grant");
        let r = a.put("plain", Bytes::new()).await.expect("put");
        a.txn(vec![], vec![Op::PutWithLease("leased".into(), Bytes::new(), lease)]).await.expect("put");
        let c = open(&b).await;
        assert!(c.get("plain").await.expect("get").is_some());
        assert!(c.get("leased").await.expect("get").is_none(), "a lease dies with its holder");
        match c.watch_from("", r).await {
            Err(MetaError::Compacted { requested, compacted }) => assert!(requested <= compacted),
            other => panic!("a revision before the takeover was served: {other:?}"),
        }
        let now = c.revision().await;
        assert!(c.watch_from("", now + 1).await.is_ok());
    }

    #[tokio::test]
    async fn epochs_are_dense_and_survive_any_number_of_commits() {
        let b = bucket();
        let a = open(&b).await;
        assert_eq!(a.owner_epoch(), Some(1));
        let c = open(&b).await;
        assert_eq!(c.owner_epoch(), Some(2));
        // Many commits by the new owner: old manifests are deleted, epoch
        // records are not, so the first owner still learns it is fenced.
        for i in 0..20 {
            c.put(&format!("k{i}"), Bytes::new()).await.expect("put");
        }
        assert!(matches!(a.check_fenced().await, Err(MetaError::Fenced(_))));
        assert!(a.is_fenced());
        let manifests: Vec<_> = b.list(Some(&Path::from("meta/manifest"))).try_collect().await.expect("list");
        assert!(manifests.len() <= 3, "old manifests deleted: {}", manifests.len());
        let epochs: Vec<_> = b.list(Some(&Path::from("meta/epochs"))).try_collect().await.expect("list");
        assert_eq!(epochs.len(), 2);
    }

    #[tokio::test]
    async fn a_zombie_commit_never_outranks_nor_fences_the_new_owner() {
        let b = bucket();
        let a = open(&b).await;
        a.put("x", Bytes::from_static(b"a1")).await.expect("put");
        let c = open(&b).await;
        // The zombie commits after the takeover: the write lands under its own
        // epoch's name, the check after it tells it is fenced.
        assert!(matches!(a.put("x", Bytes::from_static(b"zombie")).await, Err(MetaError::Fenced(_))));
        // The new owner goes on committing, unfenced, and its view wins.
        c.put("y", Bytes::new()).await.expect("new owner commits");
        assert!(c.check_fenced().await.is_ok());
        let d = open(&b).await;
        assert_eq!(d.get("x").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"a1")));
        assert!(d.get("y").await.expect("get").is_some());
    }

    #[tokio::test]
    async fn a_lost_put_response_is_resolved_by_writing_the_same_name_again() {
        let b = bucket();
        let faulty = FaultyStore::new(Arc::clone(&b));
        let a = EmbeddedStore::open(Arc::new(faulty.clone()), "meta").await.expect("open");
        faulty.set(Operation::Put, Fault::LoseResponse(1));
        let rev = a.put("k", Bytes::from_static(b"v")).await.expect("committed despite the lost response");
        assert!(a.check_fenced().await.is_ok(), "the writer is not fenced by its own write");
        assert_eq!(a.put("k2", Bytes::new()).await.expect("next commit"), rev + 1);
        let c = open(&b).await;
        assert_eq!(c.get("k").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"v")));
    }

    #[tokio::test]
    async fn an_unresolvable_outcome_is_reported_and_refuses_further_commits() {
        let b = bucket();
        let faulty = FaultyStore::new(Arc::clone(&b));
        let a = EmbeddedStore::open(Arc::new(faulty.clone()), "meta").await.expect("open");
        crate::conformance::outcome_unknown(&a, || faulty.set(Operation::Put, Fault::FailAlways)).await;
        faulty.clear();
        assert!(matches!(a.put("later", Bytes::new()).await, Err(MetaError::OutcomeUnknown(_))));
        // A restart reads back what is there.
        let c = open(&b).await;
        assert!(c.get("later").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn a_version_one_prefix_is_refused_with_its_version() {
        let b = bucket();
        b.put(&Path::from("meta/manifest/00000000000000000007"), PutPayload::from_static(b"old"))
            .await
            .expect("put");
        match EmbeddedStore::open(Arc::clone(&b), "meta").await {
            Err(MetaError::Format { found: 1, supported: 2, .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a version-1 prefix was opened"),
        }
    }
}
