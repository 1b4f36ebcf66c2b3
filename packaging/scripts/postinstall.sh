#!/bin/sh
# The appliance takes over the box's interfaces and firewall: it is never started on its own.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = configure ] && [ -z "$2" ]; then
  cat <<'NOTE'

appliance is installed but NOT running: it takes over this machine's network interfaces and
firewall, so it waits for you.
  1. Edit /etc/appliance/appliance.toml (interfaces, addresses, uplinks, PBX, SIP peers).
  2. Check it:  appliance check --config /etc/appliance/appliance.toml
  3. Start it:  systemctl enable --now appliance
Logs: journalctl -u appliance    State: /var/lib/appliance
Upgrades keep your /etc/appliance/appliance.toml.
On a public host serving as the offices' voice relay, run appliance-relay instead
(/etc/appliance/relay.toml; see docs/relay.md).

NOTE
fi
