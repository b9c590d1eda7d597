//! The records of `__transaction_state`, in Kafka's schemas
//! (`TransactionLogKey` v0 and `TransactionLogValue` v0/v1;
//! `docs/transactions-kafka.md` §1), so that the internal topic reads as
//! Kafka's does. Strata writes v1, as Kafka 4.1 does with
//! `transaction.version` >= 1, and reads both.

use bytes::{BufMut, Bytes, BytesMut};

use crate::internal_records::{Reader, RecordError, put_compact_str, put_str, put_uvarint};

/// The record type of every key (`TransactionLogKey`'s `apiKey`).
const KEY_TYPE: i16 = 0;
/// The value version written.
const VALUE_VERSION: i16 = 1;

/// A transaction's state, with Kafka's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    /// The state with Kafka's id.
    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions report.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// One transactional id's record (`TransactionLogValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    /// Tag 0 (-1: none).
    pub previous_producer_id: i64,
    /// Tag 1 (-1: none): the id an epoch overflow rotates to.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// Tag 3 (-1: none).
    pub next_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions by topic, in the order written (None: written as null,
    /// which Kafka does in Empty).
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    /// -1 when no transaction is open.
    pub start_ms: i64,
    /// Tag 2: the transaction version of the request behind the change.
    pub client_transaction_version: i16,
}

/// Encodes a key.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_TYPE);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

/// Decodes a key: `Ok(None)` for a record type Strata does not know.
pub fn decode_key(key: Bytes) -> Result<Option<String>, RecordError> {
    let mut r = Reader(key);
    if r.i16("key type")? != KEY_TYPE {
        return Ok(None);
    }
    r.str(false, "transactional id").map(Some)
}

fn put_tag(buf: &mut BytesMut, tag: u64, value: &[u8]) {
    put_uvarint(buf, tag);
    put_uvarint(buf, value.len() as u64);
    buf.put_slice(value);
}

/// Encodes a value (v1: flexible, tagged fields written when not default).
pub fn encode_value(v: &TxnValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(v.producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i32(v.timeout_ms);
    buf.put_i8(v.state as i8);
    if v.state == TxnState::Empty {
        put_uvarint(&mut buf, 0);
    } else {
        put_uvarint(&mut buf, v.partitions.len() as u64 + 1);
        for (topic, parts) in &v.partitions {
            put_compact_str(&mut buf, Some(topic));
            put_uvarint(&mut buf, parts.len() as u64 + 1);
            for p in parts {
                buf.put_i32(*p);
            }
            put_uvarint(&mut buf, 0);
        }
    }
    buf.put_i64(v.last_update_ms);
    buf.put_i64(v.start_ms);
    let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
    if v.previous_producer_id != -1 {
        tags.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
    }
    if v.next_producer_id != -1 {
        tags.push((1, v.next_producer_id.to_be_bytes().to_vec()));
    }
    if v.client_transaction_version != 0 {
        tags.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
    }
    if v.next_producer_epoch != -1 {
        tags.push((3, v.next_producer_epoch.to_be_bytes().to_vec()));
    }
    put_uvarint(&mut buf, tags.len() as u64);
    for (tag, value) in &tags {
        put_tag(&mut buf, *tag, value);
    }
    buf.freeze()
}

/// Decodes a value, v0 or v1.
pub fn decode_value(value: Bytes) -> Result<TxnValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("value version")?;
    if !(0..=1).contains(&version) {
        return Err(RecordError(format!("transaction value version {version}")));
    }
    let flexible = version >= 1;
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("timeout")?;
    let state_id = r.i8("state")?;
    let state =
        TxnState::from_id(state_id).ok_or_else(|| RecordError(format!("transaction state {state_id}")))?;
    let mut partitions = Vec::new();
    let count =
        if flexible { r.unsigned_varint("partitions")? as i64 - 1 } else { i64::from(r.i32("partitions")?) };
    if count > r.remaining() as i64 {
        return Err(RecordError("bad count at partitions".into()));
    }
    for _ in 0..count.max(0) {
        let topic = r.str(flexible, "topic")?;
        let n = r.array_len(flexible, "partition ids")?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(r.i32("partition id")?);
        }
        if flexible {
            r.skip_tags("partition tags")?;
        }
        partitions.push((topic, ids));
    }
    let last_update_ms = r.i64("last update")?;
    let start_ms = r.i64("start")?;
    let mut v = TxnValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        next_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let n = r.unsigned_varint("tags")?;
        for _ in 0..n {
            let tag = r.unsigned_varint("tag")?;
            let len = r.unsigned_varint("tag size")? as usize;
            let mut f = Reader(r.raw(len, "tag")?);
            match tag {
                0 => v.previous_producer_id = f.i64("previous producer id")?,
                1 => v.next_producer_id = f.i64("next producer id")?,
                2 => v.client_transaction_version = f.i16("client transaction version")?,
                3 => v.next_producer_epoch = f.i16("next producer epoch")?,
                _ => {}
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(state: TxnState) -> TxnValue {
        TxnValue {
            producer_id: 7,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            next_producer_epoch: -1,
            timeout_ms: 60_000,
            state,
            partitions: if state == TxnState::Empty {
                Vec::new()
            } else {
                vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])]
            },
            last_update_ms: 1_700_000_000_000,
            start_ms: if state == TxnState::Empty { -1 } else { 1_699_999_999_000 },
            client_transaction_version: 0,
        }
    }

    #[test]
    fn records_round_trip() {
        assert_eq!(decode_key(encode_key("tx-1")).expect("key"), Some("tx-1".to_string()));
        for state in [TxnState::Empty, TxnState::Ongoing, TxnState::PrepareCommit, TxnState::CompleteAbort] {
            let v = value(state);
            assert_eq!(decode_value(encode_value(&v)).expect("value"), v);
        }
        let mut tagged = value(TxnState::Ongoing);
        tagged.client_transaction_version = 2;
        tagged.next_producer_id = 8;
        tagged.next_producer_epoch = 0;
        assert_eq!(decode_value(encode_value(&tagged)).expect("tagged"), tagged);
    }

    #[test]
    fn kafkas_v0_layout_reads() {
        // TransactionLogValue v0 as Kafka writes it with transaction.version 0.
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        buf.put_i64(7);
        buf.put_i16(3);
        buf.put_i32(60_000);
        buf.put_i8(1);
        buf.put_i32(1);
        put_str(&mut buf, "a");
        buf.put_i32(2);
        buf.put_i32(0);
        buf.put_i32(2);
        buf.put_i64(10);
        buf.put_i64(5);
        let v = decode_value(buf.freeze()).expect("v0");
        assert_eq!((v.producer_id, v.producer_epoch, v.state), (7, 3, TxnState::Ongoing));
        assert_eq!(v.partitions, vec![("a".to_string(), vec![0, 2])]);
        assert_eq!((v.last_update_ms, v.start_ms), (10, 5));
    }

    #[test]
    fn bad_bytes_are_errors() {
        let good = encode_value(&value(TxnState::Ongoing));
        for n in 0..good.len() {
            assert!(decode_value(good.slice(..n)).is_err(), "truncated at {n}");
        }
        let mut bad_state = good.to_vec();
        bad_state[16] = 9;
        assert!(decode_value(Bytes::from(bad_state)).is_err());
        assert_eq!(decode_key(Bytes::from_static(&[0, 1, 0, 0])).expect("another type"), None);
    }
}
