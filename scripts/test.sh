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

# The shipped binary links no test-only code: no testkit, no jsonschema.
if cargo tree -p nix-infra -e normal --prefix none | grep -E 'testkit|jsonschema'; then
  echo "nix-infra depends on test-only crates (see above): they belong in [dev-dependencies]" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
cargo test --workspace --doc 2>&1 | tee -a "$log"

# Nothing the harness started may outlive the suite: servers, nodes, mounts.
left=$(pgrep -af 'nix-infra-(pg|etcd|node)-' | grep -v pgrep || true)
mounts=$(grep -c 'nix-infra-node-' /proc/mounts || true)
# Nor their state: a node's folder holds up to 125 MB (etcd preallocates its WAL).
state=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'nix-infra-node-*' -newer "$log" 2>/dev/null || true)
if [ -n "$left" ] || [ "$mounts" != 0 ] || [ -n "$state" ]; then
  echo "harness left behind processes, mounts or node state:" >&2
  echo "$left" >&2
  echo "$state" >&2
  exit 1
fi

# One closing line for the whole suite (both steps above stop the script on a failure).
awk '
  /tests run: [0-9]+ passed/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) n += $i }
  /^test result: ok\./       { n += $4 }
  END { printf "all: %d passed, 0 failed\n", n }
' "$log"
