//! Produce: validate each partition's batch, stamp its offset and epoch, append
//! it to the partition's stream, and answer once the WAL has made it durable.
//!
//! Handling is split in two so that a connection can pipeline: [`Broker::produce`]
//! validates and appends synchronously, in request order, and returns a
//! [`PendingProduce`] whose [`PendingProduce::finish`] waits for durability.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strata_stream::{AppendMeta, Appended};

use crate::broker::{LEADER_EPOCH, now_ms};
use crate::error_codes::{code, message};
use crate::records;
use crate::topic_config::TopicConfig;
use crate::{Broker, BrokerError};

/// A produce whose batches are appended and whose answer waits for the WAL.
pub struct PendingProduce {
    response: ProduceResponse,
    /// (topic index, partition index, append) in response order.
    waits: Vec<(usize, usize, Appended)>,
}

impl PendingProduce {
    /// Waits for every append to be durable and returns the response.
    pub async fn finish(mut self) -> ProduceResponse {
        for (t, p, appended) in self.waits {
            let part = &mut self.response.responses[t].partition_responses[p];
            if let Err(e) = appended.durable().await {
                let e = BrokerError::Storage(e);
                part.error_code = code(&e);
                part.error_message = Some(message(&e));
                part.base_offset = -1;
            }
        }
        self.response
    }
}

impl Broker {
    fn append_one(
        &self,
        topic: &strata_cluster::TopicRecord,
        partition: i32,
        data: Option<&Bytes>,
        now: i64,
    ) -> Result<(Appended, i64, bool), BrokerError> {
        let stream = self.partition(topic, partition).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let data = data.ok_or_else(|| BrokerError::InvalidRecord("null records".into()))?;
        let cfg = TopicConfig::from_explicit(&topic.configs);
        if data.len() as i64 > cfg.max_message_bytes {
            return Err(BrokerError::MessageTooLarge { size: data.len(), max: cfg.max_message_bytes });
        }
        let header = records::validate(data)?;
        if !cfg.log_append_time {
            if header.max_timestamp > now.saturating_add(cfg.timestamp_after_max_ms) {
                return Err(BrokerError::InvalidTimestamp(format!(
                    "timestamp {} is more than message.timestamp.after.max.ms={} after the broker's time",
                    header.max_timestamp, cfg.timestamp_after_max_ms
                )));
            }
            let earliest = header.base_timestamp.min(header.max_timestamp);
            if earliest >= 0 && earliest < now.saturating_sub(cfg.timestamp_before_max_ms) {
                return Err(BrokerError::InvalidTimestamp(format!(
                    "timestamp {earliest} is more than message.timestamp.before.max.ms={} before the broker's time",
                    cfg.timestamp_before_max_ms
                )));
            }
        }
        let append_time = cfg.log_append_time.then_some(now);
        let meta = AppendMeta {
            record_count: header.record_count as u32,
            max_timestamp: append_time.unwrap_or(header.max_timestamp),
            leader_epoch: LEADER_EPOCH,
        };
        let (start, _) = stream.offsets();
        let appended = stream.append(meta, |base| records::stamp(data, base, LEADER_EPOCH, append_time))?;
        Ok((appended, start, cfg.log_append_time))
    }

    /// Validates and appends every partition's batch, in request order.
    pub fn produce(&self, req: ProduceRequest, version: i16) -> PendingProduce {
        let mut response = ProduceResponse::default();
        let mut waits = Vec::new();
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
            for (pi, pd) in topic_data.partition_data.into_iter().enumerate() {
                let mut pr = PartitionProduceResponse::default();
                pr.index = pd.index;
                pr.base_offset = -1;
                pr.log_append_time_ms = -1;
                pr.log_start_offset = -1;
                let outcome = topic
                    .as_ref()
                    .map_err(|e| match e {
                        BrokerError::UnknownTopicId => BrokerError::UnknownTopicId,
                        _ => BrokerError::UnknownTopicOrPartition,
                    })
                    .and_then(|t| self.append_one(t, pd.index, pd.records.as_ref(), now));
                match outcome {
                    Ok((appended, start, log_append)) => {
                        pr.base_offset = appended.base_offset;
                        pr.log_start_offset = start;
                        if log_append {
                            pr.log_append_time_ms = now;
                        }
                        waits.push((ti, pi, appended));
                    }
                    Err(e) => {
                        tracing::debug!(partition = pd.index, error = %e, "produce rejected");
                        pr.error_code = code(&e);
                        pr.error_message = Some(message(&e));
                    }
                }
                tr.partition_responses.push(pr);
            }
            response.responses.push(tr);
        }
        PendingProduce { response, waits }
    }
}
