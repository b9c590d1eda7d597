"""Clients of scripts/bench-cluster.sh (issue 13's figures).

moves: one idempotent producer (acks=all, one message at a time) writes to
partition 0 while kafka-python's alter_partition_reassignments moves the
partition between the brokers MOVES times. A move's client-observed
unavailability is the longest gap between two consecutive acknowledgements
that overlaps the move (from the request until Metadata names the new
leader, plus 200 ms); the same gap with no move is the baseline.

load: produces MB megabytes (1 KiB messages, 8 partitions) and consumes them
back, for the CPU-per-GB figure.

failover: starts three brokers itself (default session settings) and, KILLS
times, kills the leader of partition 0 with SIGKILL while an idempotent
producer (acks=all) writes to every partition every 10 ms; a kill's figure
is the time from the kill to the first acknowledgement on a partition the
dead broker led. The dead broker is restarted with its node id afterwards.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        md = admin.list_topics(topic, timeout=10).topics[topic]
        if len(md.partitions) == partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return admin
        time.sleep(0.05)
    raise SystemExit(f"{topic} has partitions without a leader")


def leader(admin, topic):
    return admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader


def moves(args):
    topic = "moves"
    admin = create(args.bootstrap, topic, 1)
    brokers = sorted(admin.list_topics(timeout=10).brokers)
    acks, errors = [], []
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 0,
                      "enable.idempotence": True, "message.timeout.ms": 30000})
        n = 0

        def done(err, _msg):
            if err is None:
                acks.append(time.monotonic())
            else:
                errors.append(str(err))

        while not stop.is_set():
            p.produce(topic, value=str(n).encode(), partition=0, on_delivery=done)
            p.flush(30)
            n += 1

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(2)
    kadmin = KafkaAdminClient(bootstrap_servers=args.bootstrap.split(","))
    windows = []
    for i in range(args.moves):
        current = leader(admin, topic)
        to = brokers[(brokers.index(current) + 1) % len(brokers)]
        start = time.monotonic()
        result = kadmin.alter_partition_reassignments({KTopicPartition(topic, 0): [to]})
        if any(v is not None for v in result.values()):
            raise SystemExit(f"move {i} refused: {result}")
        while leader(admin, topic) != to:
            if time.monotonic() - start > 30:
                raise SystemExit(f"move {i} to {to} never completed")
            time.sleep(0.01)
        windows.append((start, time.monotonic() + 0.2))
        time.sleep(0.5)
    time.sleep(1)
    stop.set()
    t.join()
    kadmin.close()

    def gaps_in(lo, hi):
        return [b - a for a, b in zip(acks, acks[1:]) if b >= lo and a <= hi]

    per_move = [max(gaps_in(lo, hi), default=hi - lo) * 1000 for lo, hi in windows]
    quiet = [(b - a) * 1000 for a, b in zip(acks, acks[1:])
             if not any(b >= lo and a <= hi for lo, hi in windows)]
    per_move.sort()
    p99 = per_move[min(len(per_move) - 1, int(round(0.99 * (len(per_move) - 1))))]
    print(f"moves={len(per_move)} unavailability_ms p50={statistics.median(per_move):.1f} "
          f"p99={p99:.1f} max={per_move[-1]:.1f} baseline_gap_ms p50={statistics.median(quiet):.1f} "
          f"acks={len(acks)} failed_deliveries={len(errors)}")


def load(args):
    topic = args.topic
    create(args.bootstrap, topic, 8)
    value = b"x" * 1024
    count = args.mb * 1_000_000 // 1024
    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1 << 20, "enable.idempotence": True})
    started = time.monotonic()
    for i in range(count):
        while True:
            try:
                p.produce(topic, value=value, partition=i % 8)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(120) != 0:
        raise SystemExit("messages not acknowledged")
    produced = time.monotonic() - started
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"{topic}-reader",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20})
    c.assign([TopicPartition(topic, i, 0) for i in range(8)])
    got = 0
    started = time.monotonic()
    while got < count:
        for m in c.consume(10000, 1.0):
            if m.error() is None:
                got += 1
        if time.monotonic() - started > 600:
            raise SystemExit(f"read {got} of {count}")
    consumed = time.monotonic() - started
    c.close()
    print(f"produced {count} messages in {produced:.1f} s, consumed them in {consumed:.1f} s")


def start_broker(args, node):
    log = open(os.path.join(args.workdir, f"failover-{node}.log"), "a")
    env = dict(os.environ, STRATA_LOG="warn,strata=info")
    proc = subprocess.Popen(
        [args.bin, "serve", "--listen", args.listen[node], "--http", "none",
         "--data-dir", os.path.join(args.workdir, f"failover-{node}"),
         "--metadata", args.metadata, "--object-store", args.objects, "--node-id", str(node)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    for line in proc.stderr:
        log.write(line)
        m = re.search(r"kafka=([0-9.:]+)", line)
        if m:
            args.listen[node] = m.group(1)
            break
    else:
        raise SystemExit(f"broker {node} exited: {proc.wait()}")
    threading.Thread(target=lambda: [log.write(l) for l in proc.stderr], daemon=True).start()
    return proc


def failover(args):
    args.listen = {n: "127.0.0.1:0" for n in (1, 2, 3)}
    procs = {n: start_broker(args, n) for n in (1, 2, 3)}
    bootstrap = ",".join(args.listen[n] for n in (1, 2, 3))
    topic, parts = "failover", 3
    try:
        admin = create(bootstrap, topic, parts)
        acks = {p: [] for p in range(parts)}
        errors = []
        stop = threading.Event()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                          "enable.idempotence": True, "message.timeout.ms": 120000})

            def done(err, msg):
                if err is None:
                    acks[msg.partition()].append(time.monotonic())
                else:
                    errors.append(str(err))

            while not stop.is_set():
                for part in range(parts):
                    p.produce(topic, value=b"x", partition=part, on_delivery=done)
                p.poll(0.01)
            p.flush(120)

        t = threading.Thread(target=produce)
        t.start()
        time.sleep(2)
        figures = []
        for i in range(args.kills):
            md = admin.list_topics(topic, timeout=10).topics[topic].partitions
            victim = md[0].leader
            led = [p for p, m in md.items() if m.leader == victim]
            killed = time.monotonic()
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            while True:
                after = [a for p in led for a in acks[p] if a > killed]
                if after:
                    figures.append((min(after) - killed) * 1000)
                    break
                if time.monotonic() - killed > 120:
                    raise SystemExit(f"kill {i}: partitions {led} never served again")
                time.sleep(0.01)
            print(f"kill {i}: broker {victim} (partitions {led}): first produce after {figures[-1]:.0f} ms",
                  flush=True)
            # Restarted with its node id once its lease is gone (it is:
            # its partitions failed over).
            procs[victim] = start_broker(args, victim)
            time.sleep(1)
        stop.set()
        t.join()
        figures.sort()
        p99 = figures[min(len(figures) - 1, int(round(0.99 * (len(figures) - 1))))]
        print(f"kills={len(figures)} kill_to_first_produce_ms p50={statistics.median(figures):.0f} "
              f"p99={p99:.0f} min={figures[0]:.0f} max={figures[-1]:.0f} failed_deliveries={len(errors)}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["moves", "load", "failover"])
    ap.add_argument("--bootstrap")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--bin")
    ap.add_argument("--metadata")
    ap.add_argument("--objects")
    ap.add_argument("--workdir")
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument("--mb", type=int, default=1000)
    ap.add_argument("--topic", default="load")
    args = ap.parse_args()
    {"moves": moves, "load": load, "failover": failover}[args.what](args)


if __name__ == "__main__":
    main()
