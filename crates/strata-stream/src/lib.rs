//! Stream storage: append-only streams of opaque batches.
//!
//! A stream is identified by a number, holds batches at contiguous offsets (a
//! batch covers `record_count` offsets) and stores a few facts about each batch
//! that it does not interpret (record count, max timestamp, leader epoch). This
//! crate knows nothing of Kafka. A range of it may be rewritten keeping its
//! offsets ([`rewrite`]), which leaves gaps that reads skip.
//!
//! Writes go to a write-ahead log ([`wal`]) with group commit: many appends, from
//! any number of streams, share one write and one fsync, and an append's
//! durability future resolves only once its bytes are on disk. In the background
//! the WAL tail moves into multi-stream objects ([`object_format`]) whose ranges
//! are indexed in the metadata store ([`index`]); WAL segments are then deleted.
//! Reads come from the tail (memory, else the WAL file) or from objects through
//! a block cache. On open, the index is loaded and the WAL replayed from its
//! checkpoint.

mod block_cache;
pub mod compaction;
mod error;
mod failpoint;
mod gc;
pub mod index;
mod manifest;
pub mod object_format;
mod object_refs;
pub mod object_stores;
pub mod rewrite;
mod shared;
mod store;
mod stream;
pub mod wal;

pub use compaction::{CompactionConfig, CompactionOutcome};
pub use error::{ErrorKind, StreamError};
pub use gc::OrphanSweep;
pub use index::StreamMeta;
pub use rewrite::RangeContents;
pub use store::{FENCE_POLL, Handover, Stop, StoreStats, StreamStore, StreamStoreConfig, WalKind};
pub use stream::{AppendMeta, Appended, BatchInfo, Completion, ReadBatch, Stream, StreamId};
pub use wal::object::ObjectWalConfig;
