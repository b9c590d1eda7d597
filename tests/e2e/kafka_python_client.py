#!/usr/bin/env python3
"""End-to-end test of a Strata broker with kafka-python (pure-Python client).

Usage: python tests/e2e/kafka_python_client.py --bootstrap 127.0.0.1:PORT

Exits 0 and prints "OK kafka_python_client: <n> checks" on success; prints
"FAIL kafka_python_client: ..." and exits non-zero on the first failure.

Consumers use group_id=None with assign()/seek_to_beginning(): the broker has
no group coordination yet. The producer keeps kafka-python's defaults apart
from acks='all'; note that since kafka-python 3.0 the default is an
idempotent producer (InitProducerId + sequence numbers).
"""

import argparse
import logging
import os
import sys
import threading
import time
import traceback
import uuid

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

NAME = "kafka_python_client"
SUFFIX = uuid.uuid4().hex[:10]
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
    return f"e2e-kp-{label}-{SUFFIX}"


def now_ms():
    return int(time.time() * 1000)


def describe(admin, topic, config_filter="all"):
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                 config_filter=config_filter)
    try:
        configs = res["topic"][topic]
    except KeyError:
        raise Failure(f"describe_configs({topic}) returned no entry: {res!r}")
    return {k: v.get("value") for k, v in configs.items()}


def test_admin(admin):
    t_plain = topic_name("admin")
    t_custom = topic_name("custom")
    admin.create_topics({
        t_plain: {"num_partitions": 3, "replication_factor": 1},
        t_custom: {"num_partitions": 2, "replication_factor": 1,
                   "configs": {"retention.ms": "123456"}},
    }, wait_for_metadata=True)
    check(True, "create_topics")
    topics = {t["name"]: t for t in admin.describe_topics([t_plain, t_custom])}
    check_eq(len(topics[t_plain]["partitions"]), 3, f"{t_plain} partition count")
    check_eq(len(topics[t_custom]["partitions"]), 2, f"{t_custom} partition count")
    check(t_plain in admin.list_topics(), f"{t_plain} in list_topics")
    log(f"created {t_plain}, {t_custom}")

    cfg = describe(admin, t_plain)
    check_eq(cfg.get("retention.ms"), "604800000", f"{t_plain} retention.ms")
    check_eq(cfg.get("cleanup.policy"), "delete", f"{t_plain} cleanup.policy")
    cfg = describe(admin, t_custom)
    check_eq(cfg.get("retention.ms"), "123456", f"{t_custom} retention.ms")
    # The default filter returns only non-default ("modified") configs, which
    # relies on the broker reporting each config's source correctly.
    modified = describe(admin, t_custom, config_filter="modified")
    check_eq(modified.get("retention.ms"), "123456",
             f"{t_custom} modified configs include the override")
    check("cleanup.policy" not in modified,
          f"{t_custom} modified configs should not include defaults, got {sorted(modified)}")
    log("describe_configs ok")

    admin.delete_topics([t_plain, t_custom])
    check(True, "delete_topics")
    deadline = time.monotonic() + 15
    while True:
        listed = set(admin.list_topics())
        if t_plain not in listed and t_custom not in listed:
            break
        if time.monotonic() > deadline:
            raise Failure(f"deleted topics still listed after 15s: {listed & {t_plain, t_custom}}")
        time.sleep(0.2)
    check(True, "deleted topics gone")
    log("delete_topics ok")


def test_produce_consume(admin, bootstrap, count, idempotence=None):
    topic = topic_name("data")
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}},
                        wait_for_metadata=True)
    extra = {} if idempotence is None else {"enable_idempotence": idempotence}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                             client_id=f"strata-e2e-{NAME}", **extra)
    log(f"producer idempotence={producer.config['enable_idempotence']}, "
        f"api_version={producer.config['api_version']}")
    base_ts = (now_ms() // 1000) * 1000 - 3_600_000
    records = []
    futures = []
    t0 = time.monotonic()
    for i in range(count):
        rec = {
            "key": f"key-{i}".encode(),
            "value": f"value-{i}-".encode() + b"p" * (i % 40),
            "headers": [("idx", str(i).encode()), ("src", b"kafka-python")],
            "timestamp_ms": base_ts + i * 10,
        }
        records.append(rec)
        futures.append(producer.send(topic, **rec))
    producer.flush(timeout=120)
    metas = []
    for i, fut in enumerate(futures):
        try:
            metas.append(fut.get(timeout=60))
        except Exception as e:
            raise Failure(f"send #{i} failed: {type(e).__name__}: {e}")
    producer.close(timeout=10)
    log(f"produced {count} in {time.monotonic() - t0:.2f}s")

    by_part = {}
    for i, m in enumerate(metas):
        by_part.setdefault(m.partition, []).append((m.offset, i))
    check_eq(sorted(by_part), [0, 1, 2], "messages spread over all 3 partitions")
    for p, entries in by_part.items():
        entries.sort()
        check_eq([o for o, _ in entries], list(range(len(entries))),
                 f"partition {p} offsets contiguous from 0")
        idxs = [i for _, i in entries]
        check(idxs == sorted(idxs), f"partition {p}: offsets follow send order")

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id=f"strata-e2e-{NAME}")
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = {p: [] for p in range(3)}
    t1 = time.monotonic()
    deadline = t1 + 120
    while sum(len(v) for v in got.values()) < count:
        if time.monotonic() > deadline:
            raise Failure(f"consume timed out: have { {p: len(v) for p, v in got.items()} }")
        for tp, recs in consumer.poll(timeout_ms=1000, max_records=5000).items():
            check_eq(tp.topic, topic, "polled topic")
            got[tp.partition].extend(recs)
    log(f"consumed {count} in {time.monotonic() - t1:.2f}s")

    for p, entries in by_part.items():
        recs = got[p]
        check_eq(len(recs), len(entries), f"partition {p} record count")
        check_eq([r.offset for r in recs], [o for o, _ in entries], f"partition {p} offsets")
        for (off, i), r in zip(entries, recs):
            want = records[i]
            if (r.key, r.value) != (want["key"], want["value"]):
                raise Failure(f"partition {p} offset {off}: got ({r.key!r}, {r.value!r:.60}), "
                              f"want ({want['key']!r}, {want['value']!r:.60})")
            if list(r.headers) != want["headers"]:
                raise Failure(f"partition {p} offset {off}: headers {r.headers!r} != {want['headers']!r}")
            if (r.timestamp_type, r.timestamp) != (0, want["timestamp_ms"]):
                raise Failure(f"partition {p} offset {off}: timestamp ({r.timestamp_type}, "
                              f"{r.timestamp}) != (0 CreateTime, {want['timestamp_ms']})")
        check(True, f"partition {p} content")

    # List offsets.
    begin = consumer.beginning_offsets(tps)
    end = consumer.end_offsets(tps)
    for tp in tps:
        check_eq(begin[tp], 0, f"beginning_offsets {tp.partition}")
        check_eq(end[tp], len(by_part[tp.partition]), f"end_offsets {tp.partition}")
    # offsets_for_times: for each partition, ask for the timestamp of the
    # record at a known offset, and 1 ms past it.
    for p, entries in by_part.items():
        tp = TopicPartition(topic, p)
        mid_off, mid_i = entries[len(entries) // 2]
        ts = records[mid_i]["timestamp_ms"]
        res = consumer.offsets_for_times({tp: ts})[tp]
        check(res is not None and res.offset == mid_off and res.timestamp == ts,
              f"offsets_for_times(p{p}, {ts}): want offset {mid_off} ts {ts}, got {res}")
        res = consumer.offsets_for_times({tp: ts + 1})[tp]
        nxt_off, nxt_i = entries[len(entries) // 2 + 1]
        check(res is not None and res.offset == nxt_off,
              f"offsets_for_times(p{p}, {ts + 1}): want offset {nxt_off}, got {res}")
        res = consumer.offsets_for_times({tp: base_ts - 1000})[tp]
        check(res is not None and res.offset == 0,
              f"offsets_for_times(p{p}, before first): want offset 0, got {res}")
        res = consumer.offsets_for_times({tp: now_ms() + 3_600_000})[tp]
        check(res is None, f"offsets_for_times(p{p}, future): want None, got {res}")
    consumer.close()
    log("list offsets ok")


def test_group(admin, bootstrap, count=300):
    """A group of two consumers reads every message once, committing; the
    committed offsets cover the topic."""
    topic = topic_name("group")
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(count):
        producer.send(topic, value=f"g{i}".encode(), partition=i % 2)
    producer.flush()
    producer.close()
    group = f"strata-e2e-group-{SUFFIX}"
    consumers = [KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=False)
                 for _ in range(2)]
    seen = set()
    deadline = time.monotonic() + 120
    while len(seen) < count and time.monotonic() < deadline:
        for c in consumers:
            batch = c.poll(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    seen.add(r.value)
            if batch:
                c.commit()
    check_eq(len(seen), count, "messages consumed by the group")
    tps = [TopicPartition(topic, p) for p in range(2)]
    committed = sum((consumers[0].committed(tp) or 0) for tp in tps)
    check_eq(committed, count, "committed offsets cover the topic")
    for c in consumers:
        c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="host:port of the broker")
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=600.0, help="whole-run watchdog (s)")
    ap.add_argument("--debug", action="store_true", help="kafka-python debug logging")
    ap.add_argument("--no-idempotence", action="store_true",
                    help="diagnosis only: producer with enable_idempotence=False "
                         "(the default run keeps kafka-python's idempotent default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def watchdog():
        print(f"FAIL {NAME}: watchdog: run exceeded {args.timeout}s", flush=True)
        os._exit(3)

    timer = threading.Timer(args.timeout, watchdog)
    timer.daemon = True
    timer.start()

    log(f"kafka-python {kafka.__version__}, bootstrap {args.bootstrap}, suffix {SUFFIX}")
    section = "setup"
    try:
        admin = KafkaAdminClient(bootstrap_servers=args.bootstrap,
                                 client_id=f"strata-e2e-{NAME}")
        section = "admin"
        test_admin(admin)
        section = "produce-consume"
        test_produce_consume(admin, args.bootstrap, args.messages,
                             False if args.no_idempotence else None)
        section = "group"
        test_group(admin, args.bootstrap)
        admin.close()
    except Failure as e:
        print(f"FAIL {NAME} [{section}]: {e}", flush=True)
        return 1
    except Exception as e:
        traceback.print_exc()
        print(f"FAIL {NAME} [{section}]: {type(e).__name__}: {e}", flush=True)
        return 2
    print(f"OK {NAME}: {CHECKS} checks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
