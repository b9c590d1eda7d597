//! One group of the consumer protocol (KIP-848): members heartbeat with their
//! subscription, the coordinator computes a target assignment with a server
//! assignor (uniform or range) at each new group epoch, and reconciles each
//! member towards it, a partition reaching a member only after its previous
//! owner has revoked it. Pure logic over an injected clock, like `classic`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

use super::GroupError;
use super::records::{self, ConsumerCurrentValue, ConsumerMemberValue, Key, TopicPartitions};

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the coordinator knows of the cluster's topics.
pub trait Topics {
    /// A topic's id and partition count by name.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic name.
    fn names(&self) -> Vec<String>;
    /// A topic's name by id.
    fn name_of(&self, id: Uuid) -> Option<String>;
}

/// The consumer protocol's settings (Kafka's `group.consumer.*`).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(5000),
        }
    }
}

/// The assignors served (`group.consumer.assignors`), the first the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// One ConsumerGroupHeartbeat as the group sees it.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// As sent (-1: absent).
    pub rebalance_timeout_ms: i32,
    pub subscribed_names: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns now (None: unchanged since its last heartbeat).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// The request version (member ids are the client's from v1).
    pub version: i16,
}

/// A refused heartbeat: the error and Kafka's message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: GroupError,
    pub message: String,
}

impl Refusal {
    pub(super) fn new(error: GroupError, message: impl Into<String>) -> Self {
        Refusal { error, message: message.into() }
    }
    fn invalid(message: &str) -> Self {
        Refusal::new(GroupError::InvalidRequest, message)
    }
}

impl From<GroupError> for Refusal {
    fn from(error: GroupError) -> Self {
        Refusal { error, message: error.to_string() }
    }
}

/// Kafka's checks of a heartbeat before the group is looked at
/// (`throwIfConsumerGroupHeartbeatRequestIsInvalid`), with its messages.
pub fn validate(hb: &Heartbeat, group_id: &str) -> Result<(), Refusal> {
    let blank = |s: &str| s.trim().is_empty();
    if (hb.version >= 1 || hb.member_epoch > 0 || hb.member_epoch == -1) && blank(&hb.member_id) {
        return Err(Refusal::invalid("MemberId can't be empty."));
    }
    if blank(group_id) {
        return Err(Refusal::invalid("GroupId can't be empty."));
    }
    if hb.instance_id.as_deref().is_some_and(blank) {
        return Err(Refusal::invalid("InstanceId can't be empty."));
    }
    if hb.rack_id.as_deref().is_some_and(blank) {
        return Err(Refusal::invalid("RackId can't be empty."));
    }
    if hb.member_epoch == 0 {
        if hb.rebalance_timeout_ms == -1 {
            return Err(Refusal::invalid("RebalanceTimeoutMs must be provided in first request."));
        }
        if hb.owned.as_ref().is_none_or(|o| !o.is_empty()) {
            return Err(Refusal::invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if hb.subscribed_names.is_none() && hb.subscribed_regex.is_none() {
            return Err(Refusal::invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            ));
        }
    } else if hb.member_epoch == -2 {
        if hb.instance_id.is_none() {
            return Err(Refusal::invalid("InstanceId can't be null."));
        }
    } else if hb.member_epoch < -2 {
        return Err(Refusal::invalid("MemberEpoch is invalid."));
    }
    if let Some(r) = &hb.subscribed_regex
        && let Err(e) = regex::Regex::new(r)
    {
        return Err(Refusal::new(
            GroupError::InvalidRegularExpression,
            format!("SubscribedTopicRegex `{r}` is not a valid regular expression: {e}."),
        ));
    }
    if let Some(a) = &hb.server_assignor
        && !ASSIGNORS.contains(&a.as_str())
    {
        return Err(Refusal::new(
            GroupError::UnsupportedAssignor,
            format!("ServerAssignor {a} is not supported. Supported assignors: {}.", ASSIGNORS.join(", ")),
        ));
    }
    Ok(())
}

/// A ConsumerGroupHeartbeat answer.
#[derive(Debug, Clone)]
pub struct HeartbeatResult {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed (or on a join).
    pub assignment: Option<Assignment>,
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub(super) previous_epoch: i32,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    /// `subscribed_regex` compiled once, anchored to whole topic names.
    matcher: Option<regex::Regex>,
    server_assignor: Option<String>,
    pub(super) rebalance_timeout: Duration,
    /// What the member may own.
    pub assigned: Assignment,
    /// What it must give up before others get it.
    pub revoking: Assignment,
    pub(super) last_heartbeat: Instant,
    revoke_deadline: Option<Instant>,
    last_sent: Option<Assignment>,
    /// A static member that left with epoch -2, kept for its session.
    static_left: bool,
    /// Set for a member that joined with JoinGroup (the classic protocol)
    /// and is served inside this group (Kafka's online migration).
    pub classic: Option<ClassicPart>,
}

/// What a classic-protocol member of a consumer group carries besides a
/// consumer member's state (Kafka's `ClassicMemberMetadata`, and the
/// member's join and sync timers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicPart {
    /// The JoinGroup's session timeout: the member's own, not the group's.
    pub session_timeout: Duration,
    /// Every (name, metadata) the member offered, in its order.
    pub protocols: Vec<(String, Bytes)>,
    /// Until when it must rejoin, once told REBALANCE_IN_PROGRESS.
    pub(super) join_deadline: Option<Instant>,
    /// Until when it must send SyncGroup after its JoinGroup.
    pub(super) sync_deadline: Option<Instant>,
}

/// A consumer-protocol group.
#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// The target assignment of each member at `assignment_epoch`.
    pub target: HashMap<String, Assignment>,
    /// The assignor of the last target.
    pub assignor: String,
    /// What `__consumer_offsets` holds of the group, so that only what
    /// changed is written.
    written: Written,
}

/// The values last written for a group, by record.
#[derive(Debug, Default)]
struct Written {
    group_epoch: Option<i32>,
    assignment_epoch: Option<i32>,
    /// Per member: its metadata, target and current-assignment values.
    members: HashMap<String, [Bytes; 3]>,
}

/// A record of the group: its key and value (None: a tombstone).
pub type GroupRecord = (Key, Option<Bytes>);

/// Tombstones for a member's three records, in the order Kafka writes them.
fn member_tombstones(group: &str, member: &str) -> [GroupRecord; 3] {
    let (g, m) = (group.to_string(), member.to_string());
    [
        (Key::ConsumerCurrent { group: g.clone(), member: m.clone() }, None),
        (Key::ConsumerTarget { group: g.clone(), member: m.clone() }, None),
        (Key::ConsumerMember { group: g, member: m }, None),
    ]
}

fn to_topic_partitions(a: &Assignment) -> TopicPartitions {
    a.iter().filter(|(_, ps)| !ps.is_empty()).map(|(t, ps)| (*t, ps.iter().copied().collect())).collect()
}

fn from_topic_partitions(tps: TopicPartitions) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in tps {
        out.entry(t).or_default().extend(ps);
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

impl Member {
    pub(super) fn new(id: &str, now: Instant) -> Self {
        Member {
            id: id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 0,
            previous_epoch: 0,
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            matcher: None,
            server_assignor: None,
            rebalance_timeout: Duration::ZERO,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            last_heartbeat: now,
            revoke_deadline: None,
            last_sent: None,
            static_left: false,
            classic: None,
        }
    }

    pub(super) fn set_regex(&mut self, regex: Option<String>) {
        self.matcher = regex.as_deref().and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
        self.subscribed_regex = regex;
    }

    fn metadata_value(&self) -> ConsumerMemberValue {
        ConsumerMemberValue {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed_names: self.subscribed_names.clone(),
            subscribed_regex: self.subscribed_regex.clone(),
            rebalance_timeout_ms: self.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
            server_assignor: self.server_assignor.clone(),
            classic: self.classic.as_ref().map(|c| records::ClassicMemberValue {
                session_timeout_ms: c.session_timeout.as_millis().min(i32::MAX as u128) as i32,
                protocols: c.protocols.clone(),
            }),
        }
    }

    /// The current assignment as Kafka stores it. A static member away is
    /// stored at epoch -2 (Kafka's `LEAVE_GROUP_STATIC_MEMBER_EPOCH`), with
    /// the epoch it left at as the previous epoch, which it gets back.
    fn current_value(&self, assignment_epoch: i32) -> ConsumerCurrentValue {
        let state = if !is_empty(&self.revoking) {
            1
        } else if self.member_epoch != assignment_epoch {
            2
        } else {
            0
        };
        ConsumerCurrentValue {
            member_epoch: if self.static_left { -2 } else { self.member_epoch },
            previous_member_epoch: if self.static_left { self.member_epoch } else { self.previous_epoch },
            state,
            assigned: to_topic_partitions(&self.assigned),
            revoking: to_topic_partitions(&self.revoking),
        }
    }
}

pub(super) fn contains(a: &Assignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|s| s.contains(&p))
}

pub(super) fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = ps.iter().copied().filter(|p| !contains(b, t, *p)).collect();
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

pub(super) fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let both: BTreeSet<i32> = ps.iter().copied().filter(|p| contains(b, t, *p)).collect();
        if !both.is_empty() {
            out.insert(*t, both);
        }
    }
    out
}

pub(super) fn union(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = a.clone();
    for (t, ps) in b {
        out.entry(*t).or_default().extend(ps.iter().copied());
    }
    out
}

pub(super) fn is_empty(a: &Assignment) -> bool {
    a.values().all(BTreeSet::is_empty)
}

impl ConsumerGroup {
    /// Whether any member is live (not a static member away).
    pub fn has_live_members(&self) -> bool {
        self.members.values().any(|m| !m.static_left)
    }

    /// The state Kafka reports: Empty, Assigning (target behind the group
    /// epoch), Reconciling (members behind the target), Stable.
    pub fn state(&self) -> &'static str {
        if self.members.values().all(|m| m.static_left) {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || !is_empty(&m.revoking))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// A member by id, checked against an epoch as OffsetCommit and
    /// OffsetFetch check it: any other epoch is STALE_MEMBER_EPOCH (as Kafka
    /// 4.1 answers, newer or older).
    pub fn validate_epoch(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        let m = self.members.get(member_id).ok_or(GroupError::UnknownMemberId)?;
        if epoch != m.member_epoch {
            // A classic member's generation is its member epoch.
            return Err(if m.classic.is_some() {
                GroupError::IllegalGeneration
            } else {
                GroupError::StaleMemberEpoch
            });
        }
        Ok(())
    }

    /// The topics a member subscribes to, resolved against the cluster.
    pub(super) fn subscribed(&self, m: &Member, topics: &dyn Topics) -> Vec<(Uuid, i32)> {
        let mut names: BTreeSet<String> = m.subscribed_names.iter().cloned().collect();
        if let Some(re) = &m.matcher {
            for n in topics.names() {
                if re.is_match(&n) && !super::is_internal(&n) {
                    names.insert(n);
                }
            }
        }
        names.iter().filter_map(|n| topics.by_name(n)).collect()
    }

    /// Recomputes the target assignment at the group epoch.
    pub(super) fn assign(&mut self, topics: &dyn Topics) {
        let assignor = self
            .members
            .values()
            .filter_map(|m| m.server_assignor.clone())
            .next()
            .unwrap_or_else(|| ASSIGNORS[0].to_string());
        let live: Vec<&Member> = self.members.values().filter(|m| !m.static_left).collect();
        let mut subs: BTreeMap<String, Vec<(Uuid, i32)>> = BTreeMap::new();
        for m in &live {
            subs.insert(m.id.clone(), self.subscribed(m, topics));
        }
        // Static members away for their session keep their target.
        let mut target: HashMap<String, Assignment> = self
            .members
            .values()
            .filter(|m| m.static_left)
            .filter_map(|m| self.target.get(&m.id).map(|a| (m.id.clone(), a.clone())))
            .collect();
        // What each member keeps where it can: its previous target, the
        // partitions it owns now first, so that a partition targeted to a
        // member that has not taken it yet is the one to move when quotas
        // shrink (moving an owned one costs a revocation round trip).
        let previous: HashMap<String, Vec<(Uuid, i32)>> = live
            .iter()
            .map(|m| {
                let target = self.target.get(&m.id).cloned().unwrap_or_default();
                let owned = intersect(&target, &m.assigned);
                let rest = minus(&target, &m.assigned);
                let order = [owned, rest]
                    .into_iter()
                    .flat_map(|a| a.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t, p))))
                    .collect();
                (m.id.clone(), order)
            })
            .collect();
        let computed = if assignor == "range" { range(&subs, &previous) } else { uniform(&subs, &previous) };
        target.extend(computed);
        self.target = target;
        self.assignor = assignor;
        self.assignment_epoch = self.group_epoch;
    }

    /// Whether a partition is held (assigned or being revoked) by a member
    /// other than `member`.
    pub(super) fn held_by_other(&self, member: &str, t: &Uuid, p: i32) -> bool {
        self.members
            .values()
            .any(|m| m.id != member && (contains(&m.assigned, t, p) || contains(&m.revoking, t, p)))
    }

    /// Moves a member towards its target (Kafka's current-assignment builder).
    pub(super) fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let epoch = self.assignment_epoch;
        let Some(m) = self.members.get(member_id) else { return };
        let mut assigned = m.assigned.clone();
        let mut revoking = m.revoking.clone();
        let mut member_epoch = m.member_epoch;
        // Revoked partitions are released once the member no longer reports them.
        if !is_empty(&revoking) && owned.is_some_and(|o| is_empty(&intersect(o, &revoking))) {
            revoking.clear();
        }
        if is_empty(&revoking) {
            let give_up = minus(&assigned, &target);
            // A member that reports it no longer owns them has nothing to
            // revoke (an eager classic member rejoins owning nothing).
            let still_owned = owned.is_none_or(|o| !is_empty(&intersect(o, &give_up)));
            if !is_empty(&give_up) && still_owned {
                revoking = give_up;
                assigned = intersect(&assigned, &target);
            } else {
                member_epoch = epoch;
                let mut add = Assignment::new();
                for (t, ps) in minus(&target, &assigned) {
                    for p in ps {
                        if !self.held_by_other(member_id, &t, p) {
                            add.entry(t).or_default().insert(p);
                        }
                    }
                }
                assigned = union(&intersect(&assigned, &target), &add);
            }
        }
        let Some(m) = self.members.get_mut(member_id) else { return };
        // Classic members have no revocation timer: their join and sync
        // timers stand for it.
        m.revoke_deadline = if is_empty(&revoking) || m.classic.is_some() {
            None
        } else {
            m.revoke_deadline.or(Some(now + m.rebalance_timeout))
        };
        if member_epoch != m.member_epoch {
            m.previous_epoch = m.member_epoch;
        }
        m.member_epoch = member_epoch;
        m.assigned = assigned;
        m.revoking = revoking;
    }

    /// ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &dyn Topics,
        cfg: &ConsumerConfig,
        group_id: &str,
        now: Instant,
    ) -> Result<HeartbeatResult, Refusal> {
        let unknown = |id: &str| {
            Refusal::new(
                GroupError::UnknownMemberId,
                format!("Member {id} is not a member of group {group_id}."),
            )
        };
        let left = |id: String, epoch: i32| HeartbeatResult {
            member_id: id,
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        if hb.member_epoch == -1 || hb.member_epoch == -2 {
            let id = match (&hb.instance_id, hb.member_id.is_empty()) {
                (Some(i), true) => {
                    self.members.values().find(|m| m.instance_id.as_ref() == Some(i)).map(|m| m.id.clone())
                }
                _ => Some(hb.member_id.clone()),
            };
            let Some(id) = id.filter(|id| self.members.contains_key(id)) else {
                return Err(unknown(&hb.member_id));
            };
            if hb.member_epoch == -2 && hb.instance_id.is_some() {
                if let Some(m) = self.members.get_mut(&id) {
                    m.static_left = true;
                    m.last_heartbeat = now;
                }
            } else {
                self.members.remove(&id);
                self.group_epoch += 1;
                self.assign(topics);
            }
            return Ok(left(id, hb.member_epoch));
        }
        let joining = hb.member_epoch == 0;
        let mut new_member = false;
        let id = if joining {
            let (id, new) = self.join(&hb, now)?;
            new_member = new;
            id
        } else {
            let m = self.members.get(&hb.member_id).ok_or_else(|| unknown(&hb.member_id))?;
            let owned_ok =
                hb.owned.as_ref().is_none_or(|o| is_empty(&minus(o, &union(&m.assigned, &m.revoking))));
            if hb.member_epoch != m.member_epoch && !(hb.member_epoch == m.previous_epoch && owned_ok) {
                let which = if hb.member_epoch > m.member_epoch { "greater" } else { "smaller" };
                return Err(Refusal::new(
                    GroupError::FencedMemberEpoch,
                    format!(
                        "The consumer group member has a {which} member epoch ({}) than the one known by the \
                         group coordinator ({}). The member must abandon all its partitions and rejoin.",
                        hb.member_epoch, m.member_epoch
                    ),
                ));
            }
            if let Some(i) = &hb.instance_id
                && m.instance_id.as_ref() != Some(i)
            {
                return Err(GroupError::FencedInstanceId.into());
            }
            hb.member_id.clone()
        };
        let Some(m) = self.members.get_mut(&id) else { return Err(unknown(&id)) };
        m.last_heartbeat = now;
        m.classic = None;
        m.client_id = hb.client_id.clone();
        m.client_host = hb.client_host.clone();
        m.rack_id = hb.rack_id.clone().or(m.rack_id.take());
        let mut changed = false;
        if let Some(names) = &hb.subscribed_names {
            let mut names = names.clone();
            names.sort();
            if names != m.subscribed_names {
                m.subscribed_names = names;
                changed = true;
            }
        }
        if hb.subscribed_regex.is_some() && hb.subscribed_regex != m.subscribed_regex {
            m.set_regex(hb.subscribed_regex.clone());
            changed = true;
        }
        if hb.server_assignor.is_some() {
            m.server_assignor = hb.server_assignor.clone();
        }
        if hb.rebalance_timeout_ms > 0 {
            m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
        }
        if changed || new_member {
            self.group_epoch += 1;
        }
        // New topics matching a regex, or partitions added, change the target.
        if self.assignment_epoch < self.group_epoch || self.target_outdated(topics) {
            if self.assignment_epoch == self.group_epoch {
                self.group_epoch += 1;
            }
            self.assign(topics);
        }
        self.reconcile(&id, hb.owned.as_ref(), now);
        let Some(m) = self.members.get_mut(&id) else { return Err(unknown(&id)) };
        // Kafka sends the assignment on a full request (a join, or every
        // field set again after an error) and when it changed.
        let full = joining
            || (hb.rebalance_timeout_ms != -1
                && (hb.subscribed_names.is_some() || hb.subscribed_regex.is_some())
                && hb.owned.is_some());
        let assignment = if full || m.last_sent.as_ref() != Some(&m.assigned) {
            m.last_sent = Some(m.assigned.clone());
            Some(m.assigned.clone())
        } else {
            None
        };
        Ok(HeartbeatResult {
            member_id: id,
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as i32,
            assignment,
        })
    }

    /// Whether the target misses partitions the subscriptions now cover.
    pub(super) fn target_outdated(&self, topics: &dyn Topics) -> bool {
        let mut targeted: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for a in self.target.values() {
            for (t, ps) in a {
                targeted.extend(ps.iter().map(|p| (*t, *p)));
            }
        }
        let mut wanted: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for m in self.members.values().filter(|m| !m.static_left) {
            for (t, n) in self.subscribed(m, topics) {
                wanted.extend((0..n).map(|p| (t, p)));
            }
        }
        targeted != wanted
    }

    /// A join (epoch 0): a new member, a static member back, or a member
    /// rejoining after it was fenced.
    /// Returns the member id and whether the member is new (a static member
    /// back takes its old place without a new group epoch).
    fn join(&mut self, hb: &Heartbeat, now: Instant) -> Result<(String, bool), Refusal> {
        let id = if hb.version >= 1 { hb.member_id.clone() } else { Uuid::new_v4().to_string() };
        if let Some(i) = &hb.instance_id
            && let Some(old) = self.members.values().find(|m| m.instance_id.as_ref() == Some(i)).cloned()
        {
            if !old.static_left && old.id != id {
                return Err(Refusal::new(
                    GroupError::UnreleasedInstanceId,
                    format!("Static member {} with instance id {i} is still present in the group.", old.id),
                ));
            }
            // KIP-848 static membership: the new incarnation takes the old
            // one's place, assignment and epoch.
            self.members.remove(&old.id);
            if let Some(t) = self.target.remove(&old.id) {
                self.target.insert(id.clone(), t);
            }
            let mut m = old;
            m.id = id.clone();
            m.static_left = false;
            m.last_sent = None;
            m.last_heartbeat = now;
            self.members.insert(id.clone(), m);
            return Ok((id, false));
        }
        let mut m = Member::new(&id, now);
        m.instance_id = hb.instance_id.clone();
        m.rack_id = hb.rack_id.clone();
        m.client_id = hb.client_id.clone();
        m.client_host = hb.client_host.clone();
        m.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms.max(0) as u64);
        self.members.insert(id.clone(), m);
        Ok((id, true))
    }

    /// The records that bring `__consumer_offsets` up to date with the
    /// group (Kafka's record types, in the order Kafka writes them), and
    /// notes them as written.
    pub fn log_changes(&mut self, group: &str) -> Vec<GroupRecord> {
        let mut metadata = Vec::new();
        let mut targets = Vec::new();
        let mut currents = Vec::new();
        let mut tombstones = Vec::new();
        let empty = Assignment::new();
        for m in self.members.values() {
            let target = self.target.get(&m.id).unwrap_or(&empty);
            let values = [
                records::encode_consumer_member(&m.metadata_value()),
                records::encode_target(&to_topic_partitions(target)),
                records::encode_current(&m.current_value(self.assignment_epoch)),
            ];
            let old = self.written.members.get(&m.id);
            let (g, id) = (group.to_string(), m.id.clone());
            if old.is_none_or(|o| o[0] != values[0]) {
                metadata.push((
                    Key::ConsumerMember { group: g.clone(), member: id.clone() },
                    Some(values[0].clone()),
                ));
            }
            if old.is_none_or(|o| o[1] != values[1]) {
                targets.push((
                    Key::ConsumerTarget { group: g.clone(), member: id.clone() },
                    Some(values[1].clone()),
                ));
            }
            if old.is_none_or(|o| o[2] != values[2]) {
                currents.push((Key::ConsumerCurrent { group: g, member: id }, Some(values[2].clone())));
            }
            self.written.members.insert(m.id.clone(), values);
        }
        let gone: Vec<String> =
            self.written.members.keys().filter(|id| !self.members.contains_key(*id)).cloned().collect();
        for id in gone {
            self.written.members.remove(&id);
            tombstones.extend(member_tombstones(group, &id));
        }
        let mut out = tombstones;
        out.extend(metadata);
        if self.written.group_epoch != Some(self.group_epoch) {
            self.written.group_epoch = Some(self.group_epoch);
            out.push((
                Key::ConsumerGroup { group: group.to_string() },
                Some(records::encode_epoch(self.group_epoch)),
            ));
        }
        out.extend(targets);
        if self.written.assignment_epoch != Some(self.assignment_epoch) {
            self.written.assignment_epoch = Some(self.assignment_epoch);
            out.push((
                Key::ConsumerTargetEpoch { group: group.to_string() },
                Some(records::encode_epoch(self.assignment_epoch)),
            ));
        }
        out.extend(currents);
        out
    }

    /// Forgets what was written (a write failed): the next
    /// `log_changes` writes every record again.
    pub fn forget_written(&mut self) {
        self.written = Written::default();
    }

    /// Tombstones for every record of the group (it is deleted or turned
    /// into a classic group).
    pub fn tombstones(&self, group: &str) -> Vec<GroupRecord> {
        let mut out = Vec::new();
        for id in self.written.members.keys() {
            out.extend(member_tombstones(group, id));
        }
        out.push((Key::ConsumerTargetEpoch { group: group.to_string() }, None));
        out.push((Key::ConsumerGroup { group: group.to_string() }, None));
        out
    }

    /// Applies one record read back from `__consumer_offsets` (replay). A
    /// member's timers start again at `now`, as when Kafka loads a group.
    pub fn restore(
        &mut self,
        key: Key,
        value: Option<Bytes>,
        now: Instant,
    ) -> Result<(), records::RecordError> {
        match (key, value) {
            (Key::ConsumerGroup { .. }, Some(v)) => self.group_epoch = records::decode_epoch(v)?,
            (Key::ConsumerTargetEpoch { .. }, Some(v)) => self.assignment_epoch = records::decode_epoch(v)?,
            (Key::ConsumerMember { member, .. }, Some(v)) => {
                let v = records::decode_consumer_member(v)?;
                let m = self.members.entry(member.clone()).or_insert_with(|| Member::new(&member, now));
                m.instance_id = v.instance_id;
                m.rack_id = v.rack_id;
                m.client_id = v.client_id;
                m.client_host = v.client_host;
                m.subscribed_names = v.subscribed_names;
                m.set_regex(v.subscribed_regex);
                m.rebalance_timeout = Duration::from_millis(v.rebalance_timeout_ms.max(0) as u64);
                m.server_assignor = v.server_assignor;
                m.classic = v.classic.map(|c| ClassicPart {
                    session_timeout: Duration::from_millis(c.session_timeout_ms.max(0) as u64),
                    protocols: c.protocols,
                    join_deadline: None,
                    sync_deadline: None,
                });
            }
            (Key::ConsumerMember { member, .. }, None) => {
                self.members.remove(&member);
                self.target.remove(&member);
            }
            (Key::ConsumerTarget { member, .. }, Some(v)) => {
                self.target.insert(member, from_topic_partitions(records::decode_target(v)?));
            }
            (Key::ConsumerTarget { member, .. }, None) => {
                self.target.remove(&member);
            }
            (Key::ConsumerCurrent { member, .. }, Some(v)) => {
                let v = records::decode_current(v)?;
                let m = self.members.entry(member.clone()).or_insert_with(|| Member::new(&member, now));
                m.static_left = v.member_epoch == -2;
                if m.static_left {
                    m.member_epoch = v.previous_member_epoch;
                } else {
                    m.member_epoch = v.member_epoch;
                    m.previous_epoch = v.previous_member_epoch;
                }
                m.assigned = from_topic_partitions(v.assigned);
                m.revoking = from_topic_partitions(v.revoking);
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends a replay: revocations under way get a fresh deadline, and what
    /// was read counts as written.
    pub fn restored(&mut self, group: &str, now: Instant) {
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            m.revoke_deadline = (!is_empty(&m.revoking)).then(|| now + m.rebalance_timeout);
        }
        self.assignor = self
            .members
            .values()
            .filter_map(|m| m.server_assignor.clone())
            .next()
            .unwrap_or_else(|| ASSIGNORS[0].to_string());
        let _ = self.log_changes(group);
    }

    /// Expired sessions and members that did not revoke (or, classic
    /// members, rejoin or sync) in time leave. Returns whether any left.
    pub fn tick(&mut self, cfg: &ConsumerConfig, topics: &dyn Topics, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let session = m.classic.as_ref().map_or(cfg.session_timeout, |c| c.session_timeout);
                let classic_late = m.classic.as_ref().is_some_and(|c| {
                    c.join_deadline.is_some_and(|d| now >= d) || c.sync_deadline.is_some_and(|d| now >= d)
                });
                now >= m.last_heartbeat + session
                    || m.revoke_deadline.is_some_and(|d| now >= d)
                    || classic_late
            })
            .map(|m| m.id.clone())
            .collect();
        if gone.is_empty() {
            return false;
        }
        for id in &gone {
            tracing::info!(member = %id, "consumer group member expired");
            self.members.remove(id);
        }
        self.group_epoch += 1;
        self.assign(topics);
        true
    }
}

/// The uniform assignor: every subscribed partition to one member, counts as
/// even as the subscriptions allow, each member keeping what its previous
/// target gave it where that fits (in `previous`' order of preference).
fn uniform(
    subs: &BTreeMap<String, Vec<(Uuid, i32)>>,
    previous: &HashMap<String, Vec<(Uuid, i32)>>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = subs.keys().map(|m| (m.clone(), Assignment::new())).collect();
    if subs.is_empty() {
        return out;
    }
    let mut eligible: BTreeMap<(Uuid, i32), Vec<&String>> = BTreeMap::new();
    for (m, topics) in subs {
        for (t, n) in topics {
            for p in 0..*n {
                eligible.entry((*t, p)).or_default().push(m);
            }
        }
    }
    let total = eligible.len();
    let quota = total.div_ceil(subs.len());
    let mut count: HashMap<&String, usize> = subs.keys().map(|m| (m, 0)).collect();
    let mut placed: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // Sticky: keep the previous target up to the quota.
    for (m, _) in subs.iter() {
        for &(t, p) in previous.get(m).into_iter().flatten() {
            let key = (t, p);
            let ok = eligible.get(&key).is_some_and(|e| e.contains(&m));
            if ok && !placed.contains(&key) && count[m] < quota {
                placed.insert(key);
                out.entry(m.clone()).or_default().entry(t).or_default().insert(p);
                *count.entry(m).or_default() += 1;
            }
        }
    }
    for (key, members) in &eligible {
        if placed.contains(key) {
            continue;
        }
        let Some(m) = members.iter().min_by_key(|m| (count[*m], **m)) else { continue };
        out.entry((*m).clone()).or_default().entry(key.0).or_default().insert(key.1);
        *count.entry(m).or_default() += 1;
    }
    // Even out what stickiness left uneven (a member above the floor gives to
    // one two below it, when both may own the partition).
    while let (Some(max), Some(min)) = (
        count
            .iter()
            .max_by_key(|(m, c)| (**c, std::cmp::Reverse((**m).clone())))
            .map(|(m, c)| ((*m).clone(), *c)),
        count.iter().min_by_key(|(m, c)| (**c, (**m).clone())).map(|(m, c)| ((*m).clone(), *c)),
    ) {
        if max.1 <= min.1 + 1 {
            break;
        }
        let movable = out.get(&max.0).and_then(|a| {
            a.iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
                .find(|k| eligible.get(k).is_some_and(|e| e.iter().any(|x| **x == min.0)))
        });
        let Some((t, p)) = movable else { break };
        if let Some(set) = out.get_mut(&max.0).and_then(|a| a.get_mut(&t)) {
            set.remove(&p);
        }
        out.entry(min.0.clone()).or_default().entry(t).or_default().insert(p);
        if let Some(c) = count.iter_mut().find(|(m, _)| ***m == max.0).map(|(_, c)| c) {
            *c -= 1;
        }
        if let Some(c) = count.iter_mut().find(|(m, _)| ***m == min.0).map(|(_, c)| c) {
            *c += 1;
        }
    }
    for a in out.values_mut() {
        a.retain(|_, ps| !ps.is_empty());
    }
    out
}

/// The range assignor: per topic, ranges of partitions to the members
/// subscribed to it in member id order (each `n / k`, the first `n % k` one
/// more), sticky as Kafka's: a member keeps what its previous target gave it
/// up to its quota (in `previous`' order of preference), and only the rest is
/// handed out.
fn range(
    subs: &BTreeMap<String, Vec<(Uuid, i32)>>,
    previous: &HashMap<String, Vec<(Uuid, i32)>>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = subs.keys().map(|m| (m.clone(), Assignment::new())).collect();
    let mut by_topic: BTreeMap<Uuid, (i32, Vec<&String>)> = BTreeMap::new();
    for (m, topics) in subs {
        for (t, n) in topics {
            by_topic.entry(*t).or_insert((*n, Vec::new())).1.push(m);
        }
    }
    for (t, (n, members)) in by_topic {
        let k = members.len() as i32;
        let (min, mut extra) = (n / k, n % k);
        let mut kept: Vec<(BTreeSet<i32>, i32)> = Vec::with_capacity(members.len());
        for m in &members {
            let prev: Vec<i32> = previous
                .get(*m)
                .into_iter()
                .flatten()
                .filter(|(topic, p)| *topic == t && *p < n)
                .map(|(_, p)| *p)
                .collect();
            let mut quota = min;
            if prev.len() as i32 > min && extra > 0 {
                quota += 1;
                extra -= 1;
            }
            kept.push((prev.into_iter().take(quota.max(0) as usize).collect(), quota));
        }
        // The extras left go to the first members still at the floor.
        for (_, quota) in kept.iter_mut() {
            if extra > 0 && *quota == min {
                *quota += 1;
                extra -= 1;
            }
        }
        let taken: BTreeSet<i32> = kept.iter().flat_map(|(s, _)| s.iter().copied()).collect();
        let mut free = (0..n).filter(|p| !taken.contains(p));
        for (set, quota) in kept.iter_mut() {
            while (set.len() as i32) < *quota {
                let Some(p) = free.next() else { break };
                set.insert(p);
            }
        }
        for (m, (set, _)) in members.iter().zip(kept) {
            if !set.is_empty() {
                out.entry((*m).clone()).or_default().insert(t, set);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneTopic(Uuid, i32);
    impl Topics for OneTopic {
        fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            (name == "t").then_some((self.0, self.1))
        }
        fn names(&self) -> Vec<String> {
            vec!["t".into()]
        }
        fn name_of(&self, id: Uuid) -> Option<String> {
            (id == self.0).then(|| "t".into())
        }
    }

    fn hb(member: &str, epoch: i32, owned: Option<Assignment>) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_names: (epoch == 0).then(|| vec!["t".to_string()]),
            subscribed_regex: None,
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            version: 1,
        }
    }

    impl ConsumerGroup {
        fn heartbeat_test(
            &mut self,
            hb: Heartbeat,
            topics: &dyn Topics,
            cfg: &ConsumerConfig,
            now: Instant,
        ) -> Result<HeartbeatResult, GroupError> {
            self.heartbeat(hb, topics, cfg, "g", now).map_err(|r| r.error)
        }
    }

    fn in_order(a: &HashMap<String, Assignment>) -> HashMap<String, Vec<(Uuid, i32)>> {
        a.iter()
            .map(|(m, x)| (m.clone(), x.iter().flat_map(|(t, ps)| ps.iter().map(|p| (*t, *p))).collect()))
            .collect()
    }

    #[test]
    fn a_shrinking_quota_moves_what_the_member_has_not_taken_yet() {
        // a owns 4 and is targeted 1 as well (freed by a member that left);
        // when b joins, a keeps the partition it owns and 1 moves, whichever
        // of them sorts first.
        let t = Uuid::new_v4();
        let subs: BTreeMap<String, Vec<(Uuid, i32)>> =
            ["a", "b"].iter().map(|m| (m.to_string(), vec![(t, 2)])).collect();
        let mut previous = HashMap::new();
        previous.insert("a".to_string(), vec![(t, 1), (t, 0)]);
        for out in [uniform(&subs, &previous), range(&subs, &previous)] {
            assert_eq!(out["a"][&t], BTreeSet::from([1]), "a keeps what it owns");
            assert_eq!(out["b"][&t], BTreeSet::from([0]));
        }
        // And through the group: a member targeted a partition it has not
        // taken yet gives up that one, so a newcomer gets it at once.
        let topics = OneTopic(t, 2);
        let cfg = ConsumerConfig::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        for m in ["a", "x"] {
            g.heartbeat_test(hb(m, 0, None), &topics, &cfg, now).expect("joins");
        }
        // x joined second: a must revoke one; let it, then x takes it.
        let a = g.heartbeat_test(hb("a", 1, None), &topics, &cfg, now).expect("a");
        let kept = a.assignment.expect("a's share");
        g.heartbeat_test(hb("a", 1, Some(kept.clone())), &topics, &cfg, now).expect("a revoked");
        let x = g.heartbeat_test(hb("x", 2, Some(Assignment::new())), &topics, &cfg, now).expect("x");
        assert_eq!(x.assignment.as_ref().map(count), Some(1));
        // x leaves: its partition is targeted to a, which has not taken it.
        g.heartbeat_test(hb("x", -1, None), &topics, &cfg, now).expect("x leaves");
        assert_eq!(g.target["a"].values().map(BTreeSet::len).sum::<usize>(), 2);
        // y joins before a heartbeats: y gets x's old partition at once.
        let y = g.heartbeat_test(hb("y", 0, Some(Assignment::new())), &topics, &cfg, now).expect("y");
        let y_owns = y.assignment.expect("y's share");
        assert_eq!(count(&y_owns), 1, "nothing for y to wait for");
        assert!(is_empty(&intersect(&y_owns, &kept)));
    }

    #[test]
    fn a_group_comes_back_whole_from_its_records() {
        let topics = OneTopic(Uuid::new_v4(), 4);
        let cfg = ConsumerConfig::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let mut log: Vec<GroupRecord> = Vec::new();
        for m in ["a", "b", "c"] {
            g.heartbeat_test(hb(m, 0, None), &topics, &cfg, now).expect("joins");
            log.extend(g.log_changes("g"));
        }
        g.heartbeat_test(hb("a", 1, None), &topics, &cfg, now).expect("a");
        log.extend(g.log_changes("g"));
        g.heartbeat_test(hb("c", -1, None), &topics, &cfg, now).expect("c leaves");
        log.extend(g.log_changes("g"));
        assert!(g.log_changes("g").is_empty(), "nothing changed, nothing written");
        let mut back = ConsumerGroup::default();
        for (k, v) in log.clone() {
            back.restore(k, v, now).expect("restore");
        }
        back.restored("g", now);
        assert_eq!((back.group_epoch, back.assignment_epoch), (g.group_epoch, g.assignment_epoch));
        assert_eq!(back.target, g.target);
        assert_eq!(back.members.keys().collect::<Vec<_>>(), vec!["a", "b"], "c's tombstones removed it");
        for (id, m) in &g.members {
            let r = &back.members[id];
            assert_eq!(
                (r.member_epoch, r.previous_epoch, &r.assigned, &r.revoking, &r.subscribed_names),
                (m.member_epoch, m.previous_epoch, &m.assigned, &m.revoking, &m.subscribed_names),
                "{id}"
            );
        }
        assert!(back.log_changes("g").is_empty(), "what was read counts as written");
        // A deleted group writes a tombstone for every record it has.
        let dead: BTreeSet<Vec<u8>> = g
            .tombstones("g")
            .into_iter()
            .map(|(k, v)| {
                assert!(v.is_none());
                records::encode_key(&k).to_vec()
            })
            .collect();
        let live: BTreeSet<Vec<u8>> = log
            .iter()
            .filter(|(k, _)| !matches!(k, Key::ConsumerMember { member, .. } | Key::ConsumerTarget { member, .. } | Key::ConsumerCurrent { member, .. } if member == "c"))
            .map(|(k, _)| records::encode_key(k).to_vec())
            .collect();
        assert_eq!(dead, live);
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn a_partition_reaches_a_member_only_after_its_owner_revoked_it() {
        let topics = OneTopic(Uuid::new_v4(), 6);
        let cfg = ConsumerConfig::default();
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat_test(hb("a", 0, None), &topics, &cfg, now).expect("a joins");
        assert_eq!(a.member_epoch, 1);
        let a_owns = a.assignment.expect("an assignment");
        assert_eq!(count(&a_owns), 6);
        let b = g.heartbeat_test(hb("b", 0, None), &topics, &cfg, now).expect("b joins");
        // b is at the new epoch at once (nothing to revoke), but gets nothing
        // yet: every partition it is to own is still a's.
        assert_eq!(b.member_epoch, 2);
        assert_eq!(b.assignment.as_ref().map(count), Some(0));
        assert_eq!(g.state(), "Reconciling");
        // a learns it must give three up; b still gets nothing until a reports it did.
        let a2 = g.heartbeat_test(hb("a", 1, None), &topics, &cfg, now).expect("a");
        let kept = a2.assignment.expect("a's smaller assignment");
        assert_eq!(count(&kept), 3);
        let b2 = g.heartbeat_test(hb("b", b.member_epoch, None), &topics, &cfg, now);
        assert_eq!(b2.map(|r| r.assignment.map(|x| count(&x)).unwrap_or(0)).ok(), Some(0));
        // a reports it owns only what it kept: its epoch moves, b gets the rest.
        let a3 = g.heartbeat_test(hb("a", 1, Some(kept.clone())), &topics, &cfg, now).expect("a");
        assert_eq!(a3.member_epoch, 2);
        let b3 = g.heartbeat_test(hb("b", 2, Some(Assignment::new())), &topics, &cfg, now).expect("b");
        assert_eq!(b3.member_epoch, 2);
        let b_owns = b3.assignment.expect("b's assignment");
        assert_eq!(count(&b_owns), 3);
        assert!(is_empty(&intersect(&kept, &b_owns)), "no partition owned twice");
        assert_eq!(g.state(), "Stable");
        // Commits are checked by epoch.
        assert_eq!(g.validate_epoch("b", 2), Ok(()));
        assert_eq!(g.validate_epoch("b", 1), Err(GroupError::StaleMemberEpoch));
        assert_eq!(g.validate_epoch("b", 3), Err(GroupError::StaleMemberEpoch));
        assert_eq!(g.validate_epoch("x", 2), Err(GroupError::UnknownMemberId));
        // A heartbeat at a wrong epoch is fenced.
        assert_eq!(
            g.heartbeat_test(hb("b", 7, None), &topics, &cfg, now).map(|r| r.member_epoch),
            Err(GroupError::FencedMemberEpoch)
        );
        assert!(validate(&hb("", 0, Some(Assignment::new())), "g").is_err(), "v1 needs a member id");
        assert!(validate(&hb("a", 0, None), "g").is_err(), "a join sends an empty owned set");
        assert_eq!(validate(&hb("a", 0, Some(Assignment::new())), "g"), Ok(()));
        assert_eq!(
            validate(&hb("a", 0, Some(Assignment::new())), " ").map_err(|r| r.message),
            Err("GroupId can't be empty.".into())
        );
    }

    #[test]
    fn assignors_spread_partitions_evenly() {
        let t = Uuid::new_v4();
        let subs: BTreeMap<String, Vec<(Uuid, i32)>> =
            ["a", "b", "c", "d"].iter().map(|m| (m.to_string(), vec![(t, 6)])).collect();
        for out in [uniform(&subs, &HashMap::new()), range(&subs, &HashMap::new())] {
            let mut counts: Vec<usize> = out.values().map(count).collect();
            counts.sort();
            assert_eq!(counts, vec![1, 1, 2, 2]);
            let all: BTreeSet<i32> = out.values().flat_map(|a| a.values().flatten().copied()).collect();
            assert_eq!(all.len(), 6, "each partition once");
        }
        assert_eq!(range(&subs, &HashMap::new())["a"][&t], BTreeSet::from([0, 1]));
        // Sticky: a fifth member takes from the ones above quota only.
        let before = range(&subs, &HashMap::new());
        let mut five = subs.clone();
        five.insert("e".into(), vec![(t, 6)]);
        let after = range(&five, &in_order(&before));
        for m in ["a", "b", "c", "d"] {
            let kept = after.get(m).and_then(|a| a.get(&t)).cloned().unwrap_or_default();
            assert!(kept.is_subset(&before[m][&t]), "{m} keeps only its own");
        }
        assert_eq!(after.values().map(count).sum::<usize>(), 6);
    }
}
