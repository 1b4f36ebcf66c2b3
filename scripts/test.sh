#!/usr/bin/env bash
# The whole test suite, as root on a Debian machine: installs what the tests need, vets, and
# runs every package's tests (unit tests and the namespace tests against the real kernel),
# then the scripts' own checks in scripts/check.d/ (image boot, package install).
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: the namespace tests need root: run with sudo" >&2; exit 1; }
bash scripts/setup.sh
export GOFLAGS=${GOFLAGS:--mod=mod}
test -z "$(gofmt -l .)" || { echo "test.sh: not gofmt'ed:"; gofmt -l .; exit 1; }
go vet ./...
go test -count=1 -timeout 30m ./...
shopt -s nullglob
for check in scripts/check.d/*; do
  echo "== $check"
  bash "$check"
done
