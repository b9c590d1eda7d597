//! AlterPartitionReassignments and ListPartitionReassignments, the APIs of
//! `kafka-reassign-partitions`, Cruise Control and Strimzi (docs/cluster.md).
//! Requests are checked as Kafka checks them. On one node a reassignment can
//! only name this broker and completes at once. In a cluster it sets the
//! placement's target and the leader hands the stream over
//! (`crate::cluster`); the object store is the replication, so the first
//! replica becomes the leader and the list is what Metadata shows.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::Broker;
use crate::error_codes::count;

impl Broker {
    /// The check of one partition's requested replicas (`None`: cancel).
    fn check_reassignment(
        &self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
        allow_factor_change: bool,
    ) -> Result<(), (ResponseError, Option<String>)> {
        let Some(t) = self.catalog.topic(topic) else {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                Some(format!("Unable to find a topic named {topic}.")),
            ));
        };
        if !(0..t.partitions()).contains(&partition) {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                Some(format!("Unable to find partition {topic}:{partition}.")),
            ));
        }
        let Some(replicas) = replicas else {
            // Kafka answers a cancel of nothing without a message.
            return Err((ResponseError::NoReassignmentInProgress, None));
        };
        if replicas.is_empty() {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                Some("The manual partition assignment includes an empty replica list.".into()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in replicas {
            if !seen.insert(*r) {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    Some(format!("The manual partition assignment includes the broker {r} more than once.")),
                ));
            }
        }
        let live: Vec<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        if let Some(r) = replicas.iter().find(|r| !live.contains(r)) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                Some(format!(
                    "The manual partition assignment includes broker {r}, but no such broker is registered."
                )),
            ));
        }
        let stream = t.partition_streams[partition as usize];
        let current = self.replicas_of(stream).len().max(1);
        if !allow_factor_change && replicas.len() != current {
            return Err((
                ResponseError::InvalidReplicationFactor,
                Some(format!("The replication factor is changed from {current} to {}", replicas.len())),
            ));
        }
        Ok(())
    }

    /// AlterPartitionReassignments: each partition checked; a valid one
    /// starts its move (complete at once on one node).
    pub async fn alter_partition_reassignments(
        &self,
        req: AlterPartitionReassignmentsRequest,
        version: i16,
    ) -> AlterPartitionReassignmentsResponse {
        let mut resp = AlterPartitionReassignmentsResponse::default();
        resp.allow_replication_factor_change = req.allow_replication_factor_change;
        // v0 requests carry no flag: Kafka allows a change there.
        let allow = version < 1 || req.allow_replication_factor_change;
        for t in req.topics {
            let mut tr = ReassignableTopicResponse::default();
            tr.name = t.name.clone();
            for p in t.partitions {
                let replicas: Option<Vec<i32>> = p.replicas.map(|rs| rs.iter().map(|r| r.0).collect());
                let mut pr = ReassignablePartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.error_message = None;
                let stream = self.catalog.topic(t.name.as_str()).and_then(|topic| {
                    topic.partition_streams.get(usize::try_from(p.partition_index).ok()?).copied()
                });
                let checked = match (&replicas, stream.and_then(|s| self.moving(s))) {
                    // A cancel of a move in progress.
                    (None, Some(_)) => Ok(()),
                    _ => self.check_reassignment(
                        t.name.as_str(),
                        p.partition_index,
                        replicas.as_deref(),
                        allow,
                    ),
                };
                let started = match (checked, stream) {
                    (Ok(()), Some(stream)) => {
                        let moved = match &replicas {
                            Some(r) => self.request_move(stream, r.clone()).await,
                            None => self.cancel_move(stream).await,
                        };
                        moved.map_err(|e| (crate::error_codes::response_error(&e), Some(e.to_string())))
                    }
                    (other, _) => other,
                };
                match started {
                    Ok(()) => {
                        tracing::info!(topic = %t.name.as_str(), partition = p.partition_index, ?replicas, "reassignment started");
                    }
                    Err((e, message)) => {
                        pr.error_code = e.code();
                        pr.error_message = message.map(StrBytes::from_string);
                    }
                }
                count("AlterPartitionReassignments", pr.error_code);
                tr.partitions.push(pr);
            }
            resp.responses.push(tr);
        }
        resp
    }

    /// ListPartitionReassignments: the moves in progress (none on one node),
    /// of the partitions asked for (all when `topics` is null).
    pub fn list_partition_reassignments(
        &self,
        req: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let mut resp = ListPartitionReassignmentsResponse::default();
        let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
            Some(ts) => ts.into_iter().map(|t| (t.name.to_string(), Some(t.partition_indexes))).collect(),
            None => self.catalog.topics().iter().map(|t| (t.name.clone(), None)).collect(),
        };
        for (name, partitions) in wanted {
            let Some(topic) = self.catalog.topic(&name) else { continue };
            let mut tr = OngoingTopicReassignment::default();
            tr.name = kafka_protocol::messages::TopicName(StrBytes::from_string(name.clone()));
            for (i, stream) in topic.partition_streams.iter().enumerate() {
                let index = i as i32;
                if partitions.as_ref().is_some_and(|ps| !ps.contains(&index)) {
                    continue;
                }
                let Some((p, _)) = self.moving(*stream) else { continue };
                let original = [p.leader];
                let mut all = p.replicas.clone();
                all.extend(original.iter().filter(|r| !p.replicas.contains(r)));
                let mut pr = OngoingPartitionReassignment::default();
                pr.partition_index = index;
                pr.replicas = all.into_iter().map(BrokerId).collect();
                pr.adding_replicas =
                    p.replicas.iter().filter(|r| !original.contains(r)).map(|r| BrokerId(*r)).collect();
                pr.removing_replicas =
                    original.iter().filter(|r| !p.replicas.contains(r)).map(|r| BrokerId(*r)).collect();
                tr.partitions.push(pr);
            }
            if !tr.partitions.is_empty() {
                resp.topics.push(tr);
            }
        }
        resp
    }
}
