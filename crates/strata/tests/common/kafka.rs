//! Client helpers shared by the suites: admin, topic creation, a consumer that
//! assigns partitions (no group), and the exactly-once-in-order check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// An admin client.
pub fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", addr).create().expect("admin client")
}

/// Creates a topic and checks that it was created.
pub async fn create_topic(addr: &str, name: &str, partitions: i32) {
    let res = admin(addr)
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create_topics");
    res[0].as_ref().expect("topic created");
}

/// A consumer for `assign()`: librdkafka needs a group.id even when no group
/// is joined.
pub fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Assigns every partition of `name` to `c` from the beginning; returns the
/// total of the partitions' high watermarks.
pub fn assign_from_start(c: &BaseConsumer, name: &str, partitions: i32) -> i64 {
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in 0..partitions {
        tpl.add_partition_offset(name, p, Offset::Beginning).expect("tpl");
        total += c.fetch_watermarks(name, p, Duration::from_secs(10)).expect("watermarks").1;
    }
    c.assign(&tpl).expect("assign");
    total
}

/// Assigns every partition of `name` from the beginning; returns the consumer
/// and the total of the partitions' high watermarks.
pub fn assign_all(addr: &str, name: &str, partitions: i32) -> (BaseConsumer, i64) {
    let c = consumer(addr);
    let total = assign_from_start(&c, name, partitions);
    (c, total)
}

/// Reads `count` messages from `c` (assigned from the start) and checks that
/// partition `p` holds exactly the messages `i` (payload: the number) with
/// `i % partitions == p`, in increasing order, once each. `after` is called
/// with the number read so far after each message.
pub fn read_in_order(c: &BaseConsumer, partitions: i32, count: u64, mut after: impl FnMut(u64)) {
    let mut next: HashMap<i32, u64> = (0..partitions).map(|p| (p, p as u64)).collect();
    let mut got = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while got < count {
        assert!(Instant::now() < deadline, "read {got} of {count}");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("consume");
        let v: u64 =
            std::str::from_utf8(m.payload().expect("payload")).expect("utf8").parse().expect("number");
        let want = next.get_mut(&m.partition()).expect("partition");
        assert_eq!(v, *want, "partition {} offset {}: duplicate or gap", m.partition(), m.offset());
        *want += partitions as u64;
        got += 1;
        after(got);
    }
}

/// Reads every partition to its end and checks that partition `p` holds
/// exactly the messages `i` (payload: the number) with `i % partitions == p`,
/// in increasing order, once each, and that `count` were stored.
pub fn assert_exactly_once_in_order(addr: &str, name: &str, partitions: i32, count: u64) {
    let (c, total) = assign_all(addr, name, partitions);
    assert_eq!(total as u64, count, "stored {total} messages for {count} sent");
    read_in_order(&c, partitions, count, |_| {});
}

/// Every `(key, value)` of partition 0 of `topic` from its start to its end
/// at the time of the call, read at `isolation` (`read_committed` or
/// `read_uncommitted`). Control records are never delivered, so the end is
/// told by the position, not by the last record.
pub fn read_partition_to_end(addr: &str, topic: &str, isolation: &str) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strata-read-to-end")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let (_, end) = c.fetch_watermarks(topic, 0, Duration::from_secs(30)).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "read {} records of {topic} to {end}", out.len());
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
            out.push((key, String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()));
        }
        let position = c.position().ok().and_then(|t| t.elements().first().map(|e| e.offset()));
        if let Some(Offset::Offset(p)) = position
            && p >= end
        {
            return out;
        }
    }
}
