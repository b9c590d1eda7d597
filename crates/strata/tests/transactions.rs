//! Transactions with librdkafka (the first transaction protocol, as
//! librdkafka speaks it): commits and aborts interleaved across partitions,
//! what `read_committed` and `read_uncommitted` consumers see, an open
//! transaction holding `read_committed` back, fencing by a second instance,
//! and a timed-out transaction aborted by the coordinator.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::kafka::create_topic;
use common::{BrokerProcess, topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

fn transactional(addr: &str, id: &str, timeout_ms: u32) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("linger.ms", "5")
        .create()
        .expect("transactional producer");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let rec = BaseRecord::<(), _>::to(topic).partition(i as i32 % PARTITIONS).payload(v);
        p.send(rec).map_err(|(e, _)| e).expect("send");
    }
    p.flush(TIMEOUT).expect("flush");
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn consumer(addr: &str, isolation: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "strata-txn-tests")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    c
}

/// Polls until every value of `want` was read, then until every partition's
/// position reached `end(partition)`; returns everything read, in the order
/// read (duplicates included).
fn read_all(c: &BaseConsumer, want: &BTreeSet<String>, end: impl Fn(i32) -> i64) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut read = Vec::new();
    let mut got = BTreeSet::new();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    loop {
        assert!(Instant::now() < deadline, "read {} of {:?}; positions {positions:?}", got.len(), want);
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            got.insert(v.clone());
            read.push(v);
        }
        if let Ok(tpl) = c.position() {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    positions.insert(e.partition(), o);
                }
            }
        }
        let at_end = (0..PARTITIONS).all(|p| positions.get(&p).is_some_and(|o| *o >= end(p)));
        if want.is_subset(&got) && at_end {
            return read;
        }
    }
}

/// Like [`read_all`], as a set, checking that nothing was read twice.
fn read_until(c: &BaseConsumer, want: &BTreeSet<String>, end: impl Fn(i32) -> i64) -> BTreeSet<String> {
    let read = read_all(c, want, end);
    let set: BTreeSet<String> = read.iter().cloned().collect();
    assert_eq!(set.len(), read.len(), "a message was read twice");
    set
}

fn high_watermarks(c: &BaseConsumer, topic: &str) -> HashMap<i32, i64> {
    (0..PARTITIONS).map(|p| (p, c.fetch_watermarks(topic, p, TIMEOUT).expect("watermarks").1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_aborts_are_seen_as_each_isolation_level_sees_them() {
    let broker = BrokerProcess::start();
    let name = topic("txn");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    let p = transactional(&broker.addr, &format!("{name}-tx"), 60_000);
    let mut committed = BTreeSet::new();
    let mut all = BTreeSet::new();
    for round in 0..4 {
        p.begin_transaction().expect("begin");
        let vs = values(&format!("r{round}"), 9);
        send(&p, &name, &vs);
        all.extend(vs.iter().cloned());
        if round % 2 == 0 {
            p.commit_transaction(TIMEOUT).expect("commit");
            committed.extend(vs);
        } else {
            p.abort_transaction(TIMEOUT).expect("abort");
        }
    }
    // Every partition ends with a marker: read_committed reads to the end.
    let rc = consumer(&broker.addr, "read_committed", &name);
    let hw = high_watermarks(&rc, &name);
    let seen = read_until(&rc, &committed, |p| hw[&p]);
    assert_eq!(seen, committed, "read_committed sees exactly the committed messages");
    let ru = consumer(&broker.addr, "read_uncommitted", &name);
    let seen = read_until(&ru, &all, |p| hw[&p]);
    assert_eq!(seen, all, "read_uncommitted sees every message");

    // An open transaction holds read_committed back at its first offset.
    p.begin_transaction().expect("begin");
    let open = values("open", 3);
    send(&p, &name, &open);
    let rc = consumer(&broker.addr, "read_committed", &name);
    let seen = read_until(&rc, &committed, |p| hw[&p]);
    assert_eq!(seen, committed, "nothing of the open transaction");
    let ru = consumer(&broker.addr, "read_uncommitted", &name);
    let mut with_open = all.clone();
    with_open.extend(open.iter().cloned());
    let hw_open = high_watermarks(&ru, &name);
    assert_eq!(read_until(&ru, &with_open, |p| hw_open[&p]), with_open);
    p.commit_transaction(TIMEOUT).expect("commit");
    committed.extend(open);
    let rc = consumer(&broker.addr, "read_committed", &name);
    let hw = high_watermarks(&rc, &name);
    assert_eq!(read_until(&rc, &committed, |p| hw[&p]), committed, "then its messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_fences_the_first_and_its_transaction_aborts() {
    let broker = BrokerProcess::start();
    let name = topic("txn-fence");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    let id = format!("{name}-tx");
    let first = transactional(&broker.addr, &id, 60_000);
    first.begin_transaction().expect("begin");
    send(&first, &name, &values("zombie", 6));
    // The second instance's InitProducerId aborts the first's transaction.
    let second = transactional(&broker.addr, &id, 60_000);
    let err = first.commit_transaction(TIMEOUT).expect_err("the first instance is fenced");
    assert!(err.to_string().to_lowercase().contains("fenc") || err.to_string().contains("epoch"), "{err}");
    second.begin_transaction().expect("begin");
    let good = values("current", 6);
    send(&second, &name, &good);
    second.commit_transaction(TIMEOUT).expect("commit");
    let rc = consumer(&broker.addr, "read_committed", &name);
    let hw = high_watermarks(&rc, &name);
    let want: BTreeSet<String> = good.into_iter().collect();
    assert_eq!(read_until(&rc, &want, |p| hw[&p]), want, "only the current instance's commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_transaction_is_aborted_and_read_committed_moves_on() {
    let broker = BrokerProcess::start_with(&["--transaction-abort-check-interval-ms", "200"]);
    let name = topic("txn-timeout");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    let stuck = transactional(&broker.addr, &format!("{name}-stuck"), 2000);
    stuck.begin_transaction().expect("begin");
    send(&stuck, &name, &values("stuck", 6));
    // Another producer commits after it: read_committed reaches those only
    // once the stuck transaction is aborted.
    let other = transactional(&broker.addr, &format!("{name}-other"), 60_000);
    other.begin_transaction().expect("begin");
    let good = values("after", 6);
    send(&other, &name, &good);
    other.commit_transaction(TIMEOUT).expect("commit");
    let rc = consumer(&broker.addr, "read_committed", &name);
    let want: BTreeSet<String> = good.into_iter().collect();
    let hw = high_watermarks(&rc, &name);
    let seen = read_until(&rc, &want, |p| hw[&p]);
    assert_eq!(seen, want, "the stuck transaction's messages are aborted");
    assert!(stuck.commit_transaction(TIMEOUT).is_err(), "the timed-out producer cannot commit");
}

/// One transactional producer's loop: transactions of 6 messages (values
/// `who/n/i`) until `stop`, recording each transaction whose commit was
/// acknowledged. After an error it aborts, or starts a new instance when the
/// error is fatal (as applications do).
fn run_transactions(
    addr: String,
    name: String,
    who: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    in_txn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> (BTreeSet<u64>, u64) {
    use std::sync::atomic::Ordering;
    let id = format!("{name}-tx-{who}");
    let mut committed = BTreeSet::new();
    let mut attempted = 0u64;
    let mut p: Option<ThreadedProducer<DefaultProducerContext>> = None;
    while !stop.load(Ordering::Relaxed) {
        let producer = match p.take() {
            Some(p) => p,
            None => {
                let made: Result<ThreadedProducer<DefaultProducerContext>, _> = ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("transactional.id", &id)
                    .set("transaction.timeout.ms", "3000")
                    .set("linger.ms", "5")
                    .set("reconnect.backoff.ms", "50")
                    .set("reconnect.backoff.max.ms", "500")
                    .create();
                let Ok(made) = made else { continue };
                if made.init_transactions(Duration::from_secs(10)).is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                made
            }
        };
        let n = attempted;
        attempted += 1;
        if producer.begin_transaction().is_err() {
            continue;
        }
        in_txn.fetch_add(1, Ordering::SeqCst);
        let mut sent = true;
        for i in 0..6 {
            let v = format!("{who}/{n}/{i}");
            let rec = BaseRecord::<(), _>::to(&name).partition(i % PARTITIONS).payload(&v);
            if producer.send(rec).is_err() {
                sent = false;
                break;
            }
        }
        let outcome = if sent {
            producer.commit_transaction(Duration::from_secs(10))
        } else {
            Err(rdkafka::error::KafkaError::Canceled)
        };
        in_txn.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(()) => {
                committed.insert(n);
                p = Some(producer);
            }
            Err(rdkafka::error::KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                if producer.abort_transaction(Duration::from_secs(10)).is_ok() {
                    p = Some(producer);
                }
            }
            Err(_) => {} // fatal or unknown outcome: a new instance fences this one
        }
    }
    (committed, attempted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_transaction_leaves_every_transaction_whole() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut broker = BrokerProcess::start_with(&["--transaction-abort-check-interval-ms", "200"]);
    let name = topic("txn-kill");
    create_topic(&broker.addr, &name, PARTITIONS).await;
    let stop = Arc::new(AtomicBool::new(false));
    let in_txn = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..3)
        .map(|who| {
            let (addr, name, stop, in_txn) =
                (broker.addr.clone(), name.clone(), Arc::clone(&stop), Arc::clone(&in_txn));
            std::thread::spawn(move || run_transactions(addr, name, who, stop, in_txn))
        })
        .collect();
    // Let transactions run, then kill the broker while some are open.
    let deadline = Instant::now() + TIMEOUT;
    let rc = consumer(&broker.addr, "read_committed", &name);
    while high_watermarks(&rc, &name).values().sum::<i64>() < 60 {
        assert!(Instant::now() < deadline, "transactions did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(rc);
    let open_at_kill = in_txn.load(Ordering::SeqCst);
    broker.restart_same_port();
    let rc = consumer(&broker.addr, "read_committed", &name);
    let later = Instant::now() + TIMEOUT;
    let before = high_watermarks(&rc, &name).values().sum::<i64>();
    while high_watermarks(&rc, &name).values().sum::<i64>() < before + 60 {
        assert!(Instant::now() < later, "transactions did not resume after the restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(BTreeSet<u64>, u64)> =
        producers.into_iter().map(|h| h.join().expect("producer thread")).collect();
    assert!(open_at_kill > 0, "no transaction was open when the broker was killed");
    // Every transaction is whole: all six of its messages or none, each once;
    // every acknowledged commit is there.
    let hw = high_watermarks(&rc, &name);
    let seen = read_all(&rc, &BTreeSet::new(), |p| hw[&p]);
    let mut by_txn: HashMap<(usize, u64), usize> = HashMap::new();
    for v in &seen {
        let parts: Vec<&str> = v.split('/').collect();
        let who: usize = parts[0].parse().expect("who");
        let n: u64 = parts[1].parse().expect("n");
        *by_txn.entry((who, n)).or_default() += 1;
    }
    for ((who, n), count) in &by_txn {
        assert_eq!(*count, 6, "transaction {who}/{n} is partly visible");
    }
    for (who, (committed, attempted)) in results.iter().enumerate() {
        assert!(*attempted > 0);
        for n in committed {
            assert!(by_txn.contains_key(&(who, *n)), "acknowledged commit {who}/{n} is missing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_with_offsets_in_the_transaction_is_exactly_once() {
    let broker = BrokerProcess::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let (input, output) = (topic("eos-in"), topic("eos-out"));
    create_topic(&broker.addr, &input, PARTITIONS).await;
    create_topic(&broker.addr, &output, PARTITIONS).await;
    let group = topic("eos-group");
    let plain: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &broker.addr).create().expect("producer");
    let total = 60usize;
    send(&plain, &input, &values("v", total));
    let mut copied = 0usize;
    let deadline = Instant::now() + TIMEOUT;
    // Two instances in turn (a restart): the first copies a third and stops.
    for instance in 0..2 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.addr)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        c.subscribe(&[&input]).expect("subscribe");
        let p = transactional(&broker.addr, &format!("{group}-tx"), 60_000);
        while copied < total && (instance > 0 || copied < total / 3) {
            assert!(Instant::now() < deadline, "copied {copied} of {total}");
            let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
            let m = m.expect("consume");
            p.begin_transaction().expect("begin");
            let v = format!("x{}", String::from_utf8_lossy(m.payload().unwrap_or_default()));
            p.send(BaseRecord::<(), _>::to(&output).partition(m.partition()).payload(&v))
                .map_err(|(e, _)| e)
                .expect("send");
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset(&input, m.partition(), Offset::Offset(m.offset() + 1)).expect("tpl");
            let meta = c.group_metadata().expect("group metadata");
            p.send_offsets_to_transaction(&offsets, &meta, TIMEOUT).expect("send offsets");
            p.commit_transaction(TIMEOUT).expect("commit");
            copied += 1;
        }
    }
    assert_eq!(copied, total);
    let rc = consumer(&broker.addr, "read_committed", &output);
    let want: BTreeSet<String> = values("v", total).into_iter().map(|v| format!("x{v}")).collect();
    let hw = high_watermarks(&rc, &output);
    assert_eq!(read_until(&rc, &want, |p| hw[&p]), want, "every input once in the output");
    let check: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&input, p);
    }
    let committed = check.committed_offsets(tpl, TIMEOUT).expect("committed");
    let sum: i64 = committed
        .elements()
        .iter()
        .filter_map(|e| if let Offset::Offset(o) = e.offset() { Some(o) } else { None })
        .sum();
    assert_eq!(sum, total as i64, "the group's offsets are at the input's end");
}
