//! The data object format: batches of many streams in one object, each stream's
//! batches contiguous, followed by one batch index per stream and a directory.
//! All integers big-endian.
//!
//! ```text
//! "STRO" | version u8 = 1
//! data:     for each stream, its batches back to back (the bytes as appended)
//! indexes:  for each stream: count u32 | count × (base_offset i64 | record_count u32 |
//!           max_timestamp i64 | leader_epoch i32 | position u64 | size u32) | crc32c u32
//! directory: stream_count u32 | stream_count × (stream_id u64 | index_pos u64 | index_len u32)
//! footer:   directory_pos u64 | version u8 | "STRO"
//! ```
//!
//! The metadata index records, per stream, where its batch index is, so a reader
//! fetches exactly that index and then exactly the byte ranges it needs.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{AppendMeta, BatchInfo, StreamId};

const MAGIC: &[u8; 4] = b"STRO";
/// The object format version.
pub const VERSION: u8 = 1;
const INDEX_ENTRY: usize = 8 + 4 + 8 + 4 + 8 + 4;

/// A batch inside an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectBatch {
    /// Offsets and facts.
    pub info: BatchInfo,
    /// Absolute byte position in the object.
    pub position: u64,
}

/// One stream's part of a built object.
#[derive(Debug, Clone)]
pub struct StreamSection {
    /// The stream.
    pub stream: StreamId,
    /// First offset.
    pub start: i64,
    /// Offset after the last.
    pub end: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Bytes of batches.
    pub bytes: u64,
    /// Position of the stream's batch index.
    pub index_pos: u64,
    /// Length of that index.
    pub index_len: u32,
}

/// Builds an object from per-stream batch lists (each in offset order).
pub fn build(streams: &[(StreamId, Vec<(BatchInfo, Bytes)>)]) -> (Bytes, Vec<StreamSection>) {
    let total: usize = streams.iter().flat_map(|(_, b)| b.iter().map(|(_, d)| d.len())).sum();
    let mut buf = BytesMut::with_capacity(total + 64 + streams.len() * 64);
    buf.put_slice(MAGIC);
    buf.put_u8(VERSION);
    let mut positions: Vec<Vec<u64>> = Vec::with_capacity(streams.len());
    for (_, batches) in streams {
        let mut pos = Vec::with_capacity(batches.len());
        for (_, data) in batches {
            pos.push(buf.len() as u64);
            buf.put_slice(data);
        }
        positions.push(pos);
    }
    let mut sections = Vec::with_capacity(streams.len());
    for ((stream, batches), pos) in streams.iter().zip(&positions) {
        let index_pos = buf.len() as u64;
        buf.put_u32(batches.len() as u32);
        for ((info, data), p) in batches.iter().zip(pos) {
            buf.put_i64(info.base_offset);
            buf.put_u32(info.meta.record_count);
            buf.put_i64(info.meta.max_timestamp);
            buf.put_i32(info.meta.leader_epoch);
            buf.put_u64(*p);
            buf.put_u32(data.len() as u32);
        }
        let crc = crc32c::crc32c(&buf[index_pos as usize..]);
        buf.put_u32(crc);
        let first = batches.first().map(|(i, _)| i.base_offset).unwrap_or(0);
        let last = batches.last().map(|(i, _)| i.end_offset()).unwrap_or(first);
        sections.push(StreamSection {
            stream: *stream,
            start: first,
            end: last,
            max_ts: batches.iter().map(|(i, _)| i.meta.max_timestamp).max().unwrap_or(-1),
            bytes: batches.iter().map(|(_, d)| d.len() as u64).sum(),
            index_pos,
            index_len: (buf.len() as u64 - index_pos) as u32,
        });
    }
    let dir_pos = buf.len() as u64;
    buf.put_u32(sections.len() as u32);
    for s in &sections {
        buf.put_u64(s.stream);
        buf.put_u64(s.index_pos);
        buf.put_u32(s.index_len);
    }
    buf.put_u64(dir_pos);
    buf.put_u8(VERSION);
    buf.put_slice(MAGIC);
    (buf.freeze(), sections)
}

/// Parses one stream's batch index.
pub fn parse_index(mut data: Bytes) -> Result<Vec<ObjectBatch>, String> {
    if data.len() < 8 {
        return Err("batch index too short".into());
    }
    let body_len = data.len() - 4;
    let crc = (&data[body_len..]).get_u32();
    if crc32c::crc32c(&data[..body_len]) != crc {
        return Err("batch index checksum mismatch".into());
    }
    data.truncate(body_len);
    let count = data.get_u32() as usize;
    if data.remaining() != count * INDEX_ENTRY {
        return Err(format!("batch index of {count} entries has {} bytes", data.remaining()));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let base_offset = data.get_i64();
        let record_count = data.get_u32();
        let max_timestamp = data.get_i64();
        let leader_epoch = data.get_i32();
        let position = data.get_u64();
        let size = data.get_u32();
        out.push(ObjectBatch {
            info: BatchInfo {
                base_offset,
                meta: AppendMeta { record_count, max_timestamp, leader_epoch },
                size,
            },
            position,
        });
    }
    Ok(out)
}

/// Checks an object's framing (magic and version at both ends).
pub fn check_framing(data: &[u8]) -> Result<(), String> {
    if data.len() < 5 + 13 || &data[..4] != MAGIC || &data[data.len() - 4..] != MAGIC {
        return Err("not a strata data object".into());
    }
    if data[4] != VERSION || data[data.len() - 5] != VERSION {
        return Err(format!("unsupported object version {}", data[4]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(base: i64, n: u32, ts: i64, size: usize) -> BatchInfo {
        BatchInfo {
            base_offset: base,
            meta: AppendMeta { record_count: n, max_timestamp: ts, leader_epoch: 2 },
            size: size as u32,
        }
    }

    #[test]
    fn build_and_parse() {
        let a = vec![
            (info(0, 2, 10, 3), Bytes::from_static(b"abc")),
            (info(2, 1, 5, 2), Bytes::from_static(b"de")),
        ];
        let b = vec![(info(7, 3, 99, 4), Bytes::from_static(b"wxyz"))];
        let (obj, sections) = build(&[(1, a), (9, b)]);
        check_framing(&obj).expect("framing");
        assert_eq!(
            (sections[0].start, sections[0].end, sections[0].max_ts, sections[0].bytes),
            (0, 3, 10, 5)
        );
        assert_eq!((sections[1].start, sections[1].end), (7, 10));
        let s = &sections[0];
        let idx =
            parse_index(obj.slice(s.index_pos as usize..(s.index_pos + u64::from(s.index_len)) as usize))
                .expect("index");
        assert_eq!(idx.len(), 2);
        let second = idx[1];
        let at = second.position as usize;
        assert_eq!(&obj[at..at + second.info.size as usize], b"de");
        let mut bad = obj.to_vec();
        bad[s.index_pos as usize + 5] ^= 1;
        let bad = Bytes::from(bad);
        assert!(
            parse_index(bad.slice(s.index_pos as usize..(s.index_pos + u64::from(s.index_len)) as usize))
                .is_err()
        );
    }
}
