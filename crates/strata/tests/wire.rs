//! Wire-level robustness: raw TCP clients that build every request byte by
//! hand (big-endian, no protocol crate) and send the broker malformed,
//! oversized, truncated, random and unsupported frames.
//!
//! Covered:
//! - negative, huge (2 GiB, just over 100 MiB) and too-short length prefixes,
//!   and a broker started with `--socket-request-max-bytes 1024`;
//! - frames cut short (half-closed or stalled mid-frame);
//! - seeded random bodies for every served API and version, and bodies with
//!   valid headers but truncated arrays;
//! - huge array counts (classic `i32` and compact varint) that a decoder could
//!   take as an allocation size, in requests and in a produced record batch
//!   (record and header counts) that the broker later reads back;
//! - unknown API keys, unsupported versions, and the KIP-511 answer to a too-new
//!   ApiVersions.
//!
//! Every bad input must be answered or closed within a few seconds (a hang
//! fails the test), and afterwards the broker must be unharmed: the process
//! still runs, a new connection gets a correct ApiVersions and Metadata answer,
//! a connection opened before the bad input still works, and messages produced
//! (with rdkafka) before it can still be read back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use common::{BrokerProcess, topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long a read may wait before the test calls it a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const METADATA: i16 = 3;
const API_VERSIONS: i16 = 18;
const CREATE_TOPICS: i16 = 19;

/// The highest ApiVersions version the broker serves.
const API_VERSIONS_MAX: i16 = 4;
/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;
/// The broker's default `socket.request.max.bytes`.
const DEFAULT_MAX_REQUEST: i32 = 100 * 1024 * 1024;

const CLIENT_ID: &str = "wire-test";

/// The first flexible version (request header v2) of each served API: a
/// protocol fact, not something the broker reports.
const FIRST_FLEXIBLE: &[(i16, i16)] = &[
    (PRODUCE, 9),
    (FETCH, 12),
    (2, 6), // ListOffsets
    (METADATA, 9),
    (API_VERSIONS, 3),
    (CREATE_TOPICS, 5),
    (20, 4), // DeleteTopics
    (32, 4), // DescribeConfigs
    (33, 2), // AlterConfigs
    (37, 2), // CreatePartitions
    (44, 1), // IncrementalAlterConfigs
    (60, 0), // DescribeCluster
    (75, 0), // DescribeTopicPartitions
];

/// Whether `version` of `key` uses request header v2 (an API missing from the
/// table is treated as never flexible: its frames are then just more garbage).
fn is_flexible(key: i16, version: i16) -> bool {
    FIRST_FLEXIBLE.iter().any(|&(k, first)| k == key && version >= first)
}

// ---------------------------------------------------------------------------
// Building and sending frames

/// A request built byte by byte; [`Frame::wire`] adds the `i32` length prefix.
#[derive(Default)]
struct Frame {
    bytes: Vec<u8>,
}

impl Frame {
    /// Request header v1: api key, version, correlation id, client id.
    fn header_v1(key: i16, version: i16, correlation_id: i32) -> Self {
        Frame::default().put_i16(key).put_i16(version).put_i32(correlation_id).put_str(CLIENT_ID)
    }

    /// Request header v2 (flexible versions): v1 plus an empty tagged-field section.
    fn header_v2(key: i16, version: i16, correlation_id: i32) -> Self {
        Self::header_v1(key, version, correlation_id).put_u8(0)
    }

    fn put_u8(mut self, v: u8) -> Self {
        self.bytes.push(v);
        self
    }

    fn put_i16(self, v: i16) -> Self {
        self.put_bytes(&v.to_be_bytes())
    }

    fn put_i32(self, v: i32) -> Self {
        self.put_bytes(&v.to_be_bytes())
    }

    fn put_bytes(mut self, b: &[u8]) -> Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// A classic string: `i16` length, then the bytes.
    fn put_str(self, s: &str) -> Self {
        let len = i16::try_from(s.len()).expect("string fits an i16 length");
        self.put_i16(len).put_bytes(s.as_bytes())
    }

    /// An unsigned varint (compact lengths and counts are stored plus one).
    fn put_uvarint(mut self, mut v: u32) -> Self {
        while v >= 0x80 {
            self.bytes.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        self.put_u8(v as u8)
    }

    fn put_i64(self, v: i64) -> Self {
        self.put_bytes(&v.to_be_bytes())
    }

    /// A signed (zigzag) varint, as in record fields.
    fn put_varint(mut self, v: i64) -> Self {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.bytes.push((z & 0x7f) as u8 | 0x80);
            z >>= 7;
        }
        self.put_u8(z as u8)
    }

    /// A compact string: unsigned varint length + 1, then the bytes.
    fn put_compact_str(self, s: &str) -> Self {
        let len = u32::try_from(s.len() + 1).expect("string length fits a u32");
        self.put_uvarint(len).put_bytes(s.as_bytes())
    }

    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The frame as sent: `i32` length prefix, then the bytes.
    fn wire(&self) -> Vec<u8> {
        let len = i32::try_from(self.len()).expect("frame fits an i32 length");
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// A connection with short timeouts, so a hang fails the test.
fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("set read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("set write timeout");
    stream.set_nodelay(true).expect("set nodelay");
    stream
}

fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap_or_else(|e| panic!("write {} request bytes: {e}", bytes.len()));
}

fn send_frame(stream: &mut TcpStream, frame: &Frame) {
    send_raw(stream, &frame.wire());
}

/// What the broker did with a request.
enum Outcome {
    /// A response frame: its correlation id, then the rest (header and body).
    Answered(i32, Bytes),
    /// The connection was closed (EOF or reset).
    Closed,
}

fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Waits for a response frame or for the connection to close; panics if
/// neither happens within [`IO_TIMEOUT`].
fn answer_or_close(stream: &mut TcpStream, what: &str) -> Outcome {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if is_closed(&e) => return Outcome::Closed,
        Err(e) if is_timeout(&e) => panic!("{what}: neither answered nor closed within {IO_TIMEOUT:?}"),
        Err(e) => panic!("{what}: unexpected read error: {e}"),
    }
    let len = i32::from_be_bytes(len);
    assert!((4..=64 << 20).contains(&len), "{what}: implausible response length {len}");
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).unwrap_or_else(|e| panic!("{what}: reading a {len}-byte response: {e}"));
    let mut frame = Bytes::from(frame);
    let correlation_id = frame.get_i32();
    Outcome::Answered(correlation_id, frame)
}

/// Reads the response to `correlation_id`: everything after the correlation id.
fn read_response(stream: &mut TcpStream, correlation_id: i32) -> Bytes {
    let what = format!("request with correlation id {correlation_id}");
    match answer_or_close(stream, &what) {
        Outcome::Answered(got, rest) => {
            assert_eq!(got, correlation_id, "{what}: response correlation id");
            rest
        }
        Outcome::Closed => panic!("{what}: connection closed instead of an answer"),
    }
}

/// The broker must close the connection (not answer, not hang).
fn assert_closed(stream: &mut TcpStream, what: &str) {
    if let Outcome::Answered(correlation_id, rest) = answer_or_close(stream, what) {
        panic!(
            "{what}: expected the connection to be closed, got response {correlation_id}: {:02x?}",
            &rest[..]
        );
    }
}

/// Sends `frame` on a fresh connection and expects the broker to close it.
fn assert_refused(addr: &str, frame: &Frame, what: &str) {
    let mut stream = connect(addr);
    send_frame(&mut stream, frame);
    assert_closed(&mut stream, what);
}

// ---------------------------------------------------------------------------
// Parsing the answers the tests rely on

fn get_uvarint(buf: &mut Bytes) -> u32 {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        assert!(buf.has_remaining(), "varint cut short");
        let b = buf.get_u8();
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 5 bytes");
}

fn skip_tagged_fields(buf: &mut Bytes) {
    for _ in 0..get_uvarint(buf) {
        let _tag = get_uvarint(buf);
        let size = get_uvarint(buf) as usize;
        assert!(buf.remaining() >= size, "tagged field cut short");
        buf.advance(size);
    }
}

fn get_str(buf: &mut Bytes) -> String {
    let len = buf.get_i16();
    assert!(len >= 0 && buf.remaining() >= len as usize, "bad string length {len}");
    String::from_utf8(buf.split_to(len as usize).to_vec()).expect("utf-8 string")
}

/// A parsed ApiVersions response.
#[derive(Debug)]
struct ApiVersionsAnswer {
    error_code: i16,
    /// (api key, min version, max version).
    apis: Vec<(i16, i16, i16)>,
}

impl ApiVersionsAnswer {
    /// Parses a response body of `version` (the response header is always v0).
    fn parse(mut body: Bytes, version: i16) -> Self {
        let flexible = version >= 3;
        let error_code = body.get_i16();
        let count = if flexible { get_uvarint(&mut body) as i64 - 1 } else { i64::from(body.get_i32()) };
        assert!((0..1000).contains(&count), "api count {count}");
        assert!(body.remaining() >= count as usize * 6, "api array cut short");
        let mut apis = Vec::new();
        for _ in 0..count {
            apis.push((body.get_i16(), body.get_i16(), body.get_i16()));
            if flexible {
                skip_tagged_fields(&mut body);
            }
        }
        if version >= 1 {
            let _throttle_ms = body.get_i32();
        }
        if flexible {
            skip_tagged_fields(&mut body);
        }
        assert!(!body.has_remaining(), "{} unparsed bytes after ApiVersions v{version}", body.remaining());
        ApiVersionsAnswer { error_code, apis }
    }

    fn range(&self, key: i16) -> Option<(i16, i16)> {
        self.apis.iter().find(|(k, _, _)| *k == key).map(|(_, min, max)| (*min, *max))
    }
}

/// A valid ApiVersions request of `version` (v3+ uses header v2 and a body).
fn api_versions_request(version: i16, correlation_id: i32) -> Frame {
    if version >= 3 {
        Frame::header_v2(API_VERSIONS, version, correlation_id)
            .put_compact_str("strata-wire-test")
            .put_compact_str("1.0")
            .put_u8(0)
    } else {
        Frame::header_v1(API_VERSIONS, version, correlation_id)
    }
}

/// Sends ApiVersions `version` and checks a correct, error-free answer.
fn check_api_versions(stream: &mut TcpStream, version: i16, correlation_id: i32) {
    send_frame(stream, &api_versions_request(version, correlation_id));
    let answer = ApiVersionsAnswer::parse(read_response(stream, correlation_id), version);
    assert_eq!(answer.error_code, 0, "ApiVersions v{version} error code");
    assert_eq!(answer.range(API_VERSIONS), Some((0, API_VERSIONS_MAX)), "ApiVersions range: {answer:?}");
    assert_eq!(answer.range(METADATA).map(|r| r.0), Some(0), "Metadata range: {answer:?}");
}

/// The served (api key, min, max) list, from an ApiVersions v3 answer.
fn served_apis(stream: &mut TcpStream) -> Vec<(i16, i16, i16)> {
    send_frame(stream, &api_versions_request(3, 17));
    let answer = ApiVersionsAnswer::parse(read_response(stream, 17), 3);
    assert_eq!(answer.error_code, 0, "ApiVersions v3 error code");
    answer.apis
}

/// Sends Metadata v1 for no topics and checks the broker lists itself.
fn check_metadata(stream: &mut TcpStream, addr: &str, correlation_id: i32) {
    send_frame(stream, &Frame::header_v1(METADATA, 1, correlation_id).put_i32(0));
    let mut body = read_response(stream, correlation_id);
    let brokers = body.get_i32();
    assert!((1..100).contains(&brokers), "broker count {brokers}");
    let mut ports = Vec::new();
    for _ in 0..brokers {
        let _node_id = body.get_i32();
        let host = get_str(&mut body);
        let port = body.get_i32();
        let rack = body.get_i16();
        assert!(rack == -1 || rack >= 0, "rack length {rack}");
        if rack > 0 {
            body.advance(rack as usize);
        }
        assert!(!host.is_empty(), "empty broker host");
        ports.push(port);
    }
    let _controller_id = body.get_i32();
    assert_eq!(body.get_i32(), 0, "topics in a Metadata answer for no topics");
    let port: i32 = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in broker address");
    assert!(ports.contains(&port), "Metadata brokers {ports:?} do not include port {port}");
}

/// A new connection gets correct ApiVersions (v0 and v3) and Metadata v1 answers.
fn assert_serves(addr: &str) {
    let mut stream = connect(addr);
    check_api_versions(&mut stream, 0, 9001);
    check_api_versions(&mut stream, 3, 9002);
    check_metadata(&mut stream, addr, 9003);
}

/// Fails if the broker process exits within a short grace period (an abort
/// closes the socket a moment before the process is gone).
fn assert_alive(broker: &mut BrokerProcess, after: &str) {
    for _ in 0..10 {
        assert!(
            broker.is_running(),
            "broker process exited after {after} (run with STRATA_TEST_LOG=1 to see its stderr)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// What must outlive the bad input

/// A connection opened, and stored data written, before the bad input.
struct Survivors {
    early: TcpStream,
    data: Option<(String, Vec<String>)>,
}

impl Survivors {
    /// An earlier connection (used once) and a few messages produced with rdkafka.
    fn with_data(broker: &BrokerProcess) -> Self {
        let name = topic("wire");
        let values: Vec<String> = (0..5).map(|i| format!("before-bad-input-{i}")).collect();
        produce(&broker.addr, &name, &values);
        let mut survivors = Self::connection_only(broker);
        survivors.data = Some((name, values));
        survivors
    }

    /// Only an earlier connection (used once).
    fn connection_only(broker: &BrokerProcess) -> Self {
        let mut early = connect(&broker.addr);
        check_api_versions(&mut early, 3, 1);
        Survivors { early, data: None }
    }

    /// The process runs, a new connection is served, the earlier connection
    /// still works and the stored messages are still there.
    fn check(mut self, broker: &mut BrokerProcess, after: &str) {
        assert_alive(broker, after);
        assert_serves(&broker.addr);
        check_api_versions(&mut self.early, 3, 2);
        check_metadata(&mut self.early, &broker.addr, 3);
        if let Some((name, values)) = &self.data {
            assert_eq!(&consume(&broker.addr, name, values.len()), values, "messages stored before {after}");
        }
        assert_alive(broker, after);
    }
}

/// Creates `topic` (one partition) and produces `values` with acks=all.
fn produce(addr: &str, topic: &str, values: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", addr).create().expect("admin client");
        let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
        let res = admin.create_topics(&[new_topic], &AdminOptions::new()).await.expect("create_topics");
        res[0].as_ref().expect("topic created");
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", addr).set("acks", "all").create().expect("producer");
        for (i, value) in values.iter().enumerate() {
            let key = format!("k{i}");
            let record = FutureRecord::to(topic).key(key.as_str()).payload(value.as_str());
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
        }
    });
}

/// Reads `expected` messages of partition 0 from the start.
fn consume(addr: &str, topic: &str, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        // librdkafka needs a group.id to assign partitions even when no group is joined.
        .set("group.id", "strata-wire-test")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("partition list");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A small seeded PRNG (xorshift64*), so random cases are reproducible.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------
// Record batches (magic v2), built by hand

/// CRC-32C (Castagnoli), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// A v2 record batch holding one record with value `poison`, whose header
/// claims `record_count` records and whose record claims `header_count` headers
/// (none of them present beyond the first record). Sizes and CRC are correct.
fn record_batch(record_count: i32, header_count: i32) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970");
    let record = Frame::default()
        .put_u8(0) // attributes
        .put_varint(0) // timestamp delta
        .put_varint(0) // offset delta
        .put_varint(-1) // key: null
        .put_varint(6)
        .put_bytes(b"poison")
        .put_varint(i64::from(header_count));
    let record = Frame::default().put_varint(record.len() as i64).put_bytes(&record.bytes);
    let after_crc = Frame::default()
        .put_i16(0) // attributes: no compression, CreateTime
        .put_i32(record_count - 1) // last offset delta
        .put_i64(now) // base timestamp
        .put_i64(now) // max timestamp
        .put_i64(-1) // producer id
        .put_i16(-1) // producer epoch
        .put_i32(-1) // base sequence
        .put_i32(record_count)
        .put_bytes(&record.bytes);
    let batch_len = i32::try_from(after_crc.len() + 9).expect("batch length"); // epoch, magic, crc
    Frame::default()
        .put_i64(0) // base offset
        .put_i32(batch_len)
        .put_i32(-1) // partition leader epoch
        .put_u8(2) // magic
        .put_bytes(&crc32c(&after_crc.bytes).to_be_bytes())
        .put_bytes(&after_crc.bytes)
        .bytes
}

/// A non-flexible Produce (v0-v8, acks=all) of `batch` to partition 0 of
/// `topic`; v3+ carry a null transactional id.
fn produce_frame(version: i16, topic: &str, batch: &[u8], correlation_id: i32) -> Frame {
    let frame = Frame::header_v1(PRODUCE, version, correlation_id);
    let frame = if version >= 3 { frame.put_i16(-1) } else { frame }; // transactional id
    frame
        .put_i16(-1) // acks
        .put_i32(10_000) // timeout ms
        .put_i32(1)
        .put_str(topic)
        .put_i32(1)
        .put_i32(0) // partition
        .put_i32(i32::try_from(batch.len()).expect("batch size"))
        .put_bytes(batch)
}

/// Produce v3 (acks=all) of `batch` to partition 0 of `topic`; returns the
/// partition's error code.
fn produce_raw(stream: &mut TcpStream, topic: &str, batch: &[u8], correlation_id: i32) -> i16 {
    send_frame(stream, &produce_frame(3, topic, batch, correlation_id));
    let mut body = read_response(stream, correlation_id);
    assert_eq!(body.get_i32(), 1, "Produce response topics");
    assert_eq!(get_str(&mut body), topic);
    assert_eq!(body.get_i32(), 1, "Produce response partitions");
    assert_eq!(body.get_i32(), 0, "Produce response partition index");
    body.get_i16()
}

/// ListOffsets v1 of partition 0 of `topic` for the first offset at or after
/// `timestamp` (which makes the broker read record timestamps from the log).
fn list_offsets_request(topic: &str, timestamp: i64, correlation_id: i32) -> Frame {
    Frame::header_v1(2, 1, correlation_id)
        .put_i32(-1) // replica id
        .put_i32(1)
        .put_str(topic)
        .put_i32(1)
        .put_i32(0) // partition
        .put_i64(timestamp)
}

// ---------------------------------------------------------------------------
// Tests

/// Sanity check of the hand-built requests and parsers used everywhere else.
#[test]
fn hand_built_requests_are_served() {
    let mut broker = BrokerProcess::start();
    let mut stream = connect(&broker.addr);
    for version in 0..=API_VERSIONS_MAX {
        check_api_versions(&mut stream, version, 100 + i32::from(version));
    }
    check_metadata(&mut stream, &broker.addr, 200);
    Survivors::with_data(&broker).check(&mut broker, "nothing bad");
}

/// Case 1: a negative length prefix closes the connection.
#[test]
fn negative_length_prefix_closes_connection() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    for len in [-1, -8, i32::MIN] {
        let mut stream = connect(&broker.addr);
        send_raw(&mut stream, &len.to_be_bytes());
        assert_closed(&mut stream, &format!("length prefix {len}"));
        // The same, followed by a well-formed request body.
        let mut stream = connect(&broker.addr);
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&api_versions_request(0, 1).bytes);
        send_raw(&mut stream, &bytes);
        assert_closed(&mut stream, &format!("length prefix {len} before a valid body"));
    }
    survivors.check(&mut broker, "negative length prefixes");
}

/// Case 2: a length over the limit closes the connection at once, without the
/// broker waiting for (or allocating) the announced body.
#[test]
fn oversized_length_prefix_closes_without_reading_the_body() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    for len in [i32::MAX, DEFAULT_MAX_REQUEST + 1] {
        // Several at once: had the broker allocated each body, this would be gigabytes.
        let mut streams: Vec<TcpStream> = (0..8).map(|_| connect(&broker.addr)).collect();
        for stream in &mut streams {
            // The prefix and the start of a plausible header, and no more.
            send_raw(stream, &len.to_be_bytes());
            send_raw(stream, &Frame::header_v1(PRODUCE, 3, 1).bytes);
        }
        for stream in &mut streams {
            assert_closed(stream, &format!("length prefix {len} with no body"));
        }
    }
    survivors.check(&mut broker, "oversized length prefixes");
}

/// Case 2b: `--socket-request-max-bytes` is enforced, inclusively.
#[test]
fn socket_request_max_bytes_is_enforced() {
    let mut broker = BrokerProcess::start_with(&["--socket-request-max-bytes", "1024"]);
    let survivors = Survivors::connection_only(&broker);
    // ApiVersions v0 whose client id pads the frame to exactly `len` bytes.
    let padded = |len: usize, correlation_id: i32| {
        let client_id = "x".repeat(len - 10);
        let frame =
            Frame::default().put_i16(API_VERSIONS).put_i16(0).put_i32(correlation_id).put_str(&client_id);
        assert_eq!(frame.len(), len);
        frame
    };
    let mut stream = connect(&broker.addr);
    for (cid, len) in [(1, 500), (2, 1024)] {
        send_frame(&mut stream, &padded(len, cid));
        let answer = ApiVersionsAnswer::parse(read_response(&mut stream, cid), 0);
        assert_eq!(answer.error_code, 0, "{len}-byte frame");
    }
    assert_refused(&broker.addr, &padded(1025, 3), "1025-byte frame over a 1024 limit");
    assert_refused(&broker.addr, &padded(2048, 4), "2 KiB frame over a 1024 limit");
    // The connection that was served keeps working.
    check_api_versions(&mut stream, 3, 5);
    survivors.check(&mut broker, "frames over socket.request.max.bytes");
}

/// Case 3: a length prefix too short for the fixed header fields closes the
/// connection, as does a header missing its client id.
#[test]
fn length_prefix_shorter_than_a_header_closes_connection() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    let header = Frame::header_v1(API_VERSIONS, 0, 1).bytes;
    for len in [0usize, 1, 3, 7] {
        let mut stream = connect(&broker.addr);
        let mut bytes = (len as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&header[..len]);
        send_raw(&mut stream, &bytes);
        assert_closed(&mut stream, &format!("length prefix {len}"));
    }
    // Key, version and correlation id but no client id (header v1 needs one).
    let bare = Frame::default().put_i16(API_VERSIONS).put_i16(0).put_i32(1);
    assert_refused(&broker.addr, &bare, "header without a client id");
    // A client id length pointing past the end of the frame.
    let overlong = Frame::default().put_i16(METADATA).put_i16(1).put_i32(1).put_i16(100).put_bytes(b"abc");
    assert_refused(&broker.addr, &overlong, "client id longer than the frame");
    survivors.check(&mut broker, "too-short frames");
}

/// Case 4: frames cut short. A half-closed one is dropped; a stalled one does
/// not hold up anyone else, and is served once it is completed.
#[test]
fn truncated_frames_are_dropped_and_stalled_ones_block_nobody() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);

    // Stalled: 10 bytes of a 100-byte ApiVersions v0, the rest sent at the end.
    let stalled_frame =
        Frame::default().put_i16(API_VERSIONS).put_i16(0).put_i32(77).put_str(&"s".repeat(90));
    let stalled_wire = stalled_frame.wire();
    let mut stalled = connect(&broker.addr);
    send_raw(&mut stalled, &stalled_wire[..14]);

    let metadata = Frame::header_v1(METADATA, 1, 1).put_i32(1).put_str("some-topic").wire();
    let cuts: [(&str, &[u8]); 4] = [
        ("half a length prefix", &metadata[..2]),
        ("a length prefix only", &metadata[..4]),
        ("a header only", &metadata[..14]),
        ("all but the last byte", &metadata[..metadata.len() - 1]),
    ];
    for (what, bytes) in cuts {
        let mut stream = connect(&broker.addr);
        send_raw(&mut stream, bytes);
        stream.shutdown(Shutdown::Write).expect("half-close");
        assert_closed(&mut stream, what);
    }
    // And a client that just vanishes mid-frame.
    let mut gone = connect(&broker.addr);
    send_raw(&mut gone, &metadata[..20]);
    drop(gone);

    survivors.check(&mut broker, "truncated frames");

    send_raw(&mut stalled, &stalled_wire[14..]);
    let answer = ApiVersionsAnswer::parse(read_response(&mut stalled, 77), 0);
    assert_eq!(answer.error_code, 0, "the stalled request, once completed");
}

/// A random request: a served API and version, a length in 8..=4096 and
/// random bytes; every other frame gets a valid header so that the body
/// decoders are reached.
fn random_frame(rng: &mut Rng, served: &[(i16, i16, i16)], correlation_id: i32) -> Frame {
    let (key, min, max) = served[rng.range(0, served.len())];
    let version = rng.range(min as usize, max as usize + 1) as i16;
    let len = rng.range(8, 4097);
    let header = if correlation_id % 2 == 1 {
        Frame::default().put_i16(key).put_i16(version).put_i32(correlation_id)
    } else if is_flexible(key, version) {
        Frame::header_v2(key, version, correlation_id)
    } else {
        Frame::header_v1(key, version, correlation_id)
    };
    let fill = len.saturating_sub(header.len());
    header.put_bytes(&rng.bytes(fill))
}

/// Whether the broker still answers on an existing connection. (Every bad
/// connection is closed by then, so a broker about to die has already died.)
fn still_serving(probe: &mut TcpStream, correlation_id: i32) -> bool {
    if probe.write_all(&api_versions_request(0, correlation_id).wire()).is_err() {
        return false;
    }
    matches!(answer_or_close(probe, "liveness probe"), Outcome::Answered(got, _) if got == correlation_id)
}

/// Case 5: random bodies for every served API and version, each on a fresh
/// connection: each is answered or closed, never left hanging, and none kills
/// the broker. A broker that dies is restarted so the run goes on; the test
/// then fails listing every fatal frame (reproducible from the seed).
#[test]
fn random_frames_are_answered_or_closed() {
    const SEED: u64 = 0x05ee_d0f5_747a;
    const FRAMES: i32 = 300;
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    let mut probe = connect(&broker.addr);
    let served = served_apis(&mut probe);
    let mut rng = Rng(SEED);
    let mut fatal = Vec::new();
    for i in 0..FRAMES {
        let wire = random_frame(&mut rng, &served, i).wire();
        let (key, version) = (i16::from_be_bytes([wire[4], wire[5]]), i16::from_be_bytes([wire[6], wire[7]]));
        let what = format!("random frame #{i} (api {key} v{version}, {} bytes)", wire.len());
        let mut stream = connect(&broker.addr);
        send_raw(&mut stream, &wire);
        if let Outcome::Answered(got, _) = answer_or_close(&mut stream, &what) {
            assert_eq!(got, i, "{what}: response correlation id");
        }
        drop(stream);
        if !still_serving(&mut probe, i) {
            fatal.push(format!("{what} starting {:02x?}", &wire[..wire.len().min(32)]));
            broker.restart();
            probe = connect(&broker.addr);
        }
    }
    assert!(
        fatal.is_empty(),
        "{} of {FRAMES} random frames (seed {SEED:#x}) killed the broker:\n{}",
        fatal.len(),
        fatal.join("\n")
    );
    survivors.check(&mut broker, "random frames");
}

/// Case 5b: valid headers, but arrays that claim more elements than present.
#[test]
fn truncated_arrays_are_refused() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    // Metadata v1: five topics announced, one present.
    let metadata = Frame::header_v1(METADATA, 1, 1).put_i32(5).put_str("only-one");
    assert_refused(&broker.addr, &metadata, "Metadata v1 with 1 of 5 topics");
    // CreateTopics v2: one topic announced, nothing after.
    let create = Frame::header_v1(CREATE_TOPICS, 2, 2).put_i32(1);
    assert_refused(&broker.addr, &create, "CreateTopics v2 with 0 of 1 topics");
    // Produce v3: two topics announced, the first cut inside its partitions.
    let produce = Frame::header_v1(PRODUCE, 3, 3)
        .put_i16(-1) // transactional id: null
        .put_i16(-1) // acks
        .put_i32(1000) // timeout ms
        .put_i32(2) // topics
        .put_str("t")
        .put_i32(3) // partitions
        .put_i32(0); // partition index, then no records
    assert_refused(&broker.addr, &produce, "Produce v3 with truncated topics");
    // Metadata v9 (flexible): compact array of 3 topics (varint 4), one present.
    let compact = Frame::header_v2(METADATA, 9, 4).put_uvarint(4).put_compact_str("only-one").put_u8(0); // tagged fields
    assert_refused(&broker.addr, &compact, "Metadata v9 with 1 of 3 topics");
    survivors.check(&mut broker, "truncated arrays");
}

/// Sends a request whose array count is huge and checks the broker survives.
fn huge_count_case(frame: Frame, what: &str) {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    assert_refused(&broker.addr, &frame, what);
    survivors.check(&mut broker, what);
}

/// Case 6a: Produce v3 with a topic count of 2^31-1 and nothing after.
#[test]
fn huge_produce_topic_count_is_refused() {
    let frame = Frame::header_v1(PRODUCE, 3, 1)
        .put_i16(-1) // transactional id: null
        .put_i16(-1) // acks
        .put_i32(30_000) // timeout ms
        .put_i32(i32::MAX); // topics
    huge_count_case(frame, "Produce v3 with 2^31-1 topics");
}

/// Case 6b: Metadata v1 with a topic count of 2^31-1 and nothing after.
#[test]
fn huge_metadata_topic_count_is_refused() {
    let frame = Frame::header_v1(METADATA, 1, 1).put_i32(i32::MAX);
    huge_count_case(frame, "Metadata v1 with 2^31-1 topics");
}

/// Case 6c: Metadata v9 (flexible) with a compact topic count of 2^32-2.
#[test]
fn huge_compact_array_count_is_refused() {
    let frame = Frame::header_v2(METADATA, 9, 1).put_uvarint(u32::MAX);
    huge_count_case(frame, "Metadata v9 with a compact count of 2^32-2 topics");
}

/// Produces a hand-built batch whose counts lie, then makes the broker read
/// the stored batch back (ListOffsets by timestamp): it may refuse the batch or
/// answer, but must survive both steps.
fn lying_batch_case(batch: &[u8], what: &str) {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    let victim = topic("wire-victim");
    produce(&broker.addr, &victim, &[]);
    let mut stream = connect(&broker.addr);
    let error_code = produce_raw(&mut stream, &victim, batch, 1);
    assert_alive(&mut broker, &format!("producing {what}"));
    let lookup = format!("ListOffsets by timestamp over {what} (produce error code {error_code})");
    send_frame(&mut stream, &list_offsets_request(&victim, 0, 2));
    if let Outcome::Answered(got, _) = answer_or_close(&mut stream, &lookup) {
        assert_eq!(got, 2, "{lookup}: response correlation id");
    }
    survivors.check(&mut broker, &lookup);
}

/// Case 6d: a record batch (valid sizes and CRC) whose header claims 2^31-1
/// records but holds one.
#[test]
fn huge_record_count_in_a_batch_is_harmless() {
    lying_batch_case(&record_batch(i32::MAX, 0), "a batch claiming 2^31-1 records");
}

/// Case 6e: a record claiming 2^31-1 headers and holding none.
#[test]
fn huge_header_count_in_a_record_is_harmless() {
    lying_batch_case(&record_batch(1, i32::MAX), "a record claiming 2^31-1 headers");
}

/// The hand-built CRC-32C and a truthful batch, as the broker sees them.
#[test]
fn hand_built_record_batch_is_accepted() {
    assert_eq!(crc32c(b"123456789"), 0xe306_9283, "CRC-32C check value");
    let broker = BrokerProcess::start();
    let name = topic("wire-batch");
    produce(&broker.addr, &name, &[]);
    let mut stream = connect(&broker.addr);
    assert_eq!(produce_raw(&mut stream, &name, &record_batch(1, 0), 1), 0, "produce error code");
    send_frame(&mut stream, &list_offsets_request(&name, 0, 2));
    let mut body = read_response(&mut stream, 2);
    assert_eq!(body.get_i32(), 1, "ListOffsets topics");
    assert_eq!(get_str(&mut body), name);
    assert_eq!(body.get_i32(), 1, "ListOffsets partitions");
    assert_eq!(body.get_i32(), 0, "partition index");
    assert_eq!(body.get_i16(), 0, "ListOffsets error code");
    let _timestamp = body.get_i64();
    assert_eq!(body.get_i64(), 0, "offset of the first record at or after timestamp 0");
    assert_eq!(consume(&broker.addr, &name, 1), vec!["poison".to_string()]);
}

/// Case 7: an unknown API key or an unsupported version closes the connection.
#[test]
fn unknown_api_key_and_unsupported_versions_close_connection() {
    let mut broker = BrokerProcess::start();
    let survivors = Survivors::with_data(&broker);
    let cases = [
        (999, 0, "unknown api key 999"),
        (-1, 0, "negative api key"),
        (PRODUCE, 2, "Produce v2"),
        (FETCH, 3, "Fetch v3"),
        (METADATA, 14, "Metadata v14"),
        (METADATA, -1, "Metadata v-1"),
        (API_VERSIONS, -1, "ApiVersions v-1"),
    ];
    for (key, version, what) in cases {
        assert_refused(&broker.addr, &Frame::header_v1(key, version, 1).put_i32(0), what);
    }
    survivors.check(&mut broker, "unsupported requests");
}

/// Case 7b (KIP-511): a too-new ApiVersions gets a v0 answer with
/// UNSUPPORTED_VERSION and the served APIs, and the connection stays usable.
#[test]
fn too_new_api_versions_gets_a_v0_answer() {
    let mut broker = BrokerProcess::start();
    let mut stream = connect(&broker.addr);
    send_frame(&mut stream, &api_versions_request(99, 42));
    let answer = ApiVersionsAnswer::parse(read_response(&mut stream, 42), 0);
    assert_eq!(answer.error_code, UNSUPPORTED_VERSION, "{answer:?}");
    assert_eq!(answer.range(API_VERSIONS), Some((0, API_VERSIONS_MAX)), "{answer:?}");
    // The client retries with a version it now knows is served, and learns the same list.
    check_api_versions(&mut stream, 3, 43);
    assert_eq!(answer.apis, served_apis(&mut stream), "the KIP-511 list vs the ApiVersions v3 list");
    check_metadata(&mut stream, &broker.addr, 44);
    assert_alive(&mut broker, "a too-new ApiVersions");
    assert_serves(&broker.addr);
}

/// Produce v0-v2 are advertised, as Kafka 4.1 advertises them, and a request
/// at those versions closes the connection, as Kafka 4.1 does (checked against
/// the reference broker: it closes on v0, v1 and v2 alike); nothing is stored.
#[test]
fn produce_below_v3_is_advertised_and_closes_the_connection() {
    let mut broker = BrokerProcess::start();
    let name = topic("wire-old-produce");
    produce(&broker.addr, &name, &[]);
    let mut stream = connect(&broker.addr);
    assert!(served_apis(&mut stream).contains(&(PRODUCE, 0, 13)), "Produce 0-13 advertised");
    for version in 0..=2 {
        let frame = produce_frame(version, &name, &record_batch(1, 0), 10);
        assert_refused(&broker.addr, &frame, &format!("Produce v{version}"));
    }
    // Nothing stored: the latest offset is still 0.
    send_frame(&mut stream, &list_offsets_request(&name, -1, 99));
    let mut body = read_response(&mut stream, 99);
    assert_eq!(body.get_i32(), 1, "ListOffsets topics");
    assert_eq!(get_str(&mut body), name);
    assert_eq!(body.get_i32(), 1, "ListOffsets partitions");
    assert_eq!(body.get_i32(), 0, "partition index");
    assert_eq!(body.get_i16(), 0, "ListOffsets error code");
    let _timestamp = body.get_i64();
    assert_eq!(body.get_i64(), 0, "latest offset: nothing stored");
    assert_alive(&mut broker, "old produce versions");
}
