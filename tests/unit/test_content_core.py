"""The content core without a kernel or a network: the platform rule, the
walker, the reference grammar, the digest check's bounds, blob writes that
fail short, and pull-side readers that verify at EOF (issue 13)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ocipy.content import reference, walk
from ocipy.content.store import LocalFileSource, _PullReader, open_blob
from ocipy.errors import DigestError, ImageError
from ocipy.image.store import Layout
from ocipy.spec import digest
from ocipy.spec import image as spec

M = spec.MEDIA_MANIFEST


def _entry(name: str, **platform: Any) -> dict[str, Any]:
    return {"mediaType": M, "digest": "sha256:" + name * 64, "size": 1, "platform": platform}


def test_platform_rule_follows_the_image_spec() -> None:
    entries = [
        _entry("a", os="linux", architecture="arm64"),                      # no variant: acceptable
        _entry("b", os="linux", architecture="arm64", variant="v8"),        # exact: preferred
        _entry("c", os="linux", architecture="amd64", **{"os.features": ["sse9"]}),  # needs a feature
        _entry("d", os="linux", architecture="amd64"),
        _entry("e", os="windows", architecture="amd64", **{"os.version": "10.0.17763.1"}),
        _entry("f", os="windows", architecture="amd64", **{"os.version": "10.0.20348.1"}),
    ]
    pick = lambda want: spec.choose_platform(entries, want, "index")["digest"][7]  # noqa: E731
    # arm64 without a variant is arm64/v8 (containerd's normalisation): a and b are equals, the first wins
    assert pick({"os": "linux", "architecture": "arm64", "variant": "v8"}) == "a"
    assert pick({"os": "linux", "architecture": "arm64"}) == "a"
    assert spec.choose_platform(entries[1:], {"os": "linux", "architecture": "arm64"}, "i") is entries[1]
    # os.features are requirements of the image: an entry that needs what the host lacks is not eligible
    assert pick({"os": "linux", "architecture": "amd64"}) == "d"
    assert pick({"os": "linux", "architecture": "amd64", "os.features": ["sse9"]}) == "c"
    assert pick({"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.1"}) == "f"
    with pytest.raises(ImageError, match="no image for platform linux/arm/v7 .has "):
        pick({"os": "linux", "architecture": "arm", "variant": "v7"})
    # the first of equals wins (image-index.md: "the first matching entry SHOULD be used")
    twins = [_entry("1", os="linux", architecture="s390x"), _entry("2", os="linux", architecture="s390x")]
    assert spec.choose_platform(twins, {"os": "linux", "architecture": "s390x"}, "i")["digest"][7] == "1"
    # one entry without a platform is the image
    lone = [{"mediaType": M, "digest": "sha256:" + "9" * 64, "size": 1}]
    assert spec.choose_platform(lone, None, "i") is lone[0]


def test_walker_visits_each_digest_once_and_survives_cycles() -> None:
    a = {"mediaType": spec.MEDIA_INDEX, "digest": "sha256:" + "a" * 64, "size": 1}
    b = {"mediaType": M, "digest": "sha256:" + "b" * 64, "size": 1}
    c = {"mediaType": spec.MEDIA_CONFIG, "digest": "sha256:" + "c" * 64, "size": 1}
    docs = {a["digest"]: {"manifests": [b, a]}, b["digest"]: {"config": c, "layers": [c], "subject": a}}
    got = walk.walk(lambda d: docs[d["digest"]], [a])
    assert [d["digest"][7] for d in got] == ["a", "b", "c"]
    deep = {"mediaType": spec.MEDIA_INDEX, "digest": "sha256:" + "d" * 64, "size": 1}
    with pytest.raises(ImageError, match="nested too deeply"):
        walk.resolve_image(lambda d: {"manifests": [deep]}, deep, {"os": "linux", "architecture": "amd64"})


def test_one_reference_grammar() -> None:
    assert str(reference.parse("L:bb")) == "oci:L:bb"
    assert reference.parse("docker://busybox").docker.name == "docker.io/library/busybox"  # type: ignore[union-attr]
    for bad in ("oci:L:", "oci:", "docker:x", "dir:/x", "sif:x", "ftp://x", "oci:/x\n:t"):
        with pytest.raises(reference.InvalidReference):
            reference.parse(bad)
    with pytest.raises(ImageError, match="a tag is required"):
        reference.require_layout("oci:/x")


def test_verifier_bounds_the_size_before_hashing_more() -> None:
    d = digest.of_bytes(b"abc")
    v = digest.Verifier(d, 3, "blob")
    v.update(b"abc")
    with pytest.raises(DigestError, match="more than the 3 bytes"):
        v.update(b"d")
    r = digest.VerifyingReader(_Bytes(b"abd"), d, 3)
    assert r.read(2) == b"ab" and r.read(5) == b"d"
    with pytest.raises(DigestError, match="digest mismatch"):
        r.read(5)  # the read that reaches EOF verifies


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_a_write_that_makes_no_progress_fails_and_stores_nothing(tmp_path: Any, monkeypatch: Any) -> None:
    layout = Layout.init(str(tmp_path / "l"))
    import posix

    monkeypatch.setattr(posix, "write", lambda fd, data: 0)  # fsutil writes through posix
    with pytest.raises(ImageError, match="short write"):
        layout.write_blob(b"some content")
    monkeypatch.undo()
    assert not layout.has_blob(digest.of_bytes(b"some content"))
    assert [n for n in os.listdir(layout.path) if n.startswith(".ocipy")] == []


class _Source:
    """fetch_blob that restarts once (a registry ignoring Range) and can fail verification."""

    name = "test"

    def __init__(self, data: bytes, bad: bool = False) -> None:
        self.data, self.bad = data, bad

    def local_path(self, desc: Any) -> None:
        return None

    def fetch_blob(self, desc: Any, sink: Any, progress: Any = None) -> None:
        sink.write(self.data[:3])
        sink.reset()  # start over: the 3 bytes already read must not come twice
        v = digest.Verifier(desc["digest"], desc["size"], "blob")
        for i in range(0, len(self.data), 2):
            chunk = self.data[i:i + 2]
            if self.bad and i == 4:
                chunk = b"!!"
            v.update(chunk)
            sink.write(chunk)
        v.finish()


def test_pull_reader_streams_and_verifies_at_eof() -> None:
    data = b"0123456789"
    desc = {"digest": digest.of_bytes(data), "size": len(data)}
    with _PullReader(_Source(data), desc) as r:  # type: ignore[arg-type]
        assert r.read(-1) == data
    with _PullReader(_Source(data, bad=True), desc) as r:  # type: ignore[arg-type]
        with pytest.raises(DigestError):
            while r.read(4):
                pass


class _FastSource:
    """A source whose blob arrives as fast as it is asked for, in 64 KiB writes."""

    name = "fast"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def fetch_blob(self, desc: Any, sink: Any, progress: Any = None) -> None:
        for i in range(0, len(self.data), 1 << 16):
            sink.write(self.data[i:i + (1 << 16)])


def test_pull_reader_downloads_ahead_of_its_reader() -> None:
    # a layer read later is fetched in full meanwhile: the download never waits for the reader
    data = os.urandom(8 << 20)
    desc = {"digest": digest.of_bytes(data), "size": len(data)}

    with _PullReader(_FastSource(data), desc) as r:  # type: ignore[arg-type]
        r._thread.join(30)
        assert not r._thread.is_alive()
        assert r.read(-1) == data


def test_pull_reader_bounds_what_waits_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(4 << 20)
    desc = {"digest": digest.of_bytes(data), "size": len(data)}
    monkeypatch.setattr(_PullReader, "AHEAD", 1 << 20)

    with _PullReader(_FastSource(data), desc) as r:  # type: ignore[arg-type]
        r._thread.join(1)
        assert r._thread.is_alive() and r._avail <= (1 << 20) + (1 << 16)  # waits for the reader
        assert r.read(-1) == data
    with _PullReader(_FastSource(data), desc) as r:  # type: ignore[arg-type]
        r._thread.join(0.5)
    assert not r._thread.is_alive()  # closing an unread reader stops its download


def test_pull_reader_refuses_other_bytes_after_a_restart() -> None:
    data = b"0123456789"
    desc = {"digest": digest.of_bytes(data), "size": len(data)}

    class Liar:
        name = "liar"

        def fetch_blob(self, desc: Any, sink: Any, progress: Any = None) -> None:
            sink.write(b"XYZ")  # what the reader may already have applied
            sink.reset()
            sink.write(data)  # verifies as a whole, but is not what came first

    with _PullReader(Liar(), desc) as r:  # type: ignore[arg-type]
        with pytest.raises(ImageError, match="other bytes"):
            r.read(-1)


def test_open_blob_of_a_local_file_verifies(tmp_path: Any) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    desc = {"digest": digest.of_bytes(b"hellO"), "size": 5}
    r = open_blob(LocalFileSource(str(f)), desc)
    with pytest.raises(DigestError):
        r.read(-1)


def test_inspect_unpack_and_copy_pick_the_same_image(tmp_path: Any) -> None:
    from ocipy import api_image, api_registry
    from ocipy.image.build import set_tag

    host = spec.host_platform()
    layout = Layout.init(str(tmp_path / "l"))
    entries = []
    for variant in ("v9", None):
        cfg = {"architecture": host["architecture"], "os": host["os"], "rootfs": {"type": "layers", "diff_ids": []},
               "config": {"Labels": {"variant": str(variant)}}}
        cdesc = layout.put_json(cfg, spec.MEDIA_CONFIG)
        mdesc = layout.put_json({"schemaVersion": 2, "mediaType": M, "config": cdesc, "layers": []}, M)
        mdesc["platform"] = {k: v for k, v in {**host, "variant": variant}.items() if v}
        entries.append(mdesc)
    idesc = layout.put_json({"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": entries},
                            spec.MEDIA_INDEX)
    set_tag(layout, "multi", idesc)
    ref = f"oci:{layout.path}:multi"
    picked = api_image.inspect(ref)["digest"]
    copied = api_registry.copy(ref, f"oci:{tmp_path / 'out'}:x", progress=False)
    assert picked == copied == entries[1]["digest"]  # the exact match, not the first acceptable one
    assert api_registry.inspect(ref)["Labels"] == {"variant": "None"}
    # oci:DIR@DIGEST names one image of the layout by digest, whatever its tags
    assert api_image.inspect(f"oci:{layout.path}@{entries[0]['digest']}")["digest"] == entries[0]["digest"]
