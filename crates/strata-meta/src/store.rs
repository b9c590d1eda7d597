use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::MetaError;

/// The default bound on operations per transaction (etcd's `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// A monotonically increasing store-wide revision; every committed transaction
/// gets the next one. A key's version is the revision that last wrote it.
pub type Revision = u64;

/// A stored value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value bytes (opaque to the store).
    pub value: Bytes,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// A precondition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key must not exist.
    Absent(String),
    /// The key must exist and have been last written at this revision.
    Version(String, Revision),
}

/// A lease: keys attached to it are deleted when it expires or is revoked
/// (etcd's leases). Its holder keeps it alive by [`MetaStore::keep_alive`].
pub type LeaseId = i64;

/// A mutation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a key (detaching it from any lease).
    Put(String, Bytes),
    /// Create or replace a key attached to a live lease: it goes when the
    /// lease does.
    PutWithLease(String, Bytes, LeaseId),
    /// Remove a key (no-op when absent).
    Delete(String),
}

/// The result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// All conditions held; the ops were applied at this revision.
    Committed(Revision),
    /// A condition failed; nothing was applied.
    Conflict,
}

/// A change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The key that changed.
    pub key: String,
    /// The new value, or `None` when deleted.
    pub value: Option<Bytes>,
    /// The revision of the change.
    pub revision: Revision,
}

/// A watch of the keys under a prefix: every change from a revision on, in
/// revision order, with no gaps. It ends with an error when the store can no
/// longer deliver every change (for example [`MetaError::Compacted`] for a
/// watcher that fell too far behind).
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<Result<Event, MetaError>>,
}

impl Watch {
    /// Wraps the receiving end that an implementation feeds.
    pub fn new(rx: mpsc::Receiver<Result<Event, MetaError>>) -> Self {
        Watch { rx }
    }

    /// The next change; `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Result<Event, MetaError>> {
        self.rx.recv().await
    }
}

/// The metadata-store contract: versioned keys, atomic compare-and-set over
/// several keys, leases, and watches from a revision. Implemented by the embedded store (one
/// node, persisted in the object store) and, for clusters, by etcd.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError>;
    /// Reads every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, MetaError>;
    /// Applies `ops` atomically if every condition holds.
    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError>;
    /// The revision of the last committed transaction.
    async fn current_revision(&self) -> Result<Revision, MetaError>;

    /// Watches every change to keys starting with `prefix` at revision `from`
    /// or later: past changes first (those still held), then live ones.
    /// `from` at or below the store's compacted revision is refused with
    /// [`MetaError::Compacted`].
    async fn watch_from(&self, prefix: &str, from: Revision) -> Result<Watch, MetaError>;

    /// Grants a lease that lives `ttl` past its grant and each keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError>;

    /// Renews a live lease for another `ttl`; an expired or unknown lease is
    /// [`MetaError::LeaseNotFound`].
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError>;

    /// Ends a lease now, deleting its keys (no-op for an unknown lease).
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError>;

    /// Returns `Err(MetaError::Fenced)` when another process has taken over
    /// this store (for stores that can be fenced). It asks the authoritative
    /// record, not a cached view, so the answer holds at the moment of the
    /// call however long this process was paused before it; cheap enough to
    /// poll.
    async fn check_fenced(&self) -> Result<(), MetaError> {
        Ok(())
    }

    /// Whether this store has already seen itself fenced (no I/O).
    fn is_fenced(&self) -> bool {
        false
    }

    /// The owner epoch this process holds, for stores with one.
    fn owner_epoch(&self) -> Option<u64> {
        None
    }

    /// The most operations one transaction may carry (etcd's default is 128);
    /// larger transactions are refused with [`MetaError::TooLarge`].
    fn max_txn_ops(&self) -> usize {
        MAX_TXN_OPS
    }

    /// Creates or replaces `key` unconditionally.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision, MetaError> {
        match self.txn(vec![], vec![Op::Put(key.to_string(), value)]).await? {
            TxnOutcome::Committed(rev) => Ok(rev),
            // Unreachable without conditions, but answer honestly rather than panic.
            TxnOutcome::Conflict => Err(MetaError::Corrupt {
                path: key.to_string(),
                reason: "unconditional put reported a conflict".into(),
            }),
        }
    }
}
