"""Hostile layers against a non-root unpack (and the same layers as root).

A non-root user cannot chown and keeps its directories u+rwx while the
layers go in, fixing their modes at the end; an earlier ocipy re-resolved
those directories by path at that point, and os.chmod followed a symlink a
later entry had planted, changing a file *outside* the rootfs (issue 13,
defect 1).  Every scenario here points something at a file or directory
outside that the unpacking user owns -- so the kernel would allow the change
-- and asserts that nothing outside changed: not mode, owner, mtime, link
count, content or the set of names.

The non-root runs are the real CLI under ``setpriv`` as nobody (65534); the
root runs go through the Python API.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_fixtures import build_layout, entry, leftovers

from ocipy import api_image
from ocipy.errors import ImageError
from support.helpers import REPO, nobody_command, nobody_view

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set up files owned by another user"),
              pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")]

NOBODY = 65534


def _state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything about every name below (and of) `root`, directories included."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for p in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(p)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink,
                                             st.st_mtime_ns, extra)
    return out


class Scene:
    """/tmp/X (0755) holding outside/ (owned by nobody), layout/, work/ (the bundle's parent)."""

    def __init__(self, base: Path, user: str) -> None:
        self.base = base
        self.user = user
        self.outside = base / "outside"
        self.outside.mkdir()
        self.secret = self.outside / "secret"
        self.secret.write_text("do not touch\n")
        (self.outside / "sub").mkdir()
        (self.outside / "sub" / "keep").write_text("keep\n")
        for p in (self.outside, self.secret, self.outside / "sub", self.outside / "sub" / "keep"):
            os.chown(p, NOBODY, NOBODY)
            os.utime(p, ns=(1_000_000_000, 1_000_000_000))
        os.chmod(self.secret, 0o644)
        self.work = base / "work"
        self.work.mkdir()
        self.bundle = self.work / "bundle"
        self.layout_path = base / "layout"

    def unpack(self, layers: list[Any], **kw: Any) -> tuple[bool, str]:
        """(succeeded, error) of unpacking `layers` as this scene's user."""
        build_layout(self.layout_path, layers, **kw)
        ref = f"oci:{self.layout_path}:latest"
        self.before = _state(self.outside)
        if self.user == "root":
            try:
                api_image.unpack(ref, str(self.bundle))
            except ImageError as e:
                return False, str(e)
            return True, ""
        for p in (self.layout_path, self.work):
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(p)], check=True)
        view, cleanup = nobody_view()
        try:
            proc = subprocess.run(nobody_command(view, "image", "unpack", ref, str(self.bundle)),
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
        finally:
            cleanup()
        assert "Traceback" not in proc.stderr
        return proc.returncode == 0, proc.stderr.strip()

    def check_untouched(self) -> None:
        assert _state(self.outside) == self.before, "something outside the rootfs changed"
        assert sorted(os.listdir(self.base)) == ["layout", "outside", "work"]
        assert leftovers(self.work) == []


@pytest.fixture(params=["nobody", "root"])
def scene(request: pytest.FixtureRequest) -> Iterator[Scene]:
    base = Path(tempfile.mkdtemp(prefix="ocipy-rootless-", dir="/tmp"))
    os.chmod(base, 0o755)  # nobody must reach the layout and the work dir
    try:
        yield Scene(base, request.param)
    finally:
        shutil.rmtree(base)


def test_deferred_directory_mode_does_not_follow_a_later_symlink(scene: Scene) -> None:
    # x -> y; x/d (mode 0500: a non-root unpack keeps it 0700 until the end) is y/d;
    # then y/d (a different name, so no duplicate) becomes a symlink to the outside file.
    # The end-of-layer fix-up of "x/d" must not chmod what y/d points to now.
    ok, err = scene.unpack([[entry("y", "dir"), entry("x", "symlink", link="y"),
                             entry("x/d", "dir", mode=0o500, mtime=123),
                             entry("y/d", "symlink", link=str(scene.secret))]])
    assert ok, err
    scene.check_untouched()
    assert os.readlink(scene.bundle / "rootfs" / "y" / "d") == str(scene.secret)


def test_deferred_directory_mode_does_not_follow_into_an_outside_directory(scene: Scene) -> None:
    ok, err = scene.unpack([[entry("y", "dir"), entry("x", "symlink", link="y"),
                             entry("x/d", "dir", mode=0o555, mtime=123),
                             entry("y/d", "symlink", link=str(scene.outside / "sub"))]])
    assert ok, err
    scene.check_untouched()


def test_deferred_mode_across_layers_does_not_follow_a_symlink(scene: Scene) -> None:
    # the fix-up of layer 1's 0500 directory happens after layer 2 replaced it by a symlink
    ok, err = scene.unpack([[entry("d", "dir", mode=0o500)],
                            [entry(".wh.d"), entry("d", "symlink", link=str(scene.secret))]])
    assert ok, err
    scene.check_untouched()
    assert os.path.islink(scene.bundle / "rootfs" / "d")


def test_lower_layer_read_only_directory_is_still_filled_and_fixed_at_the_end(scene: Scene) -> None:
    ok, err = scene.unpack([[entry("ro", "dir", mode=0o555), entry("ro/a", data=b"a")],
                            [entry("ro/b", data=b"b"), entry("ro/.wh.a")]])
    assert ok, err
    scene.check_untouched()
    ro = scene.bundle / "rootfs" / "ro"
    assert sorted(os.listdir(ro)) == ["b"]
    assert stat.S_IMODE(os.stat(ro).st_mode) == 0o555


def test_node_attributes_do_not_follow_a_symlink(scene: Scene) -> None:
    # a fifo's mode/owner/times are set by name without following it
    ok, err = scene.unpack([[entry("l", "symlink", link=str(scene.secret)),
                             entry("p", "fifo", mode=0o600, mtime=5)],
                            [entry("l", "fifo", mode=0o600, mtime=5)]])
    assert ok, err
    scene.check_untouched()
    assert stat.S_ISFIFO(os.lstat(scene.bundle / "rootfs" / "l").st_mode)


def test_hardlink_through_a_symlink_to_outside_is_refused(scene: Scene) -> None:
    # l -> /…/outside; l/secret is resolved inside the root, where it does not exist
    ok, err = scene.unpack([[entry("l", "symlink", link=str(scene.outside)),
                             entry("h", "hardlink", link="l/secret")]])
    assert not ok and "does not exist in the rootfs" in err, err
    scene.check_untouched()
    assert not scene.bundle.exists()


def test_hardlink_to_a_symlink_links_the_symlink_itself(scene: Scene) -> None:
    ok, err = scene.unpack([[entry("l", "symlink", link=str(scene.secret)),
                             entry("h", "hardlink", link="l", mode=0o777)]])
    assert ok, err
    scene.check_untouched()
    rootfs = scene.bundle / "rootfs"
    assert os.readlink(rootfs / "h") == str(scene.secret)
    assert os.lstat(rootfs / "h").st_ino == os.lstat(rootfs / "l").st_ino


@pytest.mark.parametrize("link", ["abs", "rel"])
def test_whiteout_through_a_symlink_stays_inside(scene: Scene, link: str) -> None:
    target = str(scene.outside) if link == "abs" else "../" * 12 + str(scene.outside).lstrip("/")
    ok, err = scene.unpack([[entry("l", "symlink", link=target)],
                            [entry("l/.wh.secret"), entry("l/.wh.sub")]])
    assert ok, err
    scene.check_untouched()


@pytest.mark.parametrize("link", ["abs", "rel"])
def test_opaque_whiteout_through_a_symlink_stays_inside(scene: Scene, link: str) -> None:
    target = str(scene.outside) if link == "abs" else "../" * 12 + str(scene.outside).lstrip("/")
    ok, err = scene.unpack([[entry("l", "symlink", link=target)],
                            [entry("l/.wh..wh..opq"), entry("l/sub/.wh..wh..opq")]])
    assert ok, err
    scene.check_untouched()


def test_whiteout_of_a_directory_holding_symlinks_out_removes_only_the_links(scene: Scene) -> None:
    ok, err = scene.unpack([[entry("d", "dir", mode=0o500), entry("d/out", "symlink", link=str(scene.outside)),
                             entry("d/sub", "dir"), entry("d/sub/f", "symlink", link=str(scene.secret)),
                             entry("e", "dir"), entry("e/out", "symlink", link=str(scene.outside / "sub"))],
                            [entry(".wh.d"), entry("e/.wh..wh..opq")]])
    assert ok, err
    scene.check_untouched()
    rootfs = scene.bundle / "rootfs"
    assert not (rootfs / "d").exists() and os.listdir(rootfs / "e") == []


def test_failed_unpack_after_read_only_directories_leaves_nothing(scene: Scene) -> None:
    # the config names a user the rootfs does not have: the error comes after every layer
    # was applied and the 0500/0000 modes fixed, so the cleanup must get through them
    ok, err = scene.unpack([[entry("ro", "dir", mode=0o500), entry("ro/f", data=b"x", mode=0o400),
                             entry("ro/none", "dir", mode=0o000), entry("ro/none/g", data=b"y")]],
                           config={"User": "nosuchuser"})
    assert not ok and "nosuchuser" in err, err
    scene.check_untouched()
    assert not scene.bundle.exists()


def test_hostile_layer_property_holds_as_nobody() -> None:
    # test_image_layer_property.py's hypothesis run, as nobody (deferred directory modes,
    # no chown): the sentinel next to the rootfs belongs to nobody, so only ocipy stops a change
    here = Path(__file__).resolve().parent
    base = Path(tempfile.mkdtemp(prefix="ocipy-prop-", dir="/tmp"))
    try:
        os.chown(base, NOBODY, NOBODY)
        view, cleanup = nobody_view()
        try:
            tests = view / here.relative_to(REPO) / "test_image_layer_property.py"
            proc = subprocess.run(
                nobody_command(view, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'pytest'}",
                               str(tests), python=True),
                capture_output=True, text=True, timeout=600, cwd=base, env={**os.environ, "HOME": str(base)})
        finally:
            cleanup()
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "1 passed" in proc.stdout
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
