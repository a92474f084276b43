"""Interop with skopeo: it reads ocipy's layouts and archives; ocipy reads skopeo's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from image_fixtures import ocipy, tree  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")]


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def image(tmp_path: Path, busybox_rootfs: Path) -> str:
    layout = tmp_path / "layout"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:v1")
    ocipy("image", "add-layer", f"oci:{layout}:v1", str(busybox_rootfs))
    ocipy("image", "config", f"oci:{layout}:v1", "--cmd", "/bin/sh", "--label", "a=b")
    ocipy("image", "unpack", f"oci:{layout}:v1", str(tmp_path / "reference"))
    return f"oci:{layout}:v1"


def test_skopeo_inspects_and_copies_ocipy_layouts(image: str, tmp_path: Path) -> None:
    info = json.loads(skopeo("inspect", image))
    assert info["Labels"] == {"a": "b"} and len(info["Layers"]) == 1
    skopeo("copy", image, f"oci:{tmp_path / 'copy'}:x")
    skopeo("copy", image, f"oci-archive:{tmp_path / 'sk.tar'}:x")
    skopeo("copy", image, f"docker-archive:{tmp_path / 'skd.tar'}:ex/bb:1")
    for n, ref in enumerate([f"oci:{tmp_path / 'copy'}:x", f"oci-archive:{tmp_path / 'sk.tar'}",
                             f"docker-archive:{tmp_path / 'skd.tar'}"]):
        ocipy("image", "unpack", ref, str(tmp_path / f"b{n}"))
        assert tree(tmp_path / f"b{n}" / "rootfs") == tree(tmp_path / "reference" / "rootfs")
    ocipy("image", "import", f"docker-archive:{tmp_path / 'skd.tar'}:ex/bb:1", f"oci:{tmp_path / 'imp'}:d")
    ocipy("image", "import", f"oci-archive:{tmp_path / 'sk.tar'}:x", f"oci:{tmp_path / 'imp'}:o")
    ocipy("image", "validate", f"oci:{tmp_path / 'imp'}")


def test_skopeo_reads_ocipy_archives(image: str, tmp_path: Path) -> None:
    oa, da = tmp_path / "o.tar", tmp_path / "d.tar"
    ocipy("image", "export", image, f"oci-archive:{oa}:v1")
    ocipy("image", "export", image, f"docker-archive:{da}:ex/bb:2")
    assert json.loads(skopeo("inspect", f"oci-archive:{oa}"))["Labels"] == {"a": "b"}
    assert json.loads(skopeo("inspect", f"docker-archive:{da}"))["Labels"] == {"a": "b"}
    skopeo("copy", f"oci-archive:{oa}", f"oci:{tmp_path / 'c1'}:a")
    skopeo("copy", f"docker-archive:{da}", f"oci:{tmp_path / 'c2'}:b")
    ocipy("image", "unpack", f"oci:{tmp_path / 'c1'}:a", str(tmp_path / "u1"))
    ocipy("image", "unpack", f"oci:{tmp_path / 'c2'}:b", str(tmp_path / "u2"))
    for u in ("u1", "u2"):
        assert tree(tmp_path / u / "rootfs") == tree(tmp_path / "reference" / "rootfs")


def test_zstd_layers_are_read_by_skopeo(tmp_path: Path, busybox_rootfs: Path) -> None:
    layout = tmp_path / "z"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:z")
    ocipy("image", "add-layer", "--compress", "zstd", f"oci:{layout}:z", str(busybox_rootfs))
    skopeo("copy", f"oci:{layout}:z", f"oci:{tmp_path / 'zc'}:z")
    ocipy("image", "unpack", f"oci:{tmp_path / 'zc'}:z", str(tmp_path / "b"))
    assert (tmp_path / "b" / "rootfs" / "bin" / "busybox").is_file()
