//! The WAL record encoding. Each record is
//!
//! ```text
//! body_len u32 | crc32c(body) u32 | body
//! body = stream_id u64 | base_offset i64 | record_count u32 | max_timestamp i64 |
//!        leader_epoch i32 | payload
//! ```
//!
//! All integers are big-endian. A record whose length runs past the end of the
//! file or whose checksum fails marks the torn tail of the last segment.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::AppendMeta;

/// Bytes before the payload inside a record (header + body fields).
pub const RECORD_OVERHEAD: usize = 8 + BODY_FIXED;
const BODY_FIXED: usize = 8 + 8 + 4 + 8 + 4;

/// A decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    /// The stream the batch belongs to.
    pub stream_id: u64,
    /// The first offset of the batch.
    pub base_offset: i64,
    /// The facts stored with the batch.
    pub meta: AppendMeta,
    /// The batch bytes.
    pub payload: Bytes,
}

/// Appends the encoding of one record to `buf`; returns the payload's position
/// inside the record (relative to the record start).
pub fn encode(
    buf: &mut BytesMut,
    stream_id: u64,
    base_offset: i64,
    meta: &AppendMeta,
    payload: &[u8],
) -> usize {
    let start = buf.len();
    buf.put_u32((BODY_FIXED + payload.len()) as u32);
    buf.put_u32(0); // crc placeholder
    buf.put_u64(stream_id);
    buf.put_i64(base_offset);
    buf.put_u32(meta.record_count);
    buf.put_i64(meta.max_timestamp);
    buf.put_i32(meta.leader_epoch);
    buf.put_slice(payload);
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    RECORD_OVERHEAD
}

/// The outcome of decoding at one position.
pub enum Decoded {
    /// A whole, valid record and its encoded length.
    Record(WalRecord, usize),
    /// The data ends (cleanly or torn) here.
    End,
}

/// Decodes the record at the start of `data`.
pub fn decode(data: &Bytes) -> Decoded {
    if data.len() < 8 {
        return Decoded::End;
    }
    let mut head = &data[..8];
    let body_len = head.get_u32() as usize;
    let crc = head.get_u32();
    if body_len < BODY_FIXED || data.len() - 8 < body_len {
        return Decoded::End;
    }
    let body = data.slice(8..8 + body_len);
    if crc32c::crc32c(&body) != crc {
        return Decoded::End;
    }
    let mut b = &body[..BODY_FIXED];
    let stream_id = b.get_u64();
    let base_offset = b.get_i64();
    let record_count = b.get_u32();
    let max_timestamp = b.get_i64();
    let leader_epoch = b.get_i32();
    let record = WalRecord {
        stream_id,
        base_offset,
        meta: AppendMeta { record_count, max_timestamp, leader_epoch },
        payload: body.slice(BODY_FIXED..),
    };
    Decoded::Record(record, 8 + body_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let meta = AppendMeta { record_count: 3, max_timestamp: 42, leader_epoch: 1 };
        let mut buf = BytesMut::new();
        encode(&mut buf, 9, 100, &meta, b"hello");
        let data = buf.freeze();
        match decode(&data) {
            Decoded::Record(r, len) => {
                assert_eq!(len, data.len());
                assert_eq!(
                    (r.stream_id, r.base_offset, r.meta, &r.payload[..]),
                    (9, 100, meta, &b"hello"[..])
                );
            }
            Decoded::End => panic!("expected a record"),
        }
        assert!(matches!(decode(&data.slice(..data.len() - 1)), Decoded::End));
        let mut flipped = data.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(decode(&Bytes::from(flipped)), Decoded::End));
    }
}
