//! The embedded metadata store for a single node: the whole key space in memory,
//! persisted as a manifest object in the object store. Each commit writes the
//! next manifest `<prefix>/manifest/<revision>` with create-if-absent, so a second
//! process that starts on the same prefix and commits fences this one: our next
//! create finds the revision taken and the store turns permanently fenced.

use std::sync::Arc;

use async_trait::async_trait;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::sync::{Mutex, broadcast};

use crate::manifest::Manifest;
use crate::{Condition, Entry, Event, MetaError, MetaStore, Op, Revision, TxnOutcome};

/// How many old manifests are kept behind the newest one.
const KEEP_OLD_MANIFESTS: u64 = 2;

/// The single-node metadata store persisted in the object store.
pub struct EmbeddedStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

struct State {
    manifest: Manifest,
    fenced: bool,
}

impl EmbeddedStore {
    /// Opens the store under `prefix` (for example `meta`), loading the newest
    /// manifest, or starting empty when there is none.
    pub async fn open(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, MetaError> {
        let prefix = prefix.trim_end_matches('/').to_string();
        let manifest = load_newest(&store, &prefix).await?;
        tracing::debug!(revision = manifest.revision, "metadata manifest loaded");
        let (events, _) = broadcast::channel(1024);
        let this = Self { store, prefix, state: Mutex::new(State { manifest, fenced: false }), events };
        this.take_over().await?;
        Ok(this)
    }

    /// Claims the prefix: commits the next revision (recording this process as
    /// owner), reloading and retrying while a previous owner is still
    /// committing. Once it succeeds, the previous owner's next commit fails.
    async fn take_over(&self) -> Result<(), MetaError> {
        let owner = Bytes::from(format!("{}-{}", std::process::id(), now_nanos()));
        for attempt in 0..50 {
            match self.txn(vec![], vec![Op::Put(OWNER_KEY.into(), owner.clone())]).await {
                Ok(_) => return Ok(()),
                Err(MetaError::Fenced(_)) => {
                    let newest = load_newest(&self.store, &self.prefix).await?;
                    let mut state = self.state.lock().await;
                    state.manifest = newest;
                    state.fenced = false;
                    drop(state);
                    tokio::time::sleep(std::time::Duration::from_millis(10 * (attempt + 1))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(MetaError::Fenced(self.prefix.clone()))
    }

    fn manifest_path(&self, revision: u64) -> Path {
        Path::from(format!("{}/manifest/{revision:020}", self.prefix))
    }
}

/// Key recording which process owns the prefix.
const OWNER_KEY: &str = "owner";

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Loads the newest manifest under `prefix`, or an empty one.
async fn load_newest(store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<Manifest, MetaError> {
    let dir = Path::from(format!("{prefix}/manifest"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let newest = metas
        .iter()
        .filter_map(|m| {
            let name = m.location.filename()?;
            name.parse::<u64>().ok().map(|rev| (rev, m.location.clone()))
        })
        .max_by_key(|(rev, _)| *rev);
    match newest {
        None => Ok(Manifest::default()),
        Some((_, path)) => {
            let data = store.get(&path).await?.bytes().await?;
            Manifest::decode(data).map_err(|reason| MetaError::Corrupt { path: path.to_string(), reason })
        }
    }
}

fn check(manifest: &Manifest, cond: &Condition) -> bool {
    match cond {
        Condition::Absent(key) => !manifest.entries.contains_key(key),
        Condition::Version(key, rev) => manifest.entries.get(key).is_some_and(|(_, r)| r == rev),
    }
}

#[async_trait]
impl MetaStore for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        let state = self.state.lock().await;
        Ok(state.manifest.entries.get(key).map(|(value, rev)| Entry {
            key: key.to_string(),
            value: value.clone(),
            mod_revision: *rev,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, MetaError> {
        let state = self.state.lock().await;
        Ok(state
            .manifest
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, rev))| Entry { key: k.clone(), value: v.clone(), mod_revision: *rev })
            .collect())
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError> {
        let mut state = self.state.lock().await;
        if state.fenced {
            return Err(MetaError::Fenced(self.prefix.clone()));
        }
        if !conditions.iter().all(|c| check(&state.manifest, c)) {
            return Ok(TxnOutcome::Conflict);
        }
        let mut next = state.manifest.clone();
        next.revision += 1;
        let rev = next.revision;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    next.entries.insert(key.clone(), (value.clone(), rev));
                    events.push(Event { key, value: Some(value), revision: rev });
                }
                Op::Delete(key) => {
                    if next.entries.remove(&key).is_some() {
                        events.push(Event { key, value: None, revision: rev });
                    }
                }
            }
        }
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        let payload = PutPayload::from_bytes(next.encode());
        match self.store.put_opts(&self.manifest_path(rev), payload, opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                state.fenced = true;
                tracing::error!(
                    prefix = %self.prefix,
                    revision = rev,
                    "metadata manifest revision already written by another process: fenced, \
                     this broker stops acknowledging"
                );
                return Err(MetaError::Fenced(self.prefix.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        state.manifest = next;
        drop(state);
        if rev > KEEP_OLD_MANIFESTS {
            let old = self.manifest_path(rev - KEEP_OLD_MANIFESTS - 1);
            if let Err(e) = self.store.delete(&old).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(error = %e, "could not delete old manifest");
            }
        }
        for event in events {
            let _ = self.events.send(event);
        }
        Ok(TxnOutcome::Committed(rev))
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn check_fenced(&self) -> Result<(), MetaError> {
        let mut state = self.state.lock().await;
        if state.fenced {
            return Err(MetaError::Fenced(self.prefix.clone()));
        }
        // Another process that committed has written our next revision.
        match self.store.head(&self.manifest_path(state.manifest.revision + 1)).await {
            Ok(_) => {
                state.fenced = true;
                tracing::error!(prefix = %self.prefix, "another process committed metadata on this prefix: fenced, \
                    this broker stops acknowledging");
                Err(MetaError::Fenced(self.prefix.clone()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Returns the revision that the store's newest manifest holds (for tests and
/// diagnostics).
impl EmbeddedStore {
    /// The revision of the last committed transaction.
    pub async fn revision(&self) -> Revision {
        self.state.lock().await.manifest.revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use object_store::local::LocalFileSystem;

    async fn open(dir: &std::path::Path) -> EmbeddedStore {
        let fs = LocalFileSystem::new_with_prefix(dir).expect("local fs");
        EmbeddedStore::open(Arc::new(fs), "meta").await.expect("open")
    }

    #[tokio::test]
    async fn cas_persist_and_fence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = open(dir.path()).await;
        let mut watch = a.watch();
        let r1 = a.put("topics/x", Bytes::from_static(b"1")).await.expect("put");
        assert_eq!(watch.recv().await.expect("event").key, "topics/x");
        // Compare-and-set: wrong version conflicts, right version commits.
        let bad = a
            .txn(vec![Condition::Version("topics/x".into(), r1 + 5)], vec![Op::Delete("topics/x".into())])
            .await
            .expect("txn");
        assert_eq!(bad, TxnOutcome::Conflict);
        let created = a
            .txn(
                vec![Condition::Absent("topics/y".into())],
                vec![Op::Put("topics/y".into(), Bytes::from_static(b"2"))],
            )
            .await
            .expect("txn");
        assert!(matches!(created, TxnOutcome::Committed(_)));
        assert_eq!(a.list("topics/").await.expect("list").len(), 2);

        // A second process sees everything and, once it commits, fences the first.
        let b = open(dir.path()).await;
        assert_eq!(b.get("topics/y").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"2")));
        b.put("topics/z", Bytes::new()).await.expect("b put");
        let err = a.put("topics/w", Bytes::new()).await;
        assert!(matches!(err, Err(MetaError::Fenced(_))), "{err:?}");
        // Fenced stays fenced.
        assert!(matches!(a.put("k", Bytes::new()).await, Err(MetaError::Fenced(_))));
        assert!(matches!(a.check_fenced().await, Err(MetaError::Fenced(_))));
        // Opening takes the prefix over; a poll tells the previous owner
        // without it committing anything.
        let d = open(dir.path()).await;
        assert!(d.check_fenced().await.is_ok());
        let e = open(dir.path()).await;
        assert!(matches!(d.check_fenced().await, Err(MetaError::Fenced(_))));
        assert!(e.check_fenced().await.is_ok());
        e.put("topics/v", Bytes::new()).await.expect("e put");
        let c = open(dir.path()).await;
        assert!(c.get("topics/z").await.expect("get").is_some());
        assert!(c.get("topics/w").await.expect("get").is_none());
    }
}
