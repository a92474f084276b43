"""Helpers of the registry interop tests (no tests here): a real docker-registry on
127.0.0.1 (optionally behind htpasswd or bearer auth), a bearer token server of
our own, hand-made OCI layouts, and ocipy/skopeo runners.  Kept apart from
conftest.py so test modules import them by a unique module name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
OCIPY = str(REPO_ROOT / ".venv" / "bin" / "ocipy")
REGISTRY_BIN = "/usr/bin/docker-registry"

pytestmark = pytest.mark.interop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


class Registry:
    def __init__(self, workdir: Path, auth: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        storage = workdir / "storage"
        storage.mkdir(parents=True)
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "test-secret"},
        }
        if auth:
            config["auth"] = auth
        cfg = workdir / "config.yml"
        cfg.write_text(json.dumps(config))  # JSON is YAML
        self.log = open(workdir / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def ref(self, name: str) -> str:
        return f"docker://{self.host}/{name}"


# ------------------------------------------------------- fake registries


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive) without a log line per request; ``reply`` sends a whole answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``handler`` on a daemon
    thread, for the tests' own hostile or scripted registries."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    """An OCI image manifest naming ``config`` and gzip ``layers`` by digest and size."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_of(b), "size": len(b)} for b in layers],
    }).encode()


EMPTY_CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                           "rootfs": {"type": "layers", "diff_ids": []}}).encode()


# ------------------------------------------------------------------ images


def _tar_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _put_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_layout(path: Path, tag: str = "latest", *, layers: int = 1, layer_size: int = 64,
                platforms: list[tuple[str, str]] | None = None, seed: str = "x") -> Path:
    """A minimal OCI image layout by hand: gzip tar layers with one file each.

    ``platforms`` makes an index with one image per (os, arch).
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def image(os_: str, arch: str) -> dict[str, Any]:
        layer_descs, diff_ids = [], []
        for i in range(layers):
            content = (f"{seed}-{os_}-{arch}-{i}-".encode() * (layer_size // 8 + 1))[:layer_size]
            if layer_size > 4096:
                content = os.urandom(layer_size)
            tar = _tar_layer({f"file{i}.txt": content})
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
            gz = gzip.compress(tar, mtime=0)
            d = _put_blob(path, gz)
            d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
            layer_descs.append(d)
        config = {"architecture": arch, "os": os_, "created": "2024-01-01T00:00:00Z",
                  "config": {"Env": ["PATH=/bin"], "Labels": {"seed": seed}},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
        cd = _put_blob(path, json.dumps(config).encode())
        cd["mediaType"] = "application/vnd.oci.image.config.v1+json"
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": cd, "layers": layer_descs}
        md = _put_blob(path, json.dumps(manifest).encode())
        md["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        return md

    if platforms:
        children = []
        for os_, arch in platforms:
            d = image(os_, arch)
            d["platform"] = {"os": os_, "architecture": arch}
            children.append(d)
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": children}
        top = _put_blob(path, json.dumps(index).encode())
        top["mediaType"] = "application/vnd.oci.image.index.v1+json"
    else:
        top = image("linux", host_arch())
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (path / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top]}))
    return path


def host_arch() -> str:
    import platform

    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def layout_top(path: Path) -> dict[str, Any]:
    index = json.loads((path / "index.json").read_text())
    return index["manifests"][0]  # type: ignore[no-any-return]


def ocipy(*args: str, check: bool = True, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        full_env.pop(var, None)
    full_env["HOME"] = "/nonexistent"  # no ~/.docker/config.json unless a test gives one
    if env:
        full_env.update(env)
        if "OCIPY_TEST_HOME" in env:
            full_env["HOME"] = env["OCIPY_TEST_HOME"]
    proc = subprocess.run([OCIPY, *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"ocipy {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


# ------------------------------------------------------------- bearer tokens


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A docker-style token server: GET /token?service=&scope=… with optional basic auth.

    Signs RS256 JWTs (openssl CLI) with a self-signed cert the registry trusts.
    ``users`` maps user -> password; anonymous callers get ``anonymous_actions``.
    Records every request (path, Authorization header) in ``requests``.
    """

    def __init__(self, workdir: Path, users: dict[str, str], anonymous_actions: tuple[str, ...] = (),
                 expires_in: int = 300) -> None:
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        workdir.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=ocipy-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.issuer = "ocipy-test-issuer"
        self.service = "ocipy-test-registry"
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                q = parse_qs(parts.query)
                auth = self.headers.get("Authorization")
                server.requests.append({"path": self.path, "authorization": auth, "scopes": q.get("scope", [])})
                user = None
                if auth:
                    try:
                        u, _, p = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
                    except Exception:  # noqa: BLE001
                        u, p = "", ""
                    if users.get(u) != p:
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                access = []
                for scope in q.get("scope", []):
                    typ, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
                    allowed = actions.split(",") if user else [a for a in actions.split(",") if a in anonymous_actions]
                    access.append({"type": typ, "name": name, "actions": allowed})
                token = server.sign(user or "", access, q.get("service", [""])[0], expires_in)
                body = json.dumps({"token": token, "expires_in": expires_in}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def sign(self, subject: str, access: list[dict[str, Any]], service: str, expires_in: int) -> str:
        import uuid

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": service, "exp": now + expires_in,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert)}}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

