"""A registry that never stops talking (issue 13, defect 4).

Our own http.server on 127.0.0.1 answers one request kind with an endless
body (chunked, or under a huge Content-Length, or a gzip bomb): the `/v2/`
ping, the token server, an error answer, a tag list, a manifest, a blob.
The ocipy CLI runs in a subprocess; its peak memory (ru_maxrss from wait4)
must stay far below what the server sends (it sends up to 1 GiB before it
gives up), and it must fail with one clear line and nothing stored.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import EMPTY_CONFIG, OCIPY, FakeServer, QuietHandler, image_manifest
from test_registry_support import sha256_of as _d

pytestmark = pytest.mark.interop

SEND_CAP = 1 << 30  # the server gives up after this much; an unbounded client would hold it all
RSS_LIMIT_MIB = 160  # ocipy copy peaks at ~50 MiB; the attacks send up to 1024 MiB
LAYER = os.urandom(200_000)
CONFIG = EMPTY_CONFIG
MANIFEST = image_manifest(CONFIG, [LAYER])


def _gzip_bomb(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(c.compress(zeros) for _ in range(size >> 20)) + c.flush()


BOMB = _gzip_bomb(256 << 20)  # ~250 KiB on the wire, 256 MiB decompressed


class Endless(FakeServer):
    """A registry whose answer of kind ``mode`` never ends."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sent = 0
        owner = self

        class Handler(QuietHandler):

            def _endless(self, code: int, start: bytes, filler: bytes, *, length: int | None = None,
                         headers: dict[str, str] | None = None) -> None:
                """``start``, then ``filler`` until the client hangs up (or SEND_CAP)."""
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if length is None:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                chunk = filler * max(1, (64 << 10) // len(filler))
                sent = 0
                try:
                    for data in itertools.chain((start,), itertools.repeat(chunk)):
                        if length is None:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        else:
                            self.wfile.write(data)
                        sent += len(data)
                        owner.sent = max(owner.sent, sent)
                        if sent > SEND_CAP:
                            break
                except OSError:
                    pass  # the client hung up: what it should do
                self.close_connection = True

            def do_HEAD(self) -> None:
                """A blob (or manifest) of 1 TiB: HEAD answers say so and send nothing."""
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 40 if self.path != "/v2/" else 2))
                self.send_header("Docker-Content-Digest", _d(LAYER))
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.end_headers()

            def do_GET(self) -> None:
                mode, path = owner.mode, self.path
                if path == "/v2/":
                    if mode == "ping":
                        return self._endless(200, b"{", b" ")
                    if mode == "ping-length":
                        return self._endless(200, b"{", b" ", length=1 << 40)
                    if mode == "gzip":
                        return self.reply(200, BOMB, {"Content-Encoding": "gzip"})
                    if mode == "token":
                        realm = f"http://{owner.host}/token"
                        return self.reply(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="x"'})
                    return self.reply(200, b"{}")
                if path.startswith("/token"):
                    return self._endless(200, b'{"token": "', b"a")
                if "/tags/list" in path:
                    return self._endless(200, b'{"name": "r/img", "tags": [', b'"a",')
                if "/manifests/" in path:
                    if mode == "error":
                        return self._endless(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "',
                                             b"x")
                    if mode == "manifest":
                        return self._endless(200, b'{"schemaVersion": 2, "x": "', b"a",
                                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                    return self.reply(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                      "Docker-Content-Digest": _d(MANIFEST)})
                if path.endswith(_d(CONFIG)):
                    return self.reply(200, CONFIG)
                if path.endswith(_d(LAYER)) and mode == "blob":
                    return self._endless(200, LAYER, b"\0")
                if path.endswith(_d(LAYER)):
                    return self.reply(200, LAYER)
                return self.reply(404, b"{}")

        super().__init__(Handler)


@pytest.fixture
def endless(request: pytest.FixtureRequest) -> Iterator[Endless]:
    server = Endless(request.param)
    try:
        yield server
    finally:
        server.stop()


# The peak RSS of a process started from this (large) pytest process would count the
# pages it shared with pytest before its exec (a vfork shares pytest's memory): a small
# Python parent forks the CLI and reports what wait4 says of that child alone.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _run(*args: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in MiB) of the ocipy CLI."""
    import sys

    r = subprocess.run([sys.executable, "-c", _MEASURE, OCIPY, *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    code, rss_kib = (int(x) for x in r.stdout.split())
    return code, r.stderr, rss_kib // 1024


@pytest.mark.parametrize("endless,message", [
    ("ping", "pinging registry .*: response exceeds the 1048576-byte limit"),
    ("ping-length", r"response of 1099511627776 bytes exceeds the 1048576-byte limit"),
    ("gzip", "response exceeds the 1048576-byte limit once decompressed"),
    ("token", "token server .*: response exceeds the 1048576-byte limit"),
    ("error", r"manifest unknown \(HTTP 404 Not Found\)"),
    ("manifest", "manifest exceeds the 4194304-byte limit"),
    ("blob", f"more than the {len(LAYER)} bytes its descriptor gives"),
], indirect=["endless"])
def test_endless_answer_is_bounded(endless: Endless, tmp_path: Path, message: str) -> None:
    import re

    out = tmp_path / "out"
    # --quiet: no progress lines, the error is the one line
    code, err, rss = _run("copy", "--quiet", "--retry-times=0", f"docker://{endless.host}/r/img:1", f"oci:{out}:x")
    assert rss < RSS_LIMIT_MIB, f"peak RSS {rss} MiB reading an endless answer ({endless.sent >> 20} MiB sent)"
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]
    blobs = out / "blobs" / "sha256"
    stored = {p.name for p in blobs.iterdir()} if blobs.exists() else set()
    assert _d(LAYER).split(":")[1] not in stored
    assert not any(p.name.startswith(".ocipy-tmp") for p in out.iterdir()) if out.exists() else True


@pytest.mark.parametrize("endless", ["tags"], indirect=True)
def test_endless_tag_list_is_bounded(endless: Endless) -> None:
    code, err, rss = _run("tags", "--retry-times=0", f"docker://{endless.host}/r/img")
    assert rss < RSS_LIMIT_MIB, f"peak RSS {rss} MiB reading an endless tag list ({endless.sent >> 20} MiB sent)"
    assert code != 0
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert "exceeds the 4194304-byte limit" in err


@pytest.mark.parametrize("endless", ["none"], indirect=True)
def test_head_of_a_huge_blob_is_not_a_huge_body(endless: Endless) -> None:
    """The bounds apply to bodies: a HEAD's Content-Length is what a GET would send."""
    from ocipy.registry.client import RegistryClient

    with RegistryClient(endless.host, retry_times=0) as c:
        assert c.has_blob("r/img", _d(LAYER)) == 1 << 40
        assert c.head_manifest("r/img", "1") == (_d(LAYER), "application/vnd.oci.image.manifest.v1+json", 1 << 40)
