//! The cluster's first parts (docs/cluster.md). A broker with its metadata in
//! etcd (`--metadata etcd://host:port/prefix`, a real etcd started by the
//! test) serves and keeps what it acknowledged across a kill -9. A second
//! broker taking the prefix over (the same object store, the object WAL)
//! fences the first, which then acknowledges nothing and exits, and serves
//! everything the first acknowledged. A broker under another prefix of the
//! same etcd and bucket sees none of it. Brokers get node ids from etcd, and
//! a live id is refused. `strata move` reassigns through the Kafka API.

mod common;

use std::time::Duration;

use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strata_meta::testing::EtcdServer;
use strata_meta::{EtcdStore, MetaStore};

fn producer(addr: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

fn produce(addr: &str, topic: &str, from: u64, count: u64) {
    let p = producer(addr);
    for i in from..from + count {
        let v = i.to_string();
        p.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&v)).map_err(|(e, _)| e).expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("every message acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_etcd_serves_survives_kill_9_and_is_fenced_by_a_new_owner() {
    let etcd = EtcdServer::start();
    let objects = tempfile::tempdir().expect("object dir");
    let object_store = format!("file://{}", objects.path().display());
    let metadata = format!("etcd://{}/strata-test/cluster-a", etcd.endpoint);
    let args = ["--metadata", &metadata, "--object-store", &object_store, "--wal", "object"];
    let mut a = BrokerProcess::start_with(&args);
    let name = topic("etcd");
    create_topic(&a.addr, &name, 1).await;
    produce(&a.addr, &name, 0, 500);
    // Its topics and index are in etcd: a kill -9 and restart keep them.
    a.restart();
    produce(&a.addr, &name, 500, 500);
    assert_exactly_once_in_order(&a.addr, &name, 1, 1000);

    // A second broker takes the prefix over (another machine: its own data
    // dir, the same bucket and etcd prefix).
    let b = BrokerProcess::start_with(&args);
    assert_exactly_once_in_order(&b.addr, &name, 1, 1000);
    // The first acknowledges nothing more and exits as fenced.
    let p = producer(&a.addr);
    let late = p.send(BaseRecord::<(), _>::to(&name).partition(0).payload("late"));
    assert!(late.is_ok(), "queued");
    assert!(p.flush(Duration::from_secs(5)).is_err(), "the fenced broker acknowledged a produce");
    let status = a.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(3), "exit status of a fenced process");
    assert_exactly_once_in_order(&b.addr, &name, 1, 1000);

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
/// B takes the prefix over and serves; A, resumed (SIGCONT), acknowledges
/// none of the produces that reach it and exits as fenced, and B serves
/// exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_on_etcd_acknowledges_nothing_once_resumed() {
    let etcd = EtcdServer::start();
    let objects = tempfile::tempdir().expect("object dir");
    let object_store = format!("file://{}", objects.path().display());
    let metadata = format!("etcd://{}/strata-test/zombie", etcd.endpoint);
    let args = ["--metadata", &metadata, "--object-store", &object_store, "--wal", "object"];
    let mut a = BrokerProcess::start_with(&args);
    let name = topic("etcd-zombie");
    create_topic(&a.addr, &name, 1).await;
    produce(&a.addr, &name, 0, 300);
    let zombie_producer = producer(&a.addr);
    a.signal("STOP");
    let b = BrokerProcess::start_with(&args);
    produce(&b.addr, &name, 300, 300);
    // Produces reach A once it runs again: none may be acknowledged.
    for i in 0..50 {
        let v = format!("zombie-{i}");
        let _ = zombie_producer.send(BaseRecord::<(), _>::to(&name).partition(0).payload(&v));
    }
    a.signal("CONT");
    assert!(
        zombie_producer.flush(Duration::from_secs(5)).is_err(),
        "the resumed owner acknowledged a produce"
    );
    let status = a.wait_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(3), "exit status of a fenced process");
    assert_exactly_once_in_order(&b.addr, &name, 1, 600);
}
