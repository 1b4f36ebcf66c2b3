# Shared by scripts/build-image, scripts/update-box and scripts/vm-test (sourced, not run).
# Expects $root (the repository) to be set.

die() { echo "${0##*/}: $*" >&2; exit 1; }

# gok runs from image/tools, a module of its own, so neither gok nor the gokrazy modules
# enter the appliance's go.mod.
gok() { (cd "$root/image/tools" && GOFLAGS=-mod=mod go tool gok "$@"); }

# work: scratch space (IMAGE_WORK) for filled-in instances, under dist/ (ignored by git).
work=${IMAGE_WORK:-$root/dist/image-work}
mkdir -p "$work"

# host_appliance builds the appliance for this machine, to check configs with this checkout.
host_appliance() {
  (cd "$root" && CGO_ENABLED=0 go build -o "$work/appliance-host" ./cmd/appliance) ||
    die "could not build the appliance for this machine"
  echo "$work/appliance-host"
}

# prepare_site_config sets site_config to a checked copy of the user's config; with none, the
# image is generic (no config baked in: it boots into the setup state, docs/setup.md). A config
# `appliance check` rejects never reaches an image.
prepare_site_config() {
  [ -n "${site_config:-}" ] || return 0
  local app
  app=$(host_appliance)
  [ -r "$site_config" ] || die "cannot read config $site_config"
  # Checked where the user keeps it, so errors name their file and line.
  if ! "$app" check --config "$site_config" >"$work/site.check" 2>&1; then
    cat "$work/site.check" >&2
    die "refusing to build: \`appliance check\` rejects $site_config"
  fi
  cp "$site_config" "$work/site.toml"
  chmod 600 "$work/site.toml"
  site_config=$work/site.toml
}

# kernel: "ours" (image/kernel, scripts/build-kernel) or "stock" (gokrazy's kernel.arm64 and
# kernel.rpi, pinned in image/*/builddir: the fallback until ours has booted on real Pi 4 and 5
# hardware, docs/kernels.md).
kernel=${kernel:-ours}

# prepare_kernel T fills $work/kernel-T with the package gok takes as KernelPackage: our Image
# (checked against image/kernel/SHA256SUMS, then unpacked: the Pi firmware and systemd-boot both
# load a raw arm64 Image), the board's cmdline.txt and config.txt, and on the Pi the device trees.
prepare_kernel() {
  local t=$1 k=$root/image/kernel dir=$work/kernel-$1
  (cd "$k" && sha256sum --quiet -c SHA256SUMS >&2) ||
    die "image/kernel does not match its SHA256SUMS: run scripts/build-kernel (or git checkout image/kernel)"
  rm -rf "$dir"
  mkdir -p "$dir"
  gzip -dc "$k/Image.gz" >"$dir/vmlinuz"
  cp "$k/boot/$t/cmdline.txt" "$k/boot/$t/config.txt" "$dir/"
  [ "$t" != pi ] || cp "$k"/*.dtb "$dir/"
  printf 'module %s\n\ngo 1.22\n' "$our_kernel_pkg" >"$dir/go.mod"
  printf '// Package kernel is empty: gok takes the files beside it.\npackage kernel\n' >"$dir/kernel.go"
  local bd=$work/$t/builddir/$our_kernel_pkg
  mkdir -p "$bd"
  printf 'module gokrazy/build/%s\n\ngo 1.22\n\nrequire %s v0.0.0-00010101000000-000000000000\n\nreplace %s => %s\n' \
    "$t" "$our_kernel_pkg" "$our_kernel_pkg" "$dir" >"$bd/go.mod"
}
our_kernel_pkg=github.com/officeedge/kernel

# prepare_password sets password_file, making a random one on first use. It guards gokrazy's
# update API (reachable from the LAN only); keep it: updates need it.
prepare_password() {
  password_file=${password_file:-$root/image/local/http-password.txt}
  if [ ! -s "$password_file" ]; then
    mkdir -p "$(dirname "$password_file")"
    (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$password_file")
    echo "${0##*/}: made a new update password in $password_file (keep it for scripts/update-box)" >&2
  fi
}

# prepare_instance T [UPDATE_URL] fills image/T into $work/T: config.json with the site config,
# version and password baked in, and a builddir that builds the appliance from this checkout.
prepare_instance() {
  local t=$1 update_url=${2:-}
  [ -f "$root/image/$t/config.json" ] || die "no instance image/$t"
  rm -rf "${work:?}/$t"
  mkdir -p "$work/$t"
  cp -r "$root/image/$t/builddir" "$work/$t/" 2>/dev/null || true
  local bd=$work/$t/builddir/github.com/officeedge/appliance
  mkdir -p "$bd"
  cat >"$bd/go.mod" <<EOF
module gokrazy/build/github.com/officeedge/appliance

go 1.26

require github.com/officeedge/appliance v0.0.0-00010101000000-000000000000

replace github.com/officeedge/appliance => $root
EOF
  cp "$root/go.sum" "$bd/go.sum"
  local kflags=() # the templates name gokrazy's stock kernels
  case $kernel in
    ours) prepare_kernel "$t"; kflags=(-kernel-package "$our_kernel_pkg") ;;
    stock) ;;
    *) die "--kernel must be ours or stock, not $kernel" ;;
  esac
  (cd "$root/image/tools" && go run ./instance -template "$root/image/$t/config.json" \
    -out "$work/$t/config.json" ${site_config:+-config "$site_config"} "${kflags[@]}" -version "$version" \
    -build-time "$build_time" -password-file "$password_file" ${update_url:+-update-url "$update_url"}) ||
    die "could not fill in instance $t"
}

# grow_boot_fat IMG remakes the FAT boot partition (partition 1) of IMG to fill its partition.
# gok writes a FAT exactly as big as its files (0 bytes free, 16 root entries): a person could
# not put appliance.toml on the card (docs/setup.md). The files are copied out, the partition
# formatted whole (FAT16, as gok's) and the files copied back, then read back and compared.
# (gokrazy's updates write the boot partition whole again, as tight: see docs/setup.md. gok's
# MBR boot code, which points at the kernel's sectors, serves only a PC's BIOS boot: the VM
# boots UEFI and the Pi its firmware, both reading the FAT.)
grow_boot_fat() {
  local img=$1 start sectors at dir
  command -v partx >/dev/null || PATH=$PATH:/sbin:/usr/sbin
  command -v mformat >/dev/null || die "mformat not found: apt-get install mtools"
  start=$(partx -g -o START -n 1 "$img" | tr -d ' ')
  sectors=$(partx -g -o SECTORS -n 1 "$img" | tr -d ' ')
  [ -n "$start" ] && [ -n "$sectors" ] || die "no partition 1 in $img"
  at="$img@@$(( start * 512 ))"
  dir=$(mktemp -d "$work/bootfat.XXXXXX")
  mkdir "$dir/old" "$dir/new"
  # MTOOLS_SKIP_CHECK: the partition's geometry is not a floppy's; mtools need not complain.
  MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "$at" ::/ "$dir/old/" &&
    MTOOLS_SKIP_CHECK=1 mformat -i "$at" -T "$sectors" -h 64 -s 32 -H "$start" -v GOKRAZY :: &&
    MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "$at" "$dir/old/"* ::/ &&
    MTOOLS_SKIP_CHECK=1 mcopy -s -m -i "$at" ::/ "$dir/new/" &&
    diff -r "$dir/old" "$dir/new" >&2 ||
    die "could not remake the boot partition of $img with room to spare (files in $dir)"
  rm -rf "$dir"
}

# --- The VM under qemu with user networking (scripts/vm-test, scripts/vm-setup) ---

vm_efi=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd

# vm_require: dies unless qemu-system-aarch64 and its UEFI firmware are installed.
vm_require() {
  command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 not installed (see scripts/apt-packages.txt)"
  [ -r "$vm_efi" ] || die "$vm_efi missing: apt-get install qemu-efi-aarch64"
}

# free_port: a free local TCP port for a forward.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return; fi
  done
  die "no free local port"
}

ip2int() { local IFS=.; set -- $1; echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }
int2ip() { echo "$(( $1 >> 24 & 255 )).$(( $1 >> 16 & 255 )).$(( $1 >> 8 & 255 )).$(( $1 & 255 ))"; }
# slirp_host A.B.C.D/N: the address qemu's user network takes for itself (the "other end"):
# the network's first address, or its second when the box has the first.
slirp_host() {
  local a len=${1#*/} net
  a=$(ip2int "${1%/*}"); net=$(( a & ((0xffffffff << (32 - len)) & 0xffffffff) ))
  if [ $(( net + 1 )) = "$a" ]; then int2ip $(( net + 2 )); else int2ip $(( net + 1 )); fi
}
slirp_net() { # A.B.C.D/N: qemu's net= and host= for the user network the box sits in
  local a len=${1#*/}
  a=$(ip2int "${1%/*}")
  echo "net=$(int2ip $(( a & ((0xffffffff << (32 - len)) & 0xffffffff) )))/$len,host=$(slirp_host "$1")"
}

# vm_netdev ID A.B.C.D/N [HOSTPORT:GUESTPORT...]: qemu's -netdev for a user network with the
# box at A.B.C.D/N, and forwards from 127.0.0.1:HOSTPORT to the box's GUESTPORT. restrict=on:
# the guest reaches nothing outside; only the forwards reach in.
vm_netdev() {
  local id=$1 box=$2 fwd="" p
  shift 2
  for p in "$@"; do fwd+=",hostfwd=tcp:127.0.0.1:${p%%:*}-${box%/*}:${p#*:}"; done
  echo "user,id=$id,restrict=on,$(slirp_net "$box")$fwd"
}

# vm_start IMG SERIAL LOG NETDEV...: boots IMG under qemu-system-aarch64 (software emulation,
# UEFI) in the background, one virtio NIC per NETDEV in order (the guest's eth0, eth1...), the
# serial console into the file SERIAL, qemu's own output into LOG; sets vm_pid. romfile= keeps
# qemu from looking for a PXE option ROM (efi-virtio.rom), which the boot does not need.
vm_start() {
  local img=$1 serial=$2 log=$3 nd id args=()
  shift 3
  : >"$serial" # emptied now: qemu truncates an earlier run's only once it has started
  for nd in "$@"; do
    id=${nd#*id=}; id=${id%%,*}
    args+=(-netdev "$nd" -device "virtio-net-pci,netdev=$id,romfile=")
  done
  qemu-system-aarch64 -machine virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -bios "$vm_efi" \
    -drive "file=$img,format=raw,if=virtio" "${args[@]}" \
    -serial "file:$serial" -monitor none -display none </dev/null >"$log" 2>&1 &
  vm_pid=$!
}

# vm_stop: stops the VM vm_start began (SIGTERM, then SIGKILL if qemu has not gone within
# 10 s: bounded too). What the guest had written to its disk is in IMG afterwards.
vm_stop() {
  [ -n "${vm_pid:-}" ] || return 0
  if kill "$vm_pid" 2>/dev/null; then
    for _ in $(seq 1 50); do
      kill -0 "$vm_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$vm_pid" 2>/dev/null || true
  fi
  wait "$vm_pid" 2>/dev/null || true
  vm_pid=""
}
