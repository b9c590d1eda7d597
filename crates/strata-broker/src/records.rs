//! Record batches (magic v2) as bytes: validation of what a producer sent and
//! the in-place patches the broker makes before storing a batch. The batch stays
//! the bytes the client sent; only fields outside the CRC (base offset, partition
//! leader epoch) are rewritten, except for LogAppendTime topics where the
//! timestamp type and max timestamp change and the CRC-32C is recomputed.
//!
//! Header layout (big-endian): baseOffset i64 @0, batchLength i32 @8,
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (over bytes 21..),
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordCount i32 @57, records @61.

use bytes::{Bytes, BytesMut};

use crate::BrokerError;

/// Size of the v2 batch header.
pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The header facts of a validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// The base offset as stored (a compacted batch's first surviving record).
    pub base_offset: i64,
    /// Number of records (offsets) in the batch.
    pub record_count: i32,
    /// The batch's max timestamp as sent.
    pub max_timestamp: i64,
    /// The first record's timestamp as sent.
    pub base_timestamp: i64,
    /// Producer id (-1 when not idempotent).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// First sequence number.
    pub base_sequence: i32,
    /// Attribute bits.
    pub attributes: i16,
}

impl BatchHeader {
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    /// Whether the batch is a control batch.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Parses the header of the batch in `data` without checking it.
pub fn parse_header(data: &[u8]) -> Option<BatchHeader> {
    if data.len() < HEADER_LEN {
        return None;
    }
    Some(BatchHeader {
        base_offset: i64_at(data, 0),
        attributes: i16_at(data, 21),
        base_timestamp: i64_at(data, 27),
        max_timestamp: i64_at(data, 35),
        producer_id: i64_at(data, 43),
        producer_epoch: i16_at(data, 51),
        base_sequence: i32_at(data, 53),
        record_count: i32_at(data, 57),
    })
}

/// Checks that `data` holds exactly one well-formed v2 batch: sizes, magic and
/// CRC-32C, and a record count that matches the last offset delta.
pub fn validate(data: &[u8]) -> Result<BatchHeader, BrokerError> {
    if data.len() < HEADER_LEN {
        return Err(BrokerError::CorruptMessage(format!(
            "record batch of {} bytes is shorter than its {HEADER_LEN}-byte header",
            data.len()
        )));
    }
    let magic = data[16] as i8;
    if magic != 2 {
        return Err(BrokerError::UnsupportedMessageFormat(magic));
    }
    let batch_len = i32_at(data, 8);
    if batch_len < (HEADER_LEN - 12) as i32 || batch_len as usize + 12 > data.len() {
        return Err(BrokerError::CorruptMessage(format!(
            "batch length {batch_len} does not fit the {} bytes sent",
            data.len()
        )));
    }
    if batch_len as usize + 12 != data.len() {
        return Err(BrokerError::InvalidRecord(
            "a produce request must carry exactly one record batch per partition".into(),
        ));
    }
    let crc = u32::from_be_bytes([data[17], data[18], data[19], data[20]]);
    if crc32c::crc32c(&data[CRC_START..]) != crc {
        return Err(BrokerError::CorruptMessage("record batch CRC-32C mismatch".into()));
    }
    let header = parse_header(data)
        .ok_or_else(|| BrokerError::CorruptMessage("record batch header truncated".into()))?;
    let last_delta = i32_at(data, 23);
    if header.record_count <= 0 || last_delta != header.record_count - 1 {
        return Err(BrokerError::InvalidRecord(format!(
            "record count {} does not match last offset delta {last_delta}",
            header.record_count
        )));
    }
    if header.attributes & 0x07 == 0 {
        // Uncompressed: the records are right there; count them as Kafka does.
        let found = count_records(&data[HEADER_LEN..])?;
        if found != i64::from(header.record_count) {
            return Err(BrokerError::InvalidRecord(format!(
                "batch header says {} records but holds {found}",
                header.record_count
            )));
        }
    }
    Ok(header)
}

/// Reads a zigzag varint (Kafka's record-level integers).
fn varint(body: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = body.split_first()?;
        *body = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// The timestamps of an uncompressed batch's records, in order (`None` for a
/// compressed batch, or one that does not parse).
pub fn record_timestamps(data: &[u8]) -> Option<Vec<i64>> {
    let header = parse_header(data)?;
    if data.len() < HEADER_LEN || i16_at(data, 21) & 0x07 != 0 {
        return None;
    }
    let mut body = &data[HEADER_LEN..];
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = usize::try_from(varint(&mut body)?).ok()?;
        let record = body.get(..len)?;
        body = &body[len..];
        let mut fields = record.get(1..)?; // after the attributes byte
        out.push(header.base_timestamp.saturating_add(varint(&mut fields)?));
    }
    Some(out)
}

/// Counts the length-prefixed records of an uncompressed batch body.
fn count_records(mut body: &[u8]) -> Result<i64, BrokerError> {
    let mut count = 0i64;
    while !body.is_empty() {
        let len = varint(&mut body).ok_or_else(|| BrokerError::CorruptMessage("bad record length".into()))?;
        if len < 0 || len as usize > body.len() {
            return Err(BrokerError::CorruptMessage(format!("record of {len} bytes overruns its batch")));
        }
        body = &body[len as usize..];
        count += 1;
    }
    Ok(count)
}

/// Encodes `records` (in offset order, of one producer and one set of
/// attributes) as exactly one v2 batch. The crate's encoder starts a new
/// batch wherever offset minus sequence changes, so each record's sequence is
/// set from the first one's by its offset (-1 at the first record when there
/// is no producer, as Kafka writes it).
pub fn encode_one_batch(
    records: &mut [kafka_protocol::records::Record],
    compression: kafka_protocol::records::Compression,
) -> Result<Bytes, BrokerError> {
    let Some((first_offset, first_seq, producer)) =
        records.first().map(|r| (r.offset, r.sequence, r.producer_id))
    else {
        return Err(BrokerError::InvalidRecord("an empty batch".into()));
    };
    let base = if producer >= 0 { first_seq } else { -1 };
    for r in records.iter_mut() {
        r.sequence = base.wrapping_add((r.offset - first_offset) as i32);
    }
    let mut out = BytesMut::new();
    let options = kafka_protocol::records::RecordEncodeOptions { version: 2, compression };
    kafka_protocol::records::RecordBatchEncoder::encode(&mut out, records.iter(), &options)
        .map_err(|e| BrokerError::CorruptMessage(format!("cannot encode a batch: {e}")))?;
    let len = out.get(8..12).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize + 12);
    if len != Some(out.len()) {
        return Err(BrokerError::CorruptMessage("records did not encode as one batch".into()));
    }
    Ok(out.freeze())
}

/// A transaction marker's control batch (Kafka's `EndTransactionMarker`):
/// one record, key `(version 0, type 0 abort | 1 commit)`, value
/// `(version 0, coordinator epoch)`, attributes transactional | control.
pub fn encode_marker(
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now: i64,
) -> Result<Bytes, BrokerError> {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut records = [kafka_protocol::records::Record {
        delete_horizon: false,
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    }];
    let out = encode_one_batch(&mut records, kafka_protocol::records::Compression::None)?;
    // A marker has no sequence (the encoder numbers records from the first one's).
    let mut b = BytesMut::from(&out[..]);
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b.freeze())
}

/// The marker type of a control batch (0 abort, 1 commit; Kafka's other
/// control types are its own), read from its first record's key. `None`
/// when the batch is not a control batch or does not parse.
pub fn control_type(data: &[u8]) -> Option<i16> {
    let header = parse_header(data)?;
    if !header.is_control() || header.attributes & 0x07 != 0 {
        return None;
    }
    let mut at = HEADER_LEN;
    // A record: length, attributes, timestamp delta, offset delta, key length, key.
    let varint = |at: &mut usize| -> Option<i64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *data.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    };
    varint(&mut at)?;
    at += 1;
    varint(&mut at)?;
    varint(&mut at)?;
    let key_len = varint(&mut at)?;
    if key_len < 4 {
        return None;
    }
    let key = data.get(at..at + 4)?;
    Some(i16::from_be_bytes([key[2], key[3]]))
}

/// The indexes of the records without a key in the batch `data` (compressed
/// or not), for compacted topics.
pub fn keyless_records(data: &Bytes) -> Result<Vec<i32>, BrokerError> {
    let mut cursor = data.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut cursor)
        .map_err(|e| BrokerError::CorruptMessage(format!("record batch does not decode: {e}")))?;
    Ok(set.records.iter().enumerate().filter(|(_, r)| r.key.is_none()).map(|(i, _)| i as i32).collect())
}

/// Returns a copy of `data` with the base offset and partition leader epoch
/// stamped in (both outside the CRC). When `log_append_time` is set, the
/// timestamp type becomes LogAppendTime, the max timestamp becomes that time and
/// the CRC is recomputed.
pub fn stamp(data: &Bytes, base_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) -> Bytes {
    let mut b = BytesMut::from(&data[..]);
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let attrs = i16_at(&b, 21) | TIMESTAMP_TYPE_BIT;
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        b[35..43].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    b.freeze()
}

/// Whether the stored batch carries LogAppendTime.
pub fn is_log_append_time(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && i16_at(data, 21) & TIMESTAMP_TYPE_BIT != 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn markers_are_kafkas_control_batches() {
        for commit in [false, true] {
            let m = super::encode_marker(7, 3, commit, 5, 1000).expect("a marker");
            let h = super::validate(&m).expect("a valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.record_count), (7, 3, -1, 1));
            assert_eq!(super::control_type(&m), Some(i16::from(commit)));
        }
        let plain = super::encode_marker(7, 3, true, 5, 1000).expect("a marker");
        let mut data = bytes::BytesMut::from(&plain[..]);
        data[22] &= !0x20;
        assert_eq!(super::control_type(&data), None, "not a control batch");
    }

    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(n: i64) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                delete_horizon: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .expect("encode");
        buf.freeze()
    }

    #[test]
    fn record_timestamps_are_read_from_uncompressed_batches_only() {
        let b = batch(3);
        assert_eq!(record_timestamps(&b), Some(vec![1000, 1001, 1002]));
        // A compressed batch is not opened.
        let records = [Record {
            transactional: false,
            delete_horizon: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 5,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        }];
        let mut gz = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut gz,
            records.iter(),
            &RecordEncodeOptions { version: 2, compression: Compression::Gzip },
        )
        .expect("encode");
        assert_eq!(record_timestamps(&gz), None);
        // A record that overruns its batch: no answer rather than a wrong one.
        let mut cut = b.to_vec();
        cut.truncate(cut.len() - 3);
        assert_eq!(record_timestamps(&cut), None);
    }

    #[test]
    fn validate_stamp_and_decode() {
        let b = batch(3);
        let h = validate(&b).expect("valid");
        assert_eq!((h.record_count, h.max_timestamp), (3, 1002));
        let stamped = stamp(&b, 500, 7, None);
        validate(&stamped).expect("still valid: patched fields are outside the crc");
        let mut cursor = stamped.clone();
        let set = RecordBatchDecoder::decode(&mut cursor).expect("decode");
        assert_eq!(set.records[2].offset, 502);
        assert_eq!(set.records[0].partition_leader_epoch, 7);

        let lat = stamp(&b, 0, 0, Some(99_999));
        validate(&lat).expect("crc recomputed");
        assert!(is_log_append_time(&lat));
        let mut cursor = lat.clone();
        let set = RecordBatchDecoder::decode(&mut cursor).expect("decode");
        assert!(set.records.iter().all(|r| r.timestamp_type == TimestampType::LogAppend));
        assert_eq!(parse_header(&lat).map(|h| h.max_timestamp), Some(99_999));

        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(validate(&bad), Err(BrokerError::CorruptMessage(_))));
        assert!(validate(&b[..30]).is_err());
        let mut two = b.to_vec();
        two.extend_from_slice(&b);
        assert!(matches!(validate(&two), Err(BrokerError::InvalidRecord(_))));
        let mut magic1 = b.to_vec();
        magic1[16] = 1;
        assert!(matches!(validate(&magic1), Err(BrokerError::UnsupportedMessageFormat(1))));
    }
}
