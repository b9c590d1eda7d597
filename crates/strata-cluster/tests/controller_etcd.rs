//! The controller election and broker membership on a real etcd
//! (`strata_meta::testing::EtcdServer`): one controller at a time; when its
//! lease is not kept alive the key goes by itself, another broker is
//! elected at a higher epoch, and the deposed controller's writes fail.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_cluster::{controller, membership};
use strata_meta::testing::EtcdServer;
use strata_meta::{EtcdStore, MetaStore, Op, TxnOutcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_lease_expires_is_replaced_and_writes_nothing() {
    let etcd = EtcdServer::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        match EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/strata-test/controller").await {
            Ok(s) if s.current_revision().await.is_ok() => break s,
            _ => assert!(Instant::now() < deadline, "etcd does not answer"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ttl = Duration::from_secs(2);
    let a = membership::register(&meta, None, "127.0.0.1", 1, ttl).await.expect("a registers");
    let b = membership::register(&meta, None, "127.0.0.1", 2, ttl).await.expect("b registers");
    let ca = controller::try_become(&meta, a.node_id, a.lease).await.expect("elect").expect("a leads");
    assert_eq!(controller::try_become(&meta, b.node_id, b.lease).await.expect("elect"), None);
    let write = |c: controller::Controller| {
        meta.txn(vec![c.condition()], vec![Op::Put("placement/0".into(), Bytes::new())])
    };
    assert!(matches!(write(ca).await, Ok(TxnOutcome::Committed(_))));
    // b keeps its lease alive; a does not (it is paused, or dead).
    let until = Instant::now() + Duration::from_secs(30);
    let cb = loop {
        meta.keep_alive(b.lease).await.expect("b keeps its lease");
        if let Some(c) = controller::try_become(&meta, b.node_id, b.lease).await.expect("elect") {
            break c;
        }
        assert!(Instant::now() < until, "a's controller key never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(cb.epoch > ca.epoch);
    assert_eq!(controller::current(&meta).await.expect("current"), Some(cb));
    assert_eq!(write(ca).await.expect("txn"), TxnOutcome::Conflict, "the deposed controller writes nothing");
    assert!(matches!(write(cb).await, Ok(TxnOutcome::Committed(_))));
    let live: Vec<i32> =
        membership::live_brokers(&meta).await.expect("live").iter().map(|x| x.node_id).collect();
    assert_eq!(live, vec![b.node_id], "a's registration went with its lease");
}
