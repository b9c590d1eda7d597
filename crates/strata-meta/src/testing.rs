//! Test support: a real etcd server (Debian's `etcd-server`, which
//! `scripts/setup.sh` installs) on free loopback ports with a fresh data
//! directory, stopped by PID when dropped. Used by the etcd tests of this
//! crate and of the broker.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd server of a test.
pub struct EtcdServer {
    child: Child,
    /// Its client endpoint, `127.0.0.1:port`.
    pub endpoint: String,
    dir: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it listens; panics (it is for tests) when
    /// it cannot.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("strata-etcd-{}", uuid::Uuid::new_v4()));
        let (client, peer) = (free_port().expect("a free port"), free_port().expect("a free port"));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "strata-test", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("strata-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup.sh installs etcd-server)");
        let etcd = EtcdServer { child, endpoint: format!("127.0.0.1:{client}"), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&etcd.endpoint).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen on {}", etcd.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} etcd");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
