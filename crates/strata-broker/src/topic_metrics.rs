//! Per-topic traffic counters, registered once per topic and kept, so that the
//! produce and fetch paths only add to them (no label strings built, no
//! registry lookup per partition).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use metrics::Counter;

/// Bytes and messages in and out of one topic.
pub(crate) struct TopicMetrics {
    pub bytes_in: Counter,
    pub messages_in: Counter,
    pub bytes_out: Counter,
    pub messages_out: Counter,
}

/// The counters of every topic seen, by name.
#[derive(Default)]
pub(crate) struct TopicMetricsCache {
    by_topic: RwLock<HashMap<String, Arc<TopicMetrics>>>,
}

impl TopicMetricsCache {
    /// The counters of `topic`, registered on first use.
    pub fn get(&self, topic: &str) -> Arc<TopicMetrics> {
        if let Some(m) = self.by_topic.read().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Arc::clone(m);
        }
        let labels = [("topic", topic.to_string())];
        let m = Arc::new(TopicMetrics {
            bytes_in: metrics::counter!("strata_topic_bytes_in_total", &labels),
            messages_in: metrics::counter!("strata_topic_messages_in_total", &labels),
            bytes_out: metrics::counter!("strata_topic_bytes_out_total", &labels),
            messages_out: metrics::counter!("strata_topic_messages_out_total", &labels),
        });
        let mut by_topic = self.by_topic.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(by_topic.entry(topic.to_string()).or_insert(m))
    }
}
