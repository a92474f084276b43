"""The applier leaves out an lstat, chown or chmod only where it cannot change the result:
these attack each shortcut (setgid directories, default ACLs, a umask, names reached
through a symlink of the same layer, implicit parents)."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from image_fixtures import build_layout, entry

from ocipy import api_image

pytestmark = pytest.mark.integration
IS_ROOT = os.geteuid() == 0


def unpack(tmp_path: Path, layers: list, bundle: Path | None = None) -> Path:  # type: ignore[type-arg]
    build_layout(tmp_path / "layout", layers)
    bundle = bundle or tmp_path / "bundle"
    api_image.unpack(f"oci:{tmp_path / 'layout'}:latest", str(bundle))
    return bundle / "rootfs"


@pytest.mark.skipif(not IS_ROOT, reason="chown to other groups needs root")
def test_files_in_a_setgid_directory_get_the_layers_group(tmp_path: Path) -> None:
    # a new file in a setgid directory takes the directory's group: a tar gid of 0 must be set
    rootfs = unpack(tmp_path, [[entry("s", "dir", mode=0o2775, gid=50), entry("s/f", data=b"f", gid=0),
                                entry("s/l", "symlink", link="f", gid=0),
                                entry("s/g", data=b"g", uid=0, gid=50)]])
    assert stat.S_IMODE(os.lstat(rootfs / "s").st_mode) == 0o2775
    assert os.lstat(rootfs / "s" / "f").st_gid == 0
    assert os.lstat(rootfs / "s" / "l").st_gid == 0
    assert os.lstat(rootfs / "s" / "g").st_gid == 50


def _default_acl_nothing_for_group_and_others() -> bytes:
    # the kernel's posix_acl xattr: version 2, then (tag, perm, id): USER_OBJ rwx, GROUP_OBJ ---, OTHER ---
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                           for tag, perm in ((0x01, 7), (0x04, 0), (0x20, 0)))


def test_modes_are_exact_under_a_default_acl(tmp_path: Path) -> None:
    # the bundle's parent has a default ACL: new inodes get its mask, not the umask's
    parent = tmp_path / "acl"
    parent.mkdir()
    try:
        os.setxattr(parent, "system.posix_acl_default", _default_acl_nothing_for_group_and_others())
    except OSError as e:
        pytest.skip(f"no POSIX ACLs on {tmp_path}: {e.strerror}")
    probe = parent / "probe"
    os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o644))
    assert stat.S_IMODE(os.stat(probe).st_mode) == 0o600, "the default ACL did not apply"
    os.unlink(probe)
    rootfs = unpack(tmp_path, [[entry("top", data=b"t", mode=0o644), entry("d", "dir"),
                                entry("d/f", data=b"f", mode=0o755)]], parent / "bundle")
    assert stat.S_IMODE(os.stat(rootfs / "top").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(rootfs / "d" / "f").st_mode) == 0o755


def test_modes_are_exact_under_a_strict_umask(tmp_path: Path) -> None:
    build_layout(tmp_path / "layout", [[entry("a", data=b"a", mode=0o644), entry("d", "dir", mode=0o755),
                                        entry("d/x", data=b"x", mode=0o775), entry("d/p", "fifo", mode=0o666)]])
    code = ("import os, sys; os.umask(0o077); from ocipy import api_image; "
            "api_image.unpack(sys.argv[1], sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, f"oci:{tmp_path / 'layout'}:latest", str(tmp_path / "b")],
                   check=True, timeout=60)
    rootfs = tmp_path / "b" / "rootfs"
    assert stat.S_IMODE(os.stat(rootfs / "a").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(rootfs / "d").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(rootfs / "d" / "x").st_mode) == 0o775
    assert stat.S_IMODE(os.lstat(rootfs / "d" / "p").st_mode) == 0o666


def test_a_name_created_through_a_symlink_of_the_same_layer_is_replaced(tmp_path: Path) -> None:
    # y is new in this layer, x -> y: x/f and y/f are one name; the later entry wins
    # (layer.md "Changeset over existing files") and nothing fails with EEXIST
    rootfs = unpack(tmp_path, [[entry("y", "dir"), entry("x", "symlink", link="y"),
                                entry("x/f", data=b"one"), entry("y/f", data=b"two"),
                                entry("x/s", "symlink", link="one"), entry("y/s", "symlink", link="two")]])
    assert (rootfs / "y" / "f").read_bytes() == b"two"
    assert os.readlink(rootfs / "y" / "s") == "two"


def test_an_implicit_parent_in_a_new_directory_is_replaced_by_a_later_file(tmp_path: Path) -> None:
    rootfs = unpack(tmp_path, [[entry("a", "dir"), entry("a/b/c", data=b"c"), entry("a/b", data=b"file")]])
    assert (rootfs / "a" / "b").read_bytes() == b"file"


def test_an_empty_rootfs_counts_as_new_for_the_first_layer_only(tmp_path: Path) -> None:
    # the second layer's top-level names exist already: they must be replaced, not refused
    rootfs = unpack(tmp_path, [[entry("f", data=b"1"), entry("l", "symlink", link="f")],
                               [entry("f", data=b"2"), entry("l", "symlink", link="g")]])
    assert (rootfs / "f").read_bytes() == b"2"
    assert os.readlink(rootfs / "l") == "g"
