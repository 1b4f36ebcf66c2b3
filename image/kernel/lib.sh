# Shared by scripts/build-kernel and scripts/check.d/kernel.sh (sourced, not run).
# Expects $root (the repository) to be set.

kernel_dir=$root/image/kernel
# The fragments checked line by line; gokrazy's addendum is not (olddefconfig rightly drops
# its x86 lines).
kernel_checked_fragments=(appliance boards trim)

# kernel_check_fragments CONFIG: every checked fragment line holds in CONFIG (a .config): `=n`
# means not built (absent, or "is not set"); any other value must be there exactly. Prints
# each line that does not hold and fails if any.
kernel_check_fragments() {
  local config=$1 f bad=0
  for f in "${kernel_checked_fragments[@]}"; do
    awk -v frag="fragments/$f.config" '
      NR == FNR { if (match($0, /^CONFIG_[A-Za-z0-9_]+=/)) have[substr($0, 1, RLENGTH - 1)] = substr($0, RLENGTH + 1); next }
      /^CONFIG_/ {
        n = index($0, "="); opt = substr($0, 1, n - 1); want = substr($0, n + 1)
        got = (opt in have) ? have[opt] : "n"
        if (want == "n" ? (got == "y" || got == "m") : (got != want)) {
          printf "%s:%d: %s=%s wanted, the kernel has %s\n", frag, FNR, opt, want, (opt in have) ? opt "=" got : "it not set"; bad = 1
        }
      }
      END { exit bad }' "$config" "$kernel_dir/fragments/$f.config" || bad=1
  done
  return $bad
}

# kernel_inputs prints the hash of what the committed kernel was built from: the fragments and
# the pinned source and device-tree lines of scripts/build-kernel.
kernel_inputs() {
  { cat "$kernel_dir"/fragments/*.config
    grep -E '^(src_[a-z0-9]+=|kernel_dtbs=)' "$root/scripts/build-kernel"
  } | sha256sum | cut -d' ' -f1
}
