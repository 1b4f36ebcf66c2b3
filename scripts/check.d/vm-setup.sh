#!/usr/bin/env bash
# CI: set up the generic arm64 VM image both ways under qemu (software emulation): an
# appliance.toml on its boot partition (a bad one, then a good one), and the setup page in
# headless Chromium ending in the confirm on the normal page (scripts/vm-setup).
# About 2-6 minutes on 2 cores; every wait inside is bounded, and so is the whole run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=30 900 scripts/vm-setup --timeout 240
