//! The metadata-store contract (`strata_meta::conformance`) on a real etcd
//! server (Debian's `etcd-server`, which `scripts/setup.sh` installs), started
//! on free loopback ports with a temporary data directory and stopped by PID;
//! and the isolation of clusters that share one etcd under different
//! prefixes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_meta::testing::EtcdServer;
use strata_meta::{EtcdStore, MetaError, MetaStore, conformance};

/// A store on `etcd` under `prefix`, once etcd answers.
async fn ready_store(etcd: &EtcdServer, prefix: &str) -> EtcdStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), prefix).await;
        match store {
            Ok(s) if s.current_revision().await.is_ok() => return s,
            _ => assert!(Instant::now() < deadline, "etcd at {} does not answer", etcd.endpoint),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keeps_the_metadata_store_contract() {
    let etcd = EtcdServer::start();
    let store = ready_store(&etcd, "/strata-test/conformance").await;
    conformance::compare_and_set(&store).await;
    conformance::oversize_transaction_refused(&store).await;
    conformance::watch_from_revision(&store).await;
    // etcd's shortest lease: 1.5 election timeouts (1 s by default), in whole seconds.
    conformance::lease_expiry(&store, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_under_different_prefixes_do_not_see_each_other() {
    let etcd = EtcdServer::start();
    let a = ready_store(&etcd, "/strata-test/a").await;
    let b = ready_store(&etcd, "/strata-test/ab").await;
    a.put("topics/t", Bytes::from_static(b"a")).await.expect("put");
    b.put("topics/t", Bytes::from_static(b"b")).await.expect("put");
    assert_eq!(a.get("topics/t").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"a")));
    assert_eq!(b.get("topics/t").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"b")));
    let listed: Vec<String> = a.list("").await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(listed, vec!["topics/t".to_string()], "a prefix that is a prefix of another's is still apart");
    let from = a.current_revision().await.expect("revision") + 1;
    let mut watch = a.watch_from("", from).await.expect("watch");
    b.put("topics/u", Bytes::new()).await.expect("put");
    a.put("topics/v", Bytes::new()).await.expect("put");
    let e =
        tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("an event").expect("open");
    assert_eq!(e.expect("event").key, "topics/v", "the other cluster's change is not seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_unknown_and_the_store_stops() {
    let etcd = EtcdServer::start();
    let store = EtcdStore::connect_with_timeout(
        std::slice::from_ref(&etcd.endpoint),
        "/strata-test/unknown",
        Duration::from_secs(1),
    )
    .await
    .expect("connect");
    let ready = ready_store(&etcd, "/strata-test/unknown").await;
    ready.put("warm", Bytes::new()).await.expect("put");
    // A paused etcd: the request is sent and never answered.
    conformance::outcome_unknown(&store, || etcd.signal("-STOP")).await;
    etcd.signal("-CONT");
    assert!(
        matches!(store.put("after", Bytes::new()).await, Err(MetaError::OutcomeUnknown(_))),
        "it stays stopped"
    );
    assert!(ready.get("after").await.expect("get").is_none());
}

/// One owner per prefix, as the embedded store (docs/ownership.md): a second
/// process that takes the prefix over fences the first, which commits
/// nothing more; a store of another prefix is not fenced by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_of_a_prefix_fences_the_old() {
    let etcd = EtcdServer::start();
    let endpoints = vec![etcd.endpoint.clone()];
    ready_store(&etcd, "/strata-test/warm").await;
    let timeout = Duration::from_secs(10);
    let first = EtcdStore::open_owner(&endpoints, "/strata-test/owned", timeout).await.expect("first owner");
    assert_eq!(first.owner_epoch(), Some(1));
    let other = EtcdStore::open_owner(&endpoints, "/strata-test/owned-other", timeout).await.expect("other");
    let second = async {
        let s = EtcdStore::open_owner(&endpoints, "/strata-test/owned", timeout).await.expect("second owner");
        assert_eq!(s.owner_epoch(), Some(2), "the next epoch");
        Box::new(s) as Box<dyn MetaStore>
    };
    conformance::a_new_owner_fences_the_old(&first, second).await;
    other.put("k", Bytes::new()).await.expect("another prefix's owner is not fenced");
    assert!(other.list("").await.expect("list").iter().all(|e| e.key == "k"), "the owner key is not listed");
}

/// A listing larger than one page (and than gRPC's default 4 MiB message)
/// comes back whole and in key order, and ends at its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_many_pages_is_whole_and_one_snapshot() {
    use strata_meta::Op;
    let etcd = EtcdServer::start();
    let store = ready_store(&etcd, "/strata-test/pages").await;
    let value = Bytes::from(vec![b'v'; 2000]);
    let keys: Vec<String> = (0..2500).map(|i| format!("big/{i:06}")).collect();
    for chunk in keys.chunks(store.max_txn_ops()) {
        let ops = chunk.iter().map(|k| Op::Put(k.clone(), value.clone())).collect();
        store.txn(vec![], ops).await.expect("put");
    }
    store.put("bigger", Bytes::from_static(b"outside the prefix")).await.expect("put");
    let listed = store.list("big/").await.expect("list");
    assert_eq!(listed.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), keys);
    assert!(listed.iter().all(|e| e.value == value));
}
