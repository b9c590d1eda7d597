//! Slow tier (`scripts/test.sh --slow`): kill loops. Each test's name starts
//! with `slow_` so that the fast tier skips it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::proxy::Proxy;
use common::s3::S3Server;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const PARTITIONS: i32 = 4;
const KILLS: usize = 20;

/// An idempotent producer through `addr` that waits out broker restarts.
fn idempotent_producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "300000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("producer")
}

/// Sends the numbers 0, 1, 2, ... (partition: number mod `PARTITIONS`) in
/// rounds of `per_round` every 20 ms until stopped.
struct Sender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Sender {
    fn start(p: FutureProducer, name: &str, per_round: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2, name) = (Arc::clone(&stop), Arc::clone(&sent), name.to_string());
        let task = tokio::spawn(async move {
            let mut futures = Vec::new();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                for _ in 0..per_round {
                    let v = i.to_string();
                    let rec = FutureRecord::<(), _>::to(&name)
                        .partition((i % PARTITIONS as u64) as i32)
                        .payload(&v);
                    futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
                    i += 1;
                }
                sent2.store(i, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut failures = 0;
            for f in futures {
                if !matches!(f.await, Ok(Ok(_))) {
                    failures += 1;
                }
            }
            (i, failures)
        });
        Sender { stop, sent, task }
    }

    /// Messages sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending; returns how many were sent and how many failed.
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sender")
    }
}

/// `KILLS` pseudo-random pauses of 300 ms plus up to `spread_ms` (xorshift).
fn kill_pauses(mut seed: u64, spread_ms: u64) -> impl Iterator<Item = Duration> {
    (0..KILLS).map(move |_| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(300 + seed % spread_ms)
    })
}

/// An idempotent producer writes continuously through a proxy while the broker
/// is killed with SIGKILL at random moments and restarted, `KILLS` times, with
/// uploads to objects every 100 ms so kills also land mid-upload. Afterwards
/// every partition holds each message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idempotent_producer_survives_twenty_kills() {
    let proxy = Proxy::start().await;
    let mut broker = BrokerProcess::start_with(&["--advertise", &proxy.addr, "--upload-interval-ms", "100"]);
    proxy.set_target(&broker.addr);
    let name = topic("slow-kills");
    create_topic(&proxy.addr, &name, PARTITIONS).await;
    let sender = Sender::start(idempotent_producer(&proxy.addr), &name, 200);
    for (kill, pause) in kill_pauses(0x2545_f491_4f6c_dd1d, 1500).enumerate() {
        tokio::time::sleep(pause).await;
        broker.kill9();
        proxy.cut_all();
        broker.restart();
        proxy.set_target(&broker.addr);
        println!("kill {} after {} messages sent", kill + 1, sender.sent());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (count, failures) = sender.finish().await;
    assert_eq!(failures, 0, "deliveries failed");

    assert_exactly_once_in_order(&proxy.addr, &name, PARTITIONS, count);
    println!("{KILLS} kills: {count} messages, each stored exactly once in order");
}

/// Issue 4's long statelessness variant: the object WAL on s3s-fs; an
/// idempotent producer writes through a proxy while the broker is killed with
/// SIGKILL at random moments, `KILLS` times, and each time replaced by a new
/// process with a brand-new, empty data dir. Every message ends up stored
/// exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_object_wal_survives_twenty_kills_with_empty_disks() {
    let s3 = S3Server::start("strata-bucket");
    let envs = s3.env();
    let proxy = Proxy::start().await;
    let flags = [
        "--object-store",
        "s3://strata-bucket/kills",
        "--advertise",
        &proxy.addr,
        "--upload-interval-ms",
        "200",
    ];
    let mut broker = BrokerProcess::start_with_env(&flags, &envs);
    proxy.set_target(&broker.addr);
    let name = topic("slow-object-wal");
    create_topic(&proxy.addr, &name, PARTITIONS).await;
    let sender = Sender::start(idempotent_producer(&proxy.addr), &name, 100);
    for pause in kill_pauses(0x9e37_79b9_7f4a_7c15, 1200) {
        tokio::time::sleep(pause).await;
        broker.kill9();
        proxy.cut_all();
        broker = BrokerProcess::start_with_env(&flags, &envs);
        proxy.set_target(&broker.addr);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (count, failures) = sender.finish().await;
    assert_eq!(failures, 0, "deliveries failed");
    assert_exactly_once_in_order(&proxy.addr, &name, PARTITIONS, count);
    println!(
        "object WAL, {KILLS} kills with empty disks: {count} messages, each stored exactly once in order"
    );
}
