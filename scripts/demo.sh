#!/usr/bin/env bash
# `make demo`: the main jobs of ocipy end to end on a built-in example.
#  1. a bundle from `ocipy spec` + a busybox rootfs, run as a container
#  2. a busybox image built with ocipy's image commands, run with `ocipy image run`
set -euo pipefail
cd "$(dirname "$0")/.."
OCIPY="$PWD/.venv/bin/ocipy"
PY="$PWD/.venv/bin/python"
WORK=$(mktemp -d /tmp/ocipy-demo.XXXXXX)
ROOT="$WORK/state"
trap '"$OCIPY" --root "$ROOT" delete -f demo >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. A bundle: busybox rootfs + \`ocipy spec\`"
"$PY" tests/support/rootfs.py "$WORK/bundle/rootfs"
(cd "$WORK/bundle" && "$OCIPY" spec)
# No terminal in a demo that may run without one; the process shows what it got.
set_args() {  # set_args JSON-ARRAY: the bundle's process.args
  "$PY" -c 'import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = json.loads(sys.argv[2])
json.dump(config, open(path, "w"), indent=2)' "$WORK/bundle/config.json" "$1"
}
set_args '["sh", "-c", "echo \"hostname: $(hostname)\"; echo \"my pid: $$\"; echo processes:; ps; echo mounts:; cat /proc/mounts; grep Cap /proc/self/status"]'
step "ocipy run demo"
"$OCIPY" --root "$ROOT" run -b "$WORK/bundle" demo

step "create / start / state / delete"
set_args '["sleep", "30"]'
"$OCIPY" --root "$ROOT" create -b "$WORK/bundle" demo
"$OCIPY" --root "$ROOT" state demo
"$OCIPY" --root "$ROOT" start demo
"$OCIPY" --root "$ROOT" exec demo sh -c 'echo "exec joined the container: pid $$, $(ps | wc -l) lines of ps"'
"$OCIPY" --root "$ROOT" list
"$OCIPY" --root "$ROOT" delete -f demo

step "2. An image built with ocipy's image commands"
L="$WORK/layout"
"$OCIPY" image init "$L"
"$OCIPY" image new "oci:$L:busybox"
"$OCIPY" image add-layer "oci:$L:busybox" "$WORK/bundle/rootfs"
"$OCIPY" image config "oci:$L:busybox" --cmd /bin/sh --cmd -c --cmd 'echo "hello from an ocipy-built image, running as $(id -un) in $(pwd)"' \
    --workdir /home/app --user app --label org.example.demo=yes
"$OCIPY" image ls "$L"
"$OCIPY" image inspect "oci:$L:busybox" | head -20

step "ocipy image run --rm oci:$L:busybox"
"$OCIPY" --root "$ROOT" image run --rm "oci:$L:busybox"

step "export as an oci-archive and a docker-archive"
"$OCIPY" image export "oci:$L:busybox" "oci-archive:$WORK/busybox-oci.tar"
"$OCIPY" image export "oci:$L:busybox" "docker-archive:$WORK/busybox-docker.tar:example/busybox:latest"
ls -l "$WORK"/*.tar

printf '\ndemo finished: nothing left behind in %s\n' "$ROOT"
