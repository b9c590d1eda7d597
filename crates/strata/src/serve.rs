//! `strata serve`: open the stores, start the listener, stop on a signal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use strata_broker::{Broker, BrokerConfig};
use strata_cluster::{Catalog, membership};
use strata_meta::{EmbeddedStore, EtcdStore, LeaseClock, MetaStore};
use strata_server::{AdminState, Server, ServerConfig, serve_admin};
use strata_stream::object_stores::{DurableLocalStore, InstrumentedStore, RetryConfig, RetryingStore};
use strata_stream::{CompactionConfig, ObjectWalConfig, StreamStore, StreamStoreConfig, WalKind};

use crate::config::Settings;

/// Opens the object store named by `url`; `retry_for` bounds the S3 client's
/// own retries (ours wrap them, see `RetryingStore`).
fn open_object_store(url: &str, retry_for: Duration) -> anyhow::Result<Arc<dyn ObjectStore>> {
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
        let fs = LocalFileSystem::new_with_prefix(path).with_context(|| format!("opening {path}"))?;
        return Ok(Arc::new(DurableLocalStore::new(fs)));
    }
    if url.starts_with("s3://") {
        let parsed = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
        let bucket = parsed.host_str().context("s3 url needs a bucket")?;
        let client_retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: retry_for,
            backoff: object_store::BackoffConfig::default(),
        };
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(client_retry)
            .build()
            .context("configuring S3 from the environment")?;
        let prefix = parsed.path().trim_matches('/');
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)));
    }
    anyhow::bail!("unsupported object store url {url}: use file:///path or s3://bucket/prefix")
}

/// Splits `etcd://host:port[,host:port]/prefix` into its endpoints and key
/// prefix (`/strata` when none is given).
fn parse_etcd_url(url: &str) -> anyhow::Result<(Vec<String>, String)> {
    let rest = url.strip_prefix("etcd://").with_context(|| {
        format!("unsupported metadata store {url}: use embedded or etcd://host:port/prefix")
    })?;
    let (hosts, prefix) = match rest.split_once('/') {
        Some((hosts, prefix)) => (hosts, format!("/{}", prefix.trim_matches('/'))),
        None => (rest, String::new()),
    };
    let endpoints: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(str::to_string).collect();
    if endpoints.is_empty() {
        anyhow::bail!("{url} names no etcd endpoint");
    }
    let prefix = if prefix.len() <= 1 { "/strata".to_string() } else { prefix };
    Ok((endpoints, prefix))
}

fn absolute(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// Splits `host:port` for advertising.
fn split_host_port(addr: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = addr.rsplit_once(':').with_context(|| format!("{addr} is not host:port"))?;
    let port: i32 = port.parse().with_context(|| format!("bad port in {addr}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Runs the broker until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let data_dir = absolute(&settings.data_dir)?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // One process per data directory: the lock lives as long as the process.
    let _lock = lock_data_dir(&data_dir)?;
    let object_url = settings
        .object_store
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()));
    // Transient failures (503 SlowDown, 5xx, timeouts) are retried with jittered
    // backoff within a deadline; past it the caller gets an error, never a hang.
    let retry = RetryConfig {
        deadline: Duration::from_millis(settings.object_store_retry_ms),
        attempt_timeout: Duration::from_millis(settings.object_store_retry_ms.clamp(100, 10_000)),
        ..RetryConfig::default()
    };
    // Counted directly around the real store, so that every retry counts.
    let instrumented = InstrumentedStore::new(open_object_store(&object_url, retry.attempt_timeout)?);
    let object_stats = instrumented.stats();
    let objects: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(Arc::new(instrumented), retry));

    // The admin port answers from the start: live, and ready once serving.
    let recorder = crate::metrics::install()?;
    let opened: Arc<OnceLock<Arc<StreamStore>>> = Arc::new(OnceLock::new());
    let serving_broker: Arc<OnceLock<Arc<Broker>>> = Arc::new(OnceLock::new());
    let serving = Arc::new(AtomicBool::new(false));
    let http_addr = match &settings.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the admin port {addr}"))?;
            let bound = listener.local_addr()?;
            let (render_store, ready_store, ready_flag, live_store) =
                (Arc::clone(&opened), Arc::clone(&opened), Arc::clone(&serving), Arc::clone(&opened));
            let render_broker = Arc::clone(&serving_broker);
            let state = AdminState {
                metrics: Arc::new(move || {
                    if let Some(b) = render_broker.get() {
                        b.publish_group_metrics();
                    }
                    crate::metrics::render(&recorder, render_store.get(), &object_stats)
                }),
                ready: Arc::new(move || {
                    ready_flag.load(Ordering::Acquire) && ready_store.get().is_some_and(|s| !s.is_failed())
                }),
                live: Arc::new(move || live_store.get().is_none_or(|s| s.stopped().is_none())),
            };
            tokio::spawn(async move {
                if let Err(e) = serve_admin(listener, state, std::future::pending()).await {
                    tracing::error!(error = %e, "admin port failed");
                }
            });
            Some(bound.to_string())
        }
        None => None,
    };
    // Bind first so that port 0 resolves before we advertise.
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let bound: SocketAddr = listener.local_addr()?;
    drop(listener);
    let advertise = match &settings.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => format!("127.0.0.1:{}", bound.port()),
        None => bound.to_string(),
    };
    let (host, port) = split_host_port(&advertise)?;
    let mut registration = None;
    let meta: Arc<dyn MetaStore> = match settings.metadata.as_deref() {
        None | Some("embedded") => Arc::new(
            EmbeddedStore::open(Arc::clone(&objects), "meta").await.context("opening the metadata store")?,
        ),
        Some(url) => {
            let (endpoints, prefix) = parse_etcd_url(url)?;
            let timeout = Duration::from_millis(settings.object_store_retry_ms.clamp(1000, 10_000));
            // Membership first: a broker whose id a live broker holds stops
            // here, before it takes the prefix over.
            let members: Arc<dyn MetaStore> = Arc::new(
                EtcdStore::connect_with_timeout(&endpoints, &prefix, timeout)
                    .await
                    .with_context(|| format!("connecting to {url}"))?,
            );
            let ttl = Duration::from_millis(settings.broker_session_timeout_ms.max(2000));
            let granted = std::time::Instant::now();
            let reg = membership::register(members.as_ref(), settings.node_id, &host, port, ttl)
                .await
                .with_context(|| format!("registering this broker in {url}"))?;
            tracing::info!(
                node_id = reg.node_id,
                lease = reg.lease,
                incarnation = reg.incarnation,
                "broker registered"
            );
            let clock = Arc::new(LeaseClock::new(ttl, granted));
            let meta =
                EtcdStore::connect_member(&endpoints, &prefix, timeout, reg.incarnation, Arc::clone(&clock))
                    .await
                    .with_context(|| format!("opening the metadata store {url}"))?;
            // Kept alive from now on, not from when the broker listens: a
            // start that takes longer than the session (a loaded machine,
            // a long WAL replay) must not lose the lease meanwhile.
            let keeper = tokio::spawn(membership::keep_registered(Arc::clone(&members), reg, ttl / 4, clock));
            registration = Some((members, reg, keeper));
            Arc::new(meta)
        }
    };
    let in_cluster = registration.is_some();
    let node_id = registration.as_ref().map_or(settings.node_id.unwrap_or(0), |(_, r, _)| r.node_id);
    let proposed_id = settings.cluster_id.clone().unwrap_or_else(|| {
        // Kafka's form: URL-safe base64 of a random UUID, without padding.
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
    });
    let catalog = Arc::new(Catalog::open(Arc::clone(&meta), &proposed_id).await.context("loading topics")?);
    let mut stream_config = StreamStoreConfig::new(data_dir.join("wal"));
    stream_config.upload_interval = Duration::from_millis(settings.upload_interval_ms.max(10));
    stream_config.gc_grace = Duration::from_millis(settings.gc_grace_ms);
    stream_config.tail_cache_bytes = settings.tail_cache_bytes;
    stream_config.block_cache_bytes = settings.block_cache_bytes;
    stream_config.wal_preallocate = settings.wal_preallocate;
    stream_config.compaction = CompactionConfig {
        interval: Duration::from_millis(settings.compaction_interval_ms),
        target_bytes: settings.compaction_target_bytes.max(1),
        min_ranges: settings.compaction_min_ranges,
        bytes_per_sec: settings.compaction_bytes_per_sec,
    };
    stream_config.orphan_interval = Duration::from_millis(settings.orphan_interval_ms.max(10));
    stream_config.orphan_age = Duration::from_millis(settings.orphan_age_ms);
    stream_config.read_ahead_bytes = settings.read_ahead_bytes;
    stream_config.catch_up_concurrency = settings.catch_up_concurrency;
    stream_config.catch_up_bytes_per_sec = settings.catch_up_bytes_per_sec;
    stream_config.index_inline_ranges = settings.index_inline_ranges;
    // A cluster runs on the object WAL: a stream's next leader reads the
    // previous one's tail from the bucket (docs/cluster.md).
    let remote = object_url.starts_with("s3://") || in_cluster;
    if in_cluster {
        if settings.wal.as_deref() == Some("file") {
            anyhow::bail!(
                "--wal file cannot serve a cluster: a partition's next leader could not read its tail (use --wal object)"
            );
        }
        stream_config.wal_prefix = strata_broker::cluster::wal_prefix(node_id);
        stream_config.own_all_at_open = false;
    }
    stream_config.wal = match settings.wal.as_deref() {
        Some("file") => WalKind::File,
        Some("object") => WalKind::Object(ObjectWalConfig {
            flush_delay: Duration::from_millis(settings.wal_flush_ms),
            flush_bytes: 8 << 20,
        }),
        None if remote => WalKind::Object(ObjectWalConfig {
            flush_delay: Duration::from_millis(settings.wal_flush_ms),
            flush_bytes: 8 << 20,
        }),
        None => WalKind::File,
        Some(other) => anyhow::bail!("--wal must be file or object, not {other}"),
    };
    let wal_name = match stream_config.wal {
        WalKind::File => "file",
        WalKind::Object(_) => "object",
    };
    let streams = StreamStore::open(stream_config, objects, Arc::clone(&meta))
        .await
        .context("opening the stream store")?;
    let _ = opened.set(Arc::clone(&streams));

    let server_config = ServerConfig { max_request_bytes: settings.socket_request_max_bytes };
    let mut broker_config = BrokerConfig::new(node_id, host, port);
    broker_config.auto_create_topics = settings.auto_create_topics;
    broker_config.num_partitions = settings.num_partitions;
    broker_config.listen = bound.to_string();
    broker_config.groups.initial_rebalance_delay =
        Duration::from_millis(settings.group_initial_rebalance_delay_ms);
    broker_config.transactions.max_timeout_ms = settings.transaction_max_timeout_ms;
    broker_config.transactions.abort_check_interval =
        Duration::from_millis(settings.transaction_abort_check_interval_ms.max(10));
    broker_config.transactions.version = settings.transaction_version;
    broker_config.transactions.id_expiration = Duration::from_millis(settings.transactional_id_expiration_ms);
    broker_config.transactions.remove_expired_interval =
        Duration::from_millis(settings.transaction_remove_expired_interval_ms.max(10));
    broker_config.producer_id_expiration = Duration::from_millis(settings.producer_id_expiration_ms);
    broker_config.producer_id_expiration_check_interval =
        Duration::from_millis(settings.producer_id_expiration_check_interval_ms.max(10));
    broker_config.offsets_retention = Duration::from_millis(settings.offsets_retention_ms);
    broker_config.offsets_retention_check_interval =
        Duration::from_millis(settings.offsets_retention_check_interval_ms.max(10));
    broker_config.socket_request_max_bytes = settings.socket_request_max_bytes;
    broker_config.log_dir = object_url.clone();
    broker_config.retention_check_interval =
        Duration::from_millis(settings.retention_check_interval_ms.max(10));
    broker_config.log_cleaner_backoff = Duration::from_millis(settings.log_cleaner_backoff_ms.max(10));
    let membership =
        registration.as_ref().map(|(_, r, _)| strata_broker::cluster::Membership { lease: r.lease });
    let broker = Broker::start(broker_config, Arc::clone(&catalog), Arc::clone(&streams), meta, membership)
        .await
        .context("starting the broker")?;
    let _ = serving_broker.set(Arc::clone(&broker));
    // A stop signal first drains a broker of a cluster (its partitions and
    // coordinators move to the others), serving all the while.
    let draining = Arc::clone(&broker);
    let drain_limit = Duration::from_millis(settings.drain_timeout_ms);
    let shutdown = async move {
        shutdown_signal().await;
        if draining.is_cluster() {
            tracing::info!("stop signal: draining");
            draining.drain(drain_limit).await;
        }
    };
    let server = Server::bind(&bound.to_string(), broker, server_config)
        .await
        .with_context(|| format!("binding {bound}"))?;
    tracing::info!(
        kafka = %server.local_addr()?,
        advertised = %advertise,
        data_dir = %data_dir.display(),
        objects = %object_url,
        wal = wal_name,
        cluster_id = %catalog.cluster_id(),
        node_id,
        http = %http_addr.as_deref().unwrap_or("none"),
        "strata listening"
    );
    serving.store(true, Ordering::Release);
    let stopped = {
        let streams = Arc::clone(&streams);
        async move { streams.wait_stopped().await }
    };
    // With etcd, the registration's lease is kept alive; once it is lost
    // (this process paused or cut off past the session timeout) another
    // broker may hold the id, so this one stops (issue 14 builds on it).
    let revoke = registration.as_ref().map(|(members, reg, _)| (Arc::clone(members), reg.lease));
    let lease_lost = async move {
        match registration {
            Some((_, _, keeper)) => keeper.await.unwrap_or_else(|e| {
                strata_meta::MetaError::Unavailable(format!("the lease keeper failed: {e}"))
            }),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = server.run(shutdown) => {}
        e = lease_lost => {
            // Another broker may hold this id's streams by now; the store
            // refuses every append (its lease clock is lost), so the linger
            // answers what clients sent with errors (docs/failover.md).
            tracing::error!(error = %e, "this broker's registration lease is lost");
            linger_and_exit("the registration lease is lost").await
        }
        why = stopped => {
            // docs/ownership.md, rule 8: acknowledge nothing more and exit, so
            // that an orchestrator restarts the process from the bucket.
            tracing::error!(?why, "this process no longer owns its prefix (or cannot trust its view)");
            linger_and_exit("fenced").await
        }
    }
    tracing::info!("shutting down");
    if let Some((members, lease)) = revoke {
        // A clean stop frees the node id at once.
        let _ = members.revoke_lease(lease).await;
    }
    Ok(())
}

/// The exit status of a process that stopped because it was fenced or could
/// not learn a commit's outcome.
pub const FENCED_EXIT_CODE: i32 = 3;

/// How long a stopped process keeps refusing requests before it exits.
const FENCED_LINGER: Duration = Duration::from_millis(500);

/// Exits with [`FENCED_EXIT_CODE`] after [`FENCED_LINGER`]: the linger
/// answers what clients already sent with NOT_LEADER_OR_FOLLOWER (appends
/// are refused) before the listeners close with the process.
async fn linger_and_exit(why: &str) -> ! {
    tokio::time::sleep(FENCED_LINGER).await;
    tracing::error!(why, refused_records = strata_broker::refused_fenced_records(), "exiting");
    std::process::exit(FENCED_EXIT_CODE)
}

/// Takes the exclusive lock of `<data-dir>/LOCK` for the life of the process.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use by another strata process (lock {} is held)",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_urls_name_endpoints_and_a_prefix() {
        let (e, p) = parse_etcd_url("etcd://a:2379,b:2379/strata/prod/").expect("url");
        assert_eq!((e, p.as_str()), (vec!["a:2379".to_string(), "b:2379".to_string()], "/strata/prod"));
        let (e, p) = parse_etcd_url("etcd://a:2379").expect("url");
        assert_eq!((e, p.as_str()), (vec!["a:2379".to_string()], "/strata"));
        assert!(parse_etcd_url("etcd:///x").is_err(), "no endpoint");
        assert!(parse_etcd_url("zk://a:2181/x").is_err());
    }
}
