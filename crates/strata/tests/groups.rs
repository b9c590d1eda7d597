//! Consumer groups through the `rdkafka` crate (librdkafka) and raw
//! requests: committed offsets survive kill -9 (file WAL) and a brand-new
//! process with an empty data dir (object WAL on s3s-fs), and a group consumer
//! resumes exactly after them; the group APIs' answers to bad input match the
//! reference Kafka broker's.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::kafka::create_topic;
use common::s3::S3Server;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
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
