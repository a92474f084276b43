"""Hostile layers: nothing is ever created, changed or read outside the target rootfs.

One test per attack.  Each asserts that the directory next to the rootfs
(`outside`), the host's /etc/passwd and the bundle's parent are untouched,
and, where the layer is refused, that the error names the entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_fixtures import (
    build_layout,
    compress,
    entry,
    leftovers,
    make_tar,
    ocipy,
    sha256,
    snapshot,
)

from ocipy import api_image
from ocipy.errors import ImageError

pytestmark = pytest.mark.integration
IS_ROOT = os.geteuid() == 0


def _passwd_state() -> tuple[int, int, str]:
    st = os.stat("/etc/passwd")
    with open("/etc/passwd", "rb") as f:
        return st.st_nlink, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest()


class Scene:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.outside = tmp / "outside"
        self.outside.mkdir()
        (self.outside / "secret").write_text("do not touch\n")
        (self.outside / "sub").mkdir()
        self.work = tmp / "work"
        self.work.mkdir()
        self.bundle = self.work / "bundle"
        self.layout_path = tmp / "layout"
        self.before = snapshot(self.outside)
        self.passwd = _passwd_state()

    def layout(self, layers: list[Any], **kw: Any) -> str:
        build_layout(self.layout_path, layers, **kw)
        return f"oci:{self.layout_path}:latest"

    def check_untouched(self, refused: bool) -> None:
        assert snapshot(self.outside) == self.before, "something outside the rootfs changed"
        assert _passwd_state() == self.passwd
        assert sorted(os.listdir(self.tmp)) == ["layout", "outside", "work"]
        assert leftovers(self.work) == []
        assert leftovers(self.layout_path) == []
        if refused:
            assert not self.bundle.exists(), "a half-written bundle was left"

    def refuse(self, ref: str, *words: str, **kw: Any) -> str:
        with pytest.raises(ImageError) as exc:
            api_image.unpack(ref, str(self.bundle), **kw)
        msg = str(exc.value)
        assert "\n" not in msg
        for w in words:
            assert w in msg, f"{w!r} not in error {msg!r}"
        self.check_untouched(refused=True)
        return msg


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    yield Scene(tmp_path)


def test_dotdot_name_is_refused(scene: Scene) -> None:
    ref = scene.layout([[entry("ok"), entry("../../outside/pwned", data=b"x")]])
    scene.refuse(ref, "../../outside/pwned", "'..'")


def test_dotdot_inside_name_is_refused(scene: Scene) -> None:
    ref = scene.layout([[entry("a", "dir"), entry("a/../../outside/pwned", data=b"x")]])
    scene.refuse(ref, "a/../../outside/pwned")


def test_absolute_name_is_refused(scene: Scene) -> None:
    target = str(scene.outside / "pwned")
    ref = scene.layout([[entry(target, data=b"x")]])
    scene.refuse(ref, target, "absolute")


def test_symlink_then_write_through_same_layer_stays_inside(scene: Scene) -> None:
    # an absolute symlink to the real `outside`, then a file "through" it
    ref = scene.layout([[entry("evil", "symlink", link=str(scene.outside)),
                         entry("evil/pwned", data=b"PWNED"),
                         entry("rel", "symlink", link="../../../../../../../../" + str(scene.outside)),
                         entry("rel/secret", data=b"PWNED")]])
    api_image.unpack(ref, str(scene.bundle))
    scene.check_untouched(refused=False)
    rootfs = scene.bundle / "rootfs"
    # RESOLVE_IN_ROOT: the symlink is followed as if rootfs were /, so the file lands inside
    inside = rootfs / str(scene.outside).lstrip("/")
    assert (inside / "pwned").read_bytes() == b"PWNED"
    assert (inside / "secret").read_bytes() == b"PWNED"
    assert os.readlink(rootfs / "evil") == str(scene.outside)


def test_symlink_then_write_through_across_layers_stays_inside(scene: Scene) -> None:
    ref = scene.layout([
        [entry("etc", "dir"), entry("etc/link", "symlink", link=str(scene.outside / "sub"))],
        [entry("etc/link/pwned", data=b"PWNED"), entry("etc/link/../secret", data=b"x")][:1],
    ])
    api_image.unpack(ref, str(scene.bundle))
    scene.check_untouched(refused=False)
    inside = scene.bundle / "rootfs" / str(scene.outside / "sub").lstrip("/")
    assert (inside / "pwned").read_bytes() == b"PWNED"


def test_symlink_replaced_by_file_is_not_written_through(scene: Scene) -> None:
    # layer.md "changeset over existing files": the symlink is removed, not followed
    ref = scene.layout([
        [entry("secret", "symlink", link=str(scene.outside / "secret"))],
        [entry("secret", data=b"PWNED")],
    ])
    api_image.unpack(ref, str(scene.bundle))
    scene.check_untouched(refused=False)
    assert (scene.bundle / "rootfs" / "secret").read_bytes() == b"PWNED"
    assert not (scene.bundle / "rootfs" / "secret").is_symlink()


def test_hardlink_to_absolute_host_path_is_refused(scene: Scene) -> None:
    ref = scene.layout([[entry("passwd", "hardlink", link="/etc/passwd")]])
    scene.refuse(ref, "'passwd'", "/etc/passwd")


def test_hardlink_with_dotdot_is_refused(scene: Scene) -> None:
    ref = scene.layout([[entry("x", "hardlink", link="../../../../../../../etc/passwd")]])
    scene.refuse(ref, "'x'", "..")


def test_hardlink_through_symlink_resolves_inside(scene: Scene) -> None:
    # s -> /etc on the host would make s/passwd the host's file; inside the root it does not exist
    ref = scene.layout([[entry("s", "symlink", link="/etc"),
                         entry("h", "hardlink", link="s/passwd")]])
    scene.refuse(ref, "'h'", "does not exist in the rootfs")


@pytest.mark.skipif(not IS_ROOT, reason="device nodes need root")
def test_device_node_is_created_inside_and_never_written_through(scene: Scene) -> None:
    backing = scene.outside / "disk.img"
    backing.write_bytes(b"\0" * 65536)
    scene.before = snapshot(scene.outside)
    try:
        loop = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no loop devices")
    try:
        rdev = os.stat(loop).st_rdev
        ref = scene.layout([
            [entry("disk", "block", mode=0o660, major=os.major(rdev), minor=os.minor(rdev)),
             entry("null", "char", mode=0o666, major=1, minor=3),
             entry("fifo", "fifo")],
            # the next layer writes a file where the device and the fifo are: they must be
            # replaced, never opened (writing to "disk" would write the outside file)
            [entry("disk", data=b"PWNED" * 100), entry("fifo", data=b"x")],
        ])
        api_image.unpack(ref, str(scene.bundle))
        scene.check_untouched(refused=False)
        rootfs = scene.bundle / "rootfs"
        assert (rootfs / "disk").read_bytes() == b"PWNED" * 100
        st = os.lstat(rootfs / "null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert stat.S_ISREG(os.lstat(rootfs / "fifo").st_mode)
        with open(backing, "rb") as f:
            assert f.read() == b"\0" * 65536
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_duplicate_entries_are_refused(scene: Scene) -> None:
    # layer.md: "MUST NOT include duplicate entries for file paths"
    ref = scene.layout([[entry("a", data=b"one"), entry("a", "symlink", link=str(scene.outside / "secret")),
                         entry("a", data=b"PWNED")]])
    scene.refuse(ref, "'a'", "duplicate")


def test_duplicate_directory_entries_are_accepted(scene: Scene) -> None:
    ref = scene.layout([[entry("d", "dir"), entry("d/f", data=b"1"), entry("d", "dir", mode=0o700)]])
    api_image.unpack(ref, str(scene.bundle))
    assert stat.S_IMODE(os.stat(scene.bundle / "rootfs" / "d").st_mode) == 0o700
    scene.check_untouched(refused=False)


def test_decompression_bomb_stops_at_the_cap(scene: Scene) -> None:
    ref = scene.layout([[entry("zeros", data=bytes(64 << 20))]])
    scene.refuse(ref, "'zeros'", "exceeds the limit", max_size=16 << 20)


def test_decompression_bomb_of_many_small_files_stops_at_the_cap(scene: Scene) -> None:
    ref = scene.layout([[entry(f"f{i}", data=bytes(1 << 20)) for i in range(40)]])
    scene.refuse(ref, "exceeds the limit", max_size=8 << 20)


def test_huge_sparse_entry_stops_at_the_cap(scene: Scene, tmp_path: Path) -> None:
    if not shutil.which("tar"):
        pytest.skip("GNU tar not installed")
    src = tmp_path / "sparse-src"
    src.mkdir()
    with open(src / "huge", "wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes
    tar = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "--format=pax", "-C", str(src), "-cf", str(tar), "huge"], check=True)
    shutil.rmtree(src)
    data = tar.read_bytes()
    tar.unlink()
    ref = scene.layout([data])
    scene.refuse(ref, "'huge'", "exceeds the limit", max_size=1 << 30)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_compressed_layer_is_refused(scene: Scene, compression: str) -> None:
    tar = make_tar([entry(f"f{i}", data=os.urandom(4096)) for i in range(64)])
    blob = compress(tar, compression)
    broken = blob[: len(blob) // 2]
    # the descriptor matches the broken blob, so only the decompressor can tell
    ref = scene.layout([tar], compression=compression, raw_blobs=[broken])
    scene.refuse(ref, f"truncated {compression}", sha256(broken))


def test_digest_mismatch_is_refused(scene: Scene) -> None:
    ref = scene.layout([[entry("a", data=b"hello" * 1000)]])
    from ocipy.image.store import Layout

    layout = Layout.open(str(scene.layout_path))
    manifest = layout.read_manifest(layout.resolve("latest"))
    digest = manifest["layers"][0]["digest"]
    path = Path(layout.blob_path(digest))
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    msg = scene.refuse(ref, digest)
    assert "digest mismatch" in msg or "corrupt gzip" in msg


def test_digest_mismatch_with_valid_gzip_is_refused(scene: Scene) -> None:
    # a blob that decompresses fine but is not the one the manifest names
    ref = scene.layout([[entry("a", data=b"hello")]])
    from ocipy.image.store import Layout

    layout = Layout.open(str(scene.layout_path))
    manifest = layout.read_manifest(layout.resolve("latest"))
    digest = manifest["layers"][0]["digest"]
    other = compress(make_tar([entry("a", data=b"HELLO")]), "gzip")
    path = Path(layout.blob_path(digest))
    os.chmod(path, 0o644)
    path.write_bytes(other)
    scene.refuse(ref, digest)


def test_cli_prints_one_line_without_traceback(scene: Scene) -> None:
    ref = scene.layout([[entry("../escape", data=b"x")]])
    proc = ocipy("image", "unpack", ref, str(scene.bundle), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "../escape" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    scene.check_untouched(refused=True)
