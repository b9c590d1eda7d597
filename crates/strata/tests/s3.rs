//! Strata with its objects and metadata manifest in a real S3-compatible server
//! (s3s-fs over HTTP): uploads land in the bucket, and after kill -9 a restarted
//! broker serves everything from the bucket's index plus its WAL.

mod common;

use std::time::{Duration, Instant};

use common::s3::S3Server;
use common::{BrokerProcess, topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_manifest_live_in_s3_and_survive_kill_9() {
    let s3 = S3Server::start("strata-bucket");
    let env = s3.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut broker = BrokerProcess::start_with_env(
        &["--object-store", "s3://strata-bucket/cluster-a", "--upload-interval-ms", "100"],
        &envs,
    );
    let name = topic("s3");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &broker.addr).create().expect("admin");
    admin
        .create_topics(&[NewTopic::new(&name, 2, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create")[0]
        .as_ref()
        .expect("created");
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let count = 2000u64;
    let mut futures = Vec::new();
    for i in 0..count {
        let v = format!("message-{i}");
        let rec = FutureRecord::<(), _>::to(&name).partition((i % 2) as i32).payload(&v);
        futures.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in futures {
        f.await.expect("delivery").map_err(|(e, _)| e).expect("acked");
    }
    // Uploads and manifests land in the bucket, under the prefix.
    let prefix = s3.root.join("strata-bucket/cluster-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_under(&prefix.join("data")) == 0 {
        assert!(Instant::now() < deadline, "no object reached the bucket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files_under(&prefix.join("meta/manifest")) > 0, "the metadata manifest is in the bucket");

    broker.kill9();
    broker.restart();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "strata-tests")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for part in 0..2 {
        tpl.add_partition_offset(&name, part, Offset::Beginning).expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut next = [0u64, 1u64];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < count {
        assert!(Instant::now() < deadline, "read {got} of {count}");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("consume");
        let part = m.partition() as usize;
        assert_eq!(m.payload(), Some(format!("message-{}", next[part]).as_bytes()));
        next[part] += 2;
        got += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_prefix_fences_the_first() {
    let s3 = S3Server::start("strata-bucket");
    let env = s3.env();
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let flags = ["--object-store", "s3://strata-bucket/shared", "--upload-interval-ms", "100"];
    let first = BrokerProcess::start_with_env(&flags, &envs);
    let name = topic("fence");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &first.addr).create().expect("admin");
    admin
        .create_topics(&[NewTopic::new(&name, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create")[0]
        .as_ref()
        .expect("created");
    let producer = |addr: &str| -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("message.timeout.ms", "3000")
            .create()
            .expect("producer")
    };
    let p1 = producer(&first.addr);
    p1.send(FutureRecord::<(), _>::to(&name).payload("before"), Duration::from_secs(5)).await.expect("acked");

    // A second process on the same prefix takes the partitions (its start
    // commits the next leader epochs), which fences the first.
    let second = BrokerProcess::start_with_env(&flags, &envs);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused = p1.send(FutureRecord::<(), _>::to(&name).payload("after"), Duration::from_secs(5)).await;
    assert!(refused.is_err(), "the fenced broker still acknowledged a produce");
    // The new owner serves and takes writes.
    let p2 = producer(&second.addr);
    p2.send(FutureRecord::<(), _>::to(&name).payload("new owner"), Duration::from_secs(5))
        .await
        .expect("acked");
}
