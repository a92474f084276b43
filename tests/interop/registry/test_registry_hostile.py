"""A hostile (or just broken) registry: wrong bytes, wrong sizes, wrong manifests,
flaky connections and redirects.  Nothing unverified may land in the layout.

The server is our own http.server in a thread: each repository name selects
a behaviour.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ocipy import api_registry
from ocipy.errors import RegistryError
from ocipy.registry.endpoints import RegistryOptions

LAYER = os.urandom(300_000)
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _d(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _d(LAYER), "size": len(LAYER)}],
}).encode()
OTHER_MANIFEST = MANIFEST.replace(b'"schemaVersion": 2', b'"schemaVersion": 2 ')


class Hostile:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        hostile = self

        class Blobs(BaseHTTPRequestHandler):
            """A second host for redirected blob downloads: records what it was sent."""

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                hostile.requests.append({"server": "blobs", "path": self.path,
                                         "authorization": self.headers.get("Authorization")})
                self._send(200, LAYER)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path
                hostile.requests.append({"server": "registry", "path": path, "range": self.headers.get("Range"),
                                         "authorization": self.headers.get("Authorization")})
                with hostile.lock:
                    hostile.counts[path] = n = hostile.counts.get(path, 0) + 1
                if path == "/v2/":
                    return self._send(200, b"{}")
                parts = path.split("/")
                mode, kind, ref = parts[2], parts[4], parts[5]
                if mode == "auth" and self.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                    return self._send(401, b"{}", {"WWW-Authenticate": 'Basic realm="x"'})
                if kind == "manifests":
                    body = MANIFEST
                    if mode == "wrongdigest" and ref.startswith("sha256:"):
                        body = OTHER_MANIFEST
                    if mode == "bigmanifest":
                        body = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json", "x": "' + b"a" * (5 << 20) + b'"}'
                        return self._send(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                                          length=None)
                    if mode == "wrongtype":
                        return self._send(200, body, {"Content-Type": "application/vnd.oci.image.index.v1+json"})
                    return self._send(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                                  "Docker-Content-Digest": _d(body)})
                if ref == _d(CONFIG):
                    return self._send(200, CONFIG)
                if ref != _d(LAYER):
                    return self._send(404, b"{}")
                if mode == "wrongbytes":
                    return self._send(200, bytes(reversed(LAYER)))
                if mode == "toolong":
                    return self._send(200, LAYER + b"extra")
                if mode == "short":
                    self._send(200, LAYER[:1000], length=len(LAYER))
                    self.close_connection = True
                    return None
                if mode == "flaky" and n == 1:
                    return self._send(503, b"busy")
                if mode == "resume":
                    rng = self.headers.get("Range")
                    if not rng:
                        self._send(200, LAYER[:100_000], length=len(LAYER))
                        self.close_connection = True
                        return None
                    start = int(rng.split("=")[1].rstrip("-"))
                    return self._send(206, LAYER[start:], {
                        "Content-Range": f"bytes {start}-{len(LAYER) - 1}/{len(LAYER)}"})
                if mode == "auth":
                    return self._send(307, b"", {"Location": f"http://localhost:{hostile.blob_port}/blob?sig=1"})
                return self._send(200, LAYER)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.blobs = ThreadingHTTPServer(("127.0.0.1", 0), Blobs)
        self.blob_port = self.blobs.server_address[1]
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.server, self.blobs)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for s in (self.server, self.blobs):
            s.shutdown()
            s.server_close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    try:
        yield h
    finally:
        h.stop()


def _assert_nothing_stored(layout: Path) -> None:
    if not layout.exists():
        return
    stray = [p.name for p in layout.iterdir() if p.name.startswith(".ocipy-tmp")]
    assert stray == []
    blobs = layout / "blobs" / "sha256"
    names = {p.name for p in blobs.iterdir()} if blobs.exists() else set()
    assert _d(LAYER).split(":")[1] not in names
    assert _d(MANIFEST).split(":")[1] not in names
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"] == []


OPTS = RegistryOptions(retry_times=1)


@pytest.mark.parametrize("mode,message", [
    ("wrongbytes", "digest mismatch"),
    ("toolong", "announces 300005 bytes"),
    ("short", "ended 299000 bytes before its Content-Length"),
    ("bigmanifest", "limit"),
    ("wrongtype", "differs from the manifest's mediaType"),
])
def test_hostile_pull_is_refused(hostile: Hostile, tmp_path: Path, mode: str, message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(RegistryError, match=message):
        api_registry.copy(f"docker://{hostile.host}/{mode}/img:1", f"oci:{out}:x", src_options=OPTS)
    _assert_nothing_stored(out)


def test_manifest_with_other_digest(hostile: Hostile, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RegistryError, match="not the one asked for"):
        api_registry.copy(f"docker://{hostile.host}/wrongdigest/img@{_d(MANIFEST)}", f"oci:{out}:x",
                          src_options=OPTS)
    _assert_nothing_stored(out)


def test_retry_and_resume(hostile: Hostile, tmp_path: Path) -> None:
    digest = api_registry.copy(f"docker://{hostile.host}/flaky/img:1", f"oci:{tmp_path / 'a'}:x", src_options=OPTS)
    assert digest == _d(MANIFEST)
    api_registry.copy(f"docker://{hostile.host}/resume/img:1", f"oci:{tmp_path / 'b'}:x", src_options=OPTS)
    ranges = [r["range"] for r in hostile.requests if r["path"].endswith(_d(LAYER)) and "/resume/" in r["path"]]
    assert ranges == [None, "bytes=100000-"]
    assert (tmp_path / "b" / "blobs" / "sha256" / _d(LAYER).split(":")[1]).read_bytes() == LAYER


def test_credentials_stay_on_their_host(hostile: Hostile, tmp_path: Path) -> None:
    api_registry.copy(f"docker://{hostile.host}/auth/img:1", f"oci:{tmp_path / 'a'}:x",
                      src_options=RegistryOptions(creds="u:p"))
    to_blobs = [r for r in hostile.requests if r["server"] == "blobs"]
    assert to_blobs and all(r["authorization"] is None for r in to_blobs)
    assert any(r["authorization"] for r in hostile.requests if r["server"] == "registry")
