use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

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

/// A mutation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a key.
    Put(String, Bytes),
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

/// The metadata-store contract: versioned keys, atomic compare-and-set over
/// several keys, and a watch of changes. Implemented by the embedded store (one
/// node, persisted in the object store) and, for clusters, by etcd.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError>;
    /// Reads every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, MetaError>;
    /// Applies `ops` atomically if every condition holds.
    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError>;
    /// Subscribes to every change committed after this call.
    fn watch(&self) -> broadcast::Receiver<Event>;

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
