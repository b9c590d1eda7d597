use thiserror::Error;

/// Errors of the broker layer. Each maps to one Kafka error code in
/// [`crate::error_codes`].
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A batch failed its CRC or size checks.
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// A batch is not magic v2.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMessageFormat(i8),
    /// A batch is well-formed but not acceptable.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch exceeds the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// The batch size.
        size: usize,
        /// The limit.
        max: i64,
    },
    /// Record timestamps are outside the topic's allowed window.
    #[error("invalid timestamp: {reason}")]
    InvalidTimestamp {
        /// Why, for the error message.
        reason: String,
        /// The indexes in the batch of the records at fault (Kafka's
        /// `record_errors`).
        records: Vec<i32>,
        /// The partition's log start offset, which Kafka reports with it.
        log_start_offset: i64,
    },
    /// Records without a key sent to a compacted topic (Kafka's INVALID_RECORD
    /// with `record_errors`).
    #[error("One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: {}", records.len(), first_three(records, partition))]
    KeylessRecords {
        /// `topic-partition`, as Kafka names it in the message.
        partition: String,
        /// The indexes in the batch of the records without a key.
        records: Vec<i32>,
    },
    /// A replica assignment that does not fit the request or the cluster.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// The topic or partition does not exist.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// No topic has that id.
    #[error("unknown topic id")]
    UnknownTopicId,
    /// A topic name is not legal.
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    /// The topic exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// A partition count is not acceptable.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// A replication factor is not acceptable.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// A config name or value is not acceptable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The request is malformed in a way the schema cannot express.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The fetch offset is outside the log.
    #[error("offset out of range")]
    OffsetOutOfRange,
    /// Another broker of the cluster leads the partition (or none does yet).
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    /// The client's leader epoch is newer than ours.
    #[error("unknown leader epoch")]
    UnknownLeaderEpoch,
    /// The client's leader epoch is older than ours.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// The producer id is not known (or its state expired).
    #[error("unknown producer id: {0}")]
    UnknownProducerId(String),
    /// The producer's epoch is not its current one.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A sequence number does not follow the last one.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// The batch does not fit the producer's transaction state here.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The producer's transaction cannot go on: abort it (KIP-890).
    #[error("transaction abortable: {0}")]
    TransactionAbortable(String),
    /// The producer's last transaction is still completing (Produce v12's
    /// implicit add): retry.
    #[error("concurrent transactions: {0}")]
    ConcurrentTransactions(String),
    /// A dependency (the transaction coordinator) cannot answer now: retry.
    #[error("not enough replicas: {0}")]
    NotEnoughReplicas(String),
    /// Waiting for something took too long.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// A group request is refused.
    #[error("group: {0}")]
    Group(#[from] crate::groups::GroupError),
    /// The storage layer failed.
    #[error("storage: {0}")]
    Storage(#[from] strata_stream::StreamError),
    /// The metadata layer failed.
    #[error("metadata: {0}")]
    Cluster(#[from] strata_cluster::ClusterError),
}

/// The message Kafka gives each record without a key on a compacted topic.
pub fn keyless_message(partition: &str) -> String {
    format!("Compacted topic cannot accept message without key in topic partition {partition}")
}

fn first_three(records: &[i32], partition: &str) -> String {
    let shown: Vec<String> = records
        .iter()
        .take(3)
        .map(|i| format!("RecordError(batchIndex={i}, message='{}')", keyless_message(partition)))
        .collect();
    format!("[{}]", shown.join(", "))
}
