//! Test harness: runs the real `strata` binary on a free port with a temporary
//! data directory, and stops it when dropped.

#![allow(dead_code)]

pub mod batches;
pub mod cluster;
pub mod conn;
pub mod java;
pub mod kafka;
pub mod kafka_ref;
pub mod proxy;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running broker process.
pub struct BrokerProcess {
    child: Child,
    pub addr: String,
    /// The admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub http: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
    /// Every log line the process wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The value of `key=` in a log line.
pub fn field(line: &str, key: &str) -> String {
    line.split(&format!(" {key}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn spawn(
    data_dir: &Path,
    listen: &str,
    extra: &[String],
    envs: &[(String, String)],
) -> (Child, String, String, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        // Tests lower group.initial.rebalance.delay.ms as Kafka's own tests do
        // (the reference broker runs with 0); a test's env or flag overrides it.
        .env("STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--http")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        // STRATA_TEST_LOG_LEVEL (a STRATA_LOG filter) for a closer look.
        .env("STRATA_LOG", std::env::var("STRATA_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let log: Log = Default::default();
    let lines = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line.clone());
            if !sent && line.contains("strata listening") {
                let _ = tx.send((field(&line, "kafka"), field(&line, "http")));
                sent = true;
            }
            if std::env::var_os("STRATA_TEST_LOG").is_some() {
                eprintln!("[strata] {line}");
            }
        }
    });
    let (addr, http) = rx.recv_timeout(Duration::from_secs(30)).expect("broker did not report its address");
    (child, addr, http, log)
}

impl BrokerProcess {
    /// Starts a broker on a fresh temporary data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[] as &[(&str, &str)])
    }

    /// Starts a broker with extra `serve` flags and environment variables.
    pub fn start_with_env(extra: &[&str], envs: &[(impl AsRef<str>, impl AsRef<str>)]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> =
            envs.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect();
        let (child, addr, http, log) = spawn(&data_dir, "127.0.0.1:0", &extra, &envs);
        BrokerProcess { child, addr, http, data_dir, _tmp: Some(tmp), extra, envs, log }
    }

    /// Kills the process with SIGKILL (no chance to flush anything).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr, http, log) = spawn(&self.data_dir, "127.0.0.1:0", &self.extra, &self.envs);
        self.child = child;
        self.addr = addr;
        self.http = http;
        self.log = log;
    }

    /// Like [`BrokerProcess::restart`], on the same port, so that connected
    /// clients find the broker again where they left it.
    pub fn restart_same_port(&mut self) {
        self.kill9();
        let listen = self.addr.clone();
        let (child, addr, http, log) = spawn(&self.data_dir, &listen, &self.extra, &self.envs);
        self.child = child;
        self.addr = addr;
        self.http = http;
        self.log = log;
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the process to exit; its status, if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first log line containing `needle`, if any.
    pub fn log_line(&self, needle: &str) -> Option<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|l| l.contains(needle)).cloned()
    }

    /// `GET path` on the admin port: `(status, body)`.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.http).expect("connect to the admin port");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http).expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read");
        let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// The value of one sample of `/metrics` (`name` with its labels exactly
    /// as rendered, e.g. `x_total{topic="t"}`), if present.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics answered {status}");
        body.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait")
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique topic name for a test.
pub fn topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_like())
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}
