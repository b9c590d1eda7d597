//! Encoding helpers for the records of Kafka's internal topics
//! (`__consumer_offsets`, `__transaction_state`): Kafka's storage schemas, in
//! its classic and flexible (compact, tagged) encodings. No crate carries
//! these schemas (they are Kafka's storage format, not its wire protocol).
//! Decoding is bounds-checked: the bytes come from storage, and a bad record
//! is an error, never a panic.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};
use strata_stream::{Completion, Stream};

use crate::BrokerError;
use crate::broker::now_ms;

/// A record of an internal topic: its key and value (None: a tombstone).
pub(crate) type KeyValue = (Bytes, Option<Bytes>);

/// Appends records to an internal topic's stream as one uncompressed batch
/// without a producer, as Kafka's coordinators write them. Returns the base
/// offset and the append's completion.
pub(crate) fn append(stream: &Arc<Stream>, records: Vec<KeyValue>) -> Result<(i64, Completion), BrokerError> {
    append_as(stream, records, None)
}

/// Like [`append`], as a transactional batch of `producer` (id, epoch) when
/// given: transactional offset commits.
pub(crate) fn append_as(
    stream: &Arc<Stream>,
    records: Vec<KeyValue>,
    producer: Option<(i64, i16)>,
) -> Result<(i64, Completion), BrokerError> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let mut batch: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            delete_horizon: false,
            transactional: producer.is_some(),
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let count = batch.len() as u32;
    let data = crate::records::encode_one_batch(&mut batch, Compression::None)?;
    let build = |base: i64, epoch: i32| crate::records::stamp(&data, base, epoch, None);
    let (appended, completion) = stream.append_tracked(count, now, build)?;
    Ok((appended.base_offset, completion))
}

/// What a replay of an internal topic finds, in offset order.
pub(crate) enum Entry {
    /// A keyed record; `producer` is set for a transactional batch's.
    Record { key: Bytes, value: Option<Bytes>, offset: i64, producer: Option<i64> },
    /// A transaction marker of `producer`.
    Marker { producer: i64, commit: bool },
}

/// Reads an internal topic's stream from its start to its end and calls `f`
/// with every keyed record and every transaction marker, in offset order.
/// Batches that do not decode are skipped with a warning.
pub(crate) async fn replay(stream: &Arc<Stream>, mut f: impl FnMut(Entry)) -> Result<(), BrokerError> {
    let (mut offset, end) = stream.offsets();
    while offset < end {
        let batches = stream.read(offset, 4 << 20).await?;
        let Some(last) = batches.last() else { break };
        let next = last.info.end_offset();
        for b in batches {
            let Some(header) = crate::records::parse_header(&b.data) else { continue };
            if header.is_control() {
                if let Some(kind) = crate::records::control_type(&b.data) {
                    f(Entry::Marker { producer: header.producer_id, commit: kind == 1 });
                }
                continue;
            }
            let producer = header.is_transactional().then_some(header.producer_id);
            let mut data = b.data.clone();
            let set = match RecordBatchDecoder::decode(&mut data) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(stream = stream.id(), offset = b.info.base_offset, error = %e, "unreadable batch skipped");
                    continue;
                }
            };
            for r in set.records {
                if let Some(key) = r.key {
                    f(Entry::Record { key, value: r.value, offset: r.offset, producer });
                }
            }
        }
        offset = next.max(offset + 1);
    }
    Ok(())
}

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable internal record: {0}")]
pub struct RecordError(pub String);

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

pub(crate) fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

pub(crate) fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A compact (flexible-version) nullable string.
pub(crate) fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
        None => put_uvarint(buf, 0),
    }
}

pub(crate) fn put_compact_bytes(buf: &mut BytesMut, b: &[u8]) {
    put_uvarint(buf, b.len() as u64 + 1);
    buf.put_slice(b);
}

/// A bounds-checked reader.
pub(crate) struct Reader(pub(crate) Bytes);

impl Reader {
    pub(crate) fn need(&self, n: usize, what: &str) -> Result<(), RecordError> {
        if self.0.remaining() < n { Err(RecordError(format!("truncated at {what}"))) } else { Ok(()) }
    }
    /// What is left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.0.remaining()
    }
    pub(crate) fn i8(&mut self, what: &str) -> Result<i8, RecordError> {
        self.need(1, what)?;
        Ok(self.0.get_i8())
    }
    pub(crate) fn i16(&mut self, what: &str) -> Result<i16, RecordError> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32, RecordError> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, RecordError> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }
    pub(crate) fn unsigned_varint(&mut self, what: &str) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            self.need(1, what)?;
            let b = self.0.get_u8();
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError(format!("bad varint at {what}")))
    }
    pub(crate) fn raw(&mut self, n: usize, what: &str) -> Result<Bytes, RecordError> {
        self.need(n, what)?;
        Ok(self.0.split_to(n))
    }
    pub(crate) fn text(&mut self, n: usize, what: &str) -> Result<String, RecordError> {
        let b = self.raw(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| RecordError(format!("{what} is not UTF-8")))
    }
    /// A string, compact (flexible versions) or not.
    pub(crate) fn nullable_str(&mut self, compact: bool, what: &str) -> Result<Option<String>, RecordError> {
        if compact {
            let n = self.unsigned_varint(what)?;
            if n == 0 {
                return Ok(None);
            }
            return self.text((n - 1) as usize, what).map(Some);
        }
        let n = self.i16(what)?;
        if n < 0 {
            return Ok(None);
        }
        self.text(n as usize, what).map(Some)
    }
    pub(crate) fn str(&mut self, compact: bool, what: &str) -> Result<String, RecordError> {
        self.nullable_str(compact, what)?.ok_or_else(|| RecordError(format!("{what} is null")))
    }
    pub(crate) fn bytes(&mut self, compact: bool, what: &str) -> Result<Bytes, RecordError> {
        let n = if compact { (self.unsigned_varint(what)? as i64) - 1 } else { i64::from(self.i32(what)?) };
        if n < 0 {
            return Ok(Bytes::new());
        }
        self.raw(n as usize, what)
    }
    pub(crate) fn array_len(&mut self, compact: bool, what: &str) -> Result<usize, RecordError> {
        let n = if compact { (self.unsigned_varint(what)? as i64) - 1 } else { i64::from(self.i32(what)?) };
        // Every element takes at least one byte: a count beyond that is bad.
        if n < 0 || n as usize > self.0.remaining() {
            return Err(RecordError(format!("bad count at {what}")));
        }
        Ok(n as usize)
    }
    /// Skips a flexible version's tagged fields.
    pub(crate) fn skip_tags(&mut self, what: &str) -> Result<(), RecordError> {
        let n = self.unsigned_varint(what)?;
        for _ in 0..n {
            self.unsigned_varint(what)?;
            let len = self.unsigned_varint(what)? as usize;
            self.raw(len, what)?;
        }
        Ok(())
    }
}
