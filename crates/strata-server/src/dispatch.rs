//! Decoding a request body, calling the broker, encoding the response.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use strata_broker::Broker;

use crate::ServerError;
use crate::api_versions;

/// What a request turns into.
pub(crate) enum Reply {
    /// A response frame, ready.
    Now(Bytes),
    /// A response frame once the future resolves (produce waiting on the WAL).
    Later(BoxFuture<'static, Result<Bytes, ServerError>>),
    /// No response at all (produce with acks=0).
    Nothing,
}

/// Encodes a whole response frame: length, header, body.
pub(crate) fn encode<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, ServerError> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, key.response_header_version(version))
        .map_err(|e| ServerError::Encode(e.to_string()))?;
    body.encode(&mut buf, version).map_err(|e| ServerError::Encode(format!("{key:?} v{version}: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a value, turning decoder errors and panics into a clean error.
pub(crate) fn decode<T: Decodable>(buf: &mut Bytes, key: i16, version: i16) -> Result<T, ServerError> {
    match catch_unwind(AssertUnwindSafe(|| T::decode(buf, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ServerError::Malformed { key, version, reason: e.to_string() }),
        Err(_) => Err(ServerError::Malformed { key, version, reason: "decoder panicked".into() }),
    }
}

/// The metric label of an API.
fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::AddOffsetsToTxn => "AddOffsetsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::AlterPartitionReassignments => "AlterPartitionReassignments",
        ApiKey::ListPartitionReassignments => "ListPartitionReassignments",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ConsumerGroupHeartbeat => "ConsumerGroupHeartbeat",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        _ => "Other",
    }
}

/// Handles one decoded-header request and records its latency (until the
/// response is ready, so a produce's includes its WAL write) per API.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    key: ApiKey,
    header: &RequestHeader,
    body: Bytes,
    peer: std::net::SocketAddr,
) -> Result<Reply, ServerError> {
    let started = std::time::Instant::now();
    let histogram = metrics::histogram!("strata_request_duration_seconds", "api" => api_name(key));
    let reply = handle_api(broker, key, header, body, peer).await;
    Ok(match reply? {
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let out = fut.await;
            histogram.record(started.elapsed().as_secs_f64());
            out
        })),
        other => {
            histogram.record(started.elapsed().as_secs_f64());
            other
        }
    })
}

async fn handle_api(
    broker: &Arc<Broker>,
    key: ApiKey,
    header: &RequestHeader,
    mut body: Bytes,
    peer: std::net::SocketAddr,
) -> Result<Reply, ServerError> {
    let version = header.request_api_version;
    let cid = header.correlation_id;
    let k = key as i16;
    macro_rules! reply {
        ($resp:expr) => {
            Ok(Reply::Now(encode(key, version, cid, &$resp)?))
        };
    }
    // Answered later, without holding up the connection's next requests
    // (a JoinGroup waits for the rebalance, a commit for durability).
    macro_rules! later {
        (|$b:ident, $req:ident| $call:expr) => {{
            let $req = decode(&mut body, k, version)?;
            let $b = Arc::clone(broker);
            Ok(Reply::Later(Box::pin(async move {
                let resp = $call.await;
                encode(key, version, cid, &resp)
            })))
        }};
    }
    match key {
        ApiKey::ApiVersions => {
            let req: kafka_protocol::messages::ApiVersionsRequest = decode(&mut body, k, version)?;
            if version >= 3 && !api_versions::valid_client_software(&req) {
                // KIP-511: a name or version outside the allowed pattern is
                // INVALID_REQUEST, as Kafka answers it.
                let mut resp = kafka_protocol::messages::ApiVersionsResponse::default();
                resp.error_code = kafka_protocol::ResponseError::InvalidRequest.code();
                return reply!(resp);
            }
            reply!(api_versions::response(false, broker.config().transactions.version))
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode(&mut body, k, version)?;
            let acks = req.acks;
            let pending = broker.produce(req, version).await;
            if acks == 0 {
                // The client expects no answer; durability still completes.
                tokio::spawn(pending.finish());
                return Ok(Reply::Nothing);
            }
            Ok(Reply::Later(Box::pin(async move {
                let resp = pending.finish().await;
                encode(key, version, cid, &resp)
            })))
        }
        ApiKey::Fetch => reply!(broker.fetch(decode(&mut body, k, version)?, version).await),
        ApiKey::ListOffsets => reply!(broker.list_offsets(decode(&mut body, k, version)?, version).await),
        ApiKey::Metadata => reply!(broker.metadata(decode(&mut body, k, version)?, version).await),
        ApiKey::CreateTopics => reply!(broker.create_topics(decode(&mut body, k, version)?, version).await),
        ApiKey::DeleteTopics => reply!(broker.delete_topics(decode(&mut body, k, version)?, version).await),
        ApiKey::CreatePartitions => reply!(broker.create_partitions(decode(&mut body, k, version)?).await),
        ApiKey::DescribeConfigs => reply!(broker.describe_configs(decode(&mut body, k, version)?, version)),
        ApiKey::AlterConfigs => reply!(broker.alter_configs(decode(&mut body, k, version)?).await),
        ApiKey::IncrementalAlterConfigs => {
            reply!(broker.incremental_alter_configs(decode(&mut body, k, version)?).await)
        }
        ApiKey::DescribeCluster => reply!(broker.describe_cluster(decode(&mut body, k, version)?)),
        ApiKey::DescribeLogDirs => reply!(broker.describe_log_dirs(decode(&mut body, k, version)?)),
        ApiKey::InitProducerId => {
            reply!(broker.init_producer_id(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::DeleteRecords => reply!(broker.delete_records(decode(&mut body, k, version)?).await),
        ApiKey::WriteTxnMarkers => reply!(broker.write_txn_markers(decode(&mut body, k, version)?).await),
        ApiKey::AddPartitionsToTxn => {
            reply!(broker.add_partitions_to_txn(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::AddOffsetsToTxn => {
            reply!(broker.add_offsets_to_txn(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::EndTxn => reply!(broker.end_txn(decode(&mut body, k, version)?, version).await),
        ApiKey::TxnOffsetCommit => {
            reply!(broker.txn_offset_commit(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::DescribeProducers => reply!(broker.describe_producers(decode(&mut body, k, version)?).await),
        ApiKey::AlterPartitionReassignments => {
            reply!(broker.alter_partition_reassignments(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::ListPartitionReassignments => {
            reply!(broker.list_partition_reassignments(decode(&mut body, k, version)?))
        }
        ApiKey::DescribeTransactions => {
            reply!(broker.describe_transactions(decode(&mut body, k, version)?).await)
        }
        ApiKey::ListTransactions => reply!(broker.list_transactions(decode(&mut body, k, version)?).await),
        ApiKey::OffsetForLeaderEpoch => {
            reply!(broker.offset_for_leader_epoch(decode(&mut body, k, version)?))
        }
        ApiKey::DescribeTopicPartitions => {
            reply!(broker.describe_topic_partitions(decode(&mut body, k, version)?))
        }
        ApiKey::FindCoordinator => {
            reply!(broker.find_coordinator(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::JoinGroup => {
            let client_id = header.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
            let host = peer.ip().to_string();
            later!(|b, req| b.join_group(req, version, &client_id, &host))
        }
        ApiKey::SyncGroup => later!(|b, req| b.sync_group(req)),
        ApiKey::Heartbeat => reply!(broker.heartbeat(decode(&mut body, k, version)?).await),
        ApiKey::LeaveGroup => reply!(broker.leave_group(decode(&mut body, k, version)?, version).await),
        ApiKey::OffsetCommit => later!(|b, req| b.offset_commit(req)),
        ApiKey::OffsetFetch => reply!(broker.offset_fetch(decode(&mut body, k, version)?, version).await),
        ApiKey::ListGroups => reply!(broker.list_groups(decode(&mut body, k, version)?, version).await),
        ApiKey::DescribeGroups => {
            reply!(broker.describe_groups(decode(&mut body, k, version)?, version).await)
        }
        ApiKey::DeleteGroups => reply!(broker.delete_groups(decode(&mut body, k, version)?).await),
        ApiKey::OffsetDelete => reply!(broker.offset_delete(decode(&mut body, k, version)?).await),
        ApiKey::ConsumerGroupHeartbeat => {
            let client_id = header.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
            let host = peer.ip().to_string();
            reply!(
                broker
                    .consumer_group_heartbeat(decode(&mut body, k, version)?, version, &client_id, &host)
                    .await
            )
        }
        ApiKey::ConsumerGroupDescribe => {
            reply!(broker.consumer_group_describe(decode(&mut body, k, version)?).await)
        }
        _ => Err(ServerError::Unsupported { key: k, version }),
    }
}
