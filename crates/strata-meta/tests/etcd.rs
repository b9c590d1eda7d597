//! The metadata-store contract (`strata_meta::conformance`) on a real etcd
//! server (Debian's `etcd-server`, which `scripts/setup.sh` installs), started
//! on free loopback ports with a temporary data directory and stopped by PID;
//! and the isolation of clusters that share one etcd under different
//! prefixes.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_meta::{EtcdStore, MetaError, MetaStore, conformance};

/// An etcd server of this test.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Etcd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "strata-test", "--data-dir"])
            .arg(dir.path())
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("strata-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup.sh installs etcd-server)");
        let etcd = Etcd { child, endpoint: format!("127.0.0.1:{client}"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&etcd.endpoint).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen on {}", etcd.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    async fn store(&self, prefix: &str) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let store = EtcdStore::connect(std::slice::from_ref(&self.endpoint), prefix).await;
            match store {
                Ok(s) if s.current_revision().await.is_ok() => return s,
                _ => assert!(Instant::now() < deadline, "etcd at {} does not answer", self.endpoint),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keeps_the_metadata_store_contract() {
    let etcd = Etcd::start();
    let store = etcd.store("/strata-test/conformance").await;
    conformance::compare_and_set(&store).await;
    conformance::oversize_transaction_refused(&store).await;
    conformance::watch_from_revision(&store).await;
    // etcd's shortest lease: 1.5 election timeouts (1 s by default), in whole seconds.
    conformance::lease_expiry(&store, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_under_different_prefixes_do_not_see_each_other() {
    let etcd = Etcd::start();
    let a = etcd.store("/strata-test/a").await;
    let b = etcd.store("/strata-test/ab").await;
    a.put("topics/t", Bytes::from_static(b"a")).await.expect("put");
    b.put("topics/t", Bytes::from_static(b"b")).await.expect("put");
    assert_eq!(a.get("topics/t").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"a")));
    assert_eq!(b.get("topics/t").await.expect("get").map(|e| e.value), Some(Bytes::from_static(b"b")));
    let listed: Vec<String> = a.list("").await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(listed, vec!["topics/t".to_string()], "a prefix that is a prefix of another's is still apart");
    let from = a.current_revision().await.expect("revision") + 1;
    let mut watch = a.watch_from("", from).await.expect("watch");
    b.put("topics/u", Bytes::new()).await.expect("put");
    a.put("topics/v", Bytes::new()).await.expect("put");
    let e =
        tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("an event").expect("open");
    assert_eq!(e.expect("event").key, "topics/v", "the other cluster's change is not seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_unknown_and_the_store_stops() {
    let etcd = Etcd::start();
    let store = EtcdStore::connect_with_timeout(
        std::slice::from_ref(&etcd.endpoint),
        "/strata-test/unknown",
        Duration::from_secs(1),
    )
    .await
    .expect("connect");
    let ready = etcd.store("/strata-test/unknown").await;
    ready.put("warm", Bytes::new()).await.expect("put");
    // A paused etcd: the request is sent and never answered.
    conformance::outcome_unknown(&store, || etcd.signal("-STOP")).await;
    etcd.signal("-CONT");
    assert!(
        matches!(store.put("after", Bytes::new()).await, Err(MetaError::OutcomeUnknown(_))),
        "it stays stopped"
    );
    assert!(ready.get("after").await.expect("get").is_none());
}
