use thiserror::Error;

/// Errors of the stream layer.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The WAL could not be written or synced; the store refuses further appends.
    #[error("wal i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The WAL failed earlier and no longer accepts appends.
    #[error("the wal has failed and accepts no more appends")]
    Failed,
    /// The WAL holds bytes that do not decode (outside the torn tail).
    #[error("corrupt wal segment {segment}: {reason}")]
    Corrupt {
        /// The segment file or object.
        segment: String,
        /// What is wrong.
        reason: String,
    },
    /// The stream was deleted.
    #[error("stream {0} is closed")]
    Closed(u64),
    /// The requested offset is outside the stream's range.
    #[error("offset {offset} out of range [{start}, {end})")]
    OutOfRange {
        /// The asked offset.
        offset: i64,
        /// The first readable offset.
        start: i64,
        /// The end (next offset to be written and made durable).
        end: i64,
    },
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// An object is shorter than its index says.
    #[error("object {0} is shorter than indexed")]
    ShortObject(String),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Meta(#[from] strata_meta::MetaError),
    /// A metadata record does not decode.
    #[error("corrupt metadata record {key}: {reason}")]
    BadRecord {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}
