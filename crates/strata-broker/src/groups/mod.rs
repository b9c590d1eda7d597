//! The group coordinator (classic protocol). Its state lives in
//! `__consumer_offsets` as Kafka keeps it: one coordinator shard per
//! partition of that topic, which appends every commit and group change to
//! its partition before answering and rebuilds its groups from it on start
//! (`docs/groups.md`).

mod classic;
pub(crate) mod consumer;
mod error;
mod migration;
mod records;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_stream::Stream;
use tokio::sync::oneshot;

pub use classic::GroupConfig;
pub(crate) use classic::JoinRequest;
use classic::{Committed, Group, JoinResult, State, SyncResult};
pub use error::GroupError;
use records::{Key, OffsetValue};

use crate::broker::now_ms;
use crate::internal_records::Entry;

/// The internal topic of group state.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_PARTITIONS: i32 = 50;

/// Whether a topic is one of Kafka's internal topics (Metadata marks it so).
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == "__transaction_state"
}

/// The partition of `__consumer_offsets` that holds a group, as Kafka
/// chooses it: the Java `String.hashCode` of the group id, made
/// non-negative (Kafka's `Utils.abs`), modulo the partition count.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// One shard: the groups of one `__consumer_offsets` partition.
pub(crate) struct Shard {
    stream: Arc<Stream>,
    groups: Mutex<HashMap<String, Group>>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A record for `__consumer_offsets`: a key and a value (None: a tombstone).
type LogRecord = (Key, Option<Bytes>);

/// The shards by partition; `None` where another broker of a cluster
/// leads the partition.
type Shards = Arc<Vec<Option<Arc<Shard>>>>;

/// The coordinator: its shards once loaded.
pub struct Coordinator {
    pub(crate) config: GroupConfig,
    pub(crate) consumer_config: consumer::ConsumerConfig,
    shards: Mutex<Option<Shards>>,
    loading: tokio::sync::Mutex<()>,
}

/// A topic's partitions with their committed offsets (None: none).
pub(crate) type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// The commit of one partition, as the coordinator takes it.
pub(crate) struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl Coordinator {
    /// A coordinator not yet loaded.
    pub fn new(config: GroupConfig) -> Self {
        Coordinator {
            config,
            consumer_config: Default::default(),
            shards: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the shards are loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded().is_some()
    }

    fn loaded(&self) -> Option<Shards> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads the shards from their partitions' streams (once); a partition
    /// led by another broker of a cluster (`None`) has no shard here until
    /// [`Coordinator::load_shard`].
    pub(crate) async fn load(&self, streams: Vec<Option<Arc<Stream>>>) -> Result<(), crate::BrokerError> {
        let _guard = self.loading.lock().await;
        if self.loaded().is_some() {
            return Ok(());
        }
        let mut shards = Vec::with_capacity(streams.len());
        let now = Instant::now();
        let mut total = 0usize;
        for stream in streams {
            let Some(stream) = stream else {
                shards.push(None);
                continue;
            };
            let groups = replay(&stream, now).await?;
            total += groups.len();
            shards.push(Some(Arc::new(Shard { stream, groups: Mutex::new(groups) })));
        }
        tracing::info!(partitions = shards.len(), groups = total, "group coordinator loaded");
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(shards));
        Ok(())
    }

    /// Loads the shard of partition `p` (this broker now leads it), once the
    /// coordinator is loaded; replaces what was there.
    pub(crate) async fn load_shard(&self, p: usize, stream: Arc<Stream>) -> Result<(), crate::BrokerError> {
        let _guard = self.loading.lock().await;
        let Some(current) = self.loaded() else { return Ok(()) };
        let groups = replay(&stream, Instant::now()).await?;
        let mut next: Vec<Option<Arc<Shard>>> = current.as_ref().clone();
        if let Some(slot) = next.get_mut(p) {
            tracing::info!(partition = p, groups = groups.len(), "group coordinator shard loaded");
            *slot = Some(Arc::new(Shard { stream, groups: Mutex::new(groups) }));
        }
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
        Ok(())
    }

    /// Drops the shard of partition `p` (moved to another broker).
    pub(crate) async fn unload_shard(&self, p: usize) {
        let _guard = self.loading.lock().await;
        let Some(current) = self.loaded() else { return };
        let mut next: Vec<Option<Arc<Shard>>> = current.as_ref().clone();
        if let Some(slot) = next.get_mut(p) {
            *slot = None;
        }
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
        tracing::info!(partition = p, "group coordinator shard unloaded");
    }

    fn shard(&self, group: &str) -> Result<Arc<Shard>, GroupError> {
        let shards = self.loaded().ok_or(GroupError::CoordinatorLoadInProgress)?;
        let p = partition_for(group, shards.len() as i32) as usize;
        shards.get(p).ok_or(GroupError::CoordinatorNotAvailable)?.clone().ok_or(GroupError::NotCoordinator)
    }

    /// Time-driven transitions of every group.
    pub(crate) fn tick(&self, topics: &dyn consumer::Topics) -> Vec<(Arc<Shard>, Vec<LogRecord>)> {
        let Some(shards) = self.loaded() else { return Vec::new() };
        let now = Instant::now();
        let wall = now_ms();
        let mut out = Vec::new();
        for shard in shards.iter().flatten() {
            let mut records = Vec::new();
            {
                let mut groups = shard.lock();
                for g in groups.values_mut() {
                    if g.is_active() {
                        g.tick(&self.config, now, wall);
                    }
                    let mut turns_classic = false;
                    let mut epoch = 0;
                    if let Some(c) = g.consumer.as_mut() {
                        epoch = c.group_epoch;
                        if c.tick(&self.consumer_config, topics, now) {
                            turns_classic = migration::should_downgrade(c);
                            if c.members.is_empty() {
                                g.state_timestamp = wall;
                            }
                        }
                        if !turns_classic {
                            records.extend(c.log_changes(&g.id));
                        }
                    }
                    if turns_classic {
                        records.extend(migration::downgrade(g, epoch, topics, &self.config, now, wall));
                    }
                    if g.dirty {
                        g.dirty = false;
                        records.push(group_record(g));
                    }
                }
            }
            if !records.is_empty() {
                out.push((Arc::clone(shard), records));
            }
        }
        out
    }

    /// Offsets and empty groups past `retention` (Kafka's
    /// `offsets.retention.minutes`): an empty group's offsets expire
    /// `retention` after it became empty, a group that never had members
    /// (offsets committed by an admin or `assign()` consumer) by each
    /// offset's commit time; an empty group with no offsets left is deleted.
    pub(crate) fn expire(&self, retention: Duration) -> Vec<(Arc<Shard>, Vec<LogRecord>)> {
        let Some(shards) = self.loaded() else { return Vec::new() };
        let now = now_ms();
        let retention = retention.as_millis() as i64;
        let mut out = Vec::new();
        for shard in shards.iter().flatten() {
            let mut records = Vec::new();
            let mut groups = shard.lock();
            groups.retain(|id, g| {
                let busy =
                    g.state != State::Empty || g.consumer.as_ref().is_some_and(|c| !c.members.is_empty());
                if busy || !g.pending_txn.is_empty() {
                    return true;
                }
                let never_had_members = g.protocol_type.is_none() && g.generation == 0;
                let expired: Vec<(String, i32)> = g
                    .offsets
                    .iter()
                    .filter(|(_, c)| {
                        let base =
                            if never_had_members { c.commit_timestamp } else { g.state_timestamp.max(0) };
                        base + retention <= now
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for (topic, partition) in expired {
                    g.offsets.remove(&(topic.clone(), partition));
                    records.push((Key::Offset { group: id.clone(), topic, partition }, None));
                }
                if g.offsets.is_empty() && g.state_timestamp + retention <= now {
                    match &g.consumer {
                        Some(c) => records.extend(c.tombstones(id)),
                        None => records.push((Key::Group { group: id.clone() }, None)),
                    }
                    tracing::info!(group = %id, "expired empty group");
                    return false;
                }
                true
            });
            drop(groups);
            if !records.is_empty() {
                out.push((Arc::clone(shard), records));
            }
        }
        out
    }

    /// JoinGroup: the answer (possibly after a rebalance). A consumer
    /// group in use serves the member inside it (`migration`); an empty
    /// one turns classic.
    pub(crate) async fn join(
        &self,
        group_id: &str,
        req: JoinRequest,
        topics: &(dyn consumer::Topics + Sync),
    ) -> Result<JoinResult, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let shard = self.shard(group_id)?;
        let (tx, rx) = oneshot::channel();
        let member_id = req.member_id.clone();
        let persist = {
            let mut groups = shard.lock();
            let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now_ms()));
            let mut records = Vec::new();
            match g.consumer.as_mut() {
                Some(c) if !c.members.is_empty() => {
                    let cfg = &self.config;
                    if req.session_timeout < cfg.min_session_timeout
                        || req.session_timeout > cfg.max_session_timeout
                    {
                        return Err(GroupError::InvalidSessionTimeout);
                    }
                    let outcome = migration::classic_join(c, req, topics, Instant::now());
                    let records = c.log_changes(group_id);
                    Err((outcome, (!records.is_empty()).then(|| append(&shard.stream, records))))
                }
                consumer => {
                    if let Some(c) = consumer {
                        records = c.tombstones(group_id);
                        g.consumer = None;
                        g.protocol_type = None;
                    }
                    g.join(req, tx, &self.config, Instant::now(), now_ms())?;
                    records.extend(take_dirty(g));
                    Ok(records)
                }
            }
        };
        // A classic member of a consumer group is answered at once.
        let persist = match persist {
            Ok(records) => records,
            Err((outcome, pending)) => {
                return self.answer_consumer_change(&shard, group_id, pending, outcome).await;
            }
        };
        if !persist.is_empty() {
            let _ = write(&shard.stream, persist).await;
        }
        rx.await.map_err(|_| GroupError::CoordinatorNotAvailable).map(|mut r| {
            if r.member_id.is_empty() {
                r.member_id = member_id;
            }
            r
        })
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        topics: &(dyn consumer::Topics + Sync),
    ) -> Result<SyncResult, GroupError> {
        let shard = self.shard(group_id)?;
        let (tx, rx) = oneshot::channel();
        let (deliveries, record) = {
            let mut groups = shard.lock();
            let g = groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
            if let Some(c) = g.consumer.as_mut() {
                return migration::classic_sync(
                    c,
                    member_id,
                    instance_id,
                    generation,
                    protocol_type,
                    protocol_name,
                    topics,
                    Instant::now(),
                );
            }
            let d = g.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol_name,
                assignments,
                tx,
                now_ms(),
            )?;
            (d, take_dirty(g))
        };
        if let Some(deliveries) = deliveries {
            // Kafka answers the members once the assignment is durable.
            let outcome = match record {
                Some(r) => write(&shard.stream, vec![r]).await,
                None => Ok(()),
            };
            for (w, mut r) in deliveries {
                if outcome.is_err() {
                    r = SyncResult { error: Some(GroupError::CoordinatorNotAvailable), ..Default::default() };
                }
                let _ = w.send(r);
            }
        } else if let Some(r) = record {
            let _ = write(&shard.stream, vec![r]).await;
        }
        rx.await.map_err(|_| GroupError::CoordinatorNotAvailable)
    }

    /// Heartbeat.
    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        let shard = self.shard(group_id)?;
        let mut groups = shard.lock();
        let g = groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
        if let Some(c) = g.consumer.as_mut() {
            return migration::classic_heartbeat(c, member_id, instance_id, generation, Instant::now());
        }
        g.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// LeaveGroup: one result per member.
    pub(crate) async fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        topics: &(dyn consumer::Topics + Sync),
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let shard = self.shard(group_id)?;
        let now = Instant::now();
        let (results, records) = {
            let mut groups = shard.lock();
            let g = groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
            if let Some(c) = g.consumer.as_mut() {
                let epoch = c.group_epoch;
                let results = migration::leave(c, members, topics);
                if c.members.is_empty() {
                    g.state_timestamp = now_ms();
                }
                let records = if migration::should_downgrade(c) {
                    let mut records = migration::downgrade(g, epoch, topics, &self.config, now, now_ms());
                    records.extend(take_dirty(g));
                    records
                } else {
                    c.log_changes(group_id)
                };
                (results, records)
            } else {
                let results = members
                    .iter()
                    .map(|(m, i)| g.leave(m, i.as_deref(), &self.config, now, now_ms()))
                    .collect();
                (results, take_dirty(g).into_iter().collect())
            }
        };
        if !records.is_empty()
            && write(&shard.stream, records).await.is_err()
            && let Some(c) = shard.lock().get_mut(group_id).and_then(|g| g.consumer.as_mut())
        {
            c.forget_written();
        }
        Ok(results)
    }

    /// OffsetCommit: checks the member, appends one record per partition,
    /// and applies them once durable.
    pub(crate) async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: &[OffsetCommitEntry],
    ) -> Result<(), GroupError> {
        let shard = self.shard(group_id)?;
        let now = now_ms();
        let values: Vec<(OffsetValue, &OffsetCommitEntry)> = entries
            .iter()
            .map(|e| {
                (
                    OffsetValue {
                        offset: e.offset,
                        leader_epoch: e.leader_epoch,
                        metadata: e.metadata.clone(),
                        commit_timestamp: now,
                    },
                    e,
                )
            })
            .collect();
        let pending = {
            let mut groups = shard.lock();
            let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
            let simple = generation < 0 && member_id.is_empty() && instance_id.is_none();
            if let Some(c) = &g.consumer {
                // KIP-848: commits are checked by member epoch.
                if !simple || c.has_live_members() {
                    c.validate_epoch(member_id, generation)?;
                }
            } else if !(simple && g.members.is_empty()) {
                g.validate_member(member_id, instance_id)?;
                if generation != g.generation {
                    return Err(GroupError::IllegalGeneration);
                }
                if g.state == State::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
            }
            let records: Vec<LogRecord> = values
                .iter()
                .map(|(v, e)| {
                    (
                        Key::Offset {
                            group: group_id.to_string(),
                            topic: e.topic.clone(),
                            partition: e.partition,
                        },
                        Some(records::encode_offset(v)),
                    )
                })
                .collect();
            // Appended under the shard lock: log order is the order commits
            // were accepted in.
            append(&shard.stream, records)
        };
        let base = wait(pending).await?;
        let mut groups = shard.lock();
        let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
        for (i, (v, e)) in values.into_iter().enumerate() {
            apply_offset(g, e.topic.clone(), e.partition, v, base + i as i64);
        }
        Ok(())
    }

    /// TxnOffsetCommit: checks the member as Kafka checks a transactional
    /// commit, appends the offsets as a transactional batch of `producer`
    /// (id, epoch), and keeps them pending until the transaction's marker
    /// reaches this partition (`complete_txn`). Returns the batch's base offset.
    pub(crate) async fn txn_commit(
        &self,
        group_id: &str,
        producer: (i64, i16),
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: &[OffsetCommitEntry],
    ) -> Result<i64, GroupError> {
        let shard = self.shard(group_id)?;
        let now = now_ms();
        let values: Vec<(OffsetValue, &OffsetCommitEntry)> = entries
            .iter()
            .map(|e| {
                let v = OffsetValue {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata: e.metadata.clone(),
                    commit_timestamp: now,
                };
                (v, e)
            })
            .collect();
        let pending = {
            let mut groups = shard.lock();
            if !groups.contains_key(group_id) && generation >= 0 {
                return Err(GroupError::IllegalGeneration);
            }
            let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
            let named = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
            match &g.consumer {
                Some(c) if named => c.validate_epoch(member_id, generation).map_err(|e| match e {
                    GroupError::StaleMemberEpoch => GroupError::IllegalGeneration,
                    e => e,
                })?,
                Some(_) => {}
                None if g.state == State::Dead => return Err(GroupError::CoordinatorNotAvailable),
                None if named => {
                    g.validate_member(member_id, instance_id)?;
                    if generation != g.generation {
                        return Err(GroupError::IllegalGeneration);
                    }
                }
                None => {}
            }
            let records: Vec<crate::internal_records::KeyValue> = values
                .iter()
                .map(|(v, e)| {
                    let key = Key::Offset {
                        group: group_id.to_string(),
                        topic: e.topic.clone(),
                        partition: e.partition,
                    };
                    (records::encode_key(&key), Some(records::encode_offset(v)))
                })
                .collect();
            crate::internal_records::append_as(&shard.stream, records, Some(producer))
                .map_err(|_| GroupError::CoordinatorNotAvailable)
        };
        let base = wait(pending).await?;
        let mut groups = shard.lock();
        let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now));
        let list = g.pending_txn.entry(producer.0).or_default();
        for (i, (v, e)) in values.into_iter().enumerate() {
            list.push((e.topic.clone(), e.partition, v, base + i as i64));
        }
        Ok(base)
    }

    /// A transaction marker appended to partition `partition` of
    /// `__consumer_offsets`: the producer's pending offsets there are
    /// applied (commit) or dropped (abort).
    pub(crate) fn complete_txn(&self, partition: i32, producer: i64, commit: bool) {
        let Some(shards) = self.loaded() else { return };
        let Some(Some(shard)) = usize::try_from(partition).ok().and_then(|p| shards.get(p)) else { return };
        complete_pending(&mut shard.lock(), producer, commit);
    }

    /// The partitions of a group with offsets pending in an open
    /// transaction (OffsetFetch with `require_stable`: UNSTABLE_OFFSET_COMMIT).
    pub(crate) fn unstable(&self, group_id: &str) -> std::collections::HashSet<(String, i32)> {
        let Ok(shard) = self.shard(group_id) else { return Default::default() };
        let groups = shard.lock();
        groups
            .get(group_id)
            .map(|g| g.pending_txn.values().flatten().map(|(t, p, _, _)| (t.clone(), *p)).collect())
            .unwrap_or_default()
    }

    /// ConsumerGroupHeartbeat (KIP-848), checked by `consumer::validate`
    /// first, answered once what it changed is durable.
    pub(crate) async fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: consumer::Heartbeat,
        topics: &(dyn consumer::Topics + Sync),
    ) -> Result<consumer::HeartbeatResult, consumer::Refusal> {
        consumer::validate(&hb, group_id)?;
        let shard = self.shard(group_id)?;
        let (outcome, pending) = {
            let mut groups = shard.lock();
            let mut records = Vec::new();
            let outcome = self.consumer_heartbeat_locked(&mut groups, group_id, hb, topics, &mut records);
            if let Some(c) = groups.get_mut(group_id).and_then(|g| g.consumer.as_mut()) {
                records.extend(c.log_changes(group_id));
            }
            // Appended under the shard lock, in the order the changes were made.
            let pending = (!records.is_empty()).then(|| append(&shard.stream, records));
            (outcome, pending)
        };
        self.answer_consumer_change(&shard, group_id, pending, outcome).await
    }

    /// Answers a request that changed a consumer group once its records
    /// are durable; when they are not, the next change writes the whole
    /// group again.
    async fn answer_consumer_change<T, E: From<GroupError>>(
        &self,
        shard: &Shard,
        group_id: &str,
        pending: Option<Pending>,
        outcome: Result<T, E>,
    ) -> Result<T, E> {
        if let Some(pending) = pending
            && let Err(e) = wait(pending).await
        {
            if let Some(c) = shard.lock().get_mut(group_id).and_then(|g| g.consumer.as_mut()) {
                c.forget_written();
            }
            return Err(e.into());
        }
        outcome
    }

    /// A ConsumerGroupHeartbeat under the shard lock: a join to a classic
    /// group in use upgrades it (`migration::upgrade`), a leave that leaves
    /// only classic members downgrades it. Records to write before the
    /// group's own changes go to `records`.
    fn consumer_heartbeat_locked(
        &self,
        groups: &mut HashMap<String, Group>,
        group_id: &str,
        hb: consumer::Heartbeat,
        topics: &dyn consumer::Topics,
        records: &mut Vec<LogRecord>,
    ) -> Result<consumer::HeartbeatResult, consumer::Refusal> {
        let not_found = || consumer::Refusal {
            error: GroupError::GroupIdNotFound,
            message: format!("Consumer group {group_id} not found."),
        };
        let not_consumer = || consumer::Refusal {
            error: GroupError::GroupIdNotFound,
            message: format!("Group {group_id} is not a consumer group."),
        };
        let now = Instant::now();
        if hb.member_epoch != 0 {
            match groups.get(group_id) {
                None => return Err(not_found()),
                Some(g) if g.consumer.is_none() && !g.members.is_empty() => return Err(not_consumer()),
                Some(g) if g.consumer.is_none() => return Err(not_found()),
                Some(_) => {}
            }
        }
        let g = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id, now_ms()));
        if g.consumer.is_none() {
            if !g.members.is_empty() {
                records.extend(migration::upgrade(g, topics, now)?);
            } else {
                if g.protocol_type.is_some() || g.generation > 0 {
                    // An empty classic group is replaced, as on Kafka.
                    records.push((Key::Group { group: group_id.to_string() }, None));
                }
                g.consumer = Some(consumer::ConsumerGroup::default());
            }
            g.protocol_type = Some("consumer".into());
        }
        let leaving = hb.member_epoch == -1;
        let c = g.consumer.as_mut().ok_or_else(not_found)?;
        let epoch = c.group_epoch;
        let outcome = c.heartbeat(hb, topics, &self.consumer_config, group_id, now);
        if c.members.is_empty() {
            // When the group became empty, for offsets.retention.minutes.
            g.state_timestamp = now_ms();
        }
        if leaving && outcome.is_ok() && migration::should_downgrade(c) {
            records.extend(migration::downgrade(g, epoch, topics, &self.config, now, now_ms()));
            records.extend(take_dirty(g));
        } else if outcome.is_err() && c.members.is_empty() && g.offsets.is_empty() && records.is_empty() {
            // A refused first join leaves no group behind, as on Kafka.
            groups.remove(group_id);
        }
        outcome
    }

    /// ConsumerGroupDescribe of one group: its state and members.
    pub(crate) fn consumer_describe<T>(
        &self,
        group_id: &str,
        describe: impl FnOnce(&consumer::ConsumerGroup) -> T,
    ) -> Result<T, consumer::Refusal> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock();
        let Some(g) = groups.get(group_id) else {
            return Err(consumer::Refusal {
                error: GroupError::GroupIdNotFound,
                message: format!("Group {group_id} not found."),
            });
        };
        let c = g.consumer.as_ref().ok_or_else(|| consumer::Refusal {
            error: GroupError::GroupIdNotFound,
            message: format!("Group {group_id} is not a consumer group."),
        })?;
        Ok(describe(c))
    }

    /// Committed offsets of a group: `None` topics means all.
    pub(crate) fn fetch(
        &self,
        group_id: &str,
        member: Option<(&str, i32)>,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<TopicOffsets>, GroupError> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock();
        let g = groups.get(group_id);
        if let (Some((id, epoch)), Some(c)) = (member, g.and_then(|g| g.consumer.as_ref())) {
            c.validate_epoch(id, epoch)?;
        }
        Ok(match topics {
            Some(topics) => topics
                .iter()
                .map(|(t, parts)| {
                    let found = parts
                        .iter()
                        .map(|p| (*p, g.and_then(|g| g.offsets.get(&(t.clone(), *p)).cloned())))
                        .collect();
                    (t.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, Option<Committed>)>> =
                    Default::default();
                if let Some(g) = g {
                    for ((t, p), c) in &g.offsets {
                        by_topic.entry(t.clone()).or_default().push((*p, Some(c.clone())));
                    }
                }
                by_topic
                    .into_iter()
                    .map(|(t, mut v)| {
                        v.sort_by_key(|(p, _)| *p);
                        (t, v)
                    })
                    .collect()
            }
        })
    }

    /// Every committed offset: group, topic, partition, offset.
    pub(crate) fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let Some(shards) = self.loaded() else { return Vec::new() };
        let mut out = Vec::new();
        for shard in shards.iter().flatten() {
            for g in shard.lock().values() {
                for ((t, p), c) in &g.offsets {
                    out.push((g.id.clone(), t.clone(), *p, c.offset));
                }
            }
        }
        out
    }

    /// Every group: id, protocol type, state, type (classic or consumer).
    pub(crate) fn list(&self) -> Result<Vec<(String, String, &'static str, &'static str)>, GroupError> {
        let shards = self.loaded().ok_or(GroupError::CoordinatorLoadInProgress)?;
        let mut out = Vec::new();
        for shard in shards.iter().flatten() {
            for g in shard.lock().values() {
                match &g.consumer {
                    Some(c) => out.push((g.id.clone(), "consumer".to_string(), c.state(), "consumer")),
                    None => out.push((g.id.clone(), g.protocol_type_name(), g.state.name(), "classic")),
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// DescribeGroups of one group: `None` when it does not exist.
    pub(crate) fn describe(&self, group_id: &str) -> Result<Option<GroupSummary>, GroupError> {
        let shard = self.shard(group_id)?;
        let groups = shard.lock();
        // A consumer-protocol group is unknown to the classic API (Dead), as
        // on Kafka.
        let Some(g) = groups.get(group_id).filter(|g| g.consumer.is_none()) else { return Ok(None) };
        let stable = g.state == State::Stable;
        let protocol = g.protocol.clone().unwrap_or_default();
        Ok(Some(GroupSummary {
            state: g.state.name(),
            protocol_type: g.protocol_type_name(),
            protocol: if stable { protocol.clone() } else { String::new() },
            members: g
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
        }))
    }

    /// DeleteGroups of one group.
    pub(crate) async fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let shard = self.shard(group_id)?;
        let records = {
            let mut groups = shard.lock();
            let g = groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
            if g.state != State::Empty || g.consumer.as_ref().is_some_and(|c| c.has_live_members()) {
                return Err(GroupError::NonEmptyGroup);
            }
            let mut records: Vec<LogRecord> = g
                .offsets
                .keys()
                .map(|(t, p)| {
                    (Key::Offset { group: group_id.to_string(), topic: t.clone(), partition: *p }, None)
                })
                .collect();
            match &g.consumer {
                Some(c) => records.extend(c.tombstones(group_id)),
                None => records.push((Key::Group { group: group_id.to_string() }, None)),
            }
            groups.remove(group_id);
            records
        };
        write(&shard.stream, records).await
    }

    /// OffsetDelete: per partition, `Err` for one the group consumes.
    pub(crate) async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, Vec<(i32, Option<GroupError>)>)>, GroupError> {
        let shard = self.shard(group_id)?;
        let (out, records) = {
            let mut groups = shard.lock();
            let g = groups.get_mut(group_id).ok_or(GroupError::GroupIdNotFound)?;
            let subscribed = if g.state == State::Empty { None } else { g.subscribed_topics() };
            if g.state != State::Empty && subscribed.is_none() {
                return Err(GroupError::NonEmptyGroup);
            }
            let mut records = Vec::new();
            let mut out = Vec::new();
            for (t, parts) in topics {
                let busy = subscribed.as_ref().is_some_and(|s| s.contains(t));
                let mut res = Vec::new();
                for p in parts {
                    if busy {
                        res.push((*p, Some(GroupError::GroupSubscribedToTopic)));
                        continue;
                    }
                    if g.offsets.remove(&(t.clone(), *p)).is_some() {
                        records.push((
                            Key::Offset { group: group_id.to_string(), topic: t.clone(), partition: *p },
                            None,
                        ));
                    }
                    res.push((*p, None));
                }
                out.push((t.clone(), res));
            }
            (out, records)
        };
        if !records.is_empty() {
            write(&shard.stream, records).await?;
        }
        Ok(out)
    }

    /// Writes records the ticker produced.
    pub(crate) async fn persist(batches: Vec<(Arc<Shard>, Vec<LogRecord>)>) {
        for (shard, records) in batches {
            if let Err(e) = write(&shard.stream, records).await {
                tracing::warn!(error = ?e, "writing group state failed");
            }
        }
    }
}

/// What DescribeGroups reports of a group.
pub(crate) struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

/// One member in DescribeGroups.
pub(crate) struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

fn group_record(g: &Group) -> LogRecord {
    (Key::Group { group: g.id.clone() }, Some(records::encode_group(&g.to_value())))
}

fn take_dirty(g: &mut Group) -> Option<LogRecord> {
    if g.dirty {
        g.dirty = false;
        Some(group_record(g))
    } else {
        None
    }
}

fn apply_offset(g: &mut Group, topic: String, partition: i32, v: OffsetValue, log_offset: i64) {
    let key = (topic, partition);
    if g.offsets.get(&key).is_some_and(|c| c.log_offset > log_offset) {
        return; // a later commit already applied
    }
    g.offsets.insert(
        key,
        Committed {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
            log_offset,
        },
    );
}

/// An append in flight: its base offset and final outcome.
type Pending = Result<(i64, strata_stream::Completion), GroupError>;

/// Appends records as one batch (Kafka's record format, uncompressed).
fn append(stream: &Arc<Stream>, records: Vec<LogRecord>) -> Pending {
    let records = records.into_iter().map(|(key, value)| (records::encode_key(&key), value)).collect();
    crate::internal_records::append(stream, records).map_err(|_| GroupError::CoordinatorNotAvailable)
}

async fn wait(pending: Pending) -> Result<i64, GroupError> {
    let (base, mut completion) = pending?;
    completion.wait().await.map_err(|e| {
        tracing::warn!(error = %e, "a group state write failed");
        GroupError::CoordinatorNotAvailable
    })?;
    Ok(base)
}

async fn write(stream: &Arc<Stream>, records: Vec<LogRecord>) -> Result<(), GroupError> {
    wait(append(stream, records)).await.map(|_| ())
}

/// Rebuilds a shard's groups from its stream, start to end.
async fn replay(stream: &Arc<Stream>, now: Instant) -> Result<HashMap<String, Group>, crate::BrokerError> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    crate::internal_records::replay(stream, |entry| match entry {
        Entry::Record { key, value, offset, producer } => match (records::decode_key(key), producer) {
            (Ok(Some(k)), None) => apply_record(&mut groups, k, value, offset, now),
            (Ok(Some(Key::Offset { group, topic, partition })), Some(pid)) => {
                match value.map(records::decode_offset) {
                    Some(Ok(v)) => groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, v.commit_timestamp))
                        .pending_txn
                        .entry(pid)
                        .or_default()
                        .push((topic, partition, v, offset)),
                    Some(Err(e)) => tracing::warn!(error = %e, "unreadable transactional offset skipped"),
                    None => {}
                }
            }
            (Ok(_), _) => {}
            (Err(e), _) => tracing::warn!(error = %e, "unreadable key skipped"),
        },
        Entry::Marker { producer, commit } => complete_pending(&mut groups, producer, commit),
    })
    .await?;
    for (id, g) in groups.iter_mut() {
        if let Some(c) = g.consumer.as_mut() {
            c.restored(id, now);
        }
    }
    Ok(groups)
}

/// A transaction marker: the producer's pending offsets are applied
/// (commit) or dropped (abort) in every group of the shard.
fn complete_pending(groups: &mut HashMap<String, Group>, producer: i64, commit: bool) {
    for g in groups.values_mut() {
        let Some(pending) = g.pending_txn.remove(&producer) else { continue };
        if commit {
            for (topic, partition, v, log_offset) in pending {
                apply_offset(g, topic, partition, v, log_offset);
            }
        }
    }
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    key: Key,
    value: Option<Bytes>,
    log_offset: i64,
    now: Instant,
) {
    match key {
        Key::Offset { group, topic, partition } => match value {
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            Some(v) => match records::decode_offset(v) {
                Ok(v) => {
                    let g =
                        groups.entry(group.clone()).or_insert_with(|| Group::new(&group, v.commit_timestamp));
                    apply_offset(g, topic, partition, v, log_offset);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable offset skipped"),
            },
        },
        Key::Group { group } => match value {
            None => {
                // Offsets are records of their own and outlive the group's
                // (an upgrade to the consumer protocol tombstones it).
                let (offsets, pending) =
                    groups.remove(&group).map(|g| (g.offsets, g.pending_txn)).unwrap_or_default();
                if !offsets.is_empty() || !pending.is_empty() {
                    let mut g = Group::new(&group, now_ms());
                    g.offsets = offsets;
                    g.pending_txn = pending;
                    groups.insert(group, g);
                }
            }
            Some(v) => match records::decode_group(v) {
                Ok(v) => {
                    let (offsets, pending) =
                        groups.remove(&group).map(|g| (g.offsets, g.pending_txn)).unwrap_or_default();
                    let mut g = Group::from_value(&group, v, now);
                    g.offsets = offsets;
                    g.pending_txn = pending;
                    groups.insert(group, g);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable group skipped"),
            },
        },
        Key::ConsumerGroup { .. } if value.is_none() => {
            // The consumer group is gone (deleted, or turned classic: a
            // group record follows then).
            let group = key.group().to_string();
            if let Some(g) = groups.get_mut(&group) {
                g.consumer = None;
                if g.offsets.is_empty() {
                    groups.remove(&group);
                }
            }
        }
        key => {
            let group = key.group().to_string();
            if value.is_none() && groups.get(&group).is_none_or(|g| g.consumer.is_none()) {
                return; // a tombstone of a consumer group that is gone
            }
            let g = groups.entry(group.clone()).or_insert_with(|| Group::new(&group, now_ms()));
            if g.consumer.is_none() {
                g.consumer = Some(consumer::ConsumerGroup::default());
                g.protocol_type = Some("consumer".into());
            }
            if let Some(c) = g.consumer.as_mut()
                && let Err(e) = c.restore(key, value, now)
            {
                tracing::warn!(group = %group, error = %e, "unreadable consumer group record skipped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_outlive_the_group_records_of_a_migration() {
        let now = Instant::now();
        let mut groups = HashMap::new();
        let offset = OffsetValue { offset: 42, leader_epoch: -1, metadata: "m".into(), commit_timestamp: 1 };
        let group = || "g".to_string();
        apply_record(
            &mut groups,
            Key::Offset { group: group(), topic: "t".into(), partition: 0 },
            Some(records::encode_offset(&offset)),
            0,
            now,
        );
        let classic = records::GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 1,
            members: Vec::new(),
        };
        apply_record(
            &mut groups,
            Key::Group { group: group() },
            Some(records::encode_group(&classic)),
            1,
            now,
        );
        // An upgrade: the classic record's tombstone, then the consumer group's.
        apply_record(&mut groups, Key::Group { group: group() }, None, 2, now);
        apply_record(
            &mut groups,
            Key::ConsumerGroup { group: group() },
            Some(records::encode_epoch(4)),
            3,
            now,
        );
        let g = &groups["g"];
        assert_eq!(g.consumer.as_ref().map(|c| c.group_epoch), Some(4));
        assert_eq!(g.offsets.get(&("t".to_string(), 0)).map(|c| c.offset), Some(42), "offsets kept");
        // A downgrade: the consumer group's tombstones, then GroupMetadata.
        apply_record(&mut groups, Key::ConsumerTargetEpoch { group: group() }, None, 4, now);
        apply_record(&mut groups, Key::ConsumerGroup { group: group() }, None, 5, now);
        apply_record(
            &mut groups,
            Key::Group { group: group() },
            Some(records::encode_group(&classic)),
            6,
            now,
        );
        let g = &groups["g"];
        assert!(g.consumer.is_none());
        assert_eq!(g.generation, 3);
        assert_eq!(g.offsets.get(&("t".to_string(), 0)).map(|c| c.offset), Some(42), "offsets kept");
        // A tombstone of a consumer group long gone creates nothing.
        apply_record(&mut groups, Key::ConsumerTargetEpoch { group: "h".into() }, None, 7, now);
        assert!(!groups.contains_key("h"));
    }

    #[test]
    fn partitions_are_chosen_as_kafka_chooses_them() {
        // Java: Math.abs("test-group".hashCode()) % 50, and friends.
        assert_eq!(partition_for("", 50), 0);
        let java_hash =
            |s: &str| s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(java_hash("abc"), 96354);
        assert_eq!(partition_for("abc", 50), 96354 % 50);
        // A negative hash is made non-negative.
        let h = java_hash("polygenelubricants");
        assert_eq!(h, i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        let neg = "console-consumer-1";
        assert!(partition_for(neg, 50) >= 0);
    }
}
