#!/usr/bin/env bash
# Runs one scripts/bench.sh scenario alternately on two builds, back to back
# (old first in odd rounds, new first in even ones), and prints each run's
# figures and the medians: the A/B comparison used in the
# issue notes (docs/benchmarks.md).
#
#   scripts/bench-ab.sh OLD_TARGET NEW_TARGET ROUNDS SCENARIO [strata-bench args]
#
# OLD_TARGET and NEW_TARGET are cargo target dirs holding release/strata and
# release/strata-bench (for example a worktree of the old commit built with
# CARGO_TARGET_DIR set). STRATA_BENCH_S3=1 is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" rounds="$3" scenario="$4"
shift 4
out="$(mktemp -d -t strata-ab.XXXXXX)"
for r in $(seq 1 "$rounds"); do
  # Alternate which build goes first: a run inherits the disk's writeback of
  # the one before it.
  order="old new"
  [ $((r % 2)) -eq 0 ] && order="new old"
  for side in $order; do
    dir="$old"; [ "$side" = new ] && dir="$new"
    STRATA_BENCH_NO_BUILD=1 CARGO_TARGET_DIR="$dir" scripts/bench.sh "$scenario" "$@" >"$out/$side.$r.txt" 2>&1
    mb=$(grep -m1 '^produce:' "$out/$side.$r.txt" | sed -E 's/.* = ([0-9.]+) MB\/s.*/\1/')
    p99=$(grep -m1 '^produce:' "$out/$side.$r.txt" | sed -E 's/.*p99 ([0-9.]+).*/\1/')
    puts=$(grep -m1 '^object store:' "$out/$side.$r.txt" | sed -E 's/.*\(([0-9.]+) per GiB\).*/\1/')
    echo "$side round $r: produce $mb MB/s, p99 $p99 ms, $puts PUT/GiB"
    echo "$side $mb $p99 $puts" >>"$out/figures"
  done
done
# Medians and spreads (sort, not awk arrays: Debian's awk is mawk).
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f (%.1f..%.1f)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
for side in old new; do
  n=$(grep -c "^$side " "$out/figures")
  echo "$side median of $n: produce $(awk -v s="$side" '$1 == s { print $2 }' "$out/figures" | median) MB/s," \
    "p99 $(awk -v s="$side" '$1 == s { print $3 }' "$out/figures" | median) ms," \
    "$(awk -v s="$side" '$1 == s { print $4 }' "$out/figures" | median) PUT/GiB"
done
echo "outputs: $out"
