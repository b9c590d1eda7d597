#!/usr/bin/env bash
# Side by side: Strata and the reference Apache Kafka broker on this machine, in
# alternating rounds, with Kafka's own ProducerPerformance as the load and the
# same client settings on both (acks=all, linger.ms=5, batch.size=131072, 8
# partitions, 1 GiB per run):
#   - throughput with 1 KiB and with 100 B records;
#   - latency at a fixed rate (--throughput, 1 KiB records at 50 MB/s): p50,
#     p99, p99.9;
#   - a catch-up read of the 1 KiB topic from the start by assign (kcat -C -e);
#   - each broker's CPU-seconds per GB (utime + stime from /proc over the run)
#     and peak RSS (VmHWM).
# Brokers: Strata with the file WAL, Strata with the object WAL on s3s-fs,
# Kafka with its defaults (page cache, no fsync per write), and Kafka with
# log.flush.interval.messages=1 (fsync per write: the durable comparison).
#
#   scripts/bench-vs-kafka.sh [ROUNDS]     # default 3; prints a table of medians
#
# Needs: the release `strata` ($CARGO_TARGET_DIR/release, built unless
# STRATA_BENCH_NO_BUILD=1), scripts/setup.sh's Kafka classpath and s3s-fs, kcat.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
[ -n "${STRATA_BENCH_NO_BUILD:-}" ] || cargo build --release -p strata
bin="$CARGO_TARGET_DIR/release/strata"
tools="$HOME/.cache/strata-tools"
cp="$(cat "$tools/kafka.classpath")"
out="$(mktemp -d -t strata-vs-kafka.XXXXXX)"
log4j="$out/log4j2.properties"
printf 'status = warn\nrootLogger.level = warn\n' >"$log4j"
java_tool() { java -Xmx512m "-Dlog4j2.configurationFile=$log4j" -cp "$cp" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pid="" s3pid="" refdir="" tmp=""
stop_all() {
  if [ -n "$refdir" ]; then scripts/kafka-ref.sh stop "$refdir" || true; refdir=""; fi
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
  if [ -n "$s3pid" ]; then kill "$s3pid" 2>/dev/null || true; wait "$s3pid" 2>/dev/null || true; s3pid=""; fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; tmp=""; fi
}
trap stop_all EXIT

# Starts one target; sets addr and bpid (the broker process to measure).
start() {
  tmp="$(mktemp -d -t strata-vs-kafka-run.XXXXXX)"
  case "$1" in
    strata-file | strata-s3)
      local store=()
      if [ "$1" = strata-s3 ]; then
        local s3port; s3port="$(free_port)"
        mkdir -p "$tmp/s3/bench"
        "$tools/bin/s3s-fs" --host 127.0.0.1 --port "$s3port" --access-key bench --secret-key bench-secret \
          "$tmp/s3" >"$tmp/s3.log" 2>&1 &
        s3pid=$!
        export AWS_ENDPOINT_URL="http://127.0.0.1:$s3port" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench \
          AWS_SECRET_ACCESS_KEY=bench-secret AWS_ALLOW_HTTP=true
        for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break; sleep 0.1; done
        store=(--object-store s3://bench/strata)
      fi
      STRATA_LOG=warn,strata=info "$bin" serve --listen 127.0.0.1:0 --data-dir "$tmp/data" "${store[@]}" \
        2>"$tmp/broker.log" >/dev/null &
      pid=$!
      bpid=$pid
      addr=""
      for _ in $(seq 1 300); do
        addr="$(sed -n -E 's/.*strata listening.*kafka=([^ ]+).*/\1/p' "$tmp/broker.log" | head -n 1)"
        [ -n "$addr" ] && break
        sleep 0.1
      done
      [ -n "$addr" ] || { cat "$tmp/broker.log" >&2; exit 1; }
      ;;
    kafka | kafka-flush1)
      local extra=()
      [ "$1" = kafka-flush1 ] && extra=(--config log.flush.interval.messages=1)
      local line; line="$(scripts/kafka-ref.sh start "$tmp/kafka" "${extra[@]}")"
      refdir="$tmp/kafka"
      addr="$(printf '%s' "$line" | sed -E 's/^bootstrap=([^ ]+).*/\1/')"
      bpid="$(cat "$tmp/kafka/pid")"
      ;;
  esac
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# ProducerPerformance's final line: records/sec, MB/sec, avg, max, p50, p95, p99, p99.9.
perf() {
  local topic="$1" size="$2" records="$3" rate="$4"
  java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
    --record-size "$size" --throughput "$rate" --producer-props "bootstrap.servers=$addr" acks=all \
    linger.ms=5 batch.size=131072 2>/dev/null | tail -n 1
}

# STRATA_VS_KAFKA_BYTES shrinks each run (a smoke test); figures are per byte.
gib="${STRATA_VS_KAFKA_BYTES:-$((1 << 30))}"
for r in $(seq 1 "$rounds"); do
  targets="strata-file kafka strata-s3 kafka-flush1"
  [ $((r % 2)) -eq 0 ] && targets="kafka-flush1 strata-s3 kafka strata-file"
  for target in $targets; do
    start "$target"
    for t in t1k t100 tfixed; do
      java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$addr" --create --topic "$t" \
        --partitions 8 --replication-factor 1 >/dev/null
    done
    c0="$(cpu_ticks "$bpid")"
    line1k="$(perf t1k 1024 $((gib / 1024)) -1)"
    line100="$(perf t100 100 $((gib / 100)) -1)"
    linefix="$(perf tfixed 1024 $((gib / 1024)) 51200)"
    start_ns="$(date +%s%N)"
    kcat -C -b "$addr" -t t1k -o beginning -e -q -X fetch.message.max.bytes=1048576 >/dev/null
    read_s="$(python3 -c "print(($(date +%s%N) - $start_ns) / 1e9)")"
    c1="$(cpu_ticks "$bpid")"
    hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$bpid/status")"
    python3 - "$target" "$r" "$line1k" "$line100" "$linefix" "$read_s" "$c0" "$c1" "$hz" "$hwm" "$gib" >>"$out/rows" <<'EOF'
import re, sys
target, rnd, l1k, l100, lfix, read_s, c0, c1, hz, hwm, size = sys.argv[1:]
def mb(line): return float(re.search(r'\(([\d.]+) MB/sec\)', line).group(1))
def pct(line, p): return float(re.search(r'([\d.]+) ms ' + p, line).group(1))
gb = 4 * int(size) / 1e9  # 3 runs written and one read
cpu = (int(c1) - int(c0)) / int(hz) / gb
print(target, rnd, mb(l1k), mb(l100), pct(lfix, '50th'), pct(lfix, '99th'), pct(lfix, r'99\.9th'),
      int(size) / 1e6 / float(read_s), round(cpu, 2), int(hwm) // 1024)
EOF
    tail -n 1 "$out/rows"
    stop_all
  done
done

python3 - "$out/rows" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cols = ["1 KiB MB/s", "100 B MB/s", "p50 ms", "p99 ms", "p99.9 ms", "catch-up MB/s", "CPU s/GB", "peak RSS MiB"]
med = {}
for t in ["strata-file", "strata-s3", "kafka", "kafka-flush1"]:
    vals = [list(map(float, r[2:])) for r in rows if r[0] == t]
    med[t] = [statistics.median(v[i] for v in vals) for i in range(len(cols))]
print(f"medians of {len(rows) // 4} rounds")
print("| broker | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
for t, m in med.items():
    print(f"| {t} | " + " | ".join(f"{x:g}" for x in m) + " |")
for s, k in [("strata-file", "kafka"), ("strata-file", "kafka-flush1"), ("strata-s3", "kafka-flush1")]:
    ratios = [a / b if b else float("nan") for a, b in zip(med[s], med[k])]
    print(f"| {s} / {k} | " + " | ".join(f"{x:.2f}" for x in ratios) + " |")
EOF
echo "rows: $out/rows"
