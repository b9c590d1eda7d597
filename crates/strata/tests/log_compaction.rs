//! Log compaction with real clients (librdkafka through `rdkafka`): a
//! compacted topic keeps the latest value of each key at its original offset
//! while producers and consumers go on; tombstones go after
//! `delete.retention.ms`; a record without a key is INVALID_RECORD; the
//! offsets stream `__consumer_offsets` is compacted too, and a restarted broker
//! rebuilds the latest commits from what is left; the data of aborted
//! transactions is discarded as Kafka's cleaner discards it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::kafka::{admin, consumer, read_partition_to_end};
use common::{BrokerProcess, topic};
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const KEYS: usize = 10;

fn broker() -> BrokerProcess {
    BrokerProcess::start_with(&["--upload-interval-ms", "100", "--log-cleaner-backoff-ms", "200"])
}

fn producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

async fn create_compacted(addr: &str, name: &str, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(addr).create_topics(&[t], &AdminOptions::new()).await.expect("create_topics");
    res[0].as_ref().expect("topic created");
}

/// Every record of partition 0 from its start to `end`: `(offset, key, value)`.
fn read_all(c: &BaseConsumer, name: &str, end: i64) -> Vec<(i64, String, Option<String>)> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if out.last().is_some_and(|(o, _, _): &(i64, String, Option<String>)| *o + 1 >= end) {
            return out;
        }
        assert!(Instant::now() < deadline, "read up to {:?} of {end}", out.last().map(|r| r.0));
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("message");
        let key = String::from_utf8_lossy(m.key().expect("every record has a key")).to_string();
        let value = m.payload().map(|v| String::from_utf8_lossy(v).to_string());
        out.push((m.offset(), key, value));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_topic_keeps_the_latest_value_of_each_key_at_its_offset() {
    let broker = broker();
    let name = topic("compacted");
    create_compacted(
        &broker.addr,
        &name,
        &[("segment.ms", "100"), ("min.cleanable.dirty.ratio", "0.01"), ("delete.retention.ms", "0")],
    )
    .await;
    let p = producer(&broker.addr);
    // What was written at each offset, and the latest offset of each key.
    let mut written: BTreeMap<i64, (String, Option<String>)> = BTreeMap::new();
    let mut latest: HashMap<String, i64> = HashMap::new();
    let c = consumer(&broker.addr);
    for round in 0..30 {
        for k in 0..KEYS {
            let key = format!("k{k}");
            // Keys 0-2 are deleted in round 20 (and never written again).
            if k < 3 && round > 20 {
                continue;
            }
            let value = (!(k < 3 && round == 20)).then(|| format!("v{round}"));
            let mut rec = FutureRecord::to(&name).key(&key).partition(0);
            if let Some(v) = &value {
                rec = rec.payload(v);
            }
            let offset = p.send(rec, Duration::from_secs(10)).await.expect("produced").offset;
            written.insert(offset, (key.clone(), value));
            latest.insert(key, offset);
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        if round % 10 == 9 {
            // Reads go on during compaction and see no offset moved.
            let end = written.keys().next_back().copied().unwrap_or(0) + 1;
            let got = read_all(&c, &name, end);
            for (o, k, v) in &got {
                assert_eq!(
                    written.get(o),
                    Some(&(k.clone(), v.clone())),
                    "offset {o} holds what was written there"
                );
            }
        }
    }
    let end = written.keys().next_back().copied().unwrap_or(0) + 1;
    // Compaction runs in the background: wait until everything but the
    // active segment is compacted (each key at most once there).
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = read_all(&c, &name, end);
        let cleaned_tail = got.iter().filter(|(o, _, _)| *o < end - (KEYS as i64) * 3).count();
        if cleaned_tail <= KEYS {
            break got;
        }
        assert!(Instant::now() < deadline, "still {cleaned_tail} records outside the last rounds: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(got.len() < written.len() / 3, "compacted: {} of {} records left", got.len(), written.len());
    let mut offsets = got.iter().map(|r| r.0).collect::<Vec<_>>();
    offsets.dedup();
    assert_eq!(offsets.len(), got.len(), "each offset once");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in offset order");
    for (o, k, v) in &got {
        assert_eq!(written.get(o), Some(&(k.clone(), v.clone())), "offset {o} holds what was written there");
    }
    // Every live key's latest value is there, at its offset; the deleted keys
    // are gone (tombstones older than delete.retention.ms=0 included).
    for k in 3..KEYS {
        let key = format!("k{k}");
        let at = latest[&key];
        assert!(
            got.iter().any(|(o, gk, _)| *o == at && *gk == key),
            "{key}'s latest record (offset {at}) kept"
        );
    }
    for k in 0..3 {
        let key = format!("k{k}");
        assert!(got.iter().all(|(_, gk, _)| *gk != key), "{key} deleted: {got:?}");
    }
    // The offsets the partition reports are unchanged.
    let (low, high) = c.fetch_watermarks(&name, 0, Duration::from_secs(10)).expect("watermarks");
    assert_eq!((low, high), (0, end));
    assert!(broker.metric("strata_log_compaction_ranges_total").is_some_and(|n| n >= 1.0));
}

/// Kafka's cleaner discards the data of aborted transactions: once the
/// partition is compacted, not even `read_uncommitted` sees them, and
/// `read_committed` sees the latest committed value of each key.
#[tokio::test(flavor = "multi_thread")]
async fn compaction_discards_the_data_of_aborted_transactions() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let broker = broker();
    let name = topic("compacted-txn");
    create_compacted(&broker.addr, &name, &[("segment.ms", "100"), ("min.cleanable.dirty.ratio", "0.01")])
        .await;
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("transactional.id", format!("{name}-tx"))
        .create()
        .expect("transactional producer");
    let timeout = Duration::from_secs(30);
    p.init_transactions(timeout).expect("init");
    let txn = |keys: std::ops::Range<usize>, value: &str, commit: bool| {
        p.begin_transaction().expect("begin");
        for k in keys {
            let key = format!("k{k}");
            p.send(BaseRecord::to(&name).partition(0).key(&key).payload(value))
                .map_err(|(e, _)| e)
                .expect("send");
        }
        p.flush(timeout).expect("flush");
        if commit {
            p.commit_transaction(timeout).expect("commit");
        } else {
            p.abort_transaction(timeout).expect("abort");
        }
    };
    txn(0..5, "c1", true);
    txn(5..10, "aborted", false);
    txn(0..5, "c2", true);
    let before = read_partition_to_end(&broker.addr, &name, "read_uncommitted");
    // They were stored: seen, or (the cleaner, at segment.ms 100, may have
    // discarded them already) their offsets taken: 15 records, 3 markers.
    let aborted = before.iter().filter(|(_, v)| v == "aborted").count();
    let (_, end) =
        consumer(&broker.addr).fetch_watermarks(&name, 0, Duration::from_secs(10)).expect("watermarks");
    assert!(
        aborted == 5 || (aborted == 0 && end >= 18),
        "the aborted records are stored: {aborted} seen, end {end}"
    );
    // Later rounds roll the segments that hold them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 3;
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        txn(0..5, &format!("c{round}"), true);
        round += 1;
        let all = read_partition_to_end(&broker.addr, &name, "read_uncommitted");
        if all.iter().all(|(_, v)| v != "aborted") {
            break;
        }
        assert!(Instant::now() < deadline, "the aborted records were never discarded: {all:?}");
    }
    let committed = read_partition_to_end(&broker.addr, &name, "read_committed");
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &committed {
        latest.insert(k.clone(), v.clone());
    }
    let want: BTreeMap<String, String> =
        (0..5).map(|k| (format!("k{k}"), format!("c{}", round - 1))).collect();
    assert_eq!(latest, want, "the latest committed value of each key, nothing of the aborted one");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_a_key_on_a_compacted_topic_is_invalid_record() {
    let broker = broker();
    let name = topic("compacted-keyless");
    create_compacted(&broker.addr, &name, &[]).await;
    let p = producer(&broker.addr);
    let err = p
        .send(FutureRecord::<(), _>::to(&name).payload("no key").partition(0), Duration::from_secs(10))
        .await
        .expect_err("refused");
    assert!(matches!(err.0, KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)), "{err:?}");
    p.send(FutureRecord::to(&name).key("k").payload("keyed").partition(0), Duration::from_secs(10))
        .await
        .expect("a keyed record is taken");
    let c = consumer(&broker.addr);
    assert_eq!(c.fetch_watermarks(&name, 0, Duration::from_secs(10)).expect("watermarks"), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_offsets_stream_is_compacted_and_commits_survive_it_and_a_restart() {
    let mut broker = broker();
    let name = topic("commits");
    common::kafka::create_topic(&broker.addr, &name, 1).await;
    let p = producer(&broker.addr);
    for i in 0..10 {
        p.send(
            FutureRecord::to(&name).key("k").payload(&format!("{i}")).partition(0),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    }
    let group = topic("g");
    let c = committer_with_fast_rolling_offsets(&broker.addr, &name, &group, "100").await;
    let partition = java_hash_partition(&group);
    let commits = 300;
    for i in 1..=commits {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&name, 0, Offset::Offset(i % 10 + 1)).expect("tpl");
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        if i % 30 == 0 {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    }
    let last = commits % 10 + 1;
    // The group's offsets partition shrinks to about its active segment.
    let reader = consumer(&broker.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, high) =
            reader.fetch_watermarks("__consumer_offsets", partition, Duration::from_secs(10)).expect("wm");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("__consumer_offsets", partition, Offset::Beginning).expect("tpl");
        reader.assign(&tpl).expect("assign");
        let mut records = 0;
        let mut at = -1;
        let read_deadline = Instant::now() + Duration::from_secs(20);
        while at + 1 < high && Instant::now() < read_deadline {
            if let Some(m) = reader.poll(Duration::from_millis(200)) {
                at = m.expect("record").offset();
                records += 1;
            }
        }
        if records < commits / 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets-{partition} still holds {records} of {high} records"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(c);
    broker.restart(); // kill -9
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&name, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(30)).expect("committed");
    assert_eq!(got.find_partition(&name, 0).map(|e| e.offset()), Some(Offset::Offset(last)));
}

/// A member of `group` that has committed once (so `__consumer_offsets`
/// exists), after which the offsets topic rolls its segments every
/// `segment_ms` with any dirty ratio (Kafka allows altering its configs too).
async fn committer_with_fast_rolling_offsets(
    addr: &str,
    name: &str,
    group: &str,
    segment_ms: &str,
) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Offset(0)).expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("first commit");
    let alter = AlterConfig::new(ResourceSpecifier::Topic("__consumer_offsets"))
        .set("segment.ms", segment_ms)
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "104857600")
        .set("compression.type", "producer");
    let res = admin(addr).alter_configs(&[alter], &AdminOptions::new()).await.expect("alter");
    res[0].as_ref().expect("altered");
    c
}

/// Kafka's partition of a group in `__consumer_offsets` (50 partitions).
fn java_hash_partition(group: &str) -> i32 {
    let h = group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (if h == i32::MIN { 0 } else { h.abs() }) % 50
}

/// The size of `__consumer_offsets` partition `partition`, from DescribeLogDirs.
fn offsets_partition_bytes(addr: &str, partition: i32) -> i64 {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut conn = common::conn::Conn::open(addr);
    let mut t = DescribableLogDirTopic::default();
    t.topic = TopicName(StrBytes::from_static_str("__consumer_offsets"));
    t.partitions = vec![partition];
    let mut req = DescribeLogDirsRequest::default();
    req.topics = Some(vec![t]);
    let resp: DescribeLogDirsResponse = conn.call(ApiKey::DescribeLogDirs, 4, &req);
    resp.results
        .iter()
        .flat_map(|d| d.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .map(|p| p.partition_size)
        .expect("the partition's size")
}

/// Slow tier: a commit storm (`STRATA_COMMIT_STORM_SECS`, 1200 by default)
/// against one group's offsets partition, whose segments roll every 10 s:
/// the partition's size stays flat (compaction keeps up), and after the storm
/// and a kill -9 the group's commits are the last ones made.
#[tokio::test(flavor = "multi_thread")]
async fn slow_a_commit_storm_keeps_the_offsets_stream_flat() {
    let secs: u64 =
        std::env::var("STRATA_COMMIT_STORM_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1200);
    let mut broker =
        BrokerProcess::start_with(&["--upload-interval-ms", "500", "--log-cleaner-backoff-ms", "1000"]);
    let name = topic("storm");
    common::kafka::create_topic(&broker.addr, &name, 8).await;
    let group = topic("storm-g");
    let c = committer_with_fast_rolling_offsets(&broker.addr, &name, &group, "10000").await;
    let partition = java_hash_partition(&group);
    let started = Instant::now();
    let mut samples: Vec<(u64, i64, i64)> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut commits: i64 = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let mut tpl = TopicPartitionList::new();
        for p in 0..8 {
            tpl.add_partition_offset(&name, p, Offset::Offset(commits + i64::from(p))).expect("tpl");
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        commits += 1;
        if started.elapsed() >= next_sample {
            let bytes = offsets_partition_bytes(&broker.addr, partition);
            samples.push((started.elapsed().as_secs(), commits, bytes));
            eprintln!(
                "storm: {}s {commits} commits, __consumer_offsets-{partition} {bytes} bytes",
                started.elapsed().as_secs()
            );
            next_sample += Duration::from_secs((secs / 40).max(5));
        }
    }
    // Flat: the size saws up and down as segments roll and are compacted,
    // and what it holds follows the commit rate (the data of the segment not
    // yet rolled plus what the cleaner has not reached), not the number of
    // commits so far. So each sample is divided by the commit rate since the
    // one before (bytes per commit/s: about the seconds of commits held), and
    // the largest of the run's last fifth is at most twice the largest of its
    // second fifth; steady growth with the commits would triple it. (Raw
    // medians and troughs failed on a bounded stream when the machine's load,
    // and with it the commit rate, changed during the run.)
    let held: Vec<(u64, f64)> = samples
        .windows(2)
        .filter_map(|w| {
            let ((t0, c0, _), (t1, c1, bytes)) = (w[0], w[1]);
            let rate = (c1 - c0) as f64 / (t1.saturating_sub(t0)).max(1) as f64;
            (rate > 0.0).then_some((t1, bytes as f64 / rate))
        })
        .collect();
    let peak = |from: u64, to: u64| {
        held.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, h)| *h).fold(0.0_f64, f64::max)
    };
    let (early, late) = (peak(secs / 5, 2 * secs / 5), peak(4 * secs / 5, secs + 1));
    let max_bytes = samples.iter().map(|s| s.2).max().unwrap_or(0);
    eprintln!(
        "storm: {commits} commits; at most {early:.0} then {late:.0} bytes per commit/s; largest {max_bytes} bytes"
    );
    assert!(early > 0.0, "samples taken: {samples:?}");
    assert!(late <= 2.0 * early, "the offsets stream grew with the commits: {samples:?}");
    drop(c);
    broker.restart(); // kill -9
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..8 {
        tpl.add_partition(&name, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(30)).expect("committed");
    for p in 0..8 {
        let want = Offset::Offset(commits - 1 + i64::from(p));
        assert_eq!(got.find_partition(&name, p).map(|e| e.offset()), Some(want), "partition {p}");
    }
}
