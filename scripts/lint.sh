#!/usr/bin/env bash
# The lint gate CI runs before the tests: formatting, then clippy with every
# warning an error, over every crate and target (tests, benches, examples).
set -euo pipefail
cd "$(dirname "$0")/.."
export SQLX_OFFLINE=true
unset DATABASE_URL

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
echo "lint: fmt and clippy clean"
