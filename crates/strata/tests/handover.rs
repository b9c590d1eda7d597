//! Per-stream ownership in the stream API, over a real S3-compatible server
//! (s3s-fs over HTTP): two stream stores with their own object WALs share one
//! bucket and one metadata store, as brokers of a cluster will. One hands some
//! of its streams over in its WAL while it keeps serving the others; the other
//! replays that WAL for just those streams. A stream taken over without a
//! release is lost by its old owner at its next index commit.
//!
//! The metadata store is one embedded store shared in this process: sharing it
//! across processes is etcd's job (the cluster issue).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use object_store::ObjectStore;
use strata_meta::{EmbeddedStore, MetaStore};
use strata_stream::{
    ErrorKind, Handover, ObjectWalConfig, Stream, StreamError, StreamStore, StreamStoreConfig, WalKind,
};

fn bucket(s3: &S3Server) -> Arc<dyn ObjectStore> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3.endpoint)
        .with_region("us-east-1")
        .with_bucket_name("handover")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .expect("s3 client");
    Arc::new(store)
}

async fn open(
    objects: &Arc<dyn ObjectStore>,
    meta: &Arc<dyn MetaStore>,
    wal_prefix: &str,
    dir: &tempfile::TempDir,
) -> Arc<StreamStore> {
    let mut cfg = StreamStoreConfig::new(dir.path().join(wal_prefix));
    cfg.wal =
        WalKind::Object(ObjectWalConfig { flush_delay: Duration::from_millis(2), flush_bytes: 1 << 20 });
    cfg.wal_prefix = wal_prefix.into();
    cfg.gc_grace = Duration::ZERO;
    cfg.own_all_at_open = false;
    StreamStore::open(cfg, Arc::clone(objects), Arc::clone(meta)).await.expect("open a stream store")
}

fn payload(stream: u64, i: usize) -> Bytes {
    Bytes::from(format!("stream {stream} batch {i}"))
}

/// Appends batches `from..to` (one record each) and waits until each is durable.
async fn append(stream: &Arc<Stream>, from: usize, to: usize) {
    for i in from..to {
        let id = stream.id();
        let appended = stream.append(1, i as i64, |_, _| payload(id, i)).expect("append accepted");
        appended.durable().await.expect("append acknowledged");
    }
}

/// Every batch of the stream, in offset order.
async fn read_all(stream: &Arc<Stream>) -> Vec<Bytes> {
    let (start, end) = stream.offsets();
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let batches = stream.read(at, 1 << 20).await.expect("read");
        let last = batches.last().expect("a read inside the range returns batches");
        at = last.info.end_offset();
        out.extend(batches.into_iter().map(|b| b.data));
    }
    out
}

fn expected(stream: u64, n: usize) -> Vec<Bytes> {
    (0..n).map(|i| payload(stream, i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_replays_a_wal_for_some_streams_while_a_keeps_the_others() {
    let s3 = S3Server::start("handover");
    let objects = bucket(&s3);
    let meta: Arc<dyn MetaStore> =
        Arc::new(EmbeddedStore::open(Arc::clone(&objects), "meta").await.expect("metadata store"));
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = open(&objects, &meta, "wal-a", &dir_a).await;
    let mut streams: HashMap<u64, Arc<Stream>> = HashMap::new();
    for id in [1u64, 2, 3, 4] {
        streams.insert(id, a.take_over(id, 0, None).await.expect("A takes its streams"));
    }
    // Part of every stream indexed, the rest only in A's WAL.
    for s in streams.values() {
        append(s, 0, 40).await;
    }
    a.upload_once().await.expect("upload");
    for s in streams.values() {
        append(s, 40, 70).await;
    }

    // A hands streams 1 and 2 over in its WAL; it refuses appends to them now.
    a.release(1, Handover::InWal).await.expect("release 1");
    a.release(2, Handover::InWal).await.expect("release 2");
    match streams[&1].append(1, 0, |_, _| Bytes::from_static(b"late")) {
        Err(e @ StreamError::NotOwner(1)) => assert_eq!(e.kind(), ErrorKind::NotOwner),
        other => panic!("a released stream took an append: {other:?}"),
    }

    // B takes 1 and 2 over, reading A's WAL for them alone.
    let b = open(&objects, &meta, "wal-b", &dir_b).await;
    let epoch_before = streams[&1].epoch();
    let b1 = b.take_over(1, epoch_before + 1, Some("wal-a")).await.expect("B takes 1 over");
    let b2 = b.take_over(2, epoch_before + 1, Some("wal-a")).await.expect("B takes 2 over");
    assert!(
        matches!(b.take_over(2, epoch_before + 1, Some("wal-a")).await, Err(StreamError::StaleEpoch { .. })),
        "an epoch not above the current one is refused"
    );
    assert_eq!(read_all(&b1).await, expected(1, 70), "B serves all A acknowledged for stream 1");
    assert_eq!(read_all(&b2).await, expected(2, 70));
    assert_eq!(b1.epoch(), epoch_before + 1);
    assert_eq!(b1.epoch_end(epoch_before), Some((epoch_before, 70)), "A's epoch ends where its data does");
    assert_eq!(b.stats().streams, 2, "B holds only the streams it took");

    // Meanwhile A keeps streams 3 and 4: more appends, uploads, its
    // checkpoint moving on (which no longer waits for 1 and 2 once B's index
    // covers them).
    for id in [3, 4] {
        append(&streams[&id], 70, 100).await;
    }
    a.upload_once().await.expect("A uploads its own streams");
    a.upload_once().await.expect("A uploads again");
    for id in [3, 4] {
        assert_eq!(read_all(&streams[&id]).await, expected(id, 100), "A still serves stream {id}");
    }
    assert_eq!(a.stats().streams, 2);

    // B appends to its streams at the next offsets and everything reads back
    // after its upload, from the bucket.
    append(&b1, 70, 90).await;
    b.upload_once().await.expect("B uploads");
    assert_eq!(read_all(&b1).await, expected(1, 90));

    // A takeover without a release (A was not told: in a cluster, because its
    // lease expired; see docs/ownership.md): B takes stream 3 over. A's next
    // index commit for 3 conflicts: A loses the stream (refusing appends),
    // keeps 4, and B has everything A acknowledged for 3.
    append(&streams[&3], 100, 110).await;
    let b3 = b.take_over(3, streams[&3].epoch() + 1, Some("wal-a")).await.expect("B takes 3 over");
    append(&streams[&4], 100, 110).await;
    a.upload_once().await.expect("A's upload goes on without stream 3");
    assert!(matches!(
        streams[&3].append(1, 0, |_, _| Bytes::from_static(b"after")),
        Err(StreamError::NotOwner(3))
    ));
    assert!(streams[&4].append(1, 110, |_, _| payload(4, 110)).is_ok(), "A keeps stream 4");
    assert_eq!(read_all(&b3).await, expected(3, 110), "B serves what A acknowledged before the takeover");
    assert!(
        matches!(a.trim(&streams[&3], 5).await, Err(StreamError::NotOwner(3))),
        "A can commit nothing more for stream 3"
    );

    // A release that indexes first: B needs only the index.
    a.release(4, Handover::Indexed).await.expect("release 4 indexed");
    let b4 = b.take_over(4, streams[&4].epoch() + 1, None).await.expect("B takes 4 from the index alone");
    assert_eq!(read_all(&b4).await, expected(4, 111));
}
