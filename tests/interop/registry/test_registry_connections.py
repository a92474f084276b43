"""Connection reuse: a 401 challenge and a redirect to blob storage (what Docker Hub
sends for every blob) leave the connection to the registry open for the next
request, so a pull does not pay a new TCP (and TLS) handshake per blob.

Our own HTTP/1.1 server counts the client connections it sees.
"""

from __future__ import annotations

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

pytestmark = pytest.mark.interop

LAYERS = [os.urandom(50_000 + i) for i in range(4)]
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


BLOBS = {_d(b): b for b in [CONFIG, *LAYERS]}
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _d(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _d(b), "size": len(b)}
               for b in LAYERS],
}).encode()


class Servers:
    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0
        owner = self

        class Storage(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = BLOBS[self.path.rsplit("/", 1)[1]]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Registry(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                owner.connections.add(self.client_address)
                owner.requests += 1
                if self.path.startswith("/token"):
                    return self._send(200, b'{"token": "t0k3n", "expires_in": 300}', {})
                if self.headers.get("Authorization") != "Bearer t0k3n":
                    realm = f"http://{owner.host}/token"
                    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                                   "detail": "x" * 2000}]}).encode()
                    return self._send(401, body, {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})
                if "/manifests/" in self.path:
                    return self._send(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                digest = self.path.rsplit("/", 1)[1]
                return self._send(307, b"<a href='...'>Temporary Redirect</a>.\n",
                                  {"Location": f"http://{owner.storage_host}/store/{digest}"})

        self.registry = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
        self.storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
        for s in (self.registry, self.storage):
            s.daemon_threads = True
        self.host = f"127.0.0.1:{self.registry.server_address[1]}"
        self.storage_host = f"127.0.0.1:{self.storage.server_address[1]}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.registry, self.storage)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for s in (self.registry, self.storage):
            s.shutdown()
            s.server_close()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.stop()


def test_challenge_and_redirects_keep_the_connection(servers: Servers, tmp_path: Path) -> None:
    out = tmp_path / "out"
    digest = api_registry.copy(f"docker://{servers.host}/team/app:1", f"oci:{out}:x", workers=1)
    assert digest == _d(MANIFEST)
    for d, data in BLOBS.items():
        assert (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes() == data
    # /v2/ (401), token, manifest, 5 blob redirects: every one on the first connection.
    assert servers.requests == 8
    assert len(servers.connections) == 1, servers.connections
