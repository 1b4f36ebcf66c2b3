#!/usr/bin/env bash
# CI: installs the amd64 .deb into a fresh Debian root (debootstrap minbase from the mirror
# apt already uses), runs `appliance version` and `appliance check` in it, upgrades it over a
# changed config (the conffile must survive), then purges it and checks nothing is left.
# Prints the figures: package sizes, debootstrap time, test time.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "deb-test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
for tool in debootstrap chroot dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool not installed (scripts/apt-packages.txt)"
done
t0=$(date +%s)
work=$(mktemp -d /tmp/deb-test.XXXXXX)
chroot=$work/root
cleanup() {
  # Every mount in the root, deepest first: ours (proc) and any debootstrap left when it was
  # stopped mid-way (proc, sys, a bind of /dev); rm never crosses into one that stayed.
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

stamp=$(date -u +%Y%m%d%H%M%S)
echo "deb-test: building packages"
"$root/scripts/build-deb" --version "v1.0.0+t$stamp" --arch amd64 --out "$work/v1" >/dev/null
"$root/scripts/build-deb" --version "v1.0.1+t$stamp" --arch amd64 --out "$work/v2" >/dev/null
deb1=$(echo "$work"/v1/*.deb) deb2=$(echo "$work"/v2/*.deb)
[ -f "$deb1" ] && [ -f "$deb2" ] || die "build-deb made no package"

# The fresh root: the mirror and suite of this machine's apt sources (nothing else downloads).
mirror=$(grep -hom1 '^URIs: *[^ ]*' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list*"
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
t_boot=$(date +%s)
if ! timeout 600 debootstrap --variant=minbase "$suite" "$chroot" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap $suite from $mirror failed"
fi
t_bootstrap=$(( $(date +%s) - t_boot ))
mount -t proc proc "$chroot/proc"
in_root() { chroot "$chroot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

cp "$deb1" "$deb2" "$chroot/tmp/"
note=$(in_root dpkg -i "/tmp/${deb1##*/}" 2>&1) || { echo "$note" >&2; die "dpkg -i failed"; }
grep -q 'systemctl enable --now appliance' <<<"$note" || die "no post-install note: $note"
out=$(in_root appliance version) || die "appliance version failed"
grep -q "appliance v1.0.0+t$stamp " <<<"$out" || die "appliance version says: $out"
in_root appliance check --config /etc/appliance/appliance.toml >"$work/check.out" 2>&1 ||
  { cat "$work/check.out" >&2; die "appliance check rejects the installed config"; }
grep -q 'config is valid' "$work/check.out" || die "appliance check printed no verdict"
in_root dpkg-query -W -f='${Conffiles}\n' appliance | grep -q '/etc/appliance/appliance.toml' ||
  die "/etc/appliance/appliance.toml is not a conffile"
[ "$(stat -c %a "$chroot/etc/appliance/appliance.toml")" = 600 ] || die "the config is readable by others"
unit=$chroot/usr/lib/systemd/system/appliance.service
grep -q '^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$' "$unit" || die "unit without the capability bounding set"
grep -q '^ProtectSystem=strict$' "$unit" || die "unit without ProtectSystem=strict"
if command -v systemd-analyze >/dev/null; then
  # On this machine's systemd (the minbase root has none), with the installed binary.
  sed "s|/usr/bin/appliance|$chroot/usr/bin/appliance|" "$unit" >"$work/appliance.service"
  systemd-analyze verify --man=no "$work/appliance.service" >"$work/verify.out" 2>&1 ||
    { cat "$work/verify.out" >&2; die "systemd-analyze rejects the unit"; }
  exposure=$(systemd-analyze security --offline=true "$work/appliance.service" 2>/dev/null | grep -o "exposure level.*" || true)
  echo "deb-test: unit ${exposure:-exposure unknown}"
fi
echo "deb-test: installed; version, check, conffile and unit OK"

# The unit's promise: the daemon works with CAP_NET_ADMIN and CAP_NET_RAW only. No systemd
# here, so setpriv drops the rest, and the daemon runs in a network namespace of its own
# (the example config's LAN, eth0, is a veth there; nothing in it reaches outside).
ns=debtest-$$
daemon=""
stop_daemon() { # SIGTERM, SIGKILL after 10 s: bounded
  if [ -n "$daemon" ] && kill "$daemon" 2>/dev/null; then
    for _ in $(seq 1 50); do
      kill -0 "$daemon" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  ip netns del "$ns" 2>/dev/null || true
}
trap 'stop_daemon; cleanup' EXIT
ip netns add "$ns"
ip -n "$ns" link add eth0 type veth peer name eth0peer
mkdir -p "$work/state"
ip netns exec "$ns" setpriv --bounding-set=-all,+net_admin,+net_raw --inh-caps=-all,+net_admin,+net_raw \
  --ambient-caps=-all,+net_admin,+net_raw \
  "$chroot/usr/bin/appliance" run --config "$chroot/etc/appliance/appliance.toml" \
  --state "$work/state" --control "$work/control.sock" >"$work/daemon.log" 2>&1 &
daemon=$!
deadline=$(( $(date +%s) + 60 ))
until grep -q 'appliance running' "$work/daemon.log"; do
  kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; die "the daemon died with only NET_ADMIN and NET_RAW"; }
  [ "$(date +%s)" -lt "$deadline" ] || { cat "$work/daemon.log" >&2; die "the daemon did not come up in 60s"; }
  sleep 1
done
ip netns exec "$ns" nft list table inet appliance >/dev/null || die "no firewall in the daemon's namespace"
grep -q 'kernel features probed' "$work/daemon.log" || die "the daemon did not probe the kernel's features"
ip netns exec "$ns" nft list tables | grep -q kernelfeat_probe && die "the kernel feature probe left its table behind"
grep -h "feature=" "$work/daemon.log" | sed "s/^/deb-test: kernel (this machine): /" || true
stop_daemon
daemon=""
echo "deb-test: the daemon runs with CAP_NET_ADMIN and CAP_NET_RAW only (firewall loaded)"

# Upgrade over a site's own config: the admin's edit must survive.
sed -i 's/^site = .*/site = "Upgrade Test Office"/' "$chroot/etc/appliance/appliance.toml"
in_root dpkg -i "/tmp/${deb2##*/}" >"$work/upgrade.out" 2>&1 </dev/null ||
  { cat "$work/upgrade.out" >&2; die "upgrade failed"; }
grep -q '^site = "Upgrade Test Office"$' "$chroot/etc/appliance/appliance.toml" || die "the upgrade replaced the admin's config"
in_root appliance version | grep -q "appliance v1.0.1+t$stamp " || die "the upgrade did not replace the binary"
echo "deb-test: upgrade kept the edited config"

in_root dpkg --purge appliance >"$work/purge.out" 2>&1 || { cat "$work/purge.out" >&2; die "purge failed"; }
for f in /usr/bin/appliance /usr/lib/systemd/system/appliance.service /etc/appliance; do
  [ ! -e "$chroot$f" ] || die "$f left behind after purge"
done
in_root dpkg-query -W appliance >/dev/null 2>&1 && ! in_root dpkg-query -W -f='${db:Status-Status}' appliance | grep -q not-installed &&
  die "dpkg still lists the package"
echo "deb-test: PASS"
echo "deb-test: figures: $(du -b "$deb1" | awk '{print $1}') bytes amd64 .deb, debootstrap ${t_bootstrap}s, total $(( $(date +%s) - t0 ))s"
