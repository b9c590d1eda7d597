//! The catalog of topics: an in-memory view of `topics/*` kept current by this
//! broker's own writes, every write a compare-and-set through the metadata store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use strata_meta::{Condition, Entry, MetaStore, Op, TxnOutcome};
use uuid::Uuid;

use crate::{ClusterError, TopicRecord};

const TOPICS: &str = "topics/";
const NEXT_STREAM_ID: &str = "ids/next-stream";
const CLUSTER_ID: &str = "cluster/id";
const MAX_ATTEMPTS: usize = 16;

#[derive(Default)]
struct View {
    by_name: BTreeMap<String, (Arc<TopicRecord>, u64)>,
    by_id: HashMap<Uuid, String>,
}

/// Topics and ids of the cluster.
pub struct Catalog {
    meta: Arc<dyn MetaStore>,
    view: RwLock<View>,
    cluster_id: String,
}

fn decode(entry: &Entry) -> Result<TopicRecord, ClusterError> {
    serde_json::from_slice(&entry.value)
        .map_err(|e| ClusterError::Corrupt { key: entry.key.clone(), reason: e.to_string() })
}

fn encode(record: &TopicRecord) -> Bytes {
    // Serializing a plain struct of strings and numbers cannot fail.
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}

impl Catalog {
    /// Loads the catalog; `cluster_id` is recorded on first start and the stored
    /// one wins afterwards.
    pub async fn open(meta: Arc<dyn MetaStore>, cluster_id: &str) -> Result<Self, ClusterError> {
        let stored = meta.get(CLUSTER_ID).await?;
        let cluster_id = match stored {
            Some(e) => String::from_utf8_lossy(&e.value).into_owned(),
            None => {
                let outcome = meta
                    .txn(
                        vec![Condition::Absent(CLUSTER_ID.into())],
                        vec![Op::Put(CLUSTER_ID.into(), Bytes::from(cluster_id.to_string()))],
                    )
                    .await?;
                if outcome == TxnOutcome::Conflict {
                    // Another broker of the cluster recorded it first.
                    let e = meta.get(CLUSTER_ID).await?.ok_or(ClusterError::Contended)?;
                    String::from_utf8_lossy(&e.value).into_owned()
                } else {
                    cluster_id.to_string()
                }
            }
        };
        let mut view = View::default();
        for entry in meta.list(TOPICS).await? {
            let record = decode(&entry)?;
            view.by_id.insert(record.id, record.name.clone());
            view.by_name.insert(record.name.clone(), (Arc::new(record), entry.mod_revision));
        }
        Ok(Catalog { meta, view: RwLock::new(view), cluster_id })
    }

    /// Brings the view up to date with the store (another broker's writes):
    /// topics listed are taken when newer than the view's, and a topic no
    /// longer listed goes unless this broker wrote it after the listing began.
    pub async fn reload(&self) -> Result<(), ClusterError> {
        let as_of = self.meta.current_revision().await?;
        let mut listed = BTreeMap::new();
        for entry in self.meta.list(TOPICS).await? {
            let record = decode(&entry)?;
            listed.insert(record.name.clone(), (Arc::new(record), entry.mod_revision));
        }
        let mut view = self.write();
        let current = std::mem::take(&mut view.by_name);
        let mut next = BTreeMap::new();
        for (name, (record, rev)) in current {
            match listed.get(&name) {
                Some((_, listed_rev)) if *listed_rev >= rev => {}
                Some(_) => {
                    next.insert(name, (record, rev));
                }
                None if rev > as_of => {
                    next.insert(name, (record, rev));
                }
                None => {}
            }
        }
        for (name, entry) in listed {
            next.entry(name).or_insert(entry);
        }
        view.by_id = next.values().map(|(t, _)| (t.id, t.name.clone())).collect();
        view.by_name = next;
        Ok(())
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<TopicRecord>> {
        self.read().by_name.values().map(|(t, _)| Arc::clone(t)).collect()
    }

    /// One topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<TopicRecord>> {
        self.read().by_name.get(name).map(|(t, _)| Arc::clone(t))
    }

    /// One topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<TopicRecord>> {
        let view = self.read();
        let name = view.by_id.get(&id)?;
        view.by_name.get(name).map(|(t, _)| Arc::clone(t))
    }

    /// Reserves `count` fresh stream ids; returns the first.
    async fn allocate_streams(&self, count: u64) -> Result<u64, ClusterError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.meta.get(NEXT_STREAM_ID).await?;
            let (next, cond) = match &current {
                Some(e) => {
                    let text = String::from_utf8_lossy(&e.value);
                    let next = text.parse::<u64>().map_err(|err| ClusterError::Corrupt {
                        key: NEXT_STREAM_ID.into(),
                        reason: err.to_string(),
                    })?;
                    (next, Condition::Version(NEXT_STREAM_ID.into(), e.mod_revision))
                }
                None => (1, Condition::Absent(NEXT_STREAM_ID.into())),
            };
            let value = Bytes::from((next + count).to_string());
            if let TxnOutcome::Committed(_) =
                self.meta.txn(vec![cond], vec![Op::Put(NEXT_STREAM_ID.into(), value)]).await?
            {
                return Ok(next);
            }
        }
        Err(ClusterError::Contended)
    }

    /// Creates a topic with `partitions` partitions and explicit `configs`.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<TopicRecord>, ClusterError> {
        if self.topic(name).is_some() {
            return Err(ClusterError::TopicExists(name.to_string()));
        }
        let count = partitions.max(0) as u64;
        let first = self.allocate_streams(count).await?;
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partition_streams: (first..first + count).collect(),
            configs,
            created_ms: now_ms,
        };
        let key = format!("{TOPICS}{name}");
        let outcome =
            self.meta.txn(vec![Condition::Absent(key.clone())], vec![Op::Put(key, encode(&record))]).await?;
        match outcome {
            TxnOutcome::Committed(rev) => {
                let record = Arc::new(record);
                let mut view = self.write();
                view.by_id.insert(record.id, name.to_string());
                view.by_name.insert(name.to_string(), (Arc::clone(&record), rev));
                Ok(record)
            }
            TxnOutcome::Conflict => Err(ClusterError::TopicExists(name.to_string())),
        }
    }

    /// Replaces a topic's record through `change`, compare-and-set on its version.
    async fn update(
        &self,
        name: &str,
        change: impl Fn(&TopicRecord) -> Result<TopicRecord, ClusterError>,
    ) -> Result<Arc<TopicRecord>, ClusterError> {
        let key = format!("{TOPICS}{name}");
        let (current, rev) = self
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        let next = change(&current)?;
        let outcome = self
            .meta
            .txn(vec![Condition::Version(key.clone(), rev)], vec![Op::Put(key, encode(&next))])
            .await?;
        match outcome {
            TxnOutcome::Committed(rev) => {
                let next = Arc::new(next);
                self.write().by_name.insert(name.to_string(), (Arc::clone(&next), rev));
                Ok(next)
            }
            TxnOutcome::Conflict => Err(ClusterError::Contended),
        }
    }

    /// Grows a topic to `total` partitions, allocating streams for the new ones.
    pub async fn add_partitions(&self, name: &str, total: i32) -> Result<Arc<TopicRecord>, ClusterError> {
        let current = self.topic(name).ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        if total <= current.partitions() {
            return Err(ClusterError::InvalidPartitions {
                topic: name.to_string(),
                current: current.partitions(),
                requested: total,
            });
        }
        let extra = (total - current.partitions()) as u64;
        let first = self.allocate_streams(extra).await?;
        self.update(name, |t| {
            let mut next = t.clone();
            next.partition_streams.extend(first..first + extra);
            Ok(next)
        })
        .await
    }

    /// Replaces a topic's explicit configs.
    pub async fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicRecord>, ClusterError> {
        self.update(name, |t| {
            let mut next = t.clone();
            next.configs = configs.clone();
            Ok(next)
        })
        .await
    }

    /// Deletes a topic; returns its record.
    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicRecord>, ClusterError> {
        let key = format!("{TOPICS}{name}");
        let (record, rev) = self
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_string()))?;
        match self.meta.txn(vec![Condition::Version(key.clone(), rev)], vec![Op::Delete(key)]).await? {
            TxnOutcome::Committed(_) => {
                let mut view = self.write();
                view.by_name.remove(name);
                view.by_id.remove(&record.id);
                Ok(record)
            }
            TxnOutcome::Conflict => Err(ClusterError::Contended),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use strata_meta::EmbeddedStore;

    #[tokio::test]
    async fn topics_survive_reopen_and_ids_are_never_reused() {
        let os = Arc::new(InMemory::new());
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(os.clone(), "meta").await.expect("open"));
        let cat = Catalog::open(Arc::clone(&meta), "c1").await.expect("catalog");
        let a = cat.create_topic("a", 3, BTreeMap::new(), 0).await.expect("create");
        assert_eq!(a.partition_streams, vec![1, 2, 3]);
        assert!(matches!(
            cat.create_topic("a", 1, BTreeMap::new(), 0).await,
            Err(ClusterError::TopicExists(_))
        ));
        cat.delete_topic("a").await.expect("delete");
        let b = cat.create_topic("a", 1, BTreeMap::new(), 0).await.expect("recreate");
        assert_eq!(b.partition_streams, vec![4]);
        let grown = cat.add_partitions("a", 3).await.expect("grow");
        assert_eq!(grown.partition_streams, vec![4, 5, 6]);
        assert!(cat.add_partitions("a", 2).await.is_err());
        let mut cfg = BTreeMap::new();
        cfg.insert("retention.ms".to_string(), "1000".to_string());
        cat.set_configs("a", cfg.clone()).await.expect("configs");

        let meta2: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(os, "meta").await.expect("open"));
        let cat2 = Catalog::open(meta2, "other").await.expect("catalog");
        assert_eq!(cat2.cluster_id(), "c1");
        let t = cat2.topic("a").expect("topic");
        assert_eq!(t.configs, cfg);
        assert_eq!(cat2.topic_by_id(t.id).map(|t| t.name.clone()), Some("a".to_string()));
    }
}
