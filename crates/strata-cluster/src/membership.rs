//! Broker membership (issue 13): a broker registers `brokers/<id>` attached
//! to a lease it keeps alive, so that the key goes when the broker does (its
//! lease not renewed for `broker.session.timeout.ms`). A broker started
//! without a node id gets a fresh one from `ids/next-broker` (from 1001, as
//! Kafka generates ids above `reserved.broker.max.id`); a broker whose id a
//! live broker holds refuses to start.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_meta::{Condition, LeaseClock, LeaseId, MetaError, MetaStore, Op, TxnOutcome};

use crate::ClusterError;

/// The key prefix of registrations.
pub const BROKERS: &str = "brokers/";
const NEXT_BROKER_KEY: &str = "ids/next-broker";
const INCARNATIONS: &str = "incarnation/";
/// The first generated node id (Kafka's `reserved.broker.max.id` + 1).
pub const FIRST_GENERATED_ID: i32 = 1001;

/// A registered broker: where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Its node id.
    pub node_id: i32,
    /// The host clients connect to.
    pub host: String,
    /// The port clients connect to.
    pub port: i32,
}

/// This broker's registration: its node id and the lease that holds it.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The node id (given, or generated).
    pub node_id: i32,
    /// The lease of `brokers/<node_id>`.
    pub lease: LeaseId,
    /// This start of the broker, counted per node id from 1: the owner
    /// epoch of its WAL (`incarnation/<node_id>`).
    pub incarnation: u64,
}

fn broker_key(node_id: i32) -> String {
    format!("{BROKERS}{node_id}")
}

/// A fresh node id, never handed out before on this metadata store.
async fn next_node_id(meta: &dyn MetaStore) -> Result<i32, ClusterError> {
    for _ in 0..16 {
        let current = meta.get(NEXT_BROKER_KEY).await?;
        let (id, condition) = match &current {
            None => (FIRST_GENERATED_ID, Condition::Absent(NEXT_BROKER_KEY.into())),
            Some(e) => {
                let id = std::str::from_utf8(&e.value).ok().and_then(|v| v.parse::<i32>().ok()).ok_or_else(
                    || ClusterError::Corrupt { key: NEXT_BROKER_KEY.into(), reason: "not a node id".into() },
                )?;
                (id, Condition::Version(NEXT_BROKER_KEY.into(), e.mod_revision))
            }
        };
        let next = Bytes::from((id + 1).to_string());
        if let TxnOutcome::Committed(_) =
            meta.txn(vec![condition], vec![Op::Put(NEXT_BROKER_KEY.into(), next)]).await?
        {
            return Ok(id);
        }
    }
    Err(ClusterError::Contended)
}

/// Counts one more start of `node_id` (only its registered holder counts).
async fn next_incarnation(meta: &dyn MetaStore, node_id: i32) -> Result<u64, ClusterError> {
    let key = format!("{INCARNATIONS}{node_id}");
    for _ in 0..16 {
        let (next, condition) = match meta.get(&key).await? {
            None => (1, Condition::Absent(key.clone())),
            Some(e) => {
                let n = std::str::from_utf8(&e.value).ok().and_then(|v| v.parse::<u64>().ok()).ok_or_else(
                    || ClusterError::Corrupt { key: key.clone(), reason: "not an incarnation".into() },
                )?;
                (n + 1, Condition::Version(key.clone(), e.mod_revision))
            }
        };
        let value = Bytes::from(next.to_string());
        if let TxnOutcome::Committed(_) = meta.txn(vec![condition], vec![Op::Put(key.clone(), value)]).await?
        {
            return Ok(next);
        }
    }
    Err(ClusterError::Contended)
}

/// Registers this broker (`node_id`: the given id, or `None` for a fresh
/// one) under a lease of `ttl`; fails with [`ClusterError::NodeIdInUse`]
/// while a live broker holds the id.
pub async fn register(
    meta: &dyn MetaStore,
    node_id: Option<i32>,
    host: &str,
    port: i32,
    ttl: Duration,
) -> Result<Registration, ClusterError> {
    let node_id = match node_id {
        Some(id) => id,
        None => next_node_id(meta).await?,
    };
    let lease = meta.grant_lease(ttl).await?;
    let info = BrokerInfo { node_id, host: host.to_string(), port };
    let value = Bytes::from(
        serde_json::to_vec(&info)
            .map_err(|e| ClusterError::Corrupt { key: broker_key(node_id), reason: e.to_string() })?,
    );
    let outcome = meta
        .txn(
            vec![Condition::Absent(broker_key(node_id))],
            vec![Op::PutWithLease(broker_key(node_id), value, lease)],
        )
        .await?;
    match outcome {
        TxnOutcome::Committed(_) => {
            let incarnation = next_incarnation(meta, node_id).await?;
            Ok(Registration { node_id, lease, incarnation })
        }
        TxnOutcome::Conflict => {
            let _ = meta.revoke_lease(lease).await;
            Err(ClusterError::NodeIdInUse(node_id))
        }
    }
}

/// Keeps the registration's lease alive every `every` until it is lost,
/// noting each confirmation on `clock`; returns the error that lost it (the
/// lease expired, or went unconfirmed for longer than its life).
pub async fn keep_registered(
    meta: Arc<dyn MetaStore>,
    registration: Registration,
    every: Duration,
    clock: Arc<LeaseClock>,
) -> MetaError {
    loop {
        tokio::time::sleep(every).await;
        let sent = std::time::Instant::now();
        if clock.is_lost() {
            clock.lose();
            return MetaError::LeaseNotFound(registration.lease);
        }
        match meta.keep_alive(registration.lease).await {
            Ok(()) => clock.confirm(sent),
            Err(e @ MetaError::LeaseNotFound(_)) => {
                clock.lose();
                return e;
            }
            Err(e) => {
                tracing::warn!(error = %e, node_id = registration.node_id, "broker lease keep-alive failed")
            }
        }
    }
}

/// The live brokers, by node id.
pub async fn live_brokers(meta: &dyn MetaStore) -> Result<Vec<BrokerInfo>, ClusterError> {
    let mut out = Vec::new();
    for e in meta.list(BROKERS).await? {
        let info: BrokerInfo = serde_json::from_slice(&e.value)
            .map_err(|err| ClusterError::Corrupt { key: e.key.clone(), reason: err.to_string() })?;
        out.push(info);
    }
    out.sort_by_key(|b| b.node_id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_meta::EmbeddedStore;

    async fn store() -> EmbeddedStore {
        let objects: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        EmbeddedStore::open(objects, "meta").await.expect("open")
    }

    #[tokio::test]
    async fn ids_are_generated_from_1001_and_a_live_id_is_refused() {
        let meta = store().await;
        let ttl = Duration::from_secs(30);
        let a = register(&meta, None, "h", 1, ttl).await.expect("a");
        let b = register(&meta, None, "h", 2, ttl).await.expect("b");
        assert_eq!((a.node_id, b.node_id), (1001, 1002));
        let c = register(&meta, Some(7), "h", 3, ttl).await.expect("c");
        assert_eq!(c.node_id, 7);
        assert!(matches!(register(&meta, Some(7), "h", 4, ttl).await, Err(ClusterError::NodeIdInUse(7))));
        let live: Vec<i32> = live_brokers(&meta).await.expect("live").iter().map(|b| b.node_id).collect();
        assert_eq!(live, vec![7, 1001, 1002]);
        // Once its holder's lease goes, the id is free again.
        meta.revoke_lease(c.lease).await.expect("revoke");
        assert_eq!(register(&meta, Some(7), "h", 4, ttl).await.expect("again").node_id, 7);
    }
}
