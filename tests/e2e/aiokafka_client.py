#!/usr/bin/env python3
"""End-to-end test of a Strata broker with aiokafka (asyncio client).

Usage: python tests/e2e/aiokafka_client.py --bootstrap 127.0.0.1:PORT

Exits 0 and prints "OK aiokafka_client: <n> checks" on success; prints
"FAIL aiokafka_client: ..." and exits non-zero on the first failure.

Two runs of 10000 messages each (uncompressed, then compression_type='gzip'),
produced with acks='all' and read back with group_id=None plus
assign()/seek_to_beginning() (the broker has no group coordination yet).
"""

import argparse
import asyncio
import sys
import time
import traceback
import uuid

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

NAME = "aiokafka_client"
SUFFIX = uuid.uuid4().hex[:10]
PARTITIONS = 3
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
    return f"e2e-aio-{label}-{SUFFIX}"


async def create_topic(bootstrap, topic, partitions):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"strata-e2e-{NAME}")
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(topic, partitions, 1)])
        for entry in resp.to_object().get("topic_errors", []):
            check_eq(entry.get("error_code"), 0, f"create_topics({entry.get('topic')}) error code")
        deadline = time.monotonic() + 15
        while topic not in await admin.list_topics():
            if time.monotonic() > deadline:
                raise Failure(f"{topic} not listed 15s after create_topics")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def run_once(bootstrap, label, count, compression):
    topic = topic_name(label)
    await create_topic(bootstrap, topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                compression_type=compression, linger_ms=5,
                                client_id=f"strata-e2e-{NAME}")
    await producer.start()
    base_ts = int(time.time() * 1000) - 600_000
    records = []
    futures = []
    t0 = time.monotonic()
    try:
        for i in range(count):
            rec = {
                "key": f"{label}-key-{i}".encode(),
                "value": (f"{label} value {i} " * (1 + i % 8)).encode(),
                "headers": [("idx", str(i).encode())],
                "timestamp_ms": base_ts + i,
            }
            records.append(rec)
            futures.append(await producer.send(topic, **rec))
        await producer.flush()
        metas = []
        for i, fut in enumerate(futures):
            try:
                metas.append(await asyncio.wait_for(fut, 60))
            except Exception as e:
                raise Failure(f"{label}: send #{i} failed: {type(e).__name__}: {e}")
    finally:
        await producer.stop()
    log(f"{label}: produced {count} (compression={compression}) in {time.monotonic() - t0:.2f}s")

    by_part = {}
    for i, m in enumerate(metas):
        by_part.setdefault(m.partition, []).append((m.offset, i))
    check_eq(sorted(by_part), list(range(PARTITIONS)), f"{label}: partitions with data")
    for p, entries in by_part.items():
        entries.sort()
        check_eq([o for o, _ in entries], list(range(len(entries))),
                 f"{label}: partition {p} offsets contiguous from 0")
        idxs = [i for _, i in entries]
        check(idxs == sorted(idxs), f"{label}: partition {p} offsets follow send order")

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"strata-e2e-{NAME}")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = {p: [] for p in range(PARTITIONS)}
        t1 = time.monotonic()
        deadline = t1 + 120
        while sum(len(v) for v in got.values()) < count:
            if time.monotonic() > deadline:
                raise Failure(f"{label}: consume timed out: have "
                              f"{ {p: len(v) for p, v in got.items()} } of {count}")
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, msgs in batch.items():
                got[tp.partition].extend(msgs)
        log(f"{label}: consumed {count} in {time.monotonic() - t1:.2f}s")

        for p, entries in by_part.items():
            msgs = got[p]
            check_eq(len(msgs), len(entries), f"{label}: partition {p} count")
            check_eq([m.offset for m in msgs], [o for o, _ in entries],
                     f"{label}: partition {p} offsets")
            for (off, i), m in zip(entries, msgs):
                want = records[i]
                if (m.key, m.value) != (want["key"], want["value"]):
                    raise Failure(f"{label}: p{p}@{off}: got ({m.key!r}, {m.value!r:.60}), "
                                  f"want ({want['key']!r}, {want['value']!r:.60})")
                if list(m.headers) != want["headers"]:
                    raise Failure(f"{label}: p{p}@{off}: headers {m.headers!r} != {want['headers']!r}")
                if (m.timestamp_type, m.timestamp) != (0, want["timestamp_ms"]):
                    raise Failure(f"{label}: p{p}@{off}: timestamp ({m.timestamp_type}, "
                                  f"{m.timestamp}) != (0 CreateTime, {want['timestamp_ms']})")
            check(True, f"{label}: partition {p} content")

        end = await consumer.end_offsets(tps)
        begin = await consumer.beginning_offsets(tps)
        for tp in tps:
            check_eq(end[tp], len(by_part[tp.partition]), f"{label}: end_offsets p{tp.partition}")
            check_eq(begin[tp], 0, f"{label}: beginning_offsets p{tp.partition}")
    finally:
        await consumer.stop()


async def run_group(bootstrap, count=300):
    """A group consumer reads every message once, committing; a second
    member of the group afterwards gets nothing more and sees the commits."""
    from aiokafka.structs import TopicPartition
    topic = topic_name("group")
    await create_topic(bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, f"g{i}".encode(), partition=i % 2)
    finally:
        await producer.stop()
    group = f"strata-e2e-group-{SUFFIX}"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = set()
    try:
        deadline = time.monotonic() + 120
        while len(seen) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    seen.add(r.value)
            if batch:
                await consumer.commit()
        check_eq(len(seen), count, "messages consumed by the group")
        committed = 0
        for p in range(2):
            committed += await consumer.committed(TopicPartition(topic, p)) or 0
        check_eq(committed, count, "committed offsets cover the topic")
    finally:
        await consumer.stop()


async def amain(args):
    await run_once(args.bootstrap, "plain", args.messages, None)
    await run_once(args.bootstrap, "gzip", args.messages, "gzip")
    await run_group(args.bootstrap)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="host:port of the broker")
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--timeout", type=float, default=600.0, help="whole-run timeout (s)")
    args = ap.parse_args()
    log(f"aiokafka {aiokafka.__version__}, bootstrap {args.bootstrap}, suffix {SUFFIX}")
    try:
        asyncio.run(asyncio.wait_for(amain(args), args.timeout))
    except Failure as e:
        print(f"FAIL {NAME}: {e}", flush=True)
        return 1
    except asyncio.TimeoutError:
        print(f"FAIL {NAME}: run exceeded {args.timeout}s", flush=True)
        return 3
    except Exception as e:
        traceback.print_exc()
        print(f"FAIL {NAME}: {type(e).__name__}: {e}", flush=True)
        return 2
    print(f"OK {NAME}: {CHECKS} checks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
