//! librdkafka log and error callbacks printed to stderr (capped, so a dead
//! broker does not flood the terminal).

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// How many client log/error lines are printed before the rest are only counted.
const MAX_PRINTED: u64 = 20;

/// Counts and prints librdkafka warnings and errors for one client.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Client name shown before each line (`producer-0`, `consumer-1`, ...).
    pub name: String,
    /// Global client errors and warning-or-worse log lines seen so far.
    pub count: AtomicU64,
}

impl ClientLog {
    /// A log for the client called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ClientLog { name: name.into(), count: AtomicU64::new(0) }
    }

    /// Records one line and prints it while under the cap.
    pub fn report(&self, what: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n < MAX_PRINTED {
            eprintln!("[{}] {what}", self.name);
        } else if n == MAX_PRINTED {
            eprintln!("[{}] (further client messages suppressed)", self.name);
        }
    }

    /// Handles a librdkafka log line: warnings and worse are reported.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.report(&format!("librdkafka {level:?} {fac}: {message}"));
        }
    }

    /// Handles a librdkafka global error.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        self.report(&format!("librdkafka error: {error}: {reason}"));
    }
}

/// Context for admin and consumer clients: only logging.
#[derive(Debug, Default)]
pub struct LogContext(pub ClientLog);

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

impl ConsumerContext for LogContext {}
