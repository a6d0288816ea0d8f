#!/usr/bin/env bash
# Installs what nix-infra's build, tests and sandbox need on a Debian machine.
# Idempotent: packages already present are skipped. Run as root (or with sudo).
set -euo pipefail

packages=(
  postgresql            # Postgres backend tests and benchmarks (throwaway servers)
  sqlite3               # inspecting the default SQLite state by hand
  etcd-server etcd-client
  openssh-server openssh-client
  openssl               # the Dart nix-infra's CA (its intermediate key) and its flat secrets in tests
  nix-bin               # nix-instantiate for the NixOS stand-ins
  protobuf-compiler libprotobuf-dev   # etcd-client build
  util-linux            # unshare and setpriv for test nodes and servers
  systemd               # systemd-creds, used for real on test nodes
  podman                # `podman load` on test nodes (registry publish-image)
  chromium              # headless browser tests of the dashboard
  chromium-driver       # ChromeDriver: the dashboard's login driven in that browser
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi

# Debian's postgresql package starts a cluster service we do not use; tests
# run their own throwaway servers. Nothing to do here for it.

# The lint gate (scripts/lint.sh) needs rustfmt and clippy.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# The MCP tests' client: the official MCP Python SDK, pinned (cli/tests/mcp/client.py).
MCP_SDK=2.3.0
if ! python3 -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$MCP_SDK'" 2>/dev/null; then
  echo "setup: installing the mcp Python SDK $MCP_SDK"
  python3 -m pip install --quiet --disable-pip-version-check "mcp==$MCP_SDK"
fi
