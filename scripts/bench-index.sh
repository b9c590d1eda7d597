#!/usr/bin/env bash
# The object index at scale (issue 13, docs/benchmarks.md "Index footprint"):
# STREAMS streams (10000) each get ROUNDS ranges (100) through the stream
# layer on a real etcd and a local object directory, once with folding into
# per-stream index manifests (--index-inline-ranges 32, the default) and once
# without (0). Each run has its own etcd, started here and stopped by PID;
# the last line of each run is its summary (etcd's database size after a
# compaction and a defragmentation, upload times, the reload of the index).
#
#   scripts/bench-index.sh [STREAMS] [ROUNDS] [INLINE...]
set -euo pipefail
cd "$(dirname "$0")/.."
streams="${1:-10000}"; rounds="${2:-100}"; shift $(( $# > 2 ? 2 : $# )) || true
inlines=("$@"); [ ${#inlines[@]} -gt 0 ] || inlines=(32 0)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
[ -n "${STRATA_BENCH_NO_BUILD:-}" ] || cargo build --release -p strata-bench --bin strata-index-bench
bin="$CARGO_TARGET_DIR/release/strata-index-bench"
work="$(mktemp -d -t strata-bench-index.XXXXXX)"
etcd_pid=""
cleanup() {
  [ -z "$etcd_pid" ] || { kill -TERM "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for inline in "${inlines[@]}"; do
  run="$work/inline-$inline"; mkdir -p "$run"
  port="$(free_port)"; peer="$(free_port)"
  etcd --name bench --data-dir "$run/etcd" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$run/etcd.log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  echo "# inline=$inline streams=$streams rounds=$rounds"
  "$bin" --etcd "127.0.0.1:$port" --prefix /bench --dir "$run" --streams "$streams" --rounds "$rounds" \
    --every $(( rounds / 5 > 0 ? rounds / 5 : 1 )) --inline "$inline"
  kill -TERM "$etcd_pid"; wait "$etcd_pid" 2>/dev/null || true; etcd_pid=""
  rm -rf "$run"
done
