//! Consumer groups through the `rdkafka` crate (librdkafka) and raw
//! requests: committed offsets survive kill -9 (file WAL) and a brand-new
//! process with an empty data dir (object WAL on s3s-fs), and a group consumer
//! resumes exactly after them; a consumer-protocol (KIP-848) member keeps its
//! epoch and partitions across a kill -9 of the coordinator; the group APIs'
//! answers to bad input match the reference Kafka broker's.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::conn::Conn;
use common::kafka::create_topic;
use common::s3::S3Server;
use common::{BrokerProcess, topic};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const RECORDS: i64 = 300;

fn group_consumer(addr: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer")
}

async fn produce(addr: &str, name: &str) {
    let p: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", addr).set("acks", "all").create().expect("producer");
    for i in 0..RECORDS {
        let v = format!("v{i}");
        let part = (i % i64::from(PARTITIONS)) as i32;
        p.send(FutureRecord::<(), _>::to(name).partition(part).payload(&v), Duration::from_secs(10))
            .await
            .expect("produced");
    }
}

/// Consumes `count` records in the group, committing each synchronously;
/// returns the committed position per partition.
fn consume_and_commit(c: &BaseConsumer, name: &str, count: usize) -> HashMap<i32, i64> {
    c.subscribe(&[name]).expect("subscribe");
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < count {
        assert!(Instant::now() < deadline, "consumed only {seen} of {count}");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("message");
        c.commit_message(&m, CommitMode::Sync).expect("commit");
        next.insert(m.partition(), m.offset() + 1);
        seen += 1;
    }
    next
}

/// After a restart: the committed offsets are as before, and a new member
/// of the group starts each partition exactly at them.
fn resumes_exactly_after(addr: &str, name: &str, group: &str, committed: &HashMap<i32, i64>) {
    let c = group_consumer(addr, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(name, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(30)).expect("committed");
    for p in 0..PARTITIONS {
        let want = committed.get(&p).map(|o| Offset::Offset(*o)).unwrap_or(Offset::Invalid);
        assert_eq!(got.find_partition(name, p).map(|e| e.offset()), Some(want), "partition {p}");
    }
    c.subscribe(&[name]).expect("subscribe");
    let mut first: HashMap<i32, i64> = HashMap::new();
    let mut rest = 0i64;
    let expected_rest = RECORDS - committed.values().sum::<i64>();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rest < expected_rest {
        assert!(Instant::now() < deadline, "read {rest} of the {expected_rest} uncommitted");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("message");
        first.entry(m.partition()).or_insert(m.offset());
        rest += 1;
    }
    for (p, o) in &first {
        assert_eq!(Some(o), committed.get(p).or(Some(&0)), "partition {p} resumed at its commit");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_survive_kill_9_and_the_group_resumes_after_them() {
    let mut broker = BrokerProcess::start();
    let name = topic("groups-kill");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    produce(&broker.addr, &name).await;
    let group = topic("g");
    let committed = {
        let c = group_consumer(&broker.addr, &group);
        consume_and_commit(&c, &name, 120)
    };
    broker.restart(); // kill -9, then the same data dir
    resumes_exactly_after(&broker.addr, &name, &group, &committed);
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_live_in_the_bucket_for_a_process_with_an_empty_disk() {
    let s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    let flags = ["--object-store", "s3://strata-bucket/groups", "--wal", "object", "--wal-flush-ms", "10"];
    let mut first = BrokerProcess::start_with_env(&flags, &envs);
    let name = topic("groups-s3");
    create_topic(&first.addr, &name, PARTITIONS).await;
    produce(&first.addr, &name).await;
    let group = topic("g");
    let committed = {
        let c = group_consumer(&first.addr, &group);
        consume_and_commit(&c, &name, 150)
    };
    first.kill9();
    let second = BrokerProcess::start_with_env(&flags, &envs);
    resumes_exactly_after(&second.addr, &name, &group, &committed);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_lag_per_group_and_partition_and_errors_by_api_and_code() {
    let broker = BrokerProcess::start();
    let name = topic("groups-lag");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    produce(&broker.addr, &name).await;
    let group = topic("g");
    let committed = {
        let c = group_consumer(&broker.addr, &group);
        consume_and_commit(&c, &name, 120)
    };
    assert!(!committed.is_empty(), "the member committed");
    let per_partition = RECORDS / i64::from(PARTITIONS);
    for p in 0..PARTITIONS {
        let labels = format!("{{group=\"{group}\",topic=\"{name}\",partition=\"{p}\"}}");
        let offset = committed.get(&p).copied().unwrap_or(0);
        if committed.contains_key(&p) {
            assert_eq!(
                broker.metric(&format!("strata_consumer_group_committed_offset{labels}")),
                Some(offset as f64),
                "partition {p}"
            );
            assert_eq!(
                broker.metric(&format!("strata_consumer_group_lag{labels}")),
                Some((per_partition - offset) as f64),
                "partition {p}"
            );
        }
    }
    // An error answer is counted by API and Kafka's error name: a new
    // member's first join is answered MEMBER_ID_REQUIRED (KIP-394).
    let sample = "strata_request_errors_total{api=\"JoinGroup\",error=\"MemberIdRequired\"}";
    let before = broker.metric(sample).unwrap_or(0.0);
    let c = group_consumer(&broker.addr, &topic("g"));
    c.subscribe(&[name.as_str()]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker.metric(sample).is_none_or(|n| n <= before) {
        assert!(Instant::now() < deadline, "no JoinGroup error counted");
        let _ = c.poll(Duration::from_millis(100));
    }
}

/// One OffsetCommit of many partitions is one batch of records: after kill
/// -9 every partition's latest commit is back (a regression: the batch was
/// once stored as several, and a restart brought back older commits).
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_of_many_partitions_survives_kill_9_whole() {
    let mut broker = BrokerProcess::start();
    let name = topic("groups-many");
    create_topic(&broker.addr, &name, 8).await;
    let group = topic("g");
    let c = group_consumer(&broker.addr, &group);
    for round in 1..=3i64 {
        let mut tpl = TopicPartitionList::new();
        for p in 0..8 {
            tpl.add_partition_offset(&name, p, Offset::Offset(round * 100 + i64::from(p))).expect("tpl");
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    drop(c);
    broker.restart(); // kill -9, then the same data dir
    let c = group_consumer(&broker.addr, &group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..8 {
        tpl.add_partition(&name, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(30)).expect("committed");
    for p in 0..8 {
        let want = Offset::Offset(300 + i64::from(p));
        assert_eq!(got.find_partition(&name, p).map(|e| e.offset()), Some(want), "partition {p}");
    }
}

/// Every rebalance callback a consumer gets, as text.
#[derive(Default)]
struct Rebalances(Mutex<Vec<String>>);

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{rebalance:?}"));
    }
}

/// A consumer-protocol group's members as ConsumerGroupDescribe shows
/// them: (member id, member epoch, assigned partition count), and the
/// group epoch.
fn describe_consumer_group(addr: &str, group: &str) -> (i32, Vec<(String, i32, usize)>) {
    let mut conn = Conn::open(addr);
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let r: ConsumerGroupDescribeResponse = conn.call(ApiKey::ConsumerGroupDescribe, 1, &req);
    let g = r.groups.first().expect("one group");
    if g.error_code == 69 {
        return (0, Vec::new()); // GROUP_ID_NOT_FOUND: no member joined yet
    }
    assert_eq!(g.error_code, 0, "describe {group}");
    let members = g
        .members
        .iter()
        .map(|m| {
            let n = m.assignment.topic_partitions.iter().map(|t| t.partitions.len()).sum();
            (m.member_id.to_string(), m.member_epoch, n)
        })
        .collect();
    (g.group_epoch, members)
}

/// KIP-848 state lives in `__consumer_offsets` (Kafka's ConsumerGroup*
/// records): a member that keeps heartbeating across a kill -9 of its
/// coordinator is still known after the restart, at the same epoch with
/// the same partitions, so librdkafka sees no rebalance and goes on
/// consuming and committing where it was; a member that left before the
/// kill is gone after it.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_protocol_member_keeps_its_epoch_and_partitions_across_kill_9() {
    let mut broker = BrokerProcess::start();
    let name = topic("groups-848-kill");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    produce(&broker.addr, &name).await;
    let group = topic("g848");
    let c: BaseConsumer<Rebalances> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", &group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Rebalances::default())
        .expect("consumer");
    c.subscribe(&[name.as_str()]).expect("subscribe");
    // A second member joins and leaves before the kill.
    {
        let other: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("group.id", &group)
            .set("group.protocol", "consumer")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        other.subscribe(&[name.as_str()]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(60);
        while describe_consumer_group(&broker.addr, &group).1.len() < 2 {
            assert!(Instant::now() < deadline, "the second member did not join");
            let _ = other.poll(Duration::from_millis(50));
            let _ = c.poll(Duration::from_millis(50));
        }
        other.unsubscribe();
        let _ = other.poll(Duration::from_millis(100));
    }
    let mut seen: BTreeSet<(i32, i64)> = BTreeSet::new();
    let poll_until = |want: usize, seen: &mut BTreeSet<(i32, i64)>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < want {
            assert!(Instant::now() < deadline, "consumed {} of {want}", seen.len());
            let Some(m) = c.poll(Duration::from_millis(100)) else { continue };
            let m = match m {
                Ok(m) => m,
                // The kill -9 reaches the client as transport errors: it reconnects.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                )) => continue,
                Err(e) => panic!("consume: {e}"),
            };
            assert!(seen.insert((m.partition(), m.offset())), "{}/{} twice", m.partition(), m.offset());
            c.commit_message(&m, CommitMode::Sync).expect("commit at the member's epoch");
        }
    };
    poll_until(100, &mut seen);
    // Settled: one member, owning every partition, at the group's epoch.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let (epoch, members) = describe_consumer_group(&broker.addr, &group);
        if members.len() == 1 && members[0].2 == PARTITIONS as usize && members[0].1 == epoch {
            break (epoch, members);
        }
        assert!(Instant::now() < deadline, "the group did not settle: {members:?}");
        let _ = c.poll(Duration::from_millis(100)).map(|m| {
            let m = m.expect("message");
            seen.insert((m.partition(), m.offset()));
            c.commit_message(&m, CommitMode::Sync).expect("commit");
        });
    };
    let callbacks = c.context().0.lock().unwrap_or_else(|e| e.into_inner()).len();
    broker.restart_same_port(); // kill -9, same data dir, same port
    poll_until(RECORDS as usize, &mut seen);
    let after = describe_consumer_group(&broker.addr, &group);
    assert_eq!(after, before, "the same member at the same epochs, with the same partitions");
    let got = c.context().0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(got.len(), callbacks, "no rebalance after the restart: {got:?}");
}
