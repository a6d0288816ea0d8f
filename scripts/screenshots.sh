#!/usr/bin/env bash
# Regenerates the README's dashboard screenshots (docs/screenshots/*.png):
# the dashboard tests render a 20-node `cluster up`, a retried run and the
# cluster page on the sandbox in headless Chromium and copy their
# screenshots here. Needs what scripts/setup.sh installs; runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
unset DATABASE_URL
export SQLX_OFFLINE=true
out="$PWD/docs/screenshots"
mkdir -p "$out"
NIX_INFRA_SCREENSHOTS="$out" cargo nextest run -p nix-infra --test dashboard_live --test dashboard
ls -l "$out"
