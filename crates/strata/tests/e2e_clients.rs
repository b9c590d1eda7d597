//! End-to-end suites of other Kafka clients against the real binary: each test
//! starts a broker on a free port and runs one script of `tests/e2e/` with its
//! client (confluent-kafka, kafka-python, aiokafka, KafkaJS, kcat), which exits
//! non-zero on the first failed check. `scripts/setup.sh` installs the clients.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::BrokerProcess;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn home_cache(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache").join(default),
    }
}

fn python() -> PathBuf {
    let py = home_cache("STRATA_VENV", "strata-venv").join("bin/python");
    assert!(py.exists(), "{} missing: run scripts/setup.sh", py.display());
    py
}

/// Runs `program script --bootstrap ADDR extra...` and returns its stdout.
fn run(program: &std::path::Path, script: &str, broker: &BrokerProcess, extra: &[&str]) -> String {
    let script = repo_root().join("tests/e2e").join(script);
    let mut cmd = Command::new(program);
    cmd.arg(&script).arg("--bootstrap").arg(&broker.addr).args(extra);
    cmd.env("STRATA_NODE_DIR", home_cache("STRATA_NODE_DIR", "strata-node"));
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("OK "), "unexpected last line {last:?}");
    println!("{last}");
    stdout
}

#[test]
fn confluent_kafka() {
    let broker = BrokerProcess::start();
    let out = run(&python(), "confluent_client.py", &broker, &[]);
    if let Some(line) = out.lines().find(|l| l.starts_with("LONG_POLL_LATENCY_MS")) {
        println!("{line}");
    }
}

#[test]
fn kafka_python() {
    let broker = BrokerProcess::start();
    // kafka-python 3 makes producers idempotent by default (InitProducerId).
    run(&python(), "kafka_python_client.py", &broker, &[]);
}

#[test]
fn aiokafka() {
    let broker = BrokerProcess::start();
    run(&python(), "aiokafka_client.py", &broker, &[]);
}

#[test]
fn kafkajs() {
    let broker = BrokerProcess::start();
    run(std::path::Path::new("node"), "kafkajs_client.js", &broker, &[]);
}

#[test]
fn kcat() {
    let broker = BrokerProcess::start();
    run(std::path::Path::new("bash"), "kcat_client.sh", &broker, &[]);
}
