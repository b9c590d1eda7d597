//! A raw Kafka connection for tests: requests encoded with `kafka-protocol`,
//! answers decoded with it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A connection that sends requests the test encodes (kafka-protocol) and
/// decodes the answers.
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    /// Sends a request that gets no response (Produce with acks=0).
    pub fn send_only<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) {
        self.send(key, version, req).expect("write");
    }

    pub fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Conn { stream, next_id: 1 }
    }

    /// Sends `req` and decodes its answer (panics when the connection closes).
    pub fn call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> Resp {
        self.try_call(key, version, req).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))
    }

    /// Sends `req`; its decoded answer, or why there is none (the connection
    /// closed: Kafka's answer to a request it refuses to parse).
    pub fn try_call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        self.try_call_as(key, version, version, req)
    }

    /// Like [`Conn::try_call`], with the request header naming `version`
    /// while the body is encoded and the answer decoded at `codec_version`
    /// (a version newer than the codec knows, answered at an older one).
    pub fn try_call_as<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        codec_version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        let id = self.send_as(key, version, codec_version, req)?;
        let (answered, resp) = self.receive_as(key, version, codec_version)?;
        assert_eq!(answered, id);
        Ok(resp)
    }

    /// Sends `req` without waiting for its answer (pipelining); its
    /// correlation id. Read the answers, in order, with [`Conn::receive`].
    pub fn send<Req: Encodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> Result<i32, String> {
        self.send_as(key, version, version, req)
    }

    /// The next answer on the connection, as `(correlation id, answer)`.
    pub fn receive<Resp: Decodable>(&mut self, key: ApiKey, version: i16) -> Result<(i32, Resp), String> {
        self.receive_as(key, version, version)
    }

    fn send_as<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        codec_version: i16,
        req: &Req,
    ) -> Result<i32, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("strata-test"));
        let mut body = BytesMut::new();
        header.encode(&mut body, key.request_header_version(codec_version)).expect("header");
        req.encode(&mut body, codec_version).unwrap_or_else(|e| panic!("{key:?} v{codec_version} body: {e}"));
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).map_err(|e| format!("write: {e}"))?;
        Ok(id)
    }

    fn receive_as<Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        codec_version: i16,
    ) -> Result<(i32, Resp), String> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| format!("connection closed: {e}"))?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).map_err(|e| format!("response body: {e}"))?;
        let mut buf = Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(codec_version))
            .map_err(|e| format!("response header: {e}"))?;
        // KIP-511: an ApiVersions at a version the broker does not know is
        // answered at v0.
        let decode_version =
            if key == ApiKey::ApiVersions && version != codec_version { 0 } else { codec_version };
        let resp = Resp::decode(&mut buf, decode_version).map_err(|e| format!("response: {e}"))?;
        assert!(!buf.has_remaining(), "trailing bytes in {key:?} response");
        Ok((rh.correlation_id, resp))
    }
}

/// OffsetForLeaderEpoch (v4, no client sends it as a call of its own) for
/// partition 0 of `topic`: `(error, epoch, end offset)` for each asked epoch.
pub fn offset_for_leader_epoch(addr: &str, topic: &str, epochs: &[i32]) -> Vec<(i16, i32, i64)> {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
    let mut t = OffsetForLeaderTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = epochs
        .iter()
        .map(|e| {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = 0;
            p.current_leader_epoch = -1;
            p.leader_epoch = *e;
            p
        })
        .collect();
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = (-1).into();
    req.topics = vec![t];
    let resp: OffsetForLeaderEpochResponse = Conn::open(addr).call(ApiKey::OffsetForLeaderEpoch, 4, &req);
    resp.topics[0].partitions.iter().map(|p| (p.error_code, p.leader_epoch, p.end_offset)).collect()
}
