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

# prepare_site_config sets site_config to a checked copy of the user's config (default: the
# example config). A config `appliance check` rejects never reaches an image.
prepare_site_config() {
  local app
  app=$(host_appliance)
  if [ -z "${site_config:-}" ]; then
    "$app" example-config >"$work/site.toml"
  else
    [ -r "$site_config" ] || die "cannot read config $site_config"
    cp "$site_config" "$work/site.toml"
  fi
  # Checked where the user keeps it, so errors name their file and line.
  if ! "$app" check --config "${site_config:-$work/site.toml}" >"$work/site.check" 2>&1; then
    cat "$work/site.check" >&2
    die "refusing to build: \`appliance check\` rejects ${site_config:-the example config}"
  fi
  chmod 600 "$work/site.toml"
  site_config=$work/site.toml
}

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
  (cd "$root/image/tools" && go run ./instance -template "$root/image/$t/config.json" \
    -out "$work/$t/config.json" -config "$site_config" -version "$version" \
    -build-time "$build_time" -password-file "$password_file" ${update_url:+-update-url "$update_url"}) ||
    die "could not fill in instance $t"
}
