//! APIs that none of the installable clients send in the form under test
//! (DescribeTopicPartitions with paging, DescribeCluster, DeleteTopics by id,
//! Metadata by topic id, fetch sessions, ListOffsets for the max timestamp,
//! Produce with acks=0), driven over TCP with requests encoded by the test.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::batches::produce_request;
use common::conn::Conn;
use common::{BrokerProcess, topic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

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

/// A record batch of `n` records with timestamps `ts(i)`, built by the crate's encoder.
fn batch(n: i64, ts: impl Fn(i64) -> i64) -> Bytes {
    let records: Vec<_> =
        (0..n).map(|i| common::batches::record(i, ts(i), None, Some(Bytes::from(format!("v{i}"))))).collect();
    common::batches::encode(&records)
}

fn list_offset(conn: &mut Conn, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.current_leader_epoch = -1;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = (-1).into();
    req.topics = vec![t];
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 8, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn acks_zero_max_timestamp_and_fetch_sessions() {
    let broker = BrokerProcess::start();
    let mut conn = Conn::open(&broker.addr);
    let t = topic("acks0");
    create(&mut conn, &t, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // acks=0: no response, but the data is written. Timestamps peak at record 2.
    conn.send_only(
        ApiKey::Produce,
        9,
        &produce_request(&t, 0, batch(4, |i| now - 1000 + if i == 2 { 900 } else { i })),
    );
    conn.send_only(ApiKey::Produce, 9, &produce_request(&t, 0, batch(3, |i| now - 500 + i)));
    // The next answered request on the connection proves nothing was answered
    // for the acks=0 ones (the correlation id is checked).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while list_offset(&mut conn, &t, -1).1 < 7 {
        assert!(std::time::Instant::now() < deadline, "acks=0 data never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(list_offset(&mut conn, &t, -2), (0, 0, -1));
    assert_eq!(list_offset(&mut conn, &t, -3), (0, 2, now - 100), "max timestamp is record 2's");
    assert_eq!(list_offset(&mut conn, &t, now - 998), (0, 2, now - 100));
    assert_eq!(list_offset(&mut conn, &t, now + 10_000), (0, -1, -1));

    // Fetch sessions are declined: session id 0 on a full fetch, and an unknown
    // session id is FETCH_SESSION_ID_NOT_FOUND.
    let fetch = |session_id: i32, epoch: i32| {
        let mut p = FetchPartition::default();
        p.partition = 0;
        p.fetch_offset = 0;
        p.partition_max_bytes = 1 << 20;
        p.current_leader_epoch = -1;
        let mut ft = FetchTopic::default();
        ft.topic = name(&t);
        ft.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = (-1).into();
        req.max_wait_ms = 100;
        req.min_bytes = 1;
        req.max_bytes = 1 << 20;
        req.session_id = session_id;
        req.session_epoch = epoch;
        req.topics = vec![ft];
        req
    };
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &fetch(0, 0));
    assert_eq!((resp.error_code, resp.session_id), (0, 0));
    let part = &resp.responses[0].partitions[0];
    assert_eq!((part.error_code, part.high_watermark), (0, 7));
    assert!(part.records.as_ref().is_some_and(|r| !r.is_empty()));
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &fetch(77, 1));
    assert_eq!(resp.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
}
