//! The metadata-store interface: versioned keys, compare-and-set transactions,
//! leases and watches from a revision, with its two implementations: the
//! embedded store that persists in the object store (one node) and etcd (a
//! cluster).
//!
//! This is the lowest crate of Strata: the stream layer commits its object index
//! through it and the cluster layer keeps topics and ids in it. It never depends
//! on any other Strata crate.

pub mod conformance;
mod embedded;
mod error;
mod etcd;
pub mod faulty;
mod lease_clock;
mod manifest;
mod store;
pub mod testing;

pub use embedded::{EmbeddedConfig, EmbeddedStore};
pub use error::{ErrorKind, MetaError};
pub use etcd::EtcdStore;
pub use lease_clock::LeaseClock;
pub use store::{Condition, Entry, Event, LeaseId, MAX_TXN_OPS, MetaStore, Op, Revision, TxnOutcome, Watch};
