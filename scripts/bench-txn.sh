#!/usr/bin/env bash
# Transactional against idempotent produce with the Java client, Strata (file
# WAL) and the reference Apache Kafka broker side by side on this machine, in
# alternating rounds, medians printed (tests/java/tools/TxnBench.java):
#   - transactional: 1 KiB records, 100 per transaction, each committed before
#     the next begins (MESSAGES in all, 8 partitions): msg/s, MB/s,
#     transactions/s and the mean time of commitTransaction (its flush
#     included);
#   - idempotent: the same records, acks=all, one flush at the end.
# The Java client uses Kafka 4's transaction protocol (KIP-890 part 2) with
# the reference broker, which finalizes transaction.version 2, and the first
# one with Strata.
#
#   scripts/bench-txn.sh [ROUNDS] [MESSAGES]     # default 3 rounds, 200000
#
# Needs: the release `strata` ($CARGO_TARGET_DIR/release, built unless
# STRATA_BENCH_NO_BUILD=1) and scripts/setup.sh's Kafka classpath.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
messages="${2:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
[ -n "${STRATA_BENCH_NO_BUILD:-}" ] || cargo build --release -p strata
bin="$CARGO_TARGET_DIR/release/strata"
cp="$(cat "$HOME/.cache/strata-tools/kafka.classpath")"
out="$(mktemp -d -t strata-bench-txn.XXXXXX)"
log4j="$out/log4j2.properties"
printf 'status = warn\nrootLogger.level = warn\n' >"$log4j"
java_tool() { java -Xmx2g "-Dlog4j2.configurationFile=$log4j" -cp "$cp" "$@"; }

pid="" refdir="" tmp=""
stop_all() {
  if [ -n "$refdir" ]; then scripts/kafka-ref.sh stop "$refdir" >/dev/null || true; refdir=""; fi
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; tmp=""; fi
}
trap 'stop_all; rm -rf "$out"' EXIT

start() {
  case "$1" in
    strata)
      tmp="$(mktemp -d -t strata-bench-txn-run.XXXXXX)"
      STRATA_LOG=warn,strata=info "$bin" serve --listen 127.0.0.1:0 --http none --data-dir "$tmp/data" \
        --group-initial-rebalance-delay-ms 0 >"$tmp/log" 2>&1 &
      pid=$!
      for _ in $(seq 1 200); do grep -q "kafka=" "$tmp/log" && break; sleep 0.05; done
      addr="$(grep -o 'kafka=[0-9.:]*' "$tmp/log" | head -1 | cut -d= -f2)"
      ;;
    kafka)
      local line; line="$(scripts/kafka-ref.sh start --durable)"
      refdir="${line##*dir=}"
      addr="$(sed -n 's/^bootstrap=\([^ ]*\).*/\1/p' <<<"$line")"
      ;;
  esac
}

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

for round in $(seq 1 "$rounds"); do
  for target in strata kafka; do
    start "$target"
    r="$(java_tool tests/java/tools/TxnBench.java txn "$addr" "$messages" 100 1024)"
    for k in msgs_per_s mb_per_s txn_per_s commit_ms_avg; do
      echo "$target txn_$k $(field "$r" "$k")" >>"$out/results"
    done
    r="$(java_tool tests/java/tools/TxnBench.java idempotent "$addr" "$messages" 1024)"
    for k in msgs_per_s mb_per_s; do
      echo "$target idempotent_$k $(field "$r" "$k")" >>"$out/results"
    done
    stop_all
    echo "round $round $target done" >&2
  done
done
python3 - "$out/results" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    target, key, v = line.split()
    vals[(key, target)].append(float(v))
keys = list(dict.fromkeys(k for k, _ in vals))
print(f"{'figure (median)':32} {'strata':>10} {'kafka':>10}")
for k in keys:
    s = statistics.median(vals[(k, 'strata')]) if vals[(k, 'strata')] else float('nan')
    kf = statistics.median(vals[(k, 'kafka')]) if vals[(k, 'kafka')] else float('nan')
    print(f"{k:32} {s:10.3f} {kf:10.3f}")
PY
