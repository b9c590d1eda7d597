//! Decorators around `object_store` stores, each one concern.

mod durable_local;

pub use durable_local::DurableLocalStore;
