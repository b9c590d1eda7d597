use thiserror::Error;

/// Why a connection was closed or the listener failed.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Socket I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's length prefix is negative, too small or over the limit.
    #[error("invalid frame length {len} (limit {limit})")]
    FrameLength {
        /// The length sent.
        len: i64,
        /// `socket.request.max.bytes`.
        limit: usize,
    },
    /// An API key or version that is not served.
    #[error("unsupported api key {key} version {version}")]
    Unsupported {
        /// The key.
        key: i16,
        /// The version.
        version: i16,
    },
    /// The request bytes do not decode.
    #[error("malformed request (api key {key} v{version}): {reason}")]
    Malformed {
        /// The key.
        key: i16,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        reason: String,
    },
    /// A response could not be encoded (a bug: logged, connection closed).
    #[error("cannot encode response: {0}")]
    Encode(String),
}
