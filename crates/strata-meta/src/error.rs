use thiserror::Error;

/// What a caller should do about a [`MetaError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another process owns the prefix: stop acknowledging and exit.
    Fenced,
    /// A transient failure: retry later; nothing was applied.
    Transient,
    /// A commit may or may not have been applied and the store could not
    /// tell: the in-memory view can no longer be trusted (restart and reload).
    Unknown,
    /// Stored bytes do not decode, or the request can never succeed.
    Corrupt,
}

/// Errors of the metadata store.
#[derive(Debug, Error)]
pub enum MetaError {
    /// A newer owner epoch exists on the same prefix; this process must stop
    /// acknowledging anything.
    #[error("fenced: another process owns metadata prefix {0}")]
    Fenced(String),
    /// The backing object store failed (nothing was applied).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The store cannot be reached or refused the request for now (nothing
    /// was applied).
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A commit was sent but its outcome could not be learnt in time.
    #[error("outcome of a metadata commit unknown: {0}")]
    OutcomeUnknown(String),
    /// A transaction has more operations than the store accepts.
    #[error("transaction of {ops} operations exceeds the store's limit of {max}")]
    TooLarge {
        /// Operations asked for.
        ops: usize,
        /// The store's limit.
        max: usize,
    },
    /// The lease expired, was revoked, or never existed.
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// A watch asked for changes the store no longer holds.
    #[error("revision {requested} is compacted (the store holds changes after {compacted})")]
    Compacted {
        /// The first revision asked for.
        requested: u64,
        /// The last revision no longer held.
        compacted: u64,
    },
    /// A persisted manifest could not be decoded.
    #[error("corrupt manifest {path}: {reason}")]
    Corrupt {
        /// Where the manifest lives.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix holds a layout this build does not read.
    #[error(
        "metadata prefix {prefix} holds format version {found}; this build reads and writes version {supported}"
    )]
    Format {
        /// The prefix.
        prefix: String,
        /// The version found.
        found: u8,
        /// The version this build supports.
        supported: u8,
    },
}

impl MetaError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetaError::Fenced(_) => ErrorKind::Fenced,
            MetaError::ObjectStore(_) | MetaError::Unavailable(_) => ErrorKind::Transient,
            MetaError::OutcomeUnknown(_) => ErrorKind::Unknown,
            // The caller re-reads and starts again (a new lease, a new watch).
            MetaError::LeaseNotFound(_) | MetaError::Compacted { .. } => ErrorKind::Transient,
            MetaError::TooLarge { .. } | MetaError::Corrupt { .. } | MetaError::Format { .. } => {
                ErrorKind::Corrupt
            }
        }
    }
}
