"""``ocipy copy`` with oci-archive: and docker-archive: on either side, against a real
docker-registry, checked with skopeo both ways."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from test_registry_support import Registry, host_arch, layout_top, make_layout, ocipy, skopeo

from ocipy.spec.digest import of_bytes as digest_of

pytestmark = pytest.mark.interop

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


def _raw(registry: Registry, name: str) -> bytes:
    return ocipy("inspect", "--raw", registry.ref(name)).stdout.encode()


def _config(registry: Registry, name: str) -> dict[str, Any]:
    return json.loads(ocipy("inspect", "--raw", "--config", registry.ref(name)).stdout)  # type: ignore[no-any-return]


def _no_leftovers(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.startswith((".ocipy-", "ocipy-"))]


def _pushed(registry: Registry, workdir: Path, name: str = "rt/a:1", **kw: Any) -> dict[str, Any]:
    src = make_layout(workdir / "src", layers=3, layer_size=100_000, **kw)
    ocipy("copy", f"oci:{src}:latest", registry.ref(name))
    return json.loads(_raw(registry, name))  # type: ignore[no-any-return]


def test_docker_archive_round_trip(registry: Registry, workdir: Path) -> None:
    orig = _pushed(registry, workdir)
    diff_ids = _config(registry, "rt/a:1")["rootfs"]["diff_ids"]
    archive = workdir / "a.tar"
    ocipy("copy", registry.ref("rt/a:1"), f"docker-archive:{archive}:example/app:1")
    _no_leftovers(workdir)
    # skopeo reads it: the config as it was, the layers by their diff_ids.
    info = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert info["Layers"] == diff_ids and info["Architecture"] == host_arch()
    cfg_raw = skopeo("inspect", "--config", "--raw", f"docker-archive:{archive}").stdout.encode()
    assert digest_of(cfg_raw) == orig["config"]["digest"]
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["example/app:1"]
    # Back to a registry: a Docker schema2 image, same config, layers named by their diff_ids.
    ocipy("copy", f"docker-archive:{archive}", registry.ref("rt/b:1"))
    back = json.loads(_raw(registry, "rt/b:1"))
    assert back["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert back["config"]["digest"] == orig["config"]["digest"]
    assert [d["digest"] for d in back["layers"]] == diff_ids
    assert {d["mediaType"] for d in back["layers"]} == {DOCKER_LAYER}
    # An image with uncompressed layers goes round with every digest, manifest included, kept.
    ocipy("copy", registry.ref("rt/b:1"), f"docker-archive:{workdir / 'b.tar'}:example/app:1")
    ocipy("copy", f"docker-archive:{workdir / 'b.tar'}:example/app:1", registry.ref("rt/c:1"))
    assert _raw(registry, "rt/c:1") == _raw(registry, "rt/b:1")
    # skopeo pulls what we pushed from the archive (verifying every blob).
    skopeo("copy", "--src-tls-verify=false", registry.ref("rt/b:1"), f"oci:{workdir / 'sk'}:x")


def test_oci_archive_round_trip(registry: Registry, workdir: Path) -> None:
    _pushed(registry, workdir)
    archive = workdir / "o.tar"
    ocipy("copy", registry.ref("rt/a:1"), f"oci-archive:{archive}:v1")
    _no_leftovers(workdir)
    info = json.loads(skopeo("inspect", f"oci-archive:{archive}:v1").stdout)
    orig = json.loads(_raw(registry, "rt/a:1"))
    assert info["Layers"] == [d["digest"] for d in orig["layers"]]
    ocipy("copy", f"oci-archive:{archive}:v1", registry.ref("rt/o:1"))
    assert _raw(registry, "rt/o:1") == _raw(registry, "rt/a:1")  # config, layers, manifest: same digests
    skopeo("copy", f"oci-archive:{archive}:v1", f"oci:{workdir / 'sk'}:x")
    assert layout_top(workdir / "sk")["digest"] == digest_of(_raw(registry, "rt/a:1"))


def test_multi_platform_oci_archive(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "multi", platforms=[("linux", host_arch()), ("linux", "s390x")])
    ocipy("copy", "--all", f"oci:{src}:latest", registry.ref("rt/m:1"))
    ocipy("copy", "--all", registry.ref("rt/m:1"), f"oci-archive:{workdir / 'm.tar'}:all")
    ocipy("copy", "--all", f"oci-archive:{workdir / 'm.tar'}:all", registry.ref("rt/m2:1"))
    assert _raw(registry, "rt/m2:1") == _raw(registry, "rt/m:1")
    # A docker-archive holds one image: --all is refused, nothing is written.
    bad = ocipy("copy", "--all", registry.ref("rt/m:1"), f"docker-archive:{workdir / 'm-d.tar'}", check=False)
    assert bad.returncode != 0 and "one image" in bad.stderr and "Traceback" not in bad.stderr
    assert not (workdir / "m-d.tar").exists()
    _no_leftovers(workdir)
    # Without --all the host's image is chosen.
    ocipy("copy", registry.ref("rt/m:1"), f"docker-archive:{workdir / 'm-d.tar'}")
    assert json.loads(skopeo("inspect", f"docker-archive:{workdir / 'm-d.tar'}").stdout)["Architecture"] == host_arch()


def test_skopeo_written_archives(registry: Registry, workdir: Path) -> None:
    orig = _pushed(registry, workdir)
    diff_ids = _config(registry, "rt/a:1")["rootfs"]["diff_ids"]
    d_tar, o_tar = workdir / "sk-d.tar", workdir / "sk-o.tar"
    skopeo("copy", "--src-tls-verify=false", registry.ref("rt/a:1"), f"docker-archive:{d_tar}:example/sk:1")
    skopeo("copy", "--src-tls-verify=false", registry.ref("rt/a:1"), f"oci-archive:{o_tar}:v1")
    ocipy("copy", f"docker-archive:{d_tar}:example/sk:1", registry.ref("rt/skd:1"))
    back = json.loads(_raw(registry, "rt/skd:1"))
    assert back["config"]["digest"] == orig["config"]["digest"]
    assert [d["digest"] for d in back["layers"]] == diff_ids
    ocipy("copy", f"docker-archive:{d_tar}", f"oci:{workdir / 'from-d'}:x")  # the only image
    ocipy("copy", f"oci-archive:{o_tar}:v1", registry.ref("rt/sko:1"))
    assert _raw(registry, "rt/sko:1") == _raw(registry, "rt/a:1")
    ocipy("copy", f"oci-archive:{o_tar}:v1", f"oci:{workdir / 'from-o'}:x")
    assert layout_top(workdir / "from-o")["digest"] == orig_digest(registry)


def orig_digest(registry: Registry) -> str:
    return digest_of(_raw(registry, "rt/a:1"))


def test_layout_and_archive_to_archive(workdir: Path) -> None:
    src = make_layout(workdir / "src", layers=2, layer_size=20_000)
    o_tar, d_tar, d2_tar = workdir / "x.tar", workdir / "x-d.tar", workdir / "x-d2.tar"
    ocipy("copy", f"oci:{src}:latest", f"oci-archive:{o_tar}")
    ocipy("copy", f"oci-archive:{o_tar}", f"docker-archive:{d_tar}:example/x:1")
    ocipy("copy", f"docker-archive:{d_tar}:example/x:1", f"docker-archive:{d2_tar}:example/x:2")
    ocipy("copy", f"docker-archive:{d2_tar}:example/x:2", f"oci:{workdir / 'out'}:x")
    out = workdir / "out"
    top = layout_top(out)
    manifest = json.loads((out / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())
    src_top = layout_top(src)
    src_manifest = json.loads((src / "blobs" / "sha256" / src_top["digest"].split(":")[1]).read_bytes())
    assert manifest["config"]["digest"] == src_manifest["config"]["digest"]
    # into a layout: an OCI manifest with uncompressed layers named by their diff_ids
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert {d["mediaType"] for d in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}
    skopeo("copy", f"oci:{out}:x", f"oci:{workdir / 'check'}:x")
    skopeo("copy", f"docker-archive:{d2_tar}", f"oci:{workdir / 'check2'}:x")
    # the image code reads what copy wrote
    from ocipy import api_image

    api_image.import_image(f"docker-archive:{d2_tar}", f"oci:{workdir / 'imp'}:x")
    api_image.import_image(f"oci-archive:{o_tar}", f"oci:{workdir / 'imp'}:y")
    _no_leftovers(workdir)


def _corrupt_member(archive: Path, pick: str) -> None:
    """Flip one byte inside the first member whose name contains ``pick`` (size unchanged)."""
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if pick in m.name and m.isfile() and m.size > 100)
        offset = member.offset_data + member.size // 2
    with open(archive, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupt_archives_are_refused(registry: Registry, workdir: Path) -> None:
    _pushed(registry, workdir)
    d_tar, o_tar = workdir / "d.tar", workdir / "o.tar"
    ocipy("copy", registry.ref("rt/a:1"), f"docker-archive:{d_tar}")
    ocipy("copy", registry.ref("rt/a:1"), f"oci-archive:{o_tar}")
    with tarfile.open(d_tar) as tf:
        layer_name = json.load(tf.extractfile("manifest.json"))[0]["Layers"][0]  # type: ignore[arg-type]
    _corrupt_member(d_tar, layer_name)
    _corrupt_member(o_tar, "blobs/sha256/")
    for src in (f"docker-archive:{d_tar}", f"oci-archive:{o_tar}"):
        out = workdir / "out"
        bad = ocipy("copy", src, f"oci:{out}:x", check=False)
        assert bad.returncode != 0 and "mismatch" in bad.stderr and "Traceback" not in bad.stderr
        assert not out.exists()  # the failed copy created the layout, and removed it again
        bad = ocipy("copy", src, registry.ref("rt/bad:1"), check=False)
        assert bad.returncode != 0 and "mismatch" in bad.stderr
        bad = ocipy("copy", src, f"oci-archive:{workdir / 'never.tar'}", check=False)
        assert bad.returncode != 0 and not (workdir / "never.tar").exists()
        _no_leftovers(workdir)
    assert ocipy("inspect", "--raw", registry.ref("rt/bad:1"), check=False).returncode != 0
    missing = ocipy("copy", f"docker-archive:{workdir / 'nope.tar'}", f"oci:{workdir / 'o2'}:x", check=False)
    assert missing.returncode != 0 and "nope.tar" in missing.stderr and "Traceback" not in missing.stderr
    garbage = workdir / "garbage.tar"
    garbage.write_bytes(b"not a tar" * 100)
    for t in ("docker-archive", "oci-archive"):
        bad = ocipy("copy", f"{t}:{garbage}", f"oci:{workdir / 'o3'}:x", check=False)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_existing_archive_is_replaced_only_on_success(registry: Registry, workdir: Path) -> None:
    _pushed(registry, workdir)
    target = workdir / "keep.tar"
    target.write_bytes(b"old")
    bad = ocipy("copy", registry.ref("rt/missing:1"), f"docker-archive:{target}", check=False)
    assert bad.returncode != 0 and target.read_bytes() == b"old"
    _no_leftovers(workdir)
    ocipy("copy", registry.ref("rt/a:1"), f"docker-archive:{target}")
    assert tarfile.is_tarfile(target)
