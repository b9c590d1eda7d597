//! APIs that none of the installable clients send in the form under test
//! (DescribeTopicPartitions with paging, DescribeCluster, DeleteTopics by id,
//! Metadata by topic id), driven over TCP with requests encoded by the test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{BrokerProcess, topic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Conn { stream, next_id: 1 }
    }

    fn call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> Resp {
        let id = self.next_id;
        self.next_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("admin-apis-test"));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version)).expect("header");
        req.encode(&mut body, version).expect("body");
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("write");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("response length");
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).expect("response body");
        let mut buf = Bytes::from(buf);
        let rh =
            ResponseHeader::decode(&mut buf, key.response_header_version(version)).expect("response header");
        assert_eq!(rh.correlation_id, id);
        let resp = Resp::decode(&mut buf, version).expect("response");
        assert!(!buf.has_remaining(), "trailing bytes in {key:?} response");
        resp
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create(conn: &mut Conn, topic: &str, partitions: i32) -> uuid::Uuid {
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = -1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 5000;
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    assert_eq!(resp.topics[0].num_partitions, partitions);
    resp.topics[0].topic_id
}

#[test]
fn describe_topic_partitions_pages_with_a_cursor() {
    let broker = BrokerProcess::start();
    let mut conn = Conn::open(&broker.addr);
    let (a, b) = (topic("dtp-a"), topic("dtp-b"));
    create(&mut conn, &a, 3);
    create(&mut conn, &b, 2);
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut calls = 0;
    loop {
        let mut req = DescribeTopicPartitionsRequest::default();
        req.topics = [&a, &b, &"no-such-topic".to_string()]
            .iter()
            .map(|t| {
                let mut r = TopicRequest::default();
                r.name = name(t);
                r
            })
            .collect();
        req.response_partition_limit = 2;
        req.cursor = cursor.take();
        let resp: DescribeTopicPartitionsResponse = conn.call(ApiKey::DescribeTopicPartitions, 0, &req);
        calls += 1;
        for t in &resp.topics {
            let tname = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            if tname == "no-such-topic" {
                assert_eq!(t.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
                continue;
            }
            assert_eq!(t.error_code, 0);
            for p in &t.partitions {
                assert_eq!(p.leader_id.0, 0);
                assert_eq!(p.replica_nodes.len(), 1);
                seen.push((tname.clone(), p.partition_index));
            }
        }
        match resp.next_cursor {
            Some(c) => {
                let mut next = Cursor::default();
                next.topic_name = c.topic_name;
                next.partition_index = c.partition_index;
                cursor = Some(next);
            }
            None => break,
        }
        assert!(calls < 10, "cursor never ended");
    }
    let mut want: Vec<(String, i32)> =
        (0..3).map(|i| (a.clone(), i)).chain((0..2).map(|i| (b.clone(), i))).collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want);
    assert!(calls >= 3, "a limit of 2 partitions needs at least 3 pages for 5 partitions");
}

#[test]
fn describe_cluster_reports_this_broker_as_controller() {
    let broker = BrokerProcess::start();
    let mut conn = Conn::open(&broker.addr);
    for version in 0..=2 {
        let mut req = DescribeClusterRequest::default();
        req.endpoint_type = 1;
        let resp: DescribeClusterResponse = conn.call(ApiKey::DescribeCluster, version, &req);
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.controller_id.0, 0);
        assert_eq!(resp.brokers.len(), 1);
        let port: i32 = broker.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        assert_eq!(resp.brokers[0].port, port);
        assert!(!resp.cluster_id.is_empty());
    }
}

#[test]
fn topics_by_id_in_metadata_and_delete() {
    let broker = BrokerProcess::start();
    let mut conn = Conn::open(&broker.addr);
    let t = topic("byid");
    let id = create(&mut conn, &t, 2);
    assert!(!id.is_nil());

    let mut mt = MetadataRequestTopic::default();
    mt.topic_id = id;
    mt.name = None;
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![mt]);
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].name.as_ref().map(|n| n.to_string()), Some(t.clone()));
    assert_eq!(resp.topics[0].partitions.len(), 2);

    let mut d = DeleteTopicState::default();
    d.topic_id = id;
    let mut req = DeleteTopicsRequest::default();
    req.topics = vec![d.clone()];
    req.timeout_ms = 5000;
    let resp: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, 6, &req);
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(resp.responses[0].name.as_ref().map(|n| n.to_string()), Some(t.clone()));
    let resp: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, 6, &req);
    assert_eq!(resp.responses[0].error_code, 100, "UNKNOWN_TOPIC_ID");

    // Metadata with auto-creation off for an unknown name, and an invalid name.
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = false;
    req.topics = Some(
        [t.as_str(), "bad name"]
            .iter()
            .map(|n| {
                let mut mt = MetadataRequestTopic::default();
                mt.name = Some(name(n));
                mt
            })
            .collect(),
    );
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
    assert_eq!(resp.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(resp.topics[1].error_code, 17, "INVALID_TOPIC_EXCEPTION");
}
