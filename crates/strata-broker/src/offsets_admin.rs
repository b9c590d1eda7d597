//! InitProducerId, DeleteRecords and OffsetForLeaderEpoch.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, InitProducerIdRequest, InitProducerIdResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProducerId,
};

use crate::broker::check_leader_epoch;
use crate::error_codes::code;
use crate::{Broker, BrokerError};

impl Broker {
    /// InitProducerId: for idempotent producers here, for transactional ones
    /// by the transaction coordinator (`txn_apis.rs`).
    pub async fn init_producer_id(
        self: &std::sync::Arc<Self>,
        req: InitProducerIdRequest,
        version: i16,
    ) -> InitProducerIdResponse {
        if let Some(id) = req.transactional_id.as_ref() {
            return self.init_transactional_producer(&req, id.as_str(), version).await;
        }
        let mut resp = InitProducerIdResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        let current = (version >= 3 && req.producer_id.0 >= 0 && req.producer_epoch >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        match self.producers.init(current).await {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(e) => resp.error_code = code(&e),
        }
        resp
    }

    /// DeleteRecords: moves each partition's log start offset (-1: to the high
    /// watermark).
    pub async fn delete_records(&self, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
        let mut resp = DeleteRecordsResponse::default();
        for t in req.topics {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = t.name.clone();
            let topic = self.catalog.topic(t.name.as_str());
            for p in t.partitions {
                let mut pr = DeleteRecordsPartitionResult::default();
                pr.partition_index = p.partition_index;
                pr.low_watermark = -1;
                let outcome = async {
                    let stream = match &topic {
                        Some(t) => self.lead(t, p.partition_index)?,
                        None => return Err(BrokerError::UnknownTopicOrPartition),
                    };
                    let (_, end) = stream.offsets();
                    let target = if p.offset == -1 { end } else { p.offset };
                    if target < 0 || target > end {
                        return Err(BrokerError::OffsetOutOfRange);
                    }
                    Ok(self.streams.trim(&stream, target).await?)
                }
                .await;
                match outcome {
                    Ok(low) => pr.low_watermark = low,
                    Err(e) => pr.error_code = code(&e),
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }

    /// OffsetForLeaderEpoch: for each asked epoch, the largest known epoch at or
    /// below it and the offset where it ended.
    pub fn offset_for_leader_epoch(&self, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
        let mut resp = OffsetForLeaderEpochResponse::default();
        for t in req.topics {
            let mut tr = OffsetForLeaderTopicResult::default();
            tr.topic = t.topic.clone();
            let topic = self.catalog.topic(t.topic.as_str());
            for p in t.partitions {
                let mut pr = EpochEndOffset::default();
                pr.partition = p.partition;
                pr.leader_epoch = -1;
                pr.end_offset = -1;
                let outcome = topic
                    .as_ref()
                    .ok_or(BrokerError::UnknownTopicOrPartition)
                    .and_then(|t| self.lead(t, p.partition))
                    .and_then(|s| check_leader_epoch(s.epoch(), p.current_leader_epoch).map(|()| s));
                match outcome {
                    Ok(stream) => {
                        if let Some((epoch, end)) = stream.epoch_end(p.leader_epoch) {
                            pr.leader_epoch = epoch;
                            pr.end_offset = end;
                        }
                    }
                    Err(e) => pr.error_code = code(&e),
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}
