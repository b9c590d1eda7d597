//! The controller election (docs/cluster.md, "Roles"): the broker that
//! creates the `controller` key, attached to its registration lease, is the
//! controller, and the key's revision is its epoch. Every write the
//! controller makes carries [`Controller::condition`], so once its lease is
//! gone (the key deleted with it) or another broker has been elected, a
//! deposed controller writes nothing. `strata serve` runs it in a cluster
//! (`strata-broker/src/cluster.rs`).

use bytes::Bytes;
use strata_meta::{Condition, LeaseId, MetaStore, Op, Revision, TxnOutcome};

use crate::ClusterError;

/// The key the controller holds.
pub const CONTROLLER_KEY: &str = "controller";

/// This broker's term as controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// The controller's node id.
    pub node_id: i32,
    /// Its epoch: the revision that created the `controller` key.
    pub epoch: Revision,
}

impl Controller {
    /// The condition of every write of this term.
    pub fn condition(&self) -> Condition {
        Condition::Version(CONTROLLER_KEY.into(), self.epoch)
    }
}

/// Tries to become controller, holding the key with `lease`; `None` while
/// another broker is.
pub async fn try_become(
    meta: &dyn MetaStore,
    node_id: i32,
    lease: LeaseId,
) -> Result<Option<Controller>, ClusterError> {
    let value = Bytes::from(node_id.to_string());
    let outcome = meta
        .txn(
            vec![Condition::Absent(CONTROLLER_KEY.into())],
            vec![Op::PutWithLease(CONTROLLER_KEY.into(), value, lease)],
        )
        .await?;
    Ok(match outcome {
        TxnOutcome::Committed(epoch) => Some(Controller { node_id, epoch }),
        TxnOutcome::Conflict => None,
    })
}

/// The current controller, if one is elected.
pub async fn current(meta: &dyn MetaStore) -> Result<Option<Controller>, ClusterError> {
    let Some(e) = meta.get(CONTROLLER_KEY).await? else { return Ok(None) };
    let node_id =
        std::str::from_utf8(&e.value).ok().and_then(|v| v.parse::<i32>().ok()).ok_or_else(|| {
            ClusterError::Corrupt { key: CONTROLLER_KEY.into(), reason: "not a node id".into() }
        })?;
    Ok(Some(Controller { node_id, epoch: e.mod_revision }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use strata_meta::EmbeddedStore;

    #[tokio::test]
    async fn one_controller_at_a_time_and_a_deposed_one_writes_nothing() {
        let objects: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let meta = EmbeddedStore::open(objects, "meta").await.expect("open");
        let (la, lb) = (
            meta.grant_lease(Duration::from_secs(30)).await.expect("lease"),
            meta.grant_lease(Duration::from_secs(30)).await.expect("lease"),
        );
        let a = try_become(&meta, 1, la).await.expect("elect").expect("a is controller");
        assert_eq!(try_become(&meta, 2, lb).await.expect("elect"), None, "one at a time");
        assert_eq!(current(&meta).await.expect("current"), Some(a));
        let write =
            |c: Controller| meta.txn(vec![c.condition()], vec![Op::Put("placement/1".into(), Bytes::new())]);
        assert!(matches!(write(a).await, Ok(TxnOutcome::Committed(_))), "the controller writes");
        // Its lease goes: so does the key, and its writes.
        meta.revoke_lease(la).await.expect("revoke");
        assert_eq!(current(&meta).await.expect("current"), None);
        let b = try_become(&meta, 2, lb).await.expect("elect").expect("b is controller");
        assert!(b.epoch > a.epoch, "a later term, a higher epoch");
        assert_eq!(
            write(a).await.expect("txn"),
            TxnOutcome::Conflict,
            "the deposed controller writes nothing"
        );
        assert!(matches!(write(b).await, Ok(TxnOutcome::Committed(_))));
    }
}
