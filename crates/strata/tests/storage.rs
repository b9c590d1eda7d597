//! The single node's storage with real clients: data moves from the WAL into
//! objects and reads back from them; retention and DeleteRecords move the log
//! start offset and unreferenced objects are deleted; leader epochs survive a
//! restart and answer OffsetForLeaderEpoch.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BrokerProcess, topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", addr).create().expect("admin client")
}

async fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(addr).create_topics(&[t], &AdminOptions::new()).await.expect("create_topics");
    res[0].as_ref().expect("topic created");
}

fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "error")
        .create()
        .expect("consumer")
}

/// Payload of message `i`: its index, then bytes derived from it.
fn payload(i: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(&i.to_be_bytes());
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v
}

/// Produces `count` messages of `size` bytes round-robin over `partitions`,
/// waiting for every acknowledgement.
fn produce(addr: &str, name: &str, partitions: i32, count: u64, size: usize) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .expect("producer");
    for i in 0..count {
        let data = payload(i, size);
        let part = (i % partitions as u64) as i32;
        loop {
            match p.send(BaseRecord::<(), _>::to(name).partition(part).payload(&data)) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                        "send: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    assert_eq!(p.in_flight_count(), 0);
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn watermarks(addr: &str, name: &str, partition: i32) -> (i64, i64) {
    consumer(addr).fetch_watermarks(name, partition, Duration::from_secs(5)).expect("watermarks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_reads_back_from_objects_in_order() {
    // No tail cache, so once the WAL is uploaded every read must go to objects.
    let broker = BrokerProcess::start_with(&["--tail-cache-bytes", "0", "--upload-interval-ms", "200"]);
    let name = topic("gib");
    let partitions = 4;
    create_topic(&broker.addr, &name, partitions, &[]).await;
    let size = 16 * 1024;
    let count = (1u64 << 30) / size as u64;
    let (addr, n) = (broker.addr.clone(), name.clone());
    tokio::task::spawn_blocking(move || produce(&addr, &n, partitions, count, size)).await.expect("produce");

    // Everything reaches objects: every record carries at least 9 bytes of
    // framing besides its payload, so this much means all of them are there.
    let objects = broker.data_dir.join("objects/data");
    let all = (1u64 << 30) + count * 9;
    wait_until("every record to be in objects", Duration::from_secs(120), || dir_bytes(&objects) >= all);
    // WAL segments are reclaimed: what is left is at most the open segment.
    let wal = broker.data_dir.join("wal");
    wait_until("wal segments to be reclaimed", Duration::from_secs(30), || dir_bytes(&wal) <= 137 << 20);

    let (addr, n) = (broker.addr.clone(), name.clone());
    tokio::task::spawn_blocking(move || {
        let c = consumer(&addr);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&n, p, Offset::Beginning).expect("tpl");
        }
        c.assign(&tpl).expect("assign");
        let mut next: HashMap<i32, u64> = HashMap::new();
        let mut got = 0u64;
        let deadline = Instant::now() + Duration::from_secs(300);
        while got < count {
            assert!(Instant::now() < deadline, "consumed only {got} of {count}");
            let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
            let m = m.expect("consume");
            let idx = next.entry(m.partition()).or_default();
            let i = *idx * partitions as u64 + m.partition() as u64;
            assert_eq!(m.offset(), *idx as i64, "partition {} offsets are contiguous", m.partition());
            assert!(m.payload() == Some(&payload(i, size)[..]), "message {i} differs");
            *idx += 1;
            got += 1;
        }
    })
    .await
    .expect("consume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_and_size_moves_the_log_start_and_deletes_objects() {
    let broker = BrokerProcess::start_with(&[
        "--upload-interval-ms",
        "100",
        "--retention-check-interval-ms",
        "200",
        "--gc-grace-ms",
        "3000",
    ]);
    let by_time = topic("ret-time");
    let by_size = topic("ret-size");
    create_topic(&broker.addr, &by_time, 1, &[("retention.ms", "2000")]).await;
    create_topic(&broker.addr, &by_size, 1, &[("retention.bytes", "300000")]).await;
    let (addr, t, s) = (broker.addr.clone(), by_time.clone(), by_size.clone());
    tokio::task::spawn_blocking(move || {
        // Several uploads' worth, so there are several object ranges.
        for _ in 0..6 {
            produce(&addr, &t, 1, 100, 1000);
            produce(&addr, &s, 1, 100, 1000);
            std::thread::sleep(Duration::from_millis(300));
        }
    })
    .await
    .expect("produce");
    let objects = broker.data_dir.join("objects/data");
    let names = |dir: &Path| -> std::collections::HashSet<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    // With a 3 s grace period, nothing retention drops is deleted yet.
    let before = names(&objects);
    assert!(before.len() > 1, "expected several objects, found {}", before.len());

    // Size: at least 300000 bytes remain, the oldest ranges go.
    let addr = broker.addr.clone();
    let s = by_size.clone();
    wait_until("size retention", Duration::from_secs(30), || watermarks(&addr, &s, 0).0 > 0);
    let (low, high) = watermarks(&addr, &s, 0);
    assert_eq!(high, 600);
    assert!(high - low >= 300, "retention.bytes kept only {} messages", high - low);

    // Time: everything older than 2 s goes once it is in objects.
    let t = by_time.clone();
    wait_until("time retention", Duration::from_secs(30), || watermarks(&addr, &t, 0).0 > 0);

    // From the new start, data is there. Time retention keeps moving the start
    // while older ranges expire, so a read can land below a start that moved
    // since the watermark request: that answer is OFFSET_OUT_OF_RANGE, and the
    // read is tried again from the newer start.
    let mut attempts = 0;
    let (m, low) = loop {
        attempts += 1;
        assert!(attempts <= 20, "no read at the log start succeeded");
        let (low, _) = watermarks(&addr, &t, 0);
        let c = consumer(&addr);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Offset(low)).expect("tpl");
        c.assign(&tpl).expect("assign");
        let poll_deadline = Instant::now() + Duration::from_secs(30);
        let polled = loop {
            assert!(Instant::now() < poll_deadline, "nothing read at the log start {low} in 30 s");
            if let Some(m) = c.poll(Duration::from_millis(500)) {
                break m.map(|m| m.offset());
            }
        };
        match polled {
            Ok(offset) => break (offset, low),
            Err(e) => {
                let (now_low, _) = watermarks(&addr, &t, 0);
                assert!(now_low > low, "read at the start {low} failed ({e}) though the start did not move");
            }
        }
    };
    assert_eq!(m, low);

    // Unreferenced objects are deleted after the grace period.
    wait_until("objects to be collected", Duration::from_secs(30), || {
        let now = names(&objects);
        before.iter().any(|n| !now.contains(n))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_low_watermark() {
    let broker = BrokerProcess::start_with(&["--upload-interval-ms", "100"]);
    let name = topic("delrec");
    create_topic(&broker.addr, &name, 2, &[]).await;
    let (addr, n) = (broker.addr.clone(), name.clone());
    tokio::task::spawn_blocking(move || produce(&addr, &n, 2, 200, 100)).await.expect("produce");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&name, 0, Offset::Offset(40)).expect("tpl");
    tpl.add_partition_offset(&name, 1, Offset::End).expect("tpl");
    let res = admin(&broker.addr).delete_records(&tpl, &AdminOptions::new()).await.expect("delete_records");
    for e in res.elements() {
        e.error().expect("partition deleted");
    }
    assert_eq!(watermarks(&broker.addr, &name, 0), (40, 100));
    assert_eq!(watermarks(&broker.addr, &name, 1), (100, 100));
    // Beyond the high watermark is refused.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&name, 0, Offset::Offset(1000)).expect("tpl");
    let res = admin(&broker.addr).delete_records(&tpl, &AdminOptions::new()).await.expect("delete_records");
    assert!(res.elements()[0].error().is_err());
    assert_eq!(watermarks(&broker.addr, &name, 0), (40, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_answers_across_restarts() {
    let mut broker = BrokerProcess::start_with(&["--upload-interval-ms", "100"]);
    let name = topic("epochs");
    create_topic(&broker.addr, &name, 1, &[]).await;
    let (addr, n) = (broker.addr.clone(), name.clone());
    tokio::task::spawn_blocking(move || produce(&addr, &n, 1, 30, 100)).await.expect("produce");
    broker.restart();
    let (addr, n) = (broker.addr.clone(), name.clone());
    tokio::task::spawn_blocking(move || produce(&addr, &n, 1, 20, 100)).await.expect("produce");
    broker.restart();
    // Epoch 0 covered [0, 30), epoch 1 [30, 50), epoch 2 is current and empty.
    let got = common::conn::offset_for_leader_epoch(&broker.addr, &name, &[0, 1, 2, 5]);
    assert_eq!(got, vec![(0, 0, 30), (0, 1, 50), (0, 2, 50), (0, 2, 50)]);
    let md =
        admin(&broker.addr).inner().fetch_metadata(Some(&name), Duration::from_secs(5)).expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 1);
}
