#!/usr/bin/env bash
# Runs the whole fast test tier on a fresh machine: installs what the tests need
# (scripts/setup.sh), then runs every Rust unit and integration test, including
# the end-to-end client suites, with cargo-nextest. Ends with nextest's summary.
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
exec cargo nextest run --workspace --profile "$profile" --no-fail-fast
