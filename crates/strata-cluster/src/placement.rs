//! Placement (docs/cluster.md): which broker leads each stream, at which
//! leader epoch, and where it is moving. `placement/<stream>` is written by
//! the controller (new streams, failover) and by the leader that hands a
//! stream over (the end of a move); a reassignment request sets `target`.
//! Every write is conditional on the revision it replaces.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_meta::{Condition, MetaStore, Op, Revision, TxnOutcome};

use crate::ClusterError;

/// The key prefix of placements.
pub const PREFIX: &str = "placement/";

/// Where one stream is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The broker that leads the stream.
    pub leader: i32,
    /// The leader epoch; each new leadership raises it.
    pub epoch: i32,
    /// The replica list as last requested (the leader first); what Metadata
    /// and `kafka-reassign-partitions --verify` show.
    pub replicas: Vec<i32>,
    /// The broker the stream is moving to, while a move is in progress.
    #[serde(default)]
    pub target: Option<i32>,
    /// The broker whose WAL may hold the stream's unindexed tail (a leader
    /// that did not release it: failed, or restarted); `None` after a clean
    /// handover, when the index alone is complete.
    #[serde(default)]
    pub recover_from: Option<i32>,
}

/// The key of `stream`'s placement.
pub fn key(stream: u64) -> String {
    format!("{PREFIX}{stream}")
}

/// The stream a placement key names.
pub fn stream_of(key: &str) -> Option<u64> {
    key.strip_prefix(PREFIX)?.parse().ok()
}

fn encode(p: &Placement) -> Bytes {
    // A struct of numbers always serializes.
    Bytes::from(serde_json::to_vec(p).unwrap_or_default())
}

/// Every placement, with the revision that wrote it.
pub async fn list(meta: &dyn MetaStore) -> Result<HashMap<u64, (Placement, Revision)>, ClusterError> {
    let mut out = HashMap::new();
    for e in meta.list(PREFIX).await? {
        let Some(stream) = stream_of(&e.key) else { continue };
        let p: Placement = serde_json::from_slice(&e.value)
            .map_err(|err| ClusterError::Corrupt { key: e.key.clone(), reason: err.to_string() })?;
        out.insert(stream, (p, e.mod_revision));
    }
    Ok(out)
}

/// One stream's placement, with the revision that wrote it.
pub async fn list_one(
    meta: &dyn MetaStore,
    stream: u64,
) -> Result<Option<(Placement, Revision)>, ClusterError> {
    let Some(e) = meta.get(&key(stream)).await? else { return Ok(None) };
    let p: Placement = serde_json::from_slice(&e.value)
        .map_err(|err| ClusterError::Corrupt { key: e.key.clone(), reason: err.to_string() })?;
    Ok(Some((p, e.mod_revision)))
}

/// Writes `stream`'s placement if it is still at `seen` (`None`: absent),
/// under the extra `conditions` (the controller's term); the new revision,
/// or `None` when something changed first.
pub async fn write(
    meta: &dyn MetaStore,
    stream: u64,
    placement: &Placement,
    seen: Option<Revision>,
    mut conditions: Vec<Condition>,
) -> Result<Option<Revision>, ClusterError> {
    conditions.push(match seen {
        Some(rev) => Condition::Version(key(stream), rev),
        None => Condition::Absent(key(stream)),
    });
    match meta.txn(conditions, vec![Op::Put(key(stream), encode(placement))]).await? {
        TxnOutcome::Committed(rev) => Ok(Some(rev)),
        TxnOutcome::Conflict => Ok(None),
    }
}

/// Deletes the placements of `streams` (a deleted topic's).
pub async fn delete(meta: &dyn MetaStore, streams: &[u64]) -> Result<(), ClusterError> {
    for part in streams.chunks(meta.max_txn_ops().max(1)) {
        meta.txn(vec![], part.iter().map(|s| Op::Delete(key(*s))).collect()).await?;
    }
    Ok(())
}

/// The live broker with the fewest leaderships in `counts`, ties to the
/// lowest id; `None` when no broker is live.
pub fn least_loaded(live: &[i32], counts: &BTreeMap<i32, usize>) -> Option<i32> {
    live.iter().copied().min_by_key(|b| (counts.get(b).copied().unwrap_or(0), *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_streams_spread_by_count_ties_to_the_lowest_id() {
        let live = [3, 1, 2];
        let mut counts = BTreeMap::new();
        let mut placed = Vec::new();
        for _ in 0..7 {
            let b = least_loaded(&live, &counts).expect("a broker");
            *counts.entry(b).or_default() += 1;
            placed.push(b);
        }
        assert_eq!(placed, vec![1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(least_loaded(&[], &counts), None);
        assert_eq!(stream_of(&key(42)), Some(42));
        assert_eq!(stream_of("placement/x"), None);
    }
}
