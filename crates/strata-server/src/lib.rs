//! The Kafka listener: TCP accept, request framing, header and body decoding with
//! the `kafka-protocol` crate, dispatch to the broker, and ordered responses;
//! and the HTTP admin port (metrics, health, readiness).

mod admin;
mod api_versions;
mod connection;
mod dispatch;
mod error;
mod listener;

pub use admin::{AdminState, IsReady, RenderMetrics, serve_admin};
pub use api_versions::SUPPORTED_APIS;
pub use error::ServerError;
pub use listener::{Server, ServerConfig};
