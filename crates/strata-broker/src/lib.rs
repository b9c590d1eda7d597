//! Kafka semantics over Strata's stream and cluster layers: topics and
//! partitions, produce and fetch, offsets and configs. Handlers take and return
//! the `kafka-protocol` crate's request and response types; the wire itself
//! (framing, headers, versions) belongs to the server crate.

mod broker;
mod broker_configs;
pub mod cluster;
mod configs;
mod error;
pub mod error_codes;
mod fetch;
mod group_apis;
pub mod groups;
mod internal_records;
mod kafka_broker_configs;
mod list_offsets;
pub mod log_cleaner;
mod offsets_admin;
mod peers;
mod produce;
mod producer_state;
mod reassignments;
pub mod records;
mod retention;
pub mod topic_config;
mod topic_metrics;
mod topics;
pub mod txn;
mod txn_admin;
mod txn_apis;

pub use broker::{Broker, BrokerConfig};
pub use error::BrokerError;
pub use produce::{PendingProduce, refused_fenced_records};
