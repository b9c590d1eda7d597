//! The broker: shared state behind every handler.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::BrokerId;
use strata_cluster::{Catalog, TopicRecord};
use strata_stream::{Stream, StreamStore};

/// Broker settings that shape Kafka behaviour.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// The host clients are told to connect to.
    pub advertised_host: String,
    /// The port clients are told to connect to.
    pub advertised_port: i32,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics with -1.
    pub num_partitions: i32,
    /// Kafka's `default.replication.factor`.
    pub default_replication_factor: i16,
}

impl BrokerConfig {
    /// Kafka's defaults for a broker advertised at `host:port`.
    pub fn new(node_id: i32, advertised_host: String, advertised_port: i32) -> Self {
        BrokerConfig {
            node_id,
            advertised_host,
            advertised_port,
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
        }
    }
}

/// The leader epoch of every partition: a single node never changes leaders.
pub(crate) const LEADER_EPOCH: i32 = 0;

/// Everything a request handler needs.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) streams: Arc<StreamStore>,
}

impl Broker {
    /// Builds the broker over an opened catalog and stream store.
    pub fn new(config: BrokerConfig, catalog: Arc<Catalog>, streams: Arc<StreamStore>) -> Self {
        Broker { config, catalog, streams }
    }

    /// The broker's settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        self.catalog.cluster_id()
    }

    pub(crate) fn node(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    /// The stream behind partition `index` of `topic`.
    pub(crate) fn partition(&self, topic: &TopicRecord, index: i32) -> Option<Arc<Stream>> {
        let id = *topic.partition_streams.get(usize::try_from(index).ok()?)?;
        Some(self.streams.open_stream(id))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
