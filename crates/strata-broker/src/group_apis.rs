//! The group APIs on the wire: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
//! DescribeGroups, DeleteGroups and OffsetDelete, over the coordinator in
//! `groups`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::error_codes::{count, group_code};
use crate::groups::consumer::{Assignment, Heartbeat, Topics};
use crate::groups::{GroupError, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetCommitEntry};
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribeAssignment, DescribedGroup as ConsumerDescribedGroup,
    Member as ConsumerDescribedMember, TopicPartitions as DescribeTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions as HeartbeatTopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn code_of(r: &Result<(), GroupError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => group_code(*e),
    }
}

/// Partitions with a validation error (None: part of the commit).
type PartitionErrors = Vec<(i32, Option<i16>)>;

/// A fetched partition: index, offset, leader epoch, metadata.
type Fetched = (i32, i64, i32, String);

/// Kafka's `offset.metadata.max.bytes`.
pub(crate) const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// One partition of an offset commit (OffsetCommit or TxnOffsetCommit),
/// checked as Kafka checks it: its entry, or the partition's error code
/// (an unknown topic or partition, metadata over the limit).
pub(crate) fn commit_entry(
    topic: Option<&strata_cluster::TopicRecord>,
    name: &str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&str>,
) -> Result<OffsetCommitEntry, i16> {
    if !topic.is_some_and(|t| partition >= 0 && partition < t.partitions()) {
        return Err(group_code(GroupError::UnknownTopicOrPartition));
    }
    let metadata = metadata.unwrap_or_default();
    if metadata.len() > OFFSET_METADATA_MAX_BYTES {
        return Err(group_code(GroupError::OffsetMetadataTooLarge));
    }
    Ok(OffsetCommitEntry {
        topic: name.to_string(),
        partition,
        offset,
        leader_epoch,
        metadata: metadata.to_string(),
    })
}

/// Kafka's configs of `__consumer_offsets`.
fn offsets_topic_configs() -> BTreeMap<String, String> {
    [("cleanup.policy", "compact"), ("compression.type", "producer"), ("segment.bytes", "104857600")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// DescribeGroups' authorized operations when not asked for.
fn unknown_authorized_operations() -> i32 {
    i32::MIN
}

/// The catalog as the consumer protocol's assignors see it.
pub(crate) struct CatalogTopics<'a>(pub &'a strata_cluster::Catalog);

impl Topics for CatalogTopics<'_> {
    fn by_name(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        self.0.topic(name).map(|t| (t.id, t.partitions()))
    }
    fn names(&self) -> Vec<String> {
        self.0.topics().iter().map(|t| t.name.clone()).collect()
    }
    fn name_of(&self, id: uuid::Uuid) -> Option<String> {
        self.0.topic_by_id(id).map(|t| t.name.clone())
    }
}

fn to_assignment(parts: &[(uuid::Uuid, Vec<i32>)]) -> Assignment {
    parts.iter().map(|(t, ps)| (*t, ps.iter().copied().collect())).collect()
}

impl Broker {
    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> ConsumerGroupHeartbeatResponse {
        let mut resp = ConsumerGroupHeartbeatResponse::default();
        let outcome = match self.coordinator_ready().await {
            Err(e) => Err(e.into()),
            Ok(()) => {
                let hb = Heartbeat {
                    member_id: req.member_id.to_string(),
                    member_epoch: req.member_epoch,
                    instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
                    rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    subscribed_names: req
                        .subscribed_topic_names
                        .as_ref()
                        .map(|ns| ns.iter().map(|n| n.to_string()).collect()),
                    subscribed_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
                    server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
                    owned: req.topic_partitions.as_ref().map(|tps| {
                        to_assignment(
                            &tps.iter().map(|t| (t.topic_id, t.partitions.clone())).collect::<Vec<_>>(),
                        )
                    }),
                    client_id: client_id.to_string(),
                    client_host: format!("/{client_host}"),
                    version,
                };
                self.coordinator
                    .consumer_heartbeat(req.group_id.as_str(), hb, &CatalogTopics(&self.catalog))
                    .await
            }
        };
        match outcome {
            Err(e) => {
                // Kafka answers an error with no member id and epoch 0.
                resp.error_code = group_code(e.error);
                resp.error_message = Some(str(&e.message));
            }
            Ok(r) => {
                resp.member_id = Some(str(&r.member_id));
                resp.member_epoch = r.member_epoch;
                resp.heartbeat_interval_ms = r.heartbeat_interval_ms;
                resp.assignment = r.assignment.map(|a| {
                    let mut out = HeartbeatAssignment::default();
                    out.topic_partitions = a
                        .into_iter()
                        .map(|(t, ps)| {
                            let mut tp = HeartbeatTopicPartitions::default();
                            tp.topic_id = t;
                            tp.partitions = ps.into_iter().collect();
                            tp
                        })
                        .collect();
                    out
                });
            }
        }
        count("ConsumerGroupHeartbeat", resp.error_code);
        resp
    }

    /// ConsumerGroupDescribe (KIP-848).
    pub async fn consumer_group_describe(
        &self,
        req: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let mut resp = ConsumerGroupDescribeResponse::default();
        let ready = self.coordinator_ready().await;
        let names = |a: &Assignment| {
            let mut out = DescribeAssignment::default();
            out.topic_partitions = a
                .iter()
                .map(|(t, ps)| {
                    let mut tp = DescribeTopicPartitions::default();
                    tp.topic_id = *t;
                    tp.topic_name = TopicName(str(&self
                        .catalog
                        .topic_by_id(*t)
                        .map(|r| r.name.clone())
                        .unwrap_or_default()));
                    tp.partitions = ps.iter().copied().collect();
                    tp
                })
                .collect();
            out
        };
        for id in req.group_ids {
            let mut g = ConsumerDescribedGroup::default();
            g.group_id = id.clone();
            g.authorized_operations = unknown_authorized_operations();
            let outcome = ready.map_err(crate::groups::consumer::Refusal::from).and_then(|()| {
                self.coordinator.consumer_describe(id.as_str(), |c| {
                    g.group_state = str(c.state());
                    g.group_epoch = c.group_epoch;
                    g.assignment_epoch = c.assignment_epoch;
                    g.assignor_name = str(&c.assignor);
                    g.members = c
                        .members
                        .values()
                        .map(|m| {
                            let mut d = ConsumerDescribedMember::default();
                            d.member_id = str(&m.id);
                            d.instance_id = m.instance_id.as_deref().map(str);
                            d.rack_id = m.rack_id.as_deref().map(str);
                            d.member_epoch = m.member_epoch;
                            d.client_id = str(&m.client_id);
                            d.client_host = str(&m.client_host);
                            d.subscribed_topic_names =
                                m.subscribed_names.iter().map(|n| TopicName(str(n))).collect();
                            // Kafka answers "" for a member without a regex.
                            d.subscribed_topic_regex =
                                Some(str(m.subscribed_regex.as_deref().unwrap_or_default()));
                            d.assignment = names(&m.assigned);
                            d.target_assignment = names(&c.target.get(&m.id).cloned().unwrap_or_default());
                            // KIP-1099: 0 classic, 1 consumer.
                            d.member_type = if m.classic.is_some() { 0 } else { 1 };
                            d
                        })
                        .collect();
                })
            });
            if let Err(e) = outcome {
                g.error_code = group_code(e.error);
                g.error_message = Some(str(&e.message));
            }
            count("ConsumerGroupDescribe", g.error_code);
            resp.groups.push(g);
        }
        resp
    }

    /// An internal topic, created (and its streams acquired) on first use;
    /// `None` when that fails.
    pub(crate) async fn internal_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Option<Arc<strata_cluster::TopicRecord>> {
        if let Some(t) = self.catalog.topic(name) {
            return Some(t);
        }
        match self.catalog.create_topic(name, partitions, configs, crate::broker::now_ms()).await {
            Ok(t) => {
                if let Err(e) = self.take_new_streams(&t.partition_streams).await {
                    tracing::warn!(topic = name, error = %e, "acquiring an internal topic failed");
                    return None;
                }
                tracing::info!(topic = name, partitions = t.partitions(), "created an internal topic");
                Some(t)
            }
            // Created meanwhile by another request.
            Err(_) => self.catalog.topic(name),
        }
    }

    /// Makes sure `__consumer_offsets` exists and its shards are loaded.
    pub(crate) async fn coordinator_ready(&self) -> Result<(), GroupError> {
        if self.coordinator.is_loaded() {
            return Ok(());
        }
        let topic = self
            .internal_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, offsets_topic_configs())
            .await
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let streams = (0..topic.partitions()).map(|i| self.partition(&topic, i)).collect();
        self.coordinator.load(streams).await.map_err(|e| {
            tracing::warn!(error = %e, "loading the group coordinator failed");
            GroupError::CoordinatorLoadInProgress
        })
    }

    /// Starts the coordinator's clock: sessions, rebalance deadlines, expiry.
    pub(crate) fn start_group_tasks(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last_expiry = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(b) = weak.upgrade() else { return };
                let work = b.coordinator.tick(&CatalogTopics(&b.catalog));
                crate::groups::Coordinator::persist(work).await;
                if last_expiry.elapsed() >= b.config.offsets_retention_check_interval {
                    last_expiry = std::time::Instant::now();
                    let work = b.coordinator.expire(b.config.offsets_retention);
                    crate::groups::Coordinator::persist(work).await;
                }
            }
        });
        if self.catalog.topic(OFFSETS_TOPIC).is_some() {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(b) = weak.upgrade() else { return };
                if let Err(e) = b.coordinator_ready().await {
                    tracing::warn!(error = %e, "group coordinator not loaded at start");
                }
            });
        }
    }

    /// Publishes each group's committed offset and lag (the partition's high
    /// watermark minus the commit) per partition, for `/metrics`.
    pub fn publish_group_metrics(&self) {
        for (group, topic, partition, offset) in self.coordinator.committed_offsets() {
            let Some(t) = self.catalog.topic(&topic) else { continue };
            let Some(stream) = self.partition(&t, partition) else { continue };
            let end = stream.offsets().1;
            let labels = [("group", group), ("topic", topic), ("partition", partition.to_string())];
            metrics::gauge!("strata_consumer_group_committed_offset", &labels).set(offset as f64);
            metrics::gauge!("strata_consumer_group_lag", &labels).set((end - offset).max(0) as f64);
        }
    }

    /// The broker that leads the internal partition of `key` (a group for
    /// `key_type` 0, a transactional id for 1).
    fn coordinator_of(
        &self,
        key_type: i8,
        key: &str,
    ) -> Result<strata_cluster::membership::BrokerInfo, GroupError> {
        let topic = if key_type == 0 { OFFSETS_TOPIC } else { crate::txn::TXN_TOPIC };
        self.coordinator_for(topic, key).ok_or(GroupError::CoordinatorNotAvailable)
    }

    /// FindCoordinator: the leader of the key's internal partition.
    pub async fn find_coordinator(
        self: &Arc<Self>,
        req: FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        let keys: Vec<StrBytes> =
            if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
        let ready = match req.key_type {
            0 => self.coordinator_ready().await,
            1 => self.txn_ready().await.map_err(|e| match e {
                crate::txn::TxnError::CoordinatorLoadInProgress => GroupError::CoordinatorLoadInProgress,
                _ => GroupError::CoordinatorNotAvailable,
            }),
            _ => Ok(()),
        };
        let mut resp = FindCoordinatorResponse::default();
        let mut entries = Vec::new();
        for key in keys {
            let mut c = CoordinatorEntry::default();
            c.key = key;
            let outcome = match (req.key_type, &ready) {
                (0 | 1, Ok(())) => self.coordinator_of(req.key_type, c.key.as_str()),
                (0 | 1, Err(e)) => Err(*e),
                _ => Err(GroupError::InvalidGroupId),
            };
            match outcome {
                Ok(info) => {
                    c.node_id = BrokerId(info.node_id);
                    c.host = str(&info.host);
                    c.port = info.port;
                }
                Err(e) => {
                    let code = if req.key_type > 1 {
                        kafka_protocol::ResponseError::InvalidRequest.code()
                    } else {
                        group_code(e)
                    };
                    c.node_id = BrokerId(-1);
                    c.host = str("");
                    c.port = -1;
                    c.error_code = code;
                    c.error_message = Some(str(&e.to_string()));
                }
            }
            entries.push(c);
        }
        for c in &entries {
            count("FindCoordinator", c.error_code);
        }
        if version >= 4 {
            resp.coordinators = entries;
        } else if let Some(c) = entries.into_iter().next() {
            resp.error_code = c.error_code;
            resp.error_message = c.error_message;
            resp.node_id = c.node_id;
            resp.host = c.host;
            resp.port = c.port;
        }
        resp
    }

    /// JoinGroup (waits for the rebalance).
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let mut resp = JoinGroupResponse::default();
        resp.member_id = req.member_id.clone();
        resp.generation_id = -1;
        resp.protocol_name = None;
        if let Err(e) = self.coordinator_ready().await {
            resp.error_code = group_code(e);
            return resp;
        }
        let rebalance = if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms };
        let join = crate::groups::JoinRequest {
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client_id.to_string(),
            client_host: format!("/{client_host}"),
            session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance.max(0) as u64),
            protocol_type: req.protocol_type.to_string(),
            protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
            version,
        };
        match self.coordinator.join(req.group_id.as_str(), join, &CatalogTopics(&self.catalog)).await {
            Err(e) => resp.error_code = group_code(e),
            Ok(r) => {
                resp.error_code = r.error.map(group_code).unwrap_or(0);
                resp.generation_id = r.generation;
                resp.protocol_type = r.protocol_type.map(|s| str(&s));
                resp.protocol_name = r.protocol_name.map(|s| str(&s));
                resp.leader = str(&r.leader);
                resp.skip_assignment = r.skip_assignment;
                resp.member_id = str(&r.member_id);
                resp.members = r
                    .members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        let mut m = JoinGroupResponseMember::default();
                        m.member_id = str(&id);
                        m.group_instance_id = instance.map(|s| str(&s));
                        m.metadata = metadata;
                        m
                    })
                    .collect();
            }
        }
        if version < 7 && resp.protocol_name.is_none() {
            // Before v7 the protocol name is not nullable.
            resp.protocol_name = Some(str(""));
        }
        count("JoinGroup", resp.error_code);
        resp
    }

    /// SyncGroup (waits for the leader's assignment).
    pub async fn sync_group(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let mut resp = SyncGroupResponse::default();
        if let Err(e) = self.coordinator_ready().await {
            resp.error_code = group_code(e);
            return resp;
        }
        let outcome = self
            .coordinator
            .sync(
                req.group_id.as_str(),
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
                req.generation_id,
                req.protocol_type.as_deref(),
                req.protocol_name.as_deref(),
                req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
                &CatalogTopics(&self.catalog),
            )
            .await;
        match outcome {
            Err(e) => resp.error_code = group_code(e),
            Ok(r) => {
                resp.error_code = r.error.map(group_code).unwrap_or(0);
                resp.protocol_type = r.protocol_type.map(|s| str(&s));
                resp.protocol_name = r.protocol_name.map(|s| str(&s));
                resp.assignment = r.assignment;
            }
        }
        count("SyncGroup", resp.error_code);
        resp
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let mut resp = HeartbeatResponse::default();
        let outcome = match self.coordinator_ready().await {
            Err(e) => Err(e),
            Ok(()) => self.coordinator.heartbeat(
                req.group_id.as_str(),
                req.member_id.as_str(),
                req.group_instance_id.as_deref(),
                req.generation_id,
            ),
        };
        resp.error_code = code_of(&outcome);
        count("Heartbeat", resp.error_code);
        resp
    }

    /// LeaveGroup (one member before v3, a batch from v3).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let mut resp = LeaveGroupResponse::default();
        if let Err(e) = self.coordinator_ready().await {
            resp.error_code = group_code(e);
            return resp;
        }
        let members: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        match self.coordinator.leave(req.group_id.as_str(), &members, &CatalogTopics(&self.catalog)).await {
            Err(e) => resp.error_code = group_code(e),
            Ok(results) if version >= 3 => {
                resp.members = members
                    .iter()
                    .zip(results)
                    .map(|((m, i), r)| {
                        let mut out = MemberResponse::default();
                        out.member_id = str(m);
                        out.group_instance_id = i.as_deref().map(str);
                        out.error_code = code_of(&r);
                        out
                    })
                    .collect();
            }
            Ok(results) => resp.error_code = results.first().map(code_of).unwrap_or(0),
        }
        count("LeaveGroup", resp.error_code);
        for m in &resp.members {
            count("LeaveGroup", m.error_code);
        }
        resp
    }

    /// OffsetCommit.
    pub async fn offset_commit(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let mut resp = OffsetCommitResponse::default();
        let ready = self.coordinator_ready().await;
        // Per partition: a validation error, or a place in the commit.
        let mut entries = Vec::new();
        let mut shape: Vec<(TopicName, PartitionErrors)> = Vec::new();
        for t in &req.topics {
            let topic = self.catalog.topic(t.name.as_str());
            let mut parts = Vec::new();
            for p in &t.partitions {
                let entry = commit_entry(
                    topic.as_deref(),
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_deref(),
                );
                let err = entry.map(|e| entries.push(e)).err();
                parts.push((p.partition_index, err));
            }
            shape.push((t.name.clone(), parts));
        }
        let outcome = match ready {
            Err(e) => Err(e),
            Ok(()) if entries.is_empty() => Ok(()),
            Ok(()) => {
                self.coordinator
                    .commit(
                        req.group_id.as_str(),
                        req.member_id.as_str(),
                        req.group_instance_id.as_deref(),
                        req.generation_id_or_member_epoch,
                        &entries,
                    )
                    .await
            }
        };
        let all = code_of(&outcome);
        resp.topics = shape
            .into_iter()
            .map(|(name, parts)| {
                let mut t = OffsetCommitResponseTopic::default();
                t.name = name;
                t.partitions = parts
                    .into_iter()
                    .map(|(i, err)| {
                        let mut p = OffsetCommitResponsePartition::default();
                        p.partition_index = i;
                        p.error_code = err.unwrap_or(all);
                        count("OffsetCommit", p.error_code);
                        p
                    })
                    .collect();
                t
            })
            .collect();
        resp
    }

    /// OffsetFetch (one group before v8, a batch from v8).
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        let ready = self.coordinator_ready().await;
        let fetch_one = |group: &str,
                         member: Option<(&str, i32)>,
                         topics: Option<Vec<(String, Vec<i32>)>>|
         -> Result<Vec<(String, Vec<Fetched>)>, GroupError> {
            ready?;
            let found = self.coordinator.fetch(group, member, topics.as_deref())?;
            Ok(found
                .into_iter()
                .map(|(t, parts)| {
                    let parts = parts
                        .into_iter()
                        .map(|(p, c)| match c {
                            Some(c) => (p, c.offset, c.leader_epoch, c.metadata),
                            None => (p, -1, -1, String::new()),
                        })
                        .collect();
                    (t, parts)
                })
                .collect())
        };
        if version >= 8 {
            for g in &req.groups {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect());
                let mut out = OffsetFetchResponseGroup::default();
                out.group_id = g.group_id.clone();
                // v9: a consumer-protocol member's fetch is checked by epoch.
                let member = g.member_id.as_deref().filter(|m| !m.is_empty()).map(|m| (m, g.member_epoch));
                match fetch_one(g.group_id.as_str(), member, topics) {
                    Err(e) => out.error_code = group_code(e),
                    Ok(found) => {
                        out.topics = found
                            .into_iter()
                            .map(|(t, parts)| {
                                let mut rt = OffsetFetchResponseTopics::default();
                                rt.name = TopicName(str(&t));
                                rt.partitions = parts
                                    .into_iter()
                                    .map(|(i, offset, epoch, metadata)| {
                                        let mut p = OffsetFetchResponsePartitions::default();
                                        p.partition_index = i;
                                        p.committed_offset = offset;
                                        p.committed_leader_epoch = epoch;
                                        p.metadata = Some(str(&metadata));
                                        p
                                    })
                                    .collect();
                                rt
                            })
                            .collect();
                    }
                }
                if req.require_stable {
                    let unstable = self.coordinator.unstable(g.group_id.as_str());
                    for t in &mut out.topics {
                        for p in &mut t.partitions {
                            if unstable.contains(&(t.name.to_string(), p.partition_index)) {
                                p.error_code = kafka_protocol::ResponseError::UnstableOffsetCommit.code();
                                p.committed_offset = -1;
                            }
                        }
                    }
                }
                count("OffsetFetch", out.error_code);
                resp.groups.push(out);
            }
            return resp;
        }
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect::<Vec<_>>()
        });
        let requested = topics.clone();
        match fetch_one(req.group_id.as_str(), None, topics) {
            Err(e) => {
                resp.error_code = group_code(e);
                // Before v2 the error is per partition.
                if let Some(ts) = requested {
                    resp.topics = ts
                        .into_iter()
                        .map(|(t, parts)| {
                            let mut rt = OffsetFetchResponseTopic::default();
                            rt.name = TopicName(str(&t));
                            rt.partitions = parts
                                .into_iter()
                                .map(|i| {
                                    let mut p = OffsetFetchResponsePartition::default();
                                    p.partition_index = i;
                                    p.committed_offset = -1;
                                    p.committed_leader_epoch = -1;
                                    p.metadata = Some(str(""));
                                    p.error_code = if version < 2 { group_code(e) } else { 0 };
                                    p
                                })
                                .collect();
                            rt
                        })
                        .collect();
                }
            }
            Ok(found) => {
                resp.topics = found
                    .into_iter()
                    .map(|(t, parts)| {
                        let mut rt = OffsetFetchResponseTopic::default();
                        rt.name = TopicName(str(&t));
                        rt.partitions = parts
                            .into_iter()
                            .map(|(i, offset, epoch, metadata)| {
                                let mut p = OffsetFetchResponsePartition::default();
                                p.partition_index = i;
                                p.committed_offset = offset;
                                p.committed_leader_epoch = epoch;
                                p.metadata = Some(str(&metadata));
                                p
                            })
                            .collect();
                        rt
                    })
                    .collect();
                // v7: offsets pending in a transaction are not stable yet.
                if version >= 7 && req.require_stable {
                    let unstable = self.coordinator.unstable(req.group_id.as_str());
                    for t in &mut resp.topics {
                        for p in &mut t.partitions {
                            if unstable.contains(&(t.name.to_string(), p.partition_index)) {
                                p.error_code = kafka_protocol::ResponseError::UnstableOffsetCommit.code();
                                p.committed_offset = -1;
                            }
                        }
                    }
                }
            }
        }
        resp
    }

    /// ListGroups, with the state (v4) and type (v5) filters.
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut resp = ListGroupsResponse::default();
        if let Err(e) = self.coordinator_ready().await {
            resp.error_code = group_code(e);
            return resp;
        }
        let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
        let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
        match self.coordinator.list() {
            Err(e) => resp.error_code = group_code(e),
            Ok(groups) => {
                for (id, protocol_type, state, kind) in groups {
                    if version >= 4 && !states.is_empty() && !states.contains(&state.to_lowercase()) {
                        continue;
                    }
                    if version >= 5 && !types.is_empty() && !types.iter().any(|t| t == kind) {
                        continue;
                    }
                    let mut g = ListedGroup::default();
                    g.group_id = GroupId(str(&id));
                    g.protocol_type = str(&protocol_type);
                    g.group_state = str(state);
                    g.group_type = str(kind);
                    resp.groups.push(g);
                }
            }
        }
        resp
    }

    /// DescribeGroups.
    pub async fn describe_groups(&self, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
        let mut resp = DescribeGroupsResponse::default();
        let ready = self.coordinator_ready().await;
        for id in req.groups {
            let mut g = DescribedGroup::default();
            g.group_id = id.clone();
            g.authorized_operations = unknown_authorized_operations();
            let outcome = ready.and_then(|()| self.coordinator.describe(id.as_str()));
            match outcome {
                Err(e) => {
                    g.error_code = group_code(e);
                    g.group_state = str("");
                }
                Ok(None) => {
                    g.group_state = str("Dead");
                    if version >= 6 {
                        g.error_code = group_code(GroupError::GroupIdNotFound);
                        g.error_message = Some(str(&format!("Group {} not found.", id.as_str())));
                    }
                }
                Ok(Some(s)) => {
                    g.group_state = str(s.state);
                    g.protocol_type = str(&s.protocol_type);
                    g.protocol_data = str(&s.protocol);
                    g.members = s
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut d = DescribedGroupMember::default();
                            d.member_id = str(&m.member_id);
                            d.group_instance_id = m.instance_id.map(|s| str(&s));
                            d.client_id = str(&m.client_id);
                            d.client_host = str(&m.client_host);
                            d.member_metadata = m.metadata;
                            d.member_assignment = m.assignment;
                            d
                        })
                        .collect();
                }
            }
            resp.groups.push(g);
        }
        resp
    }

    /// DeleteGroups.
    pub async fn delete_groups(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut resp = DeleteGroupsResponse::default();
        let ready = self.coordinator_ready().await;
        for id in req.groups_names {
            let mut r = DeletableGroupResult::default();
            let outcome = match ready {
                Err(e) => Err(e),
                Ok(()) => self.coordinator.delete(id.as_str()).await,
            };
            r.group_id = id;
            r.error_code = code_of(&outcome);
            count("DeleteGroups", r.error_code);
            resp.results.push(r);
        }
        resp
    }

    /// OffsetDelete.
    pub async fn offset_delete(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let mut resp = OffsetDeleteResponse::default();
        if let Err(e) = self.coordinator_ready().await {
            resp.error_code = group_code(e);
            return resp;
        }
        let topics: Vec<(String, Vec<i32>)> = req
            .topics
            .iter()
            .map(|t| (t.name.to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
            .collect();
        match self.coordinator.delete_offsets(req.group_id.as_str(), &topics).await {
            Err(e) => resp.error_code = group_code(e),
            Ok(out) => {
                resp.topics = out
                    .into_iter()
                    .map(|(t, parts)| {
                        let known = self.catalog.topic(&t);
                        let mut rt = OffsetDeleteResponseTopic::default();
                        rt.name = TopicName(str(&t));
                        rt.partitions = parts
                            .into_iter()
                            .map(|(i, e)| {
                                let mut p = OffsetDeleteResponsePartition::default();
                                p.partition_index = i;
                                p.error_code = match (e, &known) {
                                    (Some(e), _) => group_code(e),
                                    (None, None) => group_code(GroupError::UnknownTopicOrPartition),
                                    (None, Some(_)) => 0,
                                };
                                p
                            })
                            .collect();
                        rt
                    })
                    .collect();
            }
        }
        resp
    }
}
