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
bench_name=txn
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

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
print_medians
