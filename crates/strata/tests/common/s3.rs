//! A real S3-compatible server for tests: `s3s-fs` (installed by
//! `scripts/setup.sh` into `~/.cache/strata-tools/bin`), persisting to a
//! temporary directory, on a free port, stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running s3s-fs.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    pub root: PathBuf,
    port: u16,
    _tmp: tempfile::TempDir,
}

fn spawn(root: &std::path::Path, port: u16) -> Child {
    let child = Command::new(binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn s3s-fs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

pub const ACCESS_KEY: &str = "strata-test";
pub const SECRET_KEY: &str = "strata-test-secret";

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = PathBuf::from(home).join(".cache/strata-tools/bin/s3s-fs");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

impl S3Server {
    /// Starts s3s-fs with one bucket.
    pub fn start(bucket: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("s3");
        std::fs::create_dir_all(root.join(bucket)).expect("bucket dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = spawn(&root, port);
        let endpoint = format!("http://127.0.0.1:{port}");
        S3Server { child, endpoint, root, port, _tmp: tmp }
    }

    /// Stops the server (its data stays on disk).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped server holds
    /// every request unanswered, as a stalled store does.
    #[allow(dead_code)] // not every test binary stalls the store
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        self.child = spawn(&self.root, self.port);
    }

    /// The environment `strata serve` reads its S3 settings from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
