use thiserror::Error;

/// Errors of the cluster metadata layer.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// A topic of that name already exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// No topic of that name or id.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// A partition count may only grow.
    #[error("topic {topic} has {current} partitions; cannot change to {requested}")]
    InvalidPartitions {
        /// The topic.
        topic: String,
        /// Its current count.
        current: i32,
        /// The requested count.
        requested: i32,
    },
    /// A live broker holds this node id.
    #[error("node id {0} is held by a live broker (its registration has not expired)")]
    NodeIdInUse(i32),
    /// Concurrent changes kept conflicting.
    #[error("metadata changed concurrently; retry")]
    Contended,
    /// A stored record does not decode.
    #[error("corrupt metadata record {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] strata_meta::MetaError),
}
