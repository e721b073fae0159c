#!/usr/bin/env bash
# Bare-machine check: the README's `make test`, run as a newcomer would, in a clean python:3.11-slim
# container with only make and git added, as root (the container's default user).
#
# It tests a fresh clone of HEAD (commit first: uncommitted changes are not in it), with ../shared
# copied beside it, both copied (not mounted) into the container under $BARE_CHECK_DIR (default
# /root/bare-check: a private home, mode 0700, the harder case for the embedded PostgreSQL; its
# parent must exist in the image). The Docker engine comes from ../shared/tools/docker-offline,
# set up if none answers. Prints the wall time of `make test`; the log is kept on the host.
#
#   scripts/bare_machine_check.sh
#   BARE_CHECK_DIR=/srv/textclf scripts/bare_machine_check.sh     # an ordinary directory
#   scripts/bare_machine_check.sh PYTEST_ADDOPTS="-k browser"     # arguments go to `make test`
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$repo/../shared" && pwd)
inside=${BARE_CHECK_DIR:-/root/bare-check}
export PATH=/usr/bin:$PATH # docker-offline's Debian client

docker info >/dev/null 2>&1 || "$shared/tools/docker-offline/docker-offline" setup

work=$(mktemp -d /tmp/bare-check.XXXXXX)
chmod 755 "$work" # copied in with its mode: an ordinary directory, not a private one
git clone -q "$repo" "$work/main"
cp -a "$shared" "$work/shared"
echo "bare-machine check of $(git -C "$work/main" log -1 --format='%h %s')"
echo "in python:3.11-slim at $inside; log: $work/make-test.log"

name=bare-check-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC2016 # expanded inside the container
script='set -e
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make git >/dev/null
cd "$0/main"
start=$(date +%s)
status=0
make test "$@" || status=$?
echo "make test: exit $status, wall time $(($(date +%s) - start)) s"
exit $status'
docker create --name "$name" python:3.11-slim bash -c "$script" "$inside" "$@" >/dev/null
docker cp "$work/." "$name:$inside"
status=0
docker start -a "$name" 2>&1 | tee "$work/make-test.log" || status=$?
grep -E '^=+ .* in [0-9.]+s' "$work/make-test.log" | tail -1 || true
exit "$status"
