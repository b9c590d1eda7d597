#!/usr/bin/env python3
"""End-to-end test of a Strata broker with confluent-kafka (librdkafka).

Usage: python tests/e2e/confluent_client.py --bootstrap 127.0.0.1:PORT

Exits 0 and prints "OK confluent_client: <n> checks" on success; prints
"FAIL confluent_client: ..." and exits non-zero on the first failure.

Consumers outside the group section use manual assign() with explicit
offsets and enable.auto.commit=False (librdkafka insists on a group.id for any
consumer; a unique one is set but never used for membership). The group
section runs three members of one group with the classic protocol and again
with the consumer protocol (KIP-848, group.protocol=consumer).
"""

import argparse
import os
import sys
import threading
import time
import traceback
import uuid
import warnings

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
    libversion,
    version,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

NAME = "confluent_client"
SUFFIX = uuid.uuid4().hex[:10]
ADMIN_TIMEOUT = 30.0
BULK_PARTITIONS = 3
CHECKS = 0


class Failure(Exception):
    pass


def log(msg):
    print(f"[{NAME} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond, msg):
    global CHECKS
    if not cond:
        raise Failure(msg)
    CHECKS += 1


def check_eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def topic_name(label):
    return f"e2e-ck-{label}-{SUFFIX}"


def now_ms():
    return int(time.time() * 1000)


class Env:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.errors = []
        self.admin = AdminClient(self.common())

    def _error_cb(self, err):
        # Transient connection errors are logged; fatal ones fail the run.
        self.errors.append(err)
        log(f"client error: {err}")
        if err.fatal():
            raise Failure(f"fatal client error: {err}")

    def common(self, **extra):
        conf = {
            "bootstrap.servers": self.bootstrap,
            "client.id": f"strata-e2e-{NAME}",
            "error_cb": self._error_cb,
            "socket.timeout.ms": 20000,
        }
        conf.update(extra)
        return conf

    def producer(self, **extra):
        conf = self.common(**{
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "enable.idempotence": False,
        })
        conf.update(extra)
        return Producer(conf)

    def consumer(self, **extra):
        conf = self.common(**{
            # Required by librdkafka for any consumer; never used for group
            # membership since we only assign() and never commit.
            "group.id": f"strata-e2e-unused-{SUFFIX}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Any offset-out-of-range surfaces as an error instead of a
            # silent reset.
            "auto.offset.reset": "error",
        })
        conf.update(extra)
        return Consumer(conf)

    # ---------------------------------------------------------------- admin
    def create_topics(self, new_topics):
        futures = self.admin.create_topics(new_topics, operation_timeout=ADMIN_TIMEOUT,
                                           request_timeout=ADMIN_TIMEOUT)
        for name, fut in futures.items():
            try:
                fut.result(timeout=ADMIN_TIMEOUT)
            except Exception as e:
                raise Failure(f"create_topics({name}) failed: {e!r}")
            check(True, "")
        self.wait_topics({t.topic: t.num_partitions for t in new_topics})

    def topic_partitions(self):
        md = self.admin.list_topics(timeout=ADMIN_TIMEOUT)
        return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}

    def wait_topics(self, expected, timeout=15.0):
        """Wait until list_topics shows each topic with the expected partition count."""
        deadline = time.monotonic() + timeout
        while True:
            parts = self.topic_partitions()
            missing = {t: n for t, n in expected.items() if parts.get(t) != n}
            if not missing:
                return parts
            if time.monotonic() > deadline:
                raise Failure(
                    "list_topics: expected partition counts %r, got %r"
                    % (missing, {t: parts.get(t) for t in missing}))
            time.sleep(0.2)

    def describe(self, topic):
        res = ConfigResource(ResourceType.TOPIC, topic)
        futures = self.admin.describe_configs([res], request_timeout=ADMIN_TIMEOUT)
        try:
            configs = futures[res].result(timeout=ADMIN_TIMEOUT)
        except Exception as e:
            raise Failure(f"describe_configs({topic}) failed: {e!r}")
        return {name: entry.value for name, entry in configs.items()}


# -------------------------------------------------------------------- helpers
def produce_all(producer, records, flush_timeout=120.0):
    """Produce records (dicts of produce() kwargs) and wait for every delivery.

    Returns a list, parallel to records, of delivered Message objects. Fails on
    any delivery error.
    """
    results = [None] * len(records)
    errors = []

    def make_cb(idx):
        def cb(err, msg):
            if err is not None:
                errors.append((idx, err))
            results[idx] = msg
        return cb

    for idx, rec in enumerate(records):
        while True:
            try:
                producer.produce(on_delivery=make_cb(idx), **rec)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(flush_timeout)
    check(remaining == 0, f"producer flush: {remaining} messages still undelivered after {flush_timeout}s")
    if errors:
        idx, err = errors[0]
        raise Failure(f"{len(errors)} delivery errors, first for record #{idx}: {err}")
    check(all(r is not None for r in results), "every delivery callback fired")
    return results


def consume_exact(consumer, expected_counts, timeout=120.0):
    """Consume until each (topic, partition) in expected_counts has that many messages.

    Returns {(topic, partition): [Message, ...]} in receive order.
    """
    got = {tp: [] for tp in expected_counts}
    deadline = time.monotonic() + timeout
    while any(len(got[tp]) < n for tp, n in expected_counts.items()):
        if time.monotonic() > deadline:
            have = {f"{t}[{p}]": len(v) for (t, p), v in got.items()}
            want = {f"{t}[{p}]": n for (t, p), n in expected_counts.items()}
            raise Failure(f"consume timed out after {timeout}s: have {have}, want {want}")
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.topic() is None and not err.fatal():
                    log(f"consumer (non-partition) error: {err}")
                    continue
                raise Failure(f"consumer error on {msg.topic()}[{msg.partition()}]: {err}")
            key = (msg.topic(), msg.partition())
            if key not in got:
                raise Failure(f"message from unexpected partition {key}")
            got[key].append(msg)
            if len(got[key]) > expected_counts[key]:
                raise Failure(f"more messages than produced on {key}: offset {msg.offset()}")
    return got


def verify_round_trip(label, records, delivered, consumed):
    """Check consumed messages equal the produced ones, per partition, in order."""
    by_part = {}
    for idx, dmsg in enumerate(delivered):
        by_part.setdefault((dmsg.topic(), dmsg.partition()), []).append((dmsg.offset(), idx))
    check_eq(sorted(consumed), sorted(by_part), f"{label}: partitions with data")
    for tp, entries in by_part.items():
        entries.sort()
        offsets = [o for o, _ in entries]
        check_eq(offsets, list(range(len(offsets))),
                 f"{label}: delivered offsets on {tp} are contiguous from 0")
        idxs = [i for _, i in entries]
        check(idxs == sorted(idxs), f"{label}: produce order preserved on {tp}")
        msgs = consumed[tp]
        check_eq([m.offset() for m in msgs], offsets, f"{label}: consumed offsets on {tp}")
        for (off, idx), m in zip(entries, msgs):
            rec = records[idx]
            if m.key() != rec.get("key") or m.value() != rec.get("value"):
                raise Failure(f"{label}: {tp}@{off} key/value mismatch: got "
                              f"({m.key()!r:.60}, {m.value()!r:.60}), want "
                              f"({rec.get('key')!r:.60}, {rec.get('value')!r:.60})")
            want_headers = rec.get("headers")
            got_headers = m.headers()
            if want_headers and got_headers != want_headers:
                raise Failure(f"{label}: {tp}@{off} headers: got {got_headers!r}, want {want_headers!r}")
            if not want_headers and got_headers:
                raise Failure(f"{label}: {tp}@{off} unexpected headers {got_headers!r}")
            if "timestamp" in rec:
                ts = m.timestamp()
                if ts != (TIMESTAMP_CREATE_TIME, rec["timestamp"]):
                    raise Failure(f"{label}: {tp}@{off} timestamp: got {ts!r}, want "
                                  f"(CreateTime, {rec['timestamp']})")
        check(True, f"{label}: {tp} content")


# ---------------------------------------------------------------------- tests
def test_admin(env):
    t_admin = topic_name("admin")
    t_big = topic_name("bigmsg")
    env.create_topics([
        NewTopic(t_admin, num_partitions=3, replication_factor=1),
        NewTopic(t_big, num_partitions=3, replication_factor=1,
                 config={"max.message.bytes": "2000000"}),
    ])
    log(f"created {t_admin}, {t_big}")

    # Creating an existing topic must fail with TOPIC_ALREADY_EXISTS.
    fut = env.admin.create_topics([NewTopic(t_admin, 3, 1)],
                                  request_timeout=ADMIN_TIMEOUT)[t_admin]
    try:
        fut.result(timeout=ADMIN_TIMEOUT)
        raise Failure("re-creating an existing topic succeeded")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.TOPIC_ALREADY_EXISTS, "re-create topic error")

    cfg = env.describe(t_admin)
    check_eq(cfg.get("retention.ms"), "604800000", f"{t_admin} default retention.ms")
    check_eq(cfg.get("cleanup.policy"), "delete", f"{t_admin} default cleanup.policy")
    cfg = env.describe(t_big)
    check_eq(cfg.get("max.message.bytes"), "2000000", f"{t_big} max.message.bytes")

    # incremental_alter_configs (KIP-339)
    res = ConfigResource(ResourceType.TOPIC, t_admin, incremental_configs=[
        ConfigEntry("retention.ms", "86400000",
                    incremental_operation=AlterConfigOpType.SET)])
    try:
        env.admin.incremental_alter_configs([res], request_timeout=ADMIN_TIMEOUT)[res].result(
            timeout=ADMIN_TIMEOUT)
    except Exception as e:
        raise Failure(f"incremental_alter_configs failed: {e!r}")
    check_eq(env.describe(t_admin).get("retention.ms"), "86400000",
             "retention.ms after incremental_alter_configs")

    # Legacy (non-incremental) alter_configs
    res = ConfigResource(ResourceType.TOPIC, t_admin, set_config={"retention.ms": "3600000"})
    try:
        with warnings.catch_warnings():  # deprecated in favour of the incremental API
            warnings.simplefilter("ignore", DeprecationWarning)
            futures = env.admin.alter_configs([res], request_timeout=ADMIN_TIMEOUT)
        futures[res].result(timeout=ADMIN_TIMEOUT)
    except Exception as e:
        raise Failure(f"alter_configs failed: {e!r}")
    check_eq(env.describe(t_admin).get("retention.ms"), "3600000",
             "retention.ms after alter_configs")
    # A bad value is refused with INVALID_CONFIG and changes nothing.
    res = ConfigResource(ResourceType.TOPIC, t_admin, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    try:
        env.admin.incremental_alter_configs([res], request_timeout=ADMIN_TIMEOUT)[res].result(
            timeout=ADMIN_TIMEOUT)
        raise Failure("retention.ms=soon was accepted")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.INVALID_CONFIG, "error for retention.ms=soon")
    check_eq(env.describe(t_admin).get("retention.ms"), "3600000", "retention.ms after a refused alter")
    log("configs described/altered")

    # create_partitions 3 -> 5
    fut = env.admin.create_partitions([NewPartitions(t_admin, 5)],
                                      request_timeout=ADMIN_TIMEOUT)[t_admin]
    try:
        fut.result(timeout=ADMIN_TIMEOUT)
    except Exception as e:
        raise Failure(f"create_partitions({t_admin}, 5) failed: {e!r}")
    env.wait_topics({t_admin: 5})
    check(True, "partition count 5 visible")
    log("partitions 3 -> 5")

    # delete_topics
    fut = env.admin.delete_topics([t_admin], operation_timeout=ADMIN_TIMEOUT,
                                  request_timeout=ADMIN_TIMEOUT)[t_admin]
    try:
        fut.result(timeout=ADMIN_TIMEOUT)
    except Exception as e:
        raise Failure(f"delete_topics({t_admin}) failed: {e!r}")
    deadline = time.monotonic() + 15
    while t_admin in env.topic_partitions():
        if time.monotonic() > deadline:
            raise Failure(f"{t_admin} still listed 15s after delete_topics")
        time.sleep(0.2)
    check(True, "deleted topic gone")
    log(f"deleted {t_admin}")
    return t_big


def test_bulk(env, count):
    topic = topic_name("bulk")
    env.create_topics([NewTopic(topic, num_partitions=BULK_PARTITIONS, replication_factor=1)])
    base_ts = now_ms() - 3_600_000
    records = []
    for i in range(count):
        rec = {
            "topic": topic,
            "key": f"key-{i % 997}-{i}".encode(),
            "value": f"value-{i}-".encode() + b"x" * (i % 50),
            # Duplicate header keys are legal and must keep their order.
            "headers": [("idx", str(i).encode()), ("kind", b"bulk"), ("kind", b"dup")],
            "timestamp": base_ts + i,
        }
        # Explicit partition for a third of them, keyed partitioner for the rest.
        if i % 3 == 0:
            rec["partition"] = (i // 3) % BULK_PARTITIONS
        records.append(rec)
    producer = env.producer(**{"queue.buffering.max.messages": 200000,
                               "batch.num.messages": 2000})
    t0 = time.monotonic()
    delivered = produce_all(producer, records)
    t1 = time.monotonic()
    counts = {}
    for m in delivered:
        counts[(m.topic(), m.partition())] = counts.get((m.topic(), m.partition()), 0) + 1
    check_eq(len(counts), BULK_PARTITIONS, "bulk: messages spread over all partitions")
    log(f"bulk: produced {count} in {t1 - t0:.2f}s, per partition {sorted(counts.values())}")

    consumer = env.consumer()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(BULK_PARTITIONS)])
    consumed = consume_exact(consumer, counts)
    t2 = time.monotonic()
    log(f"bulk: consumed {count} in {t2 - t1:.2f}s")

    # Watermarks agree with what was produced.
    for (t, p), n in counts.items():
        lo, hi = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
        check_eq((lo, hi), (0, n), f"bulk: watermarks of {t}[{p}]")
    consumer.close()
    verify_round_trip("bulk", records, delivered, consumed)


def test_compression(env):
    topics = {codec: topic_name(f"comp-{codec}") for codec in ("gzip", "snappy", "lz4", "zstd")}
    env.create_topics([NewTopic(t, num_partitions=2, replication_factor=1)
                       for t in topics.values()])
    base_ts = now_ms() - 60_000
    for codec, topic in topics.items():
        n = 3000
        records = [{
            "topic": topic,
            "key": f"k{i}".encode(),
            "value": (f"{codec} message {i} " * (1 + i % 20)).encode(),
            "headers": [("codec", codec.encode())],
            "timestamp": base_ts + i,
        } for i in range(n)]
        producer = env.producer(**{"compression.type": codec, "linger.ms": 20})
        delivered = produce_all(producer, records)
        counts = {}
        for m in delivered:
            counts[(m.topic(), m.partition())] = counts.get((m.topic(), m.partition()), 0) + 1
        consumer = env.consumer()
        consumer.assign([TopicPartition(t, p, 0) for (t, p) in counts])
        consumed = consume_exact(consumer, counts, timeout=60)
        consumer.close()
        verify_round_trip(f"compression {codec}", records, delivered, consumed)
        log(f"compression {codec}: {n} messages round-tripped")


def test_large_message(env, t_big):
    t_small = topic_name("default")
    env.create_topics([NewTopic(t_small, num_partitions=1, replication_factor=1)])
    payload = os.urandom(1024 * 1024)
    producer = env.producer(**{"message.max.bytes": 4_000_000, "linger.ms": 0})

    # Accepted on the topic with max.message.bytes=2000000.
    delivered = produce_all(producer, [{"topic": t_big, "partition": 1, "key": b"big",
                                        "value": payload}])
    check_eq(delivered[0].offset(), 0, "1 MiB message offset")
    consumer = env.consumer(**{"max.partition.fetch.bytes": 4 * 1024 * 1024,
                               "fetch.max.bytes": 8 * 1024 * 1024})
    consumer.assign([TopicPartition(t_big, 1, 0)])
    got = consume_exact(consumer, {(t_big, 1): 1}, timeout=30)
    consumer.close()
    check(got[(t_big, 1)][0].value() == payload, "1 MiB message content round-trips")
    log("1 MiB message accepted on raised-limit topic")

    # Rejected on a default topic (default max.message.bytes is 1048588).
    result = {}

    def cb(err, msg):
        result["err"] = err

    try:
        producer.produce(t_small, key=b"big", value=payload, partition=0, on_delivery=cb)
        producer.flush(60)
    except KafkaException as e:  # client-side rejection is acceptable too
        result["err"] = e.args[0]
    except BufferError as e:
        raise Failure(f"unexpected BufferError producing 1 MiB message: {e}")
    err = result.get("err", "no delivery report")
    check(err is not None, f"1 MiB message to default topic {t_small} was accepted; "
          "expected MSG_SIZE_TOO_LARGE")
    check(isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE,
          f"1 MiB message to default topic: expected MSG_SIZE_TOO_LARGE, got {err!r}")
    log(f"1 MiB message rejected on default topic: {err.str()}")
    consumer = env.consumer()
    lo, hi = consumer.get_watermark_offsets(TopicPartition(t_small, 0), timeout=10)
    consumer.close()
    check_eq(hi, 0, "default topic high watermark after rejected message")


def test_log_append_time(env):
    topic = topic_name("lat")
    env.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                config={"message.timestamp.type": "LogAppendTime"})])
    check_eq(env.describe(topic).get("message.timestamp.type"), "LogAppendTime",
             "message.timestamp.type config")
    old_ts = now_ms() - 86_400_000
    records = [{"topic": topic, "partition": 0, "key": f"k{i}".encode(),
                "value": f"v{i}".encode(), "timestamp": old_ts + i} for i in range(10)]
    before = now_ms()
    delivered = produce_all(env.producer(), records)
    after = now_ms()
    for m in delivered:
        ts_type, ts = m.timestamp()
        check(ts_type == TIMESTAMP_LOG_APPEND_TIME and before - 5000 <= ts <= after + 5000,
              f"delivery report timestamp should be LogAppendTime near now "
              f"[{before}, {after}], got type={ts_type} ts={ts}")
    consumer = env.consumer()
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = consume_exact(consumer, {(topic, 0): 10}, timeout=30)[(topic, 0)]
    consumer.close()
    for m in got:
        ts_type, ts = m.timestamp()
        check_eq(ts_type, TIMESTAMP_LOG_APPEND_TIME,
                 f"LogAppendTime topic: timestamp type of offset {m.offset()}")
        check(abs(ts - now_ms()) < 120_000 and before - 5000 <= ts <= after + 5000,
              f"LogAppendTime topic: timestamp {ts} of offset {m.offset()} should be the "
              f"append time (between {before} and {after}), not the supplied {old_ts + m.offset()}")
    log("LogAppendTime topic reports broker append time")


def test_offsets_for_times(env):
    topic = topic_name("oft")
    env.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    base = (now_ms() // 1000) * 1000 - 3_600_000
    records = [{"topic": topic, "partition": 0, "value": f"v{i}".encode(),
                "timestamp": base + i * 1000} for i in range(100)]
    produce_all(env.producer(**{"linger.ms": 50}), records)
    consumer = env.consumer()
    cases = [
        (base - 10_000, 0),
        (base, 0),
        (base + 1, 1),
        (base + 49_500, 50),
        (base + 50_000, 50),
        (base + 99_000, 99),
        (base + 200_000, -1),  # after the last message: no offset (-1)
    ]
    # One lookup per call: a request may name each partition only once.
    for ts, want in cases:
        tp = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=15)[0]
        check(tp.error is None, f"offsets_for_times({ts}) error: {tp.error}")
        check_eq(tp.offset, want, f"offsets_for_times(base{ts - base:+d}ms)")
    consumer.close()
    log("offsets_for_times ok")


def test_long_poll(env):
    topic = topic_name("longpoll")
    env.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    consumer = env.consumer(**{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    # The partition is empty, so offset 0 is its end.
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = env.producer(**{"linger.ms": 0})
    producer.list_topics(topic, timeout=10)  # warm up connection and metadata
    times = {}

    def deliver_cb(err, msg):
        times["delivered"] = time.monotonic()
        times["err"] = err

    def produce_later():
        time.sleep(1.0)
        times["produce"] = time.monotonic()
        producer.produce(topic, key=b"lp", value=b"long-poll", partition=0, on_delivery=deliver_cb)
        producer.flush(10)

    thread = threading.Thread(target=produce_later, daemon=True)
    thread.start()
    received = None
    deadline = time.monotonic() + 15
    while received is None and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise Failure(f"long poll consumer error: {msg.error()}")
        received = time.monotonic()
        check_eq(msg.value(), b"long-poll", "long poll message value")
        check("produce" in times, "long poll: message received before it was produced?!")
    thread.join(15)
    consumer.close()
    check(received is not None, "long poll: message never received within 15s")
    check("delivered" in times and times["err"] is None,
          f"long poll: delivery failed: {times.get('err')}")
    latency = received - times["delivered"]
    since_produce = received - times["produce"]
    log(f"long poll: produce->receive {since_produce * 1000:.1f} ms, "
        f"delivery-callback->receive {latency * 1000:.1f} ms")
    print(f"LONG_POLL_LATENCY_MS {latency * 1000:.1f}", flush=True)
    # Behaviour, not speed: well inside the 5 s wait means the produce woke the
    # fetch (without the wake-up it would sit out fetch.wait.max.ms).
    check(latency < 2.5, f"long poll: consumer got the message {latency:.3f}s after delivery "
          "(must be well inside fetch.wait.max.ms=5000: the broker did not wake the fetch)")


def test_group(env, protocol, count=300):
    """Three consumers of one group (of `protocol`: classic or consumer) read
    every message once, committing each; the committed offsets then cover the
    topic."""
    topic = topic_name(f"group-{protocol}")
    futures = env.admin.create_topics([NewTopic(topic, 3, 1)])
    futures[topic].result(timeout=30)
    producer = Producer(env.common(acks="all"))
    for i in range(count):
        producer.produce(topic, value=f"g{i}".encode(), partition=i % 3)
    check(producer.flush(60) == 0, "group topic produced")
    group = f"strata-e2e-group-{protocol}-{SUFFIX}"
    consumers = [Consumer(env.common(**{"group.id": group, "auto.offset.reset": "earliest",
                                        "enable.auto.commit": False, "group.protocol": protocol}))
                 for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + 120
    while len(seen) < count and time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                seen.add(m.value())
                c.commit(message=m, asynchronous=False)
    check_eq(len(seen), count, f"messages consumed by the {protocol} group")
    parts = consumers[0].committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
    check_eq(sum(max(tp.offset, 0) for tp in parts), count, "committed offsets cover the topic")
    for c in consumers:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="host:port of the broker")
    ap.add_argument("--bulk-messages", type=int, default=100_000)
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="whole-run watchdog in seconds")
    args = ap.parse_args()

    def watchdog():
        print(f"FAIL {NAME}: watchdog: run exceeded {args.timeout}s", flush=True)
        os._exit(3)

    timer = threading.Timer(args.timeout, watchdog)
    timer.daemon = True
    timer.start()

    log(f"confluent-kafka {version()}, librdkafka {libversion()[0]}, "
        f"bootstrap {args.bootstrap}, suffix {SUFFIX}")
    section = "setup"
    try:
        env = Env(args.bootstrap)
        try:
            md = env.admin.list_topics(timeout=15)
        except KafkaException as e:
            raise Failure(f"cannot fetch metadata from {args.bootstrap}: {e!r}")
        check(len(md.brokers) >= 1, f"metadata lists no brokers: {md.brokers}")
        log(f"brokers: {[str(b) for b in md.brokers.values()]}, controller {md.controller_id}")
        section = "admin"
        t_big = test_admin(env)
        section = "bulk"
        test_bulk(env, args.bulk_messages)
        section = "compression"
        test_compression(env)
        section = "large-message"
        test_large_message(env, t_big)
        section = "log-append-time"
        test_log_append_time(env)
        section = "offsets-for-times"
        test_offsets_for_times(env)
        section = "long-poll"
        test_long_poll(env)
        section = "group"
        test_group(env, "classic")
        section = "group (consumer protocol)"
        test_group(env, "consumer")
    except Failure as e:
        print(f"FAIL {NAME} [{section}]: {e}", flush=True)
        return 1
    except Exception as e:  # unexpected client exception
        traceback.print_exc()
        print(f"FAIL {NAME} [{section}]: {type(e).__name__}: {e}", flush=True)
        return 2
    print(f"OK {NAME}: {CHECKS} checks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
