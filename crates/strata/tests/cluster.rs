//! A cluster of three brokers on one etcd prefix and one bucket (a real etcd
//! and s3s-fs, both started by the test; docs/cluster.md). Metadata lists
//! every broker and spreads the leaders; clients produce and consume in a
//! group through any broker; partitions, the group's coordinator partition
//! among them, move back and forth under an idempotent producer and a
//! committing group, by AlterPartitionReassignments (`strata move`), with
//! every message stored exactly once and in order; two clusters on one etcd
//! and bucket do not see each other.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{
    Cluster, ErrorLog, committed_values, coordinator_partition, group_consumer, leaders, produce_numbers,
    start_brokers, steady_producer, steady_producer_logged, strata_move, transactional, wait_leader,
};
use common::kafka::{admin, assert_exactly_once_in_order, create_topic};
use common::topic;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_serve_one_prefix_to_real_clients() {
    let cluster = Cluster::start("c1");
    let bootstrap = cluster.bootstrap();
    // Any broker answers with every broker.
    for b in &cluster.brokers {
        let md = admin(&b.addr).inner().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
        let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3], "brokers listed by {}", b.addr);
    }
    let name = topic("spread");
    create_topic(&cluster.brokers[0].addr, &name, 6).await;
    let placed = leaders(&cluster.brokers[1].addr, &name, 6);
    let mut per_broker: HashMap<i32, usize> = HashMap::new();
    for leader in placed.values() {
        *per_broker.entry(*leader).or_default() += 1;
    }
    assert_eq!(per_broker, HashMap::from([(1, 2), (2, 2), (3, 2)]), "leaders spread by count: {placed:?}");
    // A broker that does not lead a partition refuses its produce with
    // NOT_LEADER_OR_FOLLOWER: the client, bootstrapped from one broker
    // only, is routed to each leader.
    produce_numbers(&cluster.brokers[2].addr, &name, 6, 3000);
    assert_exactly_once_in_order(&cluster.brokers[0].addr, &name, 6, 3000);
    // A group consumes everything and commits through its coordinator.
    let group = topic("g");
    let c = group_consumer(&bootstrap, &group);
    c.subscribe(&[&name]).expect("subscribe");
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < 3000 {
        assert!(Instant::now() < deadline, "the group read {got} of 3000");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            m.expect("consume");
            got += 1;
        }
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed = c.committed(Duration::from_secs(10)).expect("committed");
    let total: i64 = committed.elements().iter().map(|e| e.offset().to_raw().unwrap_or(0)).sum();
    assert_eq!(total, 3000, "the committed offsets cover every message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_a_coordinator_move_back_and_forth_under_load() {
    let cluster = Cluster::start("moves");
    let bootstrap = cluster.bootstrap();
    let admin_addr = cluster.brokers[0].addr.clone();
    let name = topic("moving");
    create_topic(&admin_addr, &name, 3).await;
    let start = leaders(&admin_addr, &name, 3);

    // A group that keeps consuming and committing.
    let group = topic("mg");
    let committing = Arc::new(AtomicBool::new(true));
    let commits = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (bootstrap, name, group) = (bootstrap.clone(), name.clone(), group.clone());
        let (committing, commits) = (Arc::clone(&committing), Arc::clone(&commits));
        std::thread::spawn(move || {
            let c = group_consumer(&bootstrap, &group);
            c.subscribe(&[&name]).expect("subscribe");
            let mut last = Instant::now();
            while committing.load(Ordering::Acquire) {
                // Errors while a partition or the coordinator moves are
                // retriable; the committed offsets are what is checked.
                let _ = c.poll(Duration::from_millis(100));
                if last.elapsed() > Duration::from_millis(200)
                    && c.assignment().expect("assignment").count() > 0
                {
                    last = Instant::now();
                    // The positions, committed explicitly: a commit even
                    // when nothing new was read.
                    let mut at = TopicPartitionList::new();
                    for e in c.position().expect("position").elements() {
                        if let Offset::Offset(o) = e.offset() {
                            at.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))
                                .expect("tpl");
                        }
                    }
                    if at.count() > 0 && c.commit(&at, CommitMode::Sync).is_ok() {
                        commits.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        })
    };
    // The producer, steady and idempotent, for as long as partitions move.
    let moving = Arc::new(AtomicBool::new(true));
    let producing = steady_producer(&bootstrap, &name, 3, &moving, 3000);
    // The group's coordinator partition, found by FindCoordinator.
    let offsets_partition = coordinator_partition(&group);
    let mut moves = 0;
    for round in 0..4 {
        for partition in 0..3 {
            let to = (start[&partition] + round) % 3 + 1;
            strata_move(&admin_addr, &name, partition, to);
            wait_leader(&admin_addr, &name, partition, to);
            moves += 1;
        }
        let before = commits.load(Ordering::Acquire);
        let to = round % 3 + 1;
        strata_move(&admin_addr, "__consumer_offsets", offsets_partition, to);
        wait_leader(&admin_addr, "__consumer_offsets", offsets_partition, to);
        // The group keeps committing once its coordinator moved.
        let deadline = Instant::now() + Duration::from_secs(30);
        while commits.load(Ordering::Acquire) < before + 3 {
            assert!(Instant::now() < deadline, "the group stopped committing after its coordinator moved");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    moving.store(false, Ordering::Release);
    let sent = producing.join().expect("producer");
    committing.store(false, Ordering::Release);
    consumer.join().expect("consumer");
    assert_eq!(moves, 12);
    assert_exactly_once_in_order(&admin_addr, &name, 3, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_etcd_and_bucket_do_not_see_each_other() {
    let cluster = Cluster::start("iso-a");
    let name = topic("mine");
    create_topic(&cluster.brokers[0].addr, &name, 3).await;
    produce_numbers(&cluster.brokers[0].addr, &name, 3, 300);
    let other = start_brokers(&cluster.etcd, &cluster.s3, "iso-b");
    let md = admin(&other[0].addr).inner().fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let topics: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
    assert!(!topics.contains(&name), "cluster b sees cluster a's topic: {topics:?}");
    let mut ids: Vec<i32> = md.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3], "cluster b lists its own three brokers");
    let mine: Vec<String> = other.iter().map(|b| b.addr.clone()).collect();
    assert!(md.brokers().iter().all(|b| mine.contains(&format!("{}:{}", b.host(), b.port()))));
    assert_exactly_once_in_order(&cluster.brokers[1].addr, &name, 3, 300);
}

/// Transactions span partitions led by different brokers (markers go by
/// WriteTxnMarkers, implicit adds by AddPartitionsToTxn to the coordinator),
/// and an open transaction survives the move of one of its partitions and
/// of its coordinator's partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_span_brokers_and_survive_moves() {
    let cluster = Cluster::start("txn");
    let bootstrap = cluster.bootstrap();
    let admin_addr = cluster.brokers[0].addr.clone();
    let name = topic("txn");
    create_topic(&admin_addr, &name, 3).await;
    let placed = leaders(&admin_addr, &name, 3);
    let mut distinct: Vec<i32> = placed.values().copied().collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one partition per broker: {placed:?}");
    let txn_id = topic("tx");
    let p = transactional(&bootstrap, &txn_id);
    let send = |p: &ThreadedProducer<DefaultProducerContext>, partition: i32, v: &str| {
        p.send(BaseRecord::<(), _>::to(&name).partition(partition).payload(v))
            .map_err(|(e, _)| e)
            .expect("send");
    };
    // A committed transaction and an aborted one, across all three brokers.
    p.begin_transaction().expect("begin");
    for partition in 0..3 {
        send(&p, partition, &format!("c1-{partition}"));
    }
    p.commit_transaction(Duration::from_secs(30)).expect("commit");
    p.begin_transaction().expect("begin");
    for partition in 0..3 {
        send(&p, partition, &format!("a1-{partition}"));
    }
    p.abort_transaction(Duration::from_secs(30)).expect("abort");
    // An open transaction while one of its partitions moves, then its
    // coordinator's partition.
    p.begin_transaction().expect("begin");
    for partition in 0..3 {
        send(&p, partition, &format!("c2-{partition}"));
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let to = placed[&0] % 3 + 1;
    strata_move(&admin_addr, &name, 0, to);
    wait_leader(&admin_addr, &name, 0, to);
    let txn_partition = strata_broker::groups::partition_for(&txn_id, 50);
    let coordinator = leaders(&admin_addr, "__transaction_state", 50)[&txn_partition];
    let next = coordinator % 3 + 1;
    strata_move(&admin_addr, "__transaction_state", txn_partition, next);
    wait_leader(&admin_addr, "__transaction_state", txn_partition, next);
    for partition in 0..3 {
        send(&p, partition, &format!("c2b-{partition}"));
    }
    p.commit_transaction(Duration::from_secs(30)).expect("commit after the moves");
    let seen = committed_values(&admin_addr, &name, 3, 9);
    for partition in 0..3 {
        let want: Vec<String> = ["c1", "c2", "c2b"].iter().map(|t| format!("{t}-{partition}")).collect();
        if seen.get(&partition) != Some(&want) {
            let all = common::kafka::read_partition_to_end(&admin_addr, &name, "read_uncommitted");
            panic!(
                "partition {partition} at read_committed: {:?}, want {want:?}; partition 0 holds (key, value) {all:?}",
                seen.get(&partition)
            );
        }
    }
}

/// confluent-kafka and kafka-python through the cluster while partitions
/// move under an idempotent and a transactional producer, by kafka-python's
/// alter_partition_reassignments and by `kafka-reassign-partitions
/// --execute` / `--verify` (tests/e2e/cluster_client.py).
#[test]
fn python_clients_and_kafkas_reassign_tool_move_partitions_under_load() {
    let cluster = Cluster::start("py");
    let home = std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let venv = std::env::var_os("STRATA_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or(home.join(".cache/strata-venv"));
    let tools = std::env::var_os("STRATA_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or(home.join(".cache/strata-tools"));
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/cluster_client.py");
    let out = std::process::Command::new(venv.join("bin/python"))
        .arg(&script)
        .arg("--bootstrap")
        .arg(cluster.bootstrap())
        .arg("--kafka-classpath")
        .arg(tools.join("kafka.classpath"))
        .output()
        .expect("run cluster_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cluster_client.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("OK "), "unexpected last line {last:?}");
    println!("{stdout}");
}

/// Runs `cmd`, which must exit 0 with a last line starting `OK `.
fn run_ok(mut cmd: std::process::Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("OK "), "{what}: unexpected last line {last:?}");
    println!("{stdout}");
}

/// The Java client (an idempotent producer, a KIP-848 group, transactions:
/// `tests/java/tools/ClusterClient.java`) and kcat (librdkafka 2.0.2: produce,
/// consume, a classic group: `tests/e2e/kcat_client.sh`), each bootstrapped
/// from a single broker of the three and routed by Metadata.
#[test]
fn the_java_client_and_kcat_work_through_the_cluster() {
    let cluster = Cluster::start("jk");
    run_ok(
        common::java::java_program("ClusterClient.java", &[&cluster.brokers[0].addr, "3"]),
        "ClusterClient.java",
    );
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/kcat_client.sh");
    let mut kcat = std::process::Command::new("bash");
    kcat.arg(&script).arg("--bootstrap").arg(&cluster.brokers[2].addr);
    run_ok(kcat, "kcat_client.sh");
}

/// KIP-951: a broker that does not lead a partition answers Produce (v10+)
/// and Fetch (v16+) with NOT_LEADER_OR_FOLLOWER, the current leader and its
/// epoch, and the leader's endpoint, so that clients re-route without a
/// metadata refresh (hand-built requests: the hint is invisible to clients).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_lead_names_the_leader_in_produce_and_fetch() {
    use bytes::Bytes;
    use common::conn::Conn;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceResponse,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let cluster = Cluster::start("hint");
    let name = topic("hint");
    create_topic(&cluster.brokers[0].addr, &name, 1).await;
    let leader = leaders(&cluster.brokers[0].addr, &name, 1)[&0];
    let led_by = &cluster.brokers[(leader - 1) as usize];
    let leader_port: i32 = led_by.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let other = cluster.brokers.iter().enumerate().find(|(i, _)| *i as i32 + 1 != leader).expect("another").1;
    let mut conn = Conn::open(&other.addr);
    let topic_name = TopicName(StrBytes::from_string(name.clone()));

    let mut mt = MetadataRequestTopic::default();
    mt.name = Some(topic_name.clone());
    let mut mreq = MetadataRequest::default();
    mreq.topics = Some(vec![mt]);
    let md: MetadataResponse = conn.call(ApiKey::Metadata, 12, &mreq);
    let t = &md.topics[0];
    let (topic_id, epoch) = (t.topic_id, t.partitions[0].leader_epoch);
    assert_eq!(t.partitions[0].leader_id.0, leader);

    let records = common::batches::encode(&[common::batches::record(
        0,
        1_700_000_000_000,
        None,
        Some(Bytes::from_static(b"hint")),
    )]);
    let preq = common::batches::produce_request(&name, -1, records);
    let produced: ProduceResponse = conn.call(ApiKey::Produce, 11, &preq);
    let p = &produced.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER from a broker that does not lead");
    assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (leader, epoch));
    let n = produced.node_endpoints.iter().find(|n| n.node_id.0 == leader).expect("the leader's endpoint");
    assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", leader_port));

    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = 0;
    fp.partition_max_bytes = 1 << 20;
    fp.current_leader_epoch = -1;
    let mut ft = FetchTopic::default();
    ft.topic_id = topic_id;
    ft.partitions = vec![fp];
    let mut freq = FetchRequest::default();
    freq.replica_id = BrokerId(-1);
    freq.max_wait_ms = 100;
    freq.max_bytes = 1 << 20;
    freq.topics = vec![ft];
    let fetched: FetchResponse = conn.call(ApiKey::Fetch, 16, &freq);
    let f = &fetched.responses[0].partitions[0];
    assert_eq!(f.error_code, 6, "NOT_LEADER_OR_FOLLOWER on Fetch");
    assert_eq!((f.current_leader.leader_id.0, f.current_leader.leader_epoch), (leader, epoch));
    let n = fetched.node_endpoints.iter().find(|n| n.node_id.0 == leader).expect("the leader's endpoint");
    assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", leader_port));

    // The leader itself takes both.
    let mut conn = Conn::open(&led_by.addr);
    let produced: ProduceResponse = conn.call(ApiKey::Produce, 11, &preq);
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let fetched: FetchResponse = conn.call(ApiKey::Fetch, 16, &freq);
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);

    // A move is an epoch boundary: the new leader serves the next epoch from
    // offset 1, answers OffsetForLeaderEpoch with where each epoch ended,
    // and fences a fetcher still at the old epoch.
    let to = cluster.brokers.iter().position(|b| b.addr == other.addr).expect("the other") as i32 + 1;
    strata_move(&cluster.brokers[0].addr, &name, 0, to);
    wait_leader(&cluster.brokers[0].addr, &name, 0, to);
    let mut conn = Conn::open(&other.addr);
    let produced: ProduceResponse = conn.call(ApiKey::Produce, 11, &preq);
    let p = &produced.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 1), "the new leader appends after the old one's data");
    let md: MetadataResponse = conn.call(ApiKey::Metadata, 12, &mreq);
    let new_epoch = md.topics[0].partitions[0].leader_epoch;
    assert!(new_epoch > epoch, "the move raised the leader epoch ({epoch} -> {new_epoch})");
    assert_eq!(
        common::conn::offset_for_leader_epoch(&other.addr, &name, &[epoch, new_epoch]),
        vec![(0, epoch, 1), (0, new_epoch, 2)]
    );
    let mut stale = freq.clone();
    stale.topics[0].partitions[0].current_leader_epoch = epoch;
    let fetched: FetchResponse = conn.call(ApiKey::Fetch, 16, &stale);
    assert_eq!(fetched.responses[0].partitions[0].error_code, 74, "FENCED_LEADER_EPOCH at the old epoch");
    let mut current = freq.clone();
    current.topics[0].partitions[0].current_leader_epoch = new_epoch;
    let fetched: FetchResponse = conn.call(ApiKey::Fetch, 16, &current);
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
}

/// SIGTERM drains a broker: its partitions (and coordinators) move to the
/// other two, by handovers, before it exits 0. All three are restarted in
/// turn that way (same node id, same port) under an idempotent producer and
/// a committing group: every message is stored exactly once and in order,
/// every error the clients report is one Kafka marks retriable, and the
/// group's committed offsets advance within every 10 s window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_broker_and_a_rolling_restart_loses_nothing() {
    let mut cluster = Cluster::start("drain");
    let bootstrap = cluster.bootstrap();
    let name = topic("drain");
    create_topic(&cluster.brokers[0].addr, &name, 6).await;
    leaders(&cluster.brokers[0].addr, &name, 6);

    let group = topic("dg");
    let running = Arc::new(AtomicBool::new(true));
    let commits = Arc::new(AtomicU64::new(0));
    // Every error either client reports, and the group's committed offsets
    // (their sum) over time.
    let errors = Arc::new(ErrorLog::default());
    let progress: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let consumer = {
        let (bootstrap, name, group) = (bootstrap.clone(), name.clone(), group.clone());
        let (running, commits) = (Arc::clone(&running), Arc::clone(&commits));
        let (errors, progress) = (Arc::clone(&errors), Arc::clone(&progress));
        std::thread::spawn(move || {
            let c = group_consumer(&bootstrap, &group);
            c.subscribe(&[&name]).expect("subscribe");
            let code = |e: &rdkafka::error::KafkaError| {
                e.rdkafka_error_code().unwrap_or(rdkafka::types::RDKafkaErrorCode::Unknown)
            };
            while running.load(Ordering::Acquire) {
                if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
                    errors.note(code(&e), format!("poll: {e}"));
                }
                if c.assignment().expect("assignment").count() == 0 {
                    continue;
                }
                let at = c.position().expect("position");
                match c.commit(&at, CommitMode::Sync) {
                    Ok(()) => {
                        commits.fetch_add(1, Ordering::AcqRel);
                        let sum =
                            at.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum();
                        progress.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), sum));
                    }
                    // Nothing read yet: nothing to commit.
                    Err(rdkafka::error::KafkaError::ConsumerCommit(
                        rdkafka::types::RDKafkaErrorCode::NoOffset,
                    )) => {}
                    Err(e) => errors.note(code(&e), format!("commit: {e}")),
                }
            }
        })
    };
    let producing = steady_producer_logged(&bootstrap, &name, 6, &running, 0, &errors);
    let committed = |commits: &AtomicU64, more: u64, what: &str| {
        let target = commits.load(Ordering::Acquire) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while commits.load(Ordering::Acquire) < target {
            assert!(Instant::now() < deadline, "the group stopped committing {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    committed(&commits, 3, "before the restarts");
    for i in 0..3 {
        let node = i as i32 + 1;
        let other = cluster.brokers[(i + 1) % 3].addr.clone();
        let before = leaders(&other, &name, 6).values().filter(|l| **l == node).count();
        cluster.brokers[i].signal("TERM");
        let status =
            cluster.brokers[i].wait_exit(Duration::from_secs(60)).expect("the broker exits after its drain");
        assert!(status.success(), "broker {node} exited with {status}");
        let drained = cluster.brokers[i].log_line("drained").expect("a drained line in the log");
        assert_eq!(common::field(&drained, "left"), "0", "broker {node}: {drained}");
        assert_eq!(common::field(&drained, "moved").parse::<usize>().ok().map(|m| m >= before), Some(true));
        println!("broker {node} led {before} of the topic's partitions: {drained}");
        // Nothing is led by the stopped broker, once the other brokers'
        // views caught up with the placements it wrote (watches: Metadata is
        // eventually consistent across brokers, as on Kafka).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = leaders(&other, &name, 6);
            if now.values().all(|l| *l != node) {
                break;
            }
            assert!(Instant::now() < deadline, "broker {node} still leads: {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster.brokers[i].restart_same_port();
        committed(&commits, 3, &format!("after broker {node} restarted"));
    }
    running.store(false, Ordering::Release);
    let sent = producing.join().expect("producer");
    consumer.join().expect("consumer");
    assert_exactly_once_in_order(&cluster.brokers[0].addr, &name, 6, sent);
    // Clients saw only errors Kafka marks retriable.
    let noted = errors.0.lock().unwrap_or_else(|e| e.into_inner()).len();
    let fatal = errors.not_retriable();
    println!("client errors during the rolling restart: {noted}, not retriable: {fatal:?}");
    assert!(fatal.is_empty(), "errors Kafka does not mark retriable: {fatal:?}");
    // The committed offsets advanced within every 10 s window.
    let progress = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (first, last) = (progress[0].0, progress[progress.len() - 1].0);
    let mut t = first;
    while t + Duration::from_secs(10) <= last {
        let base = progress.iter().filter(|(at, _)| *at <= t).map(|(_, s)| *s).max().unwrap_or(0);
        let advanced =
            progress.iter().any(|(at, s)| *at > t && *at <= t + Duration::from_secs(10) && *s > base);
        assert!(advanced, "the committed offsets did not advance within 10 s of {:?}", t - first);
        t += Duration::from_millis(500);
    }
}
