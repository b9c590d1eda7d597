//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a
//! read-only view of the broker's own settings).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::error_codes::{code, message};
use crate::topic_config::{self, TOPIC_CONFIGS};
use crate::{Broker, BrokerError};

/// Resource type codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Config source codes as DescribeConfigs reports them.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Configs that a Kafka 4.1 KRaft cluster sets as cluster-wide dynamic
/// defaults when it is formatted (with eligible leader replicas, KIP-966):
/// their default is reported with that source, as Kafka reports it.
const CLUSTER_DEFAULTS: &[&str] = &["min.insync.replicas"];

/// The source a config's default is reported with.
pub(crate) fn default_source(name: &str) -> i8 {
    if CLUSTER_DEFAULTS.contains(&name) { SOURCE_DYNAMIC_DEFAULT_BROKER } else { SOURCE_DEFAULT }
}

/// Every topic config with its effective value and source.
pub(crate) fn effective(explicit: &BTreeMap<String, String>) -> Vec<(String, String, i8)> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| match explicit.get(d.name) {
            Some(v) => (d.name.to_string(), v.clone(), SOURCE_TOPIC),
            None => (d.name.to_string(), d.default.to_string(), default_source(d.name)),
        })
        .collect()
}

impl Broker {
    fn broker_configs(&self) -> Vec<(String, String, i8, i8)> {
        // (name, value, source, type)
        vec![
            (
                "auto.create.topics.enable".into(),
                self.config.auto_create_topics.to_string(),
                SOURCE_STATIC_BROKER,
                1,
            ),
            ("broker.id".into(), self.config.node_id.to_string(), SOURCE_STATIC_BROKER, 3),
            (
                "default.replication.factor".into(),
                self.config.default_replication_factor.to_string(),
                SOURCE_STATIC_BROKER,
                3,
            ),
            ("log.retention.ms".into(), "604800000".into(), SOURCE_DEFAULT, 5),
            ("message.max.bytes".into(), "1048588".into(), SOURCE_DEFAULT, 3),
            ("node.id".into(), self.config.node_id.to_string(), SOURCE_STATIC_BROKER, 3),
            ("num.partitions".into(), self.config.num_partitions.to_string(), SOURCE_STATIC_BROKER, 3),
        ]
    }

    /// DescribeConfigs for topic and broker resources.
    pub fn describe_configs(&self, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
        let mut resp = DescribeConfigsResponse::default();
        for res in req.resources {
            let mut out = DescribeConfigsResult::default();
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name.clone();
            let keys: Option<Vec<String>> =
                res.configuration_keys.as_ref().map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == name));
            match res.resource_type {
                TOPIC => match self.catalog.topic(res.resource_name.as_str()) {
                    None => {
                        let e = BrokerError::UnknownTopicOrPartition;
                        out.error_code = code(&e);
                        out.error_message = Some(message(&e));
                    }
                    Some(topic) => {
                        for (name, value, source) in effective(&topic.configs) {
                            if !wanted(&name) {
                                continue;
                            }
                            let Some(d) = topic_config::lookup(&name) else { continue };
                            let mut c = DescribeConfigsResourceResult::default();
                            c.name = str(&name);
                            c.value = Some(str(&value));
                            c.config_source = source;
                            c.config_type = d.kind as i8;
                            if req.include_synonyms {
                                if source == SOURCE_TOPIC {
                                    let mut s = DescribeConfigsSynonym::default();
                                    s.name = str(&name);
                                    s.value = Some(str(&value));
                                    s.source = SOURCE_TOPIC;
                                    c.synonyms.push(s);
                                }
                                if default_source(d.name) == SOURCE_DYNAMIC_DEFAULT_BROKER {
                                    let mut s = DescribeConfigsSynonym::default();
                                    s.name = str(d.broker_synonym);
                                    s.value = Some(str(d.default));
                                    s.source = SOURCE_DYNAMIC_DEFAULT_BROKER;
                                    c.synonyms.push(s);
                                }
                                if !d.broker_synonym.is_empty() {
                                    let mut s = DescribeConfigsSynonym::default();
                                    s.name = str(d.broker_synonym);
                                    s.value = Some(str(d.default));
                                    s.source = SOURCE_DEFAULT;
                                    c.synonyms.push(s);
                                }
                            }
                            out.configs.push(c);
                        }
                    }
                },
                BROKER => {
                    let name = res.resource_name.as_str();
                    if !name.is_empty() && name != self.config.node_id.to_string() {
                        let e = BrokerError::InvalidRequest(format!("unknown broker {name}"));
                        out.error_code = code(&e);
                        out.error_message = Some(message(&e));
                    } else {
                        for (name, value, source, kind) in self.broker_configs() {
                            if !wanted(&name) {
                                continue;
                            }
                            let mut c = DescribeConfigsResourceResult::default();
                            c.name = str(&name);
                            c.value = Some(str(&value));
                            c.config_source = source;
                            c.read_only = true;
                            c.config_type = kind;
                            if req.include_synonyms {
                                let mut s = DescribeConfigsSynonym::default();
                                s.name = str(&name);
                                s.value = Some(str(&value));
                                s.source = source;
                                c.synonyms.push(s);
                            }
                            out.configs.push(c);
                        }
                    }
                }
                other => {
                    let e = BrokerError::InvalidRequest(format!("resource type {other} is not served"));
                    out.error_code = code(&e);
                    out.error_message = Some(message(&e));
                }
            }
            let _ = version;
            resp.results.push(out);
        }
        resp
    }

    /// Applies a new full set of explicit configs to a topic resource.
    async fn replace_topic_configs(
        &self,
        resource_type: i8,
        name: &str,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, BrokerError>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        if resource_type == BROKER {
            return Err(BrokerError::InvalidRequest(
                "broker configs are static in Strata: set them by flag, environment or config file".into(),
            ));
        }
        if resource_type != TOPIC {
            return Err(BrokerError::InvalidRequest(format!("resource type {resource_type} is not served")));
        }
        let topic = self.catalog.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let next = change(&topic.configs)?;
        if validate_only {
            return Ok(());
        }
        self.catalog.set_configs(name, next).await?;
        tracing::info!(topic = name, "altered topic configs");
        Ok(())
    }

    /// AlterConfigs (legacy): replaces all explicit configs of each resource.
    pub async fn alter_configs(&self, req: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut resp = AlterConfigsResponse::default();
        for res in req.resources {
            let mut r = AlterConfigsResourceResponse::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name.clone();
            let change = |_: &BTreeMap<String, String>| {
                let mut next = BTreeMap::new();
                for c in &res.configs {
                    let value = c.value.as_ref().ok_or_else(|| {
                        BrokerError::InvalidConfig(format!("null value for config {}", c.name.as_str()))
                    })?;
                    next.insert(c.name.to_string(), topic_config::validate(c.name.as_str(), value.as_str())?);
                }
                Ok(next)
            };
            let outcome = self
                .replace_topic_configs(
                    res.resource_type,
                    res.resource_name.as_str(),
                    change,
                    req.validate_only,
                )
                .await;
            if let Err(e) = outcome {
                r.error_code = code(&e);
                r.error_message = Some(message(&e));
            }
            resp.responses.push(r);
        }
        resp
    }

    /// IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT per config.
    pub async fn incremental_alter_configs(
        &self,
        req: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut resp = IncrementalAlterConfigsResponse::default();
        for res in req.resources {
            let mut r = IncrementalResult::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name.clone();
            let change = |current: &BTreeMap<String, String>| {
                let mut next = current.clone();
                for c in &res.configs {
                    let name = c.name.as_str();
                    let def = topic_config::lookup(name)
                        .ok_or_else(|| BrokerError::InvalidConfig(format!("unknown topic config {name}")))?;
                    let value = c.value.as_ref().map(|v| v.to_string());
                    match c.config_operation {
                        0 => {
                            let v = value.ok_or_else(|| {
                                BrokerError::InvalidConfig(format!("null value for {name}"))
                            })?;
                            next.insert(name.to_string(), topic_config::validate(name, &v)?);
                        }
                        1 => {
                            next.remove(name);
                        }
                        op @ (2 | 3) => {
                            if def.kind != topic_config::ConfigType::List {
                                return Err(BrokerError::InvalidConfig(format!(
                                    "{name} is not a list; APPEND and SUBTRACT apply to lists only"
                                )));
                            }
                            let v = value.unwrap_or_default();
                            let base = next.get(name).cloned().unwrap_or_else(|| def.default.to_string());
                            let mut items: Vec<String> = base
                                .split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect();
                            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                                if op == 2 {
                                    if !items.iter().any(|x| x == item) {
                                        items.push(item.to_string());
                                    }
                                } else {
                                    items.retain(|x| x != item);
                                }
                            }
                            next.insert(name.to_string(), topic_config::validate(name, &items.join(","))?);
                        }
                        op => {
                            return Err(BrokerError::InvalidRequest(format!(
                                "unknown config operation {op}"
                            )));
                        }
                    }
                }
                Ok(next)
            };
            let outcome = self
                .replace_topic_configs(
                    res.resource_type,
                    res.resource_name.as_str(),
                    change,
                    req.validate_only,
                )
                .await;
            if let Err(e) = outcome {
                r.error_code = code(&e);
                r.error_message = Some(message(&e));
            }
            resp.responses.push(r);
        }
        resp
    }
}
