//! The idempotent producer (librdkafka with `enable.idempotence=true`) through
//! a TCP proxy that is the broker's advertised address: connections cut
//! mid-flight, and the broker killed with SIGKILL and restarted. Every message
//! must be stored exactly once, in order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::proxy::Proxy;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 3;

fn idempotent_producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("batch.num.messages", "200")
        .set("message.timeout.ms", "120000")
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("producer")
}

/// Sends `count` messages: message `i` goes to partition `i % 3` carrying `i`,
/// 500 at a time every 25 ms (so that faults land mid-load), counting them in
/// `sent`. Returns once every delivery is reported, with the failures.
async fn send_all(p: &FutureProducer, name: &str, count: u64, sent: &AtomicU64) -> Vec<String> {
    let mut futures = Vec::with_capacity(count as usize);
    for i in 0..count {
        if i % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sent.store(i, Ordering::Relaxed);
        let v = i.to_string();
        let rec = FutureRecord::<(), _>::to(name).partition((i % PARTITIONS as u64) as i32).payload(&v);
        futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    let mut failures = Vec::new();
    for f in futures {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => failures.push(e.to_string()),
            Err(_) => failures.push("delivery future cancelled".into()),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_flight_store_each_message_once() {
    let proxy = Proxy::start().await;
    let broker = BrokerProcess::start_with(&["--advertise", &proxy.addr]);
    proxy.set_target(&broker.addr);
    let name = topic("idem-cut");
    create_topic(&proxy.addr, &name, PARTITIONS).await;
    let p = idempotent_producer(&proxy.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let stop = Arc::clone(&stop);
        let proxy_cuts = proxy_cut_handle(&proxy);
        tokio::spawn(async move {
            let mut cuts = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                proxy_cuts();
                cuts += 1;
            }
            cuts
        })
    };
    let count = 30_000;
    let failures = send_all(&p, &name, count, &AtomicU64::new(0)).await;
    stop.store(true, Ordering::Relaxed);
    let cuts = cutter.await.expect("cutter");
    assert!(cuts >= 3, "only {cuts} cuts happened while producing");
    assert!(failures.is_empty(), "{} deliveries failed, first: {:?}", failures.len(), failures.first());
    assert_exactly_once_in_order(&proxy.addr, &name, PARTITIONS, count);
}

fn proxy_cut_handle(proxy: &Proxy) -> impl Fn() + Send + 'static {
    let cuts = proxy.cutter();
    move || cuts.send_modify(|g| *g += 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_stores_each_message_once() {
    let proxy = Proxy::start().await;
    let mut broker = BrokerProcess::start_with(&["--advertise", &proxy.addr]);
    proxy.set_target(&broker.addr);
    let name = topic("idem-kill");
    create_topic(&proxy.addr, &name, PARTITIONS).await;
    let p = idempotent_producer(&proxy.addr);
    let count = 30_000;
    let name2 = name.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = Arc::clone(&sent);
    let sending = tokio::spawn(async move {
        let failures = send_all(&p, &name2, count, &sent2).await;
        (p, failures)
    });
    // Let some of it through, then kill the broker mid-load and bring it back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.kill9();
    let at_kill = sent.load(Ordering::Relaxed);
    assert!(at_kill > 0 && at_kill < count - 1000, "the kill should land mid-load ({at_kill} sent)");
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();
    proxy.set_target(&broker.addr);
    let (_p, failures) = sending.await.expect("sender");
    assert!(failures.is_empty(), "{} deliveries failed, first: {:?}", failures.len(), failures.first());
    assert_exactly_once_in_order(&proxy.addr, &name, PARTITIONS, count);
}

/// Retries that race a stalled flush: s3s-fs is stopped (SIGSTOP) while a
/// batch's WAL object is being written, the broker answers REQUEST_TIMED_OUT
/// (the batch keeps its offsets), the client retries the same sequence, and
/// the retry waits on its original's own outcome. Once the store is back
/// every message is stored exactly once, in order: no retry is acknowledged
/// for anything but its own data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_racing_a_stalled_flush_are_answered_from_their_original() {
    let s3 = common::s3::S3Server::start("retries");
    let mut broker = BrokerProcess::start_with_env(
        &[
            "--object-store",
            "s3://retries/p",
            "--wal",
            "object",
            "--upload-interval-ms",
            "600000",
            "--object-store-retry-ms",
            "1000",
        ],
        &s3.env(),
    );
    let name = topic("stall");
    create_topic(&broker.addr, &name, 1).await;
    let p = idempotent_producer(&broker.addr);
    let send = |i: u64| {
        let v = i.to_string();
        p.send_result(FutureRecord::<(), _>::to(&name).partition(0).payload(&v))
            .map_err(|(e, _)| e)
            .expect("enqueue")
    };
    send(0).await.expect("delivery").expect("the first message is stored");
    s3.signal("STOP");
    let pending: Vec<_> = (1..50).map(send).collect();
    // The broker gave up waiting for the flush, the client retried, and a
    // retry found its original still in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while broker.log_line("in_flight=true").is_none() {
        assert!(std::time::Instant::now() < deadline, "no retry reached an in-flight original");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broker.log_line("wal object write failing").is_some(), "the flush was stalled");
    s3.signal("CONT");
    for (i, f) in pending.into_iter().enumerate() {
        f.await.expect("delivery").unwrap_or_else(|(e, _)| panic!("message {} failed: {e}", i + 1));
    }
    assert_exactly_once_in_order(&broker.addr, &name, 1, 50);
    assert!(broker.is_running());
}
