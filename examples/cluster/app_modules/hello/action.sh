#!/bin/sh
# `nix-infra cluster action --app hello …` runs this on a node.
set -eu
case "${1:-}" in
  health) curl -fsS http://127.0.0.1:5678/ >/dev/null && echo ok ;;
  *) echo "usage: action.sh health" >&2; exit 2 ;;
esac
