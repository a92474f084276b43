"""Applying layers as layer.md says: whiteouts, opaque whiteouts, changesets over
existing files, compression types, and file attributes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from image_fixtures import build_layout, entry

from ocipy import api_image
from ocipy.spec import image as spec

pytestmark = pytest.mark.integration
IS_ROOT = os.geteuid() == 0


def unpack(tmp_path: Path, layers: list, **kw: object) -> Path:  # type: ignore[type-arg]
    build_layout(tmp_path / "layout", layers, **kw)  # type: ignore[arg-type]
    api_image.unpack(f"oci:{tmp_path / 'layout'}:latest", str(tmp_path / "bundle"))
    return tmp_path / "bundle" / "rootfs"


def listing(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


BASE = [entry("file1", data=b"1"), entry("a", "dir"), entry("a/file2", data=b"2"), entry("b", "dir"),
        entry("b/deep", data=b"d"), entry("c", "dir"), entry("c/file3", data=b"3")]


def test_whiteouts_remove_lower_paths(tmp_path: Path) -> None:
    # layer.md "Whiteouts": deleting file1, a/file2 and b/, adding file4
    rootfs = unpack(tmp_path, [BASE, [entry(".wh.file1"), entry("a/.wh.file2"), entry(".wh.b"),
                                      entry("file4", data=b"4")]])
    assert listing(rootfs) == ["a", "c", "c/file3", "file4"]


def test_whiteout_files_are_hidden(tmp_path: Path) -> None:
    # layer.md: "Once a whiteout is applied, the whiteout itself MUST also be hidden."
    rootfs = unpack(tmp_path, [BASE, [entry(".wh.nothing-there"), entry("c/.wh.file3"),
                                      entry("c/.wh..wh..opq")]])
    assert not [p for p in listing(rootfs) if ".wh." in p]


def test_opaque_whiteout_hides_all_lower_children(tmp_path: Path) -> None:
    lower = [entry("bin", "dir"), entry("bin/my-app-binary", data=b"x"), entry("bin/my-app-tools", data=b"y"),
             entry("bin/tools", "dir"), entry("bin/tools/my-app-tool-one", data=b"z"), entry("etc", "dir"),
             entry("etc/my-app-config", data=b"c")]
    rootfs = unpack(tmp_path, [lower, [entry("bin", "dir"), entry("bin/.wh..wh..opq"), entry("bin/new", data=b"n")]])
    assert listing(rootfs) == ["bin", "bin/new", "etc", "etc/my-app-config"]


def test_whiteouts_only_apply_to_lower_layers(tmp_path: Path) -> None:
    # layer.md: "Whiteout files MUST only apply to resources in lower/parent layers."
    lower = [entry("d", "dir"), entry("d/old", data=b"o"), entry("d/sub", "dir"), entry("d/sub/old2", data=b"o")]
    upper = [entry("d/new", data=b"n"), entry("d/sub", "dir"), entry("d/sub/new2", data=b"n"),
             entry("d/.wh..wh..opq"), entry(".wh.same"), entry("same", data=b"s")]
    rootfs = unpack(tmp_path, [lower, upper])
    assert listing(rootfs) == ["d", "d/new", "d/sub", "d/sub/new2", "same"]


def test_whiteout_then_recreate_in_same_layer(tmp_path: Path) -> None:
    rootfs = unpack(tmp_path, [BASE, [entry(".wh.b"), entry("b", "dir"), entry("b/fresh", data=b"f")]])
    assert "b/deep" not in listing(rootfs)
    assert (rootfs / "b" / "fresh").read_bytes() == b"f"


def test_empty_whiteout_name_is_an_error(tmp_path: Path) -> None:
    # layer.md: "A .wh. file, without a basename to delete, is invalid"
    from ocipy.errors import ImageError

    with pytest.raises(ImageError, match="whiteout without a name"):
        unpack(tmp_path, [BASE, [entry("a/.wh.")]])


def test_changeset_over_existing_files(tmp_path: Path) -> None:
    # layer.md: existing dir + dir entry -> attributes replaced; otherwise remove and recreate
    lower = [entry("d", "dir", mode=0o755), entry("d/keep", data=b"k"), entry("x", "dir"), entry("x/child", data=b"c"),
             entry("f", data=b"old"), entry("s", "symlink", link="f")]
    upper = [entry("d", "dir", mode=0o700), entry("x", data=b"now a file"), entry("f", "dir"),
             entry("s", data=b"now a file too")]
    rootfs = unpack(tmp_path, [lower, upper])
    assert stat.S_IMODE(os.stat(rootfs / "d").st_mode) == 0o700
    assert (rootfs / "d" / "keep").read_bytes() == b"k"
    assert (rootfs / "x").read_bytes() == b"now a file"
    assert (rootfs / "f").is_dir()
    assert not (rootfs / "s").is_symlink() and (rootfs / "s").read_bytes() == b"now a file too"


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions(tmp_path: Path, compression: str) -> None:
    rootfs = unpack(tmp_path, [[entry("hello", data=b"world" * 1000)]], compression=compression)
    assert (rootfs / "hello").read_bytes() == b"world" * 1000


@pytest.mark.parametrize("media_type", [spec.MEDIA_LAYER_ND_GZIP, spec.DOCKER_LAYER_GZIP])
def test_deprecated_and_docker_layer_types_are_read(tmp_path: Path, media_type: str) -> None:
    rootfs = unpack(tmp_path, [[entry("hello", data=b"x")]], media_type=media_type)
    assert (rootfs / "hello").read_bytes() == b"x"


def test_unknown_layer_media_type_is_an_error(tmp_path: Path) -> None:
    from ocipy.errors import ImageError

    with pytest.raises(ImageError, match="unknown layer media type"):
        unpack(tmp_path, [[entry("hello", data=b"x")]], media_type="application/vnd.example.thing")


def test_attributes(tmp_path: Path) -> None:
    entries = [
        entry("bin", "dir", mode=0o755, mtime=1_500_000_000),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000, mtime=1_234_567_890),
        entry("bin/link", "symlink", link="tool", uid=1000, gid=100, mtime=1_111_111_111),
        entry("bin/hard", "hardlink", link="bin/tool"),
        entry("tmp", "dir", mode=0o1777),
        entry("attr", data=b"a", xattrs={"user.test": "value"}),
        entry("pipe", "fifo", mode=0o600),
        entry("implicit/parent/file", data=b"p"),
    ]
    rootfs = unpack(tmp_path, [entries])
    st = os.lstat(rootfs / "bin" / "tool")
    assert stat.S_IMODE(st.st_mode) == (0o4755 if IS_ROOT else 0o755) or stat.S_IMODE(st.st_mode) == 0o4755
    assert int(st.st_mtime) == 1_234_567_890
    if IS_ROOT:
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        lst = os.lstat(rootfs / "bin" / "link")
        assert (lst.st_uid, lst.st_gid) == (1000, 100)
    assert os.readlink(rootfs / "bin" / "link") == "tool"
    assert int(os.lstat(rootfs / "bin" / "link").st_mtime) == 1_111_111_111
    assert os.stat(rootfs / "bin" / "hard").st_ino == st.st_ino
    assert int(os.stat(rootfs / "bin").st_mtime) == 1_500_000_000
    assert stat.S_IMODE(os.stat(rootfs / "tmp").st_mode) == 0o1777
    assert stat.S_ISFIFO(os.lstat(rootfs / "pipe").st_mode)
    assert (rootfs / "implicit" / "parent" / "file").read_bytes() == b"p"
    try:
        assert os.getxattr(rootfs / "attr", "user.test") == b"value"
    except OSError:
        pytest.skip("filesystem without user xattrs")


def test_many_files_across_directories(tmp_path: Path) -> None:
    # exercises the worker threads: many directories, files and symlinks, in tar order
    entries = []
    for d in range(20):
        entries.append(entry(f"d{d}", "dir"))
        for f in range(30):
            entries.append(entry(f"d{d}/f{f}", data=f"{d}-{f}".encode()))
            entries.append(entry(f"d{d}/l{f}", "symlink", link=f"f{f}"))
    rootfs = unpack(tmp_path, [entries, [entry(f"d{d}/.wh.f0") for d in range(20)]])
    for d in range(20):
        assert not (rootfs / f"d{d}" / "f0").exists()
        assert (rootfs / f"d{d}" / "l5").read_bytes() == f"{d}-5".encode()
    assert len(listing(rootfs)) == 20 + 20 * 59


def test_layer_without_padding_and_end_marker(tmp_path: Path) -> None:
    # umoci writes layers whose last member is neither padded nor followed by the end marker
    import io
    import tarfile

    from image_fixtures import make_tar

    tar = make_tar([entry("a", data=b"first"), entry("last", data=b"x" * 700)])
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        last = tf.getmember("last")
    cut = tar[: last.offset_data + last.size]
    rootfs = unpack(tmp_path, [cut])
    assert (rootfs / "last").read_bytes() == b"x" * 700


def test_truncated_uncompressed_layer_is_an_error(tmp_path: Path) -> None:
    from image_fixtures import make_tar

    from ocipy.errors import ImageError

    tar = make_tar([entry("a", data=b"first"), entry("big", data=b"y" * 5000)])
    with pytest.raises(ImageError, match="truncated"):
        unpack(tmp_path, [tar[:3000]], compression="none")
