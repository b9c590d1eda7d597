//! The JUnit 5 suites of `tests/java` (the Java client, Kafka 4.1), run
//! through Maven Surefire against both Strata and the reference Apache Kafka
//! broker: one Rust test per suite class, so the run's one summary line counts
//! them. Every test of a suite runs on both brokers.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::BrokerProcess;
use common::kafka_ref::RefBroker;

fn tools() -> PathBuf {
    std::env::var_os("STRATA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/strata-tools"))
}

/// Runs one suite class against a fresh Strata broker and the reference
/// broker; panics with Maven's output when any of its tests fails.
fn run_suite(class: &str) {
    run_suite_on(class, class, &BrokerProcess::start(), &RefBroker::get());
}

/// Runs one suite class against the given brokers, building in `build_name`.
fn run_suite_on(class: &str, build_name: &str, strata: &BrokerProcess, kafka: &RefBroker) {
    let pom = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/java/pom.xml");
    // Each suite compiles into its own directory: suites run in parallel.
    let build = tools().join("java-build").join(build_name);
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .arg(format!("-Dmaven.repo.local={}", tools().join("m2").display()))
        .arg(format!("-Dstrata.build={}", build.display()))
        .arg(format!("-Dtest={class}"))
        .arg(format!(
            "-DargLine=-Dstrata.bootstrap={} -Dkafka.bootstrap={} -Dstrata.metrics=http://{}/metrics",
            strata.addr, kafka.bootstrap, strata.http
        ))
        .arg("test")
        .output()
        .expect("run mvn (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    let reports = build.join("surefire-reports");
    assert!(out.status.success(), "{class} failed on Strata or Kafka; reports in {}", reports.display());
    // Surefire wrote the suite's report: the tests ran (none skipped).
    let report = std::fs::read_to_string(reports.join(format!("TEST-dev.strata.{class}.xml")))
        .expect("surefire report");
    let head = report.lines().find(|l| l.contains("<testsuite")).unwrap_or_default().to_string();
    assert!(head.contains("skipped=\"0\""), "{class}: a test was skipped: {head}");
    assert!(!head.contains("tests=\"0\""), "{class}: no test ran: {head}");
}

#[test]
fn java_producer_suite() {
    run_suite("ProducerTest");
}

#[test]
fn java_consumer_suite() {
    run_suite("ConsumerTest");
}

#[test]
fn java_admin_suite() {
    run_suite("AdminTest");
}

#[test]
fn java_tools_suite() {
    run_suite("ToolsTest");
}

/// With `transaction.version` 2 finalized on both brokers (their default):
/// the Java client uses KIP-890's second protocol.
#[test]
fn java_transaction_suite() {
    let strata = BrokerProcess::start();
    run_suite_on("TransactionTest", "TransactionTest", &strata, &RefBroker::get());
    // The client took the second protocol's path on Strata: partitions were
    // added by Produce v12 and TxnOffsetCommit v5, never AddPartitionsToTxn.
    let count =
        |api: &str| strata.metric(&format!(r#"strata_request_duration_seconds_count{{api="{api}"}}"#));
    assert_eq!(count("AddPartitionsToTxn"), None, "the second protocol sends no AddPartitionsToTxn");
    assert_eq!(count("AddOffsetsToTxn"), None, "nor AddOffsetsToTxn");
    assert!(count("EndTxn").is_some_and(|n| n > 0.0), "transactions ended");
}

/// With `transaction.version` 1 finalized on both brokers: the Java client
/// keeps the first protocol (AddPartitionsToTxn, EndTxn v4), as it does with
/// any broker that does not finalize 2.
#[test]
fn java_transaction_suite_on_the_first_protocol() {
    let strata = BrokerProcess::start_with(&["--transaction-version", "1"]);
    let kafka = RefBroker::start_own(&["--feature", "transaction.version=1"]);
    run_suite_on("TransactionTest", "TransactionTest-tv1", &strata, &kafka);
    // The client took the first protocol's path on Strata: partitions were
    // added by AddPartitionsToTxn, which the second protocol never sends.
    let adds = strata.metric(r#"strata_request_duration_seconds_count{api="AddPartitionsToTxn"}"#);
    assert!(adds.is_some_and(|n| n > 0.0), "no AddPartitionsToTxn on the first protocol: {adds:?}");
}

#[test]
fn java_group_suite() {
    run_suite("GroupTest");
}

#[test]
fn java_group_stress_suite() {
    run_suite("GroupStressTest");
}

#[test]
fn java_connect_suite() {
    run_suite("ConnectTest");
}
