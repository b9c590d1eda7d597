//! Command-line flags (each also read from a `STRATA_*` environment variable).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Strata: a Kafka-compatible streaming platform with stateless brokers.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    Serve(Box<ServeArgs>),
    /// Move a partition to other brokers (AlterPartitionReassignments; the
    /// first listed becomes the leader) and wait until it is done.
    Move(MoveArgs),
}

/// Flags of `strata move`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Any broker of the cluster, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The partition.
    #[arg(long)]
    pub partition: i32,
    /// The brokers to move it to, comma-separated (the first leads).
    #[arg(long, value_delimiter = ',', required = true)]
    pub to: Vec<i32>,
    /// How long to wait for the move to complete, in ms.
    #[arg(long, default_value_t = 60_000)]
    pub wait_ms: u64,
}

/// Flags of `strata serve`. Unset flags fall back to the environment, then the
/// config file, then the defaults.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// Address advertised to clients [default: the listen address].
    #[arg(long, env = "STRATA_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory of local state (the WAL) [default: ./data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Object store URL: file:///path or s3://bucket/prefix [default: file://<data-dir>/objects].
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Where the cluster metadata lives: `embedded` (a manifest in the object
    /// store) or `etcd://host:port[,host:port]/prefix` (etcd, every key under
    /// the prefix; one broker owns a prefix at a time for now) [default: embedded].
    #[arg(long, env = "STRATA_METADATA")]
    pub metadata: Option<String>,
    /// This broker's node id [default: 0; with etcd metadata, a fresh id from 1001].
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<i32>,
    /// Cluster id recorded on first start [default: generated].
    #[arg(long, env = "STRATA_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Kafka's auto.create.topics.enable [default: true].
    #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Kafka's num.partitions, for auto-created topics [default: 1].
    #[arg(long, env = "STRATA_NUM_PARTITIONS")]
    pub num_partitions: Option<i32>,
    /// Kafka's socket.request.max.bytes [default: 104857600].
    #[arg(long, env = "STRATA_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Kafka's log.retention.check.interval.ms [default: 300000].
    #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Kafka's log.cleaner.backoff.ms: the pause between log compaction passes [default: 15000].
    #[arg(long, env = "STRATA_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Kafka's group.initial.rebalance.delay.ms [default: 3000].
    #[arg(long, env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Kafka's transaction.max.timeout.ms [default: 900000].
    #[arg(long, env = "STRATA_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,
    /// Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms [default: 10000].
    #[arg(long, env = "STRATA_TRANSACTION_ABORT_CHECK_INTERVAL_MS")]
    pub transaction_abort_check_interval_ms: Option<u64>,
    /// The transaction.version finalized in ApiVersions, 1 or 2 (Kafka 4.1's
    /// default): with 2, Kafka 4.x Java clients use KIP-890's second
    /// transaction protocol [default: 2].
    #[arg(long, env = "STRATA_TRANSACTION_VERSION", value_parser = clap::value_parser!(i16).range(1..=2))]
    pub transaction_version: Option<i16>,
    /// Kafka's broker.session.timeout.ms: with etcd metadata, the life of this
    /// broker's registration lease, renewed every quarter of it [default: 6000].
    #[arg(long, env = "STRATA_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// Kafka's transactional.id.expiration.ms [default: 604800000, 7 days].
    #[arg(long, env = "STRATA_TRANSACTIONAL_ID_EXPIRATION_MS")]
    pub transactional_id_expiration_ms: Option<u64>,
    /// Kafka's transaction.remove.expired.transaction.cleanup.interval.ms [default: 3600000].
    #[arg(long, env = "STRATA_TRANSACTION_REMOVE_EXPIRED_INTERVAL_MS")]
    pub transaction_remove_expired_interval_ms: Option<u64>,
    /// Kafka's producer.id.expiration.ms [default: 86400000, 1 day].
    #[arg(long, env = "STRATA_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// Kafka's producer.id.expiration.check.interval.ms [default: 600000].
    #[arg(long, env = "STRATA_PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS")]
    pub producer_id_expiration_check_interval_ms: Option<u64>,
    /// Kafka's offsets.retention.minutes, in ms [default: 604800000, 7 days].
    #[arg(long, env = "STRATA_OFFSETS_RETENTION_MS")]
    pub offsets_retention_ms: Option<u64>,
    /// Kafka's offsets.retention.check.interval.ms [default: 600000].
    #[arg(long, env = "STRATA_OFFSETS_RETENTION_CHECK_INTERVAL_MS")]
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// How often the WAL tail is moved into an object, in ms [default: 2000].
    #[arg(long, env = "STRATA_UPLOAD_INTERVAL_MS")]
    pub upload_interval_ms: Option<u64>,
    /// Grace period before an unreferenced object is deleted, in ms [default: 60000].
    #[arg(long, env = "STRATA_GC_GRACE_MS")]
    pub gc_grace_ms: Option<u64>,
    /// Memory for recently written batches (tail cache), bytes [default: 268435456].
    #[arg(long, env = "STRATA_TAIL_CACHE_BYTES")]
    pub tail_cache_bytes: Option<usize>,
    /// Write-ahead log: `file` (fsync'd local file) or `object` (objects in the
    /// object store, nothing local) [default: object for s3://, else file].
    #[arg(long, env = "STRATA_WAL")]
    pub wal: Option<String>,
    /// How long object-store operations are retried before failing, in ms [default: 30000].
    #[arg(long, env = "STRATA_OBJECT_STORE_RETRY_MS")]
    pub object_store_retry_ms: Option<u64>,
    /// Object WAL: how long a flush gathers batches, in ms (longer: fewer PUTs per GiB, more latency) [default: 50].
    #[arg(long, env = "STRATA_WAL_FLUSH_MS")]
    pub wal_flush_ms: Option<u64>,
    /// Zero-fill WAL segments ahead of use, so fsyncs need no metadata commit [default: false].
    #[arg(long, env = "STRATA_WAL_PREALLOCATE")]
    pub wal_preallocate: Option<bool>,
    /// Memory for object blocks (block cache), bytes [default: 268435456].
    #[arg(long, env = "STRATA_BLOCK_CACHE_BYTES")]
    pub block_cache_bytes: Option<u64>,
    /// HTTP admin address (`/metrics`, `/healthz`, `/readyz`), or `none` [default: 127.0.0.1:9644].
    #[arg(long, env = "STRATA_HTTP")]
    pub http: Option<String>,
    /// How often object compaction looks for work, in ms; 0 turns it off [default: 30000].
    #[arg(long, env = "STRATA_COMPACTION_INTERVAL_MS")]
    pub compaction_interval_ms: Option<u64>,
    /// Size of a compacted object, bytes; ranges below half of it are merged [default: 67108864].
    #[arg(long, env = "STRATA_COMPACTION_TARGET_BYTES")]
    pub compaction_target_bytes: Option<u64>,
    /// A run of this many small ranges is merged however few bytes it holds [default: 8].
    #[arg(long, env = "STRATA_COMPACTION_MIN_RANGES")]
    pub compaction_min_ranges: Option<usize>,
    /// Compaction's bandwidth budget (bytes read plus written per second) [default: 67108864].
    #[arg(long, env = "STRATA_COMPACTION_BYTES_PER_SEC")]
    pub compaction_bytes_per_sec: Option<u64>,
    /// How often the bucket is swept for orphan objects, in ms [default: 300000].
    #[arg(long, env = "STRATA_ORPHAN_INTERVAL_MS")]
    pub orphan_interval_ms: Option<u64>,
    /// An unreferenced object younger than this is not yet an orphan, in ms [default: 600000].
    #[arg(long, env = "STRATA_ORPHAN_AGE_MS")]
    pub orphan_age_ms: Option<u64>,
    /// Catch-up reads fetch this many bytes ahead of the reader [default: 16777216].
    #[arg(long, env = "STRATA_READ_AHEAD_BYTES")]
    pub read_ahead_bytes: Option<u64>,
    /// Catch-up reads: read-ahead GETs in flight at once (the catch-up budget) [default: 4].
    #[arg(long, env = "STRATA_CATCH_UP_CONCURRENCY")]
    pub catch_up_concurrency: Option<usize>,
    /// Catch-up reads: bytes per second served from objects, at most; 0 is unlimited [default: 0].
    #[arg(long, env = "STRATA_CATCH_UP_BYTES_PER_SEC")]
    pub catch_up_bytes_per_sec: Option<u64>,
    /// Object ranges a stream keeps as metadata keys before they fold into its
    /// index manifest in the object store; 0 never folds [default: 32].
    #[arg(long, env = "STRATA_INDEX_INLINE_RANGES")]
    pub index_inline_ranges: Option<usize>,
    /// On SIGTERM, a broker of a cluster moves its partitions to the others
    /// for at most this long before it exits [default: 30000].
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
}
