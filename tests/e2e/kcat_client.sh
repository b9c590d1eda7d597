#!/usr/bin/env bash
# End-to-end test of a Strata broker with kcat (Debian's package, librdkafka inside).
#
# Usage: bash tests/e2e/kcat_client.sh --bootstrap 127.0.0.1:PORT
#
# Exits 0 and prints "OK kcat_client: <n> checks" on success; prints
# "FAIL kcat_client: ..." and exits non-zero on the first failure.
#
# The topic is not created beforehand: the producer's metadata request
# auto-creates it (broker auto.create.topics.enable). kcat's defaults are used
# as-is (no -X broker.version.fallback / api.version.request overrides).
# Consuming with -C and -o beginning uses plain assignment, no consumer group.
set -euo pipefail

NAME=kcat_client
BOOTSTRAP=""
COUNT=1000
STEP_TIMEOUT=${KCAT_STEP_TIMEOUT:-60}

while [ $# -gt 0 ]; do
  case "$1" in
    --bootstrap) BOOTSTRAP="${2:?--bootstrap needs HOST:PORT}"; shift 2 ;;
    --bootstrap=*) BOOTSTRAP="${1#--bootstrap=}"; shift ;;
    --messages) COUNT="${2:?}"; shift 2 ;;
    -h|--help) echo "usage: $0 --bootstrap HOST:PORT [--messages N]"; exit 0 ;;
    *) echo "FAIL $NAME: unknown argument $1"; exit 2 ;;
  esac
done
[ -n "$BOOTSTRAP" ] || { echo "FAIL $NAME: --bootstrap HOST:PORT is required"; exit 2; }

CHECKS=0
log() { printf '[%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "$*"; }
fail() { echo "FAIL $NAME: $*"; exit 1; }
pass() { CHECKS=$((CHECKS + 1)); }

command -v kcat >/dev/null 2>&1 || fail "kcat not found (run scripts/setup.sh)"
KCAT_VERSION=$(kcat -V 2>&1 | grep -m1 '^Version' || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-e2e-kcat.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

SUFFIX=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
TOPIC="e2e-kcat-data-${SUFFIX}"
log "$KCAT_VERSION; bootstrap $BOOTSTRAP; topic $TOPIC"

# ---------------------------------------------------------------- produce
# One message per stdin line, "key:value" split by -K: (a file argument would
# instead be sent as a single message).
for i in $(seq 1 "$COUNT"); do
  printf 'key-%d:value-%d-%s\n' "$i" "$i" "payload with spaces and = signs"
done >"$WORK/produced.txt"

if ! timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -K: \
     -X message.timeout.ms=30000 -X topic.metadata.propagation.max.ms=10000 \
     <"$WORK/produced.txt" 2>"$WORK/produce.err"; then
  cat "$WORK/produce.err" >&2
  fail "kcat -P failed (exit above); stderr: $(tail -n 3 "$WORK/produce.err" | tr '\n' ' ')"
fi
# Delivery failures that kcat does not turn into an exit code show up as
# missing messages in the consume check below; keep its stderr for diagnosis.
if [ -s "$WORK/produce.err" ]; then
  log "kcat -P stderr:"; sed 's/^/    /' "$WORK/produce.err"
fi
pass
log "produced $COUNT keyed lines"

# ---------------------------------------------------------------- metadata
if ! timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -L >"$WORK/list.txt" 2>"$WORK/list.err"; then
  cat "$WORK/list.err" >&2
  fail "kcat -L failed"
fi
grep -q "topic \"$TOPIC\" with [0-9]\+ partitions" "$WORK/list.txt" \
  || { cat "$WORK/list.txt" >&2; fail "kcat -L does not list topic $TOPIC"; }
pass
PARTITIONS=$(sed -n "s/^ *topic \"$TOPIC\" with \([0-9]\+\) partitions.*/\1/p" "$WORK/list.txt")
[ "$PARTITIONS" -ge 1 ] || fail "topic $TOPIC has $PARTITIONS partitions"
pass
grep -q 'broker [0-9]\+ at ' "$WORK/list.txt" || { cat "$WORK/list.txt" >&2; fail "kcat -L lists no broker"; }
pass
# Metadata for just this topic, as JSON.
timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -L -t "$TOPIC" -J >"$WORK/list.json" 2>"$WORK/list.err" \
  || fail "kcat -L -t $TOPIC -J failed: $(cat "$WORK/list.err")"
grep -q "\"topic\":\"$TOPIC\"" "$WORK/list.json" || fail "kcat -L -J output lacks $TOPIC: $(cat "$WORK/list.json")"
pass
log "kcat -L lists $TOPIC with $PARTITIONS partition(s)"

# ---------------------------------------------------------------- consume
# -f prints partition, offset, key and value; -e exits at the end of all partitions.
if ! timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -C -t "$TOPIC" -o beginning -e -q \
     -f '%p\t%o\t%k:%s\n' >"$WORK/consumed.tsv" 2>"$WORK/consume.err"; then
  cat "$WORK/consume.err" >&2
  fail "kcat -C failed or timed out after ${STEP_TIMEOUT}s; got $(wc -l <"$WORK/consumed.tsv") lines"
fi
GOT=$(wc -l <"$WORK/consumed.tsv")
[ "$GOT" -eq "$COUNT" ] || fail "consumed $GOT messages, produced $COUNT"
pass

# Same multiset of key:value lines.
cut -f3- "$WORK/consumed.tsv" | sort >"$WORK/consumed.sorted"
sort "$WORK/produced.txt" >"$WORK/produced.sorted"
if ! cmp -s "$WORK/produced.sorted" "$WORK/consumed.sorted"; then
  diff "$WORK/produced.sorted" "$WORK/consumed.sorted" | head -n 10 >&2
  fail "consumed key:value lines differ from produced ones"
fi
pass

# Per partition: offsets are 0,1,2,... in consume order and the produced
# sequence numbers increase (produce order is kept within a partition).
if ! awk -F'\t' '
  {
    p = $1; o = $2 + 0
    split($3, kv, ":"); n = substr(kv[1], 5) + 0
    if (!(p in next_off)) { next_off[p] = 0; last[p] = 0 }
    if (o != next_off[p]) { printf "partition %s: offset %d, expected %d\n", p, o, next_off[p]; bad = 1; exit }
    if (n <= last[p]) { printf "partition %s: key-%d after key-%d\n", p, n, last[p]; bad = 1; exit }
    next_off[p] = o + 1; last[p] = n
  }
  END { exit bad }' "$WORK/consumed.tsv" >&2; then
  fail "per-partition order check failed"
fi
pass
log "consumed $GOT messages back, contents and per-partition order match"

# ---------------------------------------------------------------- offsets
# kcat -Q: offset query by timestamp; -1 ms means "latest" (high watermark).
HIGH_TOTAL=0
for p in $(seq 0 $((PARTITIONS - 1))); do
  out=$(timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -Q -t "$TOPIC:$p:-1" 2>&1) \
    || fail "kcat -Q failed for partition $p: $out"
  hw=$(printf '%s\n' "$out" | sed -n 's/.*offset \(-\?[0-9]\+\).*/\1/p' | head -n1)
  [ -n "$hw" ] || fail "cannot parse kcat -Q output: $out"
  want=$(awk -F'\t' -v p="$p" '$1 == p' "$WORK/consumed.tsv" | wc -l)
  [ "$hw" -eq "$want" ] || fail "partition $p high watermark $hw, consumed $want"
  pass
  HIGH_TOTAL=$((HIGH_TOTAL + hw))
done
[ "$HIGH_TOTAL" -eq "$COUNT" ] || fail "sum of high watermarks $HIGH_TOTAL != $COUNT"
pass

# ---------------------------------------------------------------- group
# kcat -G: a balanced consumer group (librdkafka's classic protocol) reads the
# whole topic from the start, committing as it goes.
GROUP="e2e-kcat-group-${SUFFIX}"
group_read() {
  timeout "$STEP_TIMEOUT" kcat -b "$BOOTSTRAP" -G "$GROUP" -e -q -f '%s\n' \
    -X auto.offset.reset=earliest -X enable.auto.commit=true -X auto.commit.interval.ms=100 "$TOPIC" \
    >"$WORK/$1.txt" 2>"$WORK/$1.err" || true
  grep -c '^value-' "$WORK/$1.txt" || true
}
GOT=$(group_read group)
[ "$GOT" -eq "$COUNT" ] || fail "kcat -G read $GOT of $COUNT messages; stderr: $(tail -n 3 "$WORK/group.err" | tr '\n' ' ')"
pass
# Its commits hold: the group, run again, has nothing left to read.
AGAIN=$(group_read group-again)
[ "$AGAIN" -eq 0 ] || fail "kcat -G read $AGAIN messages again after committing"
pass

echo "OK $NAME: $CHECKS checks"
