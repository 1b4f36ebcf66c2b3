#!/usr/bin/env bash
# CI: the lab's scenarios against the arm64 VM image under qemu (software emulation): the
# firewall from the attacker and the trunk, carrier-loss and silent-line failover with SIP,
# reply routing, the page over HTTPS, and (on a second image with SIP open) a scanner blocked
# by sipguard (scripts/vm-lab). About 2-4 minutes on 2 cores (two image builds, two boots);
# every wait inside is bounded, and so is the whole run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=30 720 scripts/vm-lab --timeout 180
