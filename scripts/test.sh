#!/usr/bin/env bash
# Runs the whole fast test tier on a fresh machine: installs what the tests need
# (scripts/setup.sh), then runs every Rust unit and integration test, including
# the end-to-end client suites and the Java suites (against Strata and a
# reference Apache Kafka broker started here), with cargo-nextest. Ends with
# nextest's summary.
#
#   scripts/test.sh            # fast tier (what .ci/run runs)
#   scripts/test.sh --slow     # slow tier: soak and kill loops (see docs/testing.md)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
scripts/setup.sh

if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

profile=default
if [ "${1:-}" = "--slow" ]; then
  profile=slow
fi
# One reference Apache Kafka broker serves the whole run (tests use random
# topic names); stopped by PID when the run ends.
ref="$(scripts/kafka-ref.sh start --durable)"
ref_dir="${ref##*dir=}"
trap 'scripts/kafka-ref.sh stop "$ref_dir"' EXIT
STRATA_KAFKA_BOOTSTRAP="$(printf '%s\n' "$ref" | sed -E 's/^bootstrap=([^ ]+).*/\1/')"
export STRATA_KAFKA_BOOTSTRAP
echo "reference broker: $ref"
cargo nextest run --workspace --profile "$profile" --no-fail-fast
