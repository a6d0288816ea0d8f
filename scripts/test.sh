#!/usr/bin/env bash
# Runs every test: unit, integration and end-to-end (real Postgres and SQLite,
# started by the tests themselves), then the doc examples.
# Needs what scripts/setup.sh installs. Extra arguments go to cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tests choose their own databases; an inherited one must not leak in.
unset DATABASE_URL
# sqlx must not try to reach a database while compiling.
export SQLX_OFFLINE=true

cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc --quiet
