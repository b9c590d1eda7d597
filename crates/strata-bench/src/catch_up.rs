//! The catch-up scenario: how fast history replays from objects, and whether a
//! replaying consumer hurts producers.
//!
//! 1. Produce `history` bytes at full speed to a history topic; wait until the
//!    broker reports an empty upload backlog (everything is in objects) and its
//!    compaction has settled (history is old, so compacted).
//! 2. Replay the history alone (cold block cache): the catch-up rate.
//! 3. Produce `--bytes` at `--rate` to a second topic: the baseline latency.
//! 4. Once compaction settled again, produce the same while a consumer replays
//!    the history from the start: the latency under catch-up, and the catch-up
//!    rate meanwhile.
//!
//! "Settled" means no compaction progress for `QUIET`, just over the broker's
//! default 30 s compaction interval.

use std::time::Duration;

/// How long compaction must have made no progress before a phase starts.
const QUIET: Duration = Duration::from_secs(35);
/// The longest wait for that.
const SETTLE_LIMIT: Duration = Duration::from_secs(900);

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::consume::{self, ConsumeReport, ConsumeSpec, PartitionRange};
use crate::logging::{ClientLog, LogContext};
use crate::produce::{self, ProduceReport, ProduceSpec};
use crate::{
    Args, broker_metrics, consume_line, consumer_config, ensure_topic, produce_line, producer_config, q_ms,
    random_u64, watermarks,
};

fn replay_spec(base: &ClientConfig, topic: &str, ends: &[i64], consumers: usize) -> ConsumeSpec {
    let ranges = ends
        .iter()
        .enumerate()
        .map(|(p, end)| PartitionRange { partition: p as i32, start: 0, end: *end })
        .collect();
    ConsumeSpec { config: consumer_config(base), topic: topic.to_string(), ranges, consumers }
}

fn check(what: &str, produced: &ProduceReport) -> bool {
    if produced.failed > 0 {
        eprintln!("strata-bench: INVALID RUN: {what}: {} deliveries failed", produced.failed);
        return false;
    }
    true
}

fn check_replay(what: &str, report: &ConsumeReport, messages: u64) -> bool {
    if report.messages != messages {
        eprintln!("strata-bench: COUNT MISMATCH: {what}: read {} of {messages}", report.messages);
        return false;
    }
    true
}

/// Runs the scenario; `Ok(false)` when a phase lost or failed messages.
pub fn run(args: &Args, base: &ClientConfig, metrics: &str, history: u64) -> Result<bool> {
    let size = usize::try_from(args.message_size).context("--message-size")?;
    let history_topic = format!("bench-history-{:016x}", random_u64());
    let partitions = ensure_topic(base, &history_topic, args.partitions)?;
    let producer = producer_config(args, base);
    let spec = |topic: &str, bytes: u64, rate: Option<f64>| ProduceSpec {
        config: producer.clone(),
        topic: topic.to_string(),
        message_size: size,
        messages: bytes.div_ceil(args.message_size),
        producers: args.producers,
        rate_bytes_per_s: rate.map(|r| r * 1e6),
    };

    let made = produce::run(&spec(&history_topic, history, None))?;
    println!("history: {}", produce_line(&made));
    let mut ok = check("history", &made);
    broker_metrics::wait_for_upload(metrics, Duration::from_secs(600))?;
    broker_metrics::wait_for_quiet(metrics, QUIET, SETTLE_LIMIT)?;
    let meta: BaseConsumer<LogContext> = consumer_config(base)
        .create_with_context(LogContext(ClientLog::new("metadata")))
        .context("creating client")?;
    let ends = watermarks(&meta, &history_topic, partitions)?;

    let alone = consume::run(&replay_spec(base, &history_topic, &ends, args.consumers))?;
    println!("catch-up alone: {}", consume_line(&alone));
    ok &= check_replay("catch-up alone", &alone, made.messages);

    let steady_topic = format!("bench-steady-{:016x}", random_u64());
    ensure_topic(base, &steady_topic, args.partitions)?;
    let baseline = produce::run(&spec(&steady_topic, args.bytes, args.rate))?;
    println!("steady produce, no reader: {}", produce_line(&baseline));
    ok &= check("baseline", &baseline);

    broker_metrics::wait_for_quiet(metrics, QUIET, SETTLE_LIMIT)?;
    let replay = replay_spec(base, &history_topic, &ends, args.consumers);
    let (loaded, during) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| consume::run(&replay));
        let loaded = produce::run(&spec(&steady_topic, args.bytes, args.rate));
        let during = reader.join().unwrap_or_else(|_| Err(anyhow::anyhow!("reader thread panicked")));
        (loaded, during)
    });
    let (loaded, during) = (loaded?, during?);
    println!("steady produce, with catch-up reader: {}", produce_line(&loaded));
    println!("catch-up during produce: {}", consume_line(&during));
    ok &= check("with reader", &loaded) && check_replay("catch-up during produce", &during, made.messages);
    let (p99_base, p99_loaded) = (q_ms(&baseline, 0.99), q_ms(&loaded, 0.99));
    println!(
        "produce p99: {p99_base:.2} ms alone, {p99_loaded:.2} ms with a catch-up reader ({:+.1}%)",
        (p99_loaded / p99_base.max(1e-9) - 1.0) * 100.0
    );
    Ok(ok)
}
