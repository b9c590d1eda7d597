//! The TCP listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use strata_broker::Broker;
use tokio::net::TcpListener;

use crate::connection;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Kafka's `socket.request.max.bytes`: larger frames close the connection.
    pub max_request_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_request_bytes: 100 * 1024 * 1024 }
    }
}

/// A bound Kafka listener.
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
    config: Arc<ServerConfig>,
}

impl Server {
    /// Binds the listener.
    pub async fn bind(addr: &str, broker: Arc<Broker>, config: ServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, broker, config: Arc::new(config) })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        tokio::spawn(connection::serve(
                            Arc::clone(&self.broker),
                            Arc::clone(&self.config),
                            socket,
                            peer,
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}
