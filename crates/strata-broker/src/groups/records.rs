//! The records of `__consumer_offsets`, in Kafka's schemas (its
//! `OffsetCommitKey`/`OffsetCommitValue` and `GroupMetadataKey`/
//! `GroupMetadataValue`), so that the internal topic reads as Kafka's does.
//! No crate carries these schemas (they are Kafka's storage format, not its
//! wire protocol), so they are written here, with bounds-checked decoding: the
//! bytes come from storage and a bad record is an error, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Key version of an offset commit (`OffsetCommitKey`, versions 0 and 1).
const OFFSET_KEY_VERSION: i16 = 1;
/// Key version of group metadata (`GroupMetadataKey`).
const GROUP_KEY_VERSION: i16 = 2;
/// Value version written for offsets (`OffsetCommitValue` v3: leader epoch,
/// no expire timestamp).
const OFFSET_VALUE_VERSION: i16 = 3;
/// Value version written for group metadata (`GroupMetadataValue` v3: static
/// members).
const GROUP_VALUE_VERSION: i16 = 3;

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable __consumer_offsets record: {0}")]
pub struct RecordError(pub String);

/// What a record's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A committed offset of one partition.
    Offset { group: String, topic: String, partition: i32 },
    /// A group's metadata.
    Group { group: String },
}

/// A committed offset (`OffsetCommitValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The committed offset.
    pub offset: i64,
    /// The leader epoch of the record before it (-1: unknown).
    pub leader_epoch: i32,
    /// The client's metadata.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_timestamp: i64,
}

/// One member in `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The selected protocol's metadata.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata (`GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// Encodes a key.
pub fn encode_key(key: &Key) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        Key::Offset { group, topic, partition } => {
            buf.put_i16(OFFSET_KEY_VERSION);
            put_str(&mut buf, group);
            put_str(&mut buf, topic);
            buf.put_i32(*partition);
        }
        Key::Group { group } => {
            buf.put_i16(GROUP_KEY_VERSION);
            put_str(&mut buf, group);
        }
    }
    buf.freeze()
}

/// Encodes an offset value.
pub fn encode_offset(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_str(&mut buf, &v.metadata);
    buf.put_i64(v.commit_timestamp);
    buf.freeze()
}

/// Encodes a group value.
pub fn encode_group(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_str(&mut buf, v.protocol.as_deref());
    put_nullable_str(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_nullable_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// A bounds-checked reader.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, what: &str) -> Result<(), RecordError> {
        if self.0.remaining() < n { Err(RecordError(format!("truncated at {what}"))) } else { Ok(()) }
    }
    fn i16(&mut self, what: &str) -> Result<i16, RecordError> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self, what: &str) -> Result<i32, RecordError> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self, what: &str) -> Result<i64, RecordError> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }
    fn unsigned_varint(&mut self, what: &str) -> Result<u64, RecordError> {
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
    fn raw(&mut self, n: usize, what: &str) -> Result<Bytes, RecordError> {
        self.need(n, what)?;
        Ok(self.0.split_to(n))
    }
    fn text(&mut self, n: usize, what: &str) -> Result<String, RecordError> {
        let b = self.raw(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| RecordError(format!("{what} is not UTF-8")))
    }
    /// A string, compact (flexible versions) or not.
    fn nullable_str(&mut self, compact: bool, what: &str) -> Result<Option<String>, RecordError> {
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
    fn str(&mut self, compact: bool, what: &str) -> Result<String, RecordError> {
        self.nullable_str(compact, what)?.ok_or_else(|| RecordError(format!("{what} is null")))
    }
    fn bytes(&mut self, compact: bool, what: &str) -> Result<Bytes, RecordError> {
        let n = if compact { (self.unsigned_varint(what)? as i64) - 1 } else { i64::from(self.i32(what)?) };
        if n < 0 {
            return Ok(Bytes::new());
        }
        self.raw(n as usize, what)
    }
    fn array_len(&mut self, compact: bool, what: &str) -> Result<usize, RecordError> {
        let n = if compact { (self.unsigned_varint(what)? as i64) - 1 } else { i64::from(self.i32(what)?) };
        // Every element takes at least one byte: a count beyond that is bad.
        if n < 0 || n as usize > self.0.remaining() {
            return Err(RecordError(format!("bad count at {what}")));
        }
        Ok(n as usize)
    }
    /// Skips a flexible version's tagged fields.
    fn skip_tags(&mut self, what: &str) -> Result<(), RecordError> {
        let n = self.unsigned_varint(what)?;
        for _ in 0..n {
            self.unsigned_varint(what)?;
            let len = self.unsigned_varint(what)? as usize;
            self.raw(len, what)?;
        }
        Ok(())
    }
}

/// Decodes a key. `Ok(None)`: a key of a kind Strata does not keep here
/// (transaction or share-group records of later versions).
pub fn decode_key(key: Bytes) -> Result<Option<Key>, RecordError> {
    let mut r = Reader(key);
    let version = r.i16("key version")?;
    match version {
        0 | 1 => Ok(Some(Key::Offset {
            group: r.str(false, "group")?,
            topic: r.str(false, "topic")?,
            partition: r.i32("partition")?,
        })),
        2 => Ok(Some(Key::Group { group: r.str(false, "group")? })),
        _ => Ok(None),
    }
}

/// Decodes an offset value (versions 0 to 4).
pub fn decode_offset(value: Bytes) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError(format!("offset value version {version}")));
    }
    let compact = version >= 4;
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 { r.i32("leader epoch")? } else { -1 };
    let metadata = r.str(compact, "metadata")?;
    let commit_timestamp = r.i64("commit timestamp")?;
    if version == 1 {
        r.i64("expire timestamp")?;
    }
    Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
}

/// Decodes a group value (versions 0 to 4).
pub fn decode_group(value: Bytes) -> Result<GroupValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError(format!("group value version {version}")));
    }
    let c = version >= 4;
    let protocol_type = r.str(c, "protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_str(c, "protocol")?;
    let leader = r.nullable_str(c, "leader")?;
    let current_state_timestamp = if version >= 2 { r.i64("state timestamp")? } else { -1 };
    let n = r.array_len(c, "members")?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let member_id = r.str(c, "member id")?;
        let group_instance_id = if version >= 3 { r.nullable_str(c, "instance id")? } else { None };
        let client_id = r.str(c, "client id")?;
        let client_host = r.str(c, "client host")?;
        let rebalance_timeout_ms = if version >= 1 { r.i32("rebalance timeout")? } else { -1 };
        let session_timeout_ms = r.i32("session timeout")?;
        let subscription = r.bytes(c, "subscription")?;
        let assignment = r.bytes(c, "assignment")?;
        if c {
            r.skip_tags("member tags")?;
        }
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue { protocol_type, generation, protocol, leader, current_state_timestamp, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let k = Key::Offset { group: "g".into(), topic: "t".into(), partition: 3 };
        assert_eq!(decode_key(encode_key(&k)).expect("key"), Some(k));
        let k = Key::Group { group: "g".into() };
        assert_eq!(decode_key(encode_key(&k)).expect("key"), Some(k));
        let v = OffsetValue { offset: 42, leader_epoch: 2, metadata: "m".into(), commit_timestamp: 7 };
        assert_eq!(decode_offset(encode_offset(&v)).expect("offset"), v);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            current_state_timestamp: 9,
            members: vec![MemberValue {
                member_id: "a".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group(encode_group(&g)).expect("group"), g);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(decode_key(Bytes::from_static(&[0])).is_err());
        assert!(decode_offset(Bytes::from_static(&[0, 3, 0, 0])).is_err());
        // A member count far beyond the bytes that follow.
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_str(&mut b, "consumer");
        b.put_i32(1);
        b.put_i16(-1);
        b.put_i16(-1);
        b.put_i64(0);
        b.put_i32(i32::MAX);
        assert!(decode_group(b.freeze()).is_err());
        assert_eq!(decode_key(Bytes::from_static(&[0, 9, 0, 0])).expect("other kinds"), None);
    }
}
