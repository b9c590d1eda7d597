//! One client connection: a reader that frames and handles requests in order,
//! and a writer that sends responses in request order (so produces can be
//! pipelined while their WAL writes are in flight).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use strata_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::api_versions;
use crate::dispatch::{self, Reply};
use crate::{ServerConfig, ServerError};

/// Responses that may be queued behind a slow one before the reader pauses.
const MAX_IN_FLIGHT: usize = 32;

/// Serves one connection until the peer closes it or sends something we refuse.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    config: Arc<ServerConfig>,
    socket: TcpStream,
    peer: SocketAddr,
) {
    let _ = socket.set_nodelay(true);
    let (read_half, mut write_half) = socket.into_split();
    let (tx, mut rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let frame = match reply {
                Reply::Now(frame) => frame,
                Reply::Later(fut) => match fut.await {
                    Ok(frame) => frame,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "closing connection");
                        return;
                    }
                },
                Reply::Nothing => continue,
            };
            if write_half.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let result = read_loop(&broker, &config, &mut reader, &tx, peer).await;
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed by peer"),
        Err(ServerError::Io(e)) => tracing::debug!(%peer, error = %e, "connection i/o ended"),
        Err(e) => tracing::warn!(%peer, error = %e, "closing connection"),
    }
    drop(tx);
    let _ = writer.await;
}

async fn read_loop(
    broker: &Arc<Broker>,
    config: &ServerConfig,
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    tx: &mpsc::Sender<Reply>,
    peer: SocketAddr,
) -> Result<(), ServerError> {
    loop {
        let len = match reader.read_i32().await {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // api key, version and correlation id at least.
        if len < 8 || len as usize > config.max_request_bytes {
            return Err(ServerError::FrameLength { len: i64::from(len), limit: config.max_request_bytes });
        }
        // Grow the buffer as bytes arrive rather than trusting the length up
        // front: a client that announces 100 MiB and sends nothing holds little.
        let mut frame = Vec::with_capacity((len as usize).min(64 * 1024));
        let read = (&mut *reader).take(len as u64).read_to_end(&mut frame).await?;
        if read != len as usize {
            return Err(ServerError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let reply = handle_frame(broker, Bytes::from(frame), peer).await?;
        if tx.send(reply).await.is_err() {
            return Ok(()); // the writer stopped: the peer is gone
        }
    }
}

async fn handle_frame(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr) -> Result<Reply, ServerError> {
    let mut peek = &frame[..];
    let key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let Some((api, min, max)) = api_versions::served(key) else {
        return Err(ServerError::Unsupported { key, version });
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions && version > max {
            // KIP-511: answer a newer ApiVersions with a v0 response carrying
            // UNSUPPORTED_VERSION and what we serve, so the client can retry.
            let frame = dispatch::encode(
                api,
                0,
                correlation_id,
                &api_versions::response(true, broker.config().transactions.version),
            )?;
            return Ok(Reply::Now(frame));
        }
        return Err(ServerError::Unsupported { key, version });
    }
    let mut buf = frame;
    let header: RequestHeader = dispatch::decode(&mut buf, key, api.request_header_version(version))?;
    dispatch::handle(broker, api, &header, buf, peer).await
}
