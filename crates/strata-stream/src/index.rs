//! The stream layer's records in the metadata store:
//!
//! | key | value |
//! |---|---|
//! | `s/<stream>/m` | [`StreamMeta`]: start offset, leader-epoch history and the pointer to the stream's index manifest |
//! | `s/<stream>/r/<start offset>` | [`RangeEntry`]: one object holding `[start, end)` of the stream (an *inline* range) |
//! | `s-deleted/<stream>` | tombstone of a deleted stream (its WAL records are ignored) |
//! | `<wal prefix>/checkpoint` | [`Checkpoint`]: every record of that WAL before it is in objects (`wal/checkpoint` for the default prefix) |
//! | `<wal prefix>/barrier/<epoch>` | an object WAL's takeover barrier |
//! | `gc/<object>` | [`GcEntry`]: an unreferenced object, deletable after its deadline |
//!
//! A stream's index is its inline ranges plus, once they grew past
//! `index_inline_ranges`, the ranges folded into its index manifest: an
//! immutable object `index/<stream>/<uuid>.json` ([`IndexManifest`]) named by
//! [`StreamMeta::index`] (see `manifest.rs` and docs/ownership.md).
//!
//! Stream ids and offsets are zero-padded to 20 digits so that key order is
//! numeric order. Values are JSON.

use serde::{Deserialize, Serialize};

use crate::StreamId;

/// Facts about a stream that outlive the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// First readable offset.
    pub start: i64,
    /// `(epoch, first offset written in it)`, ascending.
    pub epochs: Vec<(i32, i64)>,
    /// The stream's index manifest (its folded ranges), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexRef>,
}

/// Where a stream's folded ranges are: an immutable object in the object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    /// Object name of the [`IndexManifest`].
    pub object: String,
    /// How many ranges it holds.
    pub ranges: u32,
    /// The end of its last range (the stream's indexed end, without inline ranges).
    pub end: i64,
}

/// The body of an index manifest object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexManifest {
    /// The stream it indexes.
    pub stream: StreamId,
    /// Its ranges, in offset order.
    pub ranges: Vec<RangeEntry>,
}

/// One object's part of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeEntry {
    /// Object name under the object store root.
    pub object: String,
    /// First offset in the object for this stream.
    pub start: i64,
    /// Offset after the last one.
    pub end: i64,
    /// Largest timestamp of the range.
    pub max_ts: i64,
    /// Bytes of batches of this stream in the object.
    pub bytes: u64,
    /// Size of the whole object.
    pub object_size: u64,
    /// Where this stream's batch index sits in the object.
    pub index_pos: u64,
    /// Length of that index.
    pub index_len: u32,
}

/// The WAL position up to which everything is in objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Segment id.
    pub segment: u64,
    /// Byte position in the segment.
    pub position: u64,
}

/// An object waiting for deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcEntry {
    /// Not before this time (ms since the epoch).
    pub deadline_ms: i64,
}

/// Key of a stream's meta record.
pub fn meta_key(id: StreamId) -> String {
    format!("s/{id:020}/m")
}

/// Prefix of a stream's range records.
pub fn range_prefix(id: StreamId) -> String {
    format!("s/{id:020}/r/")
}

/// Key of one range record.
pub fn range_key(id: StreamId, start: i64) -> String {
    format!("s/{id:020}/r/{start:020}")
}

/// Name of a new index manifest object of a stream.
pub fn manifest_object(id: StreamId) -> String {
    format!("{MANIFEST_DIR}/{id:020}/{}.json", uuid::Uuid::new_v4().simple())
}

/// Where index manifest objects live in the bucket.
pub const MANIFEST_DIR: &str = "index";

/// Key of a deleted stream's tombstone.
pub fn deleted_key(id: StreamId) -> String {
    format!("s-deleted/{id:020}")
}

/// Prefix of tombstones.
pub const DELETED_PREFIX: &str = "s-deleted/";
/// Prefix of every stream record.
pub const STREAM_PREFIX: &str = "s/";
/// Prefix of GC entries.
pub const GC_PREFIX: &str = "gc/";

/// Parses the stream id out of a `s/<id>/...` or `s-deleted/<id>` key.
pub fn stream_of(key: &str) -> Option<StreamId> {
    let rest = key.strip_prefix(STREAM_PREFIX).or_else(|| key.strip_prefix(DELETED_PREFIX))?;
    rest.split('/').next()?.parse().ok()
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    // Plain structs of numbers and strings always serialize.
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
