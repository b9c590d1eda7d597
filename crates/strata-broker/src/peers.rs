//! Requests from this broker to another of its cluster, in the Kafka
//! protocol (`kafka-protocol`), as Kafka's brokers send them: WriteTxnMarkers
//! to a partition's leader, AddPartitionsToTxn (v4-5, the brokers' form) to
//! a transaction's coordinator. One connection per peer, one request at a
//! time on it; a failed connection is dropped and opened again by the next
//! request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_cluster::membership::BrokerInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BrokerError;

/// How long one request to a peer may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer accepted from a peer.
const MAX_RESPONSE: usize = 64 << 20;

type Conn = Arc<tokio::sync::Mutex<Option<TcpStream>>>;

/// Connections to the other brokers.
#[derive(Default)]
pub(crate) struct Peers {
    conns: std::sync::Mutex<HashMap<(String, i32), Conn>>,
    next_id: std::sync::atomic::AtomicI32,
}

fn unavailable(peer: &BrokerInfo, what: impl std::fmt::Display) -> BrokerError {
    BrokerError::NotEnoughReplicas(format!("broker {} ({}:{}): {what}", peer.node_id, peer.host, peer.port))
}

impl Peers {
    /// Sends `req` (API `key` at `version`) to `peer` and decodes its answer.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        peer: &BrokerInfo,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, BrokerError> {
        let conn = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(conns.entry((peer.host.clone(), peer.port)).or_default())
        };
        let mut guard = conn.lock().await;
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("strata-broker"));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(version)).map_err(|e| unavailable(peer, e))?;
        req.encode(&mut body, version).map_err(|e| unavailable(peer, e))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let exchange = async {
            if guard.is_none() {
                let stream = TcpStream::connect((peer.host.as_str(), peer.port as u16)).await?;
                stream.set_nodelay(true)?;
                *guard = Some(stream);
            }
            let Some(stream) = guard.as_mut() else { return Err(std::io::Error::other("no connection")) };
            stream.write_all(&frame).await?;
            let len = stream.read_i32().await?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_RESPONSE)
                .ok_or_else(|| std::io::Error::other(format!("answer of {len} bytes")))?;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Ok(Bytes::from(buf))
        };
        let answer = match tokio::time::timeout(PEER_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                *guard = None;
                return Err(unavailable(peer, e));
            }
            Err(_) => {
                *guard = None;
                return Err(unavailable(peer, "timed out"));
            }
        };
        let mut buf = answer;
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .map_err(|e| unavailable(peer, e))?;
        if rh.correlation_id != id {
            *guard = None;
            return Err(unavailable(peer, "answer to another request"));
        }
        drop(guard);
        let resp = Resp::decode(&mut buf, version).map_err(|e| unavailable(peer, e))?;
        if buf.has_remaining() {
            return Err(unavailable(peer, "trailing bytes in the answer"));
        }
        Ok(resp)
    }
}
