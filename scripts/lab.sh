#!/usr/bin/env bash
# The namespace lab: `sudo scripts/lab.sh up` builds the office, its ISPs and the internet in
# network namespaces and runs the appliance in the box's namespace on the built-in lab config;
# `sudo scripts/lab.sh down` removes it all. `status` says whether it runs.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
action=${1:-up}
shift || true
bash scripts/setup.sh
mkdir -p bin
CGO_ENABLED=0 go build -o bin/appliance ./cmd/appliance
exec bin/appliance lab "$action" "$@"
