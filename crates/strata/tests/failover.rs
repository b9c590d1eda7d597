//! Cluster failover (issue 14; docs/failover.md): three brokers on a real
//! etcd and s3s-fs, default session settings. A broker is killed with
//! kill -9 under acks=all load from a plain, an idempotent and a
//! transactional producer, while it also coordinates a committing group and
//! the transactional producer's transactions. Its partitions and
//! coordinators are served again by the others, recovered from its WAL:
//! every acknowledged message is stored (idempotent: exactly once, in
//! order), every committed transaction is wholly visible at
//! `read_committed` and no aborted one, and the group and the transactions
//! carry on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{
    Cluster, committed_values, coordinator_partition, group_consumer, leaders, read_values, transactional,
    wait_listed,
};
use common::kafka::{assert_exactly_once_in_order, create_topic};
use common::topic;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

const PARTITIONS: i32 = 3;

/// What a producer's deliveries said: the acknowledged values with their
/// partition and time, and how many failed.
#[derive(Default)]
struct Deliveries {
    acked: Mutex<Vec<(i32, String, Instant)>>,
    failed: AtomicU64,
}

struct Recorder(Arc<Deliveries>);

impl rdkafka::ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        println!("producer error: {error}: {reason}");
    }
    /// Warnings, and what the idempotent producer says of its epoch and
    /// sequences (`debug=eos`): an epoch bump re-sends in-flight batches
    /// under new sequences, so it is the first thing to look at when a
    /// value is stored twice.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let eos = ["poch", "rain", "bump", "equence", "ersisted", "error", "PID", "seq"]
            .iter()
            .any(|w| message.contains(w))
            && !message.contains("Connect to")
            && fac != "PRODUCE";
        if (level as i32) <= (rdkafka::config::RDKafkaLogLevel::Warning as i32) || eos {
            println!("producer log {fac}: {message}");
        }
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                self.0.acked.lock().unwrap_or_else(|e| e.into_inner()).push((
                    m.partition(),
                    v,
                    Instant::now(),
                ));
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl Deliveries {
    /// Whether every partition acknowledged something after `t`.
    fn every_partition_after(&self, t: Instant) -> bool {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        (0..PARTITIONS).all(|p| acked.iter().any(|(q, _, at)| *q == p && *at > t))
    }

    /// Asserts that every acknowledged value is stored in `name` (read
    /// through `reader`), at least once.
    fn assert_stored(&self, reader: &str, name: &str, sent: u64) {
        let acked: Vec<(i32, String)> = {
            let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            acked.iter().map(|(p, v, _)| (*p, v.clone())).collect()
        };
        let stored = read_values(reader, name, PARTITIONS, acked.len(), "read_uncommitted");
        let stored: BTreeSet<(i32, String)> =
            stored.into_iter().flat_map(|(p, vs)| vs.into_iter().map(move |v| (p, v))).collect();
        let lost: Vec<&(i32, String)> = acked.iter().filter(|a| !stored.contains(a)).collect();
        let failed = self.failed.load(Ordering::Acquire);
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged messages lost ({sent} sent, {failed} failed): {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
        println!("{name}: {sent} sent, {} acknowledged and stored, {failed} failed", acked.len());
    }

    /// The first acknowledgement after `t` on one of `partitions`.
    fn first_after(&self, t: Instant, partitions: &BTreeSet<i32>) -> Option<Duration> {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.iter().filter(|(p, _, at)| partitions.contains(p) && *at > t).map(|(_, _, at)| *at - t).min()
    }
}

/// A producer thread (acks=all) writing "0", "1", ... round-robin over the
/// partitions while `running` holds; returns how many it sent.
fn load(
    bootstrap: &str,
    name: &str,
    idempotent: bool,
    running: &Arc<AtomicBool>,
) -> (Arc<Deliveries>, std::thread::JoinHandle<u64>) {
    let deliveries = Arc::new(Deliveries::default());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000");
    if idempotent {
        config.set("debug", "eos").set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let p: ThreadedProducer<Recorder> =
        config.create_with_context(Recorder(Arc::clone(&deliveries))).expect("producer");
    let (name, running) = (name.to_string(), Arc::clone(running));
    let thread = std::thread::spawn(move || {
        let mut sent = 0u64;
        while running.load(Ordering::Acquire) {
            let v = sent.to_string();
            let record =
                BaseRecord::<(), _>::to(&name).partition((sent % PARTITIONS as u64) as i32).payload(&v);
            match p.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
                Err((e, _)) => panic!("enqueue: {e}"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        p.flush(Duration::from_secs(120)).expect("every message delivered or failed");
        sent
    });
    (deliveries, thread)
}

/// What the transactional thread saw: transactions by outcome.
#[derive(Default)]
struct Transactions {
    committed: Mutex<Vec<(u64, Instant)>>,
    aborted: Mutex<Vec<u64>>,
}

/// Runs transactions of one message per partition ("t<n>-<partition>")
/// while `running` holds. Abortable errors abort the transaction (and are
/// retried by the next); retriable ones retry the call.
fn transact(
    bootstrap: &str,
    name: &str,
    id: &str,
    running: &Arc<AtomicBool>,
) -> (Arc<Transactions>, std::thread::JoinHandle<()>) {
    let log = Arc::new(Transactions::default());
    let p = transactional(bootstrap, id);
    let (name, running, out) = (name.to_string(), Arc::clone(running), Arc::clone(&log));
    let thread = std::thread::spawn(move || {
        let deadline = |what: &'static str| {
            let until = Instant::now() + Duration::from_secs(120);
            move |e: &KafkaError| assert!(Instant::now() < until, "{what} kept failing: {e}")
        };
        let mut n = 0u64;
        while running.load(Ordering::Acquire) {
            let check = deadline("begin_transaction");
            while let Err(e) = p.begin_transaction() {
                check(&e);
                std::thread::sleep(Duration::from_millis(100));
            }
            for partition in 0..PARTITIONS {
                let v = format!("t{n}-{partition}");
                p.send(BaseRecord::<(), _>::to(&name).partition(partition).payload(&v))
                    .map_err(|(e, _)| e)
                    .expect("send in a transaction");
            }
            let check = deadline("commit_transaction");
            let committed = loop {
                match p.commit_transaction(Duration::from_secs(30)) {
                    Ok(()) => break true,
                    Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => break false,
                    Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                        check(&KafkaError::Transaction(e));
                    }
                    // The crate flushes before it commits: a flush that
                    // timed out leaves the transaction to commit again.
                    Err(e @ KafkaError::Flush(_)) => check(&e),
                    Err(e) => panic!("transaction {n}: {e}"),
                }
            };
            if committed {
                out.committed.lock().unwrap_or_else(|e| e.into_inner()).push((n, Instant::now()));
            } else {
                let check = deadline("abort_transaction");
                loop {
                    match p.abort_transaction(Duration::from_secs(30)) {
                        Ok(()) => break,
                        Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                            check(&KafkaError::Transaction(e));
                        }
                        Err(e) => panic!("aborting transaction {n}: {e}"),
                    }
                }
                out.aborted.lock().unwrap_or_else(|e| e.into_inner()).push(n);
            }
            n += 1;
        }
    });
    (log, thread)
}

/// Waits until `done` holds, up to `limit`.
fn wait_for(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_and_coordinators_carry_on() {
    let mut cluster = Cluster::start("k9");
    let bootstrap = cluster.bootstrap();
    let (plain, idem, txn) = (topic("plain"), topic("idem"), topic("txn"));
    for name in [&plain, &idem, &txn] {
        create_topic(&cluster.brokers[0].addr, name, PARTITIONS).await;
    }
    let running = Arc::new(AtomicBool::new(true));

    // The victim coordinates the transactional id, and the group is chosen
    // so that the victim coordinates it too.
    let txn_id = topic("k9-tx");
    let (transactions, transacting) = transact(&bootstrap, &txn, &txn_id, &running);
    let txn_partition = strata_broker::groups::partition_for(&txn_id, 50);
    let victim = leaders(&cluster.brokers[0].addr, "__transaction_state", 50)[&txn_partition];
    let reader = cluster.brokers[(victim % 3) as usize].addr.clone();
    // The first group request creates __consumer_offsets.
    let warm = group_consumer(&bootstrap, &topic("k9-warm"));
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&idem, 0);
    let _ = warm.committed_offsets(tpl, Duration::from_secs(30));
    drop(warm);
    let offsets = leaders(&cluster.brokers[0].addr, "__consumer_offsets", 50);
    let group = (0..)
        .map(|k| format!("k9-group-{k}"))
        .find(|g| offsets[&coordinator_partition(g)] == victim)
        .expect("a group the victim coordinates");

    let commits = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (bootstrap, name, group) = (bootstrap.clone(), idem.clone(), group.clone());
        let (running, commits) = (Arc::clone(&running), Arc::clone(&commits));
        std::thread::spawn(move || {
            let c = group_consumer(&bootstrap, &group);
            c.subscribe(&[&name]).expect("subscribe");
            while running.load(Ordering::Acquire) {
                // Errors while the coordinator fails over are retriable; the
                // commits counted are the ones that succeeded.
                let _ = c.poll(Duration::from_millis(100));
                if c.assignment().expect("assignment").count() > 0
                    && c.commit_consumer_state(CommitMode::Sync).is_ok()
                {
                    commits.fetch_add(1, Ordering::AcqRel);
                }
            }
        })
    };
    let (plain_acks, plain_thread) = load(&bootstrap, &plain, false, &running);
    let (idem_acks, idem_thread) = load(&bootstrap, &idem, true, &running);
    wait_for(Duration::from_secs(60), "load before the kill", || {
        let t = Instant::now() - Duration::from_secs(1);
        commits.load(Ordering::Acquire) >= 3
            && transactions.committed.lock().unwrap_or_else(|e| e.into_inner()).len() >= 3
            && plain_acks.every_partition_after(t)
            && idem_acks.every_partition_after(t)
    });
    let victims_partitions: BTreeSet<i32> = leaders(&reader, &idem, PARTITIONS as usize)
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(p, _)| *p)
        .collect();

    cluster.brokers[(victim - 1) as usize].kill9();
    let killed = Instant::now();
    let commits_at_kill = commits.load(Ordering::Acquire);
    let limit = Duration::from_secs(60);
    wait_for(limit, "every partition served again", || {
        plain_acks.every_partition_after(killed) && idem_acks.every_partition_after(killed)
    });
    wait_for(limit, "the group committing after its coordinator died", || {
        commits.load(Ordering::Acquire) >= commits_at_kill + 3
    });
    wait_for(limit, "transactions committing after their coordinator died", || {
        let committed = transactions.committed.lock().unwrap_or_else(|e| e.into_inner());
        committed.iter().filter(|(_, at)| *at > killed).count() >= 3
    });
    println!(
        "broker {victim} killed; first idempotent ack on its partitions {victims_partitions:?} after {:?}",
        idem_acks.first_after(killed, &victims_partitions)
    );
    running.store(false, Ordering::Release);
    let plain_sent = plain_thread.join().expect("plain producer");
    let idem_sent = idem_thread.join().expect("idempotent producer");
    transacting.join().expect("transactional producer");
    consumer.join().expect("consumer");

    // Idempotent: every message acknowledged, stored exactly once, in order.
    assert_eq!(idem_acks.failed.load(Ordering::Acquire), 0, "idempotent deliveries failed");
    assert_exactly_once_in_order(&reader, &idem, PARTITIONS, idem_sent);

    // Plain: every acknowledged message is stored (a retry may store one twice).
    plain_acks.assert_stored(&reader, &plain, plain_sent);

    // Transactional: each committed transaction whole and once, no aborted one.
    let committed: BTreeSet<u64> =
        transactions.committed.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(n, _)| *n).collect();
    let aborted: BTreeSet<u64> =
        transactions.aborted.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    let seen = committed_values(&reader, &txn, PARTITIONS, committed.len() * PARTITIONS as usize);
    let mut by_txn: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    for (partition, values) in &seen {
        for v in values {
            let n = v.strip_prefix('t').and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok());
            by_txn.entry(n.unwrap_or_else(|| panic!("unexpected value {v:?}"))).or_default().push(*partition);
        }
    }
    for n in &committed {
        assert_eq!(
            by_txn.get(n),
            Some(&(0..PARTITIONS).collect()),
            "committed transaction {n} at read_committed"
        );
    }
    let visible_aborted: Vec<&u64> = by_txn.keys().filter(|n| aborted.contains(n)).collect();
    assert!(visible_aborted.is_empty(), "aborted transactions visible: {visible_aborted:?}");
    let unknown: Vec<&u64> = by_txn.keys().filter(|n| !committed.contains(n)).collect();
    assert!(unknown.is_empty(), "transactions visible that never committed: {unknown:?}");
    println!("transactions: {} committed, {} aborted", committed.len(), aborted.len());
}

/// How many times a broker logged the loss of its registration lease.
fn lost_leases(b: &common::BrokerProcess) -> usize {
    b.log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains("registration lease is lost"))
        .count()
}

/// Slow tier: 50 random events on random brokers of three under an
/// idempotent and a plain producer: kill -9 (restarted with its node id once
/// its lease expired), a pause past the session (SIGSTOP, SIGCONT: it must
/// exit 3 and is restarted), or a short pause (2 s, well inside the
/// session: it must keep its lease). After each, every partition is served
/// again. A false failover is a broker that lost its lease while the test
/// neither killed nor paused it past its session: the count must be zero.
/// At the end every acknowledged message is stored, the idempotent ones
/// exactly once and in order. `STRATA_SOAK_SEED` repeats a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fifty_kills_and_pauses_of_random_brokers_lose_nothing() {
    let mut cluster = Cluster::start("soak");
    let bootstrap = cluster.bootstrap();
    let (plain, idem) = (topic("soak-plain"), topic("soak-idem"));
    for name in [&plain, &idem] {
        create_topic(&cluster.brokers[0].addr, name, PARTITIONS).await;
    }
    let seed: u64 =
        std::env::var("STRATA_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("STRATA_SOAK_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let running = Arc::new(AtomicBool::new(true));
    let (plain_acks, plain_thread) = load(&bootstrap, &plain, false, &running);
    let (idem_acks, idem_thread) = load(&bootstrap, &idem, true, &running);
    let served = |t: Instant| plain_acks.every_partition_after(t) && idem_acks.every_partition_after(t);
    wait_for(Duration::from_secs(60), "load before the soak", || {
        served(Instant::now() - Duration::from_secs(1))
    });

    // Leases lost where the test expected it (long pauses), by broker.
    let mut expected_losses = [0usize; 3];
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut false_failovers = 0;
    for event in 0..50 {
        let i = next(3) as usize;
        let node = i as i32 + 1;
        let other = cluster.brokers[(i + 1) % 3].addr.clone();
        let what = ["kill", "long pause", "short pause"][next(3) as usize];
        *counts.entry(what).or_default() += 1;
        let at = Instant::now();
        match what {
            "kill" => {
                cluster.brokers[i].kill9();
                wait_listed(&other, node, false);
                cluster.brokers[i].restart_same_port();
            }
            "long pause" => {
                cluster.brokers[i].signal("STOP");
                wait_listed(&other, node, false);
                cluster.brokers[i].signal("CONT");
                let status = cluster.brokers[i].wait_exit(Duration::from_secs(30));
                assert_eq!(status.and_then(|s| s.code()), Some(3), "event {event}: broker {node} resumed");
                expected_losses[i] += 1;
                cluster.brokers[i].restart_same_port();
            }
            _ => {
                cluster.brokers[i].signal("STOP");
                std::thread::sleep(Duration::from_secs(2));
                cluster.brokers[i].signal("CONT");
            }
        }
        wait_for(
            Duration::from_secs(120),
            &format!("event {event} ({what} of {node}): served again"),
            || served(Instant::now() - Duration::from_millis(500)),
        );
        // A false failover: a broker that lost its lease unprompted, or one
        // that exited although the test did not stop it.
        for (j, b) in cluster.brokers.iter_mut().enumerate() {
            let lost = lost_leases(b);
            if !b.is_running() || lost > 0 && (j != i || what != "long pause") {
                false_failovers += 1;
                println!(
                    "event {event}: broker {} lost its lease unprompted (running {})",
                    j + 1,
                    b.is_running()
                );
                b.restart_same_port();
            }
        }
        println!("event {event}: {what} of broker {node}, served again after {:?}", at.elapsed());
    }
    running.store(false, Ordering::Release);
    let plain_sent = plain_thread.join().expect("plain producer");
    let idem_sent = idem_thread.join().expect("idempotent producer");
    let reader = cluster.brokers[0].addr.clone();
    println!(
        "events {counts:?}; false failovers {false_failovers}; lease losses by long pauses {expected_losses:?}"
    );
    assert_eq!(false_failovers, 0, "live brokers lost their lease");
    assert_eq!(idem_acks.failed.load(Ordering::Acquire), 0, "idempotent deliveries failed");
    let twice = stored_twice(&reader, &idem, idem_sent);
    for (partition, offset, _) in &twice {
        // Who wrote each copy: the batches around it, as stored.
        let addrs: Vec<String> = cluster.brokers.iter().map(|b| b.addr.clone()).collect();
        for h in batch_headers(&addrs, &idem, *partition, (offset - 8).max(0), offset + 4) {
            println!("partition {partition}: {h}");
        }
    }
    assert!(twice.is_empty(), "idempotent values stored twice, (partition, offset, value): {twice:?}");
    assert_exactly_once_in_order(&reader, &idem, PARTITIONS, idem_sent);
    plain_acks.assert_stored(&reader, &plain, plain_sent);
}

/// The headers of the stored batches of `name`'s `partition` overlapping
/// `[from, to)`, read by a raw Fetch from whichever of `addrs` leads it:
/// offsets, partition leader epoch and the producer's id, epoch and
/// sequence (who wrote each batch, for a duplicate's diagnosis).
fn batch_headers(addrs: &[String], name: &str, partition: i32, from: i64, to: i64) -> Vec<String> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    for addr in addrs {
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = from;
        p.partition_max_bytes = 1 << 20;
        p.current_leader_epoch = -1;
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(name.to_string()));
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = (-1).into();
        req.max_wait_ms = 100;
        req.max_bytes = 1 << 20;
        req.topics = vec![t];
        let mut conn = common::conn::Conn::open(addr);
        let Ok(resp) = conn.try_call::<_, FetchResponse>(ApiKey::Fetch, 11, &req) else { continue };
        let Some(part) = resp.responses.first().and_then(|r| r.partitions.first()) else { continue };
        if part.error_code != 0 {
            continue;
        }
        let mut out = Vec::new();
        let mut b: &[u8] = part.records.as_deref().unwrap_or_default();
        // Kafka's v2 batch header: fixed offsets from the batch's start.
        let be =
            |s: &[u8], at: usize, n: usize| s[at..at + n].iter().fold(0i64, |a, x| a << 8 | i64::from(*x));
        while b.len() >= 61 {
            let base = be(b, 0, 8);
            let len = be(b, 8, 4) as usize;
            let last_delta = be(b, 23, 4);
            if base >= to {
                break;
            }
            out.push(format!(
                "batch {base}..={} leader_epoch {} producer {} epoch {} seq {}",
                base + last_delta,
                be(b, 12, 4) as i32,
                be(b, 43, 8),
                be(b, 51, 2) as i16,
                be(b, 53, 4) as i32,
            ));
            b = b.get(12 + len..).unwrap_or_default();
        }
        return out;
    }
    vec![format!("no broker served {name}-{partition}")]
}

/// Every record of `name` whose value an earlier record already holds, as
/// (partition, offset, value); reads every record below the high
/// watermarks (at least `sent`).
fn stored_twice(addr: &str, name: &str, sent: u64) -> Vec<(i32, i64, String)> {
    let (c, total) = common::kafka::assign_all(addr, name, PARTITIONS);
    let count = sent.max(total as u64);
    let mut seen: BTreeMap<String, (i32, i64)> = BTreeMap::new();
    let mut twice = Vec::new();
    let (mut got, deadline) = (0u64, Instant::now() + Duration::from_secs(120));
    while got < count && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            got += 1;
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if let Some(first) = seen.insert(v.clone(), (m.partition(), m.offset())) {
                twice.push((m.partition(), m.offset(), format!("{v} (first at {first:?})")));
            }
        }
    }
    twice
}
