//! AlterPartitionReassignments and ListPartitionReassignments, the APIs of
//! `kafka-reassign-partitions`, Cruise Control and Strimzi (docs/cluster.md).
//! A prefix has one broker today, so a reassignment can only name it: it
//! completes at once (the broker already leads every partition and the object
//! store is the replication) and none is ever in progress. Requests are
//! checked as Kafka checks them; the cluster's moves will answer through the
//! same checks.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
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
        let live = self.config.node_id;
        if let Some(r) = replicas.iter().find(|r| **r != live) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                Some(format!(
                    "The manual partition assignment includes broker {r}, but no such broker is registered."
                )),
            ));
        }
        // One replica (this broker) is the only factor today.
        if !allow_factor_change && replicas.len() != 1 {
            return Err((
                ResponseError::InvalidReplicationFactor,
                Some(format!("The replication factor is changed from 1 to {}", replicas.len())),
            ));
        }
        Ok(())
    }

    /// AlterPartitionReassignments: each partition checked; a valid one (all
    /// on this broker) is complete at once.
    pub fn alter_partition_reassignments(
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
                match self.check_reassignment(t.name.as_str(), p.partition_index, replicas.as_deref(), allow)
                {
                    Ok(()) => {
                        tracing::info!(topic = %t.name.as_str(), partition = p.partition_index, "reassignment complete (one broker)");
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

    /// ListPartitionReassignments: the reassignments in progress (none on one
    /// broker).
    pub fn list_partition_reassignments(
        &self,
        _req: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        ListPartitionReassignmentsResponse::default()
    }
}
