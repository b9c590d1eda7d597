//! A cluster of three brokers (node ids 1, 2, 3) on a real etcd and
//! s3s-fs, and the client helpers the cluster tests share (`cluster.rs`,
//! `failover.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use strata_meta::testing::EtcdServer;

use super::BrokerProcess;
use super::kafka::admin;
use super::s3::S3Server;

/// Three brokers of one cluster: node ids 1, 2, 3.
pub struct Cluster {
    pub brokers: Vec<BrokerProcess>,
    pub s3: S3Server,
    pub etcd: EtcdServer,
}

impl Cluster {
    pub fn start(prefix: &str) -> Self {
        let etcd = EtcdServer::start();
        let s3 = S3Server::start("cluster");
        let brokers = start_brokers(&etcd, &s3, prefix);
        Cluster { brokers, s3, etcd }
    }

    pub fn bootstrap(&self) -> String {
        self.brokers.iter().map(|b| b.addr.clone()).collect::<Vec<_>>().join(",")
    }
}

pub fn start_brokers(etcd: &EtcdServer, s3: &S3Server, prefix: &str) -> Vec<BrokerProcess> {
    let metadata = format!("etcd://{}/{prefix}", etcd.endpoint);
    let objects = format!("s3://cluster/{prefix}");
    (1..=3)
        .map(|id| {
            let id = id.to_string();
            let flags = [
                "--metadata",
                &metadata,
                "--object-store",
                &objects,
                "--node-id",
                &id,
                "--wal-flush-ms",
                "5",
            ];
            BrokerProcess::start_with_env(&flags, &s3.env())
        })
        .collect()
}

/// Partition leaders of `name`, by partition, once every partition has one.
pub fn leaders(addr: &str, name: &str, partitions: usize) -> BTreeMap<i32, i32> {
    let client = admin(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.inner().fetch_metadata(Some(name), Duration::from_secs(10)).expect("metadata");
        let found: BTreeMap<i32, i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
            .filter(|(_, l)| *l >= 0)
            .collect();
        if found.len() == partitions {
            return found;
        }
        assert!(Instant::now() < deadline, "partitions of {name} without a leader: {found:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Sends `0..count` (message `i` to partition `i % partitions`) and waits
/// until every one is acknowledged.
pub fn produce_numbers(bootstrap: &str, name: &str, partitions: u64, count: u64) {
    let p = producer(bootstrap);
    for i in 0..count {
        let v = i.to_string();
        let record = BaseRecord::<(), _>::to(name).partition((i % partitions) as i32).payload(&v);
        p.send(record).map_err(|(e, _)| e).expect("send");
    }
    p.flush(Duration::from_secs(60)).expect("every message acknowledged");
}

/// An idempotent producer thread: "0", "1", ... round-robin over
/// `partitions` while `running` holds (and until at least `min` are sent);
/// returns how many it sent, every one acknowledged.
pub fn steady_producer(
    bootstrap: &str,
    name: &str,
    partitions: u64,
    running: &Arc<AtomicBool>,
    min: u64,
) -> std::thread::JoinHandle<u64> {
    steady_producer_logged(bootstrap, name, partitions, running, min, &Arc::default())
}

/// The errors a client reported: error code and what it said.
#[derive(Default)]
pub struct ErrorLog(pub Mutex<Vec<(RDKafkaErrorCode, String)>>);

impl ErrorLog {
    /// Notes one error.
    pub fn note(&self, code: RDKafkaErrorCode, what: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((code, what));
    }

    /// The errors noted that Kafka does not mark retriable.
    pub fn not_retriable(&self) -> Vec<(RDKafkaErrorCode, String)> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter(|(code, _)| !kafka_retriable(*code)).cloned().collect()
    }
}

/// Whether Kafka marks an error retriable: a broker error whose Java
/// exception is a `RetriableException`, or a client-side connection or
/// timeout error (the Java client's NetworkException and TimeoutException).
pub fn kafka_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        UnknownTopicOrPartition
            | LeaderNotAvailable
            | NotLeaderForPartition
            | RequestTimedOut
            | NetworkException
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | ConcurrentTransactions
            | KafkaStorageError
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | OffsetNotAvailable
            | BrokerTransportFailure
            | AllBrokersDown
            | OperationTimedOut
            | MessageTimedOut
            | Resolve
    )
}

/// A producer context that notes every error the client reports.
pub struct Logged(pub Arc<ErrorLog>);

impl rdkafka::ClientContext for Logged {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
        self.0.note(code, format!("{error}: {reason}"));
    }
}

impl ProducerContext for Logged {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
            self.0.note(code, format!("delivery: {e}"));
        }
    }
}

/// [`steady_producer`], noting every error its client reports in `log`.
pub fn steady_producer_logged(
    bootstrap: &str,
    name: &str,
    partitions: u64,
    running: &Arc<AtomicBool>,
    min: u64,
    log: &Arc<ErrorLog>,
) -> std::thread::JoinHandle<u64> {
    let (bootstrap, name, running) = (bootstrap.to_string(), name.to_string(), Arc::clone(running));
    let p: ThreadedProducer<Logged> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(Logged(Arc::clone(log)))
        .expect("producer");
    std::thread::spawn(move || {
        let mut sent = 0u64;
        while running.load(Ordering::Acquire) || sent < min {
            let v = sent.to_string();
            let record = BaseRecord::<(), _>::to(&name).partition((sent % partitions) as i32).payload(&v);
            p.send(record).map_err(|(e, _)| e).expect("send");
            sent += 1;
            if sent.is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        p.flush(Duration::from_secs(60)).expect("every message acknowledged");
        sent
    })
}

pub fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// Moves partition `partition` of `name` to broker `to` with `strata move`
/// (AlterPartitionReassignments, then ListPartitionReassignments until done).
pub fn strata_move(bootstrap: &str, name: &str, partition: i32, to: i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["move", "--bootstrap", bootstrap, "--topic", name, "--partition"])
        .arg(partition.to_string())
        .arg("--to")
        .arg(to.to_string())
        .output()
        .expect("run strata move");
    assert!(out.status.success(), "strata move failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until Metadata names `to` as the leader of `name`-`partition`.
pub fn wait_leader(addr: &str, name: &str, partition: i32, to: i32) {
    let client = admin(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = client.inner().fetch_metadata(Some(name), Duration::from_secs(10)).expect("metadata");
        let leader = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter())
            .find(|p| p.id() == partition)
            .map(|p| p.leader());
        if leader == Some(to) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}-{partition} never moved to {to} (leader {leader:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The partition of `__consumer_offsets` that holds `group` (Kafka's rule:
/// the Java hash of the id modulo 50).
pub fn coordinator_partition(group: &str) -> i32 {
    strata_broker::groups::partition_for(group, strata_broker::groups::OFFSETS_PARTITIONS)
}

pub fn transactional(bootstrap: &str, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("message.timeout.ms", "60000")
        .create()
        .expect("transactional producer");
    p.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    p
}

/// `name`'s values by partition at `read_committed`: read until `want`
/// values arrived (or a deadline passed), then one second more for any
/// value that should not be there.
pub fn committed_values(addr: &str, name: &str, partitions: i32, want: usize) -> BTreeMap<i32, Vec<String>> {
    read_values(addr, name, partitions, want, "read_committed")
}

/// Like [`committed_values`], at `isolation`.
pub fn read_values(
    addr: &str,
    name: &str,
    partitions: i32,
    want: usize,
    isolation: &str,
) -> BTreeMap<i32, Vec<String>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "cluster-read-values")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(name, p, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut got = 0;
    let mut deadline = Instant::now() + Duration::from_secs(60);
    let mut settling = false;
    while Instant::now() < deadline {
        if got >= want && !settling {
            settling = true;
            deadline = Instant::now() + Duration::from_secs(1);
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.entry(m.partition()).or_default().push(v);
            got += 1;
        }
    }
    out
}

/// Waits until Metadata from `addr` lists broker `node` (`listed`) or no
/// longer does (its lease expired, so that it may start again with its id).
pub fn wait_listed(addr: &str, node: i32, listed: bool) {
    let client = admin(addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = client.inner().fetch_metadata(None, Duration::from_secs(10));
        if md.is_ok_and(|md| md.brokers().iter().any(|b| b.id() == node) == listed) {
            return;
        }
        assert!(Instant::now() < deadline, "broker {node} still {}listed", if listed { "not " } else { "" });
        std::thread::sleep(Duration::from_millis(50));
    }
}
