//! The reference Apache Kafka broker (`scripts/kafka-ref.sh`). `scripts/test.sh`
//! starts one for the whole run and exports `STRATA_KAFKA_BOOTSTRAP`; a test run
//! without it (plain `cargo test`) starts its own, stopped when dropped. Both
//! run with `--durable` (`log.flush.interval.messages=1`, as Strata behaves).

use std::path::PathBuf;
use std::process::Command;

/// A reference broker, shared or owned by this test.
pub struct RefBroker {
    /// Its `host:port`.
    pub bootstrap: String,
    /// The directory of a broker this test started (stopped on drop).
    owned: Option<PathBuf>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka-ref.sh")
}

impl RefBroker {
    /// The run's shared broker, or a new one.
    pub fn get() -> Self {
        if let Ok(addr) = std::env::var("STRATA_KAFKA_BOOTSTRAP")
            && !addr.is_empty()
        {
            return RefBroker { bootstrap: addr, owned: None };
        }
        Self::start_own(&[])
    }

    /// A broker of this test's own, formatted with extra `kafka-ref.sh start`
    /// arguments (`--feature name=level`, `--config key=value`).
    pub fn start_own(extra: &[&str]) -> Self {
        let out = Command::new(script())
            .args(["start", "--durable"])
            .args(extra)
            .output()
            .expect("run scripts/kafka-ref.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the reference broker did not start: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().find(|l| l.starts_with("bootstrap=")).expect("the start line");
        let line = format!(" {line}");
        RefBroker {
            bootstrap: super::field(&line, "bootstrap"),
            owned: Some(PathBuf::from(super::field(&line, "dir"))),
        }
    }
}

impl Drop for RefBroker {
    fn drop(&mut self) {
        if let Some(dir) = &self.owned {
            let _ = Command::new(script()).arg("stop").arg(dir).status();
        }
    }
}
