# Shared by the scripts/bench-*.sh that run Strata and the reference Kafka
# broker side by side (sourced, with $bench_name set): the release build,
# Kafka's classpath, `start strata|kafka` (sets $addr), `stop_all`, `field`,
# `java_tool`, results in "$out/results" as "target key value" lines, and
# `print_medians`.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
[ -n "${STRATA_BENCH_NO_BUILD:-}" ] || cargo build --release -p strata
bin="$CARGO_TARGET_DIR/release/strata"
cp="$(cat "$HOME/.cache/strata-tools/kafka.classpath")"
out="$(mktemp -d -t strata-bench-$bench_name.XXXXXX)"
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
      tmp="$(mktemp -d -t strata-bench-$bench_name-run.XXXXXX)"
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

print_medians() {
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
}
