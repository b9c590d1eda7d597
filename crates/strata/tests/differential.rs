//! The differential harness: each scenario sends the same requests (encoded
//! by the test with `kafka-protocol`) to Strata and to the reference Apache
//! Kafka broker and compares the whole decoded answers after normalising
//! exactly the fields `docs/testing.md` lists. Kafka's answer is the expected
//! one. The harness checks itself: Kafka against Kafka compares equal, and an
//! answer changed on purpose is caught.

mod common;

use bytes::Bytes;
use common::batches;
use common::conn::Conn;
use common::kafka_ref::RefBroker;
use common::{BrokerProcess, topic};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The lines where two answers differ (empty: equal).
fn differences(strata: &str, kafka: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (strata.lines().collect(), kafka.lines().collect());
    let mut out = Vec::new();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i).copied().unwrap_or("<none>"), b.get(i).copied().unwrap_or("<none>"));
        if x != y {
            out.push(format!("line {i}: strata `{}` / kafka `{}`", x.trim(), y.trim()));
        }
    }
    out
}

/// Renders an answer with the run's topic names replaced by a placeholder.
fn render(answer: &impl std::fmt::Debug, tag: &str) -> String {
    format!("{answer:#?}").replace(tag, "<tag>")
}

/// Runs `scenario` on both brokers and fails with every differing line.
fn same_on_both(what: &str, scenario: impl Fn(&str, &str) -> String) {
    let strata = BrokerProcess::start_with(&["--auto-create-topics", "false"]);
    let kafka = RefBroker::get();
    let a = scenario(&strata.addr, &topic("diff"));
    let b = scenario(&kafka.bootstrap, &topic("diff"));
    let diff = differences(&a, &b);
    if std::env::var_os("STRATA_DIFF_SHOW").is_some() {
        eprintln!("--- {what}, both brokers:\n{a}");
    }
    assert!(
        diff.is_empty(),
        "{what}: Strata answers differently from Kafka:\n{}\n--- strata\n{a}\n--- kafka\n{b}",
        diff.join("\n")
    );
}

/// The broker's node id, from Metadata.
fn node_id(conn: &mut Conn) -> i32 {
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    resp.brokers.first().map(|b| b.node_id.0).expect("a broker")
}

fn create(conn: &mut Conn, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> CreateTopicsResponse {
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = -1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = text(k);
            c.value = Some(text(v));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &req);
    if resp.topics.first().is_some_and(|t| t.error_code == 0) {
        wait_ready(conn, topic);
    }
    resp
}

/// Waits (within a deadline) until Metadata shows every partition of `topic`
/// with a leader: Kafka answers CreateTopics before its partitions lead.
fn wait_ready(conn: &mut Conn, topic: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
        t.name = Some(name(topic));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
        let ready = resp.topics.first().is_some_and(|t| {
            t.error_code == 0
                && !t.partitions.is_empty()
                && t.partitions.iter().all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
        });
        // Kafka's metadata names a leader before that leader takes writes:
        // ListOffsets, answered by the leader's log, tells.
        if ready && leaders_answer(conn, topic, &resp) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{topic} has no leader after 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Each topic's id, from Metadata.
fn topic_ids(conn: &mut Conn, topics: &[&str]) -> std::collections::HashMap<uuid::Uuid, String> {
    let mut req = MetadataRequest::default();
    req.topics = Some(
        topics
            .iter()
            .map(|n| {
                let mut t = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default();
                t.name = Some(name(n));
                t
            })
            .collect(),
    );
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &req);
    resp.topics.iter().filter_map(|t| Some((t.topic_id, t.name.as_ref()?.to_string()))).collect()
}

/// Whether every partition's leader answers ListOffsets without an error.
fn leaders_answer(conn: &mut Conn, topic: &str, meta: &MetadataResponse) -> bool {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let Some(t) = meta.topics.first() else { return false };
    let mut lt = ListOffsetsTopic::default();
    lt.name = name(topic);
    lt.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut lp = ListOffsetsPartition::default();
            lp.partition_index = p.partition_index;
            lp.current_leader_epoch = -1;
            lp.timestamp = -1;
            lp
        })
        .collect();
    let mut req = kafka_protocol::messages::ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![lt];
    let resp: kafka_protocol::messages::ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 7, &req);
    resp.topics.iter().all(|t| t.partitions.iter().all(|p| p.error_code == 0))
}

/// The normalised fields of a CreateTopics answer: throttle time, topic ids,
/// error messages.
fn normalise_create(mut resp: CreateTopicsResponse) -> CreateTopicsResponse {
    resp.throttle_time_ms = 0;
    for t in &mut resp.topics {
        t.topic_id = uuid::Uuid::nil();
        t.error_message = None;
    }
    resp
}

/// A topic to create: name, partitions, configs.
type TopicCase = (String, i32, Vec<(&'static str, &'static str)>);

fn create_topics_with_bad_input(addr: &str, tag: &str) -> String {
    let mut conn = Conn::open(addr);
    let mut answers = Vec::new();
    let long = "a".repeat(250);
    let cases: Vec<TopicCase> = vec![
        (format!("{tag}-ok"), 2, vec![("retention.ms", "3600000")]),
        (String::new(), 1, vec![]),
        (".".into(), 1, vec![]),
        ("..".into(), 1, vec![]),
        ("bad/name".into(), 1, vec![]),
        (long, 1, vec![]),
        (format!("{tag}-zero"), 0, vec![]),
        (format!("{tag}-badvalue"), 1, vec![("retention.ms", "abc")]),
        (format!("{tag}-unknown"), 1, vec![("no.such.config", "1")]),
        (format!("{tag}-ok"), 1, vec![]), // exists now
    ];
    for (topic, partitions, configs) in &cases {
        answers.push(normalise_create(create(&mut conn, topic, *partitions, configs)));
    }
    render(&answers, tag)
}

/// The normalised fields of a Produce answer: throttle time, log append
/// times, the current leader and node endpoints (node ids, host:port, leader
/// epochs), error messages.
fn normalise_produce(mut resp: ProduceResponse) -> ProduceResponse {
    resp.throttle_time_ms = 0;
    resp.node_endpoints.clear();
    for t in &mut resp.responses {
        t.topic_id = uuid::Uuid::nil();
        for p in &mut t.partition_responses {
            p.log_append_time_ms = -1;
            p.error_message = None;
            p.current_leader = Default::default();
            for e in &mut p.record_errors {
                e.batch_index_error_message = None;
            }
        }
    }
    resp
}

fn batch(values: &[Vec<u8>], timestamp: i64) -> Bytes {
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = (i % 2 == 0).then(|| Bytes::from(format!("k{i}")));
            let mut r = batches::record(i as i64, timestamp + i as i64, key, Some(Bytes::from(v.clone())));
            r.headers = [(text("h"), Some(Bytes::from_static(b"v")))].into_iter().collect();
            r
        })
        .collect();
    batches::encode(&records)
}

fn produce(conn: &mut Conn, topic: &str, partition: i32, records: Bytes) -> ProduceResponse {
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 10_000;
    req.topic_data = vec![td];
    conn.call(ApiKey::Produce, 11, &req)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Produce answers, normalised, for: a valid batch, an oversize one, an
/// unknown partition, a timestamp two hours ahead, an unknown topic.
fn produce_answers(addr: &str, tag: &str) -> Vec<ProduceResponse> {
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-produce");
    assert_eq!(create(&mut conn, &t, 1, &[("max.message.bytes", "1000")]).topics[0].error_code, 0);
    let now = now_ms();
    let small = vec![b"one".to_vec(), b"two".to_vec()];
    vec![
        produce(&mut conn, &t, 0, batch(&small, now)),
        produce(&mut conn, &t, 0, batch(&[vec![7u8; 2000]], now)),
        produce(&mut conn, &t, 99, batch(&small, now)),
        produce(&mut conn, &t, 0, batch(&small, now + 2 * 3600 * 1000)),
        produce(&mut conn, &format!("{tag}-nosuch"), 0, batch(&small, now)),
        produce(&mut conn, &t, 0, batch(&small, now)),
    ]
    .into_iter()
    .map(normalise_produce)
    .collect()
}

fn create_partitions_with_bad_input(addr: &str, tag: &str) -> String {
    let mut conn = Conn::open(addr);
    let node = node_id(&mut conn);
    let t = format!("{tag}-parts");
    assert_eq!(create(&mut conn, &t, 2, &[]).topics[0].error_code, 0);
    let assign = |ids: &[i32]| {
        let mut a = CreatePartitionsAssignment::default();
        a.broker_ids = ids.iter().map(|i| BrokerId(*i)).collect();
        a
    };
    let cases: Vec<(String, i32, Option<Vec<CreatePartitionsAssignment>>)> = vec![
        (t.clone(), 1, None),                              // fewer partitions
        (t.clone(), 2, None),                              // the same count
        (t.clone(), 4, Some(vec![assign(&[node])])),       // one assignment for two new partitions
        (t.clone(), 3, Some(vec![assign(&[999])])),        // an unknown broker
        (t.clone(), 3, Some(vec![assign(&[node, node])])), // a duplicate replica
        (format!("{tag}-nosuch"), 3, None),                // an unknown topic
        (t.clone(), 3, Some(vec![assign(&[node])])),       // fits
    ];
    let mut answers = Vec::new();
    for (topic, count, assignments) in cases {
        let mut ct = CreatePartitionsTopic::default();
        ct.name = name(&topic);
        ct.count = count;
        ct.assignments = assignments;
        let mut req = CreatePartitionsRequest::default();
        req.topics = vec![ct];
        req.timeout_ms = 10_000;
        let mut resp: CreatePartitionsResponse = conn.call(ApiKey::CreatePartitions, 3, &req);
        resp.throttle_time_ms = 0;
        for r in &mut resp.results {
            r.error_message = None;
        }
        answers.push(resp);
    }
    render(&answers, tag)
}

/// The stored bytes of a produced batch, as Fetch returns them, with the two
/// fields the broker stamps (base offset, partition leader epoch) zeroed.
fn record_layout(addr: &str, tag: &str) -> String {
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-layout");
    assert_eq!(create(&mut conn, &t, 1, &[]).topics[0].error_code, 0);
    let values = vec![b"alpha".to_vec(), Vec::new(), b"gamma".to_vec()];
    let sent = batch(&values, 1_700_000_000_000);
    for _ in 0..2 {
        let r = produce(&mut conn, &t, 0, sent.clone());
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{addr}: {:?}", p.error_message);
    }
    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = 0;
    fp.partition_max_bytes = 1 << 20;
    fp.current_leader_epoch = -1;
    let mut ft = FetchTopic::default();
    ft.topic = name(&t);
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.topics = vec![ft];
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 12, &req);
    let p = &resp.responses[0].partitions[0];
    let mut stored = p.records.clone().expect("records").to_vec();
    // Two batches: zero each one's base offset and leader epoch.
    let mut at = 0usize;
    let mut batches = Vec::new();
    while at + 12 <= stored.len() {
        let len = i32::from_be_bytes(stored[at + 8..at + 12].try_into().expect("length")) as usize;
        let end = at + 12 + len;
        let base = i64::from_be_bytes(stored[at..at + 8].try_into().expect("base offset"));
        batches.push(format!("base offset {base}"));
        stored[at..at + 8].fill(0);
        stored[at + 12..at + 16].fill(0);
        batches.push(stored[at..end].iter().map(|b| format!("{b:02x}")).collect::<String>());
        at = end;
    }
    format!(
        "error {} high watermark {} last stable {} log start {}\n{}",
        p.error_code,
        p.high_watermark,
        p.last_stable_offset,
        p.log_start_offset,
        batches.join("\n")
    )
}

fn api_versions_request(name: &str, version: &str) -> ApiVersionsRequest {
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = text(name);
    req.client_software_version = text(version);
    req
}

fn unknown_versions(addr: &str, _tag: &str) -> String {
    let mut out = Vec::new();
    // KIP-511's names: a valid pair is answered, an invalid one is
    // INVALID_REQUEST. The API list is the broker's own (compared API by API
    // by the tools suite), so only error codes are compared here.
    for (name, version) in [("strata-test", "1.0"), ("", ""), ("bad name", "1"), ("x", "-1-")] {
        let mut conn = Conn::open(addr);
        let resp: ApiVersionsResponse =
            conn.call(ApiKey::ApiVersions, 3, &api_versions_request(name, version));
        out.push(format!("ApiVersions v3 {name:?} {version:?}: error {}", resp.error_code));
    }
    // ApiVersions newer than any known, as a client sends it (header v2, the
    // newest body it knows): a v0 answer with UNSUPPORTED_VERSION (KIP-511).
    let mut conn = Conn::open(addr);
    let newer: Result<ApiVersionsResponse, String> =
        conn.try_call_as(ApiKey::ApiVersions, 99, 3, &api_versions_request("strata-test", "1.0"));
    out.push(format!("ApiVersions v99: {:?}", newer.map(|r| r.error_code)));
    // Metadata at a version no broker knows: the connection closes.
    let mut conn = Conn::open(addr);
    let meta: Result<MetadataResponse, String> =
        conn.try_call_as(ApiKey::Metadata, 99, 12, &MetadataRequest::default());
    out.push(format!("Metadata v99 answered: {}", meta.is_ok()));
    out.join("\n")
}

/// DescribeConfigs (v4, with synonyms) of one resource.
fn describe_configs(conn: &mut Conn, resource_type: i8, resource: &str) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = resource_type;
    r.resource_name = text(resource);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    req.include_synonyms = true;
    conn.call(ApiKey::DescribeConfigs, 4, &req)
}

/// Topic configs, default and explicit, with synonyms: compared whole.
fn topic_configs(addr: &str, tag: &str) -> String {
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-configs");
    create(&mut conn, &t, 1, &[("retention.ms", "123456"), ("cleanup.policy", "compact,delete")]);
    let mut resp = describe_configs(&mut conn, 2, &t);
    resp.throttle_time_ms = 0;
    // A config map: its order means nothing (Kafka's is a hash map's).
    for r in &mut resp.results {
        r.configs.sort_by(|a, b| a.name.cmp(&b.name));
    }
    render(&resp, tag)
}

/// The group APIs: a whole classic-protocol life of one member (KIP-394
/// join, sync, heartbeat, commits, leave) and their answers to bad input.
/// Member ids (client id and a random uuid) and coordinator endpoints are
/// normalised.
fn group_apis(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-g");
    create(&mut conn, &t, 2, &[]);
    let group = format!("{tag}-group");
    let simple = format!("{tag}-simple");
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");

    let mut fc = FindCoordinatorRequest::default();
    fc.key_type = 0;
    fc.coordinator_keys = vec![text(&group), text(&simple)];
    // Kafka creates __consumer_offsets on the first request and answers
    // COORDINATOR_NOT_AVAILABLE until it leads: a client retries, so do we.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut r: FindCoordinatorResponse = loop {
        let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 4, &fc);
        if r.coordinators.iter().all(|c| c.error_code == 0) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no coordinator after 60 s: {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for c in &mut r.coordinators {
        (c.node_id, c.host, c.port) = (BrokerId(0), text("<host>"), 0);
    }
    log("find coordinator (batched)", &r);
    wait_for_coordinators(&mut conn, &[&group, &simple, &format!("{tag}-nogroup")]);

    let join = |member: &str, session: i32| {
        let mut j = JoinGroupRequest::default();
        j.group_id = GroupId(text(&group));
        j.session_timeout_ms = session;
        j.rebalance_timeout_ms = 10_000;
        j.member_id = text(member);
        j.protocol_type = text("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = text("range");
        p.metadata = Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\x00\x00");
        j.protocols = vec![p];
        j
    };
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join("", 1));
    log("join with a session timeout below the minimum", &r);
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join("ghost", 10_000));
    log("join with an unknown member id", &r);
    let mut no_group = join("", 10_000);
    no_group.group_id = GroupId(text(""));
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &no_group);
    log("join with an empty group id", &r);
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join("", 10_000));
    let member = first.member_id.to_string();
    log("join without a member id", &first);
    let joined: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join(&member, 10_000));
    log("join with it", &joined);
    let generation = joined.generation_id;

    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(text(&group));
    sync.generation_id = generation;
    sync.member_id = text(&member);
    sync.protocol_type = Some(text("consumer"));
    sync.protocol_name = Some(text("range"));
    let mut a = SyncGroupRequestAssignment::default();
    a.member_id = text(&member);
    a.assignment = Bytes::from_static(b"assignment");
    sync.assignments = vec![a];
    let mut bad_sync = sync.clone();
    bad_sync.generation_id = generation + 7;
    let r: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &bad_sync);
    log("sync at a wrong generation", &r);
    let r: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync);
    log("sync", &r);

    let hb = |generation: i32, member: &str, group: &str| {
        let mut h = HeartbeatRequest::default();
        h.group_id = GroupId(text(group));
        h.generation_id = generation;
        h.member_id = text(member);
        h
    };
    for (what, h) in [
        ("heartbeat", hb(generation, &member, &group)),
        ("heartbeat at a wrong generation", hb(generation + 1, &member, &group)),
        ("heartbeat of an unknown member", hb(generation, "ghost", &group)),
        ("heartbeat of an unknown group", hb(0, "ghost", &format!("{tag}-nogroup"))),
    ] {
        let r: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &h);
        log(what, &r);
    }

    let commit = |group: &str, generation: i32, member: &str, topic: &str, partition: i32| {
        let mut c = OffsetCommitRequest::default();
        c.group_id = GroupId(text(group));
        c.generation_id_or_member_epoch = generation;
        c.member_id = text(member);
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = partition;
        p.committed_offset = 5;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(text("meta"));
        let mut ct = OffsetCommitRequestTopic::default();
        ct.name = name(topic);
        ct.partitions = vec![p];
        c.topics = vec![ct];
        c
    };
    for (what, c) in [
        ("commit by the member", commit(&group, generation, &member, &t, 0)),
        ("commit at a wrong generation", commit(&group, generation + 1, &member, &t, 1)),
        ("commit by an unknown member", commit(&group, generation, "ghost", &t, 1)),
        ("simple commit to a group with members", commit(&group, -1, "", &t, 1)),
        ("simple commit", commit(&simple, -1, "", &t, 1)),
        ("commit to an unknown partition", commit(&simple, -1, "", &t, 9)),
        ("commit to an unknown topic", commit(&simple, -1, "", &format!("{tag}-none"), 0)),
    ] {
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 9, &c);
        log(what, &r);
    }

    let mut f = OffsetFetchRequest::default();
    for g in [&group, &simple, &format!("{tag}-nogroup")] {
        let mut fg = OffsetFetchRequestGroup::default();
        fg.group_id = GroupId(text(g));
        let mut ft = OffsetFetchRequestTopics::default();
        ft.name = name(&t);
        ft.partition_indexes = vec![0, 1];
        fg.topics = Some(vec![ft]);
        fg.member_epoch = -1;
        f.groups.push(fg);
    }
    let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 8, &f);
    log("fetch offsets of three groups", &r);

    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(text(&group)), GroupId(text(&simple)), GroupId(text(&format!("{tag}-nogroup")))];
    for v in [5, 6] {
        let mut r: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, v, &d);
        // Kafka answers a batch grouped by coordinator partition: the order
        // of the groups in the answer is not part of the contract.
        r.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        log(&format!("describe groups v{v}"), &r);
    }
    let mut l = ListGroupsRequest::default();
    l.states_filter = vec![text("Stable")];
    let mut r: ListGroupsResponse = conn.call(ApiKey::ListGroups, 5, &l);
    r.groups.retain(|g| g.group_id.as_str().starts_with(tag));
    log("list stable groups", &r);

    let mut lv = LeaveGroupRequest::default();
    lv.group_id = GroupId(text(&group));
    let mut m = MemberIdentity::default();
    m.member_id = text(&member);
    let mut ghost = MemberIdentity::default();
    ghost.member_id = text("ghost");
    lv.members = vec![m, ghost];
    let r: LeaveGroupResponse = conn.call(ApiKey::LeaveGroup, 5, &lv);
    log("leave (the member and a ghost)", &r);
    let mut l = ListGroupsRequest::default();
    l.states_filter = vec![text("Empty")];
    let mut r: ListGroupsResponse = conn.call(ApiKey::ListGroups, 5, &l);
    r.groups.retain(|g| g.group_id.as_str().starts_with(tag));
    r.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    log("list empty groups", &r);

    let mut od = OffsetDeleteRequest::default();
    od.group_id = GroupId(text(&simple));
    let mut odt = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default();
    odt.name = name(&t);
    let mut odp = kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default();
    odp.partition_index = 1;
    odt.partitions = vec![odp];
    od.topics = vec![odt];
    let r: OffsetDeleteResponse = conn.call(ApiKey::OffsetDelete, 0, &od);
    log("offset delete", &r);
    let mut dg = DeleteGroupsRequest::default();
    dg.groups_names = vec![GroupId(text(&group)), GroupId(text(&format!("{tag}-nogroup")))];
    let mut r: DeleteGroupsResponse = conn.call(ApiKey::DeleteGroups, 2, &dg);
    r.results.sort_by(|a, b| a.group_id.cmp(&b.group_id)); // grouped by partition on Kafka
    log("delete groups", &r);
    assert!(!member.is_empty(), "a member id was handed out:\n{out}");
    out.replace(&member, "<member>").replace(tag, "<tag>")
}

/// Kafka's coordinator of each group's partition answers NOT_COORDINATOR
/// until that partition is loaded: waits until each group's is.
fn wait_for_coordinators(conn: &mut Conn, groups: &[&str]) {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
    let mut fc = kafka_protocol::messages::FindCoordinatorRequest::default();
    fc.coordinator_keys = groups.iter().map(|g| text(g)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r: kafka_protocol::messages::FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 4, &fc);
        if r.coordinators.iter().all(|c| c.error_code == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no coordinator after 60 s: {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for g in groups {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let mut fg = OffsetFetchRequestGroup::default();
            fg.group_id = GroupId(text(g));
            fg.member_epoch = -1;
            let mut f = OffsetFetchRequest::default();
            f.groups = vec![fg];
            let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 8, &f);
            if r.groups.iter().all(|g| g.error_code == 0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{g} has no coordinator after 60 s: {r:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// The consumer protocol (KIP-848) on the wire: ConsumerGroupHeartbeat's
/// joins, epochs and bad input, OffsetCommit/OffsetFetch checked by member
/// epoch, ConsumerGroupDescribe, ListGroups by type, and the leave.
fn consumer_group_apis(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
    use kafka_protocol::messages::*;
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-cg");
    create(&mut conn, &t, 3, &[]);
    let group = format!("{tag}-consumer");
    let classic = format!("{tag}-classic");
    wait_for_coordinators(&mut conn, &[&group, &classic]);
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");
    let member = format!("{tag}-member-a");
    let hb = |member: &str, epoch: i32, topics: Option<Vec<&str>>| {
        let mut h = ConsumerGroupHeartbeatRequest::default();
        h.group_id = GroupId(text(&group));
        h.member_id = text(member);
        h.member_epoch = epoch;
        h.rebalance_timeout_ms = 30_000;
        // A (re)join carries an empty owned set, as the clients send it.
        h.topic_partitions = (epoch == 0).then(Vec::new);
        h.subscribed_topic_names = topics.map(|ts| ts.iter().map(|n| name(n)).collect());
        h
    };
    // Topic ids differ between brokers: shown as the topic's name.
    let ids = topic_ids(&mut conn, &[&t]);
    let call = |v: i16, h: &ConsumerGroupHeartbeatRequest, conn: &mut Conn| {
        let mut r: ConsumerGroupHeartbeatResponse = conn.call(ApiKey::ConsumerGroupHeartbeat, v, h);
        if let Some(a) = r.assignment.as_mut() {
            for tp in &mut a.topic_partitions {
                if ids.contains_key(&tp.topic_id) {
                    tp.topic_id = uuid::Uuid::nil();
                }
            }
        }
        r
    };
    log("join (v1) with an empty member id", &call(1, &hb("", 0, Some(vec![&t])), &mut conn));
    log("join without a subscription", &call(1, &hb(&member, 0, None), &mut conn));
    let mut no_owned = hb(&member, 0, Some(vec![&t]));
    no_owned.topic_partitions = None;
    log("join without an owned set", &call(1, &no_owned, &mut conn));
    let mut bad_assignor = hb(&member, 0, Some(vec![&t]));
    bad_assignor.server_assignor = Some(text("nope"));
    log("join with an unknown assignor", &call(1, &bad_assignor, &mut conn));
    let mut bad_regex = hb(&member, 0, None);
    bad_regex.subscribed_topic_regex = Some(text("(unclosed"));
    let mut r = call(1, &bad_regex, &mut conn);
    // The regex engines' own words differ (Rust's regex, Kafka's RE2/J).
    if let Some(m) = r.error_message.as_mut() {
        *m = text(m.split(" is not a valid regular expression:").next().unwrap_or_default());
    }
    log("join with a bad regex", &r);
    log("heartbeat of an unknown member", &call(1, &hb(&format!("{tag}-ghost"), 3, None), &mut conn));
    let joined = call(1, &hb(&member, 0, Some(vec![&t])), &mut conn);
    log("join", &joined);
    let epoch = joined.member_epoch;
    let mut owned = hb(&member, epoch, None);
    let mut tp = TopicPartitions::default();
    tp.topic_id = *ids.keys().next().expect("the topic's id");
    tp.partitions = vec![0, 1, 2];
    owned.topic_partitions = Some(vec![tp]);
    log("heartbeat with what it owns", &call(1, &owned, &mut conn));
    log("heartbeat at a newer epoch", &call(1, &hb(&member, epoch + 5, None), &mut conn));

    let commit = |epoch: i32, member: &str| {
        let mut c = OffsetCommitRequest::default();
        c.group_id = GroupId(text(&group));
        c.generation_id_or_member_epoch = epoch;
        c.member_id = text(member);
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = 0;
        p.committed_leader_epoch = -1;
        let mut ct = OffsetCommitRequestTopic::default();
        ct.name = name(&t);
        ct.partitions = vec![p];
        c.topics = vec![ct];
        c
    };
    for (what, c) in [
        ("commit at the member's epoch", commit(epoch, &member)),
        ("commit at an older epoch", commit(epoch - 1, &member)),
        ("commit at a newer epoch", commit(epoch + 1, &member)),
        ("commit by an unknown member", commit(epoch, "ghost")),
        ("simple commit to a consumer group with members", commit(-1, "")),
    ] {
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 9, &c);
        log(what, &r);
    }
    for (what, e) in [("fetch at the member's epoch", epoch), ("fetch at an older epoch", epoch - 1)] {
        let mut fg = OffsetFetchRequestGroup::default();
        fg.group_id = GroupId(text(&group));
        fg.member_id = Some(text(&member));
        fg.member_epoch = e;
        let mut ft = OffsetFetchRequestTopics::default();
        ft.name = name(&t);
        ft.partition_indexes = vec![0];
        fg.topics = Some(vec![ft]);
        let mut f = OffsetFetchRequest::default();
        f.groups = vec![fg];
        let r: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 9, &f);
        log(what, &r);
    }

    // A classic group beside it (a simple commit creates it).
    let mut c = commit(-1, "");
    c.group_id = GroupId(text(&classic));
    let _: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 9, &c);
    let mut d = ConsumerGroupDescribeRequest::default();
    d.group_ids =
        vec![GroupId(text(&group)), GroupId(text(&classic)), GroupId(text(&format!("{tag}-nogroup")))];
    let mut r: ConsumerGroupDescribeResponse = conn.call(ApiKey::ConsumerGroupDescribe, 1, &d);
    r.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    for g in &mut r.groups {
        for m in &mut g.members {
            for tp in m
                .assignment
                .topic_partitions
                .iter_mut()
                .chain(m.target_assignment.topic_partitions.iter_mut())
            {
                tp.topic_id = uuid::Uuid::nil();
            }
        }
    }
    log("consumer group describe", &r);
    let mut dg = DescribeGroupsRequest::default();
    dg.groups = vec![GroupId(text(&group))];
    let r: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, 5, &dg);
    log("describe groups (classic API) of a consumer group", &r);
    for types in [vec!["consumer"], vec!["classic"]] {
        let mut l = ListGroupsRequest::default();
        l.types_filter = types.iter().map(|t| text(t)).collect();
        let mut r: ListGroupsResponse = conn.call(ApiKey::ListGroups, 5, &l);
        r.groups.retain(|g| g.group_id.as_str().starts_with(tag));
        log(&format!("list groups of type {types:?}"), &r);
    }
    log("leave", &call(1, &hb(&member, -1, None), &mut conn));
    let mut r: ConsumerGroupDescribeResponse = conn.call(ApiKey::ConsumerGroupDescribe, 1, &d);
    r.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    log(
        "describe after the leave",
        &r.groups
            .iter()
            .map(|g| (&g.group_id, g.error_code, &g.group_state, g.members.len()))
            .collect::<Vec<_>>(),
    );
    out.replace(tag, "<tag>")
}

/// Kafka's online migration on the wire (as Kafka's own
/// ConsumerProtocolMigrationTest drives it): a classic member's group
/// upgraded by a consumer-protocol join, the classic member's heartbeats,
/// commit, rejoin and sync inside the consumer group, and the downgrade when
/// the consumer-protocol member leaves. Member ids are left out; which
/// partitions a member gets is shown as a count (the assignors may pick
/// different ones).
fn group_migration(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable};
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-mig");
    create(&mut conn, &t, 3, &[]);
    let group = format!("{tag}-migrating");
    wait_for_coordinators(&mut conn, &[&group]);
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");
    let embedded = |version: i16, encode: &dyn Fn(&mut bytes::BytesMut)| {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        encode(&mut buf);
        buf.freeze()
    };
    let subscription = embedded(1, &|buf| {
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = vec![text(&t)];
        s.encode(buf, 1).expect("a subscription");
    });
    let assignment_of = |parts: Vec<i32>| {
        embedded(1, &|buf| {
            let mut tp = consumer_protocol_assignment::TopicPartition::default();
            tp.topic = name(&t);
            tp.partitions = parts.clone();
            let mut a = ConsumerProtocolAssignment::default();
            a.assigned_partitions = vec![tp];
            a.encode(buf, 1).expect("an assignment");
        })
    };
    let count = |assignment: &Bytes| -> Result<usize, String> {
        if assignment.len() < 2 {
            return Ok(0);
        }
        let version = i16::from_be_bytes([assignment[0], assignment[1]]);
        let mut rest = assignment.slice(2..);
        ConsumerProtocolAssignment::decode(&mut rest, version)
            .map(|a| a.assigned_partitions.iter().map(|tp| tp.partitions.len()).sum())
            .map_err(|e| e.to_string())
    };
    let join = |member: &str| {
        let mut j = JoinGroupRequest::default();
        j.group_id = GroupId(text(&group));
        j.session_timeout_ms = 30_000;
        j.rebalance_timeout_ms = 10_000;
        j.member_id = text(member);
        j.protocol_type = text("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = text("range");
        p.metadata = subscription.clone();
        j.protocols = vec![p];
        j
    };
    let joined = |r: &JoinGroupResponse, member: &str| {
        (r.error_code, r.generation_id, r.protocol_name.clone(), r.leader.as_str() == member, r.members.len())
    };
    let sync = |member: &str, generation: i32, assignments: Vec<(String, Bytes)>| {
        let mut s = SyncGroupRequest::default();
        s.group_id = GroupId(text(&group));
        s.generation_id = generation;
        s.member_id = text(member);
        s.protocol_type = Some(text("consumer"));
        s.protocol_name = Some(text("range"));
        s.assignments = assignments
            .into_iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = text(&m);
                x.assignment = a;
                x
            })
            .collect();
        s
    };
    let heartbeat = |member: &str, generation: i32| {
        let mut h = HeartbeatRequest::default();
        h.group_id = GroupId(text(&group));
        h.generation_id = generation;
        h.member_id = text(member);
        h
    };
    let consumer_hb = |member: &str, epoch: i32| {
        let mut h = ConsumerGroupHeartbeatRequest::default();
        h.group_id = GroupId(text(&group));
        h.member_id = text(member);
        h.member_epoch = epoch;
        h.rebalance_timeout_ms = 30_000;
        if epoch == 0 {
            h.topic_partitions = Some(Vec::new());
            h.subscribed_topic_names = Some(vec![name(&t)]);
        }
        h
    };
    let consumer_answer = |r: &ConsumerGroupHeartbeatResponse| {
        (
            r.error_code,
            r.error_message.clone(),
            r.member_epoch,
            r.assignment
                .as_ref()
                .map(|a| a.topic_partitions.iter().map(|tp| tp.partitions.len()).sum::<usize>()),
        )
    };
    let list = |conn: &mut Conn| {
        let mut r: ListGroupsResponse = conn.call(ApiKey::ListGroups, 5, &ListGroupsRequest::default());
        r.groups.retain(|g| g.group_id.as_str().starts_with(tag));
        r.groups
            .iter()
            .map(|g| (g.group_type.clone(), g.protocol_type.clone(), g.group_state.clone()))
            .collect::<Vec<_>>()
    };

    // A classic group of one member owning every partition.
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join(""));
    let a = first.member_id.to_string();
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join(&a));
    log("classic join", &joined(&r, &a));
    let generation = r.generation_id;
    let r: SyncGroupResponse = conn.call(
        ApiKey::SyncGroup,
        5,
        &sync(&a, generation, vec![(a.clone(), assignment_of(vec![0, 1, 2]))]),
    );
    log("classic sync as the leader", &(r.error_code, count(&r.assignment)));
    log("groups", &list(&mut conn));

    // A consumer-protocol member joins: the group turns into a consumer group.
    let b = format!("{tag}-consumer-member");
    let r: ConsumerGroupHeartbeatResponse = conn.call(ApiKey::ConsumerGroupHeartbeat, 1, &consumer_hb(&b, 0));
    log("consumer-protocol join to the classic group", &consumer_answer(&r));
    let b_epoch = r.member_epoch;
    log("groups after the upgrade", &list(&mut conn));
    let mut d = DescribeGroupsRequest::default();
    d.groups = vec![GroupId(text(&group))];
    let r: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, 5, &d);
    log(
        "describe groups (classic API)",
        &r.groups.iter().map(|g| (g.error_code, g.group_state.clone())).collect::<Vec<_>>(),
    );

    // The classic member inside the consumer group.
    for (what, g) in [
        ("classic heartbeat at a newer generation", generation + 1),
        ("classic heartbeat at its generation", generation),
    ] {
        let r: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &heartbeat(&a, g));
        log(what, &r.error_code);
    }
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(text(&group));
    commit.generation_id_or_member_epoch = generation;
    commit.member_id = text(&a);
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 0;
    p.committed_leader_epoch = -1;
    let mut ct = OffsetCommitRequestTopic::default();
    ct.name = name(&t);
    ct.partitions = vec![p];
    commit.topics = vec![ct];
    for (what, version) in
        [("classic commit (v8) at its generation", 8), ("classic commit (v9) at its generation", 9)]
    {
        let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, version, &commit);
        log(
            what,
            &r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect::<Vec<_>>(),
        );
    }
    let mut stale = commit.clone();
    stale.generation_id_or_member_epoch = generation + 1;
    let r: OffsetCommitResponse = conn.call(ApiKey::OffsetCommit, 9, &stale);
    log(
        "classic commit at a newer generation",
        &r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect::<Vec<_>>(),
    );
    let mut wrong_type = join(&a);
    wrong_type.protocol_type = text("connect");
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &wrong_type);
    log("classic rejoin with another protocol type", &r.error_code);
    // An eager member rejoins owning nothing: at the new epoch at once.
    let r: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join(&a));
    log("classic rejoin", &joined(&r, &a));
    let a_epoch = r.generation_id;
    let r: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync(&a, a_epoch + 1, Vec::new()));
    log("classic sync at a wrong generation", &r.error_code);
    let r: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync(&a, a_epoch, Vec::new()));
    log(
        "classic sync",
        &(r.error_code, r.protocol_type.clone(), r.protocol_name.clone(), count(&r.assignment)),
    );
    let r: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &heartbeat(&a, a_epoch));
    log("classic heartbeat at the new epoch", &r.error_code);
    let r: ConsumerGroupHeartbeatResponse =
        conn.call(ApiKey::ConsumerGroupHeartbeat, 1, &consumer_hb(&b, b_epoch));
    log("consumer-protocol heartbeat after the classic member released", &consumer_answer(&r));
    let mut cd = ConsumerGroupDescribeRequest::default();
    cd.group_ids = vec![GroupId(text(&group))];
    let r: ConsumerGroupDescribeResponse = conn.call(ApiKey::ConsumerGroupDescribe, 1, &cd);
    let mut members: Vec<_> = r
        .groups
        .iter()
        .flat_map(|g| {
            g.members.iter().map(|m| (m.member_type, m.member_epoch, m.subscribed_topic_regex.clone()))
        })
        .collect();
    members.sort();
    log(
        "consumer group describe",
        &(
            r.groups.iter().map(|g| (g.error_code, g.group_state.clone(), g.group_epoch)).collect::<Vec<_>>(),
            members,
        ),
    );

    // The consumer-protocol member leaves: only a classic member is left.
    let r: ConsumerGroupHeartbeatResponse =
        conn.call(ApiKey::ConsumerGroupHeartbeat, 1, &consumer_hb(&b, -1));
    log("consumer-protocol leave", &consumer_answer(&r));
    log("groups after the downgrade", &list(&mut conn));
    let r: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, 5, &d);
    log(
        "describe groups after the downgrade",
        &r.groups
            .iter()
            .map(|g| (g.error_code, g.group_state.clone(), g.protocol_type.clone(), g.members.len()))
            .collect::<Vec<_>>(),
    );
    let r: ConsumerGroupHeartbeatResponse =
        conn.call(ApiKey::ConsumerGroupHeartbeat, 1, &consumer_hb(&b, b_epoch));
    log("consumer-protocol heartbeat to the classic group", &consumer_answer(&r));
    for (what, g) in [
        ("classic heartbeat at the old epoch", a_epoch),
        ("classic heartbeat at the group's generation", a_epoch + 1),
    ] {
        let r: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &heartbeat(&a, g));
        log(what, &r.error_code);
    }
    out.replace(tag, "<tag>")
}

/// The transaction APIs of the first transaction protocol on the wire
/// (InitProducerId, AddPartitionsToTxn v1/v3, EndTxn v3, a transactional
/// Produce v9): bad input, fencing, retries and the state checks. Producer
/// ids are left out.
/// A Produce (acks=all) of one transactional record of `producer` (id,
/// epoch) at sequence `seq` to `topic`-`partition`.
fn txn_produce(
    topic: &str,
    partition: i32,
    transactional_id: &str,
    producer: (kafka_protocol::messages::ProducerId, i16),
    seq: i32,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TransactionalId};
    let mut rec = batches::record(0, now_ms(), None, Some(Bytes::from_static(b"v")));
    rec.transactional = true;
    rec.producer_id = producer.0.0;
    rec.producer_epoch = producer.1;
    rec.sequence = seq;
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(batches::encode(&[rec]));
    let mut td = TopicProduceData::default();
    td.name = name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 10_000;
    req.transactional_id = Some(TransactionalId(text(transactional_id)));
    req.topic_data = vec![td];
    req
}

/// InitProducerId (v4) for a transactional id.
fn txn_init_request(id: &str, timeout: i32) -> kafka_protocol::messages::InitProducerIdRequest {
    use kafka_protocol::messages::*;
    let mut r = InitProducerIdRequest::default();
    r.transactional_id = Some(TransactionalId(text(id)));
    r.transaction_timeout_ms = timeout;
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    r
}

/// Sends InitProducerId, retried while the coordinator is loading (Kafka
/// creates `__transaction_state` on first use) as clients retry it.
fn txn_init(
    conn: &mut Conn,
    req: &kafka_protocol::messages::InitProducerIdRequest,
) -> kafka_protocol::messages::InitProducerIdResponse {
    use kafka_protocol::messages::*;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r: InitProducerIdResponse = conn.call(ApiKey::InitProducerId, 4, req);
        if ![14, 15, 16, 51].contains(&r.error_code) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "InitProducerId still answers {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits until FindCoordinator names a transaction coordinator for `id`:
/// Kafka creates `__transaction_state` on the first FindCoordinator of a
/// transactional id and answers NOT_COORDINATOR until it leads it.
fn wait_txn_coordinator(conn: &mut Conn, id: &str) {
    use kafka_protocol::messages::*;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut fc = FindCoordinatorRequest::default();
        fc.key_type = 1;
        fc.coordinator_keys = vec![text(id)];
        let r: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 4, &fc);
        if r.coordinators.iter().all(|c| c.error_code == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no transaction coordinator after 60 s: {r:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// KIP-890 part 2 as the brokers answer it: AddPartitionsToTxn v4-5 (the
/// brokers' form, verify-only and add), Produce v12's implicit add, EndTxn
/// v5's epoch bump, its retries and an abort with nothing open, and the old
/// epoch fenced in the partition after the bump.
fn transaction_v2_apis(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::*;
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-tv2");
    create(&mut conn, &t, 3, &[]);
    let id = format!("{tag}-tv2-tx");
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");
    wait_txn_coordinator(&mut conn, &id);
    let first = txn_init(&mut conn, &txn_init_request(&id, 60_000));
    let (pid, e0) = (first.producer_id, first.producer_epoch);
    log("init", &first.error_code);
    let txns = |verify: bool, epoch: i16, partitions: Vec<i32>| {
        let mut topic = AddPartitionsToTxnTopic::default();
        topic.name = name(&t);
        topic.partitions = partitions;
        let mut txn = AddPartitionsToTxnTransaction::default();
        txn.transactional_id = TransactionalId(text(&id));
        txn.producer_id = pid;
        txn.producer_epoch = epoch;
        txn.verify_only = verify;
        txn.topics = vec![topic];
        let mut r = AddPartitionsToTxnRequest::default();
        r.transactions = vec![txn];
        r
    };
    let codes = |r: &AddPartitionsToTxnResponse| {
        let mut per: Vec<(i32, i16)> = r
            .results_by_transaction
            .iter()
            .flat_map(|x| x.topic_results.iter())
            .flat_map(|t| t.results_by_partition.iter().map(|p| (p.partition_index, p.partition_error_code)))
            .collect();
        // Kafka's order of partitions is its hash map's.
        per.sort();
        (r.error_code, per)
    };
    for (what, version, req) in [
        ("verify (v5) outside the transaction", 5, txns(true, e0, vec![0])),
        ("verify (v4) outside the transaction", 4, txns(true, e0, vec![0])),
        ("verify (v5) at another epoch", 5, txns(true, e0 + 1, vec![0])),
        ("add (v5)", 5, txns(false, e0, vec![0])),
        ("verify (v5) in and outside it", 5, txns(true, e0, vec![0, 1])),
    ] {
        let r: AddPartitionsToTxnResponse = conn.call(ApiKey::AddPartitionsToTxn, version, &req);
        log(what, &codes(&r));
    }
    let produce = |partition: i32, epoch: i16, seq: i32| txn_produce(&t, partition, &id, (pid, epoch), seq);
    let produced = |conn: &mut Conn, req: &ProduceRequest| {
        let r: ProduceResponse = conn.call(ApiKey::Produce, 12, req);
        r.responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| (p.error_code, p.base_offset)))
            .collect::<Vec<_>>()
    };
    log("produce (v12) to the added partition", &produced(&mut conn, &produce(0, e0, 0)));
    log("produce (v12) to a partition not added: added by it", &produced(&mut conn, &produce(2, e0, 0)));
    let r: AddPartitionsToTxnResponse =
        conn.call(ApiKey::AddPartitionsToTxn, 5, &txns(true, e0, vec![0, 1, 2]));
    log("verify (v5) after the implicit add", &codes(&r));
    let end = |epoch: i16, commit: bool| {
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(text(&id));
        r.producer_id = pid;
        r.producer_epoch = epoch;
        r.committed = commit;
        r
    };
    let ended = |conn: &mut Conn, req: &EndTxnRequest| {
        let r: EndTxnResponse = conn.call(ApiKey::EndTxn, 5, req);
        (r.error_code, r.producer_id == pid, r.producer_epoch - e0)
    };
    log("end (v5) at the next epoch", &ended(&mut conn, &end(e0 + 1, true)));
    log("commit (v5): the answer's epoch is bumped", &ended(&mut conn, &end(e0, true)));
    // A retry: CONCURRENT_TRANSACTIONS while the markers are written, then NONE.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let retried = loop {
        let r = ended(&mut conn, &end(e0, true));
        if r.0 != 51 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    log("the commit retried at the old epoch", &retried);
    log("an abort at the old epoch", &ended(&mut conn, &end(e0, false)));
    log("a commit at the new epoch with nothing open", &ended(&mut conn, &end(e0 + 1, true)));
    log("produce (v12) at the old epoch", &produced(&mut conn, &produce(0, e0, 1)));
    log("an abort at the new epoch with nothing open", &ended(&mut conn, &end(e0 + 1, false)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let retried = loop {
        let r = ended(&mut conn, &end(e0 + 1, false));
        if r.0 != 51 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    log("the abort retried", &retried);
    log("produce (v12) at the newest epoch", &produced(&mut conn, &produce(1, e0 + 2, 0)));
    log("commit it (v5)", &ended(&mut conn, &end(e0 + 2, true)));
    out.replace(tag, "<tag>")
}

/// AlterPartitionReassignments and ListPartitionReassignments on a
/// one-broker cluster: a reassignment to the broker itself completes at once,
/// and Kafka's checks (unknown partition, empty list, a broker twice, an
/// unknown broker, a replication factor change, a cancel with nothing in
/// progress) answer alike.
fn partition_reassignments(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::*;
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-moves");
    create(&mut conn, &t, 2, &[]);
    let me = node_id(&mut conn);
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");
    let alter = |conn: &mut Conn, version: i16, allow: bool, parts: Vec<(&str, i32, Option<Vec<i32>>)>| {
        let mut r = AlterPartitionReassignmentsRequest::default();
        r.timeout_ms = 30_000;
        r.allow_replication_factor_change = allow;
        let mut by_topic: Vec<ReassignableTopic> = Vec::new();
        for (topic, p, replicas) in parts {
            let mut rp = ReassignablePartition::default();
            rp.partition_index = p;
            rp.replicas = replicas.map(|rs| rs.into_iter().map(BrokerId).collect());
            match by_topic.iter_mut().find(|x| x.name.as_str() == topic) {
                Some(x) => x.partitions.push(rp),
                None => {
                    let mut x = ReassignableTopic::default();
                    x.name = name(topic);
                    x.partitions = vec![rp];
                    by_topic.push(x);
                }
            }
        }
        r.topics = by_topic;
        let resp: AlterPartitionReassignmentsResponse =
            conn.call(ApiKey::AlterPartitionReassignments, version, &r);
        let parts: Vec<_> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.error_code,
                        p.error_message.as_ref().map(|m| m.to_string()),
                    )
                })
            })
            .collect();
        (resp.error_code, parts)
    };
    let nosuch = format!("{tag}-nosuch");
    // (what, version, allow a factor change, [(topic, partition, replicas)])
    type Case<'a> = (&'a str, i16, bool, Vec<(&'a str, i32, Option<Vec<i32>>)>);
    let cases: Vec<Case> = vec![
        ("to the broker itself (v0)", 0, true, vec![(&t, 0, Some(vec![me]))]),
        ("to the broker itself (v1)", 1, false, vec![(&t, 1, Some(vec![me]))]),
        (
            "an unknown topic and partition",
            1,
            false,
            vec![(&nosuch, 0, Some(vec![me])), (&t, 7, Some(vec![me]))],
        ),
        ("an empty replica list", 1, false, vec![(&t, 0, Some(vec![]))]),
        ("a broker twice", 1, true, vec![(&t, 0, Some(vec![me, me]))]),
        ("an unknown broker", 1, true, vec![(&t, 0, Some(vec![me, me + 100]))]),
        ("a replication factor change, not allowed", 1, false, vec![(&t, 0, Some(vec![me, me + 100]))]),
        ("a cancel with nothing in progress", 1, false, vec![(&t, 0, None)]),
    ];
    for (what, version, allow, parts) in cases {
        log(what, &alter(&mut conn, version, allow, parts));
    }
    let mut list = ListPartitionReassignmentsRequest::default();
    list.timeout_ms = 30_000;
    let r: ListPartitionReassignmentsResponse = conn.call(ApiKey::ListPartitionReassignments, 0, &list);
    let ongoing: Vec<_> =
        r.topics.iter().filter(|x| x.name.contains(tag)).map(|x| x.name.to_string()).collect();
    log("list: nothing in progress", &(r.error_code, ongoing));
    out.replace(tag, "<tag>")
        .replace(&format!("broker {}", me + 100), "broker <other>")
        .replace(&format!("broker {me} "), "broker <me> ")
}

fn transaction_apis(addr: &str, tag: &str) -> String {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::*;
    let mut conn = Conn::open(addr);
    let t = format!("{tag}-txn");
    create(&mut conn, &t, 2, &[]);
    let id = format!("{tag}-tx");
    let mut out = String::new();
    let mut log = |what: &str, answer: &dyn std::fmt::Debug| out += &format!("== {what}\n{answer:#?}\n");
    let init = txn_init_request;
    let call_init = txn_init;
    wait_txn_coordinator(&mut conn, &id);
    let r = call_init(&mut conn, &init(&id, 0));
    log("init with a zero timeout", &(r.error_code, r.producer_epoch));
    let r = call_init(&mut conn, &init(&id, 900_001));
    log("init with a timeout above the maximum", &(r.error_code, r.producer_epoch));
    let r = call_init(&mut conn, &init("", 60_000));
    log("init with an empty transactional id", &(r.error_code, r.producer_epoch));
    let first = call_init(&mut conn, &init(&id, 60_000));
    log("init", &(first.error_code, first.producer_epoch));
    let r = call_init(&mut conn, &init(&id, 60_000));
    log("init again (a new instance)", &(r.error_code, r.producer_epoch, r.producer_id == first.producer_id));
    let (pid, epoch) = (r.producer_id, r.producer_epoch);
    let add = |pid: ProducerId, epoch: i16, topics: Vec<(&str, Vec<i32>)>| {
        let mut r = AddPartitionsToTxnRequest::default();
        r.v3_and_below_transactional_id = TransactionalId(text(&id));
        r.v3_and_below_producer_id = pid;
        r.v3_and_below_producer_epoch = epoch;
        r.v3_and_below_topics = topics
            .into_iter()
            .map(|(n, ps)| {
                let mut t = AddPartitionsToTxnTopic::default();
                t.name = name(n);
                t.partitions = ps;
                t
            })
            .collect();
        r
    };
    let codes = |r: &AddPartitionsToTxnResponse| {
        let mut c: Vec<(String, i32, i16)> = r
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.partition_error_code))
            })
            .collect();
        c.sort();
        c
    };
    let nosuch = format!("{tag}-nosuch");
    for (what, version, req) in [
        ("add at the older epoch (v3)", 3, add(pid, epoch - 1, vec![(&t, vec![0])])),
        ("add at the older epoch (v1)", 1, add(pid, epoch - 1, vec![(&t, vec![0])])),
        ("add with another producer id", 3, add(ProducerId(pid.0 + 1000), epoch, vec![(&t, vec![0])])),
        ("add with an unknown topic", 3, add(pid, epoch, vec![(&t, vec![0]), (&nosuch, vec![0])])),
        ("add", 3, add(pid, epoch, vec![(&t, vec![0])])),
        ("add it again", 3, add(pid, epoch, vec![(&t, vec![0])])),
    ] {
        let r: AddPartitionsToTxnResponse = conn.call(ApiKey::AddPartitionsToTxn, version, &req);
        log(what, &codes(&r));
    }
    // A transactional batch to a partition outside the transaction.
    let mut req = txn_produce(&t, 1, &id, (pid, epoch), 0);
    let r: ProduceResponse = conn.call(ApiKey::Produce, 9, &req);
    log(
        "transactional produce outside the transaction",
        &r.responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect::<Vec<_>>(),
    );
    req.topic_data[0].partition_data[0].index = 0;
    let r: ProduceResponse = conn.call(ApiKey::Produce, 9, &req);
    log(
        "transactional produce inside it",
        &r.responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| (p.error_code, p.base_offset)))
            .collect::<Vec<_>>(),
    );
    let end = |pid: ProducerId, epoch: i16, commit: bool, id: &str| {
        let mut r = EndTxnRequest::default();
        r.transactional_id = TransactionalId(text(id));
        r.producer_id = pid;
        r.producer_epoch = epoch;
        r.committed = commit;
        r
    };
    for (what, req) in [
        ("end at the older epoch", end(pid, epoch - 1, true, &id)),
        ("end of an unknown transactional id", end(pid, epoch, true, &format!("{tag}-ghost"))),
        ("end with another producer id", end(ProducerId(pid.0 + 1000), epoch, true, &id)),
        ("commit", end(pid, epoch, true, &id)),
    ] {
        let r: EndTxnResponse = conn.call(ApiKey::EndTxn, 3, &req);
        log(what, &r.error_code);
    }
    // A retried commit: CONCURRENT_TRANSACTIONS until the markers are
    // written, then NONE; an abort of it is INVALID_TXN_STATE.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let retried = loop {
        let r: EndTxnResponse = conn.call(ApiKey::EndTxn, 3, &end(pid, epoch, true, &id));
        if r.error_code != 51 || std::time::Instant::now() > deadline {
            break r.error_code;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    log("the commit retried", &retried);
    let r: EndTxnResponse = conn.call(ApiKey::EndTxn, 3, &end(pid, epoch, false, &id));
    log("an abort of the committed transaction", &r.error_code);
    let r: EndTxnResponse = conn.call(ApiKey::EndTxn, 3, &end(pid, epoch, true, &id));
    log("a commit with no transaction open", &r.error_code);
    // The admin APIs (KIP-664) on what the transaction left.
    let list = |conn: &mut Conn, version: i16, states: &[&str], pattern: Option<&str>, duration: i64| {
        let mut r = ListTransactionsRequest::default();
        r.state_filters = states.iter().map(|s| text(s)).collect();
        r.transactional_id_pattern = pattern.map(text);
        r.duration_filter = duration;
        let resp: ListTransactionsResponse = conn.call(ApiKey::ListTransactions, version, &r);
        let mine: Vec<(String, String)> = resp
            .transaction_states
            .iter()
            .filter(|t| t.transactional_id.contains(tag))
            .map(|t| (t.transactional_id.to_string(), t.transaction_state.to_string()))
            .collect();
        (resp.error_code, resp.unknown_state_filters.iter().map(|s| s.to_string()).collect::<Vec<_>>(), mine)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while list(&mut conn, 0, &["CompleteCommit"], None, -1).2.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the commit never completed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    log(
        "list (v0) CompleteCommit and a bogus state",
        &list(&mut conn, 0, &["CompleteCommit", "Bogus"], None, -1),
    );
    log("list (v0) Ongoing", &list(&mut conn, 0, &["Ongoing"], None, -1));
    log("list (v1) open for more than an hour", &list(&mut conn, 1, &[], None, 3_600_000));
    log("list (v2) by a whole-id pattern", &list(&mut conn, 2, &[], Some(&format!("{tag}-t.")), -1));
    log("list (v2) by a part of the id", &list(&mut conn, 2, &[], Some("tx"), -1));
    log("list (v2) by a bad pattern", &list(&mut conn, 2, &[], Some("(tx"), -1));
    let mut dt = DescribeTransactionsRequest::default();
    dt.transactional_ids =
        [id.as_str(), "", nosuch.as_str()].iter().map(|s| TransactionalId(text(s))).collect();
    let r: DescribeTransactionsResponse = conn.call(ApiKey::DescribeTransactions, 0, &dt);
    let described: Vec<_> = r
        .transaction_states
        .iter()
        .map(|s| {
            let topics: Vec<_> =
                s.topics.iter().map(|t| (t.topic.to_string(), t.partitions.clone())).collect();
            (
                s.error_code,
                s.transaction_state.to_string(),
                s.transaction_timeout_ms,
                s.producer_epoch,
                topics,
            )
        })
        .collect();
    log("describe transactions", &described);
    let mut dp = DescribeProducersRequest::default();
    dp.topics = [(t.as_str(), vec![0, 1]), (nosuch.as_str(), vec![0])]
        .into_iter()
        .map(|(n, ps)| {
            let mut tr = kafka_protocol::messages::describe_producers_request::TopicRequest::default();
            tr.name = name(n);
            tr.partition_indexes = ps;
            tr
        })
        .collect();
    let r: DescribeProducersResponse = conn.call(ApiKey::DescribeProducers, 0, &dp);
    let producers: Vec<_> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let states: Vec<_> = p
                    .active_producers
                    .iter()
                    .map(|s| {
                        (s.producer_epoch, s.last_sequence, s.coordinator_epoch, s.current_txn_start_offset)
                    })
                    .collect();
                (t.name.to_string(), p.partition_index, p.error_code, states)
            })
        })
        .collect();
    log("describe producers", &producers);
    out.replace(tag, "<tag>")
}

/// Broker configs each broker sets for itself, whose values are its own:
/// the reference broker's `server.properties` (`scripts/kafka-ref.sh`), and
/// what Strata always sets or the test sets. Their names, types and
/// sensitivity are still compared.
const OWN_SETTINGS: &[&str] = &[
    "advertised.listeners",
    "auto.create.topics.enable",
    "broker.id",
    "controller.listener.names",
    "controller.quorum.bootstrap.servers",
    "group.initial.rebalance.delay.ms",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "listeners",
    "log.dirs",
    "node.id",
    "num.partitions",
    "offsets.topic.replication.factor",
    "process.roles",
    "share.coordinator.state.topic.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.replication.factor",
];

/// The broker resource's configs (and the cluster-default resource's) as
/// lines, one config each, in name order. `read_only` is left out: every broker config is
/// read-only in Strata (checked by the test), where Kafka can change some
/// at run time.
fn broker_configs(addr: &str, _tag: &str) -> String {
    let mut conn = Conn::open(addr);
    let node = node_id(&mut conn).to_string();
    let mut out = String::new();
    for resource in [node.as_str(), ""] {
        let resp = describe_configs(&mut conn, 4, resource);
        for r in &resp.results {
            out +=
                &format!("resource {:?} error {} {:?}\n", resource.is_empty(), r.error_code, r.error_message);
            // A config map: its order means nothing (Kafka's is a hash map's).
            let mut configs: Vec<_> = r.configs.iter().collect();
            configs.sort_by(|a, b| a.name.cmp(&b.name));
            for c in configs {
                let head = format!("{} type={} sensitive={}", c.name, c.config_type, c.is_sensitive);
                if OWN_SETTINGS.contains(&c.name.as_str()) {
                    out += &format!("{head} <own setting>\n");
                    continue;
                }
                let synonyms: Vec<String> =
                    c.synonyms.iter().map(|s| format!("{}={:?}@{}", s.name, s.value, s.source)).collect();
                out +=
                    &format!("{head} value={:?} source={} synonyms={synonyms:?}\n", c.value, c.config_source);
            }
        }
    }
    out
}

#[test]
fn create_topics_bad_input_matches_kafka() {
    same_on_both("CreateTopics", create_topics_with_bad_input);
}

#[test]
fn produce_bad_input_matches_kafka() {
    same_on_both("Produce", |addr, tag| render(&produce_answers(addr, tag), tag));
}

#[test]
fn create_partitions_bad_input_matches_kafka() {
    same_on_both("CreatePartitions", create_partitions_with_bad_input);
}

#[test]
fn stored_record_layout_matches_kafka() {
    same_on_both("record layout", record_layout);
}

#[test]
fn unknown_versions_match_kafka() {
    same_on_both("unknown versions", unknown_versions);
}

#[test]
fn transaction_apis_match_kafka() {
    same_on_both("transaction APIs", transaction_apis);
}

#[test]
fn partition_reassignments_match_kafka() {
    same_on_both("partition reassignments", partition_reassignments);
}

#[test]
fn transaction_version_2_apis_match_kafka() {
    same_on_both("transaction version 2 APIs", transaction_v2_apis);
}

#[test]
fn group_migration_matches_kafka() {
    same_on_both("group migration", group_migration);
}

#[test]
fn group_apis_match_kafka() {
    same_on_both("group APIs", group_apis);
}

#[test]
fn consumer_group_apis_match_kafka() {
    same_on_both("consumer group APIs", consumer_group_apis);
}

#[test]
fn topic_configs_match_kafka() {
    same_on_both("topic configs", topic_configs);
}

/// Kafka's broker config names, types, sensitivity and defaults; Strata's
/// own settings, read-only, where it has them.
#[test]
fn broker_configs_match_kafka() {
    same_on_both("broker configs", broker_configs);
    // Strata's own values, as explicit expectations.
    let strata = BrokerProcess::start_with(&["--auto-create-topics", "false"]);
    let mut conn = Conn::open(&strata.addr);
    let node = node_id(&mut conn).to_string();
    let resp = describe_configs(&mut conn, 4, &node);
    let configs = &resp.results[0].configs;
    assert!(configs.len() > 300, "Kafka's ~316 broker configs, got {}", configs.len());
    assert!(configs.iter().all(|c| c.read_only), "every broker config is read-only in Strata");
    let get = |name: &str| {
        let c = configs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("{name} listed"));
        (c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), c.config_source)
    };
    const STATIC: i8 = 4;
    assert_eq!(get("node.id"), (node.clone(), STATIC));
    assert_eq!(get("broker.id"), (node, STATIC));
    assert_eq!(get("advertised.listeners"), (format!("PLAINTEXT://{}", strata.addr), STATIC));
    assert_eq!(get("listeners"), (format!("PLAINTEXT://{}", strata.addr), STATIC));
    assert_eq!(get("auto.create.topics.enable"), ("false".into(), STATIC));
    assert_eq!(get("log.flush.interval.messages"), ("1".into(), STATIC));
    assert_eq!(get("log.dirs").1, STATIC);
    assert_eq!(get("num.partitions"), ("1".into(), 5), "equal to Kafka's default: DEFAULT_CONFIG");
}

/// The harness itself: Kafka against Kafka is equal, and a changed answer is caught.
#[test]
fn the_harness_finds_no_difference_between_kafka_and_itself_and_catches_a_change() {
    let kafka = RefBroker::get();
    let (tag_a, tag_b) = (topic("diff"), topic("diff"));
    let a = produce_answers(&kafka.bootstrap, &tag_a);
    let b = produce_answers(&kafka.bootstrap, &tag_b);
    let diff = differences(&render(&a, &tag_a), &render(&b, &tag_b));
    assert!(diff.is_empty(), "Kafka differs from itself:\n{}", diff.join("\n"));
    let mut changed = b.clone();
    changed[1].responses[0].partition_responses[0].error_code = 0;
    let diff = differences(&render(&a, &tag_a), &render(&changed, &tag_b));
    assert_eq!(diff.len(), 1, "exactly the changed error code is reported: {diff:?}");
    assert!(diff[0].contains("error_code"), "{diff:?}");
    for scenario in [
        create_topics_with_bad_input as fn(&str, &str) -> String,
        create_partitions_with_bad_input,
        record_layout,
        topic_configs,
        broker_configs,
        group_apis,
        consumer_group_apis,
    ] {
        let (x, y) = (topic("diff"), topic("diff"));
        let diff = differences(&scenario(&kafka.bootstrap, &x), &scenario(&kafka.bootstrap, &y));
        assert!(diff.is_empty(), "Kafka differs from itself:\n{}", diff.join("\n"));
    }
}
