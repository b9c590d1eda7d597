//! Produce phase: parallel `ThreadedProducer`s, per-message latency from
//! enqueue to delivery report, optional steady-rate pacing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::logging::ClientLog;

/// Highest latency the histogram tracks, in microseconds (10 minutes); larger
/// values are clamped.
const MAX_LATENCY_US: u64 = 600_000_000;

/// How many distinct delivery error messages are kept for the report.
const MAX_KEPT_ERRORS: usize = 5;

/// What the produce phase needs to know.
#[derive(Debug, Clone)]
pub struct ProduceSpec {
    /// Client settings shared by every producer (bootstrap, acks, codec, ...).
    pub config: ClientConfig,
    /// Destination topic.
    pub topic: String,
    /// Payload size of every message.
    pub message_size: usize,
    /// Total number of messages, split across producers.
    pub messages: u64,
    /// Number of parallel producer clients.
    pub producers: usize,
    /// Target total rate in bytes per second, if paced.
    pub rate_bytes_per_s: Option<f64>,
}

/// Results of the produce phase.
#[derive(Debug)]
pub struct ProduceReport {
    /// Payload bytes acknowledged by the broker.
    pub bytes: u64,
    /// Messages acknowledged by the broker.
    pub messages: u64,
    /// Messages whose delivery failed (or never completed).
    pub failed: u64,
    /// Wall time from the first send to the last acknowledgement.
    pub elapsed: Duration,
    /// Enqueue-to-acknowledgement latency of successful deliveries, in microseconds.
    pub latency_us: Histogram<u64>,
    /// A few delivery error messages.
    pub errors: Vec<String>,
    /// Client-level errors and warnings logged by librdkafka.
    pub client_errors: u64,
}

/// Delivery callback state of one producer.
struct BenchContext {
    /// Origin of every timestamp carried in the delivery opaque.
    base: Instant,
    log: ClientLog,
    latency_us: Mutex<Histogram<u64>>,
    acked_messages: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds after `base` of the latest acknowledgement.
    last_ack_ns: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl BenchContext {
    fn new(base: Instant, name: String) -> Result<Self> {
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating histogram")?;
        Ok(BenchContext {
            base,
            log: ClientLog::new(name),
            latency_us: Mutex::new(hist),
            acked_messages: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl ClientContext for BenchContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }
}

impl ProducerContext for BenchContext {
    /// Enqueue time in nanoseconds after `base` (no allocation per message).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(msg) => {
                let latency_us = now.saturating_sub(sent_ns as u64) / 1_000;
                if let Ok(mut h) = self.latency_us.lock() {
                    h.saturating_record(latency_us.max(1));
                }
                self.acked_messages.fetch_add(1, Ordering::Relaxed);
                self.acked_bytes.fetch_add(msg.payload_len() as u64, Ordering::Relaxed);
                self.last_ack_ns.fetch_max(now, Ordering::Relaxed);
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut errors) = self.errors.lock() {
                    let text = err.to_string();
                    if errors.len() < MAX_KEPT_ERRORS && !errors.contains(&text) {
                        errors.push(text);
                    }
                }
            }
        }
    }
}

/// Open-loop pacing: message `i` is due `i * size / rate` after the start.
/// The sender sleeps in steps of at most 1 ms until the next message is due;
/// a sender that fell behind (descheduled, queue full) catches up at once, so
/// the average rate holds and stalls are not hidden from the latency figures.
struct Pacer {
    start: Instant,
    ns_per_byte: f64,
    due_bytes: f64,
}

impl Pacer {
    fn new(bytes_per_s: f64) -> Self {
        Pacer { start: Instant::now(), ns_per_byte: 1e9 / bytes_per_s, due_bytes: 0.0 }
    }

    /// Blocks until the next `bytes` are due.
    fn take(&mut self, bytes: f64) {
        let due = Duration::from_nanos((self.due_bytes * self.ns_per_byte) as u64);
        self.due_bytes += bytes;
        loop {
            let now = self.start.elapsed();
            if now >= due {
                return;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(1)));
        }
    }
}

/// xorshift64 bytes: cheap, deterministic and not compressible, so codec
/// figures are not flattered by runs of zeros.
pub fn random_buffer(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs the produce phase and returns its figures. Producers are created and
/// connected before the clock starts.
pub fn run(spec: &ProduceSpec) -> Result<ProduceReport> {
    let buffer = random_buffer((64 * 1024).max(spec.message_size * 2));
    let base = Instant::now();
    let mut producers = Vec::with_capacity(spec.producers);
    for i in 0..spec.producers {
        let ctx = BenchContext::new(base, format!("producer-{i}"))?;
        let producer: ThreadedProducer<BenchContext> =
            spec.config.create_with_context(ctx).context("creating producer")?;
        // Warm-up: connect and learn the topic's leaders before timing.
        producer
            .client()
            .fetch_metadata(Some(&spec.topic), Duration::from_secs(30))
            .context("producer metadata request")?;
        producers.push(producer);
    }

    let per_producer = spec.messages / spec.producers as u64;
    let extra = spec.messages % spec.producers as u64;
    let rate_each = spec.rate_bytes_per_s.map(|r| r / spec.producers as f64);
    let start_ns = u64::try_from(base.elapsed().as_nanos()).unwrap_or(0);

    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = producers
            .iter()
            .enumerate()
            .map(|(i, producer)| {
                let count = per_producer + u64::from((i as u64) < extra);
                let buffer = &buffer;
                scope.spawn(move || send_all(producer, spec, buffer, i, count, rate_each))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("producer thread panicked"))))
            .collect()
    });

    let mut report = ProduceReport {
        bytes: 0,
        messages: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating histogram")?,
        errors: Vec::new(),
        client_errors: 0,
    };
    let mut last_ack_ns = start_ns;
    let mut first_error = None;
    for (producer, result) in producers.iter().zip(results) {
        if let Err(e) = result
            && first_error.is_none()
        {
            first_error = Some(e);
        }
        let ctx = producer.context();
        // Whatever is still queued after the flush never got a delivery report.
        let unreported = producer.in_flight_count().max(0) as u64;
        report.bytes += ctx.acked_bytes.load(Ordering::Relaxed);
        report.messages += ctx.acked_messages.load(Ordering::Relaxed);
        report.failed += ctx.failed.load(Ordering::Relaxed) + unreported;
        report.client_errors += ctx.log.count.load(Ordering::Relaxed);
        last_ack_ns = last_ack_ns.max(ctx.last_ack_ns.load(Ordering::Relaxed));
        if let Ok(h) = ctx.latency_us.lock() {
            report.latency_us.add(&*h).context("merging histograms")?;
        }
        if let Ok(errors) = ctx.errors.lock() {
            for e in errors.iter() {
                if !report.errors.contains(e) {
                    report.errors.push(e.clone());
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    report.elapsed = Duration::from_nanos(last_ack_ns - start_ns);
    Ok(report)
}

/// One producer's send loop: `count` messages, then flush.
fn send_all(
    producer: &ThreadedProducer<BenchContext>,
    spec: &ProduceSpec,
    buffer: &[u8],
    index: usize,
    count: u64,
    rate: Option<f64>,
) -> Result<()> {
    let size = spec.message_size;
    let span = buffer.len() - size + 1;
    // Rotate through the buffer with a stride coprime to most spans, starting
    // each producer elsewhere.
    let mut offset = (index * 7919) % span;
    let mut pacer = rate.map(Pacer::new);
    let ctx = producer.context();
    for _ in 0..count {
        if let Some(p) = pacer.as_mut() {
            p.take(size as f64);
        }
        let payload = &buffer[offset..offset + size];
        offset = (offset + 4099) % span;
        let mut record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(&spec.topic, 0).payload(payload);
        loop {
            record.delivery_opaque = ctx.now_ns() as usize;
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // The polling thread serves delivery reports; wait for room.
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((e, _)) => bail!("producer-{index}: enqueue failed: {e}"),
            }
        }
    }
    // Delivery failures are counted by the callback; a flush timeout leaves
    // messages in flight, which the caller counts as failed.
    if let Err(e) = producer.flush(Duration::from_secs(600)) {
        eprintln!("producer-{index}: flush: {e}");
    }
    Ok(())
}
