//! The transaction admin APIs (KIP-664, `docs/transactions-kafka.md` §7):
//! DescribeProducers (a partition's producer state), DescribeTransactions
//! and ListTransactions (the coordinator's). `kafka-transactions abort` ends
//! a hanging transaction with WriteTxnMarkers (`txn_apis.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::broker::now_ms;
use crate::error_codes::{code, count, txn_error};
use crate::txn::{TxnError, TxnState};

/// The states ListTransactions filters by, by the names Kafka reports.
const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

impl Broker {
    /// DescribeProducers: every producer a partition holds state for.
    pub async fn describe_producers(&self, req: DescribeProducersRequest) -> DescribeProducersResponse {
        let mut resp = DescribeProducersResponse::default();
        for t in req.topics {
            let topic = self.catalog.topic(t.name.as_str());
            let mut tr = TopicResponse::default();
            tr.name = t.name.clone();
            for p in t.partition_indexes {
                let mut pr = PartitionResponse::default();
                pr.partition_index = p;
                let stream = topic.as_ref().and_then(|topic| self.partition(topic, p));
                match stream {
                    None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Some(stream) => match self.producers.partition(&stream).await {
                        Err(e) => {
                            pr.error_code = code(&e);
                            pr.error_message = Some(StrBytes::from_string(e.to_string()));
                        }
                        Ok(state) => {
                            let producers = state.lock();
                            let mut active: Vec<ProducerState> = producers
                                .producers
                                .iter()
                                .map(|(pid, e)| {
                                    let mut ps = ProducerState::default();
                                    ps.producer_id = ProducerId(*pid);
                                    ps.producer_epoch = i32::from(e.epoch);
                                    ps.last_sequence = e.batches.back().map_or(-1, |b| b.last_seq);
                                    ps.last_timestamp = e.last_timestamp;
                                    ps.coordinator_epoch = e.coordinator_epoch;
                                    ps.current_txn_start_offset = e.txn_first_offset.unwrap_or(-1);
                                    ps
                                })
                                .collect();
                            active.sort_by_key(|ps| ps.producer_id.0);
                            pr.active_producers = active;
                        }
                    },
                }
                count("DescribeProducers", pr.error_code);
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }

    /// DescribeTransactions: each id's state as its coordinator holds it.
    pub async fn describe_transactions(
        self: &Arc<Self>,
        req: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let mut resp = DescribeTransactionsResponse::default();
        let ready = self.txn_ready().await;
        for id in req.transactional_ids {
            let mut ts = TransactionState::default();
            ts.transactional_id = id.clone();
            let found = match &ready {
                Err(e) => Err(*e),
                Ok(()) if id.is_empty() => Err(TxnError::InvalidRequest),
                Ok(()) => self.txn.get(id.as_str()),
            };
            match found {
                Err(e) => ts.error_code = txn_error(e, false).code(),
                Ok(None) => ts.error_code = ResponseError::TransactionalIdNotFound.code(),
                Ok(Some(m)) if m.state == TxnState::Dead => {
                    ts.error_code = ResponseError::TransactionalIdNotFound.code()
                }
                Ok(Some(m)) => {
                    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                    for (t, p) in &m.partitions {
                        by_topic.entry(t).or_default().push(*p);
                    }
                    ts.topics = by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            let mut td = TopicData::default();
                            td.topic = StrBytes::from_string(t.to_string()).into();
                            td.partitions = ps;
                            td
                        })
                        .collect();
                    ts.producer_id = ProducerId(m.producer_id);
                    ts.producer_epoch = m.producer_epoch;
                    ts.transaction_state = StrBytes::from_static_str(m.state.name());
                    ts.transaction_timeout_ms = m.timeout_ms;
                    ts.transaction_start_time_ms = m.start_ms;
                }
            }
            count("DescribeTransactions", ts.error_code);
            resp.transaction_states.push(ts);
        }
        resp
    }

    /// ListTransactions: the coordinator's ids, filtered by state, producer
    /// id, duration (v1) and a pattern the whole id must match (v2). Dead
    /// ids are never listed; unknown state names are echoed back.
    pub async fn list_transactions(
        self: &Arc<Self>,
        req: ListTransactionsRequest,
    ) -> ListTransactionsResponse {
        let mut resp = ListTransactionsResponse::default();
        let mut states: Vec<TxnState> = Vec::new();
        for name in &req.state_filters {
            match STATES.iter().find(|s| s.name() == name.as_str()) {
                Some(s) => states.push(*s),
                None => resp.unknown_state_filters.push(name.clone()),
            }
        }
        let pattern = match req.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(r) => Some(r),
                Err(_) => {
                    resp.error_code = ResponseError::InvalidRegularExpression.code();
                    count("ListTransactions", resp.error_code);
                    return resp;
                }
            },
        };
        let all = match self.txn_ready().await.and_then(|()| self.txn.all()) {
            Ok(all) => all,
            Err(e) => {
                resp.error_code = txn_error(e, false).code();
                count("ListTransactions", resp.error_code);
                return resp;
            }
        };
        let now = now_ms();
        let pids: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
        let mut listed: Vec<ListedTransaction> = all
            .into_iter()
            .filter(|(id, m)| {
                m.state != TxnState::Dead
                    && (pids.is_empty() || pids.contains(&m.producer_id))
                    && (states.is_empty() || states.contains(&m.state))
                    && (req.duration_filter < 0 || now - m.start_ms > req.duration_filter)
                    && pattern.as_ref().is_none_or(|r| r.is_match(id))
            })
            .map(|(id, m)| {
                let mut lt = ListedTransaction::default();
                lt.transactional_id = StrBytes::from_string(id).into();
                lt.producer_id = ProducerId(m.producer_id);
                lt.transaction_state = StrBytes::from_static_str(m.state.name());
                lt
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        resp.transaction_states = listed;
        count("ListTransactions", resp.error_code);
        resp
    }
}
