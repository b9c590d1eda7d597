//! A Kafka Streams application with `processing.guarantee=exactly_once_v2`
//! and a state store (`tests/java/tools/EosStreams.java`: running sums per
//! key): across a kill -9 of the broker and a kill -9 of the Streams instance
//! (restarted with an empty state directory, so its store is rebuilt from
//! the compacted changelog), its output holds, per key, exactly the running
//! sums of the key's inputs, and its state is exact: the sums go on from
//! where they were.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::java::{Running, java_program};
use common::kafka::{admin, create_topic};
use common::{BrokerProcess, topic};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const KEYS: usize = 10;
const PARTITIONS: i32 = 2;

fn produce(addr: &str, topic: &str, from: usize, count: usize) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for i in from..from + count {
        let key = format!("k{}", i % KEYS);
        let value = (i + 1).to_string();
        p.send(BaseRecord::to(topic).key(&key).payload(&value)).map_err(|(e, _)| e).expect("send");
    }
    p.flush(Duration::from_secs(60)).expect("flush");
}

/// The expected running sums per key of inputs `0..n`.
fn running_sums(n: usize) -> BTreeMap<String, Vec<String>> {
    let mut sums: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for i in 0..n {
        let e = sums.entry(format!("k{}", i % KEYS)).or_default();
        e.0 += (i + 1) as u64;
        let s = e.0.to_string();
        e.1.push(s);
    }
    sums.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// The output per key as `read_committed` reads it, once `want` values are in.
fn read_output(addr: &str, topic: &str, want: usize, limit: Duration) -> BTreeMap<String, Vec<String>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strata-streams-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + limit;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n = 0;
    while n < want {
        assert!(Instant::now() < deadline, "read {n} of {want} outputs");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            out.entry(key)
                .or_default()
                .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
            n += 1;
        }
    }
    // Anything past `want` is a duplicate: read on for a moment.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            out.entry(key)
                .or_default()
                .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    out
}

fn streams(addr: &str, app: &str, input: &str, output: &str, state: &std::path::Path) -> Running {
    let run = Running::start(java_program(
        "EosStreams.java",
        &[addr, app, input, output, &state.to_string_lossy()],
    ));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.lines().iter().any(|l| l == "RUNNING") {
        assert!(Instant::now() < deadline, "Streams did not start: {:?}", run.lines());
        std::thread::sleep(Duration::from_millis(100));
    }
    run
}

#[test]
fn a_streams_exactly_once_application_is_exact_across_kill_9s() {
    let mut broker = BrokerProcess::start_with(&["--transaction-abort-check-interval-ms", "1000"]);
    let (input, output, app) = (topic("eos-in"), topic("eos-out"), topic("eos-app"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(create_topic(&broker.addr, &input, PARTITIONS));
    rt.block_on(create_topic(&broker.addr, &output, PARTITIONS));
    let state = tempfile::tempdir().expect("state dir");
    let first = 2_000;
    produce(&broker.addr, &input, 0, first);
    let mut run = streams(&broker.addr, &app, &input, &output, state.path());
    // Kill the broker while Streams processes (its transactions open).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no output: {:?}", run.lines().last());
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &broker.addr).create().expect("consumer");
        let (_, end) = c.fetch_watermarks(&output, 0, Duration::from_secs(10)).unwrap_or((0, 0));
        if end > 100 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.restart_same_port();
    // Then the Streams instance itself, restarted with an empty state
    // directory: its store is rebuilt from the changelog.
    std::thread::sleep(Duration::from_millis(500));
    run.kill9();
    let fresh = tempfile::tempdir().expect("state dir");
    let run = streams(&broker.addr, &app, &input, &output, fresh.path());
    let second = 1_000;
    produce(&broker.addr, &input, first, second);
    let want = running_sums(first + second);
    let got = read_output(&broker.addr, &output, first + second, Duration::from_secs(240));
    for (key, sums) in &want {
        assert_eq!(
            got.get(key),
            Some(sums),
            "key {key}: every input once, in order, sums continued from the state"
        );
    }
    assert_eq!(got.len(), want.len(), "no other keys");
    // The store's changelog is a compacted topic.
    let changelog = format!("{app}-sums-changelog");
    let configs = rt
        .block_on(
            admin(&broker.addr)
                .describe_configs(&[ResourceSpecifier::Topic(&changelog)], &AdminOptions::new()),
        )
        .expect("describe configs");
    let resource = configs.into_iter().next().expect("one resource").expect("the changelog's configs");
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"), "{changelog} is compacted");
    drop(run);
}
