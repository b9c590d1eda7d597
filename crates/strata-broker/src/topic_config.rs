//! Kafka's topic configs: names, types, defaults (Kafka 4.1's), validation, and
//! the effective view of a topic's configs used by produce and describe.

use std::collections::BTreeMap;

use crate::BrokerError;

/// A config's type, with DescribeConfigs' type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// true/false.
    Boolean = 1,
    /// Free text or one of a set.
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
}

/// One topic config's definition.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// The topic-level name.
    pub name: &'static str,
    /// The broker-level synonym reported with Kafka's default (Kafka's
    /// `log.*` names); empty where Kafka 4.1 reports none (its broker config
    /// has no default of its own, such as `log.retention.ms`).
    pub broker_synonym: &'static str,
    /// Its type.
    pub kind: ConfigType,
    /// The default value, as Kafka reports it.
    pub default: &'static str,
    /// Inclusive lower bound for numbers.
    pub min: Option<i64>,
    /// Allowed values for strings and list items.
    pub allowed: &'static [&'static str],
}

const fn def(
    name: &'static str,
    broker_synonym: &'static str,
    kind: ConfigType,
    default: &'static str,
    min: Option<i64>,
    allowed: &'static [&'static str],
) -> ConfigDef {
    ConfigDef { name, broker_synonym, kind, default, min, allowed }
}

use ConfigType::{Boolean, Double, Int, List, Long};

/// Marks a list of `partition:broker` pairs (or `*`) rather than allowed values.
const THROTTLED: &[&str] = &["<partition>:<broker>", "*"];

const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config Strata accepts, in name order.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def("cleanup.policy", "log.cleanup.policy", List, "delete", None, &["delete", "compact"]),
    def("compression.gzip.level", "compression.gzip.level", Int, "-1", Some(-1), &[]),
    def("compression.lz4.level", "compression.lz4.level", Int, "9", Some(1), &[]),
    def("compression.type", "compression.type", ConfigType::String, "producer", None, COMPRESSION),
    def("compression.zstd.level", "compression.zstd.level", Int, "3", Some(-131072), &[]),
    def("delete.retention.ms", "log.cleaner.delete.retention.ms", Long, "86400000", Some(0), &[]),
    def("file.delete.delay.ms", "log.segment.delete.delay.ms", Long, "60000", Some(0), &[]),
    def("flush.messages", "log.flush.interval.messages", Long, "9223372036854775807", Some(1), &[]),
    def("flush.ms", "", Long, "9223372036854775807", Some(0), &[]),
    // Set and cleared by kafka-reassign-partitions; accepted, no effect (no
    // replication to throttle).
    def("follower.replication.throttled.replicas", "", List, "", None, THROTTLED),
    def("index.interval.bytes", "log.index.interval.bytes", Int, "4096", Some(0), &[]),
    def("leader.replication.throttled.replicas", "", List, "", None, THROTTLED),
    def("local.retention.bytes", "log.local.retention.bytes", Long, "-2", Some(-2), &[]),
    def("local.retention.ms", "log.local.retention.ms", Long, "-2", Some(-2), &[]),
    def(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        Long,
        "9223372036854775807",
        Some(1),
        &[],
    ),
    def("max.message.bytes", "message.max.bytes", Int, "1048588", Some(0), &[]),
    def(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        Long,
        "3600000",
        Some(0),
        &[],
    ),
    def(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        Long,
        "9223372036854775807",
        Some(0),
        &[],
    ),
    def(
        "message.timestamp.type",
        "log.message.timestamp.type",
        ConfigType::String,
        "CreateTime",
        None,
        &["CreateTime", "LogAppendTime"],
    ),
    def("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", Double, "0.5", None, &[]),
    def("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", Long, "0", Some(0), &[]),
    def("min.insync.replicas", "min.insync.replicas", Int, "1", Some(1), &[]),
    def("preallocate", "log.preallocate", Boolean, "false", None, &[]),
    def("remote.log.copy.disable", "", Boolean, "false", None, &[]),
    def("remote.log.delete.on.disable", "", Boolean, "false", None, &[]),
    def("remote.storage.enable", "", Boolean, "false", None, &[]),
    def("retention.bytes", "log.retention.bytes", Long, "-1", None, &[]),
    def("retention.ms", "", Long, "604800000", Some(-1), &[]),
    def("segment.bytes", "log.segment.bytes", Int, "1073741824", Some(1048576), &[]),
    def("segment.index.bytes", "log.index.size.max.bytes", Int, "10485760", Some(4), &[]),
    def("segment.jitter.ms", "", Long, "0", Some(0), &[]),
    def("segment.ms", "", Long, "604800000", Some(1), &[]),
    def("unclean.leader.election.enable", "unclean.leader.election.enable", Boolean, "false", None, &[]),
];

/// Whether a topic's `cleanup.policy` (its explicit value, else Kafka's
/// default `delete`) includes `policy` (`delete` or `compact`).
pub fn has_cleanup_policy(configs: &BTreeMap<String, String>, policy: &str) -> bool {
    let value = configs.get("cleanup.policy").map(String::as_str).unwrap_or("delete");
    value.split(',').any(|p| p.trim() == policy)
}

/// The definition of a topic config.
pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one name/value pair; returns the value normalised as Kafka stores it.
pub fn validate(name: &str, value: &str) -> Result<String, BrokerError> {
    let d = lookup(name).ok_or_else(|| BrokerError::InvalidConfig(format!("unknown topic config {name}")))?;
    let bad = |why: &str| {
        BrokerError::InvalidConfig(format!("invalid value {value} for configuration {name}: {why}"))
    };
    let v = value.trim();
    match d.kind {
        Boolean => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(v.to_ascii_lowercase()),
            _ => Err(bad("expected true or false")),
        },
        Int | Long => {
            let n: i64 = v.parse().map_err(|_| bad("not a number"))?;
            if d.kind == Int && i32::try_from(n).is_err() {
                return Err(bad("out of range of a 32-bit integer"));
            }
            if let Some(min) = d.min
                && n < min
            {
                return Err(bad(&format!("value must be at least {min}")));
            }
            Ok(n.to_string())
        }
        Double => {
            let x: f64 = v.parse().map_err(|_| bad("not a number"))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(bad("value must be between 0 and 1"));
            }
            Ok(v.to_string())
        }
        ConfigType::String => {
            if !d.allowed.is_empty() && !d.allowed.contains(&v) {
                return Err(bad(&format!("allowed values are {}", d.allowed.join(", "))));
            }
            Ok(v.to_string())
        }
        List => {
            let items: Vec<&str> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if std::ptr::eq(d.allowed, THROTTLED) {
                // Kafka's form: `*`, or `partition:broker` pairs.
                let pair = |i: &str| {
                    i.split_once(':')
                        .is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
                };
                if !(items == ["*"] || items.iter().all(|i| pair(i))) {
                    return Err(bad("expected * or a list of partition:broker pairs"));
                }
                return Ok(items.join(","));
            }
            if let Some(item) = items.iter().find(|i| !d.allowed.is_empty() && !d.allowed.contains(i)) {
                return Err(bad(&format!("{item} is not one of {}", d.allowed.join(", "))));
            }
            Ok(items.join(","))
        }
    }
}

/// A topic's effective configs: explicit values over Kafka's defaults.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    /// Largest accepted batch.
    pub max_message_bytes: i64,
    /// Whether the broker stamps timestamps.
    pub log_append_time: bool,
    /// Allowed distance of a record timestamp after now (ms).
    pub timestamp_after_max_ms: i64,
    /// Allowed distance of a record timestamp before now (ms).
    pub timestamp_before_max_ms: i64,
    /// Whether `cleanup.policy` includes `compact` (every record needs a key).
    pub compacted: bool,
}

impl TopicConfig {
    /// The effective configs for explicit `configs`.
    pub fn from_explicit(configs: &BTreeMap<String, String>) -> Self {
        let long = |name: &str| -> i64 {
            configs
                .get(name)
                .and_then(|v| v.parse().ok())
                .or_else(|| lookup(name).and_then(|d| d.default.parse().ok()))
                .unwrap_or(i64::MAX)
        };
        TopicConfig {
            max_message_bytes: long("max.message.bytes"),
            log_append_time: configs.get("message.timestamp.type").is_some_and(|v| v == "LogAppendTime"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            compacted: has_cleanup_policy(configs, "compact"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(validate("retention.ms", " 1000 ").expect("ok"), "1000");
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert_eq!(validate("cleanup.policy", "compact, delete").expect("ok"), "compact,delete");
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("max.message.bytes", "99999999999").is_err());
        assert!(validate("preallocate", "TRUE").is_ok());
        let sorted: Vec<_> = TOPIC_CONFIGS.iter().map(|d| d.name).collect();
        let mut again = sorted.clone();
        again.sort();
        assert_eq!(sorted, again);
    }
}
