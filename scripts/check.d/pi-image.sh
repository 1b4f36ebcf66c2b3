#!/usr/bin/env bash
# CI: builds the Raspberry Pi image with a site config of its own (there is no Pi in CI to boot
# it) and reads it back: the Pi 4/5 boot files (our kernel and mainline's device trees),
# firmware and EEPROM update on the FAT partition; the arm64 appliance, the named config
# (byte for byte), gokrazy's UI port and no DHCP client of gokrazy's in the root; a formatted
# /perm. And a config that `appliance check` rejects must not make an image.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "pi-image: FAIL: $*" >&2; exit 1; }
for tool in mdir unsquashfs blkid partx file; do
  command -v "$tool" >/dev/null || PATH=$PATH:/sbin:/usr/sbin
  command -v "$tool" >/dev/null || die "$tool not installed (scripts/apt-packages.txt: mtools, squashfs-tools, util-linux, file)"
done
t0=$(date +%s)
work=$(mktemp -d /tmp/pi-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
export IMAGE_WORK=$work/gok

go -C "$root" run ./cmd/appliance example-config | sed 's/^site = .*/site = "Pi Image Test Office"/' >"$work/site.toml"
echo pi-image-test-password >"$work/pw"
img=$("$root/scripts/build-image" --target pi --version pi-test --out "$work" --config "$work/site.toml" \
  --password-file "$work/pw" 2>"$work/build.log") || { cat "$work/build.log" >&2; die "build-image failed"; }
t_build=$(( $(date +%s) - t0 ))

# Partitions: 1 boot (FAT), 2 and 3 the A/B roots (squashfs), 4 /perm (ext4).
start() { partx -g -o START -n "$1" "$img" | tr -d ' '; }
boot=$(( $(start 1) * 512 )) rootA=$(( $(start 2) * 512 )) perm=$(( $(start 4) * 512 ))
mdir -i "$img@@$boot" -b / >"$work/boot.ls" || die "no FAT boot partition"
for f in vmlinuz cmdline.txt config.txt bcm2711-rpi-4-b.dtb bcm2712-rpi-5-b.dtb start4.elf fixup4.dat pieeprom.upd pieeprom.sig; do
  grep -qx "::/$f" "$work/boot.ls" || die "boot partition lacks $f"
done
# Our kernel (image/kernel), not gokrazy's stock one.
mtype -i "$img@@$boot" ::/vmlinuz | cmp -s - <(gzip -dc "$root/image/kernel/Image.gz") ||
  die "the boot partition's vmlinuz is not image/kernel's Image"
grep -q '^arm_64bit=1' <(mtype -i "$img@@$boot" ::/config.txt) || die "config.txt is not image/kernel/boot/pi's"
unsquashfs -o "$rootA" -l "$img" >"$work/root.ls" || die "no squashfs root"
grep -qx 'squashfs-root/user/appliance' "$work/root.ls" || die "the appliance is not in the root"
grep -q '^squashfs-root/gokrazy/dhcp$' "$work/root.ls" && die "gokrazy's DHCP client is in the image"
unsquashfs -o "$rootA" -cat "$img" etc/appliance/appliance.toml >"$work/baked.toml" || die "no config in the root"
cmp -s "$work/site.toml" "$work/baked.toml" || die "the baked config differs from the one named"
[ "$(unsquashfs -o "$rootA" -cat "$img" etc/http-port.txt)" = 8080 ] || die "gokrazy's UI is not on port 8080"
unsquashfs -o "$rootA" -d "$work/x" "$img" user/appliance >/dev/null || die "cannot extract the appliance"
file "$work/x/user/appliance" | grep -q 'ARM aarch64.*statically linked' || die "the appliance is not a static arm64 binary: $(file "$work/x/user/appliance")"
blkid -p -O "$perm" "$img" | grep -q 'TYPE="ext4"' || die "/perm is not formatted"

printf 'site = "x"\n[lan]\nbogus = 1\n' >"$work/bad.toml"
if "$root/scripts/build-image" --target pi --config "$work/bad.toml" --out "$work/bad" --password-file "$work/pw" 2>"$work/bad.log"; then
  die "build-image made an image from a config appliance check rejects"
fi
grep -q 'refusing to build' "$work/bad.log" || die "no clear refusal: $(cat "$work/bad.log")"
[ -z "$(ls "$work/bad" 2>/dev/null)" ] || die "a rejected config left an image"
echo "pi-image: PASS (image build ${t_build}s, total $(( $(date +%s) - t0 ))s)"
