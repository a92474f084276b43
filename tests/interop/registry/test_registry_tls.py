"""TLS against a registry of our own with a self-signed certificate: refused unless
trusted (the system store, or SSL_CERT_FILE) or --tls-verify=false; the bytes
arrive verified either way.  Keep-alive over TLS: one connection for the pull.
HTTPS_PROXY: a CONNECT tunnel through an http:// proxy; NO_PROXY bypasses it.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import EMPTY_CONFIG, FakeServer, QuietHandler, image_manifest
from test_registry_support import sha256_of as _d

from ocipy import api_registry
from ocipy.errors import RegistryError
from ocipy.registry.endpoints import RegistryOptions

pytestmark = pytest.mark.interop

LAYER = os.urandom(200_000)
BLOBS = {_d(b): b for b in (EMPTY_CONFIG, LAYER)}
MANIFEST = image_manifest(EMPTY_CONFIG, [LAYER])


class TLSServer:
    def __init__(self, tmp: Path) -> None:
        self.cert, key = tmp / "cert.pem", tmp / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:registry.test",
                        "-keyout", str(key), "-out", str(self.cert)], check=True, capture_output=True)
        self.connections: set[tuple[str, int]] = set()
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                owner.connections.add(self.client_address)
                if self.path == "/v2/":
                    return self.reply(200, b"{}")
                if "/manifests/" in self.path:
                    return self.reply(200, MANIFEST, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                data = BLOBS.get(self.path.rsplit("/", 1)[1])
                return self.reply(200, data) if data is not None else self.reply(404, b"{}")

        self.fake = FakeServer(Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(key))
        # handshakes happen in the handler threads (a failed one must not stop the server)
        self.fake.server.socket = ctx.wrap_socket(self.fake.server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        # a client that refuses the certificate ends its handshake: no traceback for that
        self.fake.server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.host = self.fake.host


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    s = TLSServer(tmp_path)
    try:
        yield s
    finally:
        s.fake.stop()


def test_untrusted_certificate_is_refused(tls_server: TLSServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RegistryError, match="TLS certificate not trusted"):
        api_registry.copy(f"docker://{tls_server.host}/app:1", f"oci:{out}:x",
                          src_options=RegistryOptions(retry_times=0))
    assert not out.exists()


def test_trusted_or_unverified_tls_pulls(tls_server: TLSServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.cert))
    digest = api_registry.copy(f"docker://{tls_server.host}/app:1", f"oci:{tmp_path / 'a'}:x", workers=1)
    assert digest == _d(MANIFEST)
    assert (tmp_path / "a" / "blobs" / "sha256" / _d(LAYER).split(":")[1]).read_bytes() == LAYER
    # the probe that told TLS from plain http, then one kept-alive connection for every request
    assert len(tls_server.connections) <= 2
    monkeypatch.delenv("SSL_CERT_FILE")
    api_registry.copy(f"docker://{tls_server.host}/app:1", f"oci:{tmp_path / 'b'}:x",
                      src_options=RegistryOptions(tls_verify=False))
    assert (tmp_path / "b" / "blobs" / "sha256" / _d(LAYER).split(":")[1]).read_bytes() == LAYER


class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT), resolving every name to 127.0.0.1."""

    def __init__(self) -> None:
        import socket
        import threading

        self.tunnels: list[str] = []
        owner = self

        class Handler(QuietHandler):
            def do_CONNECT(self) -> None:
                owner.tunnels.append(self.path)
                _, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection(("127.0.0.1", int(port)))
                self.send_response(200)
                self.end_headers()
                self.wfile.flush()

                def pipe(a: socket.socket, b: socket.socket) -> None:
                    try:
                        while data := a.recv(65536):
                            b.sendall(data)
                    except OSError:
                        pass
                    finally:
                        b.close()

                t = threading.Thread(target=pipe, args=(upstream, self.connection), daemon=True)
                t.start()
                pipe(self.connection, upstream)
                t.join(5)
                self.close_connection = True

        self.fake = FakeServer(Handler)
        self.host = self.fake.host


def test_https_through_a_connect_proxy(tls_server: TLSServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_server.cert))
        monkeypatch.setenv("HTTPS_PROXY", f"http://{proxy.host}")
        port = tls_server.host.rsplit(":", 1)[1]
        api_registry.copy(f"docker://registry.test:{port}/app:1", f"oci:{tmp_path / 'a'}:x", workers=1)
        assert (tmp_path / "a" / "blobs" / "sha256" / _d(LAYER).split(":")[1]).read_bytes() == LAYER
        assert proxy.tunnels and set(proxy.tunnels) == {f"registry.test:{port}"}
        # NO_PROXY names hosts reached directly (here: one that does not resolve, so it fails)
        monkeypatch.setenv("NO_PROXY", ".test")
        before = len(proxy.tunnels)
        with pytest.raises(RegistryError):
            api_registry.copy(f"docker://registry.test:{port}/app:1", f"oci:{tmp_path / 'b'}:x",
                              src_options=RegistryOptions(retry_times=0))
        assert len(proxy.tunnels) == before
    finally:
        proxy.fake.stop()
