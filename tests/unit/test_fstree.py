"""ocipy.fstree: walks and removals of any depth, through fds, never following symlinks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocipy import fstree

DEPTH = 3000  # deeper than Python's recursion limit, and a path longer than PATH_MAX


def make_deep(root: Path, depth: int = DEPTH) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(depth):
        os.mkdir("d", dir_fd=fd)
        with open(os.open(f"f{i % 3}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"x")
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)


@pytest.fixture
def deep_tmp() -> Iterator[Path]:
    # not tmp_path: pytest later removes old temp dirs recursively, which fails on deep trees
    path = Path(tempfile.mkdtemp(prefix="ocipy-fstree-"))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def test_walk_visits_every_level_with_few_fds(deep_tmp: Path) -> None:
    tmp_path = deep_tmp
    assert sys.getrecursionlimit() < DEPTH
    make_deep(tmp_path)
    seen: list[str] = []
    peak = [0]

    def visit(rel: str, fd: int, entries: list[os.DirEntry[str]]) -> list[str]:
        seen.append(rel)
        peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))
        level = len(seen) - 1
        files = sorted(e.name for e in entries if not e.is_dir())
        assert files == ([f"f{level % 3}"] if level < DEPTH else [])
        return fstree.subdirs(entries)

    left: list[str] = []
    top = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = len(os.listdir("/proc/self/fd"))
    try:
        fstree.walk(top, visit, lambda pfd, name, rel: left.append(rel))
    finally:
        os.close(top)
    assert len(seen) == DEPTH + 1 and seen[0] == "" and seen[-1] == "/".join(["d"] * DEPTH)
    assert left == list(reversed(seen[1:]))  # children are left before their parents
    assert peak[0] <= before + fstree.MAX_OPEN + 4
    assert len(os.listdir("/proc/self/fd")) == before  # nothing leaked


def test_rmtree_removes_a_deep_tree(deep_tmp: Path) -> None:
    tmp_path = deep_tmp
    (tmp_path / "x").mkdir()
    make_deep(tmp_path / "x")
    fstree.rmtree(str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    fstree.rmtree(str(tmp_path / "x"))  # missing is fine


def test_rmtree_never_follows_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "out").symlink_to(outside)
    (tree / "top").symlink_to(outside)
    fstree.rmtree(str(tree))
    assert not tree.exists()
    assert (outside / "keep").read_text() == "keep"
    link = tmp_path / "link"
    link.symlink_to(outside)
    fstree.rmtree(str(link))  # the link goes, not what it points to
    assert not link.is_symlink() and (outside / "keep").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_rmtree_fix_perms_empties_read_only_dirs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "ro" / "none").mkdir(parents=True)
    (tree / "ro" / "f").write_text("x")
    (tree / "ro" / "none" / "g").write_text("y")
    os.chmod(tree / "ro" / "none", 0)
    os.chmod(tree / "ro", 0o500)
    with pytest.raises(PermissionError):
        fstree.rmtree(str(tree))
    fstree.rmtree(str(tree), fix_perms=True)
    assert not tree.exists()


def test_open_beneath_refuses_symlinks_and_takes_long_paths(deep_tmp: Path) -> None:
    tmp_path = deep_tmp
    from ocipy.errors import KernelError

    make_deep(tmp_path, 2500)  # "d/…/d" is 4,999 bytes: longer than PATH_MAX
    top = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = fstree.open_beneath(top, "/".join(["d"] * 2500))
        assert os.listdir(fd) == []
        os.close(fd)
        (tmp_path / "l").symlink_to(tmp_path / "d")
        with pytest.raises(KernelError):
            fstree.open_beneath(top, "l/d")
        with pytest.raises(KernelError):
            fstree.open_beneath(top, "d/../..")
    finally:
        os.close(top)
