"""Every image command takes any source (issue 13): unpack, validate, inspect,
export and tags straight from a docker:// reference served by a real
docker-registry, compared with what skopeo copy + umoci unpack make of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_registry_support import Registry, make_layout, ocipy, skopeo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
from image_fixtures import tree  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed"),
              pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")]


def _push(registry: Registry, oci_image: Path, name: str) -> str:
    ref = registry.ref(name)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{oci_image}:latest", ref)
    return ref


def test_unpack_from_registry_matches_skopeo_then_umoci(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "multi", layers=3, layer_size=4096)
    ref = _push(registry, src, "any/app:1")
    # the peers, back to back: skopeo copy into a layout, umoci unpack from it
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{workdir / 'sk'}:x")
    subprocess.run(["umoci", "unpack", "--image", f"{workdir / 'sk'}:x", str(workdir / "umoci")],
                   check=True, capture_output=True, timeout=120)
    # ocipy: one command, straight from the registry, nothing stored but the bundle
    ocipy("image", "unpack", ref, str(workdir / "ocipy"))
    assert tree(workdir / "ocipy" / "rootfs", mtimes=True) == tree(workdir / "umoci" / "rootfs", mtimes=True)
    assert not [n for n in os.listdir(workdir) if n.startswith(".ocipy")]  # no scratch left behind
    assert json.loads((workdir / "ocipy" / "config.json").read_text())["root"]["path"] == "rootfs"


def test_validate_inspect_export_tags_from_registry(registry: Registry, oci_image: Path, workdir: Path) -> None:
    ref = _push(registry, oci_image, "any/v:1")
    assert "ok" in ocipy("image", "validate", ref).stdout
    # `ocipy inspect` and `ocipy image inspect` are one command: same bytes out
    a = ocipy("inspect", "--no-tags", ref).stdout
    b = ocipy("image", "inspect", "--no-tags", ref).stdout
    assert a == b and json.loads(a)["Digest"].startswith("sha256:")
    assert ocipy("image", "inspect", "--raw", ref).stdout == \
        skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout
    assert json.loads(ocipy("image", "tags", registry.ref("any/v")).stdout)["Tags"] == ["1"]
    ocipy("image", "export", ref, f"docker-archive:{workdir / 'd.tar'}:any/v:1")
    info = json.loads(skopeo("inspect", f"docker-archive:{workdir / 'd.tar'}").stdout)
    assert info["Layers"] and info["Os"] == "linux"
    import tarfile

    with tarfile.open(workdir / "d.tar") as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        assert json.loads(f.read())[0]["RepoTags"] == ["any/v:1"]
    # and a layout reference without a transport is the same grammar everywhere
    ocipy("image", "copy", ref, str(workdir / "bare") + ":t")
    assert json.loads(ocipy("image", "tags", f"oci:{workdir / 'bare'}").stdout)["Tags"] == ["t"]


def test_tampered_registry_blob_leaves_no_bundle(registry: Registry, oci_image: Path, workdir: Path) -> None:
    ref = _push(registry, oci_image, "any/bad:1")
    # corrupt the layer inside the registry's own storage: same size, other bytes
    blobs = list((registry.workdir / "storage").rglob("data"))
    layer_digest = json.loads(skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout)["layers"][0]["digest"]
    enc = layer_digest.split(":")[1]
    data = next(p for p in blobs if p.parent.name == enc)
    raw = bytearray(data.read_bytes())
    raw[-10] ^= 0xFF
    data.write_bytes(bytes(raw))
    p = ocipy("image", "unpack", ref, str(workdir / "b"), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert ("mismatch" in p.stderr or "corrupt" in p.stderr), p.stderr
    assert not (workdir / "b").exists()
    assert not [n for n in os.listdir(workdir) if n.startswith(".ocipy-unpack-")]


def test_top_level_delete_is_runcs(registry: Registry, oci_image: Path) -> None:
    ref = _push(registry, oci_image, "any/keep:1")
    p = ocipy("delete", ref, check=False)
    assert p.returncode == 1 and "ocipy image delete" in p.stderr
    # still there
    skopeo("inspect", "--tls-verify=false", "--raw", ref)
    ocipy("image", "delete", ref)
    assert skopeo("inspect", "--tls-verify=false", "--raw", ref, check=False).returncode != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="running a container needs root")
def test_image_run_from_registry(registry: Registry, workdir: Path, busybox_rootfs: Path) -> None:
    layout = workdir / "bb"
    ocipy("image", "init", str(layout))
    ocipy("image", "new", f"oci:{layout}:1")
    ocipy("image", "add-layer", f"oci:{layout}:1", str(busybox_rootfs))
    ocipy("image", "config", f"oci:{layout}:1", "--cmd", "/bin/sh")
    ref = registry.ref("any/bb:1")
    ocipy("image", "copy", f"oci:{layout}:1", ref)
    root = workdir / "root"
    out = ocipy("--root", str(root), "image", "run", "--rm", "--name", "ocipy-any-source-run", ref,
                "--", "/bin/echo", "from the registry")
    assert out.stdout.strip() == "from the registry"
