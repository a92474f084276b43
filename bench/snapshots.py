"""Snapshots: preparing a multi-layer image's snapshots vs `umoci unpack` of it, and mount times.

    .venv/bin/python bench/snapshots.py [--iterations N] [--out FILE]

The image (built once with ocipy's CLI): ~60 MB of /usr/share, 2,000
generated small files, and a third layer with whiteouts, an opaque
directory and hardlinks.  Every tool unpacks into a fresh directory; cold
prepares start from an empty snapshots/ dir, a warm one finds every snapshot.
Prepare and unpack are timed as whole processes (interpreter start included);
mounts in-process (the lead's `image run` calls them as a library).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OCIPY, VENV_PY, median, timed  # noqa: E402
from imaging import _copy_subset, _generate  # noqa: E402

PREPARE = r"""
import sys
from ocipy.image.store import Layout
from ocipy.storage.snapshots import Snapshots
layout = Layout.open(sys.argv[1])
_, manifest = layout.resolve_image(layout.resolve("img"))
config = layout.read_config(manifest["config"])
Snapshots(sys.argv[2], sys.argv[3]).prepare(layout, manifest, config)
"""


def build(work: str) -> str:
    layout = os.path.join(work, "layout")
    ref = f"oci:{layout}:img"
    subprocess.run([OCIPY, "image", "init", layout], check=True)
    subprocess.run([OCIPY, "image", "new", ref], check=True)
    base = os.path.join(work, "base")
    _copy_subset("/usr/share", os.path.join(base, "usr/share"), 60_000_000, ("doc", "man", "locale"))
    gen = os.path.join(work, "gen")
    _generate(os.path.join(gen, "srv/gen"), 8_000_000, 2000)
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.size = kind, link, 0o644, len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
        names = sorted(os.listdir(os.path.join(base, "usr/share")))
        for n in names[:5]:
            add(f"usr/share/.wh.{n}")
        add("srv/gen/.wh..wh..opq")
        add("srv/gen/new", data=b"new\n")
        add("usr/share/linked", tarfile.LNKTYPE, link="srv/gen/new")
    extra = os.path.join(work, "top.tar")
    with open(extra, "wb") as f:
        f.write(top.getvalue())
    for src in (base, gen, extra):
        subprocess.run([OCIPY, "image", "add-layer", ref, src], check=True)
    return layout


def build_deep(work: str, n: int) -> str:
    """An image of `n` one-file layers (uncompressed), written with the layout API."""
    import hashlib

    from ocipy.image.build import set_tag
    from ocipy.image.store import Layout
    from ocipy.spec import image as spec

    path = os.path.join(work, f"deep{n}")
    layout = Layout.init(path)
    descs, diff_ids = [], []
    for i in range(n):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo(f"layer{i:03d}")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"%03d" % i))
        tar = buf.getvalue()
        digest, size = layout.write_blob(tar)
        descs.append({"mediaType": spec.MEDIA_LAYER, "digest": digest, "size": size})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    cfg = {"architecture": spec.host_platform()["architecture"], "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
    mdesc = layout.put_json({"schemaVersion": 2, "mediaType": spec.MEDIA_MANIFEST,
                             "config": layout.put_json(cfg, spec.MEDIA_CONFIG), "layers": descs}, spec.MEDIA_MANIFEST)
    set_tag(layout, "img", mdesc)
    return path


def mount_times(layout_path: str, snaps: str, work: str, runs: int) -> tuple[list[float], list[float]]:
    from ocipy.image.store import Layout
    from ocipy.storage.snapshots import Snapshots, unmount

    lay = Layout.open(layout_path)
    _, manifest = lay.resolve_image(lay.resolve("img"))
    config = lay.read_config(manifest["config"])
    s = Snapshots(snaps, "overlay")
    chains = s.prepare(lay, manifest, config)
    mount, umount = [], []
    for i in range(runs):
        c = os.path.join(work, f"c{os.path.basename(layout_path)}{i}")
        t = time.perf_counter()
        s.mount(chains, c)
        mount.append(time.perf_counter() - t)
        t = time.perf_counter()
        unmount(c)
        umount.append(time.perf_counter() - t)
    return mount, umount


def fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-snapshots-", dir="/var/tmp")
    rows: list[tuple[str, float, str]] = []
    try:
        layout = build(work)
        out = os.path.join(work, "out")
        snaps = os.path.join(work, "snapshots")
        times: dict[str, list[float]] = {k: [] for k in ("umoci", "flat", "cold", "warm")}
        for _ in range(args.iterations):
            times["umoci"].append(timed(["umoci", "unpack", "--image", f"{layout}:img", fresh(out)]).seconds)
            times["flat"].append(timed([OCIPY, "image", "unpack", f"oci:{layout}:img", fresh(out)]).seconds)
            fresh(snaps)
            times["cold"].append(timed([VENV_PY, "-c", PREPARE, layout, snaps, "overlay"]).seconds)
            times["warm"].append(timed([VENV_PY, "-c", PREPARE, layout, snaps, "overlay"]).seconds)
        fresh(out)
        from ocipy.image.store import Layout
        from ocipy.storage.snapshots import Snapshots

        lay = Layout.open(layout)
        _, manifest = lay.resolve_image(lay.resolve("img"))
        config = lay.read_config(manifest["config"])
        s = Snapshots(snaps, "overlay")
        chains = s.prepare(lay, manifest, config)
        mount, umount = mount_times(layout, snaps, work, 20)
        deep: dict[int, list[float]] = {}
        for n in (80, 300):
            deep[n] = mount_times(build_deep(work, n), snaps, work, 20)[0]
        copy = []
        sc = Snapshots(snaps, "copy")
        for i in range(3):
            c = os.path.join(work, f"copy{i}")
            t = time.perf_counter()
            sc.mount(chains, c)
            copy.append(time.perf_counter() - t)
        du = sum(s.disk_usage(c) for c in chains)
        rows = [("umoci unpack (flat copy)", median(times["umoci"]), "process"),
                ("ocipy image unpack (flat copy)", median(times["flat"]), "process"),
                ("ocipy snapshots prepare, cold (3 snapshots)", median(times["cold"]), "process"),
                ("ocipy snapshots prepare, warm (all present)", median(times["warm"]), "process"),
                ("overlay mount of the 3 snapshots", median(mount), "in-process"),
                ("unmount (MNT_DETACH)", median(umount), "in-process"),
                ("overlay mount, 80 one-file layers (mount(2), /proc/self/fd lowers)", median(deep[80]),
                 "in-process"),
                ("overlay mount, 300 one-file layers (fsconfig lowerdir+)", median(deep[300]), "in-process"),
                ("copy driver: merged copy of the 3 snapshots", median(copy), "in-process")]
        lines = [f"# Snapshots ({time.strftime('%Y-%m-%d')}, {os.uname().release}, {os.cpu_count()} CPUs)", "",
                 f"Image: 3 layers, {du / 1e6:.1f} MB of snapshots on disk; median of {args.iterations} runs "
                 "(mounts: 20, copy: 3).", "",
                 "| operation | median | timed as |", "|---|---:|---|"]
        lines += [f"| {name} | {secs * 1000:.1f} ms | {how} |" for name, secs, how in rows]
        lines += ["", f"ratio cold prepare / umoci unpack: {median(times['cold']) / median(times['umoci']):.2f}",
                  "", "```json", json.dumps({k: [round(x, 4) for x in v] for k, v in times.items()}), "```"]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    finally:
        subprocess.run(["sh", "-c", f"grep -o ' {work}[^ ]*' /proc/self/mountinfo | xargs -r -n1 umount -l"],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
