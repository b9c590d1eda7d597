//! The records of `__consumer_offsets`, in Kafka's schemas (its
//! `OffsetCommitKey`/`OffsetCommitValue`, `GroupMetadataKey`/
//! `GroupMetadataValue`, and the consumer-protocol group's
//! `ConsumerGroup{Metadata,MemberMetadata,TargetAssignmentMetadata,
//! TargetAssignmentMember,CurrentMemberAssignment}` records), so that the
//! internal topic reads as Kafka's does.
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

/// Key versions of the consumer-protocol records: Kafka numbers each record
/// type and writes the number as the key's version.
const CONSUMER_GROUP_KEY: i16 = 3;
const CONSUMER_MEMBER_KEY: i16 = 5;
const CONSUMER_TARGET_META_KEY: i16 = 6;
const CONSUMER_TARGET_KEY: i16 = 7;
const CONSUMER_CURRENT_KEY: i16 = 8;

pub use crate::internal_records::RecordError;
use crate::internal_records::{
    Reader, put_bytes, put_compact_bytes, put_compact_str, put_nullable_str, put_str, put_uvarint,
};

/// What a record's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A committed offset of one partition.
    Offset { group: String, topic: String, partition: i32 },
    /// A group's metadata.
    Group { group: String },
    /// A consumer-protocol group's epoch (`ConsumerGroupMetadataKey`).
    ConsumerGroup { group: String },
    /// A consumer-protocol member's subscription (`ConsumerGroupMemberMetadataKey`).
    ConsumerMember { group: String, member: String },
    /// A consumer-protocol group's assignment epoch
    /// (`ConsumerGroupTargetAssignmentMetadataKey`).
    ConsumerTargetEpoch { group: String },
    /// A member's target assignment (`ConsumerGroupTargetAssignmentMemberKey`).
    ConsumerTarget { group: String, member: String },
    /// A member's current assignment and epochs
    /// (`ConsumerGroupCurrentMemberAssignmentKey`).
    ConsumerCurrent { group: String, member: String },
}

impl Key {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. }
            | Key::Group { group }
            | Key::ConsumerGroup { group }
            | Key::ConsumerMember { group, .. }
            | Key::ConsumerTargetEpoch { group }
            | Key::ConsumerTarget { group, .. }
            | Key::ConsumerCurrent { group, .. } => group,
        }
    }
}

/// Partitions by topic id, as the consumer-protocol records list them.
pub type TopicPartitions = Vec<(uuid::Uuid, Vec<i32>)>;

/// The classic-protocol part of a member of a consumer group (the
/// `ClassicMemberMetadata` tagged field): its session timeout and the
/// protocols it offered in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberValue {
    pub session_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
}

/// A consumer-protocol member's metadata (`ConsumerGroupMemberMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member that speaks the classic protocol.
    pub classic: Option<ClassicMemberValue>,
}

/// A member's current assignment (`ConsumerGroupCurrentMemberAssignmentValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerCurrentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState`: 0 stable, 1 unrevoked partitions, 2 unreleased
    /// partitions.
    pub state: i8,
    pub assigned: TopicPartitions,
    pub revoking: TopicPartitions,
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

fn put_topic_partitions(buf: &mut BytesMut, tps: &TopicPartitions) {
    put_uvarint(buf, tps.len() as u64 + 1);
    for (t, ps) in tps {
        buf.put_slice(t.as_bytes());
        put_uvarint(buf, ps.len() as u64 + 1);
        for p in ps {
            buf.put_i32(*p);
        }
        put_uvarint(buf, 0);
    }
}

/// Encodes a consumer group's epoch (`ConsumerGroupMetadataValue`) or its
/// assignment epoch (`ConsumerGroupTargetAssignmentMetadataValue`): both are
/// one int32 and no tagged fields.
pub fn encode_epoch(epoch: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(epoch);
    put_uvarint(&mut buf, 0);
    buf.freeze()
}

/// Encodes a member's target (`ConsumerGroupTargetAssignmentMemberValue`).
pub fn encode_target(tps: &TopicPartitions) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    put_topic_partitions(&mut buf, tps);
    put_uvarint(&mut buf, 0);
    buf.freeze()
}

/// Encodes a member's current assignment.
pub fn encode_current(v: &ConsumerCurrentValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    buf.put_i32(v.member_epoch);
    buf.put_i32(v.previous_member_epoch);
    buf.put_i8(v.state);
    put_topic_partitions(&mut buf, &v.assigned);
    put_topic_partitions(&mut buf, &v.revoking);
    put_uvarint(&mut buf, 0);
    buf.freeze()
}

/// Encodes a consumer-protocol member's metadata.
pub fn encode_consumer_member(v: &ConsumerMemberValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    put_compact_str(&mut buf, v.instance_id.as_deref());
    put_compact_str(&mut buf, v.rack_id.as_deref());
    put_compact_str(&mut buf, Some(&v.client_id));
    put_compact_str(&mut buf, Some(&v.client_host));
    put_uvarint(&mut buf, v.subscribed_names.len() as u64 + 1);
    for n in &v.subscribed_names {
        put_compact_str(&mut buf, Some(n));
    }
    put_compact_str(&mut buf, v.subscribed_regex.as_deref());
    buf.put_i32(v.rebalance_timeout_ms);
    put_compact_str(&mut buf, v.server_assignor.as_deref());
    match &v.classic {
        None => put_uvarint(&mut buf, 0),
        Some(c) => {
            let mut field = BytesMut::new();
            field.put_i32(c.session_timeout_ms);
            put_uvarint(&mut field, c.protocols.len() as u64 + 1);
            for (name, metadata) in &c.protocols {
                put_compact_str(&mut field, Some(name));
                put_compact_bytes(&mut field, metadata);
                put_uvarint(&mut field, 0);
            }
            put_uvarint(&mut field, 0);
            put_uvarint(&mut buf, 1);
            put_uvarint(&mut buf, 0);
            put_uvarint(&mut buf, field.len() as u64);
            buf.put_slice(&field);
        }
    }
    buf.freeze()
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
        Key::ConsumerGroup { group } => {
            buf.put_i16(CONSUMER_GROUP_KEY);
            put_str(&mut buf, group);
        }
        Key::ConsumerTargetEpoch { group } => {
            buf.put_i16(CONSUMER_TARGET_META_KEY);
            put_str(&mut buf, group);
        }
        Key::ConsumerMember { group, member } => {
            buf.put_i16(CONSUMER_MEMBER_KEY);
            put_str(&mut buf, group);
            put_str(&mut buf, member);
        }
        Key::ConsumerTarget { group, member } => {
            buf.put_i16(CONSUMER_TARGET_KEY);
            put_str(&mut buf, group);
            put_str(&mut buf, member);
        }
        Key::ConsumerCurrent { group, member } => {
            buf.put_i16(CONSUMER_CURRENT_KEY);
            put_str(&mut buf, group);
            put_str(&mut buf, member);
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

impl Reader {
    fn uuid(&mut self, what: &str) -> Result<uuid::Uuid, RecordError> {
        let b = self.raw(16, what)?;
        uuid::Uuid::from_slice(&b).map_err(|_| RecordError(format!("bad uuid at {what}")))
    }
    fn topic_partitions(&mut self, what: &str) -> Result<TopicPartitions, RecordError> {
        let n = self.array_len(true, what)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = self.uuid(what)?;
            let k = self.array_len(true, what)?;
            let mut ps = Vec::with_capacity(k);
            for _ in 0..k {
                ps.push(self.i32(what)?);
            }
            self.skip_tags(what)?;
            out.push((t, ps));
        }
        Ok(out)
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
        CONSUMER_GROUP_KEY => Ok(Some(Key::ConsumerGroup { group: r.str(false, "group")? })),
        CONSUMER_TARGET_META_KEY => Ok(Some(Key::ConsumerTargetEpoch { group: r.str(false, "group")? })),
        CONSUMER_MEMBER_KEY | CONSUMER_TARGET_KEY | CONSUMER_CURRENT_KEY => {
            let group = r.str(false, "group")?;
            let member = r.str(false, "member")?;
            Ok(Some(match version {
                CONSUMER_MEMBER_KEY => Key::ConsumerMember { group, member },
                CONSUMER_TARGET_KEY => Key::ConsumerTarget { group, member },
                _ => Key::ConsumerCurrent { group, member },
            }))
        }
        _ => Ok(None),
    }
}

fn flexible_v0(value: Bytes, what: &str) -> Result<Reader, RecordError> {
    let mut r = Reader(value);
    let version = r.i16("value version")?;
    if version != 0 {
        return Err(RecordError(format!("{what} value version {version}")));
    }
    Ok(r)
}

/// Decodes a consumer group's epoch, or an assignment epoch (both an int32
/// and tagged fields).
pub fn decode_epoch(value: Bytes) -> Result<i32, RecordError> {
    let mut r = flexible_v0(value, "epoch")?;
    let epoch = r.i32("epoch")?;
    r.skip_tags("epoch tags")?;
    Ok(epoch)
}

/// Decodes a member's target.
pub fn decode_target(value: Bytes) -> Result<TopicPartitions, RecordError> {
    let mut r = flexible_v0(value, "target")?;
    let tps = r.topic_partitions("target partitions")?;
    r.skip_tags("target tags")?;
    Ok(tps)
}

/// Decodes a member's current assignment.
pub fn decode_current(value: Bytes) -> Result<ConsumerCurrentValue, RecordError> {
    let mut r = flexible_v0(value, "current assignment")?;
    let member_epoch = r.i32("member epoch")?;
    let previous_member_epoch = r.i32("previous member epoch")?;
    r.need(1, "state")?;
    let state = r.0.get_i8();
    let assigned = r.topic_partitions("assigned")?;
    let revoking = r.topic_partitions("revoking")?;
    r.skip_tags("current tags")?;
    Ok(ConsumerCurrentValue { member_epoch, previous_member_epoch, state, assigned, revoking })
}

/// Decodes a consumer-protocol member's metadata.
pub fn decode_consumer_member(value: Bytes) -> Result<ConsumerMemberValue, RecordError> {
    let mut r = flexible_v0(value, "member")?;
    let instance_id = r.nullable_str(true, "instance id")?;
    let rack_id = r.nullable_str(true, "rack id")?;
    let client_id = r.str(true, "client id")?;
    let client_host = r.str(true, "client host")?;
    let n = r.array_len(true, "subscribed names")?;
    let mut subscribed_names = Vec::with_capacity(n);
    for _ in 0..n {
        subscribed_names.push(r.str(true, "subscribed name")?);
    }
    let subscribed_regex = r.nullable_str(true, "regex")?;
    let rebalance_timeout_ms = r.i32("rebalance timeout")?;
    let server_assignor = r.nullable_str(true, "server assignor")?;
    let mut classic = None;
    let tags = r.unsigned_varint("member tags")?;
    for _ in 0..tags {
        let tag = r.unsigned_varint("tag")?;
        let len = r.unsigned_varint("tag size")? as usize;
        let mut f = Reader(r.raw(len, "tag")?);
        if tag != 0 {
            continue;
        }
        let session_timeout_ms = f.i32("session timeout")?;
        let k = f.array_len(true, "protocols")?;
        let mut protocols = Vec::with_capacity(k);
        for _ in 0..k {
            let name = f.str(true, "protocol name")?;
            let metadata = f.bytes(true, "protocol metadata")?;
            f.skip_tags("protocol tags")?;
            protocols.push((name, metadata));
        }
        classic = Some(ClassicMemberValue { session_timeout_ms, protocols });
    }
    Ok(ConsumerMemberValue {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_names,
        subscribed_regex,
        rebalance_timeout_ms,
        server_assignor,
        classic,
    })
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
    fn consumer_group_records_round_trip() {
        for k in [
            Key::ConsumerGroup { group: "g".into() },
            Key::ConsumerTargetEpoch { group: "g".into() },
            Key::ConsumerMember { group: "g".into(), member: "m".into() },
            Key::ConsumerTarget { group: "g".into(), member: "m".into() },
            Key::ConsumerCurrent { group: "g".into(), member: "m".into() },
        ] {
            assert_eq!(decode_key(encode_key(&k)).expect("key"), Some(k));
        }
        assert_eq!(decode_epoch(encode_epoch(7)).expect("epoch"), 7);
        let t = uuid::Uuid::new_v4();
        let tps = vec![(t, vec![0, 2, 5])];
        assert_eq!(decode_target(encode_target(&tps)).expect("target"), tps);
        let c = ConsumerCurrentValue {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned: tps.clone(),
            revoking: vec![(t, vec![1])],
        };
        assert_eq!(decode_current(encode_current(&c)).expect("current"), c);
        for classic in [
            None,
            Some(ClassicMemberValue {
                session_timeout_ms: 45_000,
                protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            }),
        ] {
            let m = ConsumerMemberValue {
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed_names: vec!["a".into(), "b".into()],
                subscribed_regex: Some("a.*".into()),
                rebalance_timeout_ms: 300_000,
                server_assignor: Some("uniform".into()),
                classic,
            };
            assert_eq!(decode_consumer_member(encode_consumer_member(&m)).expect("member"), m);
        }
        // Truncated values are errors.
        let full = encode_current(&c);
        for n in 0..full.len() {
            assert!(decode_current(full.slice(..n)).is_err(), "{n} bytes");
        }
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
