#!/usr/bin/env bash
# `make demo`: the main jobs of ocipy end to end on a built-in example.
#  1. a bundle from `ocipy spec` + a busybox rootfs, run as a container
#  2. a busybox image built with ocipy's image commands, run with `ocipy image run`
#  3. that image pushed to a local registry (Debian's docker-registry), then
#     pulled into a private image store and run in one step, and again warm
set -euo pipefail
cd "$(dirname "$0")/.."
OCIPY="$PWD/.venv/bin/ocipy"
PY="$PWD/.venv/bin/python"
WORK=$(mktemp -d /tmp/ocipy-demo.XXXXXX)
ROOT="$WORK/state"
export OCIPY_STORAGE="$WORK/storage"  # a private image store: the demo leaves none behind
REGISTRY_PID=""
cleanup() {
  "$OCIPY" --root "$ROOT" delete -f demo >/dev/null 2>&1 || true
  if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

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

step "3. Through a registry: push, then pull into the store and run in one step"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
printf '%s\n' "version: 0.1" "log: {level: error, accesslog: {disabled: true}}" \
    "storage: {filesystem: {rootdirectory: $WORK/registry/data}}" "http: {addr: 127.0.0.1:$PORT}" \
    > "$WORK/registry/config.yml"
/usr/bin/docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$OCIPY" image copy "oci:$L:busybox" "docker://127.0.0.1:$PORT/demo/busybox:1"
step "ocipy image run --rm 127.0.0.1:$PORT/demo/busybox:1   (not in the store yet: pulled first)"
"$OCIPY" --root "$ROOT" image run --rm --network none "127.0.0.1:$PORT/demo/busybox:1"
step "again, warm: the layers' snapshots are in the store; the rootfs is an overlay of them"
time "$OCIPY" --root "$ROOT" image run --rm --network none "127.0.0.1:$PORT/demo/busybox:1" \
    sh -c 'echo "rootfs: $(grep " / " /proc/mounts | cut -d" " -f1-3)"'
"$OCIPY" image ls
"$OCIPY" image rm "127.0.0.1:$PORT/demo/busybox:1" localhost/layout:busybox
"$OCIPY" image prune | cut -c1-40

printf '\ndemo finished: nothing left behind in %s\n' "$ROOT"
