//! Strata with its objects and metadata manifest in a real S3-compatible server
//! (s3s-fs over HTTP): uploads land in the bucket, and after kill -9 a restarted
//! broker serves everything from the bucket's index plus its WAL.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{consumer, create_topic};
use common::s3::S3Server;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_manifest_live_in_s3_and_survive_kill_9() {
    let s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    let mut broker = BrokerProcess::start_with_env(
        &["--object-store", "s3://strata-bucket/cluster-a", "--upload-interval-ms", "100"],
        &envs,
    );
    let name = topic("s3");
    create_topic(&broker.addr, &name, 2).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let count = 2000u64;
    let mut futures = Vec::new();
    for i in 0..count {
        let v = format!("message-{i}");
        let rec = FutureRecord::<(), _>::to(&name).partition((i % 2) as i32).payload(&v);
        futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in futures {
        f.await.expect("delivery").map_err(|(e, _)| e).expect("acked");
    }
    // Uploads and manifests land in the bucket, under the prefix.
    let prefix = s3.root.join("strata-bucket/cluster-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&prefix.join("data")) == 0 {
        assert!(Instant::now() < deadline, "no object reached the bucket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files_under(&prefix.join("meta/manifest")) > 0, "the metadata manifest is in the bucket");

    broker.kill9();
    broker.restart();
    let c = consumer(&broker.addr);
    let mut tpl = TopicPartitionList::new();
    for part in 0..2 {
        tpl.add_partition_offset(&name, part, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut next = [0u64, 1u64];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < count {
        assert!(Instant::now() < deadline, "read {got} of {count}");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("consume");
        let part = m.partition() as usize;
        assert_eq!(m.payload(), Some(format!("message-{}", next[part]).as_bytes()));
        next[part] += 2;
        got += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_prefix_fences_the_first() {
    let s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    let flags = ["--object-store", "s3://strata-bucket/shared", "--upload-interval-ms", "100"];
    let first = BrokerProcess::start_with_env(&flags, &envs);
    let name = topic("fence");
    create_topic(&first.addr, &name, 1).await;
    let producer = |addr: &str| -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("message.timeout.ms", "3000")
            .create()
            .expect("producer")
    };
    let p1 = producer(&first.addr);
    p1.send(FutureRecord::<(), _>::to(&name).payload("before"), Duration::from_secs(5)).await.expect("acked");

    // A second process on the same prefix takes the partitions (its start
    // commits the next leader epochs), which fences the first.
    let second = BrokerProcess::start_with_env(&flags, &envs);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = p1.send(FutureRecord::<(), _>::to(&name).payload("after"), Duration::from_secs(5)).await;
    assert!(refused.is_err(), "the fenced broker still acknowledged a produce");
    // The new owner serves what the first acknowledged, and takes writes.
    let p2 = producer(&second.addr);
    let d = p2
        .send(FutureRecord::<(), _>::to(&name).payload("new owner"), Duration::from_secs(5))
        .await
        .expect("acked");
    assert_eq!(d.offset, 1, "the new owner continues after the acknowledged message");
    let c = consumer(&second.addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&name, 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "read {got:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            got.push(
                String::from_utf8(m.expect("consume").payload().unwrap_or_default().to_vec()).expect("utf8"),
            );
        }
    }
    assert_eq!(got, vec!["before".to_string(), "new owner".to_string()]);
}

/// Statelessness: with the object WAL (the default for s3://), a broker takes
/// acks=all traffic from an idempotent producer and a plain one, is killed with
/// SIGKILL, and a new process with a brand-new, empty data dir serves every
/// acknowledged message from the bucket alone, in order: the idempotent
/// producer's exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_with_an_empty_disk_serves_everything_acknowledged() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    // Short flushes: the producers below send one message at a time.
    let flags = [
        "--object-store",
        "s3://strata-bucket/stateless",
        "--upload-interval-ms",
        "300",
        "--wal-flush-ms",
        "10",
    ];
    let mut first = BrokerProcess::start_with_env(&flags, &envs);
    let name = topic("stateless");
    create_topic(&first.addr, &name, 2).await;
    let make = |idempotent: bool| -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &first.addr)
            .set("acks", "all")
            .set("enable.idempotence", if idempotent { "true" } else { "false" })
            .set("linger.ms", "2")
            .set("message.timeout.ms", "5000")
            .set("retries", if idempotent { "100" } else { "0" })
            .create()
            .expect("producer")
    };
    // Partition 0: idempotent producer; partition 1: plain producer.
    let acked: Arc<Mutex<HashMap<(i32, i64), String>>> = Arc::default();
    let mut tasks = Vec::new();
    for part in 0..2 {
        let (p, acked, name) = (make(part == 0), Arc::clone(&acked), name.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(2500) {
                let v = format!("p{part}-{i}");
                let rec = FutureRecord::<(), _>::to(&name).partition(part).payload(&v);
                if let Ok(d) = p.send(rec, Duration::from_secs(1)).await {
                    acked.lock().expect("lock").insert((d.partition, d.offset), v);
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "only {} acknowledged before the kill", acked.len());

    // A brand-new process with an empty data dir, on the same bucket and prefix.
    let second = BrokerProcess::start_with_env(&flags, &envs);
    let c = consumer(&second.addr);
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for part in 0..2 {
        tpl.add_partition_offset(&name, part, Offset::Beginning).expect("tpl");
        total += c.fetch_watermarks(&name, part, Duration::from_secs(10)).expect("watermarks").1;
    }
    c.assign(&tpl).expect("assign");
    let mut stored: HashMap<(i32, i64), String> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (stored.len() as i64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", stored.len());
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("consume");
        let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8");
        stored.insert((m.partition(), m.offset()), v);
    }
    for ((part, off), v) in &acked {
        assert_eq!(stored.get(&(*part, *off)), Some(v), "acknowledged {part}/{off} lost");
    }
    // The idempotent partition holds each message once, in send order.
    let mut p0: Vec<(i64, u64)> = stored
        .iter()
        .filter(|((p, _), _)| *p == 0)
        .map(|((_, o), v)| (*o, v.trim_start_matches("p0-").parse::<u64>().expect("number")))
        .collect();
    p0.sort();
    for w in p0.windows(2) {
        assert!(w[1].1 > w[0].1, "partition 0: {:?} then {:?} (duplicate or reorder)", w[0], w[1]);
    }
}

/// The S3 server is stopped mid-load and started again: while it is down,
/// produces fail with a retriable error (never hang, never an ack); afterwards
/// they succeed by themselves; every acknowledged message is there, and the
/// produce whose outcome was unknown is there at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_fails_produces_retriably_then_service_resumes() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let mut s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    let broker = BrokerProcess::start_with_env(
        &["--object-store", "s3://strata-bucket/outage", "--object-store-retry-ms", "1500"],
        &envs,
    );
    let name = topic("outage");
    create_topic(&broker.addr, &name, 1).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("retries", "0")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let mut acked = Vec::new();
    for i in 0..20 {
        let v = format!("before-{i}");
        let d = p
            .send(FutureRecord::<(), _>::to(&name).payload(&v), Duration::from_secs(5))
            .await
            .expect("acked");
        acked.push((d.offset, v));
    }
    s3.stop();
    let started = Instant::now();
    let down = p.send(FutureRecord::<(), _>::to(&name).payload("while-down"), Duration::from_secs(5)).await;
    match down {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert!(
                matches!(code, RDKafkaErrorCode::KafkaStorageError | RDKafkaErrorCode::RequestTimedOut),
                "{code:?} is not the retriable error expected"
            );
        }
        other => panic!("a produce while S3 is down must fail, got {other:?}"),
    }
    // A broker error, not librdkafka's own timeout: the broker did not hang.
    println!("the produce failed after {:?}", started.elapsed());
    s3.resume();
    // Service resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.send(FutureRecord::<(), _>::to(&name).payload("after"), Duration::from_secs(5)).await {
            Ok(d) => {
                acked.push((d.offset, "after".to_string()));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "produces did not resume: {e:?}"),
        }
    }
    let c = consumer(&broker.addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&name, 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut stored = std::collections::HashMap::new();
    let end = c.fetch_watermarks(&name, 0, Duration::from_secs(10)).expect("watermarks").1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (stored.len() as i64) < end {
        assert!(Instant::now() < deadline, "read {} of {end}", stored.len());
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("consume");
        stored.insert(m.offset(), String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8"));
    }
    for (off, v) in &acked {
        assert_eq!(stored.get(off), Some(v), "acknowledged offset {off} lost");
    }
    // The failed produce's outcome was unknown (REQUEST_TIMED_OUT): its
    // offsets stayed reserved and it may have landed once S3 came back, but
    // never twice, and never in place of something acknowledged.
    assert!(stored.values().filter(|v| *v == "while-down").count() <= 1, "stored twice: {stored:?}");
}
