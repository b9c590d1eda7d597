//! A broker with its metadata in etcd (`--metadata etcd://host:port/prefix`,
//! a real etcd started by the test): it serves and keeps what it
//! acknowledged across a kill -9; a second broker taking the prefix over
//! (the same object store, the object WAL) fences the first, which then
//! acknowledges nothing and exits, and serves everything the first
//! acknowledged; a broker under another prefix of the same etcd and bucket
//! sees none of it.

mod common;

use std::time::Duration;

use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strata_meta::testing::EtcdServer;

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
