//! The cluster metadata model: topics, their partitions' streams and configs,
//! and id allocation, all kept through a [`strata_meta::MetaStore`].

mod catalog;
mod error;
mod model;

pub use catalog::Catalog;
pub use error::ClusterError;
pub use model::TopicRecord;
