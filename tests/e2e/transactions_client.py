#!/usr/bin/env python3
"""Transactions end to end: confluent-kafka's transactional producer and
consumers, kafka-python 3's transaction admin (KIP-664).

Usage:
  transactions_client.py --bootstrap HOST:PORT
      commits and aborts interleaved across partitions, read_committed and
      read_uncommitted views; list_transactions, describe_transactions,
      describe_producers of an open transaction; abort_transaction of a
      hanging one; consume-transform-produce with send_offsets_to_transaction
      across a restart of the consumer and producer.
  transactions_client.py --bootstrap HOST:PORT --expiry-ms N
      against a broker started with transactional.id.expiration.ms and
      producer.id.expiration.ms of N: an idle transactional id and an idle
      producer disappear; prints "GONE_ID <id>" and "GONE_PRODUCER <topic>
      <partition> <pid>" for --check-gone to check after a restart.
  transactions_client.py --bootstrap HOST:PORT --check-gone-id ID
      --check-gone-producer TOPIC:PARTITION:PID
      the expired ones are still gone.

Exits 0 and prints "OK transactions_client: <n> checks" on success.
"""

import argparse
import sys
import time
import traceback
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.admin import AbortTransactionSpec, NewTopic, TransactionState
from kafka.errors import TransactionalIdNotFoundError

from checks import Checks, Failure

NAME = "transactions_client"
SUFFIX = uuid.uuid4().hex[:10]
CHECKS = Checks(NAME)
log, check, check_eq, wait_for = CHECKS.log, CHECKS.check, CHECKS.check_eq, CHECKS.wait_for


def create_topic(admin, name, partitions):
    admin.create_topics([NewTopic(name, partitions, 1)])
    wait_for(f"{name} in metadata", lambda: name in admin.list_topics())


def txn_producer(bootstrap, tid, timeout_ms=60000):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": tid,
        "transaction.timeout.ms": timeout_ms,
        "linger.ms": 5,
    })
    p.init_transactions(30)
    return p


def read_all(bootstrap, topic, partitions, isolation, timeout=30.0):
    """Every value of the topic's partitions up to their end, per isolation."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
    })
    ends = {}
    for p in range(partitions):
        _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = high
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    done = {p for p, e in ends.items() if e == 0}
    deadline = time.monotonic() + timeout
    while len(done) < partitions:
        if time.monotonic() > deadline:
            raise Failure(f"reading {topic} ({isolation}) did not reach {ends}")
        m = c.poll(0.5)
        if m is None:
            # read_committed: the end is the LSO; the last records may be markers.
            for p in range(partitions):
                pos = c.position([TopicPartition(topic, p)])[0].offset
                if pos >= ends[p]:
                    done.add(p)
            continue
        if m.error():
            continue
        values.append(m.value().decode())
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return values


def lso(bootstrap, topic, partition):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"lso-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
    })
    _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.close()
    return high


def listed(admin, tid):
    rows = [t for ts in admin.list_transactions().values() for t in ts if t.transactional_id == tid]
    return rows[0] if rows else None


def test_commits_and_aborts(env):
    bootstrap, admin = env["bootstrap"], env["admin"]
    topic = f"txpy-mixed-{SUFFIX}"
    create_topic(admin, topic, 3)
    p = txn_producer(bootstrap, f"txpy-mixed-{SUFFIX}")
    committed, everything = [], []
    for n in range(6):
        p.begin_transaction()
        values = [f"t{n}-m{i}" for i in range(9)]
        for i, v in enumerate(values):
            p.produce(topic, v.encode(), partition=i % 3)
        everything += values
        if n % 3 == 2:
            # librdkafka purges what is still queued on abort: send it first.
            p.flush(10)
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)
            committed += values
    p.flush(10)
    check_eq(sorted(read_all(bootstrap, topic, 3, "read_committed")), sorted(committed),
             "read_committed sees exactly the committed messages")
    check_eq(sorted(read_all(bootstrap, topic, 3, "read_uncommitted")), sorted(everything),
             "read_uncommitted sees every message")
    log(f"6 transactions, {len(committed)} committed messages of {len(everything)}")


def test_admin_views_an_open_transaction(env):
    bootstrap, admin = env["bootstrap"], env["admin"]
    topic = f"txpy-open-{SUFFIX}"
    tid = f"txpy-open-{SUFFIX}"
    create_topic(admin, topic, 3)
    p = txn_producer(bootstrap, tid)
    p.begin_transaction()
    firsts = {}

    def on_delivery(err, msg):
        if err is None:
            firsts.setdefault(msg.partition(), msg.offset())

    for i in range(6):
        p.produce(topic, f"open-{i}".encode(), partition=i % 2, on_delivery=on_delivery)
    p.flush(10)
    check_eq(sorted(firsts), [0, 1], "the open transaction wrote to partitions 0 and 1")

    row = listed(admin, tid)
    check(row is not None, f"list_transactions lists {tid}")
    check_eq(row.state, TransactionState.ONGOING, "listed state")
    ongoing = [t.transactional_id for ts in admin.list_transactions(state_filters=["Ongoing"]).values()
               for t in ts]
    check(tid in ongoing, "the Ongoing filter keeps it")
    done = [t.transactional_id for ts in admin.list_transactions(state_filters=["CompleteCommit"]).values()
            for t in ts]
    check(tid not in done, "the CompleteCommit filter drops it")
    by_pid = [t.transactional_id for ts in admin.list_transactions(producer_id_filters=[row.producer_id]).values()
              for t in ts]
    check_eq(by_pid, [tid], "the producer id filter keeps only it")
    by_pattern = [t.transactional_id for ts in admin.list_transactions(
        transactional_id_pattern=f"txpy-open-{SUFFIX[:4]}.*").values() for t in ts]
    check_eq(by_pattern, [tid], "the pattern filter (a whole-id match) keeps only it")
    none = [t for ts in admin.list_transactions(transactional_id_pattern="open-").values() for t in ts]
    check_eq(none, [], "a pattern matching part of the id keeps nothing")

    desc = admin.describe_transactions([tid])[tid]
    check_eq(desc.state, TransactionState.ONGOING, "described state")
    check_eq(desc.producer_id, row.producer_id, "described producer id")
    check_eq(desc.topic_partitions, {KTopicPartition(topic, 0), KTopicPartition(topic, 1)},
             "described partitions")
    check_eq(desc.transaction_timeout_ms, 60000, "described timeout")
    check(desc.transaction_start_time_ms > 0, "described start time")
    try:
        admin.describe_transactions([f"never-{SUFFIX}"])
        check(False, "an unknown id is described")
    except TransactionalIdNotFoundError:
        check(True, "an unknown id is TRANSACTIONAL_ID_NOT_FOUND")

    states = admin.describe_producers([KTopicPartition(topic, 0), KTopicPartition(topic, 2)])
    mine = [s for s in states[KTopicPartition(topic, 0)].active_producers if s.producer_id == row.producer_id]
    check_eq(len(mine), 1, "describe_producers shows the producer on partition 0")
    check_eq(mine[0].current_transaction_start_offset, firsts[0], "its open transaction's first offset")
    check_eq(mine[0].producer_epoch, desc.producer_epoch, "its epoch")
    check_eq(mine[0].last_sequence, 2, "its last sequence (3 records)")
    check_eq(states[KTopicPartition(topic, 2)].active_producers, [], "partition 2 has no producer")

    p.commit_transaction(30)
    wait_for("the commit completes", lambda: admin.describe_transactions([tid])[tid].state
             == TransactionState.COMPLETE_COMMIT)
    ongoing = [t.transactional_id for ts in admin.list_transactions(state_filters=["Ongoing"]).values()
               for t in ts]
    check(tid not in ongoing, "no longer Ongoing")
    after = [s for s in admin.describe_producers([KTopicPartition(topic, 0)])[KTopicPartition(topic, 0)]
             .active_producers if s.producer_id == row.producer_id]
    check_eq(after[0].current_transaction_start_offset, -1, "no open transaction after the commit")
    log("list/describe_transactions and describe_producers of an open transaction")


def test_abort_a_hanging_transaction(env):
    """kafka-transactions' abort: WriteTxnMarkers straight to the partition."""
    bootstrap, admin = env["bootstrap"], env["admin"]
    topic = f"txpy-hang-{SUFFIX}"
    create_topic(admin, topic, 1)
    p = txn_producer(bootstrap, f"txpy-hang-{SUFFIX}", timeout_ms=600000)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, f"hang-{i}".encode(), partition=0)
    p.flush(10)
    tp = KTopicPartition(topic, 0)
    check_eq(lso(bootstrap, topic, 0), 0, "the open transaction holds the LSO at its first offset")
    state = admin.describe_producers([tp])[tp].active_producers[0]
    check_eq(state.current_transaction_start_offset, 0, "the hanging transaction starts at 0")
    admin.abort_transaction(AbortTransactionSpec(tp, state.producer_id, state.producer_epoch,
                                                 state.coordinator_epoch))
    check_eq(lso(bootstrap, topic, 0), 4, "the LSO moves past the abort marker")
    check_eq(read_all(bootstrap, topic, 1, "read_committed"), [], "the aborted records are not read")
    after = admin.describe_producers([tp])[tp].active_producers[0]
    check_eq(after.current_transaction_start_offset, -1, "the partition has no open transaction")
    log("abort_transaction of a hanging transaction")


def test_consume_transform_produce(env, count=400):
    bootstrap, admin = env["bootstrap"], env["admin"]
    src, dst = f"txpy-in-{SUFFIX}", f"txpy-out-{SUFFIX}"
    group, tid = f"txpy-eos-{SUFFIX}", f"txpy-eos-{SUFFIX}"
    create_topic(admin, src, 2)
    create_topic(admin, dst, 2)
    plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        plain.produce(src, f"in-{i}".encode(), partition=i % 2)
    plain.flush(30)

    def instance():
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        })
        c.subscribe([src])
        return c, txn_producer(bootstrap, tid)

    def run(c, p, limit):
        done = 0
        deadline = time.monotonic() + 60
        while done < limit:
            if time.monotonic() > deadline:
                raise Failure(f"consume-transform-produce stalled after {done}")
            msgs = c.consume(50, 1.0)
            msgs = [m for m in msgs if not m.error()]
            if not msgs:
                continue
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, m.value().decode().replace("in-", "out-").encode(), partition=m.partition())
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
            p.commit_transaction(30)
            done += len(msgs)
        return done

    c, p = instance()
    first = run(c, p, count // 2)
    # An aborted transaction in between: its output never appears, its
    # offsets are not committed.
    msgs = [m for m in c.consume(20, 5.0) if not m.error()]
    p.begin_transaction()
    for m in msgs:
        p.produce(dst, b"aborted", partition=m.partition())
    p.flush(10)
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    p.abort_transaction(30)
    c.close()
    c, p = instance()
    rest = run(c, p, count - first)
    c.close()
    out = read_all(bootstrap, dst, 2, "read_committed")
    check_eq(sorted(out), sorted(f"out-{i}" for i in range(count)),
             "every input appears exactly once in the output")
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    positions = reader.committed([TopicPartition(src, 0), TopicPartition(src, 1)], timeout=10)
    reader.close()
    check_eq(sorted(tp.offset for tp in positions), [count // 2, count // 2],
             "the group's offsets are the inputs' ends")
    log(f"consume-transform-produce: {first} + {rest} messages, a restart and an abort between")


def test_expiry(env, expiry_ms):
    bootstrap, admin = env["bootstrap"], env["admin"]
    topic = f"txpy-expire-{SUFFIX}"
    tid = f"txpy-expire-{SUFFIX}"
    create_topic(admin, topic, 1)
    p = txn_producer(bootstrap, tid)
    p.begin_transaction()
    p.produce(topic, b"one", partition=0)
    p.commit_transaction(30)
    idem = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    idem.produce(topic, b"two", partition=0)
    idem.flush(10)
    tp = KTopicPartition(topic, 0)
    pids = sorted(s.producer_id for s in admin.describe_producers([tp])[tp].active_producers)
    check_eq(len(pids), 2, "two producers on the partition")
    check(listed(admin, tid) is not None, "the transactional id is listed")
    limit = max(30.0, 5 * expiry_ms / 1000)
    wait_for("the idle producers to expire",
             lambda: admin.describe_producers([tp])[tp].active_producers == [], limit)

    def gone():
        try:
            admin.describe_transactions([tid])
            return False
        except TransactionalIdNotFoundError:
            return True

    wait_for("the idle transactional id to expire", gone, limit)
    check(listed(admin, tid) is None, "the expired id is not listed")
    check(True, "the idle producers and the transactional id expired")
    print(f"GONE_ID {tid}", flush=True)
    for pid in pids:
        print(f"GONE_PRODUCER {topic} 0 {pid}", flush=True)
    idem.flush(1)
    log(f"idle ids expired within {limit:.0f}s (expiry {expiry_ms} ms)")


def test_still_gone(env, ids, producers):
    admin = env["admin"]
    for tid in ids:
        try:
            admin.describe_transactions([tid])
            check(False, f"{tid} came back after the restart")
        except TransactionalIdNotFoundError:
            check(True, f"{tid} still gone")
        check(listed(admin, tid) is None, f"{tid} not listed after the restart")
    for spec in producers:
        topic, partition, pid = spec.rsplit(":", 2)
        tp = KTopicPartition(topic, int(partition))
        active = [s.producer_id for s in admin.describe_producers([tp])[tp].active_producers]
        check(int(pid) not in active, f"producer {pid} came back on {tp} after the restart")
    log(f"{len(ids)} ids and {len(producers)} producers still gone after the restart")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--expiry-ms", type=int)
    ap.add_argument("--check-gone-id", action="append", default=[])
    ap.add_argument("--check-gone-producer", action="append", default=[])
    args = ap.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=30000)
    env = {"bootstrap": args.bootstrap, "admin": admin}
    try:
        if args.check_gone_id or args.check_gone_producer:
            test_still_gone(env, args.check_gone_id, args.check_gone_producer)
        elif args.expiry_ms is not None:
            test_expiry(env, args.expiry_ms)
        else:
            test_commits_and_aborts(env)
            test_admin_views_an_open_transaction(env)
            test_abort_a_hanging_transaction(env)
            test_consume_transform_produce(env)
    except (Failure, KafkaException) as e:
        traceback.print_exc()
        print(f"FAIL {NAME}: {e}", flush=True)
        sys.exit(1)
    finally:
        admin.close()
    print(f"OK {NAME}: {CHECKS.count} checks", flush=True)


if __name__ == "__main__":
    main()
