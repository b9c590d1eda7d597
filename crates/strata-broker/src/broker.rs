//! The broker: shared state behind every handler, and its background tasks
//! (retention, producer-state snapshots).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_cluster::{Catalog, TopicRecord};
use strata_meta::MetaStore;
use strata_stream::{Stream, StreamStore};

use crate::BrokerError;
use crate::producer_state::Producers;

/// Broker settings that shape Kafka behaviour.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub advertised_host: String,
    /// The port clients are told to connect to.
    pub advertised_port: i32,
    /// The address the broker listens on (Kafka's `listeners`).
    pub listen: String,
    /// Kafka's `socket.request.max.bytes`: the largest request accepted.
    pub socket_request_max_bytes: usize,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics with -1.
    pub num_partitions: i32,
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Kafka's `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// Kafka's `log.cleaner.backoff.ms`: the pause between log compaction
    /// passes.
    pub log_cleaner_backoff: Duration,
    /// How often changed producer states are snapshotted.
    pub producer_snapshot_interval: Duration,
    /// Kafka's `producer.id.expiration.ms`: a partition forgets a producer
    /// idle this long (with no open transaction there).
    pub producer_id_expiration: Duration,
    /// Kafka's `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval: Duration,
    /// Group coordinator settings (`group.*`).
    pub groups: crate::groups::GroupConfig,
    /// Transaction coordinator settings (`transaction.*`).
    pub transactions: crate::txn::TxnConfig,
    /// Kafka's `offsets.retention.minutes`.
    pub offsets_retention: Duration,
    /// Kafka's `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: Duration,
    /// The one "log dir" DescribeLogDirs reports: where topic data lives (the
    /// object store's URL).
    pub log_dir: String,
}

impl BrokerConfig {
    /// Kafka's defaults for a broker advertised at `host:port`.
    pub fn new(node_id: i32, advertised_host: String, advertised_port: i32) -> Self {
        BrokerConfig {
            node_id,
            listen: format!("{advertised_host}:{advertised_port}"),
            advertised_host,
            advertised_port,
            socket_request_max_bytes: 104_857_600,
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            retention_check_interval: Duration::from_secs(300),
            log_cleaner_backoff: Duration::from_secs(15),
            producer_snapshot_interval: Duration::from_secs(10),
            producer_id_expiration: Duration::from_millis(86_400_000),
            producer_id_expiration_check_interval: Duration::from_millis(600_000),
            groups: Default::default(),
            transactions: Default::default(),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            log_dir: "strata".into(),
        }
    }
}

/// Everything a request handler needs.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) streams: Arc<StreamStore>,
    pub(crate) producers: Producers,
    pub(crate) topic_metrics: crate::topic_metrics::TopicMetricsCache,
    pub(crate) coordinator: crate::groups::Coordinator,
    pub(crate) txn: crate::txn::TxnCoordinator,
    pub(crate) cleaner: crate::log_cleaner::CleanerState,
    pub(crate) meta: Arc<dyn MetaStore>,
    /// The view of the cluster; `None` on one node.
    pub(crate) cluster: Option<crate::cluster::ClusterView>,
    /// Connections to the other brokers of the cluster.
    pub(crate) peers: crate::peers::Peers,
}

impl Broker {
    /// Builds the broker over an opened catalog and stream store and starts
    /// the background tasks. On one node (`membership` is `None`) it takes
    /// the next leader epoch of every partition; in a cluster it serves the
    /// streams placed on it (`crate::cluster`).
    pub async fn start(
        config: BrokerConfig,
        catalog: Arc<Catalog>,
        streams: Arc<StreamStore>,
        meta: Arc<dyn MetaStore>,
        membership: Option<crate::cluster::Membership>,
    ) -> Result<Arc<Self>, BrokerError> {
        if membership.is_none() {
            let ids: Vec<u64> = catalog.topics().iter().flat_map(|t| t.partition_streams.clone()).collect();
            streams.acquire(&ids).await?;
        }
        let producer_expiration =
            i64::try_from(config.producer_id_expiration.as_millis()).unwrap_or(i64::MAX);
        let broker = Arc::new(Broker {
            coordinator: crate::groups::Coordinator::new(config.groups.clone()),
            txn: crate::txn::TxnCoordinator::new(config.transactions.clone()),
            config,
            catalog,
            streams: Arc::clone(&streams),
            producers: Producers::new(Arc::clone(&meta), producer_expiration),
            topic_metrics: Default::default(),
            cleaner: Default::default(),
            meta,
            cluster: membership.map(crate::cluster::ClusterView::new),
            peers: Default::default(),
        });
        streams.start_background();
        broker.refresh_view().await?;
        broker.start_group_tasks();
        broker.start_txn_tasks();
        broker.start_cluster_tasks();
        let weak = Arc::downgrade(&broker);
        let every = broker.config.retention_check_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                b.enforce_retention().await;
            }
        });
        let weak = Arc::downgrade(&broker);
        let every = broker.config.log_cleaner_backoff;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                b.clean_logs().await;
            }
        });
        let weak = Arc::downgrade(&broker);
        let every = broker.config.producer_snapshot_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                let served = |id: u64| b.stream_by_id(id);
                if let Err(e) = b.producers.snapshot(&served).await {
                    tracing::warn!(error = %e, "producer state snapshot failed");
                }
            }
        });
        let weak = Arc::downgrade(&broker);
        let every = broker.config.producer_id_expiration_check_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(b) = weak.upgrade() else { return };
                let gone = b.producers.expire(now_ms());
                if gone > 0 {
                    tracing::info!(producers = gone, "idle producers expired");
                }
            }
        });
        Ok(broker)
    }

    /// The broker's settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        self.catalog.cluster_id()
    }

    /// The stream behind partition `index` of `topic`, when this broker
    /// serves it.
    pub(crate) fn partition(&self, topic: &TopicRecord, index: i32) -> Option<Arc<Stream>> {
        let id = *topic.partition_streams.get(usize::try_from(index).ok()?)?;
        self.stream_by_id(id)
    }

    /// The stream `id`, when this broker serves it.
    pub(crate) fn stream_by_id(&self, id: u64) -> Option<Arc<Stream>> {
        if self.is_cluster() { self.streams.served(id) } else { Some(self.streams.open_stream(id)) }
    }

    /// The stream behind partition `index` of `topic`, for a request only its
    /// leader answers: NOT_LEADER_OR_FOLLOWER when another broker leads it.
    pub(crate) fn lead(&self, topic: &TopicRecord, index: i32) -> Result<Arc<Stream>, BrokerError> {
        let id = *usize::try_from(index)
            .ok()
            .and_then(|i| topic.partition_streams.get(i))
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        self.stream_by_id(id).ok_or(BrokerError::NotLeaderOrFollower)
    }
}

/// Kafka's check of a client's `current_leader_epoch` against ours (-1: none).
pub(crate) fn check_leader_epoch(current: i32, client: i32) -> Result<(), BrokerError> {
    if client > current {
        Err(BrokerError::UnknownLeaderEpoch)
    } else if client >= 0 && client < current {
        Err(BrokerError::FencedLeaderEpoch)
    } else {
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
