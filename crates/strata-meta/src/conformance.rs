//! The conformance suite of the [`MetaStore`] contract, run by each
//! implementation's tests (the embedded store today, etcd next). Each check
//! panics with a message when the store breaks the contract.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Condition, Event, MetaError, MetaStore, Op, TxnOutcome, Watch};

/// The next event of `watch`, within a deadline.
async fn next_event(watch: &mut Watch) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

/// Compare-and-set, absent-conditions, listing by prefix and watch events.
pub async fn compare_and_set(store: &dyn MetaStore) {
    let now = store.current_revision().await.expect("revision");
    let mut watch = store.watch_from("cas/", now + 1).await.expect("watch");
    let r1 = store.put("cas/x", Bytes::from_static(b"1")).await.expect("put");
    assert_eq!(r1, now + 1, "the next commit gets the next revision");
    assert_eq!(next_event(&mut watch).await.key, "cas/x");
    let stale = Condition::Version("cas/x".into(), r1 + 5);
    let bad = store.txn(vec![stale], vec![Op::Delete("cas/x".into())]).await.expect("txn");
    assert_eq!(bad, TxnOutcome::Conflict, "a wrong version conflicts");
    assert!(store.get("cas/x").await.expect("get").is_some(), "a conflict applies nothing");
    let exists = Condition::Absent("cas/x".into());
    let bad = store.txn(vec![exists], vec![Op::Put("cas/x".into(), Bytes::new())]).await.expect("txn");
    assert_eq!(bad, TxnOutcome::Conflict, "absent fails on an existing key");
    let right = Condition::Version("cas/x".into(), r1);
    let ok = store.txn(vec![right], vec![Op::Put("cas/y".into(), Bytes::from_static(b"2"))]).await;
    assert!(matches!(ok, Ok(TxnOutcome::Committed(r)) if r > r1), "{ok:?}");
    let listed: Vec<String> = store.list("cas/").await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(listed, vec!["cas/x".to_string(), "cas/y".to_string()]);
}

/// A transaction above `max_txn_ops` is refused and applies nothing.
pub async fn oversize_transaction_refused(store: &dyn MetaStore) {
    let max = store.max_txn_ops();
    let ops: Vec<Op> = (0..=max).map(|i| Op::Put(format!("big/{i}"), Bytes::new())).collect();
    match store.txn(vec![], ops).await {
        Err(MetaError::TooLarge { ops, max: m }) => assert_eq!((ops, m), (max + 1, max)),
        other => panic!("an oversize transaction was not refused: {other:?}"),
    }
    assert!(store.list("big/").await.expect("list").is_empty());
    let ops: Vec<Op> = (0..max).map(|i| Op::Put(format!("big/{i}"), Bytes::new())).collect();
    assert!(matches!(store.txn(vec![], ops).await, Ok(TxnOutcome::Committed(_))), "the limit itself is fine");
}

/// Once `second` (a new owner of the same prefix) is open, `first` is told it
/// is fenced by a poll and by its next commit, and stays fenced.
pub async fn a_new_owner_fences_the_old(
    first: &dyn MetaStore,
    second: impl Future<Output = Box<dyn MetaStore>>,
) {
    first.put("own/a", Bytes::new()).await.expect("first owner commits");
    assert!(first.check_fenced().await.is_ok());
    let second = second.await;
    assert!(second.get("own/a").await.expect("get").is_some(), "the new owner sees acknowledged commits");
    assert!(matches!(first.check_fenced().await, Err(MetaError::Fenced(_))), "a poll tells");
    assert!(matches!(first.put("own/b", Bytes::new()).await, Err(MetaError::Fenced(_))));
    assert!(first.is_fenced());
    second.put("own/c", Bytes::new()).await.expect("the new owner is not fenced by the old one");
    assert!(second.check_fenced().await.is_ok());
}

/// With the store failing every write (`break_store`), a commit answers
/// `OutcomeUnknown` (never `Conflict` or success) and the store refuses
/// further commits rather than build on an unknown state.
pub async fn outcome_unknown(store: &dyn MetaStore, break_store: impl FnOnce()) {
    break_store();
    match store.put("unknown/a", Bytes::new()).await {
        Err(e @ MetaError::OutcomeUnknown(_)) => assert_eq!(e.kind(), crate::ErrorKind::Unknown),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    assert!(matches!(store.put("unknown/b", Bytes::new()).await, Err(MetaError::OutcomeUnknown(_))));
}

/// A watch from a past revision delivers every change under its prefix from
/// that revision on, in order, then live changes; other prefixes are left out.
pub async fn watch_from_revision(store: &dyn MetaStore) {
    let r1 = store.put("w/a", Bytes::from_static(b"1")).await.expect("put");
    let r2 = store.put("w/b", Bytes::from_static(b"2")).await.expect("put");
    store.put("x/other", Bytes::new()).await.expect("put");
    let r4 = store.txn(vec![], vec![Op::Delete("w/a".into())]).await.expect("txn");
    let TxnOutcome::Committed(r4) = r4 else { panic!("an unconditional delete conflicted") };
    let mut from_r2 = store.watch_from("w/", r2).await.expect("watch");
    let mut from_r1 = store.watch_from("w/", r1).await.expect("watch");
    let e = next_event(&mut from_r2).await;
    assert_eq!((e.key.as_str(), e.revision, e.value), ("w/b", r2, Some(Bytes::from_static(b"2"))));
    let e = next_event(&mut from_r2).await;
    assert_eq!((e.key.as_str(), e.revision, e.value), ("w/a", r4, None), "a delete is an event");
    assert_eq!(next_event(&mut from_r1).await.revision, r1, "a watch from r1 starts at r1");
    let r5 = store.put("w/c", Bytes::new()).await.expect("put");
    let e = next_event(&mut from_r2).await;
    assert_eq!((e.key.as_str(), e.revision), ("w/c", r5), "then live changes, none missed");
    let later: Vec<u64> =
        [next_event(&mut from_r1).await, next_event(&mut from_r1).await].iter().map(|e| e.revision).collect();
    assert_eq!(later, vec![r2, r4]);
}

/// A key put with a lease lives while the lease is kept alive and goes (with
/// a delete event) once it is not; an expired lease can be neither renewed nor
/// used. Revoking deletes at once. `ttl` is the shortest the store grants.
pub async fn lease_expiry(store: &dyn MetaStore, ttl: Duration) {
    let lease = store.grant_lease(ttl).await.expect("grant");
    let from = store.current_revision().await.expect("revision") + 1;
    let mut watch = store.watch_from("lease/", from).await.expect("watch");
    store
        .txn(
            vec![],
            vec![
                Op::PutWithLease("lease/a".into(), Bytes::new(), lease),
                Op::Put("lease/b".into(), Bytes::new()),
            ],
        )
        .await
        .expect("put with a lease");
    // Kept alive across more than two TTLs: the key stays.
    let kept_until = Instant::now() + ttl * 2 + ttl / 2;
    while Instant::now() < kept_until {
        store.keep_alive(lease).await.expect("keep alive");
        assert!(store.get("lease/a").await.expect("get").is_some(), "a kept-alive key stays");
        tokio::time::sleep(ttl / 4).await;
    }
    // Then left to expire: the key goes, within a deadline.
    let deadline = Instant::now() + ttl * 2 + Duration::from_secs(10);
    while store.get("lease/a").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "a lease not kept alive did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let put_a = next_event(&mut watch).await;
    assert_eq!(put_a.key, "lease/a");
    assert_eq!(next_event(&mut watch).await.key, "lease/b");
    let gone = next_event(&mut watch).await;
    assert_eq!((gone.key.as_str(), gone.value), ("lease/a", None), "the expiry is a delete event");
    assert!(store.get("lease/b").await.expect("get").is_some(), "keys without the lease stay");
    assert!(matches!(store.keep_alive(lease).await, Err(MetaError::LeaseNotFound(_))));
    let late = store.txn(vec![], vec![Op::PutWithLease("lease/c".into(), Bytes::new(), lease)]).await;
    assert!(matches!(late, Err(MetaError::LeaseNotFound(_))), "{late:?}");
    assert!(store.get("lease/c").await.expect("get").is_none(), "a refused put applies nothing");
    // Revoking deletes the lease's keys at once.
    let second = store.grant_lease(ttl * 100).await.expect("grant");
    store.txn(vec![], vec![Op::PutWithLease("lease/d".into(), Bytes::new(), second)]).await.expect("put");
    store.revoke_lease(second).await.expect("revoke");
    assert!(store.get("lease/d").await.expect("get").is_none(), "revoke deletes the lease's keys");
}
