"""Property: whatever a sequence of layers contains, nothing outside the rootfs changes.

Hypothesis builds layers from hostile pieces — `..` and absolute names,
symlinks to outside (absolute and relative), hardlinks, entries written
through earlier symlinks, whiteouts — and applies them with ocipy's Applier
into a rootfs that sits next to a sentinel directory.  Either the layers
apply or an ImageError is raised; the sentinel never changes and nothing
else is ever raised.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocipy.errors import ImageError
from ocipy.image.layers.apply import Applier, ApplyOptions
from ocipy.image.layers.stream import LayerStream

pytestmark = pytest.mark.integration

names = st.sampled_from(["a", "b", "a/b", "a/b/c", "..", "../x", "a/../../x", "/abs", "/etc/x", "l", "l/x",
                         "l/b", "l/../y", "d/.wh.a", "d/.wh..wh..opq", ".wh.l", "d", "d/e"])  # fmt: skip
targets = st.sampled_from(["/", "..", "../..", "/tmp", "../sentinel", "../sentinel/f", "a", "/a", "l", "d/../..",
                           "@S", "@S/f"])  # fmt: skip
modes = st.sampled_from([0o755, 0o500, 0o000])
entries = st.lists(st.tuples(st.sampled_from(["file", "dir", "symlink", "hardlink"]), names, targets, modes),
                   min_size=1, max_size=8)  # fmt: skip


def _layer(items: list[tuple[str, str, str, int]], sentinel: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, target, mode in items:
            target = target.replace("@S", str(sentinel))
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = b"payload"
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = mode
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = target
            else:
                info.type = tarfile.LNKTYPE
                info.linkname = target
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _snapshot(path: Path) -> list[tuple[str, int, int, int, int, bytes]]:
    top = path.lstat()
    out = [(str(path), top.st_mode, top.st_uid, top.st_mtime_ns, 0, b"")]
    for dirpath, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            p = Path(dirpath, name)
            st_ = p.lstat()
            content = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
            out.append((str(p), st_.st_mode, st_.st_uid, st_.st_mtime_ns, st_.st_size, content))
    return sorted(out)


@given(st.lists(entries, min_size=1, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_layers_never_touch_anything_outside_the_rootfs(tmp_path_factory, layers):
    base = tmp_path_factory.mktemp("prop")
    sentinel = base / "sentinel"
    sentinel.mkdir()
    (sentinel / "f").write_text("keep")
    rootfs = base / "rootfs"
    rootfs.mkdir()
    os.utime(sentinel / "f", ns=(1_000_000_000, 1_000_000_000))
    before = _snapshot(sentinel)
    # escape targets already there (left by something else on the machine) cannot tell us anything
    watched = [p for p in ("/abs", "/etc/x", "/x", "/y", "/tmp/x", "/tmp/y", "/a", "/d") if not Path(p).exists()]
    try:
        with Applier(str(rootfs), ApplyOptions()) as applier:
            for i, items in enumerate(layers):
                stream = LayerStream(io.BytesIO(_layer(items, sentinel)), "none", f"layer {i}", [1 << 30])
                applier.apply(stream, f"layer {i}")
    except ImageError:
        pass  # refusing a hostile layer is fine; what matters is below
    assert _snapshot(sentinel) == before
    assert sorted(p.name for p in base.iterdir()) == ["rootfs", "sentinel"]  # nothing beside the rootfs
    for escaped in watched:
        assert not Path(escaped).exists(), escaped
