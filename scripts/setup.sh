#!/usr/bin/env bash
# Installs what the lab and the tests need on a fresh Debian machine (as root): the Debian
# packages listed in scripts/apt-packages.txt. Go itself must already be on PATH.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo)" >&2; exit 1; }
command -v go >/dev/null || { echo "setup.sh: Go is not on PATH" >&2; exit 1; }
mapfile -t pkgs < <(grep -v '^\s*#' scripts/apt-packages.txt | awk 'NF {print $1}')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  # Debian's crowdsec registers to the online Central API on install and fails offline
  # unless this file exists first (its README.Debian); the tests run the LAPI alone.
  mkdir -p /etc/crowdsec
  [ -s /etc/crowdsec/online_api_credentials.yaml ] || echo "# offline: no Central API" > /etc/crowdsec/online_api_credentials.yaml
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
