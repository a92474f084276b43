"""ocipy's snapshots have containerd's overlayfs snapshotter's keys and on-disk form.

A private containerd imports the same image (ocipy's oci-archive export) and
unpacks it with its overlayfs snapshotter.  Its committed snapshots are named
by chain id (config.md "Layer ChainID"): the names must be ocipy's, and each
layer's directory must hold what ocipy's does -- whiteouts as 0:0 character
devices, opaque directories as trusted.overlay.opaque=y, implicit parents
with the lower layers' metadata.  (Not compared: a hardlink to a lower
layer's file, which ocipy copies up and containerd 1.6 refuses -- layer.md:
"Extracting a layer with hardlink references to files outside of the layer
may fail".)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import OCIPY, Containerd, missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from image_fixtures import build_layout, entry  # noqa: E402

from ocipy.storage.snapshots import Snapshots  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: containerd mounts and unpacks as root"),
              pytest.mark.skipif(bool(missing("containerd", "ctr")), reason="containerd not installed")]

NS = "ocipy-snapshots"

LAYERS = [
    [entry("etc", "dir", mode=0o750, uid=5, gid=6), entry("etc/a", data=b"a"), entry("etc/b", data=b"b", uid=3),
     entry("etc/sub", "dir", mode=0o700), entry("etc/sub/deep", data=b"d"), entry("d", "dir", mode=0o711),
     entry("d/x", data=b"x"), entry("f", data=b"file"), entry("lnk", "symlink", link="etc/a"),
     entry("g", "dir"), entry("g/h", data=b"h", mode=0o600), entry("g/h2", "hardlink", link="g/h", mode=0o600)],  # as real tar writers record it
    [entry("etc/.wh.a"), entry("d/.wh..wh..opq"), entry("d/new", data=b"n"), entry("etc/sub/more", data=b"m"),
     entry("f", "dir"), entry("f/in", data=b"i"), entry(".wh.lnk")],
    [entry("f", data=b"file again"), entry(".wh.g"), entry("d", "dir", mode=0o755), entry("d/third", data=b"3")],
]


def layer_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode):
                extra = st.st_rdev
            opaque = None
            if stat.S_ISDIR(st.st_mode):
                try:
                    opaque = os.getxattr(p, "trusted.overlay.opaque")
                except OSError:
                    pass
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, extra, opaque)
    return out


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    daemon = Containerd(tmp_path / "ctd")
    try:
        daemon.start()
        yield daemon
    finally:
        for view in daemon.ctr("snapshots", "ls", namespace=NS).stdout.splitlines()[1:]:
            if view.split()[0].startswith("ocipy-view"):
                daemon.ctr("snapshots", "rm", view.split()[0], namespace=NS)
        daemon.stop()


def test_snapshots_match_containerd_overlayfs_snapshotter(tmp_path: Path, containerd: Containerd) -> None:
    layout = build_layout(tmp_path / "layout", LAYERS, tag="img")
    _, manifest = layout.resolve_image(layout.resolve("img"))
    config = layout.read_config(manifest["config"])
    archive = tmp_path / "img.tar"
    subprocess.run([OCIPY, "image", "export", f"oci:{layout.path}:img", f"oci-archive:{archive}:img"],
                   check=True, capture_output=True, timeout=60)
    imported = containerd.ctr("images", "import", "--snapshotter", "overlayfs", "--base-name", "ocipy.test/snap",
                              str(archive), namespace=NS)
    assert imported.returncode == 0, imported.stderr + containerd.log_tail()
    s = Snapshots(str(tmp_path / "store"), "overlay")
    chains = s.prepare(layout, manifest, config)
    # containerd names its committed snapshots by chain id, too
    listed = containerd.ctr("snapshots", "--snapshotter", "overlayfs", "ls", namespace=NS).stdout.splitlines()[1:]
    theirs = {line.split()[0] for line in listed if line.split()[-1] == "Committed"}
    assert theirs == set(chains)
    # and their directories, found through a view's mount options (top first)
    assert containerd.ctr("snapshots", "--snapshotter", "overlayfs", "view", "ocipy-view", chains[-1],
                          namespace=NS).returncode == 0
    mounts = containerd.ctr("snapshots", "--snapshotter", "overlayfs", "mounts", "/mnt", "ocipy-view",
                            namespace=NS).stdout
    lower = re.search(r"lowerdir=([^,\s]+)", mounts)
    assert lower is not None, mounts
    dirs = lower.group(1).split(":")
    assert len(dirs) == len(chains), mounts
    for chain, theirs_dir in zip(reversed(chains), dirs, strict=True):
        ours = layer_tree(Path(s.path(chain)) / "fs")
        other = layer_tree(Path(theirs_dir))
        diff = {k: (ours.get(k), other.get(k)) for k in set(ours) | set(other) if ours.get(k) != other.get(k)}
        assert diff == {}, f"layer {chain}: {diff}"
    shutil.rmtree(tmp_path / "store", ignore_errors=True)
