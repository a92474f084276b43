"""Workloads 4 and 5: image unpack (ocipy vs umoci vs tar) and registry pull/push (ocipy vs skopeo)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

from common import OCIPY, Bench, Row, Skip, rotated, sh, timed

MB = 1000 * 1000

# skopeo (containers/image) keeps a blob-info cache in /var/lib/containers/cache when run as root;
# with it, a push to a new repository can mount blobs from an earlier one instead of uploading
# them.  Every copy (skopeo's and ocipy's alike) runs with an empty private tmpfs there.
CACHE_WRAP = ["unshare", "-m", "sh", "-c",
              'mount -t tmpfs bench-cache /var/lib/containers/cache 2>/dev/null; exec "$@"', "sh"]  # fmt: skip


def _copy_subset(src: str, dst: str, limit: int, skip: tuple[str, ...]) -> tuple[int, int]:
    """Copy regular files, symlinks and dirs of `src` (sorted walk) until `limit` bytes; (bytes, entries)."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        entries += 1
        for fn in sorted(filenames):
            s = os.path.join(dirpath, fn)
            d = os.path.join(dst, rel, fn)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            elif os.path.isfile(s):
                shutil.copy2(s, d)
                total += os.path.getsize(s)
            else:
                continue
            entries += 1
            if total >= limit:
                return total, entries
    return total, entries


def _generate(dst: str, size: int, files: int) -> tuple[int, int]:
    """Synthetic tree (when no source tree exists): `files` files of mixed, half-compressible content."""
    per = max(1, size // files)
    total = 0
    for i in range(files):
        d = os.path.join(dst, f"d{i // 500:03d}", f"e{i // 50 % 10}")
        os.makedirs(d, exist_ok=True)
        n = per if i % 7 else per * 3
        with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
            f.write(os.urandom(n // 2) + bytes(n - n // 2))
        total += n
    return total, files


def _tree_stats(path: str) -> tuple[int, int]:
    total = entries = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        entries += 1 + len(filenames)
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if not os.path.islink(p):
                try:
                    total += os.path.getsize(p)
                except OSError:
                    pass
    return total, entries


def _layer_blob(layout: str, tag: str) -> str:
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    for m in index["manifests"]:
        if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            algo, hexd = m["digest"].split(":")
            with open(os.path.join(layout, "blobs", algo, hexd)) as f:
                manifest = json.load(f)
            algo, hexd = manifest["layers"][-1]["digest"].split(":")
            return os.path.join(layout, "blobs", algo, hexd)
    raise RuntimeError(f"{layout}: no tag {tag}")


def _build_layouts(b: Bench, args: argparse.Namespace, large: bool) -> tuple[str, list[tuple[str, str, str, str]]]:
    """The image layout with one image per (size, compression); [(label, tag, comp, desc)]."""
    layout = b.path("layout")
    if not os.path.isdir(layout):
        timed([OCIPY, "image", "init", layout], errlog=b.errlog)
    sizes = [("small", args.small_mb * MB)]
    if large:
        sizes.append(("large", 0))
    images = []
    for label, size in sizes:
        src = b.path("src", label)
        if not os.path.isdir(src):
            os.makedirs(src)
            if os.path.isdir(args.source_tree):
                if label == "small":
                    lib = os.path.join(args.source_tree, "lib", "python3.11")
                    base = lib if os.path.isdir(lib) else args.source_tree
                    _copy_subset(base, src, size, ("test", "config-3.11-x86_64-linux-gnu"))
                else:
                    os.rmdir(src)
                    src = args.source_tree  # read-only use
            else:
                b.results.note(f"{args.source_tree} is missing: synthetic files")
                _generate(src, size or 1000 * MB, 600 if label == "small" else 60000)
        nbytes, nent = _tree_stats(src)
        for comp in args.compressions.split(","):
            tag = f"{label}-{comp}"
            t0 = time.monotonic()
            timed([OCIPY, "image", "new", f"oci:{layout}:{tag}"], errlog=b.errlog)
            timed([OCIPY, "image", "add-layer", "--compress", comp, f"oci:{layout}:{tag}", src], errlog=b.errlog)
            blob = os.path.getsize(_layer_blob(layout, tag))
            desc = (f"{nbytes / MB:.0f} MB, {nent} entries, {comp} blob {blob / MB:.0f} MB"
                    f" (built by `ocipy image add-layer` in {time.monotonic() - t0:.0f} s)")
            images.append((label, tag, comp, desc))
    return layout, images


def _unpack_cmd(tool: str, out: str, layout: str, tag: str, comp: str, blob: str) -> list[str]:
    if tool == "ocipy":
        return [OCIPY, "image", "unpack", f"oci:{layout}:{tag}", out]
    if tool == "umoci":
        return ["umoci", "unpack", "--image", f"{layout}:{tag}", out]
    flags = ["-xzf"] if comp == "gzip" else ["--zstd", "-xf"]
    return ["tar", *flags, blob, "-C", os.path.join(out, "rootfs")]


def unpack(b: Bench, args: argparse.Namespace, large: bool, iterations: int | None) -> None:
    layout, images = _build_layouts(b, args, large)
    out_root = b.path("unpacked")
    os.makedirs(out_root, exist_ok=True)
    tools = ["ocipy", "umoci", "tar"]
    for label, tag, comp, desc in images:
        its = iterations or ((2 if b.quick else 5) if label == "small" else 3)
        blob = _layer_blob(layout, tag)
        samples: dict[str, list[float]] = {t: [] for t in tools}
        notes = []
        broken: set[str] = set()
        for i in range(its):
            for tool in rotated(tools, i):
                if tool in broken:
                    continue
                out = os.path.join(out_root, f"{tool}-{tag}-{i}")
                if tool == "tar":
                    os.makedirs(os.path.join(out, "rootfs"))
                sh(["sync"])
                r = timed(_unpack_cmd(tool, out, layout, tag, comp, blob), check=False, errlog=b.errlog)
                if r.rc == 0:
                    samples[tool].append(r.seconds)
                else:
                    broken.add(tool)
                    with open(b.errlog, "rb") as f:
                        last = f.read()[-300:].decode(errors="replace").strip().splitlines()
                    notes.append(f"{tool} fails (exit {r.rc}: {last[-1][-160:] if last else ''})")
                shutil.rmtree(out, ignore_errors=True)
        note = desc + ("; " + "; ".join(notes) if notes else "")
        note += "; umoci also writes its mtree manifest" if "umoci" not in broken else ""
        b.results.add(Row("unpack", f"{label} {comp}", "s", samples, target=("umoci", 0.7), note=note))
    shutil.rmtree(out_root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_registry(b: Bench) -> str:
    exe = "/usr/bin/docker-registry"
    if not os.path.exists(exe):
        raise Skip(f"{exe} is not installed")
    port = _free_port()
    storage = b.path("registry-storage")
    os.makedirs(storage, exist_ok=True)
    cfg = b.path("registry.yml")
    with open(cfg, "w") as f:
        f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    logf = open(b.path("registry.log"), "ab")
    proc = subprocess.Popen([exe, "serve", cfg], stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    logf.close()

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    b.on_cleanup("docker-registry", stop)
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as r:
                if r.status == 200:
                    return host
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {proc.returncode}; see {b.path('registry.log')}") from None
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not answer on /v2/")


def registry(b: Bench, args: argparse.Namespace, iterations: int) -> None:
    layout = b.path("layout")
    try:
        blob = _layer_blob(layout, "small-gzip")
    except (OSError, RuntimeError):
        _build_layouts(b, argparse.Namespace(**{**vars(args), "compressions": "gzip"}), large=False)
        blob = _layer_blob(layout, "small-gzip")
    size = os.path.getsize(blob)
    host = _start_registry(b)
    src = f"oci:{layout}:small-gzip"
    seed = f"docker://{host}/bench/seed:latest"
    timed([*CACHE_WRAP, OCIPY, "copy", "--dest-tls-verify=false", src, seed], errlog=b.errlog)
    copy = {"ocipy": [OCIPY, "copy"], "skopeo": ["skopeo", "copy", "-q"]}
    pull: dict[str, list[float]] = {t: [] for t in copy}
    push: dict[str, list[float]] = {t: [] for t in copy}
    unpack_from: dict[str, list[float]] = {t: [] for t in copy}  # skopeo: skopeo copy + umoci unpack
    out_root = b.path("pulled")
    os.makedirs(out_root, exist_ok=True)
    for i in range(iterations + 1):
        for tool in rotated(list(copy), i):
            out = os.path.join(out_root, f"{tool}-{i}")
            r = timed([*CACHE_WRAP, *copy[tool], "--src-tls-verify=false", seed, f"oci:{out}:latest"],
                      errlog=b.errlog)  # fmt: skip
            shutil.rmtree(out, ignore_errors=True)
            dest = f"docker://{host}/bench/push-{tool}-{i}:latest"  # a new repository every time
            s = timed([*CACHE_WRAP, *copy[tool], "--dest-tls-verify=false", src, dest], errlog=b.errlog)
            # straight into a bundle: ocipy in one command, the peers back to back
            bundle = os.path.join(out_root, f"{tool}-{i}-bundle")
            if tool == "ocipy":
                argv = [OCIPY, "image", "unpack", seed, bundle]
            else:
                argv = ["sh", "-c", f"skopeo copy -q --src-tls-verify=false {seed} oci:{out}:x && "
                        f"umoci unpack --image {out}:x {bundle}"]
            u = timed([*CACHE_WRAP, *argv], errlog=b.errlog)
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            if i:  # the first round warms the page cache and the registry
                pull[tool].append(r.seconds)
                push[tool].append(s.seconds)
                unpack_from[tool].append(u.seconds)
    what = f"one image with the small gzip layer ({size / MB:.0f} MB blob), loopback docker-registry"
    b.results.add(Row("registry", "pull docker:// → oci:", "s", pull, target=("skopeo", 1.0),
                      note=what + "; fresh oci: dir per pull"))
    b.results.add(Row("registry", "unpack docker:// → bundle", "s", unpack_from, target=("skopeo", 1.0),
                      note="ocipy image unpack docker://… against skopeo copy + umoci unpack run back to back"))
    b.results.add(Row("registry", "push oci: → docker://", "s", push,
                      note="a new repository per push, so no blob is skipped as already present"))
    b.results.note("registry: every copy (ocipy and skopeo) runs in `unshare -m` with an empty tmpfs on "
                   "/var/lib/containers/cache, so skopeo's blob-info cache cannot mount blobs from earlier "
                   "pushes; the ~3 ms wrapper is paid by both tools")
    shutil.rmtree(out_root, ignore_errors=True)
