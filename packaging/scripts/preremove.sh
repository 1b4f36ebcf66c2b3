#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl disable --now appliance.service appliance-relay.service >/dev/null 2>&1 || true
fi
