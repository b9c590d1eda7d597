//! The object layer seen from outside, on a real S3-compatible server
//! (s3s-fs): object compaction merges many small objects while consumers read,
//! garbage collection and the orphan sweep empty the bucket of what nothing
//! references, and `/metrics` reports the figures.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::kafka::{assert_exactly_once_in_order, assign_from_start, create_topic, read_in_order};
use common::s3::S3Server;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count()
}

fn producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()
        .expect("producer")
}

/// Sends the numbers `from..to` (payload: the number, partition: number mod
/// `partitions`) and waits for every ack.
async fn send_numbers(p: &FutureProducer, name: &str, partitions: u64, from: u64, to: u64) {
    let mut futures = Vec::new();
    for i in from..to {
        let v = i.to_string();
        let rec = FutureRecord::<(), _>::to(name).partition((i % partitions) as i32).payload(&v);
        futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in futures {
        f.await.expect("delivery").map_err(|(e, _)| e).expect("acked");
    }
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_objects_while_a_consumer_reads() {
    let s3 = S3Server::start("bucket");
    let envs = s3.env();
    let data = s3.root.join("bucket/c/data");
    let common_flags =
        ["--object-store", "s3://bucket/c", "--upload-interval-ms", "20", "--gc-grace-ms", "0"];

    // Phase 1, compaction off: many small flushes leave many small objects.
    let mut flags = common_flags.to_vec();
    flags.extend(["--compaction-interval-ms", "0"]);
    let mut broker = BrokerProcess::start_with_env(&flags, &envs);
    let name = topic("compact");
    create_topic(&broker.addr, &name, 2).await;
    let p = producer(&broker.addr);
    let rounds = 40u64;
    for r in 0..rounds {
        send_numbers(&p, &name, 2, r * 50, (r + 1) * 50).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let count = rounds * 50;
    wait_until("uploads", Duration::from_secs(30), || files_under(&data) >= 20).await;
    drop(p);
    broker.terminate();
    let before = files_under(&data);

    // Phase 2, compaction on, on the same bucket (a new data dir: the object
    // WAL is in the bucket too). A consumer reads slowly meanwhile.
    let mut flags = common_flags.to_vec();
    flags.extend([
        // The first pass comes 5 s after start: the reader is under way by then.
        "--compaction-interval-ms",
        "5000",
        "--compaction-target-bytes",
        "1048576",
        "--compaction-min-ranges",
        "4",
    ]);
    let broker = BrokerProcess::start_with_env(&flags, &envs);
    // The reader reads part of the topic from the small objects, then waits
    // for the switch to the compacted ones and reads the rest: the switch
    // happens mid-read.
    let read = Arc::new(AtomicU64::new(0));
    let switched = Arc::new(AtomicBool::new(false));
    let reader = {
        let (addr, name) = (broker.addr.clone(), name.clone());
        let (read, switched) = (Arc::clone(&read), Arc::clone(&switched));
        std::thread::spawn(move || {
            // Small fetches: the read spans the switch to compacted objects.
            let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("group.id", "strata-tests")
                .set("enable.auto.commit", "false")
                .set("max.partition.fetch.bytes", "512")
                .set("fetch.max.bytes", "1024")
                .set("message.max.bytes", "1000")
                .create()
                .expect("consumer");
            assign_from_start(&c, &name, 2);
            read_in_order(&c, 2, count, |got| {
                read.store(got, Ordering::Relaxed);
                if got == 100 {
                    let deadline = std::time::Instant::now() + Duration::from_secs(90);
                    while !switched.load(Ordering::Relaxed) {
                        assert!(std::time::Instant::now() < deadline, "compaction never switched");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if got % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(30)); // a slow reader
                }
            });
        })
    };
    wait_until("the reader to start", Duration::from_secs(30), || read.load(Ordering::Relaxed) >= 100).await;
    let small_objects = files_under(&data);
    assert!(small_objects > 4, "compaction switched before the reader had started ({small_objects} objects)");
    // Two partitions: one compacted object each, give or take an upload that
    // landed after a pass.
    wait_until("compaction and gc", Duration::from_secs(60), || files_under(&data) <= 4).await;
    let read_at_switch = read.load(Ordering::Relaxed);
    switched.store(true, Ordering::Relaxed);
    println!("compaction switched after the reader had read {read_at_switch} of {count}");
    assert!(read_at_switch < count, "the read had finished before the switch");
    let after = files_under(&data);
    assert!(after < before, "objects: {before} before compaction, {after} after");
    reader.join().expect("the reader read every message in order across compaction");
    assert_eq!(read.load(Ordering::Relaxed), count);
    assert_exactly_once_in_order(&broker.addr, &name, 2, count);

    let compacted = broker.metric("strata_compaction_objects_total").expect("compaction metric");
    assert!(compacted >= 2.0, "{compacted} compacted objects");
    assert!(broker.metric("strata_gc_deleted_objects_total").expect("gc metric") >= 2.0);
    assert!(broker.metric("strata_objects").expect("objects gauge") <= 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_objects_are_removed_and_referenced_ones_kept() {
    let s3 = S3Server::start("bucket");
    let envs = s3.env();
    let data = s3.root.join("bucket/o/data");
    std::fs::create_dir_all(&data).expect("data dir");
    // What an upload killed between its PUT and its index commit leaves: an
    // object in the data prefix that no index entry names.
    let orphan = data.join("0123456789abcdef0123456789abcdef.obj");
    std::fs::write(&orphan, vec![1u8; 4096]).expect("orphan");
    let broker = BrokerProcess::start_with_env(
        &[
            "--object-store",
            "s3://bucket/o",
            "--upload-interval-ms",
            "50",
            "--orphan-interval-ms",
            "200",
            "--orphan-age-ms",
            "0",
        ],
        &envs,
    );
    let name = topic("orphans");
    create_topic(&broker.addr, &name, 2).await;
    let p = producer(&broker.addr);
    for r in 0..10 {
        send_numbers(&p, &name, 2, r * 100, (r + 1) * 100).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    wait_until("the orphan's removal", Duration::from_secs(30), || !orphan.exists()).await;
    assert!(files_under(&data) > 0, "referenced objects stay");
    assert!(broker.metric("strata_orphan_deleted_objects_total").expect("orphan metric") >= 1.0);
    assert_exactly_once_in_order(&broker.addr, &name, 2, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness() {
    let broker = BrokerProcess::start_with(&["--upload-interval-ms", "100"]);
    assert_eq!(broker.http_get("/healthz").0, 200);
    assert_eq!(broker.http_get("/readyz").0, 200);
    assert_eq!(broker.http_get("/nope").0, 404);
    let name = topic("metrics");
    create_topic(&broker.addr, &name, 2).await;
    let p = producer(&broker.addr);
    send_numbers(&p, &name, 2, 0, 1000).await;
    assert_exactly_once_in_order(&broker.addr, &name, 2, 1000);

    let label = format!("{{topic=\"{name}\"}}");
    assert_eq!(broker.metric(&format!("strata_topic_messages_in_total{label}")), Some(1000.0));
    let bytes_in = broker.metric(&format!("strata_topic_bytes_in_total{label}")).expect("bytes in");
    assert!(bytes_in >= 1000.0 * 3.0, "{bytes_in} bytes in");
    assert!(broker.metric(&format!("strata_topic_messages_out_total{label}")).expect("out") >= 1000.0);
    assert!(broker.metric(&format!("strata_topic_bytes_out_total{label}")).expect("out") >= bytes_in);
    for api in ["Produce", "Fetch", "Metadata", "CreateTopics"] {
        let n = broker.metric(&format!("strata_request_duration_seconds_count{{api=\"{api}\"}}"));
        assert!(n.is_some_and(|n| n >= 1.0), "{api}: {n:?}");
    }
    assert!(broker.metric("strata_wal_flush_seconds_count").expect("wal flushes") >= 1.0);
    assert!(broker.metric("strata_wal_flush_bytes_sum").expect("wal bytes") >= bytes_in);
    assert!(broker.metric("strata_ingested_bytes_total").expect("ingested") >= bytes_in);
    // The tail is uploaded within moments; then objects and PUTs show.
    wait_until("an upload", Duration::from_secs(30), || {
        broker.metric("strata_objects").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(broker.metric("strata_object_store_requests_total{op=\"put\"}").expect("puts") >= 1.0);
    let per_gib =
        broker.metric("strata_object_store_requests_per_gib_ingested{op=\"put\"}").expect("per GiB");
    assert!(per_gib > 0.0);
    assert!(broker.metric("strata_cache_hit_ratio{cache=\"tail\"}").is_some());
    assert!(broker.metric("strata_upload_backlog_bytes").is_some());
}
