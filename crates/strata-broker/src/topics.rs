//! Topic administration and discovery: Metadata, CreateTopics, DeleteTopics,
//! CreatePartitions, DescribeCluster, DescribeTopicPartitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_cluster::{ClusterError, TopicRecord};
use uuid::Uuid;

use crate::broker::now_ms;
use crate::error_codes::{code, message};
use crate::{Broker, BrokerError, topic_config};

/// Kafka's limit on topic name length.
const MAX_NAME_LEN: usize = 249;
/// "Authorized operations not requested" in Kafka's responses.
const OPS_OMITTED: i32 = i32::MIN;

/// Checks a topic name the way Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(BrokerError::InvalidTopic(format!("topic name cannot be \"{name}\"")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(BrokerError::InvalidTopic(format!(
            "topic name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(BrokerError::InvalidTopic(format!(
            "topic name {name:?} contains {c:?}; legal characters are ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn map_cluster(e: ClusterError) -> BrokerError {
    match e {
        ClusterError::TopicExists(t) => BrokerError::TopicExists(t),
        ClusterError::UnknownTopic(_) => BrokerError::UnknownTopicOrPartition,
        ClusterError::InvalidPartitions { topic, current, requested } => BrokerError::InvalidPartitions(
            format!("topic {topic} has {current} partitions; requested {requested}, which is not more"),
        ),
        other => BrokerError::Cluster(other),
    }
}

impl Broker {
    fn metadata_partitions(&self, topic: &TopicRecord) -> Vec<MetadataResponsePartition> {
        let live: std::collections::HashSet<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        topic
            .partition_streams
            .iter()
            .enumerate()
            .map(|(i, stream)| {
                let mut p = MetadataResponsePartition::default();
                p.partition_index = i as i32;
                match self.leader_of(*stream) {
                    Some((leader, epoch)) => {
                        p.leader_id = BrokerId(leader);
                        p.leader_epoch = epoch;
                    }
                    None => {
                        p.error_code = kafka_protocol::ResponseError::LeaderNotAvailable.code();
                        p.leader_id = BrokerId(-1);
                        p.leader_epoch = -1;
                    }
                }
                let replicas = self.replicas_of(*stream);
                p.isr_nodes = replicas.iter().filter(|r| live.contains(r)).map(|r| BrokerId(*r)).collect();
                p.replica_nodes = replicas.into_iter().map(BrokerId).collect();
                p
            })
            .collect()
    }

    fn metadata_topic(&self, topic: &TopicRecord) -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(str(&topic.name)));
        t.topic_id = topic.id;
        t.is_internal = crate::groups::is_internal(&topic.name);
        t.partitions = self.metadata_partitions(topic);
        t.topic_authorized_operations = OPS_OMITTED;
        t
    }

    /// Creates a topic with broker defaults because a client asked for it.
    async fn auto_create(&self, name: &str) -> Result<Arc<TopicRecord>, BrokerError> {
        validate_topic_name(name)?;
        match self.catalog.create_topic(name, self.config.num_partitions, BTreeMap::new(), now_ms()).await {
            Ok(t) => {
                self.take_new_streams(&t.partition_streams).await?;
                tracing::info!(topic = name, partitions = t.partitions(), "auto-created topic");
                Ok(t)
            }
            // Created concurrently by another request: use it.
            Err(ClusterError::TopicExists(_)) => {
                self.catalog.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)
            }
            Err(e) => Err(map_cluster(e)),
        }
    }

    /// Metadata: brokers, and the topics asked for (all when `topics` is null,
    /// or empty before v1), auto-creating unknown ones when allowed.
    pub async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let mut resp = MetadataResponse::default();
        resp.brokers = self
            .live_brokers()
            .into_iter()
            .map(|info| {
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(info.node_id);
                b.host = str(&info.host);
                b.port = info.port;
                b
            })
            .collect();
        resp.cluster_id = Some(str(self.cluster_id()));
        resp.controller_id = BrokerId(self.controller_id());
        resp.cluster_authorized_operations = OPS_OMITTED;
        let allow_auto = self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let wanted = match req.topics {
            None => None,
            Some(t) if t.is_empty() && version == 0 => None,
            Some(t) => Some(t),
        };
        match wanted {
            None => {
                resp.topics = self.catalog.topics().iter().map(|t| self.metadata_topic(t)).collect();
            }
            Some(list) => {
                for want in list {
                    let mut t = MetadataResponseTopic::default();
                    t.topic_authorized_operations = OPS_OMITTED;
                    let by_name = if want.topic_id.is_nil() { want.name } else { None };
                    match by_name {
                        Some(name) => {
                            let found = match self.catalog.topic(name.as_str()) {
                                Some(topic) => Ok(topic),
                                None if allow_auto => self.auto_create(name.as_str()).await,
                                None => match validate_topic_name(name.as_str()) {
                                    Err(e) => Err(e),
                                    Ok(()) => Err(BrokerError::UnknownTopicOrPartition),
                                },
                            };
                            match found {
                                Ok(topic) => t = self.metadata_topic(&topic),
                                Err(e) => {
                                    t.name = Some(name);
                                    t.error_code = code(&e);
                                }
                            }
                        }
                        None => match self.catalog.topic_by_id(want.topic_id) {
                            Some(topic) => t = self.metadata_topic(&topic),
                            None => {
                                t.topic_id = want.topic_id;
                                t.error_code = code(&BrokerError::UnknownTopicId);
                            }
                        },
                    }
                    resp.topics.push(t);
                }
            }
        }
        resp
    }

    /// CreateTopics: validates every topic, then creates those that pass unless
    /// `validate_only`.
    pub async fn create_topics(&self, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
        let mut resp = CreateTopicsResponse::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for t in &req.topics {
            *seen.entry(t.name.to_string()).or_default() += 1;
        }
        for topic in req.topics {
            let name = topic.name.to_string();
            let mut result = CreatableTopicResult::default();
            result.name = topic.name.clone();
            result.num_partitions = -1;
            result.replication_factor = -1;
            let outcome = if seen.get(&name).copied().unwrap_or(0) > 1 {
                Err(BrokerError::InvalidRequest(format!(
                    "topic {name} appears more than once in the request"
                )))
            } else {
                self.create_one(&topic, req.validate_only).await
            };
            match outcome {
                Ok((record, partitions, configs)) => {
                    result.num_partitions = partitions;
                    result.replication_factor = 1;
                    if let Some(record) = record {
                        result.topic_id = record.id;
                    }
                    if version >= 5 {
                        result.configs = Some(
                            crate::configs::effective(&self.config, &configs)
                                .into_iter()
                                .map(|(name, value, source)| {
                                    let mut c = CreatableTopicConfigs::default();
                                    c.name = str(&name);
                                    c.value = Some(str(&value));
                                    c.config_source = source;
                                    c
                                })
                                .collect(),
                        );
                    }
                }
                Err(e) => {
                    result.error_code = code(&e);
                    result.error_message = Some(message(&e));
                }
            }
            resp.topics.push(result);
        }
        resp
    }

    /// Checks one partition's replica list as Kafka does: not empty, no
    /// broker twice, and only live brokers of the cluster.
    fn check_replicas(&self, ids: &[kafka_protocol::messages::BrokerId]) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Err(BrokerError::InvalidReplicaAssignment("an assignment names no broker".into()));
        }
        let mut seen: Vec<i32> = ids.iter().map(|b| b.0).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(BrokerError::InvalidReplicaAssignment("an assignment names a broker twice".into()));
        }
        let live: Vec<i32> = self.live_brokers().iter().map(|b| b.node_id).collect();
        if let Some(unknown) = seen.iter().find(|b| !live.contains(b)) {
            return Err(BrokerError::InvalidReplicaAssignment(format!(
                "broker {unknown} is not in the cluster"
            )));
        }
        Ok(())
    }

    async fn create_one(
        &self,
        topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
        validate_only: bool,
    ) -> Result<(Option<Arc<TopicRecord>>, i32, BTreeMap<String, String>), BrokerError> {
        let name = topic.name.as_str();
        validate_topic_name(name)?;
        if self.catalog.topic(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let partitions = if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(BrokerError::InvalidRequest(
                    "both a replica assignment and a partition count or replication factor were given".into(),
                ));
            }
            for a in &topic.assignments {
                self.check_replicas(&a.broker_ids)?;
            }
            let mut indexes: Vec<i32> = topic.assignments.iter().map(|a| a.partition_index).collect();
            indexes.sort_unstable();
            if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
                return Err(BrokerError::InvalidPartitions(
                    "assigned partitions must be consecutive from 0".into(),
                ));
            }
            indexes.len() as i32
        } else {
            match topic.num_partitions {
                -1 => self.config.num_partitions,
                n if n <= 0 => {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "number of partitions must be larger than 0, or -1 for the default; got {n}"
                    )));
                }
                n => n,
            }
        };
        match topic.replication_factor {
            -1 => {}
            n if n <= 0 => {
                return Err(BrokerError::InvalidReplicationFactor(format!(
                    "replication factor must be larger than 0, or -1 for the default; got {n}"
                )));
            }
            _ => {}
        }
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            let value = c.value.as_ref().ok_or_else(|| {
                BrokerError::InvalidConfig(format!("null value for config {}", c.name.as_str()))
            })?;
            let v = topic_config::validate(c.name.as_str(), value.as_str())?;
            configs.insert(c.name.to_string(), v);
        }
        if validate_only {
            return Ok((None, partitions, configs));
        }
        let record = self
            .catalog
            .create_topic(name, partitions, configs.clone(), now_ms())
            .await
            .map_err(map_cluster)?;
        self.take_new_streams(&record.partition_streams).await?;
        tracing::info!(topic = name, partitions, "created topic");
        Ok((Some(record), partitions, configs))
    }

    /// DeleteTopics, by name (all versions) or by id (v6).
    pub async fn delete_topics(&self, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let mut resp = DeleteTopicsResponse::default();
        let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
            req.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
        } else {
            req.topic_names.into_iter().map(|n| (Some(n), Uuid::nil())).collect()
        };
        for (name, id) in targets {
            let mut r = DeletableTopicResult::default();
            r.topic_id = id;
            let found = match &name {
                Some(n) => self.catalog.topic(n.as_str()).ok_or(BrokerError::UnknownTopicOrPartition),
                None => self.catalog.topic_by_id(id).ok_or(BrokerError::UnknownTopicId),
            };
            r.name = name;
            let outcome = match found {
                Ok(topic) => {
                    r.name = Some(TopicName(str(&topic.name)));
                    r.topic_id = topic.id;
                    match self.catalog.delete_topic(&topic.name).await.map_err(map_cluster) {
                        Ok(t) => {
                            self.drop_placements(&t.partition_streams).await;
                            for stream in &t.partition_streams {
                                if let Err(e) = self.streams.delete_stream(*stream).await {
                                    tracing::warn!(stream, error = %e, "deleting a stream of a deleted topic failed");
                                }
                                self.producers.forget(*stream).await;
                            }
                            tracing::info!(topic = %t.name, "deleted topic");
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                r.error_code = code(&e);
                r.error_message = Some(message(&e));
            }
            resp.responses.push(r);
        }
        resp
    }

    /// CreatePartitions: grows topics to the asked count.
    pub async fn create_partitions(&self, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
        let mut resp = CreatePartitionsResponse::default();
        for t in req.topics {
            let mut r = CreatePartitionsTopicResult::default();
            r.name = t.name.clone();
            let outcome = async {
                let topic =
                    self.catalog.topic(t.name.as_str()).ok_or(BrokerError::UnknownTopicOrPartition)?;
                if t.count <= topic.partitions() {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "topic currently has {} partitions, {} would not be an increase",
                        topic.partitions(),
                        t.count
                    )));
                }
                if let Some(assignments) = &t.assignments {
                    if assignments.len() as i32 != t.count - topic.partitions() {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "{} assignments given for {} new partitions",
                            assignments.len(),
                            t.count - topic.partitions()
                        )));
                    }
                    for a in assignments {
                        self.check_replicas(&a.broker_ids)?;
                    }
                }
                if req.validate_only {
                    return Ok(());
                }
                let before = topic.partitions() as usize;
                let grown =
                    self.catalog.add_partitions(t.name.as_str(), t.count).await.map_err(map_cluster)?;
                self.take_new_streams(&grown.partition_streams[before..]).await?;
                tracing::info!(topic = %t.name.as_str(), partitions = t.count, "added partitions");
                Ok(())
            }
            .await;
            if let Err(e) = outcome {
                r.error_code = code(&e);
                r.error_message = Some(message(&e));
            }
            resp.results.push(r);
        }
        resp
    }

    /// DescribeCluster: the live brokers and the controller.
    pub fn describe_cluster(&self, req: DescribeClusterRequest) -> DescribeClusterResponse {
        let mut resp = DescribeClusterResponse::default();
        resp.endpoint_type = req.endpoint_type;
        if req.endpoint_type != 1 {
            resp.error_code = kafka_protocol::ResponseError::UnsupportedEndpointType.code();
            resp.error_message = Some(str("only broker endpoints (type 1) are served"));
            return resp;
        }
        resp.cluster_id = str(self.cluster_id());
        resp.controller_id = BrokerId(self.controller_id());
        resp.brokers = self
            .live_brokers()
            .into_iter()
            .map(|info| {
                let mut b = DescribeClusterBroker::default();
                b.broker_id = BrokerId(info.node_id);
                b.host = str(&info.host);
                b.port = info.port;
                b
            })
            .collect();
        resp.cluster_authorized_operations = OPS_OMITTED;
        resp
    }

    /// DescribeLogDirs: one log dir, the object store holding every
    /// partition, with each asked partition's size (its volume's total and
    /// usable bytes are unknown: -1). Unknown topics and partitions are left
    /// out, as Kafka leaves out what it does not host.
    pub fn describe_log_dirs(&self, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
        let wanted: Option<HashMap<String, Vec<i32>>> =
            req.topics.map(|ts| ts.into_iter().map(|t| (t.topic.to_string(), t.partitions)).collect());
        let mut dir = DescribeLogDirsResult::default();
        dir.log_dir = str(&self.config.log_dir);
        dir.total_bytes = -1;
        dir.usable_bytes = -1;
        let mut topics = self.catalog.topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for topic in topics {
            let indexes: Vec<i32> = match &wanted {
                None => (0..topic.partition_streams.len() as i32).collect(),
                Some(w) => match w.get(&topic.name) {
                    Some(parts) => parts.clone(),
                    None => continue,
                },
            };
            let mut t = DescribeLogDirsTopic::default();
            t.name = TopicName(str(&topic.name));
            for index in indexes {
                let Some(stream) = self.partition(&topic, index) else { continue };
                let mut p = DescribeLogDirsPartition::default();
                p.partition_index = index;
                p.partition_size = i64::try_from(stream.size_bytes()).unwrap_or(i64::MAX);
                t.partitions.push(p);
            }
            if !t.partitions.is_empty() {
                dir.topics.push(t);
            }
        }
        let mut resp = DescribeLogDirsResponse::default();
        resp.results = vec![dir];
        resp
    }

    /// DescribeTopicPartitions, with the cursor and partition limit of KIP-966.
    pub fn describe_topic_partitions(
        &self,
        req: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        let mut resp = DescribeTopicPartitionsResponse::default();
        let mut names: Vec<String> = if req.topics.is_empty() {
            self.catalog.topics().iter().map(|t| t.name.clone()).collect()
        } else {
            req.topics.iter().map(|t| t.name.to_string()).collect()
        };
        names.sort();
        names.dedup();
        let mut budget = if req.response_partition_limit <= 0 { 2000 } else { req.response_partition_limit };
        let (cursor_topic, cursor_part) = match &req.cursor {
            Some(c) => (Some(c.topic_name.to_string()), c.partition_index.max(0)),
            None => (None, 0),
        };
        for name in names {
            if let Some(ct) = &cursor_topic
                && &name < ct
            {
                continue;
            }
            let mut t = DescribeTopicPartitionsResponseTopic::default();
            t.is_internal = crate::groups::is_internal(&name);
            t.name = Some(TopicName(str(&name)));
            t.topic_authorized_operations = OPS_OMITTED;
            let topic = match validate_topic_name(&name)
                .and_then(|()| self.catalog.topic(&name).ok_or(BrokerError::UnknownTopicOrPartition))
            {
                Ok(topic) => topic,
                Err(e) => {
                    t.error_code = code(&e);
                    resp.topics.push(t);
                    continue;
                }
            };
            t.topic_id = topic.id;
            let start = if cursor_topic.as_deref() == Some(name.as_str()) { cursor_part } else { 0 };
            // Leaders, epochs and replicas as Metadata shows them.
            let placed = self.metadata_partitions(&topic);
            for i in start..topic.partitions() {
                if budget == 0 {
                    let mut c = Cursor::default();
                    c.topic_name = TopicName(str(&name));
                    c.partition_index = i;
                    resp.next_cursor = Some(c);
                    break;
                }
                let mut p = DescribeTopicPartitionsResponsePartition::default();
                p.partition_index = i;
                let m = &placed[i as usize];
                p.error_code = m.error_code;
                p.leader_id = m.leader_id;
                p.leader_epoch = m.leader_epoch;
                p.replica_nodes = m.replica_nodes.clone();
                p.isr_nodes = m.isr_nodes.clone();
                p.eligible_leader_replicas = Some(vec![]);
                p.last_known_elr = Some(vec![]);
                t.partitions.push(p);
                budget -= 1;
            }
            resp.topics.push(t);
            if resp.next_cursor.is_some() {
                break;
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::validate_topic_name;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", "a/b"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
