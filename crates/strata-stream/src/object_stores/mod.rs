//! Decorators around `object_store` stores, each one concern: durability of
//! local puts, retries of transient failures, and (for tests) injected faults.

mod durable_local;
mod faulty;
mod retrying;

pub use durable_local::DurableLocalStore;
pub use faulty::{Fault, FaultyStore, Operation};
pub use retrying::{RetryConfig, RetryingStore, is_transient};
