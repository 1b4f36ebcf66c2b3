#!/usr/bin/env bash
# CI: boot the arm64 VM image under qemu (software emulation), check the baked config runs
# through the status API, push an A/B update and see the new version (scripts/vm-test).
# About 2-4 minutes on 2 cores; every wait inside is bounded, and so is the whole run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=30 900 scripts/vm-test --timeout 300
