"""ocipy.api_image's object face (issue 15): Image from layouts and archives, the build
steps as methods, copies and unpacks with a progress callback, typed errors."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from ocipy import api_image as img
from ocipy.errors import ImageError, RegistryError


def _rootfs(path: Path, text: str, size: int = 0) -> str:
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "greeting").write_text(text)
    if size:
        (path / "blob.bin").write_bytes(os.urandom(size))
    return str(path)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """oci:L:app -- two layers, a config -- and oci:L:other (one layer)."""
    lay = tmp_path / "L"
    img.init(str(lay))
    img.new(f"oci:{lay}:app")
    img.add_layer(f"oci:{lay}:app", _rootfs(tmp_path / "r1", "one", 300_000))
    img.add_layer(f"oci:{lay}:app", _rootfs(tmp_path / "r2", "two"))
    img.configure(f"oci:{lay}:app", entrypoint=["/bin/sh", "-c"], cmd=["echo hi"], env=["A=1"],
                  label=["org.example=yes"])
    img.new(f"oci:{lay}:other")
    img.add_layer(f"oci:{lay}:other", _rootfs(tmp_path / "r3", "three"))
    return lay


def _blob(lay: Path, digest: str) -> dict:  # type: ignore[type-arg]
    return json.loads((lay / "blobs" / "sha256" / digest.split(":")[1]).read_text())  # type: ignore[no-any-return]


def test_open_reads_what_the_layout_holds(layout: Path) -> None:
    image = img.open(f"oci:{layout}:app")
    index = json.loads((layout / "index.json").read_text())
    top = next(d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == "app")
    manifest = _blob(layout, top["digest"])
    assert image.digest == top["digest"] == image.descriptor["digest"]
    assert image.manifest == manifest
    assert image.config == _blob(layout, manifest["config"]["digest"])
    assert image.layers == manifest["layers"] and len(image.layers) == 2
    assert image.size == sum(d["size"] for d in manifest["layers"]) > 300_000
    assert image.platform["os"] == "linux" and image.platform["architecture"] == image.config["architecture"]
    assert image.tags == ["app"]
    assert (image.entrypoint, image.cmd, image.env) == (["/bin/sh", "-c"], ["echo hi"], ["A=1"])
    assert image.labels == {"org.example": "yes"}
    assert image.created == image.config["created"]
    assert image.inspect() == img.inspect(f"oci:{layout}:app")
    assert img.open(f"oci:{layout}:app") == image and "Image(" in repr(image)
    # what is handed out is a copy: editing it changes nothing
    image.config["config"]["Env"].append("B=2")
    assert image.env == ["A=1"] and image.config["config"]["Env"] == ["A=1"]


def test_build_steps_return_new_images(layout: Path, tmp_path: Path) -> None:
    ref = f"oci:{layout}:app"
    image = img.open(ref)
    more = image.add_layer(_rootfs(tmp_path / "r4", "four"))
    assert len(more.layers) == 3 and more.digest != image.digest
    assert len(image.layers) == 2  # the old object still describes what it read
    conf = more.configure(cmd=["echo bye"], env=["B=2"], history="set cmd")
    assert conf.cmd == ["echo bye"] and conf.env == ["A=1", "B=2"] and conf.layers == more.layers
    assert conf.config["history"][-1]["created_by"] == "set cmd"
    v1 = conf.tag("v1")
    assert v1.reference == f"oci:{layout}:v1" and v1.digest == conf.digest
    assert v1.tags == ["app", "v1"] and img.open(ref).tags == ["app", "v1"]
    # a stale object does not edit what the tag names now
    with pytest.raises(ImageError, match="open it again"):
        image.configure(cmd=["x"])
    assert img.open(ref).digest == conf.digest


def test_platform_and_pinning_to_the_digest(tmp_path: Path) -> None:
    lay = tmp_path / "M"
    img.init(str(lay))
    img.new(f"oci:{lay}:amd", "linux/amd64")
    img.new(f"oci:{lay}:arm", "linux/arm64/v8")
    img.configure(f"oci:{lay}:arm", cmd=["arm"])
    # an index of the two, tagged "multi"
    index = json.loads((lay / "index.json").read_text())
    children = []
    for d in index["manifests"]:
        child = {k: d[k] for k in ("mediaType", "digest", "size")}
        plat = img.open(f"oci:{lay}:{d['annotations']['org.opencontainers.image.ref.name']}").platform
        child["platform"] = plat
        children.append(child)
    idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                      "manifests": children}).encode()
    from ocipy.image.store import Layout

    digest, size = Layout.open(str(lay)).write_blob(idx)
    from ocipy.image import build

    build.set_tag(Layout.open(str(lay)), "multi",
                  {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": size})
    arm = img.open(f"oci:{lay}:multi", platform="linux/arm64/v8")
    assert arm.descriptor["digest"] == digest and arm.digest == img.open(f"oci:{lay}:arm").digest
    assert arm.platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert arm.cmd == ["arm"] and arm.tags == ["arm", "multi"]
    assert img.open(f"oci:{lay}:multi", platform={"os": "linux", "architecture": "amd64"}).cmd is None
    # the image object copies the one image it is, whatever the tag names later
    img.tag(f"oci:{lay}:amd", "multi")
    copied = arm.copy_to(f"oci:{tmp_path / 'out'}:arm")
    assert copied.digest == arm.digest and copied.cmd == ["arm"]
    with pytest.raises(ImageError):
        arm.configure(cmd=["x"])  # "multi" names another image now


def test_archives_copy_export_and_unpack_with_progress(layout: Path, tmp_path: Path) -> None:
    image = img.open(f"oci:{layout}:app")
    seen: list[tuple[str, int, int]] = []
    archive = image.copy_to(f"oci-archive:{tmp_path / 'a.tar'}:app",
                            progress=lambda d, done, total: seen.append((d, done, total)))
    assert archive.digest == image.digest and archive.tags == ["app"] and archive.config == image.config
    for d in image.layers + [image.manifest["config"]]:
        calls = [(done, total) for g, done, total in seen if g == d["digest"]]
        assert calls[0] == (0, d["size"]) and calls[-1] == (d["size"], d["size"])
    assert image.export(f"docker-archive:{tmp_path / 'd.tar'}:example/app:1")
    docker = img.open(f"docker-archive:{tmp_path / 'd.tar'}")
    assert docker.cmd == image.cmd and len(docker.layers) == 2
    with tarfile.open(tmp_path / "d.tar") as t:
        assert json.load(t.extractfile("manifest.json"))[0]["RepoTags"] == ["example/app:1"]  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="needs an image in a layout"):
        docker.add_layer(str(tmp_path))
    # unpacking reports each layer's compressed bytes
    layers: list[tuple[str, int, int]] = []
    config = docker.unpack(str(tmp_path / "bundle"), lambda d, done, total: layers.append((d, done, total)))
    assert config["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "greeting").read_text() == "two"
    for d in docker.layers:
        calls = [(done, total) for g, done, total in layers if g == d["digest"]]
        assert calls[0] == (0, d["size"]) and calls[-1] == (d["size"], d["size"])
        assert len([c for c in calls if c[0] == c[1]]) == 1
    assert [g for g, done, total in layers if done == total] == [d["digest"] for d in docker.layers]


def test_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        img.open(f"oci:{tmp_path / 'none'}:x")
    img.init(str(tmp_path / "E"))
    with pytest.raises(ImageError, match="tag 'x' not found"):
        img.open(f"oci:{tmp_path / 'E'}:x")
    with pytest.raises(RegistryError) as e:
        img.open("docker://127.0.0.1:1/nothing/here:1")
    assert e.value.status is None  # no answer at all
    with pytest.raises(RegistryError, match="must be docker://"):
        img.push(f"oci:{tmp_path / 'E'}:x", f"oci:{tmp_path / 'F'}:x")
