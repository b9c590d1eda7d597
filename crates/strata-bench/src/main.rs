//! `strata-bench`: a load generator on librdkafka that measures produce and
//! consume throughput and produce latency of a Strata (or any Kafka) broker.

mod broker_metrics;
mod catch_up;
mod consume;
mod logging;
mod produce;
mod size;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;

use crate::consume::{ConsumeReport, ConsumeSpec, PartitionRange};
use crate::logging::{ClientLog, LogContext};
use crate::produce::{ProduceReport, ProduceSpec};
use crate::size::parse_size;

/// How long to wait for the topic to show up in metadata with leaders.
const TOPIC_WAIT: Duration = Duration::from_secs(30);

/// Timeout of single metadata and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Produce (and by default consume back) a fixed volume against a Kafka broker
/// and report throughput and latency.
///
/// MB and MB/s are decimal: 1 MB = 10^6 bytes. Sizes accept B, KB/MB/GB
/// (powers of 1000) and KiB/MiB/GiB (powers of 1024). Produce latency is the
/// time from a message's enqueue in the client to its delivery report.
#[derive(Debug, Parser)]
#[command(version, about, long_about, args_override_self = true)]
struct Args {
    /// Broker address, HOST:PORT (librdkafka bootstrap.servers).
    #[arg(long)]
    bootstrap: String,
    /// Topic to use; created if missing [default: a fresh bench-<random>].
    #[arg(long)]
    topic: Option<String>,
    /// Payload volume to produce (rounded up to whole messages).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    bytes: u64,
    /// Payload size of each message.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    message_size: u64,
    /// Partitions of a created topic (replication factor 1).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Producer acks.
    #[arg(long, default_value = "all", value_parser = ["all", "-1", "1", "0"])]
    acks: String,
    /// Producer compression codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
    /// Producer linger.ms (may be fractional).
    #[arg(long, default_value_t = 5.0)]
    linger_ms: f64,
    /// Producer batch.size in bytes (librdkafka caps it at message.max.bytes).
    #[arg(long, default_value = "1048576", value_parser = parse_size)]
    batch_size: u64,
    /// Parallel producer clients, each on its own thread.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Hold a steady total produce rate of this many MB/s (10^6 bytes/s).
    #[arg(long)]
    rate: Option<f64>,
    /// Consume everything back after producing (the default).
    #[arg(long, overrides_with = "no_consume")]
    consume: bool,
    /// Skip the consume phase.
    #[arg(long, overrides_with = "consume")]
    no_consume: bool,
    /// Parallel consumer clients; partitions are dealt among them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// The broker's data directory: at the end, print the size of PATH/wal (the
    /// WAL backlog not yet uploaded).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also print one JSON line with every figure.
    #[arg(long)]
    json: bool,
    /// The broker's admin address (HOST:PORT): report object-store requests
    /// per GiB produced from its `/metrics`.
    #[arg(long)]
    metrics: Option<String>,
    /// With --metrics: wait this long after producing before the final scrape.
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
    /// Catch-up scenario: produce this much history, wait until it is in
    /// objects, replay it alone, then run the (paced) produce phase twice,
    /// without and with a catch-up reader replaying the history. Needs --metrics.
    #[arg(long, value_parser = parse_size)]
    catch_up: Option<u64>,
    /// Extra librdkafka property for every client, KEY=VALUE (repeatable).
    #[arg(short = 'X', long = "client-config", value_name = "KEY=VALUE")]
    client_config: Vec<String>,
}

/// librdkafka compression.type values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("strata-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A random-enough 64-bit value from std's per-process hash keys and the clock.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Settings every client shares: bootstrap and the `-X` extras.
fn base_config(args: &Args) -> Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.bootstrap);
    // Never let a metadata request create the topic with the broker's defaults.
    cfg.set("allow.auto.create.topics", "false");
    for kv in &args.client_config {
        let (k, v) = kv.split_once('=').with_context(|| format!("-X {kv}: expected KEY=VALUE"))?;
        cfg.set(k.trim(), v.trim());
    }
    Ok(cfg)
}

/// Runs the benchmark; `Ok(false)` means it ran but the run is not valid
/// (failed deliveries or a count mismatch).
fn run(args: &Args) -> Result<bool> {
    if args.message_size == 0 || args.bytes == 0 {
        bail!("--bytes and --message-size must be positive");
    }
    if args.partitions < 1 || args.producers < 1 || args.consumers < 1 {
        bail!("--partitions, --producers and --consumers must be at least 1");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of MB/s");
    }
    let message_size = usize::try_from(args.message_size).context("--message-size too large")?;
    let messages = args.bytes.div_ceil(args.message_size);
    let consume = !args.no_consume;
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench-{:016x}", random_u64()));
    let base = base_config(args)?;

    if let Some(history) = args.catch_up {
        let metrics = args.metrics.as_deref().context("--catch-up needs --metrics")?;
        return catch_up::run(args, &base, metrics, history);
    }
    let partitions = ensure_topic(&base, &topic, args.partitions)?;
    let consumer_cfg = consumer_config(&base);
    let scraped_before = args.metrics.as_deref().map(broker_metrics::scrape).transpose()?;
    let meta: BaseConsumer<LogContext> = consumer_cfg
        .create_with_context(LogContext(ClientLog::new("metadata")))
        .context("creating client")?;
    let before = watermarks(&meta, &topic, partitions)?;

    println!(
        "strata-bench: {} -> topic {topic} ({partitions} partitions), {} x {} B messages, acks={}, \
         compression={}, linger.ms={}, batch.size={}, producers={}{}",
        args.bootstrap,
        messages,
        message_size,
        args.acks,
        args.compression.as_str(),
        args.linger_ms,
        args.batch_size,
        args.producers,
        args.rate.map(|r| format!(", rate={r} MB/s")).unwrap_or_default(),
    );

    let spec = ProduceSpec {
        config: producer_config(args, &base),
        topic: topic.clone(),
        message_size,
        messages,
        producers: args.producers,
        rate_bytes_per_s: args.rate.map(|r| r * 1e6),
    };
    let produced = produce::run(&spec)?;
    let wal_after_produce = args.data_dir.as_deref().map(wal_size);
    let after = watermarks(&meta, &topic, partitions)?;
    println!("{}", produce_line(&produced));
    for e in &produced.errors {
        eprintln!("delivery error: {e}");
    }

    let mut ok = true;
    if produced.failed > 0 || produced.messages != messages {
        eprintln!(
            "strata-bench: INVALID RUN: {} of {messages} messages failed delivery ({} acknowledged)",
            produced.failed, produced.messages
        );
        ok = false;
    }
    let appended: i64 = before.iter().zip(&after).map(|(b, a)| a - b).sum();
    if ok && appended != produced.messages as i64 {
        eprintln!(
            "strata-bench: COUNT MISMATCH: high watermarks advanced by {appended} messages, \
             {} were acknowledged",
            produced.messages
        );
        ok = false;
    }

    let mut consumed = None;
    if ok && consume {
        let ranges = (0..partitions)
            .map(|p| PartitionRange { partition: p, start: before[p as usize], end: after[p as usize] })
            .collect();
        let spec =
            ConsumeSpec { config: consumer_cfg, topic: topic.clone(), ranges, consumers: args.consumers };
        let report = consume::run(&spec)?;
        println!("{}", consume_line(&report));
        if report.messages != produced.messages || report.bytes != produced.bytes {
            eprintln!(
                "strata-bench: COUNT MISMATCH: consumed {} messages / {} B, produced {} messages / {} B",
                report.messages, report.bytes, produced.messages, produced.bytes
            );
            ok = false;
        }
        consumed = Some(report);
    }

    if let (Some(addr), Some(before)) = (args.metrics.as_deref(), &scraped_before) {
        if args.settle_secs > 0 {
            // Let uploads and a compaction pass or two finish, so that their
            // requests count against this run's bytes.
            std::thread::sleep(Duration::from_secs(args.settle_secs));
        }
        println!("{}", broker_metrics::requests_line(before, &broker_metrics::scrape(addr)?, produced.bytes));
    }

    let wal_end = args.data_dir.as_deref().map(wal_size);
    if let Some(end) = &wal_end {
        match (end, &wal_after_produce) {
            (Ok(end), Some(Ok(p))) if consume => {
                println!("wal backlog: {end} B (right after produce: {p} B)")
            }
            (Ok(end), _) => println!("wal backlog: {end} B"),
            (Err(e), _) => eprintln!("wal backlog: unavailable: {e:#}"),
        }
    }

    if args.json {
        let wal = |w: &Option<Result<u64>>| w.as_ref().and_then(|r| r.as_ref().ok().copied());
        let line = json!({
            "bootstrap": args.bootstrap,
            "topic": topic,
            "partitions": partitions,
            "message_size": message_size,
            "acks": args.acks,
            "compression": args.compression.as_str(),
            "linger_ms": args.linger_ms,
            "batch_size": args.batch_size,
            "producers": args.producers,
            "consumers": args.consumers,
            "rate_mb_per_s": args.rate,
            "produce": produce_json(&produced),
            "consume": consumed.as_ref().map(consume_json),
            "wal_backlog_bytes": wal(&wal_end),
            "wal_backlog_after_produce_bytes": wal(&wal_after_produce),
            "ok": ok,
        });
        println!("{line}");
    }
    Ok(ok)
}

/// Consumer settings: a fresh group (never joined: partitions are assigned),
/// large fetches.
fn consumer_config(base: &ClientConfig) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.set("group.id", format!("strata-bench-{:016x}", random_u64()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "1048576");
    cfg
}

/// Producer settings from the flags.
fn producer_config(args: &Args, base: &ClientConfig) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.set("acks", &args.acks)
        .set("compression.type", args.compression.as_str())
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string());
    if args.message_size + 1024 > 1_000_000 {
        cfg.set("message.max.bytes", (args.message_size + 1024).to_string());
    }
    cfg
}

/// Creates the topic unless it exists, then waits until metadata shows it
/// with a leader for every partition. Returns its partition count.
fn ensure_topic(base: &ClientConfig, topic: &str, partitions: i32) -> Result<i32> {
    let admin: AdminClient<LogContext> =
        base.create_with_context(LogContext(ClientLog::new("admin"))).context("creating admin client")?;
    let opts =
        AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).operation_timeout(Some(REQUEST_TIMEOUT));
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &opts))
        .context("CreateTopics request")?;
    let mut existed = false;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }

    let deadline = Instant::now() + TOPIC_WAIT;
    loop {
        let md = admin.inner().fetch_metadata(Some(topic), REQUEST_TIMEOUT).context("metadata request")?;
        if let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            && t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
        {
            let n = i32::try_from(t.partitions().len()).context("partition count")?;
            if !existed && n != partitions {
                // Created by us but not yet complete: keep waiting.
            } else {
                if existed && n != partitions {
                    eprintln!("strata-bench: topic {topic} exists with {n} partitions (not {partitions})");
                }
                return Ok(n);
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} did not appear in metadata within {}s", TOPIC_WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// High watermark of every partition.
fn watermarks(client: &BaseConsumer<LogContext>, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .map(|(_, high)| high)
                .with_context(|| format!("watermarks of {topic}/{p}"))
        })
        .collect()
}

/// Total size of the files under `data_dir/wal`.
fn wal_size(data_dir: &Path) -> Result<u64> {
    fn walk(dir: &Path) -> Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                total += walk(&entry.path())?;
            } else {
                total += meta.len();
            }
        }
        Ok(total)
    }
    walk(&data_dir.join("wal"))
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn per_s(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Latency quantile in milliseconds.
fn q_ms(r: &ProduceReport, q: f64) -> f64 {
    r.latency_us.value_at_quantile(q) as f64 / 1000.0
}

fn produce_line(r: &ProduceReport) -> String {
    format!(
        "produce: {} B in {:.2} s = {:.1} MB/s, {:.0} msg/s; latency ms p50 {:.2} p99 {:.2} p999 {:.2} max {:.2}; \
         failed {}",
        r.bytes,
        r.elapsed.as_secs_f64(),
        mb_per_s(r.bytes, r.elapsed),
        per_s(r.messages, r.elapsed),
        q_ms(r, 0.5),
        q_ms(r, 0.99),
        q_ms(r, 0.999),
        r.latency_us.max() as f64 / 1000.0,
        r.failed
    )
}

fn consume_line(r: &ConsumeReport) -> String {
    format!(
        "consume: {} B in {:.2} s = {:.1} MB/s, {:.0} msg/s",
        r.bytes,
        r.elapsed.as_secs_f64(),
        mb_per_s(r.bytes, r.elapsed),
        per_s(r.messages, r.elapsed)
    )
}

fn produce_json(r: &ProduceReport) -> serde_json::Value {
    json!({
        "bytes": r.bytes,
        "messages": r.messages,
        "seconds": r.elapsed.as_secs_f64(),
        "mb_per_s": mb_per_s(r.bytes, r.elapsed),
        "msgs_per_s": per_s(r.messages, r.elapsed),
        "latency_ms": {
            "p50": q_ms(r, 0.5),
            "p99": q_ms(r, 0.99),
            "p999": q_ms(r, 0.999),
            "max": r.latency_us.max() as f64 / 1000.0,
        },
        "failed": r.failed,
        "client_errors": r.client_errors,
    })
}

fn consume_json(r: &ConsumeReport) -> serde_json::Value {
    json!({
        "bytes": r.bytes,
        "messages": r.messages,
        "seconds": r.elapsed.as_secs_f64(),
        "mb_per_s": mb_per_s(r.bytes, r.elapsed),
        "msgs_per_s": per_s(r.messages, r.elapsed),
        "client_errors": r.client_errors,
    })
}
