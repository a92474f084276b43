"""The userspace RESOLVE_IN_ROOT (for kernels or seccomp profiles without openat2) matches the kernel's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocipy.errors import KernelError
from ocipy.image.layers import rootdirs
from ocipy.linux import syscalls

PATHS = ["", ".", "a", "a/b", "a/b/../..", "..", "../../a", "abs", "abs/b", "rel", "rel/b", "up", "up/x",
         "chain", "chain/b", "loop", "loop/x", "dangling", "file", "file/x", "a/file", "missing/x",
         "a/b/c/../../b", "proc", "self/a/self/a/b", "deep/../a"]  # fmt: skip
FLAGS = [rootdirs.DIR_PATH, rootdirs.DIR_READ, rootdirs.DIR_READ | os.O_NOFOLLOW]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "a" / "b" / "c").mkdir(parents=True)
    (r / "a" / "file").write_text("x")
    (r / "file").write_text("x")
    (r / "deep").mkdir()
    (r / "abs").symlink_to("/a")  # absolute: from the root
    (r / "rel").symlink_to("a")
    (r / "up").symlink_to("../../../../..")  # clamped at the root
    (r / "chain").symlink_to("rel/../abs")
    (r / "loop").symlink_to("loop2")
    (r / "loop2").symlink_to("loop")
    (r / "dangling").symlink_to("nowhere")
    (r / "proc").symlink_to("/proc/self/root")  # not the host's: inside the root, it does not exist
    (r / "self").symlink_to(".")
    (tmp_path / "x").mkdir()  # what "up/x" would be on the host
    return r


def _open(fn, *args):  # type: ignore[no-untyped-def]
    try:
        fd = fn(*args)
    except KernelError as e:
        return ("error", e.errno)
    try:
        st = os.fstat(fd)
        return ("ok", st.st_dev, st.st_ino)
    finally:
        os.close(fd)


@pytest.mark.parametrize("flags", FLAGS)
def test_userspace_resolution_matches_openat2(root: Path, flags: int) -> None:
    rfd = os.open(root, rootdirs.DIR_PATH)
    try:
        how = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
        for path in PATHS:
            kernel = _open(syscalls.openat2, rfd, path or ".", flags, 0, how)
            mine = _open(rootdirs.resolve_in_root, rfd, path, flags)
            assert mine == kernel, path
    finally:
        os.close(rfd)


def test_applier_without_openat2(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # the hostile-layer property, with the kernel's resolution unavailable
    monkeypatch.setattr(rootdirs, "_kernel_resolves", lambda fd: False)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    import test_image_layer_property as prop

    prop.test_layers_never_touch_anything_outside_the_rootfs(tmp_path_factory)
