use thiserror::Error;

/// Errors of the metadata store.
#[derive(Debug, Error)]
pub enum MetaError {
    /// Another process has written a newer manifest on the same prefix; this
    /// process must stop acknowledging anything.
    #[error("fenced: another process owns metadata prefix {0}")]
    Fenced(String),
    /// The backing object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A persisted manifest could not be decoded.
    #[error("corrupt manifest {path}: {reason}")]
    Corrupt {
        /// Where the manifest lives.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}
