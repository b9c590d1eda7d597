#!/usr/bin/env bash
# Runs one standard benchmark scenario against a fresh local broker (see
# docs/benchmarks.md): builds `strata` and `strata-bench` in release, starts
# `strata serve` on a free loopback port with a temporary data dir, runs
# strata-bench, prints its output and the broker's peak RSS, stops the broker
# and deletes the temporary dir.
#
#   scripts/bench.sh produce-1k   [extra strata-bench args]   # 1 KiB messages, produce + consume
#   scripts/bench.sh produce-100b [extra strata-bench args]   # 100 B messages, produce + consume
#   scripts/bench.sh latency-50mb [extra strata-bench args]   # steady 50 MB/s, linger.ms=0, produce only
#   scripts/bench.sh catch-up     [extra strata-bench args]   # 2 GiB history replayed alone, then steady
#                                                             # 50 MB/s producers without and with a replay
#   scripts/bench.sh cost-100mb   [extra strata-bench args]   # steady 100 MB/s for 5 GiB: object-store
#                                                             # requests per GiB (incl. compaction)
#
# STRATA_BENCH_S3=1 puts the broker's objects (and its WAL: the object WAL is
# the default for s3://) in a local s3s-fs (~/.cache/strata-tools/bin/s3s-fs,
# built by scripts/setup.sh) on a free port, rooted in the temporary dir.
#
# Extra args override the scenario's, e.g. `scripts/bench.sh produce-1k --bytes 200MiB --json`.
# Set STRATA_BENCH_NO_BUILD=1 to skip the build. Exit status is strata-bench's.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
bin="$CARGO_TARGET_DIR/release"

scenario="${1:-}"
[ $# -gt 0 ] && shift
common=(--partitions 8 --acks all --bytes 5GiB)
case "$scenario" in
  produce-1k) args=("${common[@]}" --message-size 1024) ;;
  produce-100b) args=("${common[@]}" --message-size 100) ;;
  latency-50mb) args=("${common[@]}" --message-size 1024 --rate 50 --linger-ms 0 --no-consume) ;;
  catch-up) args=(--partitions 8 --acks all --message-size 1024 --catch-up 2GiB --bytes 1GB --rate 50) ;;
  cost-100mb) args=(--partitions 8 --acks all --message-size 1024 --rate 100 --bytes 5GiB --no-consume --settle-secs 40) ;;
  *)
    echo "usage: $0 produce-1k|produce-100b|latency-50mb|catch-up|cost-100mb [extra strata-bench args]" >&2
    exit 2
    ;;
esac

if [ -z "${STRATA_BENCH_NO_BUILD:-}" ]; then
  cargo build --release -p strata -p strata-bench
fi

tmp="$(mktemp -d -t strata-bench.XXXXXX)"
pid=""
s3pid=""
cleanup() {
  if [ -n "$s3pid" ]; then
    kill "$s3pid" 2>/dev/null || true
    wait "$s3pid" 2>/dev/null || true
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "broker did not stop on SIGTERM within 10 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

store_args=()
if [ -n "${STRATA_BENCH_S3:-}" ]; then
  s3port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  mkdir -p "$tmp/s3/bench"
  "$HOME/.cache/strata-tools/bin/s3s-fs" --host 127.0.0.1 --port "$s3port" --access-key bench \
    --secret-key bench-secret "$tmp/s3" >"$tmp/s3.log" 2>&1 &
  s3pid=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
    AWS_SECRET_ACCESS_KEY=bench-secret AWS_ALLOW_HTTP=true
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break
    sleep 0.1
  done
  store_args=(--object-store s3://bench/strata)
  echo "s3s-fs pid $s3pid on 127.0.0.1:$s3port, root $tmp/s3"
fi

# STRATA_BENCH_BROKER_ARGS adds flags to `strata serve` (e.g. cache budgets).
# shellcheck disable=SC2086
STRATA_LOG="${STRATA_LOG:-info}" "$bin/strata" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 \
  --data-dir "$tmp/data" "${store_args[@]}" ${STRATA_BENCH_BROKER_ARGS:-} \
  2>"$tmp/broker.log" >/dev/null &
pid=$!

addr=""
for _ in $(seq 1 300); do
  addr="$(sed -n -E 's/.*strata listening.*kafka=([^ ]+).*/\1/p' "$tmp/broker.log" | head -n 1)"
  [ -n "$addr" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "broker exited before listening:" >&2
    cat "$tmp/broker.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "broker did not report its address within 30 s:" >&2
  cat "$tmp/broker.log" >&2
  exit 1
fi
http="$(sed -n -E 's/.*strata listening.* http=([^ ]+).*/\1/p' "$tmp/broker.log" | head -n 1)"
echo "scenario $scenario: broker pid $pid on $addr (admin $http), data dir $tmp/data"

status=0
"$bin/strata-bench" --bootstrap "$addr" --data-dir "$tmp/data" --metrics "$http" "${args[@]}" "$@" || status=$?

if [ -r "/proc/$pid/status" ]; then
  hwm="$(awk '/^VmHWM:/ {print $2, $3}' "/proc/$pid/status")"
  echo "broker peak RSS: $hwm"
else
  echo "broker is gone (crashed?); its log:" >&2
  tail -n 50 "$tmp/broker.log" >&2
  status=1
fi
warnings="$(grep -c -E ' (WARN|ERROR) ' "$tmp/broker.log" || true)"
if [ "$warnings" -gt 0 ]; then
  echo "broker logged $warnings WARN/ERROR lines; the first ones:"
  grep -E ' (WARN|ERROR) ' "$tmp/broker.log" | head -n 5
fi
exit "$status"
