//! The metadata store of a cluster: etcd (`etcd-client`), under a key prefix
//! so that several clusters share one etcd. Consensus is etcd's: every
//! method is one etcd request (a transaction for [`MetaStore::txn`]), keys
//! are the prefix plus Strata's key, revisions are etcd's (store-wide, so
//! another cluster's writes advance them too), and leases are etcd leases.
//!
//! A transaction whose answer is lost (a transport error once sent) has an
//! unknown outcome: it is reported as [`MetaError::OutcomeUnknown`] and the
//! store refuses further commits, as the embedded store does, so that the
//! process reloads rather than build on a state it cannot know.
//!
//! [`EtcdStore::open_owner`] makes the store the one owner of its prefix, as
//! the embedded store is (docs/ownership.md, rules 1-2, on etcd): opening
//! claims the next owner epoch in the `<prefix>.owner` key, and every commit carries
//! the condition that the key still holds this epoch, so once another
//! process has taken the prefix over, this one commits nothing more and is
//! told [`MetaError::Fenced`] (by its next commit, or by
//! [`MetaStore::check_fenced`], one read of the key).
//!
//! [`EtcdStore::connect_member`] is a broker of a cluster instead
//! (docs/cluster.md): many brokers share the prefix, each commit carries its
//! own conditions (per-stream ownership), the owner epoch is the broker's
//! incarnation (its WAL is its own), and [`MetaStore::check_fenced`] waits
//! until the broker's session lease is fresh, or fails once it is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use crate::{
    Condition, Entry, Event, LeaseClock, LeaseId, MetaError, MetaStore, Op, Revision, TxnOutcome, Watch,
};

/// How long one etcd request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`MetaStore`] on etcd, every key under one prefix.
pub struct EtcdStore {
    client: Client,
    prefix: String,
    /// Set once a commit's outcome could not be learnt.
    unknown: AtomicBool,
    /// The owner epoch this process holds, when it owns the prefix.
    epoch: Option<u64>,
    /// Set once another owner was seen.
    fenced: AtomicBool,
    /// A cluster member's incarnation and session lease.
    member: Option<(u64, Arc<LeaseClock>)>,
}

fn transient(e: etcd_client::Error) -> MetaError {
    MetaError::Unavailable(e.to_string())
}

/// etcd's answer to a use of a lease that no longer exists ("requested
/// lease not found" from the server, "lease not found" from the client's
/// keep-alive).
fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

/// Keys per page of a listing.
const LIST_PAGE: i64 = 1000;

/// The largest etcd response this client decodes (etcd's own request limit is
/// 1.5 MiB per value; a page of a thousand is far below this).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The end of the key range of everything starting with `prefix`, as etcd's
/// `WithPrefix`: the prefix with its last byte below 0xff incremented.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`host:port`), keeping every key under
    /// `prefix` (a path such as `/strata/prod`; a trailing `/` is added).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, MetaError> {
        Self::connect_with_timeout(endpoints, prefix, REQUEST_TIMEOUT).await
    }

    /// Like [`EtcdStore::connect`], with `timeout` for each request.
    pub async fn connect_with_timeout(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, MetaError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await.map_err(transient)?;
        let mut prefix = prefix.trim_end_matches('/').to_string();
        prefix.push('/');
        Ok(EtcdStore {
            client,
            prefix,
            unknown: AtomicBool::new(false),
            epoch: None,
            fenced: AtomicBool::new(false),
            member: None,
        })
    }

    /// Connects as a broker of a cluster: `incarnation` (rising with each
    /// start of the broker) is the owner epoch its WAL writes under, and
    /// `lease` the clock of its session, which every acknowledgement waits
    /// on ([`MetaStore::check_fenced`]).
    pub async fn connect_member(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
        incarnation: u64,
        lease: Arc<LeaseClock>,
    ) -> Result<Self, MetaError> {
        let mut store = Self::connect_with_timeout(endpoints, prefix, timeout).await?;
        store.member = Some((incarnation, lease));
        Ok(store)
    }

    /// Connects and takes the prefix over: the next owner epoch, claimed
    /// with a compare-and-set of the `owner` key (a racing taker loses and
    /// this one retries above it). From then on a previous owner commits
    /// nothing.
    pub async fn open_owner(
        endpoints: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, MetaError> {
        let mut store = Self::connect_with_timeout(endpoints, prefix, timeout).await?;
        let key = store.owner_key();
        for _ in 0..16 {
            let resp = store.client.kv_client().get(key.clone(), None).await.map_err(transient)?;
            let (current, condition) = match resp.kvs().first() {
                None => (0, Compare::version(key.clone(), CompareOp::Equal, 0)),
                Some(kv) => {
                    let epoch = std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| MetaError::Corrupt {
                            path: key.clone(),
                            reason: "the owner epoch is not a number".into(),
                        })?;
                    (epoch, Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()))
                }
            };
            let next = current + 1;
            let txn =
                Txn::new().when([condition]).and_then([TxnOp::put(key.clone(), next.to_string(), None)]);
            if store.client.kv_client().txn(txn).await.map_err(transient)?.succeeded() {
                tracing::info!(prefix, epoch = next, "took the metadata prefix over");
                store.epoch = Some(next);
                return Ok(store);
            }
        }
        Err(MetaError::Unavailable(format!(
            "could not claim an owner epoch of {prefix}: too many racing takers"
        )))
    }

    /// The key of the owner epoch: beside the prefix, not under it, so that
    /// no listing of the prefix sees it (`/strata/prod` owns with
    /// `/strata/prod.owner`).
    fn owner_key(&self) -> String {
        format!("{}.owner", self.prefix.trim_end_matches('/'))
    }

    fn owner_value(&self) -> Option<String> {
        self.epoch.map(|e| e.to_string())
    }

    fn fence(&self) -> MetaError {
        self.fenced.store(true, Ordering::Release);
        MetaError::Fenced(self.prefix.clone())
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Option<Entry> {
        let key = std::str::from_utf8(kv.key()).ok()?.strip_prefix(&self.prefix)?.to_string();
        Some(Entry {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            mod_revision: kv.mod_revision() as Revision,
        })
    }
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, MetaError> {
        let resp = self.client.kv_client().get(self.key(key), None).await.map_err(transient)?;
        Ok(resp.kvs().first().and_then(|kv| self.entry(kv)))
    }

    /// In pages of [`LIST_PAGE`] keys, every page read at the first one's
    /// revision: one snapshot, however many keys (one response is bounded
    /// by gRPC's message size).
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, MetaError> {
        let start = self.key(prefix).into_bytes();
        let end = prefix_end(&start);
        let mut from = start;
        let mut revision = 0i64;
        let mut out = Vec::new();
        loop {
            let options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE)
                .with_revision(revision)
                .with_sort(etcd_client::SortTarget::Key, etcd_client::SortOrder::Ascend);
            let resp = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .get(from.clone(), Some(options))
                .await
                .map_err(transient)?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            out.extend(resp.kvs().iter().filter_map(|kv| self.entry(kv)));
            match resp.kvs().last() {
                Some(kv) if resp.more() => {
                    from = kv.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// etcd's `--max-txn-ops` (128) bounds compares as well as ops: one
    /// compare is kept for the owner key.
    fn max_txn_ops(&self) -> usize {
        crate::MAX_TXN_OPS - 1
    }

    async fn txn(&self, conditions: Vec<Condition>, ops: Vec<Op>) -> Result<TxnOutcome, MetaError> {
        // A member whose session lease is lost commits nothing more (it may
        // have just woken from a pause that outlived its session).
        if MetaStore::is_fenced(self) {
            return Err(MetaError::Fenced(self.prefix.clone()));
        }
        if self.unknown.load(Ordering::Acquire) {
            return Err(MetaError::OutcomeUnknown("an earlier commit's outcome is unknown".into()));
        }
        let max = self.max_txn_ops();
        // The owner key's compare rides along: conditions count against
        // etcd's limit too, one fewer than it.
        if ops.len() > max || conditions.len() > max {
            return Err(MetaError::TooLarge { ops: ops.len().max(conditions.len()), max });
        }
        let compares: Vec<Compare> = conditions
            .iter()
            .map(|c| match c {
                Condition::Absent(k) => Compare::version(self.key(k), CompareOp::Equal, 0),
                Condition::Version(k, rev) => {
                    Compare::mod_revision(self.key(k), CompareOp::Equal, *rev as i64)
                }
            })
            .collect();
        let leases: Vec<LeaseId> = ops
            .iter()
            .filter_map(|op| if let Op::PutWithLease(_, _, l) = op { Some(*l) } else { None })
            .collect();
        let txn_ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put(k, v) => TxnOp::put(self.key(&k), v.to_vec(), None),
                Op::PutWithLease(k, v, lease) => {
                    TxnOp::put(self.key(&k), v.to_vec(), Some(PutOptions::new().with_lease(lease)))
                }
                Op::Delete(k) => TxnOp::delete(self.key(&k), None),
            })
            .collect();
        let mut compares = compares;
        let owner = self.owner_value();
        if let Some(epoch) = &owner {
            compares.push(Compare::value(self.owner_key(), CompareOp::Equal, epoch.as_str()));
        }
        // On a failed condition, the owner key tells a conflict from a fence.
        let txn = Txn::new().when(compares).and_then(txn_ops).or_else([TxnOp::get(self.owner_key(), None)]);
        match self.client.kv_client().txn(txn).await {
            Ok(resp) if resp.succeeded() => {
                Ok(TxnOutcome::Committed(resp.header().map_or(0, |h| h.revision()) as Revision))
            }
            Ok(resp) => {
                if let Some(ours) = &owner {
                    let current = resp.op_responses().into_iter().find_map(|r| match r {
                        etcd_client::TxnOpResponse::Get(g) => {
                            Some(g.kvs().first().map(|kv| kv.value().to_vec()))
                        }
                        _ => None,
                    });
                    if current.flatten().as_deref() != Some(ours.as_bytes()) {
                        return Err(self.fence());
                    }
                }
                Ok(TxnOutcome::Conflict)
            }
            // etcd checks leases before applying: nothing was applied.
            Err(e) if is_lease_not_found(&e) => {
                Err(MetaError::LeaseNotFound(leases.first().copied().unwrap_or(0)))
            }
            Err(e) => {
                self.unknown.store(true, Ordering::Release);
                Err(MetaError::OutcomeUnknown(e.to_string()))
            }
        }
    }

    async fn current_revision(&self) -> Result<Revision, MetaError> {
        let options = GetOptions::new().with_count_only();
        let resp =
            self.client.kv_client().get(self.prefix.clone(), Some(options)).await.map_err(transient)?;
        Ok(resp.header().map_or(0, |h| h.revision()) as Revision)
    }

    async fn watch_from(&self, prefix: &str, from: Revision) -> Result<Watch, MetaError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(from as i64);
        let mut stream =
            self.client.watch_client().watch(self.key(prefix), Some(options)).await.map_err(transient)?;
        let (tx, rx) = mpsc::channel(1024);
        let strip = self.prefix.clone();
        tokio::spawn(async move {
            // The stream lives as long as the task: dropping it ends the watch.
            loop {
                let resp = match stream.message().await {
                    Ok(Some(resp)) => resp,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(transient(e))).await;
                        return;
                    }
                };
                if resp.compact_revision() > 0 {
                    let compacted = resp.compact_revision() as u64;
                    let _ = tx.send(Err(MetaError::Compacted { requested: from, compacted })).await;
                    return;
                }
                if resp.canceled() {
                    let reason = resp.cancel_reason().to_string();
                    let _ = tx.send(Err(MetaError::Unavailable(format!("watch canceled: {reason}")))).await;
                    return;
                }
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Some(key) = std::str::from_utf8(kv.key()).ok().and_then(|k| k.strip_prefix(&strip))
                    else {
                        continue;
                    };
                    let value = match event.event_type() {
                        EventType::Put => Some(Bytes::copy_from_slice(kv.value())),
                        EventType::Delete => None,
                    };
                    let event =
                        Event { key: key.to_string(), value, revision: kv.mod_revision() as Revision };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, MetaError> {
        let secs = ttl.as_millis().div_ceil(1000).max(1) as i64;
        let resp = self.client.lease_client().grant(secs, None).await.map_err(transient)?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), MetaError> {
        let lost = |e: etcd_client::Error| {
            if is_lease_not_found(&e) { MetaError::LeaseNotFound(lease) } else { transient(e) }
        };
        let (mut keeper, mut stream) = self.client.lease_client().keep_alive(lease).await.map_err(lost)?;
        keeper.keep_alive().await.map_err(lost)?;
        match stream.message().await.map_err(lost)? {
            Some(resp) if resp.ttl() > 0 => Ok(()),
            // etcd answers an expired or unknown lease with a TTL of 0.
            Some(_) => Err(MetaError::LeaseNotFound(lease)),
            None => Err(MetaError::Unavailable(format!("the keep-alive stream of lease {lease} ended"))),
        }
    }

    async fn check_fenced(&self) -> Result<(), MetaError> {
        if let Some((_, lease)) = &self.member {
            return match lease.wait_fresh().await {
                Ok(()) => Ok(()),
                Err(()) => Err(self.fence()),
            };
        }
        let Some(ours) = self.owner_value() else { return Ok(()) };
        if self.fenced.load(Ordering::Acquire) {
            return Err(MetaError::Fenced(self.prefix.clone()));
        }
        let resp = self.client.kv_client().get(self.owner_key(), None).await.map_err(transient)?;
        match resp.kvs().first() {
            Some(kv) if kv.value() == ours.as_bytes() => Ok(()),
            _ => Err(self.fence()),
        }
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire) || self.member.as_ref().is_some_and(|(_, l)| l.is_lost())
    }

    fn owner_epoch(&self) -> Option<u64> {
        self.epoch.or(self.member.as_ref().map(|(i, _)| *i))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), MetaError> {
        match self.client.lease_client().revoke(lease).await {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(transient(e)),
        }
    }
}
