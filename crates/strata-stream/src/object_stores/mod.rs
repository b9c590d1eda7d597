//! Decorators around `object_store` stores, each one concern: durability of
//! local puts, retries of transient failures, request counting, and (for tests)
//! injected faults.

mod durable_local;
mod instrumented;
mod retrying;

pub use durable_local::DurableLocalStore;
pub use instrumented::{InstrumentedStore, ObjectStoreStats, RequestKind};
pub use retrying::{RetryConfig, RetryingStore, is_transient};
pub use strata_meta::faulty::{Fault, FaultyStore, Operation};
