//! One group of the classic protocol: Kafka's state machine (Empty,
//! PreparingRebalance, CompletingRebalance, Stable, Dead), its members,
//! pending members (KIP-394), static members (KIP-345) and committed
//! offsets. Pure logic over an injected clock (`now`): the coordinator
//! (`super`) holds the lock, persists what it marks dirty and drives `tick`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::GroupError;
use super::records::{GroupValue, MemberValue};

/// The broker settings groups follow (Kafka's names).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            max_size: i32::MAX as usize,
        }
    }
}

/// A group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub(super) fn error(e: GroupError, member_id: &str) -> Self {
        JoinResult { error: Some(e), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A JoinGroup as the group sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// The request's version (KIP-394 from 4, skip-assignment from 9).
    pub version: i16,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Where its record is in `__consumer_offsets` (orders concurrent commits).
    pub log_offset: i64,
}

/// One member.
#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
    pub(super) last_heartbeat: Instant,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// A group of the classic protocol.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: State,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// KIP-394 members told MEMBER_ID_REQUIRED, with when they expire.
    pub(super) pending: HashMap<String, Instant>,
    /// Static instance id → member id.
    pub(super) statics: HashMap<String, String>,
    pub offsets: HashMap<(String, i32), Committed>,
    pub(super) rebalance_deadline: Option<Instant>,
    /// The initial delay of a group that was empty (KIP-134).
    pub(super) join_not_before: Option<Instant>,
    pub(super) sync_deadline: Option<Instant>,
    /// Wall-clock ms of the last state change.
    pub state_timestamp: i64,
    /// Whether the group's metadata changed in a way Kafka persists.
    pub dirty: bool,
    /// Set when the group is a consumer-protocol (KIP-848) group.
    pub consumer: Option<super::consumer::ConsumerGroup>,
    /// Offsets committed in open transactions, by producer id, until their
    /// marker: `(topic, partition, value, log offset)`.
    pub pending_txn: HashMap<i64, Vec<(String, i32, super::records::OffsetValue, i64)>>,
}

/// Waiters to answer once the group's metadata is durable.
pub type SyncDeliveries = Vec<(oneshot::Sender<SyncResult>, SyncResult)>;

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, wall_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            offsets: HashMap::new(),
            rebalance_deadline: None,
            join_not_before: None,
            sync_deadline: None,
            state_timestamp: wall_ms,
            dirty: false,
            consumer: None,
            pending_txn: HashMap::new(),
        }
    }

    /// The group as its last metadata record left it: Stable with its
    /// members (their sessions start now), or Empty.
    pub fn from_value(id: &str, v: GroupValue, now: Instant) -> Self {
        let mut g = Group::new(id, v.current_state_timestamp);
        g.generation = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        g.protocol = v.protocol;
        g.leader = v.leader;
        for m in v.members {
            if let Some(i) = &m.group_instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            let protocols = match &g.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                },
            );
        }
        g.state = if g.members.is_empty() { State::Empty } else { State::Stable };
        g
    }

    /// The metadata record Kafka would write now.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn set_state(&mut self, state: State, wall_ms: i64) {
        self.state = state;
        self.state_timestamp = wall_ms;
    }

    /// Checks a member id and static instance id as Kafka does for
    /// heartbeats, syncs and commits.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(i) = instance_id {
            match self.statics.get(i) {
                Some(m) if m != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
                None if self.members.contains_key(member_id) => return Err(GroupError::FencedInstanceId),
                None => return Err(GroupError::UnknownMemberId),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// The protocols every member supports, in no order.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols.iter().any(|(p, _)| self.members.values().all(|m| m.protocols.iter().any(|(q, _)| q == p)))
    }

    /// JoinGroup. The answer goes to `waiter`, now or when the rebalance
    /// completes; `Err` is answered at once by the caller.
    pub fn join(
        &mut self,
        req: JoinRequest,
        waiter: oneshot::Sender<JoinResult>,
        cfg: &GroupConfig,
        now: Instant,
        wall_ms: i64,
    ) -> Result<(), GroupError> {
        tracing::debug!(group = %self.id, member = %req.member_id, instance = ?req.instance_id, state = self.state.name(), "join");
        if self.state == State::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.consumer.is_some() {
            // The coordinator serves a consumer group's classic members
            // (`super::migration`) and turns an empty one classic first.
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if req.session_timeout < cfg.min_session_timeout || req.session_timeout > cfg.max_session_timeout {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let others_only = self.members.len() == 1 && self.members.contains_key(&req.member_id);
        if !others_only && !self.supports(&req.protocol_type, &req.protocols) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_new(req, waiter, cfg, now, wall_ms);
        }
        if let Some(i) = &req.instance_id {
            match self.statics.get(i) {
                Some(m) if *m != req.member_id => return Err(GroupError::FencedInstanceId),
                None if !self.pending.contains_key(&req.member_id) => {
                    return Err(GroupError::UnknownMemberId);
                }
                _ => {}
            }
        }
        if self.pending.remove(&req.member_id).is_some() {
            self.add_member(req, waiter, now);
            self.on_member_added(cfg, now, wall_ms);
            return Ok(());
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let same = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat = now;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            State::PreparingRebalance => {
                self.attach_join(&req.member_id, waiter);
                self.try_complete_join(now, wall_ms);
            }
            State::CompletingRebalance if same => {
                let r = self.current_join_result(&req.member_id, false);
                let _ = waiter.send(r);
            }
            State::Stable if same && !is_leader => {
                let r = self.current_join_result(&req.member_id, false);
                let _ = waiter.send(r);
            }
            State::CompletingRebalance | State::Stable => {
                self.attach_join(&req.member_id, waiter);
                self.prepare_rebalance(cfg, now, wall_ms);
                self.try_complete_join(now, wall_ms);
            }
            State::Empty | State::Dead => return Err(GroupError::UnknownMemberId),
        }
        Ok(())
    }

    /// A join with no member id: KIP-394 for dynamic members from v4, a
    /// static member (new, or replacing its previous incarnation).
    fn join_new(
        &mut self,
        req: JoinRequest,
        waiter: oneshot::Sender<JoinResult>,
        cfg: &GroupConfig,
        now: Instant,
        wall_ms: i64,
    ) -> Result<(), GroupError> {
        if self.members.len() + self.pending.len() >= cfg.max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.statics.get(&instance).cloned() {
                return self.replace_static(old_id, new_id, req, waiter, cfg, now, wall_ms);
            }
            let mut req = req;
            req.member_id = new_id;
            self.statics.insert(instance, req.member_id.clone());
            self.add_member(req, waiter, now);
            self.on_member_added(cfg, now, wall_ms);
            return Ok(());
        }
        if req.version >= 4 {
            self.pending.insert(new_id.clone(), now + req.session_timeout);
            let _ = waiter.send(JoinResult::error(GroupError::MemberIdRequired, &new_id));
            return Ok(());
        }
        let mut req = req;
        req.member_id = new_id;
        self.add_member(req, waiter, now);
        self.on_member_added(cfg, now, wall_ms);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn replace_static(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        waiter: oneshot::Sender<JoinResult>,
        cfg: &GroupConfig,
        now: Instant,
        wall_ms: i64,
    ) -> Result<(), GroupError> {
        let Some(mut member) = self.members.remove(&old_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        // The old incarnation's waiters learn they are fenced.
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult::error(GroupError::FencedInstanceId, &old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult { error: Some(GroupError::FencedInstanceId), ..Default::default() });
        }
        member.id = new_id.clone();
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat = now;
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.statics.insert(i.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        // As Kafka: no rebalance unless the protocol the group would select
        // next changes (the metadata itself may: a new incarnation owns nothing).
        let selected_same = self.protocol.is_some() && self.select_protocol() == self.protocol;
        match self.state {
            State::Stable if selected_same && (!was_leader || req.version >= 9) => {
                // KIP-345: back within its session, no rebalance. A leader
                // (v9+) gets the members but skips the assignment.
                let r = self.current_join_result(&new_id, was_leader);
                self.dirty = true;
                let _ = waiter.send(r);
            }
            State::PreparingRebalance => {
                self.attach_join(&new_id, waiter);
                self.try_complete_join(now, wall_ms);
            }
            _ => {
                self.attach_join(&new_id, waiter);
                self.prepare_rebalance(cfg, now, wall_ms);
                self.try_complete_join(now, wall_ms);
            }
        }
        Ok(())
    }

    fn add_member(&mut self, req: JoinRequest, waiter: oneshot::Sender<JoinResult>, now: Instant) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            id: req.member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(waiter),
            sync_waiter: None,
            last_heartbeat: now,
        };
        self.members.insert(req.member_id, member);
    }

    fn on_member_added(&mut self, cfg: &GroupConfig, now: Instant, wall_ms: i64) {
        match self.state {
            State::PreparingRebalance => {
                // KIP-134: while the first members gather, each newcomer
                // extends the wait by the delay, up to the rebalance timeout.
                if let (Some(_), Some(deadline)) = (self.join_not_before, self.rebalance_deadline) {
                    self.join_not_before = Some((now + cfg.initial_rebalance_delay).min(deadline));
                }
            }
            _ => self.prepare_rebalance(cfg, now, wall_ms),
        }
        self.try_complete_join(now, wall_ms);
    }

    fn attach_join(&mut self, member_id: &str, waiter: oneshot::Sender<JoinResult>) {
        if let Some(m) = self.members.get_mut(member_id)
            && let Some(old) = m.join_waiter.replace(waiter)
        {
            let _ = old.send(JoinResult::error(GroupError::RebalanceInProgress, member_id));
        }
    }

    /// Starts a rebalance: pending syncs learn of it, the deadline is the
    /// largest rebalance timeout.
    pub(super) fn prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant, wall_ms: i64) {
        if self.state == State::PreparingRebalance {
            return;
        }
        tracing::info!(group = %self.id, from = self.state.name(), generation = self.generation, "preparing a rebalance");
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ =
                    w.send(SyncResult { error: Some(GroupError::RebalanceInProgress), ..Default::default() });
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        let deadline = now + timeout;
        self.rebalance_deadline = Some(deadline);
        self.join_not_before = if self.state == State::Empty {
            Some((now + cfg.initial_rebalance_delay).min(deadline))
        } else {
            None
        };
        self.sync_deadline = None;
        self.set_state(State::PreparingRebalance, wall_ms);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase when every member has joined (after the
    /// initial delay) or the rebalance timeout has passed.
    fn try_complete_join(&mut self, now: Instant, wall_ms: i64) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let delayed = self.join_not_before.is_some_and(|t| now < t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !(timed_out || (!delayed && self.all_joined())) {
            return;
        }
        // Members that did not rejoin in time leave the group.
        let gone: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.rebalance_deadline = None;
        self.join_not_before = None;
        self.generation += 1;
        if self.members.is_empty() {
            // As Kafka: an empty group keeps its protocol type.
            self.protocol = None;
            self.leader = None;
            self.set_state(State::Empty, wall_ms);
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(State::CompletingRebalance, wall_ms);
        let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
        self.sync_deadline = Some(now + timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let r = self.current_join_result(&id, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(r);
                }
            }
        }
    }

    /// The protocol most members prefer among those all support.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(p, _)| p)
            .filter(|p| self.members.values().all(|m| m.protocols.iter().any(|(q, _)| q == *p)))
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        let leader_pref = self.leader.as_ref().and_then(|l| self.members.get(l)).unwrap_or(first);
        leader_pref
            .protocols
            .iter()
            .map(|(p, _)| p)
            .find(|p| votes.get(p) == Some(&best))
            .or_else(|| votes.iter().find(|(_, v)| **v == best).map(|(p, _)| *p))
            .cloned()
    }

    fn current_join_result(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let p = self.protocol.clone().unwrap_or_default();
            self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&p))).collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(i) = &m.instance_id
                && self.statics.get(i).is_some_and(|x| x == id)
            {
                self.statics.remove(i);
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(GroupError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult { error: Some(GroupError::UnknownMemberId), ..Default::default() });
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// SyncGroup. `Ok(Some(deliveries))`: the leader's assignment made the
    /// group Stable; the caller persists the group, then answers them.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        waiter: oneshot::Sender<SyncResult>,
        wall_ms: i64,
    ) -> Result<Option<SyncDeliveries>, GroupError> {
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            State::Empty | State::Dead => Err(GroupError::UnknownMemberId),
            State::Stable => {
                let assignment =
                    self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                let _ = waiter.send(self.sync_result(assignment));
                Ok(None)
            }
            State::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(waiter);
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Ok(None);
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.sync_deadline = None;
                self.set_state(State::Stable, wall_ms);
                self.dirty = true;
                let mut out = Vec::new();
                let results: Vec<(String, SyncResult)> = self
                    .members
                    .values()
                    .map(|m| (m.id.clone(), self.sync_result(m.assignment.clone())))
                    .collect();
                for (id, r) in results {
                    if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                        out.push((w, r));
                    }
                }
                Ok(Some(out))
            }
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        if matches!(self.state, State::Empty | State::Dead) {
            return Err(GroupError::UnknownMemberId);
        }
        self.validate_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        if self.state == State::PreparingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup of one member (by member id, or by static instance id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: Instant,
        wall_ms: i64,
    ) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(i) => match self.statics.get(i) {
                None => return Err(GroupError::UnknownMemberId),
                Some(m) if !member_id.is_empty() && m != member_id => {
                    return Err(GroupError::FencedInstanceId);
                }
                Some(m) => m.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            self.try_complete_join(now, wall_ms);
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(GroupError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.member_gone(cfg, now, wall_ms);
        Ok(())
    }

    fn member_gone(&mut self, cfg: &GroupConfig, now: Instant, wall_ms: i64) {
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(cfg, now, wall_ms);
                self.try_complete_join(now, wall_ms);
            }
            State::PreparingRebalance => self.try_complete_join(now, wall_ms),
            State::Empty | State::Dead => {}
        }
    }

    /// Time-driven transitions: expired sessions and pending members, the
    /// rebalance and sync deadlines.
    pub fn tick(&mut self, cfg: &GroupConfig, now: Instant, wall_ms: i64) {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now >= m.last_heartbeat + m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.member_gone(cfg, now, wall_ms);
        }
        if self.state == State::CompletingRebalance && self.sync_deadline.is_some_and(|t| now >= t) {
            let slow: Vec<String> =
                self.members.values().filter(|m| m.sync_waiter.is_none()).map(|m| m.id.clone()).collect();
            for id in &slow {
                self.remove_member(id);
            }
            self.member_gone(cfg, now, wall_ms);
        }
        self.try_complete_join(now, wall_ms);
    }

    /// Whether anything time-driven is outstanding.
    pub fn is_active(&self) -> bool {
        !self.members.is_empty() || !self.pending.is_empty()
    }

    /// The protocol type reported by ListGroups/DescribeGroups ("" when none).
    pub fn protocol_type_name(&self) -> String {
        self.protocol_type.clone().unwrap_or_default()
    }

    /// Topics the members' subscriptions name (consumer protocol), for
    /// OffsetDelete's check.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let p = self.protocol.as_deref()?;
        let mut out = Vec::new();
        for m in self.members.values() {
            out.extend(consumer_subscription_topics(&m.metadata(p)));
        }
        Some(out)
    }
}

/// The topics of a consumer protocol subscription (`ConsumerProtocolSubscription`).
pub fn consumer_subscription_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(&mut buf, 2);
    match std::panic::catch_unwind(move || {
        ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
    }) {
        Ok(Ok(s)) => s.topics.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GroupConfig {
        GroupConfig { initial_rebalance_delay: Duration::from_millis(100), ..Default::default() }
    }

    fn req(member: &str, version: i16) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            version,
        }
    }

    fn join(g: &mut Group, r: JoinRequest, now: Instant) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        g.join(r, tx, &cfg(), now, 0).expect("join accepted");
        rx
    }

    #[test]
    fn two_members_join_sync_and_one_leaves() {
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        // KIP-394: the first join gets a member id to come back with.
        let a = join(&mut g, req("", 9), t0).try_recv().expect("answered");
        assert_eq!(a.error, Some(GroupError::MemberIdRequired));
        let mut ra = join(&mut g, req(&a.member_id, 9), t0);
        let b = join(&mut g, req("", 9), t0).try_recv().expect("answered");
        let mut rb = join(&mut g, req(&b.member_id, 9), t0);
        assert_eq!(g.state, State::PreparingRebalance);
        assert!(ra.try_recv().is_err(), "the initial delay holds the join");
        g.tick(&cfg(), t0 + Duration::from_millis(150), 0);
        let (ja, jb) = (ra.try_recv().expect("a joined"), rb.try_recv().expect("b joined"));
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.leader, jb.leader);
        let leader = ja.leader.clone();
        let (l, f) = if leader == ja.member_id { (&ja, &jb) } else { (&jb, &ja) };
        assert_eq!(l.members.len(), 2);
        assert!(f.members.is_empty());
        assert_eq!(g.state, State::CompletingRebalance);
        let (ftx, mut frx) = oneshot::channel();
        assert!(g.sync(&f.member_id, None, 1, None, None, vec![], ftx, 0).expect("ok").is_none());
        let (ltx, _lrx) = oneshot::channel();
        let assignments = vec![
            (l.member_id.clone(), Bytes::from_static(b"L")),
            (f.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let out = g.sync(&l.member_id, None, 1, None, None, assignments, ltx, 0).expect("ok").expect("done");
        assert_eq!(g.state, State::Stable);
        assert!(g.dirty);
        for (w, r) in out {
            let _ = w.send(r);
        }
        assert_eq!(frx.try_recv().expect("synced").assignment, Bytes::from_static(b"F"));
        assert_eq!(g.heartbeat(&f.member_id, None, 1, t0), Ok(()));
        assert_eq!(g.heartbeat(&f.member_id, None, 0, t0), Err(GroupError::IllegalGeneration));
        assert_eq!(g.heartbeat("nobody", None, 1, t0), Err(GroupError::UnknownMemberId));
        g.leave(&f.member_id, None, &cfg(), t0, 0).expect("left");
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(g.heartbeat(&l.member_id, None, 1, t0), Err(GroupError::RebalanceInProgress));
        let mut rl = join(&mut g, req(&l.member_id, 9), t0);
        let j = rl.try_recv().expect("rejoined alone");
        assert_eq!(j.generation, 2);
        assert_eq!(j.members.len(), 1);
    }

    #[test]
    fn an_expired_session_rebalances_and_the_last_member_empties_the_group() {
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        let mut r = join(&mut g, req("", 3), t0);
        g.tick(&cfg(), t0 + Duration::from_millis(150), 0);
        let j = r.try_recv().expect("joined (v3: no member id round trip)");
        let (tx, _rx) = oneshot::channel();
        g.sync(&j.member_id, None, 1, None, None, vec![], tx, 0).expect("sync");
        assert_eq!(g.state, State::Stable);
        g.tick(&cfg(), t0 + Duration::from_secs(11), 0);
        assert_eq!(g.state, State::Empty);
        assert_eq!(g.generation, 2);
        assert!(g.members.is_empty());
    }

    #[test]
    fn a_static_member_rejoining_gets_its_assignment_without_a_rebalance() {
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        let mut a = req("", 9);
        a.instance_id = Some("i-a".into());
        let mut b = req("", 9);
        b.instance_id = Some("i-b".into());
        let mut ra = join(&mut g, a.clone(), t0);
        let mut rb = join(&mut g, b.clone(), t0);
        g.tick(&cfg(), t0 + Duration::from_millis(150), 0);
        let (ja, jb) = (ra.try_recv().expect("a"), rb.try_recv().expect("b"));
        let leader = ja.leader.clone();
        let follower = if leader == ja.member_id { jb.clone() } else { ja.clone() };
        let (tx, _r1) = oneshot::channel();
        g.sync(&follower.member_id, None, 1, None, None, vec![], tx, 0).expect("sync");
        let (tx, _r2) = oneshot::channel();
        let asg = vec![(follower.member_id.clone(), Bytes::from_static(b"F"))];
        g.sync(&leader, None, 1, None, None, asg, tx, 0).expect("sync").expect("stable");
        // The follower restarts: a new member id, same instance id.
        let again = if follower.member_id == ja.member_id { a } else { b };
        let mut r = join(&mut g, again.clone(), t0);
        let j = r.try_recv().expect("answered at once");
        assert_eq!(j.error, None);
        assert_eq!(j.generation, 1, "no rebalance");
        assert_ne!(j.member_id, follower.member_id);
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.members[&j.member_id].assignment, Bytes::from_static(b"F"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat(&follower.member_id, again.instance_id.as_deref(), 1, t0),
            Err(GroupError::FencedInstanceId)
        );
    }

    #[test]
    fn metadata_round_trips_through_its_record() {
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        let mut r = join(&mut g, req("", 3), t0);
        g.tick(&cfg(), t0 + Duration::from_millis(150), 0);
        let j = r.try_recv().expect("joined");
        let (tx, _rx) = oneshot::channel();
        g.sync(
            &j.member_id,
            None,
            1,
            None,
            None,
            vec![(j.member_id.clone(), Bytes::from_static(b"A"))],
            tx,
            0,
        )
        .expect("sync");
        let back = Group::from_value("g", g.to_value(), t0);
        assert_eq!(back.state, State::Stable);
        assert_eq!(back.generation, 1);
        assert_eq!(back.leader, Some(j.member_id.clone()));
        assert_eq!(back.members[&j.member_id].assignment, Bytes::from_static(b"A"));
    }

    #[test]
    fn bad_joins_are_refused_with_kafkas_errors() {
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        let mut r = req("", 9);
        r.session_timeout = Duration::from_millis(10);
        let (tx, _rx) = oneshot::channel();
        assert_eq!(g.join(r, tx, &cfg(), t0, 0), Err(GroupError::InvalidSessionTimeout));
        let (tx, _rx) = oneshot::channel();
        assert_eq!(g.join(req("ghost", 9), tx, &cfg(), t0, 0), Err(GroupError::UnknownMemberId));
        let mut r = req("", 9);
        r.protocols.clear();
        let (tx, _rx) = oneshot::channel();
        assert_eq!(g.join(r, tx, &cfg(), t0, 0), Err(GroupError::InconsistentGroupProtocol));
    }
}
