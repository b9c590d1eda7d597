//! Produce: validate each partition's batch, check idempotent producers'
//! sequences, stamp offset and epoch, append to the partition's stream, and
//! answer once the WAL has made it durable.
//!
//! Handling is split in two so that a connection can pipeline: [`Broker::produce`]
//! validates and appends in request order, and returns a [`PendingProduce`]
//! whose [`PendingProduce::finish`] waits for durability.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use strata_stream::Appended;

use crate::broker::now_ms;
use crate::error_codes::{code, message};
use crate::producer_state::{Marker, SeqBatch, SeqCheck, last_seq};
use crate::records;
use crate::topic_config::TopicConfig;
use crate::{Broker, BrokerError};

/// Bytes queued for the WAL above which produce requests wait before appending.
const WAL_QUEUE_LIMIT: usize = 64 << 20;

/// How long a retried batch waits for its in-flight original to be durable.
const DUPLICATE_WAIT: Duration = Duration::from_secs(30);

/// Records refused because this process was fenced (reported at exit).
static REFUSED_FENCED_RECORDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many records produce refused because a newer owner holds the prefix.
pub fn refused_fenced_records() -> u64 {
    REFUSED_FENCED_RECORDS.load(std::sync::atomic::Ordering::Relaxed)
}

fn is_fenced(e: &BrokerError) -> bool {
    matches!(e, BrokerError::Storage(s) if s.kind() == strata_stream::ErrorKind::Fenced)
}

fn count_refused(records: i32) {
    REFUSED_FENCED_RECORDS.fetch_add(records.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
}

/// What a partition's append turned into.
enum Wait {
    /// A new append: wait for it.
    Appended(Appended),
    /// A retry of a batch this process appended: wait for the original's
    /// own outcome (never for the stream's end: `docs/ownership.md`, rule 7).
    Original(strata_stream::Completion),
    /// A retry of a batch already durable (loaded from the log).
    Durable,
}

/// A partition's batch, accepted and appended.
struct Accepted {
    wait: Wait,
    base_offset: i64,
    log_start_offset: i64,
    log_append_time: bool,
    records: i32,
}

/// The record count of a batch, for counting refused records (0 when it does
/// not parse).
fn records_in(data: Option<&Bytes>) -> i32 {
    data.and_then(|d| records::parse_header(d)).map_or(0, |h| h.record_count)
}

/// A produce whose batches are appended and whose answer waits for the WAL.
pub struct PendingProduce {
    response: ProduceResponse,
    /// (topic index, partition index, wait, record count) in response order.
    waits: Vec<(usize, usize, Wait, i32)>,
}

/// Waits, within a deadline, for the outcome of a retried batch's original.
async fn wait_original(mut original: strata_stream::Completion) -> Result<(), BrokerError> {
    match tokio::time::timeout(DUPLICATE_WAIT, original.wait()).await {
        Ok(outcome) => outcome.map_err(BrokerError::Storage),
        Err(_) => Err(BrokerError::TimedOut("waiting for the original of a retried batch".into())),
    }
}

impl PendingProduce {
    /// Waits for every append to be durable and returns the response.
    pub async fn finish(mut self) -> ProduceResponse {
        for (t, p, wait, records) in self.waits {
            let outcome = match wait {
                Wait::Appended(appended) => {
                    appended.durable().await.map(|_| ()).map_err(BrokerError::Storage)
                }
                Wait::Original(original) => wait_original(original).await,
                Wait::Durable => Ok(()),
            };
            if let Err(e) = outcome {
                if is_fenced(&e) {
                    count_refused(records);
                }
                let part = &mut self.response.responses[t].partition_responses[p];
                part.error_code = code(&e);
                crate::error_codes::count("Produce", part.error_code);
                part.error_message = Some(message(&e));
                part.base_offset = -1;
            }
        }
        self.response
    }
}

impl Broker {
    #[allow(clippy::too_many_arguments)]
    async fn append_one(
        self: &Arc<Self>,
        topic: &strata_cluster::TopicRecord,
        cfg: &TopicConfig,
        partition: i32,
        data: Option<&Bytes>,
        now: i64,
        transactional_id: Option<&str>,
        version: i16,
    ) -> Result<Accepted, BrokerError> {
        let stream = self.lead_for_append(topic, partition).await?;
        let data = data.ok_or_else(|| BrokerError::InvalidRecord("null records".into()))?;
        if data.len() as i64 > cfg.max_message_bytes {
            return Err(BrokerError::MessageTooLarge { size: data.len(), max: cfg.max_message_bytes });
        }
        let header = records::validate(data)?;
        if !cfg.log_append_time {
            let (latest, earliest) = (
                now.saturating_add(cfg.timestamp_after_max_ms),
                now.saturating_sub(cfg.timestamp_before_max_ms),
            );
            let bad = |ts: i64| ts > latest || (ts >= 0 && ts < earliest);
            let first = header.base_timestamp.min(header.max_timestamp);
            if bad(header.max_timestamp) || bad(first) {
                // Kafka names every record at fault; a compressed batch is not
                // opened here, so all of its records are named.
                let records: Vec<i32> = match records::record_timestamps(data) {
                    Some(ts) => {
                        ts.iter().enumerate().filter(|(_, t)| bad(**t)).map(|(i, _)| i as i32).collect()
                    }
                    None => (0..header.record_count).collect(),
                };
                return Err(BrokerError::InvalidTimestamp {
                    reason: format!(
                        "a record timestamp is outside [now - message.timestamp.before.max.ms={}, now + \
                         message.timestamp.after.max.ms={}]",
                        cfg.timestamp_before_max_ms, cfg.timestamp_after_max_ms
                    ),
                    records,
                    log_start_offset: stream.offsets().0,
                });
            }
        }
        if header.is_control() {
            // Markers come from transaction coordinators (WriteTxnMarkers), never from producers.
            return Err(BrokerError::InvalidRecord(
                "control batches are written by coordinators only".into(),
            ));
        }
        if header.is_transactional() && header.producer_id < 0 {
            return Err(BrokerError::InvalidRecord("a transactional batch needs a producer id".into()));
        }
        if cfg.compacted {
            let keyless = records::keyless_records(data)?;
            if !keyless.is_empty() {
                return Err(BrokerError::KeylessRecords {
                    partition: format!("{}-{partition}", topic.name),
                    records: keyless,
                });
            }
        }
        let append_time = cfg.log_append_time.then_some(now);
        let max_ts = append_time.unwrap_or(header.max_timestamp);
        let build = |base: i64, epoch: i32| records::stamp(data, base, epoch, append_time);
        let (start, _) = stream.offsets();
        let count_in = || {
            let m = self.topic_metrics.get(&topic.name);
            m.bytes_in.increment(data.len() as u64);
            m.messages_in.increment(header.record_count as u64);
        };
        if header.producer_id < 0 {
            let appended = stream.append(header.record_count as u32, max_ts, build)?;
            count_in();
            return Ok(Accepted {
                base_offset: appended.base_offset,
                wait: Wait::Appended(appended),
                log_start_offset: start,
                log_append_time: cfg.log_append_time,
                records: header.record_count,
            });
        }
        // Idempotent producer: check and append under the partition's producer lock.
        let state = self.producers.partition(&stream).await?;
        let (pid, epoch, first) = (header.producer_id, header.producer_epoch, header.base_sequence);
        let last = last_seq(first, header.record_count);
        let transactional = header.is_transactional();
        // Only a transactional batch peeks first (one lock for the others).
        let open_here = transactional && {
            let producers = state.lock();
            producers.producers.get(&pid).is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == epoch)
        };
        if transactional && !open_here {
            // KIP-890 part 1: a transaction opens here only if the
            // coordinator has this partition in it (docs/transactions.md, rule 1).
            let partition = (topic.name.clone(), partition);
            if version >= 12 {
                // KIP-890 part 2: the partition joins the transaction here.
                self.add_implicitly(transactional_id, pid, epoch, partition).await?;
            } else {
                self.verify_in_txn(transactional_id, pid, epoch, partition, version >= 11).await?;
            }
        }
        let mut producers = state.lock();
        // A batch whose append was refused is not recorded, so the next one's
        // sequence check would answer it OUT_OF_ORDER_SEQUENCE_NUMBER:
        // librdkafka then bumps its epoch and renumbers every unacknowledged
        // batch, and one that a fenced broker refused after its WAL write had
        // landed (the new leader serves it) is stored twice. So a sequence
        // error gives way to the refusal an append would get now (as Kafka
        // refuses for leadership or storage before it looks at sequences). A
        // duplicate is still answered from its original: it appends nothing.
        let checked = producers.check(pid, epoch, first, last, transactional).map_err(|e| {
            match (&e, stream.check_appendable()) {
                (BrokerError::OutOfOrderSequence(_) | BrokerError::UnknownProducerId(_), Err(refused)) => {
                    BrokerError::Storage(refused)
                }
                _ => e,
            }
        })?;
        match checked {
            SeqCheck::Duplicate(dup) => {
                let wait = match producers.completions.get(&(pid, first)) {
                    Some(original) => Wait::Original(original.clone()),
                    None => Wait::Durable,
                };
                drop(producers);
                tracing::info!(
                    pid,
                    first,
                    base = dup.base_offset,
                    in_flight = matches!(wait, Wait::Original(_)),
                    "retried batch answered from its original"
                );
                Ok(Accepted {
                    wait,
                    base_offset: dup.base_offset,
                    log_start_offset: start,
                    log_append_time: false,
                    records: header.record_count,
                })
            }
            SeqCheck::Append => {
                let (appended, completion) =
                    stream.append_tracked(header.record_count as u32, max_ts, build)?;
                let base = appended.base_offset;
                let seq = SeqBatch {
                    first_seq: first,
                    last_seq: last,
                    base_offset: base,
                    last_offset: base + i64::from(header.record_count) - 1,
                };
                producers.record(pid, epoch, seq, max_ts);
                producers.track(pid, first, completion);
                if transactional {
                    producers.record_txn(pid, base);
                }
                drop(producers);
                state.mark_dirty();
                self.producers.observe(pid, epoch);
                count_in();
                Ok(Accepted {
                    wait: Wait::Appended(appended),
                    base_offset: base,
                    log_start_offset: start,
                    log_append_time: cfg.log_append_time,
                    records: header.record_count,
                })
            }
        }
    }

    /// Appends a transaction marker to a partition and waits until it is
    /// durable (`append_marker`).
    pub async fn write_marker(
        &self,
        topic: &strata_cluster::TopicRecord,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<i64, BrokerError> {
        let appended =
            self.append_marker(topic, partition, producer_id, epoch, commit, coordinator_epoch).await?;
        appended.durable().await.map_err(BrokerError::Storage)
    }

    /// Appends a transaction marker to a partition (WriteTxnMarkers, or the
    /// local transaction coordinator): checked against the producer's epoch
    /// there, it ends the producer's open transaction.
    pub(crate) async fn append_marker(
        &self,
        topic: &strata_cluster::TopicRecord,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Appended, BrokerError> {
        let stream = self.lead(topic, partition)?;
        let now = now_ms();
        let data = records::encode_marker(producer_id, epoch, commit, coordinator_epoch, now)?;
        let state = self.producers.partition(&stream).await?;
        let appended = {
            let mut producers = state.lock();
            producers.check_marker(producer_id, epoch)?;
            let build = |base: i64, leader_epoch: i32| records::stamp(&data, base, leader_epoch, None);
            let appended = stream.append(1, now, build)?;
            producers.record_marker(Marker {
                producer_id,
                epoch,
                commit,
                coordinator_epoch,
                offset: appended.base_offset,
                timestamp: now,
            });
            appended
        };
        if topic.name == crate::groups::OFFSETS_TOPIC {
            // Transactional offsets become committed (or are dropped) with it.
            self.coordinator.complete_txn(partition, producer_id, commit);
        }
        state.mark_dirty();
        self.producers.observe(producer_id, epoch);
        Ok(appended)
    }

    /// Validates and appends every partition's batch, in request order.
    pub async fn produce(self: &Arc<Self>, req: ProduceRequest, version: i16) -> PendingProduce {
        let mut response = ProduceResponse::default();
        let mut waits = Vec::new();
        // Backpressure: a connection reads its next request only after this one
        // is appended, so waiting here bounds what acks=0 producers can queue.
        self.streams.wal_room(WAL_QUEUE_LIMIT).await;
        let now = now_ms();
        for (ti, topic_data) in req.topic_data.into_iter().enumerate() {
            let mut tr = TopicProduceResponse::default();
            let topic = if version >= 13 {
                tr.topic_id = topic_data.topic_id;
                self.catalog.topic_by_id(topic_data.topic_id).ok_or(BrokerError::UnknownTopicId)
            } else {
                tr.name = topic_data.name.clone();
                self.catalog.topic(topic_data.name.as_str()).ok_or(BrokerError::UnknownTopicOrPartition)
            };
            // Once per topic, not per partition: configs do not change mid-request.
            let cfg = topic.as_ref().ok().map(|t| TopicConfig::from_explicit(&t.configs));
            for (pi, pd) in topic_data.partition_data.into_iter().enumerate() {
                let mut pr = PartitionProduceResponse::default();
                pr.index = pd.index;
                pr.base_offset = -1;
                pr.log_append_time_ms = -1;
                pr.log_start_offset = -1;
                let outcome = match (&topic, &cfg) {
                    (Ok(t), Some(cfg)) => {
                        let txn_id = req.transactional_id.as_ref().map(|s| s.as_str());
                        self.append_one(t, cfg, pd.index, pd.records.as_ref(), now, txn_id, version).await
                    }
                    (Err(BrokerError::UnknownTopicId), _) => Err(BrokerError::UnknownTopicId),
                    _ => Err(BrokerError::UnknownTopicOrPartition),
                };
                match outcome {
                    Ok(accepted) => {
                        pr.base_offset = accepted.base_offset;
                        pr.log_start_offset = accepted.log_start_offset;
                        if accepted.log_append_time {
                            pr.log_append_time_ms = now;
                        }
                        waits.push((ti, pi, accepted.wait, accepted.records));
                    }
                    Err(e) => {
                        if is_fenced(&e) {
                            count_refused(records_in(pd.records.as_ref()));
                        }
                        // (Counted by code in `strata_request_errors_total`; a client
                        // that renumbers its batches after such an answer is
                        // best diagnosed from its own log.)
                        tracing::debug!(partition = pd.index, error = %e, "produce rejected");
                        pr.error_code = code(&e);
                        crate::error_codes::count("Produce", pr.error_code);
                        pr.error_message = Some(message(&e));
                        // KIP-951: the new leader, so that the client need not
                        // wait for a metadata refresh.
                        if version >= 10
                            && pr.error_code == kafka_protocol::ResponseError::NotLeaderOrFollower.code()
                            && let Ok(t) = &topic
                            && let Some((leader, epoch, info)) = self.current_leader(t, pd.index)
                        {
                            pr.current_leader.leader_id = BrokerId(leader);
                            pr.current_leader.leader_epoch = epoch;
                            if !response.node_endpoints.iter().any(|n| n.node_id.0 == leader) {
                                let mut n = NodeEndpoint::default();
                                n.node_id = BrokerId(leader);
                                n.host = kafka_protocol::protocol::StrBytes::from_string(info.host);
                                n.port = info.port;
                                response.node_endpoints.push(n);
                            }
                        }
                        if let BrokerError::KeylessRecords { partition, records } = &e {
                            let message = kafka_protocol::protocol::StrBytes::from_string(
                                crate::error::keyless_message(partition),
                            );
                            pr.record_errors = records
                                .iter()
                                .map(|i| {
                                    let mut r = BatchIndexAndErrorMessage::default();
                                    r.batch_index = *i;
                                    r.batch_index_error_message = Some(message.clone());
                                    r
                                })
                                .collect();
                        }
                        if let BrokerError::InvalidTimestamp { records, log_start_offset, .. } = &e {
                            pr.log_start_offset = *log_start_offset;
                            pr.record_errors = records
                                .iter()
                                .map(|i| {
                                    let mut r = BatchIndexAndErrorMessage::default();
                                    r.batch_index = *i;
                                    r
                                })
                                .collect();
                        }
                    }
                }
                tr.partition_responses.push(pr);
            }
            response.responses.push(tr);
        }
        PendingProduce { response, waits }
    }
}
