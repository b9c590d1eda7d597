//! Retention by time and size (`retention.ms`, `retention.bytes` with
//! `cleanup.policy=delete`): whole object ranges whose newest record is older
//! than the limit, or that the size limit does not need, are trimmed away, as
//! Kafka deletes whole segments. Data still in the WAL tail is never trimmed by
//! retention (Kafka likewise keeps the active segment until it rolls).

use crate::Broker;
use crate::broker::now_ms;

/// What retention asks of one stream: the new start offset, if any.
pub(crate) fn retention_point(
    ranges: &[(i64, i64, i64, u64)],
    total_bytes: u64,
    retention_ms: i64,
    retention_bytes: i64,
    now: i64,
) -> Option<i64> {
    let mut size = total_bytes;
    let mut point = None;
    for (_, end, max_ts, bytes) in ranges {
        let by_time = retention_ms >= 0 && *max_ts < now.saturating_sub(retention_ms);
        let by_size = retention_bytes >= 0 && size.saturating_sub(*bytes) >= retention_bytes as u64;
        if !(by_time || by_size) {
            break;
        }
        size = size.saturating_sub(*bytes);
        point = Some(*end);
    }
    point
}

impl Broker {
    /// One pass of retention over every partition.
    pub async fn enforce_retention(&self) {
        let now = now_ms();
        for topic in self.catalog.topics() {
            let get = |k: &str, default: i64| -> i64 {
                topic.configs.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
            };
            if !crate::topic_config::has_cleanup_policy(&topic.configs, "delete") {
                continue;
            }
            let retention_ms = get("retention.ms", 604_800_000);
            let retention_bytes = get("retention.bytes", -1);
            for (i, _) in topic.partition_streams.iter().enumerate() {
                let Some(stream) = self.partition(&topic, i as i32) else { continue };
                let Some(point) = retention_point(
                    &stream.ranges(),
                    stream.size_bytes(),
                    retention_ms,
                    retention_bytes,
                    now,
                ) else {
                    continue;
                };
                match self.streams.trim(&stream, point).await {
                    Ok(start) => {
                        tracing::info!(topic = %topic.name, partition = i, start, "retention moved log start")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %topic.name, partition = i, error = %e, "retention failed")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retention_point;

    #[test]
    fn by_time_and_size() {
        let ranges = [(0, 10, 100, 50), (10, 20, 200, 50), (20, 30, 300, 50)];
        assert_eq!(retention_point(&ranges, 160, 1000, -1, 1250), Some(20));
        assert_eq!(retention_point(&ranges, 160, -1, -1, 1250), None);
        // Keep at least 60 bytes: dropping the first two leaves 60.
        assert_eq!(retention_point(&ranges, 160, -1, 60, 0), Some(20));
        assert_eq!(retention_point(&ranges, 160, -1, 200, 0), None);
    }
}
