//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local
//! (-4), latest tiered (-5: none, as there is no tiering) and by timestamp.

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strata_stream::{BatchInfo, Stream};

use crate::broker::check_leader_epoch;
use crate::error_codes::code;
use crate::{Broker, BrokerError, records};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// Reads one batch and returns `(offset, timestamp)` of the first record that
/// `pick` selects among `(offset, timestamp)` pairs.
async fn pick_record(
    stream: &Stream,
    info: BatchInfo,
    pick: impl Fn(&[(i64, i64)]) -> Option<(i64, i64)>,
) -> Result<Option<(i64, i64)>, BrokerError> {
    let batches = stream.read(info.base_offset, 1).await?;
    let Some(batch) = batches.into_iter().next() else { return Ok(None) };
    let pairs: Vec<(i64, i64)> = if records::is_log_append_time(&batch.data) {
        // Every record of a LogAppendTime batch carries the batch's time.
        vec![(info.base_offset, info.meta.max_timestamp)]
    } else {
        let mut data: Bytes = batch.data.clone();
        let set = RecordBatchDecoder::decode(&mut data)
            .map_err(|e| BrokerError::CorruptMessage(format!("stored batch does not decode: {e}")))?;
        set.records.iter().map(|r| (r.offset, r.timestamp)).collect()
    };
    Ok(pick(&pairs))
}

impl Broker {
    /// The offset a `read_committed` reader sees as the end: the last stable offset.
    async fn stable_end(&self, stream: &Stream, end: i64) -> Result<i64, BrokerError> {
        let state = self.producers.partition(stream).await?;
        let lso = state.lock().last_stable_offset(end);
        Ok(lso)
    }

    async fn list_one(
        &self,
        stream: &Stream,
        timestamp: i64,
        committed: bool,
    ) -> Result<(i64, i64), BrokerError> {
        let (start, end) = stream.offsets();
        match timestamp {
            LATEST if committed => Ok((self.stable_end(stream, end).await?, -1)),
            LATEST => Ok((end, -1)),
            EARLIEST | EARLIEST_LOCAL => Ok((start, -1)),
            LATEST_TIERED => Ok((-1, -1)),
            MAX_TIMESTAMP => {
                let Some(info) = stream.max_timestamp_batch().await? else { return Ok((-1, -1)) };
                let target = info.meta.max_timestamp;
                let found =
                    pick_record(stream, info, |pairs| pairs.iter().copied().find(|(_, ts)| *ts == target))
                        .await?;
                Ok(found.map(|(o, _)| (o, target)).unwrap_or((-1, -1)))
            }
            ts if ts < 0 => Err(BrokerError::InvalidRequest(format!("unknown special timestamp {ts}"))),
            ts => {
                let mut from = stream.find_by_timestamp(ts, 0).await?;
                // A batch's max timestamp may pass the target while none of its
                // records at or after it come first; fall through to later ones.
                while let Some(info) = from {
                    let found =
                        pick_record(stream, info, |pairs| pairs.iter().copied().find(|(_, t)| *t >= ts))
                            .await?;
                    if let Some(hit) = found {
                        return Ok(hit);
                    }
                    from = stream.find_by_timestamp(ts, info.end_offset()).await?;
                }
                Ok((-1, -1))
            }
        }
    }

    /// ListOffsets for every asked partition.
    pub async fn list_offsets(&self, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        let mut resp = ListOffsetsResponse::default();
        for t in req.topics {
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = t.name.clone();
            let topic = self.catalog.topic(t.name.as_str());
            for p in t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.offset = -1;
                pr.timestamp = -1;
                let stream = match &topic {
                    Some(t) => self.lead(t, p.partition_index),
                    None => Err(BrokerError::UnknownTopicOrPartition),
                };
                let epoch = stream.as_ref().map(|s| s.epoch()).unwrap_or(-1);
                let outcome = match stream {
                    Err(e) => Err(e),
                    Ok(stream)
                        if version >= 4
                            && check_leader_epoch(stream.epoch(), p.current_leader_epoch).is_err() =>
                    {
                        check_leader_epoch(stream.epoch(), p.current_leader_epoch).map(|()| (-1, -1))
                    }
                    Ok(stream) => {
                        self.list_one(&stream, p.timestamp, version >= 2 && req.isolation_level == 1).await
                    }
                };
                match outcome {
                    Ok((offset, timestamp)) => {
                        pr.offset = offset;
                        pr.timestamp = timestamp;
                        if version >= 4 && offset >= 0 {
                            pr.leader_epoch = epoch;
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
