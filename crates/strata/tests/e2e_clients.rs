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

/// confluent-kafka's transactions (commits and aborts, read_committed,
/// consume-transform-produce across a restart) and kafka-python's
/// transaction admin (list, describe, describe_producers, abort).
#[test]
fn confluent_kafka_transactions_and_kafka_python_admin() {
    let broker = BrokerProcess::start();
    run(&python(), "transactions_client.py", &broker, &[]);
}

/// Idle transactional ids and producers expire (`transactional.id.expiration.ms`,
/// `producer.id.expiration.ms`) and stay gone across a kill -9 and restart.
#[test]
fn idle_transactional_ids_and_producers_expire_and_stay_gone() {
    let expiry = "2000";
    let mut broker = BrokerProcess::start_with(&[
        "--transactional-id-expiration-ms",
        expiry,
        "--transaction-remove-expired-interval-ms",
        "200",
        "--producer-id-expiration-ms",
        expiry,
        "--producer-id-expiration-check-interval-ms",
        "200",
    ]);
    let out = run(&python(), "transactions_client.py", &broker, &["--expiry-ms", expiry]);
    let mut args: Vec<String> = Vec::new();
    for line in out.lines() {
        if let Some(id) = line.strip_prefix("GONE_ID ") {
            args.extend(["--check-gone-id".to_string(), id.to_string()]);
        }
        if let Some(p) = line.strip_prefix("GONE_PRODUCER ") {
            args.extend(["--check-gone-producer".to_string(), p.replace(' ', ":")]);
        }
    }
    assert_eq!(args.len(), 6, "one id and two producers expired: {out}");
    // Whether or not a producer-state snapshot was written after the
    // expiry, the restart must not bring them back.
    broker.restart();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&python(), "transactions_client.py", &broker, &refs);
}
