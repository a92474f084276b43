"""The overlay-mounted snapshots of an image show the tree `umoci unpack` makes of it.

Compared: type, mode, uid/gid, size, content hash, symlink target, device
numbers, mtime of non-directories, xattrs (other than trusted.overlay.*),
and the hardlink groups.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from image_fixtures import build_layout, dir_tar, entry  # noqa: E402

from ocipy.storage.snapshots import Snapshots, unmount  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="overlay mounts and umoci's ownership need root")]


def full_tree(root: Path) -> tuple[dict[str, tuple[Any, ...]], list[list[str]]]:
    out: dict[str, tuple[Any, ...]] = {}
    groups: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    groups.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k) for k in os.listxattr(p) if not k.startswith("trusted.overlay.")}
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, extra, mtime,
                        sorted(xattrs.items()))
    return out, sorted(sorted(g) for g in groups.values() if len(g) > 1)


def images(busybox: bytes) -> dict[str, list[Any]]:
    base = [entry("etc", "dir", mode=0o750, uid=5, gid=6), entry("etc/a", data=b"a", xattrs={"user.k": "v"}),
            entry("etc/b", data=b"b", uid=3), entry("etc/sub", "dir"), entry("etc/sub/deep", data=b"d"),
            entry("d", "dir", mode=0o711), entry("d/x", data=b"x"), entry("d/sub", "dir"),
            entry("d/sub/y", data=b"y"), entry("f", data=b"file"), entry("lnk", "symlink", link="etc/a"),
            entry("fifo", "fifo"), entry("dev", "dir"), entry("dev/null", "char", mode=0o666, major=1, minor=3),
            entry("g", "dir"), entry("g/h", data=b"h"), entry("g/h2", "hardlink", link="g/h")]
    return {
        "busybox-whiteouts": [busybox, [entry("bin/.wh.ls"), entry("bin/.wh.cat"), entry("etc/.wh.group"),
                                        entry("home", "dir"), entry("home/.wh..wh..opq"),
                                        entry("home/app", "dir", mode=0o750, uid=1000, gid=1000),
                                        entry("home/app/notes", data=b"hello\n", uid=1000, gid=1000),
                                        entry("home/app/hard", "hardlink", link="home/app/notes")]],
        "opaque-and-replace": [base, [entry("d/.wh..wh..opq"), entry("d/new", data=b"n", mode=0o600),
                                      entry("f", "dir", mode=0o700), entry("f/in", data=b"i"),
                                      entry("lnk", data=b"no longer a link"), entry("etc/sub/more", data=b"m")],
                               [entry("f", data=b"file again"), entry(".wh.g"), entry("g/new", data=b"g"),
                                entry("d", "dir", mode=0o755), entry("d/third", data=b"3")]],
        "hardlinks-across-layers": [base, [entry("hl", "hardlink", link="etc/b"),
                                           entry("newdir/hl2", "hardlink", link="d/sub/y"),
                                           entry("etc/b2", "hardlink", link="etc/b")],
                                    [entry("etc/.wh.a"), entry("x", "hardlink", link="f"),
                                     entry("etc/.wh.b2"), entry("y", "hardlink", link="hl")]],
        "same-layer-whiteouts": [base, [entry("d/added", data=b"1"), entry(".wh.d"), entry(".wh.g"),
                                        entry("g/again", data=b"2"), entry("f2", data=b"f2"), entry(".wh.f2"),
                                        entry("etc/.wh.sub"), entry("etc/sub", "dir", mode=0o700),
                                        entry("etc/sub/new", data=b"3"), entry("dev/.wh.null")]],
    }


@pytest.mark.parametrize("name", ["busybox-whiteouts", "opaque-and-replace", "hardlinks-across-layers",
                                  "same-layer-whiteouts"])
def test_overlay_mount_matches_umoci_unpack(tmp_path: Path, busybox_rootfs: Path, name: str) -> None:
    layers = images(dir_tar(busybox_rootfs))[name]
    layout = build_layout(tmp_path / "layout", layers, tag="img")
    _, manifest = layout.resolve_image(layout.resolve("img"))
    config = layout.read_config(manifest["config"])
    s = Snapshots(str(tmp_path / "store"), "overlay")
    chains = s.prepare(layout, manifest, config)
    root = Path(s.mount(chains, str(tmp_path / "c")))
    try:
        subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'layout'}:img", str(tmp_path / "umoci")],
                       check=True, capture_output=True, timeout=120)
        ours, theirs = full_tree(root), full_tree(tmp_path / "umoci" / "rootfs")
        diff = {k: (ours[0].get(k), theirs[0].get(k)) for k in set(ours[0]) | set(theirs[0])
                if ours[0].get(k) != theirs[0].get(k)}
        assert diff == {}
        assert ours[1] == theirs[1]
    finally:
        unmount(str(tmp_path / "c"))
