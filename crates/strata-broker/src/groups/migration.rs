//! Kafka's online migration between the two group protocols
//! (`docs/groups-migration.md`): a classic group in use turns into a
//! consumer group when a consumer-protocol member joins it; classic members
//! are then served inside the consumer group (JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup over its epochs and server-side assignment);
//! and a consumer group whose members all use the classic protocol again
//! once a member left turns back into a classic group.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::classic::{
    Group, GroupConfig, JoinRequest, JoinResult, Member as ClassicMember, State, SyncResult,
};
use super::consumer::{
    ASSIGNORS, Assignment, ClassicPart, ConsumerGroup, Member, Refusal, Topics, is_empty, minus,
};
use super::records::Key;
use super::{GroupError, LogRecord};

/// The embedded protocol type of consumers, shared by both protocols.
const CONSUMER: &str = "consumer";

/// Partitions by topic name, as the embedded protocol carries them.
type NamedPartitions = Vec<(String, Vec<i32>)>;

/// The parts of a `ConsumerProtocolSubscription` a consumer group uses.
struct Subscription {
    topics: Vec<String>,
    owned: NamedPartitions,
    rack: Option<String>,
}

/// The schema version an embedded protocol message starts with.
fn version_of(data: &[u8]) -> Option<i16> {
    (data.len() >= 2).then(|| i16::from_be_bytes([data[0], data[1]]))
}

/// Decodes a version-prefixed embedded message; versions above the newest
/// known one are read as it, as Kafka reads them.
fn decode_embedded<T: Decodable>(data: &Bytes, newest: i16) -> Option<T> {
    let version = version_of(data)?;
    if version < 0 {
        return None;
    }
    let mut buf = data.slice(2..);
    // The decoder must not take the process down on bytes a client made.
    std::panic::catch_unwind(move || T::decode(&mut buf, version.min(newest))).ok()?.ok()
}

fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let s: ConsumerProtocolSubscription = decode_embedded(metadata, 3)?;
    Some(Subscription {
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned: s.owned_partitions.iter().map(|tp| (tp.topic.to_string(), tp.partitions.clone())).collect(),
        rack: s.rack_id.map(|r| r.to_string()),
    })
}

/// A `ConsumerProtocolAssignment`: partitions by topic name, user data.
fn decode_assignment(data: &Bytes) -> Option<(NamedPartitions, Option<Bytes>)> {
    let a: ConsumerProtocolAssignment = decode_embedded(data, 3)?;
    Some((
        a.assigned_partitions.iter().map(|tp| (tp.topic.to_string(), tp.partitions.clone())).collect(),
        a.user_data,
    ))
}

/// Encodes an assignment for a classic member at `version` (0 to 3); topics
/// the cluster no longer has are left out.
fn encode_assignment(a: &Assignment, topics: &dyn Topics, version: i16) -> Bytes {
    let version = version.clamp(0, 3);
    let mut msg = ConsumerProtocolAssignment::default();
    msg.assigned_partitions = a
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .filter_map(|(id, ps)| {
            let mut tp = AssignedPartitions::default();
            tp.topic = TopicName(StrBytes::from_string(topics.name_of(*id)?));
            tp.partitions = ps.iter().copied().collect();
            Some(tp)
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    if let Err(e) = msg.encode(&mut buf, version) {
        tracing::warn!(error = %e, "encoding a classic member's assignment failed");
        return Bytes::new();
    }
    buf.freeze()
}

/// Partitions by name mapped to topic ids (unknown topics are dropped).
fn to_ids(parts: &[(String, Vec<i32>)], topics: &dyn Topics) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in parts {
        if let Some((id, n)) = topics.by_name(name) {
            out.entry(id).or_default().extend(ps.iter().copied().filter(|p| (0..n).contains(p)));
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

/// Turns a classic group in use into a consumer group, for a
/// consumer-protocol member joining it (Kafka's `convertToConsumerGroup`):
/// members keep their ids, their epoch is the generation, and their target
/// and current assignment are what the classic leader gave them. Returns
/// the GroupMetadata tombstone, which goes before the consumer group's own
/// records. Nothing changes when it is refused.
pub(super) fn upgrade(g: &mut Group, topics: &dyn Topics, now: Instant) -> Result<Vec<LogRecord>, Refusal> {
    let id = g.id.clone();
    let refuse = |why: &str| {
        Refusal::new(
            GroupError::GroupIdNotFound,
            format!("Cannot upgrade classic group {id} to consumer group because {why}."),
        )
    };
    if g.protocol_type.as_deref() != Some(CONSUMER) {
        return Err(refuse("the group does not use the consumer embedded protocol"));
    }
    let Some(protocol) = g.protocol.clone() else {
        // Its first rebalance has not chosen a protocol yet (Kafka fails
        // with an unknown server error here): retriable, it soon will have.
        return Err(Refusal::new(
            GroupError::CoordinatorNotAvailable,
            format!("Classic group {id} is completing its first rebalance; retry."),
        ));
    };
    let malformed = "the embedded consumer protocol is malformed";
    let mut c = ConsumerGroup::default();
    c.group_epoch = g.generation;
    c.assignment_epoch = g.generation;
    for m in g.members.values() {
        let sub = decode_subscription(&m.metadata(&protocol)).ok_or_else(|| refuse(malformed))?;
        let assigned = if m.assignment.is_empty() {
            Assignment::new()
        } else {
            let (parts, user_data) = decode_assignment(&m.assignment).ok_or_else(|| refuse(malformed))?;
            if user_data.is_some_and(|u| !u.is_empty()) {
                return Err(refuse(
                    "an unsupported custom assignor is in use. Please refer to the documentation or switch to \
                     a default assignor before re-attempting the upgrade",
                ));
            }
            to_ids(&parts, topics)
        };
        let mut cm = Member::new(&m.id, now);
        cm.instance_id = m.instance_id.clone();
        cm.client_id = m.client_id.clone();
        cm.client_host = m.client_host.clone();
        cm.rack_id = sub.rack;
        cm.member_epoch = g.generation;
        cm.previous_epoch = g.generation;
        let mut names = sub.topics;
        names.sort();
        cm.subscribed_names = names;
        cm.rebalance_timeout = m.rebalance_timeout;
        cm.assigned = assigned.clone();
        cm.classic = Some(ClassicPart {
            session_timeout: m.session_timeout,
            protocols: m.protocols.clone(),
            join_deadline: None,
            sync_deadline: None,
        });
        c.target.insert(m.id.clone(), assigned);
        c.members.insert(m.id.clone(), cm);
    }
    c.assignor = ASSIGNORS[0].to_string();
    // Nothing can fail now: joins and syncs waiting learn of the rebalance.
    for m in g.members.values_mut() {
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(GroupError::RebalanceInProgress, &m.id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult { error: Some(GroupError::RebalanceInProgress), ..Default::default() });
        }
    }
    tracing::info!(group = %id, generation = g.generation, members = g.members.len(), "classic group upgraded to the consumer protocol");
    g.members.clear();
    g.pending.clear();
    g.statics.clear();
    g.leader = None;
    g.protocol = None;
    g.rebalance_deadline = None;
    g.join_not_before = None;
    g.sync_deadline = None;
    g.state = State::Empty;
    g.dirty = false;
    g.consumer = Some(c);
    Ok(vec![(Key::Group { group: id }, None)])
}

/// The consumer group's member a classic request names, checked as Kafka
/// checks it (static instance id first), which must use the classic protocol.
fn classic_member<'a>(
    c: &'a mut ConsumerGroup,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<&'a mut Member, GroupError> {
    if let Some(i) = instance_id {
        let mapped = c
            .members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(i))
            .map(|m| m.id.clone())
            .ok_or(GroupError::UnknownMemberId)?;
        if mapped != member_id {
            return Err(GroupError::FencedInstanceId);
        }
    }
    match c.members.get_mut(member_id) {
        Some(m) if m.classic.is_some() => Ok(m),
        _ => Err(GroupError::UnknownMemberId),
    }
}

/// JoinGroup of a classic member to a consumer group in use (Kafka's
/// `classicGroupJoinToConsumerGroup`), answered at once: the generation is
/// the member's epoch and there is no leader, since the server assignor
/// computes every member's assignment and SyncGroup hands it out.
pub(super) fn classic_join(
    c: &mut ConsumerGroup,
    req: JoinRequest,
    topics: &dyn Topics,
    now: Instant,
) -> Result<JoinResult, GroupError> {
    if req.protocol_type != CONSUMER || req.protocols.is_empty() {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    let others: Vec<&ClassicPart> =
        c.members.values().filter(|m| m.id != req.member_id).filter_map(|m| m.classic.as_ref()).collect();
    let supported = others.is_empty()
        || req.protocols.iter().any(|(n, _)| others.iter().all(|o| o.protocols.iter().any(|(q, _)| q == n)));
    if !supported {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    let unknown = req.member_id.is_empty();
    let id = if unknown { uuid::Uuid::new_v4().to_string() } else { req.member_id.clone() };
    if unknown && req.instance_id.is_none() && req.version >= 4 {
        // KIP-394, without pending state: the next join with this id joins.
        return Ok(JoinResult::error(GroupError::MemberIdRequired, &id));
    }
    let (first_name, first_metadata) = req.protocols[0].clone();
    let sub = decode_subscription(&first_metadata).ok_or(GroupError::InconsistentGroupProtocol)?;
    let mut new_member = false;
    match &req.instance_id {
        Some(i) => {
            let existing =
                c.members.values().find(|m| m.instance_id.as_ref() == Some(i)).map(|m| m.id.clone());
            match existing {
                // A new incarnation of a static member replaces the old one,
                // keeping its assignment (from epoch 0).
                Some(old) if unknown => {
                    if let Some(mut m) = c.members.remove(&old) {
                        m.id = id.clone();
                        m.member_epoch = 0;
                        m.previous_epoch = 0;
                        c.members.insert(id.clone(), m);
                    }
                    if let Some(t) = c.target.remove(&old) {
                        c.target.insert(id.clone(), t);
                    }
                }
                Some(old) if old != id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
                None if unknown => new_member = true,
                None => return Err(GroupError::UnknownMemberId),
            }
        }
        None => new_member = !c.members.contains_key(&id),
    }
    if new_member {
        let mut m = Member::new(&id, now);
        m.instance_id = req.instance_id.clone();
        c.members.insert(id.clone(), m);
    }
    let Some(m) = c.members.get_mut(&id) else { return Err(GroupError::UnknownMemberId) };
    let mut names = sub.topics;
    names.sort();
    let changed = names != m.subscribed_names || m.subscribed_regex.is_some();
    m.subscribed_names = names;
    m.set_regex(None);
    m.rack_id = sub.rack.or(m.rack_id.take());
    m.rebalance_timeout = req.rebalance_timeout;
    m.client_id = req.client_id.clone();
    m.client_host = req.client_host.clone();
    m.last_heartbeat = now;
    m.classic = Some(ClassicPart {
        session_timeout: req.session_timeout,
        protocols: req.protocols.clone(),
        join_deadline: None,
        sync_deadline: Some(now + req.rebalance_timeout),
    });
    if changed || new_member {
        c.group_epoch += 1;
    }
    if c.assignment_epoch < c.group_epoch || c.target_outdated(topics) {
        if c.assignment_epoch == c.group_epoch {
            c.group_epoch += 1;
        }
        c.assign(topics);
    }
    let owned = to_ids(&sub.owned, topics);
    c.reconcile(&id, Some(&owned), now);
    let epoch = c.members.get(&id).map(|m| m.member_epoch).unwrap_or_default();
    Ok(JoinResult {
        error: None,
        generation: epoch,
        protocol_type: Some(CONSUMER.to_string()),
        protocol_name: Some(first_name),
        leader: String::new(),
        skip_assignment: false,
        member_id: id,
        members: Vec::new(),
    })
}

/// SyncGroup of a classic member of a consumer group: its current
/// assignment, in the schema version of its first protocol's metadata.
#[allow(clippy::too_many_arguments)]
pub(super) fn classic_sync(
    c: &mut ConsumerGroup,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    protocol_type: Option<&str>,
    protocol_name: Option<&str>,
    topics: &dyn Topics,
    now: Instant,
) -> Result<SyncResult, GroupError> {
    let group_epoch = c.group_epoch;
    let m = classic_member(c, member_id, instance_id)?;
    if generation != m.member_epoch {
        return Err(GroupError::IllegalGeneration);
    }
    let rebalance_timeout = m.rebalance_timeout;
    let unrevoked = !is_empty(&m.revoking);
    let behind = group_epoch > m.member_epoch;
    let Some(part) = m.classic.as_mut() else { return Err(GroupError::UnknownMemberId) };
    let (first_name, first_metadata) = part.protocols.first().cloned().unwrap_or_default();
    if protocol_type.is_some_and(|t| t != CONSUMER) || protocol_name.is_some_and(|n| n != first_name) {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    if behind && !unrevoked {
        part.join_deadline.get_or_insert(now + rebalance_timeout);
        return Err(GroupError::RebalanceInProgress);
    }
    part.sync_deadline = None;
    m.last_heartbeat = now;
    let version = version_of(&first_metadata).unwrap_or(0);
    Ok(SyncResult {
        error: None,
        protocol_type: protocol_type.map(str::to_string),
        protocol_name: protocol_name.map(str::to_string),
        assignment: encode_assignment(&m.assigned, topics, version),
    })
}

/// Heartbeat of a classic member of a consumer group: REBALANCE_IN_PROGRESS
/// when it should rejoin (its epoch is behind, it must revoke, or
/// partitions it waited for are free now).
pub(super) fn classic_heartbeat(
    c: &mut ConsumerGroup,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
    now: Instant,
) -> Result<(), GroupError> {
    let m = classic_member(c, member_id, instance_id)?;
    if generation != m.member_epoch {
        return Err(GroupError::IllegalGeneration);
    }
    m.last_heartbeat = now;
    let m = &c.members[member_id];
    let missing = match c.target.get(member_id) {
        Some(t) if m.member_epoch == c.assignment_epoch => minus(t, &m.assigned),
        _ => Assignment::new(),
    };
    let freed = !is_empty(&missing)
        && !missing.iter().any(|(t, ps)| ps.iter().any(|p| c.held_by_other(member_id, t, *p)));
    let rejoin = m.member_epoch < c.group_epoch || !is_empty(&m.revoking) || freed;
    if !rejoin {
        return Ok(());
    }
    if let Some(m) = c.members.get_mut(member_id) {
        let deadline = now + m.rebalance_timeout;
        if let Some(part) = m.classic.as_mut() {
            part.join_deadline.get_or_insert(deadline);
        }
    }
    Err(GroupError::RebalanceInProgress)
}

/// LeaveGroup on a consumer group: each named member (classic or not) is
/// resolved as Kafka resolves it, and those found leave together, with one
/// new group epoch.
pub(super) fn leave(
    c: &mut ConsumerGroup,
    members: &[(String, Option<String>)],
    topics: &dyn Topics,
) -> Vec<Result<(), GroupError>> {
    let mut gone = Vec::new();
    let results = members
        .iter()
        .map(|(member_id, instance_id)| {
            let id = match instance_id {
                Some(i) => {
                    let mapped = c
                        .members
                        .values()
                        .find(|m| m.instance_id.as_ref() == Some(i))
                        .map(|m| m.id.clone())
                        .ok_or(GroupError::UnknownMemberId)?;
                    if !member_id.is_empty() && *member_id != mapped {
                        return Err(GroupError::FencedInstanceId);
                    }
                    mapped
                }
                None if c.members.contains_key(member_id) => member_id.clone(),
                None => return Err(GroupError::UnknownMemberId),
            };
            gone.push(id);
            Ok(())
        })
        .collect();
    if !gone.is_empty() {
        for id in &gone {
            c.members.remove(id);
        }
        c.group_epoch += 1;
        c.assign(topics);
    }
    results
}

/// Whether a consumer group, after members left, turns classic: it still
/// has members and every one uses the classic protocol.
pub(super) fn should_downgrade(c: &ConsumerGroup) -> bool {
    !c.members.is_empty() && c.members.values().all(|m| m.classic.is_some())
}

/// Turns a consumer group whose members all use the classic protocol into
/// a classic group (Kafka's `convertToClassicGroup`): its generation is the
/// group epoch from before the members left (`generation`: Kafka converts
/// instead of writing their departure), each member's assignment its
/// target, then a rebalance. Returns the consumer group's tombstones; the
/// group is left dirty, so that its GroupMetadata record follows them.
pub(super) fn downgrade(
    g: &mut Group,
    generation: i32,
    topics: &dyn Topics,
    cfg: &GroupConfig,
    now: Instant,
    wall_ms: i64,
) -> Vec<LogRecord> {
    let Some(c) = g.consumer.take() else { return Vec::new() };
    let records = c.tombstones(&g.id);
    g.members.clear();
    g.statics.clear();
    g.pending.clear();
    for m in c.members.values() {
        let Some(part) = &m.classic else { continue };
        if let Some(i) = &m.instance_id {
            g.statics.insert(i.clone(), m.id.clone());
        }
        g.members.insert(
            m.id.clone(),
            ClassicMember {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: part.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: part.protocols.clone(),
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                last_heartbeat: now,
            },
        );
    }
    g.generation = generation;
    g.protocol_type = Some(CONSUMER.to_string());
    g.leader = g.members.keys().next().cloned();
    g.protocol = g.select_protocol();
    let protocol = g.protocol.clone().unwrap_or_default();
    for m in g.members.values_mut() {
        let target = c.target.get(&m.id).cloned().unwrap_or_default();
        let version = version_of(&m.metadata(&protocol)).unwrap_or(0);
        m.assignment = encode_assignment(&target, topics, version);
    }
    g.set_state(State::Stable, wall_ms);
    g.dirty = true;
    tracing::info!(group = %g.id, generation = g.generation, members = g.members.len(), "consumer group downgraded to the classic protocol");
    g.prepare_rebalance(cfg, now, wall_ms);
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;
    use uuid::Uuid;

    struct OneTopic(Uuid);
    impl Topics for OneTopic {
        fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            (name == "t").then_some((self.0, 6))
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
        fn name_of(&self, id: Uuid) -> Option<String> {
            (id == self.0).then(|| "t".into())
        }
    }

    fn subscription(owned: &[i32]) -> Bytes {
        let mut s = ConsumerProtocolSubscription::default();
        s.topics = vec![StrBytes::from_static_str("t")];
        let mut tp = kafka_protocol::messages::consumer_protocol_subscription::TopicPartition::default();
        tp.topic = TopicName(StrBytes::from_static_str("t"));
        tp.partitions = owned.to_vec();
        s.owned_partitions = if owned.is_empty() { Vec::new() } else { vec![tp] };
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        s.encode(&mut buf, 1).expect("encodes");
        buf.freeze()
    }

    fn join(member: &str, owned: &[i32]) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: CONSUMER.into(),
            protocols: vec![("cooperative-sticky".into(), subscription(owned))],
            version: 9,
        }
    }

    fn partitions(a: &Bytes) -> BTreeSet<i32> {
        decode_assignment(a).expect("an assignment").0.into_iter().flat_map(|(_, ps)| ps).collect()
    }

    #[test]
    fn a_classic_group_upgrades_serves_its_classic_members_and_downgrades_back() {
        let t = Uuid::new_v4();
        let topics = OneTopic(t);
        let now = Instant::now();
        let cfg = GroupConfig::default();
        // A classic group at generation 3: a owns 0-2, b owns 3-5.
        let mut g = Group::new("g", 0);
        g.protocol_type = Some(CONSUMER.into());
        g.protocol = Some("cooperative-sticky".into());
        g.generation = 3;
        g.state = State::Stable;
        for (id, ps) in [("a", vec![0, 1, 2]), ("b", vec![3, 4, 5])] {
            let mut assignment = ConsumerProtocolAssignment::default();
            let mut tp = AssignedPartitions::default();
            tp.topic = TopicName(StrBytes::from_static_str("t"));
            tp.partitions = ps;
            assignment.assigned_partitions = vec![tp];
            let mut buf = BytesMut::new();
            buf.put_i16(1);
            assignment.encode(&mut buf, 1).expect("encodes");
            g.members.insert(
                id.into(),
                ClassicMember {
                    id: id.into(),
                    instance_id: None,
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(30),
                    protocols: vec![("cooperative-sticky".into(), subscription(&[]))],
                    assignment: buf.freeze(),
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                },
            );
        }
        let records = upgrade(&mut g, &topics, now).expect("upgrades");
        assert!(
            matches!(records.as_slice(), [(Key::Group { .. }, None)]),
            "the classic record is tombstoned"
        );
        let c = g.consumer.as_mut().expect("a consumer group");
        assert_eq!((c.group_epoch, c.assignment_epoch), (3, 3));
        assert_eq!(c.members["a"].member_epoch, 3);
        assert_eq!(c.members["a"].assigned[&t], BTreeSet::from([0, 1, 2]));
        assert!(g.members.is_empty());
        let c = g.consumer.as_mut().expect("a consumer group");
        // Classic members heartbeat at their generation; a wrong one is refused.
        assert_eq!(classic_heartbeat(c, "a", None, 3, now), Ok(()));
        assert_eq!(classic_heartbeat(c, "a", None, 4, now), Err(GroupError::IllegalGeneration));
        // A new epoch (what a consumer-protocol member joining brings) asks
        // classic members to rejoin.
        let new = join("", &[]);
        let r = classic_join(c, new, &topics, now).expect("joins");
        assert_eq!(r.error, Some(GroupError::MemberIdRequired));
        let x = classic_join(c, join(&r.member_id, &[]), &topics, now).expect("x joins");
        assert_eq!(x.generation, 4);
        assert!(x.leader.is_empty() && x.members.is_empty(), "no leader: the server assigns");
        let synced =
            classic_sync(c, &x.member_id, None, 4, Some(CONSUMER), None, &topics, now).expect("x syncs");
        assert!(partitions(&synced.assignment).is_empty(), "nothing free yet");
        assert_eq!(classic_heartbeat(c, "a", None, 3, now), Err(GroupError::RebalanceInProgress));
        // a rejoins still owning its partitions (cooperative): it must revoke.
        let a = classic_join(c, join("a", &[0, 1, 2]), &topics, now).expect("a rejoins");
        assert_eq!(a.generation, 3, "unrevoked: the epoch stays");
        let kept =
            partitions(&classic_sync(c, "a", None, 3, None, None, &topics, now).expect("a").assignment);
        assert_eq!(kept.len(), 2);
        let kept: Vec<i32> = kept.into_iter().collect();
        let a = classic_join(c, join("a", &kept), &topics, now).expect("a rejoins after revoking");
        assert_eq!(a.generation, 4);
        // b rejoins (eager: owning nothing) and reaches the epoch at once.
        let b = classic_join(c, join("b", &[]), &topics, now).expect("b rejoins");
        assert_eq!(b.generation, 4);
        // x now finds its partitions free.
        assert_eq!(classic_heartbeat(c, &x.member_id, None, 4, now), Err(GroupError::RebalanceInProgress));
        let x2 = classic_join(c, join(&x.member_id, &[]), &topics, now).expect("x rejoins");
        let got = partitions(
            &classic_sync(c, &x.member_id, None, x2.generation, None, None, &topics, now)
                .expect("x")
                .assignment,
        );
        assert_eq!(got.len(), 2);
        // Commits from classic members are checked by generation.
        assert_eq!(c.validate_epoch("a", 3), Err(GroupError::IllegalGeneration));
        // Every member is classic: when one leaves, the group turns classic.
        let left = leave(c, &[(x.member_id.clone(), None)], &topics);
        assert_eq!(left, vec![Ok(())]);
        assert!(should_downgrade(c));
        let epoch = c.group_epoch - 1;
        let records = downgrade(&mut g, epoch, &topics, &cfg, now, 1);
        assert!(records.iter().all(|(_, v)| v.is_none()), "the consumer records are tombstoned");
        assert!(g.consumer.is_none() && g.dirty);
        assert_eq!(g.generation, epoch);
        assert_eq!(g.state, State::PreparingRebalance);
        let owned: BTreeSet<i32> = g.members.values().flat_map(|m| partitions(&m.assignment)).collect();
        assert_eq!(owned.len(), 6, "each member's assignment is its target");
    }
}
