"""Pure parts of the registry client: references, challenges, auth files, links, digests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ocipy.content.reference import parse as parse_image_reference
from ocipy.content.reference import parse_docker_reference
from ocipy.errors import RegistryError
from ocipy.registry.auth import lookup_auth_file, parse_www_authenticate, resolve_credentials
from ocipy.registry.client import _next_link, error_info, is_loopback, referrers_tag, retry_after
from ocipy.spec.digest import Verifier
from ocipy.spec.digest import of_bytes as digest_of


@pytest.mark.parametrize("text,host,repo,tag,digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("user/app:1.0", "docker.io", "user/app", "1.0", None),
    ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", "v1", None),
    ("localhost/x", "localhost", "x", "latest", None),
    ("quay.io/ns/img@sha256:" + "a" * 64, "quay.io", "ns/img", None, "sha256:" + "a" * 64),
    ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", None),
])
def test_docker_reference(text: str, host: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = parse_docker_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)


@pytest.mark.parametrize("text", ["", "Upper/Case", "host:5000/repo:bad tag", "a/b@sha256:xyz!", "a//b"])
def test_bad_docker_reference(text: str) -> None:
    with pytest.raises(RegistryError):
        parse_docker_reference(text)


def test_image_references() -> None:
    r = parse_image_reference("oci:/tmp/lay:v1")
    assert (r.transport, r.path, r.tag) == ("oci", "/tmp/lay", "v1")
    r = parse_image_reference("docker-archive:/tmp/a.tar:busybox:latest")
    assert (r.path, r.tag) == ("/tmp/a.tar", "busybox:latest")
    assert parse_image_reference("docker://reg.example/x").docker is not None
    assert parse_docker_reference("reg.example/x").api_host == "reg.example"
    assert parse_docker_reference("x").api_host == "registry-1.docker.io"
    for bad in ("docker:reg/x", "ftp://x", "oci:", "oci:L:", "dir:/x", ""):
        with pytest.raises(RegistryError):
            parse_image_reference(bad)
    # one grammar for every command: a bare DIR[:TAG] is an oci: layout, a digest names an image in it
    r = parse_image_reference("L:bb")
    assert (r.transport, r.path, r.tag) == ("oci", "L", "bb")
    r = parse_image_reference("oci:/tmp/lay@sha256:" + "a" * 64)
    assert (r.path, r.tag, r.digest) == ("/tmp/lay", None, "sha256:" + "a" * 64)


def test_www_authenticate() -> None:
    got = parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')
    assert got == [("bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                               "scope": "repository:a/b:pull,push"})]
    got = parse_www_authenticate('Basic realm="x \\"y\\"", Bearer realm="r"')
    assert got == [("basic", {"realm": 'x "y"'}), ("bearer", {"realm": "r"})]
    assert parse_www_authenticate("Basic") == [("basic", {})]
    assert parse_www_authenticate("") == []


def _auths(path: Path, auths: dict[str, str]) -> str:
    path.write_text(json.dumps({"auths": {k: {"auth": base64.b64encode(v.encode()).decode()}
                                          for k, v in auths.items()}}))
    return str(path)


def test_auth_file_lookup(tmp_path: Path) -> None:
    f = _auths(tmp_path / "a.json", {"https://reg.example": "u:p", "reg.example/team": "t:q",
                                     "https://index.docker.io/v1/": "hub:pw"})
    assert lookup_auth_file(f, "reg.example", "other/x") == ("u", "p")
    assert lookup_auth_file(f, "reg.example", "team/x") == ("t", "q")
    assert lookup_auth_file(f, "docker.io", "library/x") == ("hub", "pw")
    assert lookup_auth_file(f, "elsewhere.example", "x") is None
    assert lookup_auth_file(str(tmp_path / "missing.json"), "reg.example") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RegistryError, match="invalid JSON"):
        lookup_auth_file(str(tmp_path / "bad.json"), "reg.example")


def test_credential_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _auths(tmp_path / "a.json", {"reg.example": "file:1"})
    env = _auths(tmp_path / "env.json", {"reg.example": "env:2"})
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", env)
    assert resolve_credentials("reg.example", "x", creds="a:b") == ("a", "b")
    assert resolve_credentials("reg.example", "x", authfile=f) == ("file", "1")
    assert resolve_credentials("reg.example", "x") == ("env", "2")
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    (tmp_path / ".docker").mkdir()
    _auths(tmp_path / ".docker" / "config.json", {"reg.example": "home:3"})
    assert resolve_credentials("reg.example", "x") == ("home", "3")
    assert resolve_credentials("other.example", "x") is None


def test_referrers_tag_schema() -> None:
    assert referrers_tag("sha256:" + "a" * 64) == "sha256-" + "a" * 64
    long = ("test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation:"
            "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation")
    assert referrers_tag(long) == ("test-algorithm-using-algorithm-s-"
                                   "alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot")


def test_link_and_loopback() -> None:
    assert _next_link(['</v2/a/tags/list?last=b&n=2>; rel="next"']) == "/v2/a/tags/list?last=b&n=2"
    assert _next_link(['<x>; rel="prev"']) is None
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example:5000")


def test_retry_after() -> None:
    """RFC 9110 10.2.3: delay-seconds or an HTTP-date."""
    now = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    assert retry_after("120", now) == 120.0
    assert retry_after(" 0 ", now) == 0.0
    assert retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == 10.0
    assert retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now) == 0.0  # in the past: at once
    for bad in ("", "-5", "1.5", "\u00b2", "soon", "Sun, 06 Nov 1994 08:49:47", "Sun, 99 Foo 1994 08:49:47 GMT"):
        assert retry_after(bad, now) is None, bad


def test_error_info() -> None:
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                   "detail": {"Tag": "x"}}]}).encode()
    assert error_info(404, "Not Found", body) == ("HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown",
                                                  ("MANIFEST_UNKNOWN",))
    assert error_info(503, "Service Unavailable", b"<html>busy</html>") == ("HTTP 503 Service Unavailable", ())
    assert error_info(500, "", b"[" * 100_000) == ("HTTP 500", ())  # nested too deeply: no detail
    detail, codes = error_info(400, "Bad Request", json.dumps(
        {"errors": [{"code": "no spaces allowed", "message": "a\nb\x1b[0m" + "x" * 1000}, "junk"]}).encode())
    assert codes == () and "\n" not in detail and "\x1b" not in detail and len(detail) < 400


def test_verifier() -> None:
    data = b"hello"
    v = Verifier(digest_of(data), 5, "blob")
    v.update(data)
    v.finish()
    v = Verifier(digest_of(data), 4, "blob")
    with pytest.raises(RegistryError, match="more than"):
        v.update(data)
    v = Verifier(digest_of(b"other"), 5, "blob")
    v.update(data)
    with pytest.raises(RegistryError, match="digest mismatch"):
        v.finish()
    with pytest.raises(RegistryError, match="unsupported digest algorithm"):
        Verifier("md5:abcd", None, "blob")


def test_cli_flag_normalization() -> None:
    from ocipy.cli.registry import _normalize

    assert _normalize(["--all", "--dest-compress", "a", "b"]) == ["--all=true", "--dest-compress=gzip", "a", "b"]
    assert _normalize(["--dest-compress", "zstd", "--tls-verify=false", "x"]) == [
        "--dest-compress=zstd", "--tls-verify=false", "x"]
