#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
# Purge removes the state too (blocklist, evidence); plain remove keeps it for a reinstall.
if [ "$1" = purge ]; then
  rm -rf /var/lib/appliance
fi
