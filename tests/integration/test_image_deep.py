"""A directory 2,000 levels deep (a legal ~4 KB path) unpacks, diffs and repacks (issue 13, defect 5).

Python's recursive walkers raise RecursionError at such a depth and whole
paths are near PATH_MAX, so everything must go through directory fds without
recursion.  The trees are compared with GNU find (which walks with fds), not
with anything of ocipy's, and with umoci's rendering of the same image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_fixtures import OCIPY, build_layout, entry, leftovers, make_tar, ocipy

pytestmark = pytest.mark.integration

DEPTH = 2000
DEEP = "/".join(["d"] * DEPTH)  # 3,999 bytes
# umoci takes ~55 s for 1,000 levels and ~11x that per doubling (it re-resolves every
# path from the root for each component), so the side-by-side comparison is shallower
UMOCI_DEPTH = 400


def deep_layer(depth: int = DEPTH) -> list[tuple[object, bytes]]:
    items = []
    for i in range(1, depth + 1):
        mode = 0o711 if i == depth // 2 else 0o755
        items.append(entry("/".join(["d"] * i), "dir", mode=mode, mtime=1_600_000_000 + i))
    deep = "/".join(["d"] * depth)
    items += [entry(deep + "/f", data=b"bottom\n", mode=0o640, uid=7, gid=8),
              entry(deep + "/l", "symlink", link="../../../f"),
              entry(deep + "/h", "hardlink", link=deep + "/f"),
              entry(deep + "/p", "fifo", mode=0o600)]
    return items  # type: ignore[return-value]


def listing(root: Path, mtimes: bool = True) -> list[str]:
    """Every entry below `root`: path, type, mode, owner; size, target, links (and mtime) of the others."""
    other = r"%P %y %m %U:%G %s %l %n" + (r" %T@\n" if mtimes else r"\n")
    out = subprocess.run(["find", str(root), "-mindepth", "1",
                          "(", "-type", "d", "-printf", r"%P %y %m %U:%G\n", ")", "-o", "-printf", other],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return sorted(out.splitlines())


def read_deep(root: Path, rel: str) -> bytes:
    """Read `rel` below `root` one component at a time (the whole path is too long for open())."""
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        with os.fdopen(ffd, "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def write_deep(root: Path, rel: str, data: bytes) -> None:
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in parts[:-1]:
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        with os.fdopen(ffd, "wb") as f:
            f.write(data)
    finally:
        os.close(fd)


@pytest.fixture
def base() -> Iterator[Path]:
    # not tmp_path: pytest's own cleanup walks recursively and would fail on the deep tree
    path = Path(tempfile.mkdtemp(prefix="ocipy-deep-", dir="/tmp"))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def test_deep_tree_unpacks(base: Path) -> None:
    assert sys.getrecursionlimit() < DEPTH  # the depth really is beyond Python's recursion
    build_layout(base / "layout", [deep_layer()])
    ocipy("image", "unpack", f"oci:{base / 'layout'}:latest", str(base / "ocipy"))
    rootfs = base / "ocipy" / "rootfs"
    assert read_deep(rootfs, DEEP + "/f") == b"bottom\n"
    assert read_deep(rootfs, DEEP + "/h") == b"bottom\n"
    mine = listing(rootfs)
    assert len(mine) == DEPTH + 4
    prefix = DEEP + "/"
    assert [line.removeprefix(prefix) for line in mine if line.startswith(prefix)] == [
        "f f 640 7:8 7  2 1600000000.0000000000", "h f 640 7:8 7  2 1600000000.0000000000",
        "l l 777 0:0 10 ../../../f 1 1600000000.0000000000", "p p 600 0:0 0  1 1600000000.0000000000"]
    half = "/".join(["d"] * (DEPTH // 2))
    assert f"{half} d 711 0:0" in mine
    # the mtree record of the bundle has every path
    import json

    assert len(json.loads((base / "ocipy" / "ocipy-mtree.json").read_text())) == DEPTH + 4


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_deep_tree_unpacks_like_umoci(base: Path) -> None:
    build_layout(base / "layout", [deep_layer(UMOCI_DEPTH)])
    ocipy("image", "unpack", f"oci:{base / 'layout'}:latest", str(base / "ocipy"))
    subprocess.run(["umoci", "unpack", "--image", f"{base / 'layout'}:latest", str(base / "umoci")],
                   check=True, capture_output=True, timeout=300)
    assert listing(base / "ocipy" / "rootfs") == listing(base / "umoci" / "rootfs")


def test_deep_tree_repacks_and_adds_as_a_layer(base: Path) -> None:
    ref = f"oci:{base / 'layout'}:latest"
    (base / "deep.tar").write_bytes(make_tar(deep_layer()))  # type: ignore[arg-type]
    ocipy("image", "init", str(base / "layout"))
    ocipy("image", "new", ref)
    ocipy("image", "add-layer", "--compress", "zstd", ref, str(base / "deep.tar"))
    ocipy("image", "unpack", ref, str(base / "b1"))
    rootfs = base / "b1" / "rootfs"
    # diff: change the bottom file, add one next to it
    write_deep(rootfs, DEEP + "/f", b"changed\n")
    write_deep(rootfs, DEEP + "/new", b"new\n")
    ocipy("image", "repack", f"oci:{base / 'layout'}:v2", str(base / "b1"))
    ocipy("image", "unpack", f"oci:{base / 'layout'}:v2", str(base / "b2"))
    assert read_deep(base / "b2" / "rootfs", DEEP + "/f") == b"changed\n"
    assert read_deep(base / "b2" / "rootfs", DEEP + "/new") == b"new\n"
    # (a layer's mtimes are whole seconds; the edited files' are not)
    assert listing(base / "b2" / "rootfs", mtimes=False) == listing(rootfs, mtimes=False)
    # generate: the deep rootfs as a new layer of a fresh image
    ocipy("image", "init", str(base / "l2"))
    ocipy("image", "new", f"oci:{base / 'l2'}:x")
    ocipy("image", "add-layer", f"oci:{base / 'l2'}:x", str(rootfs))
    ocipy("image", "unpack", f"oci:{base / 'l2'}:x", str(base / "b3"))
    assert listing(base / "b3" / "rootfs", mtimes=False) == listing(rootfs, mtimes=False)


def test_failed_deep_unpack_leaves_no_temp_dir(base: Path) -> None:
    work = base / "work"
    work.mkdir()
    bad = make_tar([entry("../escape", data=b"x")])
    build_layout(base / "layout", [deep_layer(), bad])
    proc = subprocess.run([OCIPY, "image", "unpack", f"oci:{base / 'layout'}:latest", str(work / "b")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "'..'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # unpack's progress: on a terminal only
    assert leftovers(work) == [] and not (work / "b").exists()
