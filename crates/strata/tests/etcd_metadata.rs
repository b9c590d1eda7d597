//! Brokers with their metadata in etcd (`--metadata etcd://host:port/prefix`,
//! a real etcd started by the test; docs/cluster.md). A broker serves and
//! keeps what it acknowledged when it is killed with kill -9 and replaced:
//! once its session expires the controller fails its streams over and the
//! new leader recovers their tail from its WAL. A paused broker whose session
//! expired acknowledges nothing once resumed and exits. A broker under
//! another prefix of the same etcd and bucket sees none of it. Brokers get
//! node ids from etcd, and a live id is refused. `strata move` reassigns
//! through the Kafka API.

mod common;

use std::time::Duration;

use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use strata_meta::testing::EtcdServer;
use strata_meta::{EtcdStore, MetaStore};

/// Counts the messages whose delivery failed.
#[derive(Default)]
struct Failures(std::sync::atomic::AtomicU64);

impl rdkafka::ClientContext for Failures {}

impl rdkafka::producer::ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// An idempotent producer; a request to a paused broker times out after 3 s
/// (then the client looks for the partition's new leader).
fn producer(addr: &str) -> ThreadedProducer<Failures> {
    producer_with_timeout(addr, 30_000)
}

/// Like [`producer`], giving up on a message after `timeout_ms`.
fn producer_with_timeout(addr: &str, timeout_ms: u64) -> ThreadedProducer<Failures> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("socket.timeout.ms", "3000")
        .create_with_context(Failures::default())
        .expect("producer")
}

/// Sends `from..from + count` to partition 0; every one must be acknowledged.
fn produce(addr: &str, topic: &str, from: u64, count: u64) {
    let p = producer(addr);
    for i in from..from + count {
        let v = i.to_string();
        p.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&v)).map_err(|(e, _)| e).expect("send");
    }
    p.flush(Duration::from_secs(60)).expect("flushed");
    let failed = p.context().0.load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(failed, 0, "{failed} of {count} messages not acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_etcd_serves_and_its_streams_fail_over_after_kill_9() {
    let etcd = EtcdServer::start();
    let objects = tempfile::tempdir().expect("object dir");
    let object_store = format!("file://{}", objects.path().display());
    let metadata = format!("etcd://{}/strata-test/cluster-a", etcd.endpoint);
    let args =
        ["--metadata", &metadata, "--object-store", &object_store, "--broker-session-timeout-ms", "2000"];
    let mut a = BrokerProcess::start_with(&args);
    let name = topic("etcd");
    create_topic(&a.addr, &name, 1).await;
    produce(&a.addr, &name, 0, 500);
    // Killed and replaced by a broker with a fresh id: once the old one's
    // session expires, its stream fails over with its WAL tail.
    a.restart();
    produce(&a.addr, &name, 500, 500);
    assert_exactly_once_in_order(&a.addr, &name, 1, 1000);

    // A second broker joins (another machine: its own data dir, the same
    // bucket and etcd prefix); when the first is killed, it takes over.
    let b = BrokerProcess::start_with(&args);
    let listed = common::kafka::admin(&b.addr)
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .brokers()
        .len();
    assert_eq!(listed, 2, "both brokers listed");
    a.kill9();
    produce(&b.addr, &name, 1000, 200);
    assert_exactly_once_in_order(&b.addr, &name, 1, 1200);

    // Another cluster on the same etcd and bucket (its own prefixes) sees none of it.
    let other_objects = format!("file://{}/other", objects.path().display());
    let other_meta = format!("etcd://{}/strata-test/cluster-b", etcd.endpoint);
    let c = BrokerProcess::start_with(&["--metadata", &other_meta, "--object-store", &other_objects]);
    let md = common::kafka::admin(&c.addr);
    let topics = md
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect::<Vec<_>>();
    assert!(!topics.contains(&name), "cluster b sees cluster a's topic: {topics:?}");
}

/// `strata serve` with `extra` flags that must fail to start: its exit
/// status and what it wrote to stderr.
fn refused_start(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().expect("data dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "none", "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .output()
        .expect("run strata");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The node id a broker reports for itself in Metadata.
fn reported_node_id(addr: &str) -> i32 {
    let admin = common::kafka::admin(addr);
    let md = admin.inner().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    assert_eq!(ids.len(), 1, "one broker listed: {ids:?}");
    ids[0]
}

#[test]
fn brokers_on_etcd_get_fresh_node_ids_and_a_live_id_is_refused() {
    let etcd = EtcdServer::start();
    let metadata = format!("etcd://{}/strata-test/ids", etcd.endpoint);
    let objects = tempfile::tempdir().expect("object dir");
    let object_store = format!("file://{}", objects.path().display());
    let base = ["--metadata", metadata.as_str(), "--object-store", object_store.as_str()];
    let session = ["--broker-session-timeout-ms", "2000"];
    let mut a = BrokerProcess::start_with(&[&base[..], &session[..]].concat());
    assert_eq!(reported_node_id(&a.addr), 1001, "the first generated id, as Kafka's");
    // A second broker asking for the id a live broker holds does not start
    // (and so does not take the prefix over).
    let (status, stderr) = refused_start(&[&base[..], &["--node-id", "1001"]].concat());
    assert!(!status.success(), "a second broker with a live id started");
    assert!(stderr.contains("node id 1001 is held by a live broker"), "{stderr}");
    assert_eq!(reported_node_id(&a.addr), 1001, "the first broker still serves");
    // Once the holder is gone and its lease expired, the id is free.
    a.kill9();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let members = rt
        .block_on(EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), "/strata-test/ids"))
        .expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rt.block_on(members.get("brokers/1001")).expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "the killed broker's registration never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = BrokerProcess::start_with(&[&base[..], &["--node-id", "1001"]].concat());
    assert_eq!(reported_node_id(&b.addr), 1001);
}

/// `strata move` (the CLI of AlterPartitionReassignments): a move to the
/// broker itself completes; one to a broker that does not exist fails with
/// Kafka's error and message, and the exit status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_move_reassigns_through_the_kafka_api() {
    let broker = BrokerProcess::start();
    let name = topic("cli-move");
    create_topic(&broker.addr, &name, 2).await;
    let strata_move = |to: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["move", "--bootstrap", &broker.addr, "--topic", &name, "--partition", "1", "--to", to])
            .output()
            .expect("run strata move")
    };
    let me = reported_node_id(&broker.addr).to_string();
    let ok = strata_move(&me);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), format!("moved {name}-1 to {me}"));
    let bad = strata_move("4242");
    assert!(!bad.status.success(), "a move to an unknown broker succeeded");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("InvalidReplicaAssignment")
            && stderr.contains("includes broker 4242, but no such broker is registered"),
        "{stderr}"
    );
}

/// The zombie case on etcd: A is paused (SIGSTOP) with a producer connected,
/// Sends `from..from + count` in `rounds` parts, each given time to be
/// uploaded (one range each: with a small `--index-inline-ranges`, folds).
fn produce_in_rounds(addr: &str, topic: &str, from: u64, count: u64, rounds: u64) {
    for r in 0..rounds {
        produce(addr, topic, from + r * count / rounds, count / rounds);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The folds of a broker's index into manifests so far.
fn folds(broker: &BrokerProcess) -> f64 {
    broker.metric("strata_index_folds_total").unwrap_or(0.0)
}

/// B joins, A's session expires and B takes its stream over and serves; A,
/// resumed (SIGCONT) with an idempotent producer and 1,000 pipelined raw
/// Produce requests waiting for it, acknowledges none of them (each is
/// answered with an error before it exits as fenced), and B serves exactly
/// what was acknowledged. Both fold their index into manifests all along
/// (two inline ranges at most), so B's takeover reads A's manifest, and
/// whatever A tries to commit after it resumed (an upload, a fold) is
/// refused. A, restarted with the same node id, serves again once the
/// partition moves to it; after a kill -9 of A, its successor finds exactly
/// what was acknowledged in the index and A's WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_on_etcd_acknowledges_nothing_once_resumed() {
    use common::conn::Conn;
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, ProduceResponse};

    let etcd = EtcdServer::start();
    let objects = tempfile::tempdir().expect("object dir");
    let object_store = format!("file://{}", objects.path().display());
    let metadata = format!("etcd://{}/strata-test/zombie", etcd.endpoint);
    let args = [
        "--metadata",
        &metadata,
        "--object-store",
        &object_store,
        "--broker-session-timeout-ms",
        "2000",
        "--index-inline-ranges",
        "2",
        "--upload-interval-ms",
        "100",
    ];
    let with_id = |id: &'static str| [&args[..], &["--node-id", id]].concat();
    let mut a = BrokerProcess::start_with(&with_id("1"));
    let name = topic("etcd-zombie");
    create_topic(&a.addr, &name, 1).await;
    produce_in_rounds(&a.addr, &name, 0, 300, 6);
    assert!(folds(&a) >= 1.0, "A folded its index");
    let zombie_producer = producer_with_timeout(&a.addr, 8000);
    // Raw connections to A, open before the pause: what the test writes on
    // them while A is stopped waits in the socket for A to resume.
    const RAW: usize = 1000;
    const CONNS: usize = 4;
    let mut conns: Vec<Conn> = (0..CONNS)
        .map(|_| {
            let mut c = Conn::open(&a.addr);
            let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &MetadataRequest::default());
            c
        })
        .collect();
    a.signal("STOP");
    let b = BrokerProcess::start_with(&with_id("2"));
    produce_in_rounds(&b.addr, &name, 300, 300, 6);
    assert!(folds(&b) >= 1.0, "B folded its index");
    // Produces reach A once it runs again: none may be acknowledged.
    for i in 0..50 {
        let v = format!("zombie-{i}");
        let _ = zombie_producer.send(BaseRecord::<(), _>::to(&name).partition(0).payload(&v));
    }
    for i in 0..RAW {
        let records = common::batches::encode(&[common::batches::record(
            0,
            1_700_000_000_000,
            None,
            Some(bytes::Bytes::from(format!("raw-zombie-{i}"))),
        )]);
        let req = common::batches::produce_request(&name, -1, records);
        conns[i % CONNS].send(ApiKey::Produce, 9, &req).expect("a produce written while A is stopped");
    }
    a.signal("CONT");
    // Every raw produce is answered, with an error.
    let mut codes: std::collections::BTreeMap<i16, usize> = Default::default();
    for (n, conn) in conns.iter_mut().enumerate() {
        for k in 0..RAW / CONNS {
            let (_, resp): (i32, ProduceResponse) = conn
                .receive(ApiKey::Produce, 9)
                .unwrap_or_else(|e| panic!("raw produce {k} on connection {n} got no answer: {e}"));
            *codes.entry(resp.responses[0].partition_responses[0].error_code).or_default() += 1;
        }
    }
    println!("the resumed owner's answers to {RAW} raw produces, by error code: {codes:?}");
    assert_eq!(codes.get(&0), None, "the resumed owner acknowledged raw produces: {codes:?}");
    // Each ends in a failed delivery: none was acknowledged.
    zombie_producer.flush(Duration::from_secs(30)).expect("every zombie produce ended");
    let failed = zombie_producer.context().0.load(std::sync::atomic::Ordering::Acquire);
    // The resumed owner's refusals name the current leader (KIP-951), so
    // the client may deliver some of them there: each of those is stored
    // once, by B, which the checks below count.
    let delivered = 50 - failed as usize;
    println!("zombie produces delivered by the current leader after A refused them: {delivered}");
    let status = a.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(3), "exit status of a fenced process");
    // (Its count of records refused as fenced excludes those it refused as
    // not the leader, once its view caught up.)
    println!("{}", a.log_line("refused_records=").expect("the exit line"));
    stored_once(&b.addr, &name, 600, delivered);
    // Restarted with the same node id (its lease is gone), A serves again.
    a.restart();
    common::cluster::wait_listed(&b.addr, 1, true);
    common::cluster::strata_move(&b.addr, &name, 0, 1);
    common::cluster::wait_leader(&b.addr, &name, 0, 1);
    produce(&a.addr, &name, 600, 1);
    stored_once(&a.addr, &name, 601, delivered);
    // What is stored, not what A holds in memory: A dies, C joins, and the
    // stream fails over (to B or C) with A's WAL tail.
    a.kill9();
    let c = BrokerProcess::start_with(&with_id("3"));
    // Served again once A's session expired (the produce retries until then).
    produce(&c.addr, &name, 601, 1);
    stored_once(&c.addr, &name, 602, delivered);
}

/// Partition 0 of `name` holds "0".."numbers" in order, each once, and
/// exactly `zombies` distinct "zombie-<i>" values, each once.
fn stored_once(addr: &str, name: &str, numbers: u64, zombies: usize) {
    let values: Vec<String> = common::kafka::read_partition_to_end(addr, name, "read_uncommitted")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let (z, n): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| v.starts_with("zombie-"));
    let want: Vec<String> = (0..numbers).map(|i| i.to_string()).collect();
    assert!(n.iter().map(|v| v.as_str()).eq(want.iter().map(|v| v.as_str())), "numbers stored: {n:?}");
    let distinct: std::collections::BTreeSet<&String> = z.iter().copied().collect();
    assert_eq!((z.len(), distinct.len()), (zombies, zombies), "zombie values stored: {z:?}");
}
