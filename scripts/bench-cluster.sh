#!/usr/bin/env bash
# Cluster benchmarks (issue 13, docs/benchmarks.md): etcd, s3s-fs and Strata
# brokers on loopback, all started here and stopped by PID.
#
#   scripts/bench-cluster.sh moves [MOVES]     client-observed unavailability per
#                                              move, p50/p99 over MOVES (100) moves
#                                              of a partition between 3 brokers
#   scripts/bench-cluster.sh cost [MB]         CPU-seconds per GB produced and
#                                              consumed, the same load on 1 and on
#                                              3 brokers (MB: 1000), counted until
#                                              the compaction it leaves is done
#   scripts/bench-cluster.sh idle [SECONDS]     brokers' CPU per second with nothing to
#                                              do, 1 and 3 brokers (SECONDS: 60)
#   scripts/bench-cluster.sh failover [KILLS]  time from a kill -9 of a partition's
#                                              leader to the first produce served
#                                              again, default settings (KILLS: 10)
#
# STRATA_BENCH_LOG sets the brokers' log filter (e.g. add
# strata_stream::compaction=debug); STRATA_BENCH_KEEP_LOGS=DIR keeps the logs.
# Release build; the clients are confluent-kafka (librdkafka 2.16) and
# kafka-python 3.0 (its alter_partition_reassignments) from the setup venv.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-moves}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
[ -n "${STRATA_BENCH_NO_BUILD:-}" ] || cargo build --release -p strata
bin="$CARGO_TARGET_DIR/release/strata"
py="${STRATA_VENV:-$HOME/.cache/strata-venv}/bin/python"
s3s="$HOME/.cache/strata-tools/bin/s3s-fs"
work="$(mktemp -d -t strata-bench-cluster.XXXXXX)"
pids=()
cleanup() {
  [ -z "${STRATA_BENCH_KEEP_LOGS:-}" ] || cp "$work"/*.log "$STRATA_BENCH_KEEP_LOGS"/ 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

etcd_port="$(free_port)"; peer_port="$(free_port)"
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
s3_port="$(free_port)"
mkdir -p "$work/s3/bench"
"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret "$work/s3" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$etcd_port") 2>/dev/null && break
  sleep 0.05
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
  AWS_SECRET_ACCESS_KEY=bench-secret AWS_ALLOW_HTTP=true

# start_brokers PREFIX N: N brokers (node ids 1..N) of cluster PREFIX; sets
# $bootstrap and $broker_pids.
start_brokers() {
  local prefix="$1" n="$2" addrs=()
  broker_pids=()
  for id in $(seq 1 "$n"); do
    STRATA_LOG="${STRATA_BENCH_LOG:-warn,strata=info}" "$bin" serve --listen 127.0.0.1:0 --http none --data-dir "$work/$prefix-$id" \
      --metadata "etcd://127.0.0.1:$etcd_port/$prefix" --object-store "s3://bench/$prefix" --node-id "$id" \
      --group-initial-rebalance-delay-ms 0 >"$work/$prefix-$id.log" 2>&1 &
    pids+=($!); broker_pids+=($!)
    for _ in $(seq 1 400); do grep -q "kafka=" "$work/$prefix-$id.log" && break; sleep 0.05; done
    addrs+=("$(grep -o 'kafka=[0-9.:]*' "$work/$prefix-$id.log" | head -1 | cut -d= -f2)")
  done
  bootstrap="$(IFS=,; echo "${addrs[*]}")"
}

# cpu_of PIDS...: user+system CPU seconds the processes used so far.
cpu_of() {
  local total=0 t
  for p in "$@"; do
    t="$(awk '{print $14+$15}' "/proc/$p/stat")"
    total=$((total + t))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.2f", $1/$2}'
}

case "$what" in
  moves)
    start_brokers moves 3
    "$py" scripts/bench_cluster.py moves --bootstrap "$bootstrap" --moves "${2:-100}"
    ;;
  cost)
    mb="${2:-1000}"
    for n in 1 3; do
      start_brokers "cost$n" "$n"
      before="$(cpu_of "${broker_pids[@]}")" infra_before="$(cpu_of "${pids[0]}" "${pids[1]}")"
      "$py" scripts/bench_cluster.py load --bootstrap "$bootstrap" --mb "$mb" --topic "cost$n"
      # The background work the load leaves (uploads, compaction: every 30 s
      # by default) is part of its cost: wait past one compaction interval,
      # then until the brokers are idle (under 0.1 CPU-s in 5 s).
      sleep 35
      while :; do
        a="$(cpu_of "${broker_pids[@]}")"; sleep 5; b="$(cpu_of "${broker_pids[@]}")"
        awk -v a="$a" -v b="$b" 'BEGIN { exit !(b - a < 0.1) }' && break
      done
      after="$(cpu_of "${broker_pids[@]}")" infra_after="$(cpu_of "${pids[0]}" "${pids[1]}")"
      echo "$n $before $after $mb $infra_before $infra_after" | awk '{printf "brokers=%d broker_cpu_seconds=%.1f broker_cpu_seconds_per_gb=%.2f etcd_and_s3_cpu_seconds_per_gb=%.2f (produced and consumed %d MB)\n", $1, $3-$2, ($3-$2)*1000/$4, ($6-$5)*1000/$4, $4}'
      for p in "${broker_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    done
    ;;
  idle)
    # What brokers cost doing nothing: a small load (the topic, the group
    # coordinator's partitions), then, past one compaction interval, the
    # brokers' CPU over SECONDS.
    secs="${2:-60}"
    for n in 1 3; do
      start_brokers "idle$n" "$n"
      "$py" scripts/bench_cluster.py load --bootstrap "$bootstrap" --mb 10 --topic "idle$n" >/dev/null
      sleep 40
      before="$(cpu_of "${broker_pids[@]}")"
      sleep "$secs"
      after="$(cpu_of "${broker_pids[@]}")"
      echo "$n $before $after $secs" | awk '{printf "brokers=%d idle_broker_cpu_seconds_per_second=%.4f (over %d s)\n", $1, ($3-$2)/$4, $4}'
      for p in "${broker_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    done
    ;;
  failover)
    "$py" scripts/bench_cluster.py failover --kills "${2:-10}" --bin "$bin" \
      --metadata "etcd://127.0.0.1:$etcd_port/failover" --objects "s3://bench/failover" --workdir "$work"
    ;;
  *) echo "usage: $0 moves [MOVES] | cost [MB] | idle [SECONDS] | failover [KILLS]" >&2; exit 2 ;;
esac
