#!/usr/bin/env bash
# Environment setup for Strata development and end-to-end client tests.
#
# Idempotent and fast when everything is already in place:
#   * system tools: cmake, protoc, kcat, etcd (apt-get, only if one is missing)
#   * Python venv (outside the clone) with the Kafka client libraries used by
#     tests/e2e/*.py, at ${STRATA_VENV:-$HOME/.cache/strata-venv}
#   * KafkaJS in ${STRATA_NODE_DIR:-$HOME/.cache/strata-node}
#   * Apache Kafka (broker, tools, Java client) from Maven Central, classpath in
#     ~/.cache/strata-tools/kafka.classpath
#
# The Rust e2e harness (crates/strata/tests/e2e_clients.rs) looks for the venv
# and node dir at the same default paths (or the same env vars).
set -euo pipefail

STRATA_VENV="${STRATA_VENV:-$HOME/.cache/strata-venv}"
STRATA_NODE_DIR="${STRATA_NODE_DIR:-$HOME/.cache/strata-node}"

# Requirement sets (changing them invalidates the stamps below and triggers a
# reinstall). Versions current when written: confluent-kafka 2.16.1 (bundled
# librdkafka 2.16.x), kafka-python 3.0.12, aiokafka 0.14.0, kafkajs 2.2.4.
PY_REQUIREMENTS=(
  "confluent-kafka==2.16.*"
  "kafka-python==3.0.*"
  "aiokafka==0.14.*"
)
NODE_PACKAGES=("kafkajs@~2.2.4")

log() { printf '[setup] %s\n' "$*" >&2; }
start_ts=$(date +%s)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# ---------------------------------------------------------------- system tools
missing=()
for tool in cmake protoc kcat etcd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing+=("$tool")
  fi
done
# librdkafka (built by the rdkafka crate's cmake-build) needs libcurl's headers.
if [ ! -e /usr/include/curl/curl.h ] && [ ! -e "/usr/include/$(uname -m)-linux-gnu/curl/curl.h" ]; then
  missing+=("libcurl-dev")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "missing tools: ${missing[*]}; installing via apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    cmake protobuf-compiler kcat etcd-server libcurl4-openssl-dev libssl-dev pkg-config
else
  log "system tools present: cmake protoc kcat etcd"
fi

# ------------------------------------------------------------------ python venv
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for cand in python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then PYTHON="$cand"; break; fi
  done
fi
if [ -z "$PYTHON" ]; then
  log "no python3 found"; exit 1
fi

if [ ! -x "$STRATA_VENV/bin/python" ]; then
  log "creating venv at $STRATA_VENV"
  mkdir -p "$(dirname "$STRATA_VENV")"
  if ! "$PYTHON" -m venv "$STRATA_VENV"; then
    # Debian's python3 needs python3-venv for ensurepip.
    log "venv creation failed; installing python3-venv"
    rm -rf "$STRATA_VENV"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    "$PYTHON" -m venv "$STRATA_VENV"
  fi
fi

py_stamp="$STRATA_VENV/.strata-requirements"
py_want="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
if [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$py_want" ]; then
  log "python requirements already installed (stamp matches)"
else
  log "installing python packages: ${PY_REQUIREMENTS[*]}"
  "$STRATA_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "${PY_REQUIREMENTS[@]}"
  # Sanity: the modules import.
  "$STRATA_VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka'
  printf '%s\n' "$py_want" >"$py_stamp"
fi

# ----------------------------------------------------------------- node (kafkajs)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  log "node/npm missing; installing via apt-get"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi

node_stamp="$STRATA_NODE_DIR/.strata-packages"
node_want="$(printf '%s\n' "${NODE_PACKAGES[@]}")"
if [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$node_want" ] \
   && [ -f "$STRATA_NODE_DIR/node_modules/kafkajs/package.json" ]; then
  log "node packages already installed (stamp matches)"
else
  log "installing node packages into $STRATA_NODE_DIR: ${NODE_PACKAGES[*]}"
  mkdir -p "$STRATA_NODE_DIR"
  [ -f "$STRATA_NODE_DIR/package.json" ] || \
    printf '{ "name": "strata-e2e-node", "private": true }\n' >"$STRATA_NODE_DIR/package.json"
  npm install --prefix "$STRATA_NODE_DIR" --no-audit --no-fund --loglevel=error \
    "${NODE_PACKAGES[@]}"
  printf '%s\n' "$node_want" >"$node_stamp"
fi

# --------------------------------------------------------------------- s3s-fs
# A real S3-compatible server for the tests (persists to disk). Built once
# (about 6 minutes on 2 cores) into a cache outside the clone; newer versions
# need a newer rustc than the project's.
STRATA_TOOLS="${STRATA_TOOLS:-$HOME/.cache/strata-tools}"
if [ ! -x "$STRATA_TOOLS/bin/s3s-fs" ]; then
  log "building s3s-fs 0.14.1 into $STRATA_TOOLS"
  cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$STRATA_TOOLS"
fi

# ------------------------------------------------------------- Apache Kafka
# The reference broker, Kafka's tools and the Java client (tests/java/pom.xml),
# resolved once into a Maven repository outside the clone; the classpath goes to
# $STRATA_TOOLS/kafka.classpath (scripts/kafka-ref.sh and the Java suites use it).
STRATA_M2="${STRATA_M2:-$STRATA_TOOLS/m2}"
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  log "maven/java missing; installing via apt-get"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven openjdk-17-jdk-headless
fi
pom="$(cd "$(dirname "$0")/.." && pwd)/tests/java/pom.xml"
kafka_stamp="$STRATA_TOOLS/kafka.classpath.pom"
if [ -s "$STRATA_TOOLS/kafka.classpath" ] && [ -f "$kafka_stamp" ] && cmp -s "$pom" "$kafka_stamp"; then
  log "kafka classpath already resolved (pom unchanged)"
else
  log "resolving Apache Kafka from Maven Central into $STRATA_M2"
  mkdir -p "$STRATA_M2"
  mvn -B -q -f "$pom" -Dmaven.repo.local="$STRATA_M2" dependency:build-classpath \
    -Dmdep.outputFile="$STRATA_TOOLS/kafka.classpath"
  # Resolves the compiler and Surefire (with its JUnit provider) too, so that
  # the suites need little from the network.
  mvn -B -q -f "$pom" -Dmaven.repo.local="$STRATA_M2" -Dstrata.build="$STRATA_TOOLS/java-build/setup" \
    test -Dtest=NoSuchTest -Dsurefire.failIfNoSpecifiedTests=false
  cp "$pom" "$kafka_stamp"
fi

# ---------------------------------------------------------------------- summary
end_ts=$(date +%s)
echo "strata setup done in $((end_ts - start_ts))s"
echo "  python venv : $STRATA_VENV ($("$STRATA_VENV/bin/python" --version 2>&1))"
"$STRATA_VENV/bin/python" - <<'EOF'
import importlib.metadata as md
for p in ("confluent-kafka", "kafka-python", "aiokafka"):
    print(f"    {p}=={md.version(p)}")
import confluent_kafka
print(f"    librdkafka {confluent_kafka.libversion()[0]}")
EOF
echo "  node dir    : $STRATA_NODE_DIR (node $(node --version))"
echo "    kafkajs@$(node -p "require('$STRATA_NODE_DIR/node_modules/kafkajs/package.json').version")"
echo "  s3s-fs      : $STRATA_TOOLS/bin/s3s-fs"
echo "  kafka       : $(tr ':' '\n' <"$STRATA_TOOLS/kafka.classpath" | grep -o 'kafka_2.13-[0-9.]*[0-9]' | head -1) ($STRATA_TOOLS/kafka.classpath)"
echo "  kcat        : $(command -v kcat) ($(kcat -V 2>&1 | grep -m1 '^Version' || true))"
