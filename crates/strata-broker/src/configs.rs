//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, and
//! a read-only view of the broker resource (`broker_configs`).

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

use crate::broker_configs::{self, Origin};
use crate::error_codes::{code, message};
use crate::topic_config::{self, ConfigDef, TOPIC_CONFIGS};
use crate::{Broker, BrokerConfig, BrokerError};

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

/// The source code DescribeConfigs reports for a broker-level origin.
fn source_of(origin: Origin) -> i8 {
    match origin {
        Origin::Strata => SOURCE_STATIC_BROKER,
        Origin::ClusterDefault => SOURCE_DYNAMIC_DEFAULT_BROKER,
        Origin::KafkaDefault => SOURCE_DEFAULT,
    }
}

/// A topic config's broker-level synonyms, highest precedence first, as
/// `(name, value, source)`: Strata's own setting or a cluster default of its
/// broker synonym when there is one, then Kafka's default.
fn topic_synonyms(config: &BrokerConfig, d: &ConfigDef) -> Vec<(&'static str, String, i8)> {
    let mut out = Vec::new();
    if d.broker_synonym.is_empty() {
        return out;
    }
    if let Some(def) = broker_configs::lookup(d.broker_synonym) {
        for (value, origin) in broker_configs::resolve(config, def).chain {
            if origin != Origin::KafkaDefault {
                out.push((d.broker_synonym, value, source_of(origin)));
            }
        }
    }
    out.push((d.broker_synonym, d.default.to_string(), SOURCE_DEFAULT));
    out
}

/// Every topic config with its effective value and source.
pub(crate) fn effective(
    config: &BrokerConfig,
    explicit: &BTreeMap<String, String>,
) -> Vec<(String, String, i8)> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| match explicit.get(d.name) {
            Some(v) => (d.name.to_string(), v.clone(), SOURCE_TOPIC),
            None => match topic_synonyms(config, d).into_iter().next() {
                Some((_, value, source)) => (d.name.to_string(), value, source),
                None => (d.name.to_string(), d.default.to_string(), SOURCE_DEFAULT),
            },
        })
        .collect()
}

fn synonym(name: &str, value: Option<&str>, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = str(name);
    s.value = value.map(str);
    s.source = source;
    s
}

/// Why an alter of broker configs `names` is refused: Strata's broker
/// settings are static, whether or not Kafka could change them at run time.
/// The replication throttles `kafka-reassign-partitions` sets on brokers
/// (Kafka's dynamic broker configs): there is no replication traffic to
/// throttle, so they are accepted and have no effect.
const THROTTLES: [&str; 3] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

fn broker_alter_refused(names: &[&str]) -> BrokerError {
    let mut unknown = Vec::new();
    let mut kafka_static = Vec::new();
    let mut kafka_dynamic = Vec::new();
    for n in names {
        match broker_configs::lookup(n) {
            None => unknown.push(*n),
            Some(d) if d.dynamic => kafka_dynamic.push(*n),
            Some(_) => kafka_static.push(*n),
        }
    }
    let mut parts =
        vec!["broker configs are static in Strata: set them by flag, environment or config file".to_string()];
    if !unknown.is_empty() {
        parts.push(format!("unknown broker configs: {}", unknown.join(", ")));
    }
    if !kafka_static.is_empty() {
        parts.push(format!("not updatable at run time in Kafka either: {}", kafka_static.join(", ")));
    }
    if !kafka_dynamic.is_empty() {
        parts.push(format!("updatable at run time in Kafka but not in Strata: {}", kafka_dynamic.join(", ")));
    }
    BrokerError::InvalidRequest(parts.join("; "))
}

impl Broker {
    /// The broker resource's configs: every Kafka broker config, all
    /// read-only (Strata's broker settings are static). The cluster-default
    /// resource (an empty name) holds the cluster-wide defaults only.
    fn describe_broker(
        &self,
        cluster_default: bool,
        include_synonyms: bool,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Vec<DescribeConfigsResourceResult> {
        let mut out = Vec::new();
        for r in broker_configs::resolve_all(&self.config) {
            if !wanted(r.def.name) {
                continue;
            }
            let chain: Vec<_> = if cluster_default {
                r.chain.iter().filter(|(_, o)| *o == Origin::ClusterDefault).cloned().collect()
            } else {
                r.chain.clone()
            };
            let Some((value, origin)) = chain.first().cloned() else {
                if cluster_default {
                    continue;
                }
                out.push(self.broker_entry(&r, None, Origin::KafkaDefault, &[], include_synonyms));
                continue;
            };
            out.push(self.broker_entry(&r, Some(value), origin, &chain, include_synonyms));
        }
        out
    }

    fn broker_entry(
        &self,
        r: &broker_configs::Resolved,
        value: Option<String>,
        origin: Origin,
        chain: &[(String, Origin)],
        include_synonyms: bool,
    ) -> DescribeConfigsResourceResult {
        let hide = |v: Option<&str>| if r.def.sensitive { None } else { v.map(str::to_string) };
        let mut c = DescribeConfigsResourceResult::default();
        c.name = str(r.def.name);
        c.value = hide(value.as_deref()).map(|v| str(&v));
        c.config_source = source_of(origin);
        c.read_only = true;
        c.is_sensitive = r.def.sensitive;
        c.config_type = r.def.kind as i8;
        c.documentation = None;
        if include_synonyms {
            c.synonyms = chain
                .iter()
                .map(|(v, o)| synonym(r.def.name, hide(Some(v)).as_deref(), source_of(*o)))
                .collect();
        }
        c
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
            // Null or empty: every config (as Kafka answers).
            let wanted =
                |name: &str| keys.as_ref().is_none_or(|k| k.is_empty() || k.iter().any(|x| x == name));
            match res.resource_type {
                TOPIC => match self.catalog.topic(res.resource_name.as_str()) {
                    None => {
                        let e = BrokerError::UnknownTopicOrPartition;
                        out.error_code = code(&e);
                        out.error_message = Some(message(&e));
                    }
                    Some(topic) => {
                        for (name, value, source) in effective(&self.config, &topic.configs) {
                            if !wanted(&name) {
                                continue;
                            }
                            let Some(d) = topic_config::lookup(&name) else { continue };
                            let mut c = DescribeConfigsResourceResult::default();
                            c.name = str(&name);
                            c.value = Some(str(&value));
                            c.config_source = source;
                            c.config_type = d.kind as i8;
                            c.documentation = None;
                            if req.include_synonyms {
                                if source == SOURCE_TOPIC {
                                    c.synonyms.push(synonym(&name, Some(&value), SOURCE_TOPIC));
                                }
                                for (n, v, src) in topic_synonyms(&self.config, d) {
                                    c.synonyms.push(synonym(n, Some(&v), src));
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
                        out.configs = self.describe_broker(name.is_empty(), req.include_synonyms, &wanted);
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
        names: &[&str],
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, BrokerError>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        if resource_type == BROKER {
            return Err(broker_alter_refused(names));
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
                    &res.configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
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
            let names: Vec<&str> = res.configs.iter().map(|c| c.name.as_str()).collect();
            if res.resource_type == BROKER && !names.is_empty() && names.iter().all(|n| THROTTLES.contains(n))
            {
                // kafka-reassign-partitions sets and clears these around a
                // move: accepted, checked, and without effect (docs/cluster.md).
                let bad = res.configs.iter().find_map(|c| {
                    let v = c.value.as_deref().unwrap_or_default();
                    (c.config_operation == 0 && v.parse::<u64>().is_err())
                        .then(|| format!("invalid value {v} for {}: a non-negative long", c.name.as_str()))
                });
                if let Some(e) = bad.map(BrokerError::InvalidConfig) {
                    r.error_code = code(&e);
                    r.error_message = Some(message(&e));
                }
                resp.responses.push(r);
                continue;
            }
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
                    &res.configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
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
