//! Stream storage: append-only streams of opaque batches.
//!
//! A stream is identified by a number, holds batches at contiguous offsets (a
//! batch covers `record_count` offsets) and stores a few facts about each batch
//! that it does not interpret (record count, max timestamp, leader epoch). This
//! crate knows nothing of Kafka.
//!
//! Writes go to a write-ahead log ([`wal`]) with group commit: many appends, from
//! any number of streams, share one write and one fsync, and an append's
//! durability future resolves only once its bytes are on disk. On open, the WAL is
//! replayed to rebuild every stream.

mod error;
mod store;
mod stream;
pub mod wal;

pub use error::StreamError;
pub use store::{StreamStore, StreamStoreConfig};
pub use stream::{AppendMeta, Appended, BatchInfo, ReadBatch, Stream, StreamId};
