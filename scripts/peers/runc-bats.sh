#!/usr/bin/env bash
# Run runc 1.1.5's own integration suite (tests/integration/*.bats) against a
# runtime: ocipy by default, or any runc-compatible binary.
#
#   scripts/peers/runc-bats.sh [RUNTIME] [FILE.bats ...]     (as root)
#
# The suite comes from Debian's runc source package (fetched once into
# $WORK, with a deb-src entry added for the fetch and removed after); nothing
# of it is kept in this repository. What it needs besides: bats, jq, gawk, a
# busybox image (made here from busybox-static), and stand-ins written here
# for runc's contrib programs recvtty and seccompagent (Go programs the
# suite would build). It runs under a pseudo-terminal (tests run `runc run`
# with terminal: true in the foreground), and one run at a time on a machine
# (fixed container ids and cgroup paths): a flock serialises runs.
# Results: $WORK/out/NAME.tap, and a summary on stdout. docs/compat.md says
# which tests runc itself fails on such a machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNTIME=${1:-$repo/.venv/bin/ocipy}
[ $# -gt 0 ] && shift
case $RUNTIME in /*) ;; */*) RUNTIME=$PWD/$RUNTIME ;; *) RUNTIME=$(command -v "$RUNTIME") ;; esac
WORK=${WORK:-/var/tmp/ocipy-peers}
src=$WORK/runc-1.1.5
mkdir -p "$WORK/out"

need=""
for p in bats jq gawk busybox-static util-linux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

if [ ! -d "$src/tests/integration" ]; then
    list=/etc/apt/sources.list.d/ocipy-peers-src.sources
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > "$list"
    trap 'rm -f "$list"; apt-get update -qq || true' EXIT
    apt-get update -qq
    (cd "$WORK" && apt-get source -qq --download-only runc=1.1.5+ds1-1+deb12u1 2>/dev/null \
        || apt-get source -qq --download-only runc)
    tar -C "$WORK" -xf "$WORK"/runc_1.1.5+ds1.orig.tar.xz
    rm -f "$list"; trap - EXIT; apt-get update -qq || true
fi

it=$src/tests/integration
# get-images.sh asks `go env GOARCH` and downloads images: answer amd64 and
# provide the busybox image (busybox-static with its applets, and the users
# the tests expect) so that nothing is downloaded.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\n[ "$1 $2" = "env GOARCH" ] && echo amd64 && exit 0\nexit 1\n' > "$WORK/bin/go"
chmod +x "$WORK/bin/go"
if [ ! -f "$it/testdata/busybox-amd64.tar.xz" ]; then
    img=$(mktemp -d)
    chmod 0755 "$img"  # the image's / (mktemp makes it 0700): other users must traverse it
    mkdir -p "$img"/{bin,etc,dev,proc,sys,tmp,root,home,var,usr/bin,usr/sbin,sbin}
    cp /bin/busybox "$img/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$img/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$img/etc/passwd"
    printf 'root:x:0:\ndaemon:x:1:\ntty:x:5:\nusers:x:100:\nnogroup:x:65534:\n' > "$img/etc/group"
    chmod 1777 "$img/tmp"
    tar -C "$img" -cJf "$it/testdata/busybox-amd64.tar.xz" .
    cp "$it/testdata/busybox-amd64.tar.xz" "$it/testdata/debian-amd64.tar.xz"
    rm -rf "$img"
fi
install -D -m 0755 "$here/recvtty.py" "$src/contrib/cmd/recvtty/recvtty"
install -D -m 0755 "$here/seccompagent.py" "$src/contrib/cmd/seccompagent/seccompagent"

name=$(basename "$RUNTIME")-$(date +%s)
cd "$it"
files=("$@")
[ ${#files[@]} -eq 0 ] && files=(*.bats)
exec 9>"$WORK/.lock"
flock 9
PATH=$WORK/bin:$PATH RUNC=$RUNTIME script -qec "bats --tap ${files[*]}" /dev/null < /dev/null > "$WORK/out/$name.tap" 2>&1 || true
echo "$WORK/out/$name.tap: $(grep -c '^ok' "$WORK/out/$name.tap") ok, $(grep -c '^not ok' "$WORK/out/$name.tap") not ok"
grep '^not ok' "$WORK/out/$name.tap" || true
