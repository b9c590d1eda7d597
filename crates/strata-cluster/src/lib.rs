//! The cluster metadata model: topics, their partitions' streams and configs,
//! id allocation, broker membership and the controller election, all kept
//! through a [`strata_meta::MetaStore`].

mod catalog;
pub mod controller;
mod error;
pub mod membership;
mod model;
pub mod placement;

pub use catalog::Catalog;
pub use error::ClusterError;
pub use model::TopicRecord;
