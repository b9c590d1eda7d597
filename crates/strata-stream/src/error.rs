use thiserror::Error;

/// What a caller should do about a [`StreamError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another process owns the data: answer "not the leader" and stop.
    Fenced,
    /// Retry later.
    Transient,
    /// A commit's outcome is unknown: the process must restart and reload.
    Unknown,
    /// Bytes that do not decode, or a request that can never succeed.
    Corrupt,
    /// The caller asked for something that is not there (a closed stream, an
    /// offset out of range).
    Request,
    /// This process does not own that one stream (it released it, or another
    /// process took it over): answer "not the leader"; other streams go on.
    NotOwner,
}

/// Errors of the stream layer.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The WAL could not be written or synced; the store refuses further appends.
    #[error("wal i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The WAL failed earlier and no longer accepts appends.
    #[error("the wal has failed and accepts no more appends")]
    Failed,
    /// A newer owner holds the prefix: this process acknowledges nothing more.
    #[error("fenced: a newer owner holds this prefix")]
    Fenced,
    /// A transient failure: retry; nothing was written.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// A write did not complete in time: it keeps its offsets and may still
    /// become durable (retry; an idempotent retry is deduplicated).
    #[error("the write did not complete in time and may still land")]
    AckTimeout,
    /// The WAL holds bytes that do not decode (outside the torn tail).
    #[error("corrupt wal segment {segment}: {reason}")]
    Corrupt {
        /// The segment file or object.
        segment: String,
        /// What is wrong.
        reason: String,
    },
    /// A range rewrite whose batches do not fit the range (a caller's bug).
    #[error("invalid range rewrite: {0}")]
    InvalidRewrite(String),
    /// The stream was deleted.
    #[error("stream {0} is closed")]
    Closed(u64),
    /// This process released the stream or lost it to another owner.
    #[error("stream {0} is not owned by this process")]
    NotOwner(u64),
    /// A takeover asked for an epoch that is not above the stream's current one.
    #[error("stream {stream}: epoch {asked} is not above the current epoch {current}")]
    StaleEpoch {
        /// The stream.
        stream: u64,
        /// The epoch asked for.
        asked: i32,
        /// The stream's current epoch.
        current: i32,
    },
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

impl StreamError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamError::Fenced => ErrorKind::Fenced,
            StreamError::Meta(m) => match m.kind() {
                strata_meta::ErrorKind::Fenced => ErrorKind::Fenced,
                strata_meta::ErrorKind::Transient => ErrorKind::Transient,
                strata_meta::ErrorKind::Unknown => ErrorKind::Unknown,
                strata_meta::ErrorKind::Corrupt => ErrorKind::Corrupt,
            },
            StreamError::Unavailable(_) | StreamError::AckTimeout | StreamError::ObjectStore(_) => {
                ErrorKind::Transient
            }
            StreamError::Io(_) | StreamError::Failed => ErrorKind::Transient,
            StreamError::Corrupt { .. } | StreamError::ShortObject(_) | StreamError::BadRecord { .. } => {
                ErrorKind::Corrupt
            }
            StreamError::Closed(_) | StreamError::OutOfRange { .. } | StreamError::InvalidRewrite(_) => {
                ErrorKind::Request
            }
            StreamError::NotOwner(_) | StreamError::StaleEpoch { .. } => ErrorKind::NotOwner,
        }
    }
}
