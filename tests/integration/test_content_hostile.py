"""Hostile layouts and destinations against the content core (issue 13, defects
2, 3, 6 and 7): each test plants the attack for real and checks that nothing
outside the layout is touched, nothing unverified is trusted, and the error
is one line naming the document."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from image_fixtures import build_layout, entry, leftovers, ocipy

from ocipy.errors import ImageError
from ocipy.image.store import Layout

pytestmark = pytest.mark.integration


def _one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    # the error alone: copy's progress goes to stdout (as skopeo's), unpack's to a terminal only
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    for n in needles:
        assert n in p.stderr, p.stderr


def _image(tmp_path: Path, name: str = "l") -> Layout:
    return build_layout(tmp_path / name, [[entry("etc", "dir"), entry("etc/hello", data=b"hi\n")]])


# --- 2: gc touches only digest-named regular files in real blob directories ---------


def test_gc_through_a_symlinked_blob_dir_deletes_nothing(tmp_path: Path) -> None:
    layout = _image(tmp_path)
    outside = tmp_path / "host-files"
    outside.mkdir()
    victim = outside / ("a" * 64)  # a valid digest name, and unreferenced
    victim.write_text("precious host data")
    other = outside / "notes.txt"
    other.write_text("also precious")
    sha = Path(layout.path) / "blobs" / "sha256"
    for blob in sha.iterdir():  # the layout's real blobs move out, a symlink takes their place
        os.rename(blob, outside / blob.name)
    sha.rmdir()
    sha.symlink_to(outside)
    p = ocipy("image", "gc", layout.path, check=False)
    _one_line_error(p, "blobs/sha256", "removes nothing")
    assert victim.read_text() == "precious host data" and other.read_text() == "also precious"
    assert len(os.listdir(outside)) == 2 + 3  # nothing removed: the two host files and the image's blobs


def test_gc_skips_names_that_are_not_digests_and_non_files(tmp_path: Path) -> None:
    layout = _image(tmp_path)
    sha = Path(layout.path) / "blobs" / "sha256"
    junk = {"README": "x", "A" * 64: "upper-case hex is not a sha256 digest", "ab" * 16: "too short"}
    for name, text in junk.items():
        (sha / name).write_text(text)
    (sha / ("b" * 64)).mkdir()  # a directory with a digest name
    (sha / ("c" * 64)).symlink_to(tmp_path / "host")
    (tmp_path / "host").write_text("outside")
    unreferenced = sha / ("d" * 64)
    unreferenced.write_text("garbage blob")
    removed = ocipy("image", "gc", layout.path).stdout.split()
    assert removed == ["removed", "sha256:" + "d" * 64]
    assert not unreferenced.exists()
    for name in junk:
        assert (sha / name).exists()
    assert (sha / ("b" * 64)).is_dir() and (sha / ("c" * 64)).is_symlink()
    assert (tmp_path / "host").read_text() == "outside"
    ocipy("image", "validate", f"oci:{layout.path}:latest")  # the image itself is intact


# --- 3: short writes, verification before rename, a truncated blob is not trusted ----


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_leaves_no_blob_under_its_digest(tmp_path: Path, small_fs: Path) -> None:
    layout = Layout.init(str(small_fs / "l"))
    data = os.urandom(2 << 20)  # twice the disk
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageError, match="No space left"):
        layout.write_blob(data)
    assert not os.path.lexists(layout.blob_path(digest))
    assert leftovers(Path(layout.path)) == []
    # a copy into the full layout fails the same way, and leaves index.json as it was
    src = build_layout(tmp_path / "src", [[entry("big", data=data)]], compression="none")
    p = ocipy("image", "copy", f"oci:{src.path}:latest", f"oci:{layout.path}:x", check=False)
    _one_line_error(p, "No space left")
    assert json.loads((Path(layout.path) / "index.json").read_text())["manifests"] == []
    for d in src.reachable():
        assert not layout.has_blob(d) or d != digest


def test_a_truncated_blob_is_not_trusted_and_is_replaced(tmp_path: Path) -> None:
    src = _image(tmp_path, "src")
    dst = Layout.init(str(tmp_path / "dst"))
    manifest = src.read_manifest(src.resolve("latest"))
    layer = manifest["layers"][0]
    # what a full disk left behind before writes were checked: a prefix under the real name
    good = open(src.blob_path(layer["digest"]), "rb").read()
    os.makedirs(os.path.dirname(dst.blob_path(layer["digest"])), exist_ok=True)
    with open(dst.blob_path(layer["digest"]), "wb") as f:
        f.write(good[: len(good) // 2])
    assert dst.has_blob(layer["digest"]) and not dst.has_blob(layer["digest"], layer["size"])
    ocipy("image", "copy", f"oci:{src.path}:latest", f"oci:{dst.path}:x")
    assert open(dst.blob_path(layer["digest"]), "rb").read() == good
    ocipy("image", "validate", f"oci:{dst.path}:x")


# --- 6: deep JSON: a clear error naming the document --------------------------------


DEEP = "[" * 100000 + "]" * 100000


def test_deep_index_json(tmp_path: Path) -> None:
    layout = _image(tmp_path)
    index = Path(layout.path) / "index.json"
    doc = json.loads(index.read_text())
    index.write_text(json.dumps(doc)[:-1] + ', "x": ' + DEEP + "}")
    for cmd in (["image", "ls", layout.path], ["image", "inspect", f"oci:{layout.path}:latest"],
                ["image", "unpack", f"oci:{layout.path}:latest", str(tmp_path / "b")]):
        _one_line_error(ocipy(*cmd, check=False), "index.json", "max depth")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("document", ["manifest", "config"])
def test_deep_manifest_and_config(tmp_path: Path, document: str) -> None:
    from ocipy.image.build import set_tag

    layout = _image(tmp_path)
    top = layout.resolve("latest")
    manifest = layout.read_manifest(top)
    if document == "config":
        raw = json.dumps(layout.read_config(manifest["config"]))[:-1] + ', "x": ' + DEEP + "}"
        digest, size = layout.write_blob(raw.encode())
        manifest["config"] = {**manifest["config"], "digest": digest, "size": size}
        top = layout.put_json(manifest, top["mediaType"])
    else:
        raw = json.dumps(manifest)[:-1] + ', "x": ' + DEEP + "}"
        digest, size = layout.write_blob(raw.encode())
        top = {"mediaType": top["mediaType"], "digest": digest, "size": size}
    set_tag(layout, "deep", top)
    cmds = [["image", "inspect", f"oci:{layout.path}:deep"], ["image", "validate", f"oci:{layout.path}:deep"],
            ["image", "unpack", f"oci:{layout.path}:deep", str(tmp_path / "b")]]
    if document == "manifest":  # copy parses manifests; a config is copied as verified bytes
        cmds.append(["image", "copy", f"oci:{layout.path}:deep", f"oci:{tmp_path / 'out'}:x"])
    for cmd in cmds:
        _one_line_error(ocipy(*cmd, check=False), "max depth", digest)
    assert not (tmp_path / "out").exists() and not (tmp_path / "b").exists()


def test_deep_registry_answer_is_an_error_not_a_recursion() -> None:
    from ocipy.errors import RegistryError
    from ocipy.registry.client import _manifest_media_type

    with pytest.raises(RegistryError, match="deeper than"):
        _manifest_media_type(('{"x": ' + DEEP + "}").encode(), "application/json", "reading manifest r/x:1")


# --- 7: nothing is created at a destination before something verified is written ---


def test_pull_from_unreachable_registry_creates_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "new-layout"
    p = ocipy("image", "copy", "--retry-times", "0", "docker://127.0.0.1:1/app:1", f"oci:{dest}:x", check=False)
    _one_line_error(p, "127.0.0.1:1")
    assert not dest.exists()
    p = ocipy("image", "copy", "--retry-times", "0", "docker://127.0.0.1:1/app:1",
              f"oci-archive:{tmp_path / 'a.tar'}", check=False)
    assert p.returncode == 1 and os.listdir(tmp_path) == []


def test_failed_copy_into_a_new_layout_removes_it(tmp_path: Path) -> None:
    src = _image(tmp_path, "src")
    layer = src.read_manifest(src.resolve("latest"))["layers"][0]
    with open(src.blob_path(layer["digest"]), "r+b") as f:  # same size, other bytes
        f.seek(20)
        f.write(b"\xff\xfe")
    dest = tmp_path / "new"
    p = ocipy("image", "copy", f"oci:{src.path}:latest", f"oci:{dest}:x", check=False)
    _one_line_error(p, "mismatch")
    assert not dest.exists()
    # an existing (empty) directory is left as it was found
    dest.mkdir()
    p = ocipy("image", "copy", f"oci:{src.path}:latest", f"oci:{dest}:x", check=False)
    assert p.returncode == 1 and os.listdir(dest) == []


# --- a blob that is not a regular file cannot hang or redirect a reader --------------


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_blob_planted_as_fifo_or_symlink(tmp_path: Path, kind: str) -> None:
    layout = _image(tmp_path)
    layer = layout.read_manifest(layout.resolve("latest"))["layers"][0]
    path = Path(layout.blob_path(layer["digest"]))
    content = path.read_bytes()
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)  # opened without O_NONBLOCK, a read would wait forever
    else:
        (tmp_path / "elsewhere").write_bytes(content)  # even the right bytes are not read through a link
        path.symlink_to(tmp_path / "elsewhere")
    ref = f"oci:{layout.path}:latest"
    for cmd in (["image", "unpack", ref, str(tmp_path / "b")], ["image", "validate", ref],
                ["image", "copy", ref, f"oci:{tmp_path / 'out'}:x"]):
        _one_line_error(ocipy(*cmd, check=False), layer["digest"])  # (a hang fails by the 120 s timeout)
    assert not (tmp_path / "b").exists() and not (tmp_path / "out").exists()
