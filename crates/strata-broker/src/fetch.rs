//! Fetch: reads from partition streams with long polling (`max_wait_ms` and
//! `min_bytes`, woken by every WAL commit), response and partition byte limits
//! (the first batch of the response is whole however large, KIP-74), topic ids
//! from v13, and no fetch sessions: every answer carries session id 0, so
//! clients send full requests (KIP-227 allows the broker to decline sessions).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, NodeEndpoint, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::broker::check_leader_epoch;
use crate::error_codes::code;
use crate::{Broker, BrokerError};

/// Longest wait a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

impl Broker {
    /// Answers a fetch, waiting up to `max_wait_ms` for `min_bytes`.
    pub async fn fetch(&self, req: FetchRequest, version: i16) -> FetchResponse {
        if version >= 7 && req.session_id != 0 {
            let mut resp = FetchResponse::default();
            resp.error_code = ResponseError::FetchSessionIdNotFound.code();
            return resp;
        }
        if version >= 7 && req.session_epoch != 0 && req.session_epoch != -1 {
            let mut resp = FetchResponse::default();
            resp.error_code = ResponseError::InvalidFetchSessionEpoch.code();
            return resp;
        }
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let mut commits = self.streams.commits();
        // Once per request: a long poll's later passes read the tail.
        self.prefetch(&req, version);
        loop {
            commits.borrow_and_update();
            let (resp, bytes, errors) = self.fetch_once(&req, version).await;
            let now = Instant::now();
            if errors || bytes >= req.min_bytes.max(0) as usize || now >= deadline {
                return resp;
            }
            if tokio::time::timeout(deadline - now, commits.changed()).await.is_err() {
                // Timed out: answer with what is there now.
                return self.fetch_once(&req, version).await.0;
            }
        }
    }

    /// One pass over every asked partition; returns the response, the bytes in
    /// it and whether any partition carries an error.
    async fn fetch_once(&self, req: &FetchRequest, version: i16) -> (FetchResponse, usize, bool) {
        let mut resp = FetchResponse::default();
        let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
        let mut total = 0usize;
        let mut errors = false;
        for ft in &req.topics {
            let mut tr = FetchableTopicResponse::default();
            let topic = if version >= 13 {
                tr.topic_id = ft.topic_id;
                self.catalog.topic_by_id(ft.topic_id).ok_or(BrokerError::UnknownTopicId)
            } else {
                tr.topic = ft.topic.clone();
                self.catalog.topic(ft.topic.as_str()).ok_or(BrokerError::UnknownTopicOrPartition)
            };
            for fp in &ft.partitions {
                let mut pd = PartitionData::default();
                pd.partition_index = fp.partition;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                if req.isolation_level == 1 {
                    pd.aborted_transactions = Some(Vec::new());
                }
                let stream = match &topic {
                    Ok(t) => self.lead(t, fp.partition),
                    Err(BrokerError::UnknownTopicId) => Err(BrokerError::UnknownTopicId),
                    Err(_) => Err(BrokerError::UnknownTopicOrPartition),
                };
                // The producer state is loaded before any read (docs/transactions.md, rule 4).
                let stream = match stream {
                    Ok(stream) => match self.producers.partition(&stream).await {
                        Ok(state) => Ok((stream, state)),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                let mut upper = fp.fetch_offset;
                let mut producers = None;
                let outcome = match stream {
                    Err(e) => Err(e),
                    Ok((stream, state)) => {
                        let (start, end) = stream.offsets();
                        let lso = state.lock().last_stable_offset(end);
                        producers = Some(state);
                        pd.high_watermark = end;
                        pd.last_stable_offset = lso;
                        pd.log_start_offset = start;
                        // read_committed stops at the last stable offset.
                        let readable = if req.isolation_level == 1 { lso } else { end };
                        let epoch_check = if version >= 9 {
                            check_leader_epoch(stream.epoch(), fp.current_leader_epoch)
                        } else {
                            Ok(())
                        };
                        if let Err(e) = epoch_check {
                            Err(e)
                        } else if fp.fetch_offset < start || fp.fetch_offset > end {
                            Err(BrokerError::OffsetOutOfRange)
                        } else if fp.fetch_offset >= readable || (total >= max_bytes) {
                            Ok(None)
                        } else {
                            let limit = (fp.partition_max_bytes.max(0) as usize).min(max_bytes - total);
                            let first_in_response = total == 0;
                            match stream.read(fp.fetch_offset, limit.max(1)).await {
                                Err(e) => Err(BrokerError::Storage(e)),
                                Ok(batches) => {
                                    let mut taken = Vec::new();
                                    let mut size = 0usize;
                                    let mut messages = 0u64;
                                    for b in batches {
                                        let len = b.data.len();
                                        if b.info.base_offset >= readable
                                            || (size + len > limit
                                                && !(first_in_response && taken.is_empty()))
                                        {
                                            break;
                                        }
                                        upper = b.info.end_offset();
                                        size += len;
                                        messages += u64::from(b.info.meta.record_count);
                                        taken.push(b.data);
                                    }
                                    if let Ok(t) = &topic {
                                        let m = self.topic_metrics.get(&t.name);
                                        m.bytes_out.increment(size as u64);
                                        m.messages_out.increment(messages);
                                    }
                                    Ok(Some((taken, size)))
                                }
                            }
                        }
                    }
                };
                if req.isolation_level == 1
                    && let Some(state) = &producers
                {
                    let aborted = state.lock().aborted_in(fp.fetch_offset, upper);
                    pd.aborted_transactions = Some(
                        aborted
                            .into_iter()
                            .map(|a| {
                                let mut t =
                                    kafka_protocol::messages::fetch_response::AbortedTransaction::default();
                                t.producer_id = kafka_protocol::messages::ProducerId(a.producer_id);
                                t.first_offset = a.first_offset;
                                t
                            })
                            .collect(),
                    );
                }
                match outcome {
                    Ok(Some((batches, size))) => {
                        total += size;
                        pd.records = Some(concat(batches, size));
                    }
                    Ok(None) => pd.records = Some(Bytes::new()),
                    Err(e) => {
                        errors = true;
                        pd.error_code = code(&e);
                        crate::error_codes::count("Fetch", pd.error_code);
                        pd.records = Some(Bytes::new());
                        // KIP-951 (Fetch v16+): the current leader, so that the
                        // consumer need not wait for a metadata refresh.
                        let moved = [ResponseError::NotLeaderOrFollower, ResponseError::FencedLeaderEpoch]
                            .iter()
                            .any(|r| r.code() == pd.error_code);
                        if version >= 16
                            && moved
                            && let Ok(t) = &topic
                            && let Some((leader, epoch, info)) = self.current_leader(t, fp.partition)
                        {
                            pd.current_leader.leader_id = BrokerId(leader);
                            pd.current_leader.leader_epoch = epoch;
                            if !resp.node_endpoints.iter().any(|n| n.node_id.0 == leader) {
                                let mut n = NodeEndpoint::default();
                                n.node_id = BrokerId(leader);
                                n.host = kafka_protocol::protocol::StrBytes::from_string(info.host);
                                n.port = info.port;
                                resp.node_endpoints.push(n);
                            }
                        }
                    }
                }
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        (resp, total, errors)
    }
}

impl Broker {
    /// Starts the object GETs of every partition the pass below may read
    /// (up to `max_bytes` in all), so that catch-up partitions are fetched in
    /// parallel rather than one after the other (within the stream layer's
    /// catch-up budget; partitions read from the tail are left alone).
    fn prefetch(&self, req: &FetchRequest, version: i16) {
        let mut budget = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
        for ft in &req.topics {
            let topic = if version >= 13 {
                self.catalog.topic_by_id(ft.topic_id)
            } else {
                self.catalog.topic(ft.topic.as_str())
            };
            let Some(topic) = topic else { continue };
            for fp in &ft.partitions {
                let limit = (fp.partition_max_bytes.max(0) as usize).min(budget);
                if limit == 0 {
                    return;
                }
                if let Some(stream) = self.partition(&topic, fp.partition) {
                    stream.prefetch(fp.fetch_offset, limit);
                    budget -= limit;
                }
            }
        }
    }
}

fn concat(mut batches: Vec<Bytes>, size: usize) -> Bytes {
    if batches.len() == 1 {
        return batches.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(size);
    for b in batches {
        out.extend_from_slice(&b);
    }
    out.freeze()
}
