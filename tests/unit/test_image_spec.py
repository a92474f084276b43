"""Image-spec documents, digests, references, and the config conversion."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ocipy.content import reference as refs
from ocipy.errors import ImageError
from ocipy.image.conversion import resolve_user, runtime_config
from ocipy.spec import digest
from ocipy.spec import image as spec

D = "sha256:" + "a" * 64


def desc(**kw: Any) -> dict[str, Any]:
    d = {"mediaType": spec.MEDIA_LAYER_GZIP, "digest": D, "size": 1}
    d.update(kw)
    return d


def test_digest_grammar() -> None:
    assert digest.parse(D) == ("sha256", "a" * 64)
    assert digest.parse("sha512:" + "b" * 128)[0] == "sha512"
    assert digest.parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8")
    # descriptor.md: "When the algorithm identifier is sha256, the encoded portion MUST match
    # /[a-f0-9]{64}/. Note that [A-F] MUST NOT be used here."
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "sha512:" + "b" * 64, "SHA256:" + "a" * 64, "sha256",
                ":abc", "sha256:../../etc", None, 12):
        with pytest.raises(ImageError):
            digest.parse(bad)


def test_digest_verification() -> None:
    data = b"hello"
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    digest.verify_bytes(data, good, 5)
    with pytest.raises(ImageError, match="size"):
        digest.verify_bytes(data, good, 6)
    with pytest.raises(ImageError, match="mismatch"):
        digest.verify_bytes(b"hellO", good)
    good512 = "sha512:" + hashlib.sha512(data).hexdigest()
    digest.verify_bytes(data, good512)
    with pytest.raises(ImageError, match="mismatch"):
        digest.verify_bytes(b"x", good512)


def test_descriptor_validation() -> None:
    spec.validate_descriptor(desc(annotations={"a": "b"}, urls=["https://x"], artifactType="application/x.y"))
    with pytest.raises(ImageError, match="mediaType"):
        spec.validate_descriptor({"digest": D, "size": 1})
    with pytest.raises(ImageError, match="size"):
        spec.validate_descriptor(desc(size=-1))  # descriptor.md: "The size MUST NOT be negative."
    with pytest.raises(ImageError, match="size"):
        spec.validate_descriptor(desc(size="1"))
    with pytest.raises(ImageError, match="media type"):
        spec.validate_descriptor(desc(mediaType="not a type"))
    with pytest.raises(ImageError, match="annotations"):
        spec.validate_descriptor(desc(annotations={"a": 1}))
    data = b"{}"
    ok = desc(digest="sha256:" + hashlib.sha256(data).hexdigest(), size=2, data=base64.b64encode(data).decode())
    spec.validate_descriptor(ok)
    # descriptor.md: "The decoded data MUST be identical to the referenced content"
    with pytest.raises(ImageError, match="data"):
        spec.validate_descriptor(dict(ok, data=base64.b64encode(b"[]").decode()))
    with pytest.raises(ImageError, match="base64"):
        spec.validate_descriptor(dict(ok, data="!!!"))


def manifest(**kw: Any) -> dict[str, Any]:
    m = {"schemaVersion": 2, "mediaType": spec.MEDIA_MANIFEST,
         "config": desc(mediaType=spec.MEDIA_CONFIG), "layers": [desc()]}
    m.update(kw)
    return m


def test_manifest_validation() -> None:
    spec.validate_manifest(manifest(subject=desc(mediaType=spec.MEDIA_MANIFEST), annotations={"k": "v"}))
    with pytest.raises(ImageError, match="schemaVersion"):
        spec.validate_manifest(manifest(schemaVersion=1))
    with pytest.raises(ImageError, match="mediaType"):
        spec.validate_manifest(manifest(mediaType=spec.MEDIA_INDEX))  # no manifest/index confusion
    with pytest.raises(ImageError, match="index, not a manifest"):
        spec.validate_manifest(manifest(manifests=[]))
    with pytest.raises(ImageError, match="config"):
        spec.validate_manifest({"schemaVersion": 2, "layers": []})
    # manifest.md: "If the config.mediaType is set to the empty value, the artifactType MUST be defined."
    with pytest.raises(ImageError, match="artifactType"):
        spec.validate_manifest(manifest(config=desc(mediaType=spec.MEDIA_EMPTY)))
    spec.validate_manifest(manifest(config=desc(mediaType=spec.MEDIA_EMPTY), artifactType="application/x.art"))


def test_index_validation() -> None:
    spec.validate_index({"schemaVersion": 2, "manifests": []})
    with pytest.raises(ImageError, match="manifests"):
        spec.validate_index({"schemaVersion": 2})  # image-index.md: "this property MUST be present"
    with pytest.raises(ImageError, match="manifest, not an index"):
        spec.validate_index({"schemaVersion": 2, "manifests": [], "layers": []})
    with pytest.raises(ImageError, match="mediaType"):
        spec.validate_index({"schemaVersion": 2, "mediaType": spec.MEDIA_MANIFEST, "manifests": []})
    with pytest.raises(ImageError, match="platform.os"):
        spec.validate_index({"schemaVersion": 2, "manifests": [desc(platform={"architecture": "amd64"})]})


def test_config_validation() -> None:
    good = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [D]},
            "config": {"Env": ["A=b"], "Cmd": ["sh"]}, "history": [{"created_by": "x"}], "extra": 1}
    spec.validate_config(good)
    # config.md: rootfs.type "MUST be set to layers"
    with pytest.raises(ImageError, match="rootfs.type"):
        spec.validate_config(dict(good, rootfs={"type": "other", "diff_ids": []}))
    with pytest.raises(ImageError, match="diff_ids"):
        spec.validate_config(dict(good, rootfs={"type": "layers", "diff_ids": ["nope"]}))
    with pytest.raises(ImageError, match="Env"):
        spec.validate_config(dict(good, config={"Env": ["NOEQUALS"]}))
    with pytest.raises(ImageError, match="os"):
        spec.validate_config({k: v for k, v in good.items() if k != "os"})
    with pytest.raises(ImageError, match="history"):
        spec.validate_config(dict(good, history=[{"created_by": "a"}, {"created_by": "b"}]))


def test_platforms() -> None:
    assert spec.parse_platform("linux/arm64/v8") == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    with pytest.raises(ImageError):
        spec.parse_platform("linux")
    assert spec.platform_matches({"os": "linux", "architecture": "arm64", "variant": "v8"},
                                 {"os": "linux", "architecture": "arm64"})
    assert not spec.platform_matches({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"})
    assert spec.host_platform()["os"] == "linux"


def test_references() -> None:
    r = refs.parse("oci:/tmp/x:tag")
    assert (r.transport, r.path, r.tag) == ("oci", "/tmp/x", "tag")
    r = refs.parse("oci-archive:/tmp/a.tar")
    assert (r.transport, r.path, r.tag) == ("oci-archive", "/tmp/a.tar", None)
    r = refs.parse("docker-archive:/tmp/d.tar:busybox:latest")
    assert (r.transport, r.path, r.tag) == ("docker-archive", "/tmp/d.tar", "busybox:latest")
    assert refs.parse("layout:v1").transport == "oci"
    with pytest.raises(ImageError, match="tag is required"):
        refs.require_layout("oci:/tmp/x")
    with pytest.raises(ImageError, match="transport"):
        refs.parse("containers-storage:x")
    assert refs.parse("docker://example.com/x").docker is not None


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nwheel:x:10:app,other\napp:x:1001:\naudio:x:29:app\n")
    return tmp_path


def test_user_resolution(rootfs: Path) -> None:
    assert resolve_user(str(rootfs), "app") == {"uid": 1000, "gid": 1001, "additionalGids": [10, 29]}
    assert resolve_user(str(rootfs), "app:wheel") == {"uid": 1000, "gid": 10}
    # conversion.md: numeric values "MUST be copied verbatim"
    assert resolve_user(str(rootfs), "4242:4343") == {"uid": 4242, "gid": 4343}
    assert resolve_user(str(rootfs), "1000") == {"uid": 1000, "gid": 1001}
    assert resolve_user(str(rootfs), "4242") == {"uid": 4242, "gid": 0}
    # conversion.md: "If Config.User does not correspond to a user ... MUST return an error"
    with pytest.raises(ImageError, match="nobody"):
        resolve_user(str(rootfs), "nobody")
    with pytest.raises(ImageError, match="nogroup"):
        resolve_user(str(rootfs), "app:nogroup")


def test_user_resolution_does_not_follow_symlinks_out_of_the_rootfs(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(outside / "passwd")
    with pytest.raises(ImageError, match="evil"):
        resolve_user(str(root), "evil")


def test_runtime_config_conversion(rootfs: Path) -> None:
    image = {"architecture": "amd64", "os": "linux", "variant": "v2", "author": "me", "created": "2024-01-01T00:00:00Z",
             "rootfs": {"type": "layers", "diff_ids": []},
             "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--flag"], "Env": ["PATH=/x", "A=1"],
                        "WorkingDir": "/srv", "User": "app", "StopSignal": "SIGINT",
                        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                        "Labels": {"org.opencontainers.image.author": "label wins", "l": "v"}}}
    rc = runtime_config(image, str(rootfs))
    p = rc["process"]
    # conversion.md: "the converter MUST append the value of Config.Cmd to the value of Config.Entrypoint"
    assert p["args"] == ["/bin/app", "--flag"]
    assert p["env"] == ["PATH=/x", "A=1"]
    assert p["cwd"] == "/srv"
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [10, 29]}
    assert p["terminal"] is False
    a = rc["annotations"]
    assert a["org.opencontainers.image.os"] == "linux"
    assert a["org.opencontainers.image.architecture"] == "amd64"
    assert a["org.opencontainers.image.variant"] == "v2"
    assert a["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"
    assert a["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert a["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    # conversion.md: "the value specified in Config.Labels MUST take precedence"
    assert a["org.opencontainers.image.author"] == "label wins"
    assert a["l"] == "v"
    json.dumps(rc)


def test_runtime_config_defaults(rootfs: Path) -> None:
    rc = runtime_config({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
                        str(rootfs))
    assert rc["process"]["args"] == ["sh"]
    assert rc["process"]["env"][0].startswith("PATH=")
    assert rc["process"]["cwd"] == "/"
    assert rc["root"] == {"path": "rootfs", "readonly": False}


def test_chain_ids_follow_config_md() -> None:
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    # config.md: ChainID(A) = DiffID(A); ChainID(A|B) = Digest(ChainID(A) + " " + DiffID(B))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert spec.chain_ids([a, b, c]) == [a, ab, abc]
    assert spec.chain_ids([]) == []
    assert spec.chain_ids([b, a])[1] != ab  # order matters
    # (tests/interop/test_snapshots_containerd.py: containerd names its snapshots the same)


def test_chain_ids_refuse_bad_diff_ids() -> None:
    with pytest.raises(ImageError, match=r"rootfs.diff_ids\[1\]"):
        spec.chain_ids(["sha256:" + "a" * 64, "sha256:XYZ"])
