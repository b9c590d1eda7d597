//! The broker resource of DescribeConfigs: Apache Kafka's broker config names
//! (the generated table in `kafka_broker_configs.rs`), each with Strata's value
//! where Strata has an equivalent and Kafka's default otherwise
//! (`docs/compatibility.md` lists which is which).

use crate::BrokerConfig;
use crate::kafka_broker_configs::KAFKA_BROKER_CONFIGS;

/// A broker config's type, with DescribeConfigs' type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// One of Kafka's broker configs, as Kafka reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BrokerConfigDef {
    /// Its name.
    pub name: &'static str,
    /// Kafka's default (`None`: Kafka has none and reports null).
    pub default: Option<&'static str>,
    /// Its type.
    pub kind: BrokerConfigType,
    /// Whether Kafka hides its value.
    pub sensitive: bool,
    /// Whether Kafka can change it at run time (Strata cannot: every broker
    /// config is read-only in Strata).
    pub dynamic: bool,
}

/// The definition of broker config `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static BrokerConfigDef> {
    KAFKA_BROKER_CONFIGS.binary_search_by(|d| d.name.cmp(name)).ok().map(|i| &KAFKA_BROKER_CONFIGS[i])
}

/// Where a broker config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Strata's own setting (reported as STATIC_BROKER_CONFIG).
    Strata,
    /// A cluster-wide default that Kafka 4.1 sets when it formats a KRaft
    /// cluster (reported as DYNAMIC_DEFAULT_BROKER_CONFIG).
    ClusterDefault,
    /// Kafka's default (reported as DEFAULT_CONFIG).
    KafkaDefault,
}

/// Configs that a Kafka 4.1 KRaft cluster sets as cluster-wide dynamic
/// defaults when it is formatted (with eligible leader replicas, KIP-966).
const CLUSTER_DEFAULTS: &[&str] = &["min.insync.replicas"];

/// Kafka's `log.flush.interval.messages` as Strata behaves: every batch is
/// durable (fsynced, or in the object store) before it is acknowledged.
pub(crate) const FLUSH_INTERVAL_MESSAGES: &str = "1";

/// One broker config's answer: `(value, origin)` over Kafka's chain of
/// synonyms, highest precedence first.
pub(crate) struct Resolved {
    /// The definition.
    pub def: &'static BrokerConfigDef,
    /// The values that apply, highest precedence first; the first is the
    /// effective one. Empty when the value is null.
    pub chain: Vec<(String, Origin)>,
}

#[cfg(test)]
impl Resolved {
    /// The effective value and its origin (null and Kafka's default when
    /// nothing applies).
    pub fn value(&self) -> (Option<&str>, Origin) {
        match self.chain.first() {
            Some((v, o)) => (Some(v.as_str()), *o),
            None => (None, Origin::KafkaDefault),
        }
    }
}

/// Strata's value of Kafka broker config `name`, if Strata has an
/// equivalent. Settings Strata always chooses (identity, listeners, where
/// data lives, durability) are always reported; tunable ones only when they
/// differ from Kafka's default, as a Kafka broker reports a setting only
/// when its properties file sets it.
fn strata_value(config: &BrokerConfig, def: &BrokerConfigDef) -> Option<String> {
    let always = match def.name {
        "broker.id" | "node.id" => Some(config.node_id.to_string()),
        "listeners" => Some(format!("PLAINTEXT://{}", config.listen)),
        "advertised.listeners" => {
            Some(format!("PLAINTEXT://{}:{}", config.advertised_host, config.advertised_port))
        }
        "log.dirs" => Some(config.log_dir.clone()),
        "log.flush.interval.messages" => Some(FLUSH_INTERVAL_MESSAGES.to_string()),
        _ => None,
    };
    if always.is_some() {
        return always;
    }
    let tunable = match def.name {
        "auto.create.topics.enable" => config.auto_create_topics.to_string(),
        "num.partitions" => config.num_partitions.to_string(),
        "default.replication.factor" => config.default_replication_factor.to_string(),
        "socket.request.max.bytes" => config.socket_request_max_bytes.to_string(),
        "log.retention.check.interval.ms" => config.retention_check_interval.as_millis().to_string(),
        "log.cleaner.backoff.ms" => config.log_cleaner_backoff.as_millis().to_string(),
        "group.initial.rebalance.delay.ms" => config.groups.initial_rebalance_delay.as_millis().to_string(),
        "offsets.retention.minutes" => (config.offsets_retention.as_secs() / 60).to_string(),
        "offsets.retention.check.interval.ms" => {
            config.offsets_retention_check_interval.as_millis().to_string()
        }
        "transaction.max.timeout.ms" => config.transactions.max_timeout_ms.to_string(),
        "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
            config.transactions.abort_check_interval.as_millis().to_string()
        }
        "transactional.id.expiration.ms" => config.transactions.id_expiration.as_millis().to_string(),
        "transaction.remove.expired.transaction.cleanup.interval.ms" => {
            config.transactions.remove_expired_interval.as_millis().to_string()
        }
        "producer.id.expiration.ms" => config.producer_id_expiration.as_millis().to_string(),
        "producer.id.expiration.check.interval.ms" => {
            config.producer_id_expiration_check_interval.as_millis().to_string()
        }
        _ => return None,
    };
    (def.default != Some(tunable.as_str())).then_some(tunable)
}

/// Every Kafka broker config with the values that apply to it on this broker.
pub(crate) fn resolve_all(config: &BrokerConfig) -> impl Iterator<Item = Resolved> + '_ {
    KAFKA_BROKER_CONFIGS.iter().map(|def| resolve(config, def))
}

/// One broker config with the values that apply to it on this broker.
pub(crate) fn resolve(config: &BrokerConfig, def: &'static BrokerConfigDef) -> Resolved {
    let mut chain = Vec::new();
    if let Some(v) = strata_value(config, def) {
        chain.push((v, Origin::Strata));
    }
    if CLUSTER_DEFAULTS.contains(&def.name)
        && let Some(d) = def.default
    {
        chain.push((d.to_string(), Origin::ClusterDefault));
    }
    if let Some(d) = def.default {
        chain.push((d.to_string(), Origin::KafkaDefault));
    }
    Resolved { def, chain }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_kafkas_names() {
        let names: Vec<_> = KAFKA_BROKER_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for name in ["message.max.bytes", "num.partitions", "log.retention.hours", "ssl.key.password"] {
            assert!(lookup(name).is_some(), "{name}");
        }
        assert!(lookup("ssl.key.password").is_some_and(|d| d.sensitive));
    }

    #[test]
    fn strata_values_and_kafka_defaults() {
        let mut config = BrokerConfig::new(7, "h".into(), 1234);
        config.listen = "127.0.0.1:1234".into();
        let get = |c: &BrokerConfig, name: &str| {
            let r = resolve(c, lookup(name).expect("known"));
            let (v, o) = r.value();
            (v.map(str::to_string), o)
        };
        assert_eq!(get(&config, "node.id"), (Some("7".into()), Origin::Strata));
        assert_eq!(get(&config, "advertised.listeners"), (Some("PLAINTEXT://h:1234".into()), Origin::Strata));
        assert_eq!(get(&config, "log.flush.interval.messages"), (Some("1".into()), Origin::Strata));
        // Equal to Kafka's default: reported as Kafka's default.
        assert_eq!(get(&config, "num.partitions"), (Some("1".into()), Origin::KafkaDefault));
        config.num_partitions = 3;
        assert_eq!(get(&config, "num.partitions"), (Some("3".into()), Origin::Strata));
        assert_eq!(get(&config, "min.insync.replicas"), (Some("1".into()), Origin::ClusterDefault));
        assert_eq!(get(&config, "log.retention.ms"), (None, Origin::KafkaDefault));
        assert_eq!(get(&config, "message.max.bytes"), (Some("1048588".into()), Origin::KafkaDefault));
    }
}
