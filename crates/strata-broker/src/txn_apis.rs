//! The transaction APIs on the wire (`docs/transactions.md`): InitProducerId
//! with a transactional id, AddPartitionsToTxn (v0-3, the clients' form),
//! AddOffsetsToTxn, EndTxn (v0-4), WriteTxnMarkers, and what follows a
//! decision: the markers in every partition of the transaction, then the
//! Complete record. Timed-out transactions are aborted by a ticker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use kafka_protocol::protocol::StrBytes;

use crate::broker::now_ms;
use crate::cluster::RemoteAdd;
use crate::error_codes::{code, count, txn_error};
use crate::txn::state::{EndOutcome, InitOutcome};
use crate::txn::{TXN_PARTITIONS, TXN_TOPIC, TxnError, TxnMeta, TxnState};
use crate::{Broker, BrokerError};

/// How long a marker that could not be written waits before it is tried again.
const MARKER_RETRY: Duration = Duration::from_millis(100);

fn txn_topic_configs() -> BTreeMap<String, String> {
    [("cleanup.policy", "compact"), ("compression.type", "uncompressed"), ("segment.bytes", "104857600")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What InitProducerId does next, decided under the coordinator's lock.
enum InitStep {
    Answer(i64, i16),
    Abort(TxnMeta),
    NeedProducerId,
}

impl Broker {
    /// Makes sure `__transaction_state` exists and its shards are loaded;
    /// transactions found deciding get their markers.
    pub(crate) async fn txn_ready(self: &Arc<Self>) -> Result<(), TxnError> {
        if self.txn.is_loaded() {
            return Ok(());
        }
        let topic = self
            .internal_topic(TXN_TOPIC, TXN_PARTITIONS, txn_topic_configs())
            .await
            .ok_or(TxnError::CoordinatorNotAvailable)?;
        let streams = (0..topic.partitions()).map(|i| self.partition(&topic, i)).collect();
        let deciding = self.txn.load(streams).await.map_err(|e| {
            tracing::warn!(error = %e, "loading the transaction coordinator failed");
            TxnError::CoordinatorLoadInProgress
        })?;
        for (id, meta) in deciding {
            self.spawn_completion(id, meta);
        }
        Ok(())
    }

    /// Starts the coordinator's clock: the abort of timed-out transactions.
    pub(crate) fn start_txn_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.txn.config.abort_check_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                b.abort_timed_out().await;
            }
        });
        let weak = Arc::downgrade(self);
        let every = self.txn.config.remove_expired_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                let removed = b.txn.expire_ids(now_ms()).await;
                if removed > 0 {
                    tracing::info!(ids = removed, "expired transactional ids removed");
                }
            }
        });
        if self.catalog.topic(TXN_TOPIC).is_some() {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(b) = weak.upgrade() else { return };
                if let Err(e) = b.txn_ready().await {
                    tracing::warn!(error = %e, "transaction coordinator not loaded at start");
                }
            });
        }
    }

    /// Fences and aborts every transaction past its timeout.
    async fn abort_timed_out(self: &Arc<Self>) {
        let now = now_ms();
        for id in self.txn.timed_out(now) {
            let outcome = self
                .txn
                .transition(&id, |m| match m {
                    Some(m) if m.timed_out(now) => {
                        let next = m.fence_and_abort(now);
                        Ok((Some(next.clone()), Some(next)))
                    }
                    _ => Ok((None, None)),
                })
                .await;
            match outcome {
                Ok(Some(next)) => {
                    tracing::info!(transactional_id = %id, epoch = next.producer_epoch, "aborting a timed-out transaction");
                    self.spawn_completion(id, next);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "aborting a timed-out transaction failed")
                }
            }
        }
    }

    /// Writes the markers of a decided transaction, then its Complete record.
    pub(crate) fn spawn_completion(self: &Arc<Self>, id: String, decided: TxnMeta) {
        let b = Arc::clone(self);
        tokio::spawn(async move { b.complete_transaction(&id, decided).await });
    }

    async fn complete_transaction(&self, id: &str, decided: TxnMeta) {
        let commit = decided.state == TxnState::PrepareCommit;
        let (pid, epoch) = (decided.producer_id, decided.producer_epoch);
        let mut left: Vec<(String, i32)> = decided.partitions.iter().cloned().collect();
        while !left.is_empty() {
            // Every marker appended first, then awaited: one WAL round for all.
            let mut retry = Vec::new();
            let mut waits = Vec::new();
            for (topic, partition) in left {
                let Some(t) = self.catalog.topic(&topic) else { continue };
                match self.append_marker(&t, partition, pid, epoch, commit, 0).await {
                    Ok(appended) => waits.push(((topic, partition), appended)),
                    // Led by another broker of the cluster: WriteTxnMarkers there.
                    Err(BrokerError::NotLeaderOrFollower) if self.is_cluster() => {
                        match self.remote_marker(&t, partition, pid, epoch, commit, 0).await {
                            Ok(0) => {}
                            Ok(c)
                                if c == ResponseError::InvalidProducerEpoch.code()
                                    || c == ResponseError::UnknownTopicOrPartition.code() =>
                            {
                                tracing::warn!(transactional_id = id, topic = %topic, partition, code = c, "marker dropped by its leader");
                            }
                            Ok(c) => {
                                tracing::debug!(transactional_id = id, topic = %topic, partition, code = c, "remote marker refused; retrying");
                                retry.push((topic, partition));
                            }
                            Err(e) => {
                                tracing::warn!(transactional_id = id, topic = %topic, partition, error = %e, "remote marker failed; retrying");
                                retry.push((topic, partition));
                            }
                        }
                    }
                    // Kafka drops a marker the partition fences, and one for a partition gone.
                    Err(
                        e @ (BrokerError::InvalidProducerEpoch(_) | BrokerError::UnknownTopicOrPartition),
                    ) => {
                        tracing::warn!(transactional_id = id, topic = %topic, partition, error = %e, "marker dropped");
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = id, topic = %topic, partition, error = %e, "marker write failed; retrying");
                        retry.push((topic, partition));
                    }
                }
            }
            for (tp, appended) in waits {
                if let Err(e) = appended.durable().await {
                    tracing::warn!(transactional_id = id, topic = %tp.0, partition = tp.1, error = %e, "marker not durable; retrying");
                    retry.push(tp);
                }
            }
            if !retry.is_empty() {
                tokio::time::sleep(MARKER_RETRY).await;
            }
            left = retry;
        }
        loop {
            let now = now_ms();
            let outcome = self
                .txn
                .transition(id, |m| match m {
                    Some(m)
                        if m.state == decided.state
                            && m.producer_id == decided.producer_id
                            && m.producer_epoch == decided.producer_epoch =>
                    {
                        Ok((Some(m.complete(now)), ()))
                    }
                    _ => Ok((None, ())),
                })
                .await;
            match outcome {
                Ok(()) => return,
                Err(TxnError::ConcurrentTransactions) => tokio::time::sleep(MARKER_RETRY).await,
                Err(e) => {
                    tracing::warn!(transactional_id = id, error = %e, "completing a transaction failed; retrying");
                    tokio::time::sleep(MARKER_RETRY).await;
                }
            }
        }
    }

    /// InitProducerId with a transactional id: a new id, an epoch bump
    /// (fencing any older instance), or CONCURRENT_TRANSACTIONS while an open
    /// transaction is aborted first.
    pub(crate) async fn init_transactional_producer(
        self: &Arc<Self>,
        req: &InitProducerIdRequest,
        id: &str,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut resp = InitProducerIdResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        let old = version < 4;
        let fail =
            |resp: &mut InitProducerIdResponse, e: TxnError| resp.error_code = txn_error(e, old).code();
        if id.is_empty() {
            fail(&mut resp, TxnError::InvalidRequest);
            return resp;
        }
        let timeout = req.transaction_timeout_ms;
        if timeout <= 0 || timeout > self.txn.config.max_timeout_ms {
            fail(&mut resp, TxnError::InvalidTransactionTimeout);
            return resp;
        }
        if version >= 3 && ((req.producer_id.0 < 0) != (req.producer_epoch < 0)) {
            fail(&mut resp, TxnError::InvalidRequest);
            return resp;
        }
        if let Err(e) = self.txn_ready().await {
            fail(&mut resp, e);
            return resp;
        }
        let expected =
            (version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
        let mut fresh: Option<i64> = None;
        for _ in 0..3 {
            let now = now_ms();
            let step = self
                .txn
                .transition(id, |m| {
                    let current = match (m, fresh) {
                        (Some(m), _) => m.clone(),
                        (None, Some(pid)) => TxnMeta::new(pid, timeout, now),
                        (None, None) => return Ok((None, InitStep::NeedProducerId)),
                    };
                    Ok(match current.init(expected, timeout, now, fresh)? {
                        InitOutcome::Write(next) => {
                            let answer = InitStep::Answer(next.producer_id, next.producer_epoch);
                            (Some(next), answer)
                        }
                        InitOutcome::FenceAndAbort(next) => (Some(next.clone()), InitStep::Abort(next)),
                        InitOutcome::Answer(pid, epoch) => (None, InitStep::Answer(pid, epoch)),
                        InitOutcome::NeedsProducerId => (None, InitStep::NeedProducerId),
                    })
                })
                .await;
            match step {
                Ok(InitStep::Answer(pid, epoch)) => {
                    resp.producer_id = ProducerId(pid);
                    resp.producer_epoch = epoch;
                    return resp;
                }
                Ok(InitStep::Abort(next)) => {
                    tracing::info!(
                        transactional_id = id,
                        epoch = next.producer_epoch,
                        "a new producer instance aborts the open transaction"
                    );
                    self.spawn_completion(id.to_string(), next);
                    fail(&mut resp, TxnError::ConcurrentTransactions);
                    return resp;
                }
                Ok(InitStep::NeedProducerId) => match self.producers.allocate().await {
                    Ok(pid) => fresh = Some(pid),
                    Err(e) => {
                        resp.error_code = code(&e);
                        return resp;
                    }
                },
                Err(e) => {
                    fail(&mut resp, e);
                    return resp;
                }
            }
        }
        fail(&mut resp, TxnError::ConcurrentTransactions);
        resp
    }

    /// Adds partitions to a transaction (the coordinator's side of
    /// AddPartitionsToTxn and AddOffsetsToTxn).
    async fn add_to_txn(
        self: &Arc<Self>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        client_tv: i16,
    ) -> Result<(), TxnError> {
        self.txn_ready().await?;
        let now = now_ms();
        self.txn
            .transition(id, |m| {
                let m = m.ok_or(TxnError::InvalidProducerIdMapping)?;
                Ok((m.add_partitions(producer_id, epoch, partitions, client_tv, now)?, ()))
            })
            .await
    }

    /// KIP-890 part 2: a transactional batch of Produce v12+ (or a
    /// TxnOffsetCommit v5) adds its partition to the producer's transaction
    /// itself. While the producer's last transaction completes, the add is
    /// retried every 20 ms for up to 100 ms (Kafka's
    /// `add.partitions.to.txn.retry.backoff.*`), then CONCURRENT_TRANSACTIONS.
    pub(crate) async fn add_implicitly(
        self: &Arc<Self>,
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
        partition: (String, i32),
    ) -> Result<(), BrokerError> {
        let Some(id) = transactional_id else {
            return Err(BrokerError::InvalidTxnState(
                "a transactional batch needs its transactional id".into(),
            ));
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        if let Some(peer) = self.remote_txn_coordinator(id) {
            loop {
                match self.remote_add_to_txn(&peer, id, producer_id, epoch, &partition, false).await? {
                    RemoteAdd::Done => return Ok(()),
                    RemoteAdd::Refused(c)
                        if c == ResponseError::ConcurrentTransactions.code()
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    RemoteAdd::Refused(c) => {
                        return Err(remote_refusal(c, id, producer_id, epoch, &partition));
                    }
                }
            }
        }
        loop {
            match self.add_to_txn(id, producer_id, epoch, std::slice::from_ref(&partition), 2).await {
                Ok(()) => return Ok(()),
                Err(TxnError::ConcurrentTransactions) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(TxnError::ConcurrentTransactions) => {
                    return Err(BrokerError::ConcurrentTransactions(format!(
                        "the last transaction of {id} is still completing"
                    )));
                }
                Err(TxnError::ProducerFenced | TxnError::InvalidProducerIdMapping) => {
                    return Err(BrokerError::InvalidProducerEpoch(format!(
                        "producer {producer_id} epoch {epoch} is fenced"
                    )));
                }
                Err(TxnError::InvalidTxnState) => {
                    return Err(BrokerError::InvalidTxnState(format!(
                        "{id} cannot add {}-{}",
                        partition.0, partition.1
                    )));
                }
                Err(e) => {
                    return Err(BrokerError::NotEnoughReplicas(format!("transaction coordinator: {e}")));
                }
            }
        }
    }

    /// AddPartitionsToTxn, v0-3 (the clients' form): one error for every
    /// partition; an unknown partition fails the whole request, the others
    /// answered OPERATION_NOT_ATTEMPTED.
    pub async fn add_partitions_to_txn(
        self: &Arc<Self>,
        req: AddPartitionsToTxnRequest,
        version: i16,
    ) -> AddPartitionsToTxnResponse {
        if version >= 4 {
            return self.add_partitions_to_txns(req).await;
        }
        let mut resp = AddPartitionsToTxnResponse::default();
        let mut partitions = Vec::new();
        let mut unknown = Vec::new();
        for t in &req.v3_and_below_topics {
            let topic = self.catalog.topic(t.name.as_str());
            for p in &t.partitions {
                let known = topic.as_ref().is_some_and(|topic| (0..topic.partitions()).contains(p));
                if known {
                    partitions.push((t.name.to_string(), *p));
                } else {
                    unknown.push((t.name.to_string(), *p));
                }
            }
        }
        let error_of = |tp: &(String, i32), result: i16| {
            if unknown.contains(tp) { ResponseError::UnknownTopicOrPartition.code() } else { result }
        };
        let result = if !unknown.is_empty() {
            ResponseError::OperationNotAttempted.code()
        } else {
            let id = req.v3_and_below_transactional_id.as_str();
            match self
                .add_to_txn(
                    id,
                    req.v3_and_below_producer_id.0,
                    req.v3_and_below_producer_epoch,
                    &partitions,
                    0,
                )
                .await
            {
                Ok(()) => 0,
                Err(e) => txn_error(e, version < 2).code(),
            }
        };
        for t in &req.v3_and_below_topics {
            let mut tr = AddPartitionsToTxnTopicResult::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let mut pr = AddPartitionsToTxnPartitionResult::default();
                pr.partition_index = *p;
                pr.partition_error_code = error_of(&(t.name.to_string(), *p), result);
                count("AddPartitionsToTxn", pr.partition_error_code);
                tr.results_by_partition.push(pr);
            }
            resp.results_by_topic_v3_and_below.push(tr);
        }
        resp
    }

    /// AddPartitionsToTxn v4-5 (the brokers' batched form, KIP-890): per
    /// transaction, a verification (`verify_only`: NONE for each partition
    /// in the ongoing transaction, else TRANSACTION_ABORTABLE, in v4 too as
    /// Kafka answers; the sending broker maps it for its client) or an add
    /// as v3 does it.
    async fn add_partitions_to_txns(
        self: &Arc<Self>,
        req: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        let mut resp = AddPartitionsToTxnResponse::default();
        let ready = self.txn_ready().await;
        for txn in &req.transactions {
            let id = txn.transactional_id.as_str();
            let (pid, epoch) = (txn.producer_id.0, txn.producer_epoch);
            let mut codes: Vec<((String, i32), i16)> = Vec::new();
            let mut partitions = Vec::new();
            let mut unknown = false;
            for t in &txn.topics {
                let topic = self.catalog.topic(t.name.as_str());
                for p in &t.partitions {
                    let known = topic.as_ref().is_some_and(|topic| (0..topic.partitions()).contains(p));
                    unknown |= !known;
                    let tp = (t.name.to_string(), *p);
                    codes.push((
                        tp.clone(),
                        if known { 0 } else { ResponseError::UnknownTopicOrPartition.code() },
                    ));
                    partitions.push(tp);
                }
            }
            let result: Result<Vec<bool>, TxnError> = match &ready {
                Err(e) => Err(*e),
                Ok(()) if unknown => Ok(Vec::new()),
                Ok(()) if txn.verify_only => match self.txn.get(id) {
                    Err(e) => Err(e),
                    Ok(None) => Err(TxnError::InvalidProducerIdMapping),
                    Ok(Some(m)) => partitions.iter().map(|tp| m.verify(pid, epoch, tp)).collect(),
                },
                Ok(()) => self
                    .add_to_txn(id, pid, epoch, &partitions, 2)
                    .await
                    .map(|()| vec![true; partitions.len()]),
            };
            for (i, (_, c)) in codes.iter_mut().enumerate() {
                *c = match &result {
                    _ if *c != 0 => *c,
                    Ok(_) if unknown => ResponseError::OperationNotAttempted.code(),
                    Ok(in_txn) if in_txn.get(i).copied().unwrap_or(false) => 0,
                    Ok(_) => ResponseError::TransactionAbortable.code(),
                    Err(e) => txn_error(*e, false).code(),
                };
                count("AddPartitionsToTxn", *c);
            }
            let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
            for ((topic, p), c) in codes {
                let mut pr = AddPartitionsToTxnPartitionResult::default();
                pr.partition_index = p;
                pr.partition_error_code = c;
                by_topic.entry(topic).or_default().push(pr);
            }
            let mut r = AddPartitionsToTxnResult::default();
            r.transactional_id = txn.transactional_id.clone();
            r.topic_results = by_topic
                .into_iter()
                .map(|(name, results)| {
                    let mut tr = AddPartitionsToTxnTopicResult::default();
                    tr.name = StrBytes::from_string(name).into();
                    tr.results_by_partition = results;
                    tr
                })
                .collect();
            resp.results_by_transaction.push(r);
        }
        resp
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the
    /// transaction.
    pub async fn add_offsets_to_txn(
        self: &Arc<Self>,
        req: AddOffsetsToTxnRequest,
        version: i16,
    ) -> AddOffsetsToTxnResponse {
        let mut resp = AddOffsetsToTxnResponse::default();
        let partition =
            crate::groups::partition_for(req.group_id.as_str(), crate::groups::OFFSETS_PARTITIONS);
        let offsets = vec![(crate::groups::OFFSETS_TOPIC.to_string(), partition)];
        let outcome = match self.coordinator_ready().await {
            Err(_) => Err(TxnError::CoordinatorNotAvailable),
            Ok(()) => {
                self.add_to_txn(
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &offsets,
                    0,
                )
                .await
            }
        };
        if let Err(e) = outcome {
            resp.error_code = txn_error(e, version < 2).code();
            count("AddOffsetsToTxn", resp.error_code);
        }
        resp
    }

    /// EndTxn: answered once the decision (PrepareCommit or PrepareAbort) is
    /// durable; the markers follow. v5 is transaction version 2: the epoch
    /// is bumped at every end, and the answer carries the producer id and
    /// epoch to continue with.
    pub async fn end_txn(self: &Arc<Self>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
        enum Step {
            Decided(TxnMeta),
            Done(i64, i16),
            NeedProducerId,
        }
        let mut resp = EndTxnResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        let id = req.transactional_id.to_string();
        let v2 = version >= 5;
        let mut fresh = None;
        let mut outcome = Err(TxnError::ConcurrentTransactions);
        for _ in 0..3 {
            if let Err(e) = self.txn_ready().await {
                outcome = Err(e);
                break;
            }
            let now = now_ms();
            outcome = self
                .txn
                .transition(&id, |m| {
                    let m = m.ok_or(TxnError::InvalidProducerIdMapping)?;
                    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
                    let decision = if v2 {
                        m.end_v2(pid, epoch, req.committed, now, fresh)?
                    } else {
                        m.end(pid, epoch, req.committed, now)?
                    };
                    Ok(match decision {
                        EndOutcome::Prepare(next) => (Some(next.clone()), Step::Decided(next)),
                        EndOutcome::Done => (None, Step::Done(m.producer_id, m.producer_epoch)),
                        EndOutcome::NeedsProducerId => (None, Step::NeedProducerId),
                    })
                })
                .await;
            match &outcome {
                Ok(Step::NeedProducerId) => match self.producers.allocate().await {
                    Ok(pid) => fresh = Some(pid),
                    Err(e) => {
                        resp.error_code = code(&e);
                        return resp;
                    }
                },
                _ => break,
            }
        }
        match outcome {
            Ok(Step::Decided(decided)) => {
                if v2 {
                    let (pid, epoch) = decided.after_completion();
                    resp.producer_id = ProducerId(pid);
                    resp.producer_epoch = epoch;
                }
                self.spawn_completion(id, decided);
            }
            Ok(Step::Done(pid, epoch)) => {
                if v2 {
                    resp.producer_id = ProducerId(pid);
                    resp.producer_epoch = epoch;
                }
            }
            Ok(Step::NeedProducerId) => resp.error_code = ResponseError::ConcurrentTransactions.code(),
            Err(e) => resp.error_code = txn_error(e, version < 2).code(),
        }
        count("EndTxn", resp.error_code);
        resp
    }

    /// KIP-890 part 1: whether a transactional batch of `producer_id` may
    /// open a transaction in this partition, asked of the coordinator before
    /// the producer's first batch there (`Ok` when the partition is in its
    /// ongoing transaction). A partition outside it is TRANSACTION_ABORTABLE
    /// when the request's version knows that error (`abortable`), else
    /// INVALID_TXN_STATE.
    pub(crate) async fn verify_in_txn(
        self: &Arc<Self>,
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
        partition: (String, i32),
        abortable: bool,
    ) -> Result<(), BrokerError> {
        let not_in_txn = || {
            if abortable {
                BrokerError::TransactionAbortable(format!(
                    "{}-{} is not part of the producer's ongoing transaction",
                    partition.0, partition.1
                ))
            } else {
                BrokerError::InvalidTxnState(format!(
                    "{}-{} is not part of the producer's ongoing transaction",
                    partition.0, partition.1
                ))
            }
        };
        let Some(id) = transactional_id else { return Err(not_in_txn()) };
        if let Some(peer) = self.remote_txn_coordinator(id) {
            return match self.remote_add_to_txn(&peer, id, producer_id, epoch, &partition, true).await? {
                RemoteAdd::Done => Ok(()),
                RemoteAdd::Refused(c) if c == ResponseError::TransactionAbortable.code() => Err(not_in_txn()),
                RemoteAdd::Refused(c) => Err(remote_refusal(c, id, producer_id, epoch, &partition)),
            };
        }
        let retriable = |e: TxnError| BrokerError::NotEnoughReplicas(format!("transaction coordinator: {e}"));
        self.txn_ready().await.map_err(retriable)?;
        match self.txn.get(id).map_err(retriable)? {
            None => Err(BrokerError::InvalidProducerEpoch(format!("transactional id {id} is not known"))),
            Some(m) => match m.verify(producer_id, epoch, &partition) {
                Ok(true) => Ok(()),
                Ok(false) => Err(not_in_txn()),
                Err(TxnError::ProducerFenced | TxnError::InvalidProducerIdMapping) => {
                    Err(BrokerError::InvalidProducerEpoch(format!(
                        "producer {producer_id} epoch {epoch} is fenced"
                    )))
                }
                Err(e) => Err(retriable(e)),
            },
        }
    }

    /// TxnOffsetCommit: offsets committed in the producer's transaction,
    /// pending in the group until its marker. The group's offsets partition
    /// must be in the transaction (AddOffsetsToTxn).
    pub async fn txn_offset_commit(
        self: &Arc<Self>,
        req: TxnOffsetCommitRequest,
        version: i16,
    ) -> TxnOffsetCommitResponse {
        let mut resp = TxnOffsetCommitResponse::default();
        let group = req.group_id.to_string();
        let offsets_partition = crate::groups::partition_for(&group, crate::groups::OFFSETS_PARTITIONS);
        let mut entries = Vec::new();
        let mut shape = Vec::new();
        for t in &req.topics {
            let topic = self.catalog.topic(t.name.as_str());
            let mut parts = Vec::new();
            for p in &t.partitions {
                let entry = crate::group_apis::commit_entry(
                    topic.as_deref(),
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_deref(),
                );
                let err = entry.map(|e| entries.push(e)).err();
                parts.push((p.partition_index, err));
            }
            shape.push((t.name.clone(), parts));
        }
        let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
        let outcome: Result<(), i16> = async {
            self.coordinator_ready().await.map_err(crate::error_codes::group_code)?;
            let offsets = (crate::groups::OFFSETS_TOPIC.to_string(), offsets_partition);
            let transactional_id = Some(req.transactional_id.as_str());
            if version >= 5 {
                self.add_implicitly(transactional_id, pid, epoch, offsets).await
            } else {
                self.verify_in_txn(transactional_id, pid, epoch, offsets, version >= 4).await
            }
            .map_err(|e| code(&e))?;
            if entries.is_empty() {
                return Ok(());
            }
            let base = self
                .coordinator
                .txn_commit(
                    &group,
                    (pid, epoch),
                    req.member_id.as_str(),
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    &entries,
                )
                .await
                .map_err(crate::error_codes::group_code)?;
            // The offsets partition holds an open transaction from here (the
            // cleaner stops at its last stable offset).
            if let Some(t) = self.catalog.topic(crate::groups::OFFSETS_TOPIC)
                && let Some(stream) = self.partition(&t, offsets_partition)
                && let Ok(state) = self.producers.partition(&stream).await
            {
                state.lock().record_txn(pid, base);
                state.mark_dirty();
            }
            Ok(())
        }
        .await;
        let all = outcome.err().unwrap_or(0);
        for (name, parts) in shape {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = name;
            for (i, err) in parts {
                let mut p = TxnOffsetCommitResponsePartition::default();
                p.partition_index = i;
                p.error_code = err.unwrap_or(all);
                count("TxnOffsetCommit", p.error_code);
                t.partitions.push(p);
            }
            resp.topics.push(t);
        }
        resp
    }

    /// WriteTxnMarkers: one control batch per partition, answered once durable.
    pub async fn write_txn_markers(&self, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
        let mut resp = WriteTxnMarkersResponse::default();
        for marker in req.markers {
            let mut mr = WritableTxnMarkerResult::default();
            mr.producer_id = marker.producer_id;
            for t in marker.topics {
                let mut tr = WritableTxnMarkerTopicResult::default();
                tr.name = t.name.clone();
                let topic = self.catalog.topic(t.name.as_str());
                for p in t.partition_indexes {
                    let outcome = match &topic {
                        None => Err(BrokerError::UnknownTopicOrPartition),
                        Some(topic) => {
                            self.write_marker(
                                topic,
                                p,
                                marker.producer_id.0,
                                marker.producer_epoch,
                                marker.transaction_result,
                                marker.coordinator_epoch,
                            )
                            .await
                        }
                    };
                    let mut pr = WritableTxnMarkerPartitionResult::default();
                    pr.partition_index = p;
                    if let Err(e) = outcome {
                        tracing::debug!(topic = %t.name.as_str(), partition = p, error = %e, "marker refused");
                        pr.error_code = code(&e);
                        count("WriteTxnMarkers", pr.error_code);
                    }
                    tr.partitions.push(pr);
                }
                mr.topics.push(tr);
            }
            resp.markers.push(mr);
        }
        resp
    }
}

/// The error a produce (or TxnOffsetCommit) gets when the transaction's
/// remote coordinator refused its partition with `code`.
fn remote_refusal(
    code: i16,
    id: &str,
    producer_id: i64,
    epoch: i16,
    partition: &(String, i32),
) -> BrokerError {
    if code == ResponseError::InvalidProducerEpoch.code()
        || code == ResponseError::ProducerFenced.code()
        || code == ResponseError::InvalidProducerIdMapping.code()
    {
        BrokerError::InvalidProducerEpoch(format!("producer {producer_id} epoch {epoch} is fenced"))
    } else if code == ResponseError::InvalidTxnState.code() {
        BrokerError::InvalidTxnState(format!("{id} cannot add {}-{}", partition.0, partition.1))
    } else if code == ResponseError::ConcurrentTransactions.code() {
        BrokerError::ConcurrentTransactions(format!("the last transaction of {id} is still completing"))
    } else {
        BrokerError::NotEnoughReplicas(format!("transaction coordinator answered error {code}"))
    }
}
