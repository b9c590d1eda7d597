//! Resolved settings: flags and environment over the TOML file over defaults.

use std::path::PathBuf;

use serde::Deserialize;

use crate::cli::ServeArgs;

/// The TOML config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    object_store: Option<String>,
    metadata: Option<String>,
    node_id: Option<i32>,
    cluster_id: Option<String>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<i32>,
    socket_request_max_bytes: Option<usize>,
    retention_check_interval_ms: Option<u64>,
    log_cleaner_backoff_ms: Option<u64>,
    group_initial_rebalance_delay_ms: Option<u64>,
    transaction_max_timeout_ms: Option<i32>,
    transaction_abort_check_interval_ms: Option<u64>,
    transaction_version: Option<i16>,
    broker_session_timeout_ms: Option<u64>,
    transactional_id_expiration_ms: Option<u64>,
    transaction_remove_expired_interval_ms: Option<u64>,
    producer_id_expiration_ms: Option<u64>,
    producer_id_expiration_check_interval_ms: Option<u64>,
    offsets_retention_ms: Option<u64>,
    offsets_retention_check_interval_ms: Option<u64>,
    upload_interval_ms: Option<u64>,
    gc_grace_ms: Option<u64>,
    tail_cache_bytes: Option<usize>,
    block_cache_bytes: Option<u64>,
    wal_preallocate: Option<bool>,
    wal: Option<String>,
    wal_flush_ms: Option<u64>,
    object_store_retry_ms: Option<u64>,
    http: Option<String>,
    compaction_interval_ms: Option<u64>,
    compaction_target_bytes: Option<u64>,
    compaction_min_ranges: Option<usize>,
    compaction_bytes_per_sec: Option<u64>,
    orphan_interval_ms: Option<u64>,
    orphan_age_ms: Option<u64>,
    read_ahead_bytes: Option<u64>,
    catch_up_concurrency: Option<usize>,
    catch_up_bytes_per_sec: Option<u64>,
    index_inline_ranges: Option<usize>,
    drain_timeout_ms: Option<u64>,
}

/// Everything `strata serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    pub object_store: Option<String>,
    pub metadata: Option<String>,
    /// None: 0 on the embedded store, a generated id on etcd.
    pub node_id: Option<i32>,
    pub cluster_id: Option<String>,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: usize,
    pub retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    pub group_initial_rebalance_delay_ms: u64,
    pub transaction_max_timeout_ms: i32,
    pub transaction_abort_check_interval_ms: u64,
    pub transaction_version: i16,
    pub broker_session_timeout_ms: u64,
    pub transactional_id_expiration_ms: u64,
    pub transaction_remove_expired_interval_ms: u64,
    pub producer_id_expiration_ms: u64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub offsets_retention_ms: u64,
    pub offsets_retention_check_interval_ms: u64,
    pub upload_interval_ms: u64,
    pub gc_grace_ms: u64,
    pub tail_cache_bytes: usize,
    pub block_cache_bytes: u64,
    pub wal_preallocate: bool,
    pub wal: Option<String>,
    pub wal_flush_ms: u64,
    pub object_store_retry_ms: u64,
    /// The admin HTTP address; `None` when turned off.
    pub http: Option<String>,
    pub compaction_interval_ms: u64,
    pub compaction_target_bytes: u64,
    pub compaction_min_ranges: usize,
    pub compaction_bytes_per_sec: u64,
    pub orphan_interval_ms: u64,
    pub orphan_age_ms: u64,
    pub read_ahead_bytes: u64,
    pub catch_up_concurrency: usize,
    pub catch_up_bytes_per_sec: u64,
    pub index_inline_ranges: usize,
    pub drain_timeout_ms: u64,
}

impl Settings {
    /// Merges flags (and environment, which clap folds into them) over the
    /// config file over defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let num_partitions = args.num_partitions.or(file.num_partitions).unwrap_or(1);
        if num_partitions < 1 {
            anyhow::bail!("num_partitions must be at least 1");
        }
        let transaction_version = args.transaction_version.or(file.transaction_version).unwrap_or(2);
        if !(1..=2).contains(&transaction_version) {
            anyhow::bail!("transaction_version must be 1 or 2, not {transaction_version}");
        }
        Ok(Settings {
            listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:9092".into()),
            advertise: args.advertise.or(file.advertise),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data")),
            object_store: args.object_store.or(file.object_store),
            metadata: args.metadata.or(file.metadata),
            node_id: args.node_id.or(file.node_id),
            cluster_id: args.cluster_id.or(file.cluster_id),
            auto_create_topics: args.auto_create_topics.or(file.auto_create_topics).unwrap_or(true),
            num_partitions,
            socket_request_max_bytes: args
                .socket_request_max_bytes
                .or(file.socket_request_max_bytes)
                .unwrap_or(100 * 1024 * 1024),
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(300_000),
            log_cleaner_backoff_ms: args
                .log_cleaner_backoff_ms
                .or(file.log_cleaner_backoff_ms)
                .unwrap_or(15_000),
            group_initial_rebalance_delay_ms: args
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(3000),
            transaction_max_timeout_ms: args
                .transaction_max_timeout_ms
                .or(file.transaction_max_timeout_ms)
                .unwrap_or(900_000),
            transaction_abort_check_interval_ms: args
                .transaction_abort_check_interval_ms
                .or(file.transaction_abort_check_interval_ms)
                .unwrap_or(10_000),
            transaction_version,
            broker_session_timeout_ms: args
                .broker_session_timeout_ms
                .or(file.broker_session_timeout_ms)
                .unwrap_or(6000),
            transactional_id_expiration_ms: args
                .transactional_id_expiration_ms
                .or(file.transactional_id_expiration_ms)
                .unwrap_or(604_800_000),
            transaction_remove_expired_interval_ms: args
                .transaction_remove_expired_interval_ms
                .or(file.transaction_remove_expired_interval_ms)
                .unwrap_or(3_600_000),
            producer_id_expiration_ms: args
                .producer_id_expiration_ms
                .or(file.producer_id_expiration_ms)
                .unwrap_or(86_400_000),
            producer_id_expiration_check_interval_ms: args
                .producer_id_expiration_check_interval_ms
                .or(file.producer_id_expiration_check_interval_ms)
                .unwrap_or(600_000),
            offsets_retention_ms: args
                .offsets_retention_ms
                .or(file.offsets_retention_ms)
                .unwrap_or(604_800_000),
            offsets_retention_check_interval_ms: args
                .offsets_retention_check_interval_ms
                .or(file.offsets_retention_check_interval_ms)
                .unwrap_or(600_000),
            upload_interval_ms: args.upload_interval_ms.or(file.upload_interval_ms).unwrap_or(2000),
            gc_grace_ms: args.gc_grace_ms.or(file.gc_grace_ms).unwrap_or(60_000),
            tail_cache_bytes: args.tail_cache_bytes.or(file.tail_cache_bytes).unwrap_or(256 << 20),
            block_cache_bytes: args.block_cache_bytes.or(file.block_cache_bytes).unwrap_or(256 << 20),
            wal_preallocate: args.wal_preallocate.or(file.wal_preallocate).unwrap_or(false),
            wal: args.wal.or(file.wal),
            wal_flush_ms: args.wal_flush_ms.or(file.wal_flush_ms).unwrap_or(50),
            object_store_retry_ms: args
                .object_store_retry_ms
                .or(file.object_store_retry_ms)
                .unwrap_or(30_000),
            http: Some(args.http.or(file.http).unwrap_or_else(|| "127.0.0.1:9644".into()))
                .filter(|h| h != "none"),
            compaction_interval_ms: args
                .compaction_interval_ms
                .or(file.compaction_interval_ms)
                .unwrap_or(30_000),
            compaction_target_bytes: args
                .compaction_target_bytes
                .or(file.compaction_target_bytes)
                .unwrap_or(64 << 20),
            compaction_min_ranges: args.compaction_min_ranges.or(file.compaction_min_ranges).unwrap_or(8),
            compaction_bytes_per_sec: args
                .compaction_bytes_per_sec
                .or(file.compaction_bytes_per_sec)
                .unwrap_or(64 << 20),
            orphan_interval_ms: args.orphan_interval_ms.or(file.orphan_interval_ms).unwrap_or(300_000),
            orphan_age_ms: args.orphan_age_ms.or(file.orphan_age_ms).unwrap_or(600_000),
            read_ahead_bytes: args.read_ahead_bytes.or(file.read_ahead_bytes).unwrap_or(16 << 20),
            catch_up_concurrency: args.catch_up_concurrency.or(file.catch_up_concurrency).unwrap_or(4).max(1),
            catch_up_bytes_per_sec: args.catch_up_bytes_per_sec.or(file.catch_up_bytes_per_sec).unwrap_or(0),
            index_inline_ranges: args.index_inline_ranges.or(file.index_inline_ranges).unwrap_or(32),
            drain_timeout_ms: args.drain_timeout_ms.or(file.drain_timeout_ms).unwrap_or(30_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nnode_id = 7\n").expect("write");
        let args = ServeArgs { config: Some(path.clone()), node_id: Some(3), ..Default::default() };
        let s = Settings::resolve(args).expect("resolve");
        assert_eq!((s.listen.as_str(), s.node_id, s.num_partitions), ("127.0.0.1:1", Some(3), 1));
        std::fs::write(&path, "bogus = 1\n").expect("write");
        assert!(Settings::resolve(ServeArgs { config: Some(path), ..Default::default() }).is_err());
    }
}
