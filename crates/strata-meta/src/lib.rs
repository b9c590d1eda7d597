//! The metadata-store interface: versioned keys, compare-and-set transactions and
//! watches, plus its embedded implementation that persists in the object store.
//!
//! This is the lowest crate of Strata: the stream layer commits its object index
//! through it and the cluster layer keeps topics and ids in it. It never depends
//! on any other Strata crate.

mod embedded;
mod error;
mod manifest;
mod store;

pub use embedded::EmbeddedStore;
pub use error::MetaError;
pub use store::{Condition, Entry, Event, MetaStore, Op, Revision, TxnOutcome};
