"""Connection reuse: a 401 challenge and a redirect to blob storage (what Docker Hub
sends for every blob) leave the connection to the registry open for the next
request, so a pull does not pay a new TCP (and TLS) handshake per blob.

Our own HTTP/1.1 server counts the client connections it sees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import EMPTY_CONFIG, FakeServer, QuietHandler, image_manifest
from test_registry_support import sha256_of as _d

from ocipy import api_registry

pytestmark = pytest.mark.interop

LAYERS = [os.urandom(50_000 + i) for i in range(4)]
BLOBS = {_d(b): b for b in [EMPTY_CONFIG, *LAYERS]}
MANIFEST = image_manifest(EMPTY_CONFIG, LAYERS)


class Servers:
    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.requests = 0
        owner = self

        class Storage(QuietHandler):
            def do_GET(self) -> None:
                self.reply(200, BLOBS[self.path.rsplit("/", 1)[1]])

        class Registry(QuietHandler):

            def do_GET(self) -> None:
                owner.connections.add(self.client_address)
                owner.requests += 1
                if self.path.startswith("/token"):
                    return self.reply(200, b'{"token": "t0k3n", "expires_in": 300}', {})
                if self.headers.get("Authorization") != "Bearer t0k3n":
                    realm = f"http://{owner.host}/token"
                    body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                                   "detail": "x" * 2000}]}).encode()
                    return self.reply(401, body, {"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})
                if "/manifests/" in self.path:
                    return self.reply(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                digest = self.path.rsplit("/", 1)[1]
                return self.reply(307, b"<a href='...'>Temporary Redirect</a>.\n",
                                  {"Location": f"http://{owner.storage_host}/store/{digest}"})

        self.storage = FakeServer(Storage)
        self.storage_host = self.storage.host
        self.registry = FakeServer(Registry)
        self.host = self.registry.host

    def stop(self) -> None:
        self.registry.stop()
        self.storage.stop()


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
