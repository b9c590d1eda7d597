"""Python clients through a three-broker Strata cluster (issue 13).

confluent-kafka and kafka-python see every broker; while an idempotent
producer (kafka-python) and a transactional producer (confluent-kafka) run,
kafka-python's alter_partition_reassignments moves partitions back and forth
(and, with --kafka-classpath, Kafka's kafka-reassign-partitions --execute
moves one more and --verify reports completion). Afterwards every
idempotent message is stored exactly once and in order, every committed
transaction is wholly visible at read_committed and no aborted one is, and
a kafka-python consumer group reads and commits everything. Last, a
kafka-python transactional producer commits one transaction and aborts
another: read_committed sees exactly the committed one.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition as KTopicPartition

sys.path.insert(0, os.path.dirname(__file__))
from checks import Checks, Failure  # noqa: E402

NAME = "cluster_client.py"
CHECKS = Checks(NAME)
PARTITIONS = 3


def leaders(admin, topic):
    md = admin.list_topics(topic, timeout=10).topics[topic]
    return {p.id: p.leader for p in md.partitions.values()}


def idempotent_load(bootstrap, topic, stop, sent):
    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), enable_idempotence=True, acks="all",
                      retries=2**31 - 1, delivery_timeout_ms=120000, linger_ms=5)
    n = 0
    futures = []
    while not stop.is_set() or n < 3000:
        futures.append(p.send(topic, value=str(n).encode(), partition=n % PARTITIONS))
        n += 1
        if n % 50 == 0:
            time.sleep(0.005)
    p.flush(120)
    for f in futures:
        f.get(timeout=120)
    p.close()
    sent.append(n)


def transactional_load(bootstrap, topic, stop, outcome):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "cluster-client-tx",
                  "message.timeout.ms": 60000, "transaction.timeout.ms": 60000})
    p.init_transactions(60)
    committed, aborted = [], []
    i = 0
    while not stop.is_set() or i < 20:
        p.begin_transaction()
        for part in range(PARTITIONS):
            p.produce(topic, value=f"t{i}-{part}".encode(), partition=part)
        if i % 4 == 3:
            p.abort_transaction(60)
            aborted.append(i)
        else:
            p.commit_transaction(60)
            committed.append(i)
        i += 1
    outcome.extend([committed, aborted])


def read_committed(bootstrap, topic, want, timeout):
    """Every value of `topic` at read_committed: until `want` arrived (or
    `timeout` s passed), then whatever follows within a second."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cluster-check-{topic}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = []
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        seen.extend(m.value().decode() for m in c.consume(1000, 0.5) if not m.error())
    time.sleep(1)
    seen.extend(m.value().decode() for m in c.consume(1000, 1.0) if not m.error())
    c.close()
    return seen


def move_back_and_forth(cadmin, kadmin, topics, brokers, moves):
    done = 0
    for round_ in range(moves):
        topic = topics[round_ % len(topics)]
        part = round_ % PARTITIONS
        current = leaders(cadmin, topic)[part]
        to = brokers[(brokers.index(current) + 1) % len(brokers)]
        result = kadmin.alter_partition_reassignments({KTopicPartition(topic, part): [to]})
        CHECKS.check(all(v is None for v in result.values()), f"move refused: {result}")
        CHECKS.wait_for(f"{topic}-{part} led by {to}", lambda: leaders(cadmin, topic)[part] == to)
        done += 1
    CHECKS.wait_for("no reassignment in progress", lambda: not kadmin.list_partition_reassignments())
    return done


def reassign_with_kafkas_tool(classpath_file, bootstrap, cadmin, topic, brokers):
    part = 1
    current = leaders(cadmin, topic)[part]
    to = brokers[(brokers.index(current) + 1) % len(brokers)]
    plan = {"version": 1, "partitions": [{"topic": topic, "partition": part, "replicas": [to]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
        path = f.name
    with open(classpath_file) as f:
        classpath = f.read().strip()
    log4j = os.path.join(tempfile.gettempdir(), "strata-cluster-client-log4j2.properties")
    with open(log4j, "w") as f:
        f.write("status = warn\nrootLogger.level = warn\n")
    tool = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath,
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"]
    base = tool + ["--bootstrap-server", bootstrap.split(",")[0], "--reassignment-json-file", path]
    out = subprocess.run(base + ["--execute"], capture_output=True, text=True, timeout=120)
    CHECKS.check(out.returncode == 0, f"--execute failed: {out.stdout} {out.stderr}")
    CHECKS.check("Successfully started partition reassignment" in out.stdout, out.stdout)

    def verified():
        v = subprocess.run(base + ["--verify"], capture_output=True, text=True, timeout=120)
        if v.returncode == 0 and f"Reassignment of partition {topic}-{part} is completed" in v.stdout:
            return True
        CHECKS.log(f"--verify not done yet ({v.returncode}): {v.stdout[-300:]} {v.stderr[-300:]}")
        return False

    CHECKS.wait_for("--verify reports completion", verified, timeout=60)
    CHECKS.check_eq(leaders(cadmin, topic)[part], to, "the leader after kafka-reassign-partitions")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--moves", type=int, default=12)
    ap.add_argument("--kafka-classpath", help="Kafka's classpath file: also move with kafka-reassign-partitions")
    args = ap.parse_args()
    bs = args.bootstrap
    cadmin = AdminClient({"bootstrap.servers": bs})
    stop = threading.Event()
    kadmin = KafkaAdminClient(bootstrap_servers=bs.split(","), request_timeout_ms=30000)
    try:
        brokers = sorted(cadmin.list_topics(timeout=10).brokers)
        CHECKS.check_eq(len(brokers), 3, "brokers confluent-kafka sees")
        CHECKS.check_eq(len(kadmin.describe_cluster()["brokers"]), 3, "brokers kafka-python sees")
        for t in ("idem", "txn"):
            cadmin.create_topics([NewTopic(t, PARTITIONS, 1)])[t].result()
        CHECKS.wait_for("leaders", lambda: all(v >= 0 for v in leaders(cadmin, "txn").values())
                        and len(leaders(cadmin, "idem")) == PARTITIONS)
        sent, outcome = [], []
        threads = [threading.Thread(target=idempotent_load, args=(bs, "idem", stop, sent), daemon=True),
                   threading.Thread(target=transactional_load, args=(bs, "txn", stop, outcome), daemon=True)]
        for t in threads:
            t.start()
        time.sleep(1)
        moved = move_back_and_forth(cadmin, kadmin, ["idem", "txn"], brokers, args.moves)
        if args.kafka_classpath:
            reassign_with_kafkas_tool(args.kafka_classpath, bs, cadmin, "idem", brokers)
        stop.set()
        for t in threads:
            t.join(300)
        CHECKS.check(sent and outcome, "the producers finished")
        CHECKS.log(f"{moved} moves; {sent[0]} idempotent messages; "
                   f"{len(outcome[0])} committed and {len(outcome[1])} aborted transactions")

        # Idempotent: exactly once, in order, per partition.
        c = Consumer({"bootstrap.servers": bs, "group.id": "cluster-check", "enable.auto.commit": False})
        c.assign([TopicPartition("idem", p, 0) for p in range(PARTITIONS)])
        expect = {p: p for p in range(PARTITIONS)}
        got = 0
        deadline = time.monotonic() + 120
        while got < sent[0]:
            CHECKS.check(time.monotonic() < deadline, f"read {got} of {sent[0]}")
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                v = int(m.value())
                CHECKS.check_eq(v, expect[m.partition()], f"idem-{m.partition()} at {m.offset()}")
                expect[m.partition()] += PARTITIONS
                got += 1
        c.close()

        # Transactional: every committed one whole, no aborted one.
        want = sorted(f"t{i}-{p}" for i in outcome[0] for p in range(PARTITIONS))
        seen = read_committed(bs, "txn", len(want), 120)
        CHECKS.check_eq(sorted(seen), want, "read_committed sees exactly the committed transactions")

        # A kafka-python consumer group reads everything and commits.
        kc = KafkaConsumer("idem", bootstrap_servers=bs.split(","), group_id="cluster-kp",
                           auto_offset_reset="earliest", enable_auto_commit=False)
        n = 0
        deadline = time.monotonic() + 120
        while n < sent[0] and time.monotonic() < deadline:
            for recs in kc.poll(timeout_ms=500).values():
                n += len(recs)
        CHECKS.check_eq(n, sent[0], "messages the kafka-python group read")
        kc.commit()
        committed = sum(kc.committed(KTopicPartition("idem", p)) or 0 for p in range(PARTITIONS))
        CHECKS.check_eq(committed, sent[0], "offsets the kafka-python group committed")
        kc.close()

        # kafka-python's transactional producer: one committed, one aborted.
        cadmin.create_topics([NewTopic("kptxn", PARTITIONS, 1)])["kptxn"].result()
        CHECKS.wait_for("kptxn leaders", lambda: all(v >= 0 for v in leaders(cadmin, "kptxn").values())
                        and len(leaders(cadmin, "kptxn")) == PARTITIONS)
        kp = KafkaProducer(bootstrap_servers=bs.split(","), transactional_id="cluster-kp-tx", acks="all")
        kp.init_transactions()
        for outcome_name in ("commit", "abort"):
            kp.begin_transaction()
            for i in range(30):
                kp.send("kptxn", value=f"{outcome_name}-{i}".encode(), partition=i % PARTITIONS)
            if outcome_name == "commit":
                kp.commit_transaction()
            else:
                kp.flush()
                kp.abort_transaction()
        kp.close()
        want = sorted(f"commit-{i}" for i in range(30))
        seen = read_committed(bs, "kptxn", len(want), 60)
        CHECKS.check_eq(sorted(seen), want, "read_committed sees kafka-python's committed transaction only")
    except (Failure, KafkaException) as e:
        traceback.print_exc()
        print(f"FAIL {NAME}: {e}", flush=True)
        sys.exit(1)
    finally:
        stop.set()
        kadmin.close()
    print(f"OK {NAME}: {CHECKS.count} checks", flush=True)


if __name__ == "__main__":
    main()
