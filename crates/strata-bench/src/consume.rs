//! Consume phase: `BaseConsumer`s with manual assignment (no group
//! coordination), reading every partition up to a recorded high watermark.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::logging::{ClientLog, LogContext};

/// How long a consumer may go without receiving anything before it gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One partition to read: offsets `start..end`.
#[derive(Debug, Clone, Copy)]
pub struct PartitionRange {
    /// Partition id.
    pub partition: i32,
    /// First offset to read (the high watermark before producing).
    pub start: i64,
    /// High watermark right after producing: reading stops at `end - 1`.
    pub end: i64,
}

/// What the consume phase needs to know.
#[derive(Debug, Clone)]
pub struct ConsumeSpec {
    /// Client settings shared by every consumer (bootstrap, group id, fetch sizes).
    pub config: ClientConfig,
    /// Topic to read.
    pub topic: String,
    /// Partitions and offset ranges to read.
    pub ranges: Vec<PartitionRange>,
    /// Number of consumer clients (threads); partitions are dealt round-robin.
    pub consumers: usize,
}

/// Results of the consume phase.
#[derive(Debug)]
pub struct ConsumeReport {
    /// Payload bytes read.
    pub bytes: u64,
    /// Messages read.
    pub messages: u64,
    /// Wall time from assignment to the last partition reaching its end.
    pub elapsed: Duration,
    /// Client-level errors and warnings logged by librdkafka.
    pub client_errors: u64,
}

struct ConsumerTotals {
    bytes: u64,
    messages: u64,
    finished: Instant,
}

/// Runs the consume phase. Consumers are created and connected before the
/// clock starts; assignment happens after.
pub fn run(spec: &ConsumeSpec) -> Result<ConsumeReport> {
    let pending: Vec<PartitionRange> = spec.ranges.iter().copied().filter(|r| r.end > r.start).collect();
    let n = spec.consumers.clamp(1, pending.len().max(1));
    let mut shares: Vec<Vec<PartitionRange>> = vec![Vec::new(); n];
    for (i, r) in pending.iter().enumerate() {
        shares[i % n].push(*r);
    }
    let mut consumers = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = LogContext(ClientLog::new(format!("consumer-{i}")));
        let consumer: BaseConsumer<LogContext> =
            spec.config.create_with_context(ctx).context("creating consumer")?;
        consumer
            .fetch_metadata(Some(&spec.topic), Duration::from_secs(30))
            .context("consumer metadata request")?;
        consumers.push(consumer);
    }

    let start = Instant::now();
    let results: Vec<Result<ConsumerTotals>> = std::thread::scope(|scope| {
        let handles: Vec<_> = consumers
            .iter()
            .zip(&shares)
            .enumerate()
            .map(|(i, (consumer, share))| scope.spawn(move || consume_all(consumer, &spec.topic, share, i)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("consumer thread panicked"))))
            .collect()
    });

    let mut report = ConsumeReport { bytes: 0, messages: 0, elapsed: Duration::ZERO, client_errors: 0 };
    let mut finished = start;
    for (consumer, result) in consumers.iter().zip(results) {
        report.client_errors += consumer.context().0.count.load(Ordering::Relaxed);
        let totals = result?;
        report.bytes += totals.bytes;
        report.messages += totals.messages;
        finished = finished.max(totals.finished);
    }
    report.elapsed = finished.duration_since(start);
    Ok(report)
}

/// One consumer's loop: assign its partitions, read until each reaches its end.
fn consume_all(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    share: &[PartitionRange],
    index: usize,
) -> Result<ConsumerTotals> {
    let mut totals = ConsumerTotals { bytes: 0, messages: 0, finished: Instant::now() };
    if share.is_empty() {
        return Ok(totals);
    }
    let mut tpl = TopicPartitionList::new();
    let max_partition = share.iter().map(|r| r.partition).max().unwrap_or(0);
    // end offset per partition id; i64::MIN marks "not ours or done".
    let mut ends = vec![i64::MIN; usize::try_from(max_partition).unwrap_or(0) + 1];
    for r in share {
        let offset = if r.start == 0 { Offset::Beginning } else { Offset::Offset(r.start) };
        tpl.add_partition_offset(topic, r.partition, offset).context("building assignment")?;
        if let Some(slot) = usize::try_from(r.partition).ok().and_then(|p| ends.get_mut(p)) {
            *slot = r.end;
        }
    }
    consumer.assign(&tpl).context("assigning partitions")?;

    let mut remaining = share.len();
    let mut last_progress = Instant::now();
    // Messages seen since the last idle poll (saves a clock read per message).
    let mut progressed = false;
    let mut errors = 0u64;
    while remaining > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if progressed {
                    progressed = false;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > IDLE_TIMEOUT {
                    let behind: Vec<String> = share
                        .iter()
                        .filter(|r| ends.get(r.partition as usize).is_some_and(|e| *e != i64::MIN))
                        .map(|r| r.partition.to_string())
                        .collect();
                    bail!(
                        "consumer-{index}: nothing received for {}s; partitions not at their end: {}",
                        IDLE_TIMEOUT.as_secs(),
                        behind.join(",")
                    );
                }
            }
            Some(Err(e)) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("consumer-{index}: {e}");
                }
            }
            Some(Ok(msg)) => {
                progressed = true;
                let Some(end) = usize::try_from(msg.partition()).ok().and_then(|p| ends.get_mut(p)) else {
                    continue;
                };
                let offset = msg.offset();
                if *end == i64::MIN || offset >= *end {
                    continue;
                }
                totals.bytes += msg.payload_len() as u64;
                totals.messages += 1;
                if offset + 1 >= *end {
                    *end = i64::MIN;
                    remaining -= 1;
                }
            }
        }
    }
    totals.finished = Instant::now();
    Ok(totals)
}
