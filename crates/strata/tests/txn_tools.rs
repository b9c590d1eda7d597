//! Kafka's own exactly-once tools against Strata: `kafka-verifiable-producer`
//! feeds an input topic, Kafka's `TransactionalMessageCopier` (the tool of
//! Kafka's exactly-once system tests) copies it transactionally, with random
//! aborts, across a kill -9 of the broker, and a `read_committed` reader
//! checks that every input message is in the output exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::java::{Running, kafka_tool};
use common::kafka::{create_topic, read_partition_to_end};
use common::{BrokerProcess, topic};

/// A field of the tools' one-line JSON output (`"name":value`).
fn json_field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &line[start..];
    let value = rest.trim_start_matches('"');
    let end = value.find(['"', ',', '}']).unwrap_or(value.len());
    Some(value[..end].to_string())
}

/// Every value of partition 0 up to its end, read at `isolation`.
fn read_values(addr: &str, topic: &str, isolation: &str) -> Vec<String> {
    read_partition_to_end(addr, topic, isolation).into_iter().map(|(_, v)| v).collect()
}

#[test]
fn the_transactional_message_copier_copies_exactly_once_across_a_kill_9() {
    let mut broker = BrokerProcess::start_with(&["--transaction-abort-check-interval-ms", "1000"]);
    let (input, output) = (topic("copier-in"), topic("copier-out"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(create_topic(&broker.addr, &input, 1));
    rt.block_on(create_topic(&broker.addr, &output, 1));
    let messages = 20_000;
    let mut feeder = Running::start(kafka_tool(
        "org.apache.kafka.tools.VerifiableProducer",
        &[
            "--bootstrap-server",
            &broker.addr,
            "--topic",
            &input,
            "--max-messages",
            &messages.to_string(),
            "--acks",
            "-1",
        ],
    ));
    let status = feeder.wait(Duration::from_secs(180)).expect("the verifiable producer finished");
    assert!(status.success(), "kafka-verifiable-producer failed: {status}");
    let acked: BTreeSet<String> = feeder
        .lines()
        .iter()
        .filter(|l| json_field(l, "name").as_deref() == Some("producer_send_success"))
        .filter_map(|l| json_field(l, "value"))
        .collect();
    assert_eq!(acked.len(), messages, "every input message acknowledged");

    let copier = |addr: &str| {
        Running::start(kafka_tool(
            "org.apache.kafka.tools.TransactionalMessageCopier",
            &[
                "--broker-list",
                addr,
                "--input-topic",
                &input,
                "--input-partition",
                "0",
                "--output-topic",
                &output,
                "--transactional-id",
                "strata-copier",
                "--consumer-group",
                "strata-copier",
                "--transaction-size",
                "100",
                "--transaction-timeout",
                "10000",
                "--enable-random-aborts",
                "--use-group-metadata",
            ],
        ))
    };
    let remaining = |run: &Running| {
        run.lines().iter().rev().find_map(|l| json_field(l, "remaining")).and_then(|r| r.parse::<i64>().ok())
    };
    let mut run = copier(&broker.addr);
    // Kill the broker once the copier is a quarter through, with its
    // transactions in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining(&run).is_none_or(|r| r > (messages as i64) * 3 / 4) {
        assert!(Instant::now() < deadline, "the copier made no progress: {:?}", run.lines().last());
        std::thread::sleep(Duration::from_millis(50));
    }
    let before_kill = remaining(&run);
    broker.restart_same_port(); // kill -9, then the same data and port
    // The copier rides through the restart or dies of it (a fatal error of
    // its producer); a new instance with the same transactional id fences
    // the old one and resumes from the committed offsets.
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = run.wait(deadline.saturating_duration_since(Instant::now()));
        assert!(status.is_some(), "the copier did not finish: {:?}", run.lines().last());
        if status.is_some_and(|s| s.success()) && remaining(&run) == Some(0) {
            break;
        }
        restarts += 1;
        assert!(restarts <= 5, "the copier failed {restarts} times: {:?}", run.lines().last());
        run = copier(&broker.addr);
    }
    println!("copier: {before_kill:?} remaining at the kill, {restarts} restarts after it");

    let copied = read_values(&broker.addr, &output, "read_committed");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &copied {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "copied more than once: {twice:?}");
    let input_values: BTreeSet<String> =
        read_values(&broker.addr, &input, "read_uncommitted").into_iter().collect();
    let copied: BTreeSet<String> = copied.into_iter().collect();
    assert_eq!(copied, input_values, "the output is the input, each message once");
    assert!(acked.is_subset(&copied), "every acknowledged input message was copied");
    // The random aborts left aborted data that read_uncommitted sees.
    let all = read_values(&broker.addr, &output, "read_uncommitted");
    println!("output: {} committed, {} in all", copied.len(), all.len());
}
