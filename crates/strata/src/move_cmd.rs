//! `strata move`: reassigns a partition through AlterPartitionReassignments,
//! the API `kafka-reassign-partitions` uses, then waits until
//! ListPartitionReassignments no longer lists it (docs/cluster.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::cli::MoveArgs;

/// One request and its answer on a plain connection.
fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> anyhow::Result<Resp> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("strata-move"));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version)).context("encoding the request header")?;
    req.encode(&mut body, version).context("encoding the request")?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).context("request too large")?);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).context("sending the request")?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).context("reading the answer")?;
    let len = usize::try_from(i32::from_be_bytes(len)).context("a negative answer length")?;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).context("reading the answer")?;
    let mut answer = Bytes::from(answer);
    ResponseHeader::decode(&mut answer, key.response_header_version(version))
        .context("decoding the answer header")?;
    let resp = Resp::decode(&mut answer, version).context("decoding the answer")?;
    if answer.has_remaining() {
        tracing::debug!(left = answer.remaining(), "bytes after the answer");
    }
    Ok(resp)
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

/// Runs `strata move`.
pub fn run(args: MoveArgs) -> anyhow::Result<()> {
    let mut stream =
        TcpStream::connect(&args.bootstrap).with_context(|| format!("connecting to {}", args.bootstrap))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut partition = ReassignablePartition::default();
    partition.partition_index = args.partition;
    partition.replicas = Some(args.to.iter().map(|id| BrokerId(*id)).collect());
    let mut topic = ReassignableTopic::default();
    topic.name = TopicName(StrBytes::from_string(args.topic.clone()));
    topic.partitions = vec![partition];
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = 30_000;
    req.topics = vec![topic];
    let resp: AlterPartitionReassignmentsResponse =
        call(&mut stream, ApiKey::AlterPartitionReassignments, 0, &req)?;
    if resp.error_code != 0 {
        bail!("{}: {}", error_name(resp.error_code), resp.error_message.as_deref().unwrap_or_default());
    }
    for p in resp.responses.iter().flat_map(|t| &t.partitions) {
        if p.error_code != 0 {
            bail!(
                "{}-{}: {}: {}",
                args.topic,
                p.partition_index,
                error_name(p.error_code),
                p.error_message.as_deref().unwrap_or_default()
            );
        }
    }
    // Wait until the move is no longer in progress.
    let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
    loop {
        let mut t = ListPartitionReassignmentsTopics::default();
        t.name = TopicName(StrBytes::from_string(args.topic.clone()));
        t.partition_indexes = vec![args.partition];
        let mut list = ListPartitionReassignmentsRequest::default();
        list.timeout_ms = 30_000;
        list.topics = Some(vec![t]);
        let resp: ListPartitionReassignmentsResponse =
            call(&mut stream, ApiKey::ListPartitionReassignments, 0, &list)?;
        if resp.error_code != 0 {
            bail!("{}: {}", error_name(resp.error_code), resp.error_message.as_deref().unwrap_or_default());
        }
        let moving =
            resp.topics.iter().flat_map(|t| &t.partitions).any(|p| p.partition_index == args.partition);
        if !moving {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}-{} is still moving after {} ms", args.topic, args.partition, args.wait_ms);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let to: Vec<String> = args.to.iter().map(i32::to_string).collect();
    println!("moved {}-{} to {}", args.topic, args.partition, to.join(","));
    Ok(())
}
