#!/bin/sh
# `nix-infra cluster action --app hello --target NODE <command>` runs this on a node.
#   health        is the app answering? (used by `secrets rotate` to verify)
#   new-greeting  prints a fresh greeting, e.g. for
#                 `nix-infra secrets rotate --name hello-greeting --from-action hello@worker1 --action-arg new-greeting`
set -eu
case "${1:-}" in
  health) systemctl is-active --quiet podman-hello.service && echo ok ;;
  new-greeting) echo "hello $(head -c 12 /dev/urandom | base64)" ;;
  *) echo "usage: action.sh health|new-greeting" >&2; exit 2 ;;
esac
