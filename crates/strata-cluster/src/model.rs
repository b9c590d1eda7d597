use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A topic as recorded in the metadata store (`topics/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic name.
    pub name: String,
    /// The topic id (KIP-516).
    pub id: Uuid,
    /// The stream behind each partition, by partition index.
    pub partition_streams: Vec<u64>,
    /// Topic configs set explicitly (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

impl TopicRecord {
    /// The number of partitions.
    pub fn partitions(&self) -> i32 {
        self.partition_streams.len() as i32
    }
}
