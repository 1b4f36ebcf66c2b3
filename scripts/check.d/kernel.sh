#!/usr/bin/env bash
# CI: checks the committed kernel (image/kernel, made by scripts/build-kernel, which is too slow
# for CI): its files match SHA256SUMS; the config inside the Image (IKCONFIG) is the committed
# .config and keeps every fragment line; and the fragments and pinned source have not changed
# since it was built (else: run scripts/build-kernel and commit what it writes).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "kernel: FAIL: $*" >&2; exit 1; }
# shellcheck source=image/kernel/lib.sh
source "$root/image/kernel/lib.sh"
k=$kernel_dir
work=$(mktemp -d /tmp/kernel-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

(cd "$k" && sha256sum --quiet -c SHA256SUMS) || die "image/kernel does not match its SHA256SUMS"
for f in Image.gz config source.txt inputs.sha256; do
  grep -q " $f\$" "$k/SHA256SUMS" || die "SHA256SUMS does not cover $f"
done
[ "$(cat "$k/inputs.sha256")" = "$(kernel_inputs)" ] ||
  die "image/kernel/fragments or the pinned source changed since the kernel was built: run scripts/build-kernel and commit image/kernel"

# The config the Image carries: IKCONFIG puts it, gzip'ed, between the markers IKCFG_ST and
# IKCFG_ED (what the kernel's scripts/extract-ikconfig looks for).
gzip -dc "$k/Image.gz" >"$work/Image"
off=$(grep -abo IKCFG_ST "$work/Image" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || die "the Image carries no config (IKCONFIG off?)"
tail -c +"$(( off + 9 ))" "$work/Image" | gzip -dc 2>/dev/null >"$work/config" || true # trailing bytes after the gzip stream
[ -s "$work/config" ] || die "could not read the config inside the Image"
cmp -s "$work/config" "$k/config" || die "the config inside the Image is not image/kernel/config"
kernel_check_fragments "$work/config" || die "fragment lines missing from the kernel's config (above)"
for d in bcm2711-rpi-4-b bcm2712-rpi-5-b; do
  [ -s "$k/$d.dtb" ] || die "no $d.dtb"
done
echo "kernel: PASS ($(sed -n 's/^kernelrelease //p' "$k/source.txt"), Image.gz $(du -k "$k/Image.gz" | cut -f1) KiB, $(grep -c '^CONFIG_' "$k/config") options, fragments hold)"
