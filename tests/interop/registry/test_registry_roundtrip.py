"""Pull, push and copy against a real docker-registry, checked with skopeo both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_registry_support import Registry, host_arch, layout_top, make_layout, ocipy, skopeo

from ocipy.spec.digest import of_bytes as digest_of

pytestmark = pytest.mark.interop


def _blobs(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_push_with_ocipy_pull_with_skopeo(registry: Registry, oci_image: Path, workdir: Path) -> None:
    ocipy("copy", f"oci:{oci_image}:latest", registry.ref("rt/img:v1"))
    out = workdir / "skopeo-out"
    skopeo("copy", "--src-tls-verify=false", registry.ref("rt/img:v1"), f"oci:{out}:v1")
    assert layout_top(out)["digest"] == layout_top(oci_image)["digest"]
    raw = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("rt/img:v1")).stdout
    assert ocipy("inspect", "--raw", registry.ref("rt/img:v1")).stdout == raw
    # Pushing again: every blob is already there.
    ocipy("copy", f"oci:{oci_image}:latest", registry.ref("rt/img:v2"))
    assert sorted(json.loads(ocipy("tags", registry.ref("rt/img")).stdout)["Tags"]) == ["v1", "v2"]


def test_push_with_skopeo_pull_with_ocipy(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "src", layers=3, layer_size=200_000, seed="sk")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:latest", registry.ref("rt/sk:1"))
    out = workdir / "out"
    ocipy("copy", registry.ref("rt/sk:1"), f"oci:{out}:pulled")
    top = layout_top(out)
    assert top["digest"] == layout_top(src)["digest"]
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "pulled"
    assert _blobs(out) == _blobs(src)
    # By digest too, into the same layout (nothing new to fetch).
    ocipy("copy", registry.ref(f"rt/sk@{top['digest']}"), f"oci:{out}:again")
    assert not [p for p in out.iterdir() if p.name.startswith(".ocipy-tmp")]
    info = json.loads(ocipy("inspect", "--no-tags", registry.ref("rt/sk:1")).stdout)
    assert info["Digest"] == top["digest"] and info["Architecture"] == host_arch()
    assert len(info["Layers"]) == 3 and info["Labels"] == {"seed": "sk"}


def test_docker_schema2_from_skopeo(registry: Registry, oci_image: Path, workdir: Path) -> None:
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{oci_image}:latest",
           registry.ref("rt/d2:1"))
    raw = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("rt/d2:1")).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    ocipy("copy", registry.ref("rt/d2:1"), registry.ref("rt/d2copy:1"))
    assert ocipy("inspect", "--raw", registry.ref("rt/d2copy:1")).stdout == raw
    out = workdir / "out"
    ocipy("copy", registry.ref("rt/d2:1"), f"oci:{out}:1")
    skopeo("copy", f"oci:{out}:1", f"oci:{workdir / 'check'}:1")  # skopeo reads what we wrote


def test_registry_to_registry_mount_and_chunked(registry: Registry, oci_image: Path) -> None:
    ocipy("copy", "--chunk-size", "50", f"oci:{oci_image}:latest", registry.ref("rt/a:1"))
    ocipy("copy", registry.ref("rt/a:1"), registry.ref("other/b:1"))
    a = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("rt/a:1")).stdout
    b = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("other/b:1")).stdout
    assert a == b


def test_multi_platform(registry: Registry, workdir: Path) -> None:
    src = make_layout(workdir / "multi", platforms=[("linux", host_arch()), ("linux", "s390x")])
    ocipy("copy", "--all", f"oci:{src}:latest", registry.ref("rt/multi:all"))
    raw = json.loads(ocipy("inspect", "--raw", registry.ref("rt/multi:all")).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json" and len(raw["manifests"]) == 2
    # skopeo copies every image back, and the index digest is ours.
    back = workdir / "back"
    skopeo("copy", "--all", "--src-tls-verify=false", registry.ref("rt/multi:all"), f"oci:{back}:x")
    assert layout_top(back)["digest"] == layout_top(src)["digest"]
    # Without --all: the host's image only, as the top manifest.
    one = workdir / "one"
    ocipy("copy", registry.ref("rt/multi:all"), f"oci:{one}:x")
    host = [m for m in raw["manifests"] if m["platform"]["architecture"] == host_arch()][0]
    assert layout_top(one)["digest"] == host["digest"]
    other = workdir / "other"
    ocipy("copy", "--platform", "linux/s390x", registry.ref("rt/multi:all"), f"oci:{other}:x")
    s390 = [m for m in raw["manifests"] if m["platform"]["architecture"] == "s390x"][0]
    assert layout_top(other)["digest"] == s390["digest"]
    bad = ocipy("copy", "--platform", "linux/mips", registry.ref("rt/multi:all"), f"oci:{workdir / 'x'}:x",
                check=False)
    assert bad.returncode != 0 and "no image for platform linux/mips" in bad.stderr


@pytest.mark.parametrize("fmt", ["zstd", "gzip"])
def test_dest_compress(registry: Registry, workdir: Path, fmt: str) -> None:
    src = make_layout(workdir / "src", layers=2, layer_size=5000)
    if fmt == "gzip":  # make the source uncompressed zstd first, then back to gzip
        ocipy("copy", "--dest-compress", "zstd", f"oci:{src}:latest", f"oci:{workdir / 'z'}:z")
        src = workdir / "z"
        tag = "z"
    else:
        tag = "latest"
    ocipy("copy", "--dest-compress", fmt, f"oci:{src}:{tag}", registry.ref(f"rt/c:{fmt}"))
    manifest = json.loads(ocipy("inspect", "--raw", registry.ref(f"rt/c:{fmt}")).stdout)
    assert {d["mediaType"] for d in manifest["layers"]} == {f"application/vnd.oci.image.layer.v1.tar+{fmt}"}
    out = workdir / f"skopeo-{fmt}"
    skopeo("copy", "--src-tls-verify=false", registry.ref(f"rt/c:{fmt}"), f"oci:{out}:x")
    raw = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref(f"rt/c:{fmt}")).stdout
    assert layout_top(out)["digest"] == digest_of(raw.encode())
    # The config's diff_ids still name the uncompressed layers, so skopeo's copy verified them.


def test_delete_and_missing(registry: Registry, oci_image: Path, workdir: Path) -> None:
    ocipy("copy", f"oci:{oci_image}:latest", registry.ref("rt/del:1"))
    refused = ocipy("delete", registry.ref("rt/del:1"), check=False)  # runc's verb: containers only
    assert refused.returncode == 1 and "ocipy image delete" in refused.stderr
    ocipy("image", "delete", registry.ref("rt/del:1"))
    gone = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("rt/del:1"), check=False)
    assert gone.returncode != 0
    missing = ocipy("copy", registry.ref("rt/del:1"), f"oci:{workdir / 'm'}:x", check=False)
    assert missing.returncode == 1 and "manifest unknown" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_tags_pagination_and_referrers(registry: Registry, oci_image: Path) -> None:
    from ocipy import api_registry
    from ocipy.registry.client import RegistryClient

    for tag in ("a", "b", "c", "d", "e"):
        ocipy("copy", f"oci:{oci_image}:latest", registry.ref(f"rt/many:{tag}"))
    with RegistryClient(registry.host) as client:
        # distribution 2.8 pages (Link: rel="next") but not in order: compare as lists sorted.
        paged = client.list_tags("rt/many", page_size=2)
        assert sorted(paged) == ["a", "b", "c", "d", "e"] and len(paged) == 5
        subject, _, subject_digest = client.get_manifest("rt/many", "a")
    # An artifact whose subject is the image: distribution 2.8 has no referrers API,
    # so the push maintains the sha256-<hex> tag index and the lookup falls back to it.
    empty = b"{}"

    artifact = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty), "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject_digest,
                    "size": len(subject)},
        "annotations": {"org.example": "yes"},
    }
    data = json.dumps(artifact).encode()
    from ocipy.content.reference import parse_docker_reference
    from ocipy.registry.transports import RegistryDestination

    ref = parse_docker_reference(f"{registry.host}/rt/many")
    dst = RegistryDestination(ref, RegistryClient(registry.host))
    try:
        import tempfile

        with tempfile.NamedTemporaryFile() as f:
            f.write(empty)
            f.flush()
            from ocipy.content.store import LocalFileSource

            dst.put_blob({"digest": digest_of(empty), "size": 2}, LocalFileSource(f.name))
        dst.put_manifest(data, artifact["mediaType"], digest_of(data))
        dst.put_manifest(data, artifact["mediaType"], digest_of(data))  # no duplicate entry
    finally:
        dst.close()
    index = api_registry.referrers(registry.ref(f"rt/many@{subject_digest}"))
    assert [m["digest"] for m in index["manifests"]] == [digest_of(data)]
    assert index["manifests"][0]["artifactType"] == "application/vnd.example.sbom"
    assert index["manifests"][0]["annotations"] == {"org.example": "yes"}
    assert api_registry.referrers(registry.ref(f"rt/many@{subject_digest}"),
                                  artifact_type="application/other")["manifests"] == []


def test_push_from_an_archive_leaves_no_temp_dirs(registry: Registry, workdir: Path) -> None:
    """Blobs without a local file (here: inside a docker-archive) are staged in one temp
    directory that the copy removes; the workers once raced to make one each, and all
    but the last were left in /tmp."""
    import glob
    import tempfile

    pattern = str(Path(tempfile.gettempdir()) / "ocipy-push-*")
    src = make_layout(workdir / "src", layers=6, layer_size=20000)
    archive = workdir / "image.tar"
    ocipy("copy", f"oci:{src}:latest", f"docker-archive:{archive}:img:1")
    before = set(glob.glob(pattern))
    for i in range(5):  # a race: several tries
        ocipy("copy", f"docker-archive:{archive}", registry.ref(f"rt/arch{i}:1"))
    assert set(glob.glob(pattern)) == before
    manifest = json.loads(ocipy("inspect", "--raw", registry.ref("rt/arch2:1")).stdout)
    assert len(manifest["layers"]) == 6
