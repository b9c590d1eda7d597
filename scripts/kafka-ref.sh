#!/usr/bin/env bash
# The reference broker: a single-node KRaft Apache Kafka (the version pinned in
# tests/java/pom.xml) on free 127.0.0.1 ports, started the way Kafka's
# quickstart does (StorageTool format --standalone, then kafka.Kafka).
#
#   scripts/kafka-ref.sh start [DIR] [--durable] [--feature name=level]... [--config key=value]...
#       formats DIR (a fresh temporary directory by default), starts the broker
#       and prints one line: bootstrap=127.0.0.1:PORT pid=PID dir=DIR
#       --durable: log.flush.interval.messages=1, an fsync before every
#       acknowledgement, as Strata acknowledges only durable writes. The test
#       suite's reference broker runs so, so that configs compare exactly
#       (docs/testing.md); benchmarks run Kafka both ways.
#   scripts/kafka-ref.sh stop DIR
#       stops the broker started in DIR (by its PID) and waits for it to exit
#
# Needs the classpath scripts/setup.sh writes (~/.cache/strata-tools/kafka.classpath).
set -euo pipefail
tools="${STRATA_TOOLS:-$HOME/.cache/strata-tools}"
classpath_file="$tools/kafka.classpath"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir=""
  if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then dir="$1"; shift; fi
  [ -n "$dir" ] || dir="$(mktemp -d -t strata-kafka-ref.XXXXXX)"
  local features=() configs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --feature) features+=(--feature "$2"); shift 2 ;;
      --config) configs+=("$2"); shift 2 ;;
      --durable) configs+=("log.flush.interval.messages=1"); shift ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
  [ -s "$classpath_file" ] || { echo "$classpath_file missing: run scripts/setup.sh" >&2; exit 1; }
  local cp
  cp="$(cat "$classpath_file")"
  local port cport
  port="$(free_port)"
  cport="$(free_port)"
  while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  local c
  for c in "${configs[@]}"; do echo "$c" >>"$dir/server.properties"; done
  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOF
  local id
  # Kafka's form (URL-safe base64 of 16 random bytes), never starting with
  # "-", which the tool would read as an option (Kafka's own ids avoid it too).
  id="$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break
')"
  local jvm=(java -Xmx1G -Xms256m -XX:+UseG1GC "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$cp")
  "${jvm[@]}" kafka.tools.StorageTool format --standalone -t "$id" -c "$dir/server.properties" \
    "${features[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
  nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  # Ready once the broker listener accepts (within a deadline).
  local deadline=$((SECONDS + 90))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.5)" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the reference broker exited; see $dir/server.log" >&2
      tail -20 "$dir/stdout.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "the reference broker did not listen on $port within 90 s" >&2
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  echo "bootstrap=127.0.0.1:$port pid=$pid dir=$dir"
}

stop() {
  local dir="${1:?usage: kafka-ref.sh stop DIR}"
  [ -f "$dir/pid" ] || exit 0
  local pid
  pid="$(cat "$dir/pid")"
  kill "$pid" 2>/dev/null || exit 0
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -9 "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$dir/pid"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [DIR] [--feature name=level]... | stop DIR" >&2; exit 2 ;;
esac
