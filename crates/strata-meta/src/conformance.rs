//! The conformance suite of the [`MetaStore`] contract, run by each
//! implementation's tests (the embedded store today, etcd next). Each check
//! panics with a message when the store breaks the contract.

use std::future::Future;

use bytes::Bytes;

use crate::{Condition, MetaError, MetaStore, Op, TxnOutcome};

/// Compare-and-set, absent-conditions, listing by prefix and watch events.
pub async fn compare_and_set(store: &dyn MetaStore) {
    let mut watch = store.watch();
    let r1 = store.put("cas/x", Bytes::from_static(b"1")).await.expect("put");
    assert_eq!(watch.recv().await.expect("event").key, "cas/x");
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
