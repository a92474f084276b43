"""A distribution-spec HTTP client for one registry host.

It speaks the /v2/ API (manifests, blobs, uploads, tags, referrers, delete),
authenticates (anonymous, basic, bearer tokens per scope, reused and
refreshed), retries transient failures with backoff, follows redirects
without carrying credentials to other hosts, and verifies everything it
downloads against its digest while it streams.
"""

from __future__ import annotations

import base64
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urljoin, urlsplit

from ocipy import jsonfast
from ocipy.errors import RegistryError
from ocipy.registry.auth import Credentials, parse_www_authenticate
from ocipy.spec.digest import Verifier
from ocipy.spec.digest import of_bytes as digest_of
from ocipy.spec.digest import parse_verifiable as check_digest
from ocipy.spec.image import MANIFEST_ACCEPT
from ocipy.spec.image import MAX_DOCUMENT_SIZE as MAX_MANIFEST_SIZE
from ocipy.spec.image import MEDIA_INDEX as MT_OCI_INDEX

if TYPE_CHECKING:
    import httpx

USER_AGENT = "ocipy"
CHUNK = 1 << 20
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_LOOPBACK = ("localhost", "127.", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    h = host
    if h.startswith("["):
        h = h[1:h.index("]")] if "]" in h else h
    else:
        h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return h == "localhost" or h.startswith("127.") or h == "::1"


def _is_ip(name: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            pass
    return False


READ_SIZE = 1 << 20


def _large_reads() -> None:
    """Read responses from the socket in up to 1 MiB at a time instead of httpcore's 64 KiB.

    Blob bodies go through h11 one socket read at a time; with 64 KiB reads a
    fast (loopback, LAN) download spends much of its CPU in h11's per-event
    Python code.  ``READ_NUM_BYTES`` is the size httpcore's HTTP/1.1
    connection passes to ``recv``; a larger one only lets a read return more
    of what is already buffered.  Left alone if httpcore ever drops it.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", READ_SIZE) < READ_SIZE:
        HTTP11Connection.READ_NUM_BYTES = READ_SIZE


def _split_host_port(host: str, default: int) -> tuple[str, int]:
    if host.startswith("["):
        end = host.index("]")
        name, rest = host[1:end], host[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") else default
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, int(port)
    return host, default


def _error_detail(resp: httpx.Response) -> str:
    """The registry's error codes and messages, or the status line."""
    try:
        body = resp.read()[:65536]
    except Exception:  # noqa: BLE001 - a detail is best effort
        body = b""
    try:
        doc = jsonfast.loads(body)
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs[:5]:
                if isinstance(e, dict):
                    code = str(e.get("code", "")).strip()
                    msg = str(e.get("message", "")).strip()
                    parts.append(f"{code}: {msg}" if msg else code)
            if parts:
                return "; ".join(parts)
    except ValueError:
        pass
    return f"HTTP {resp.status_code} {resp.reason_phrase}".strip()


class Sink(Protocol):
    """Where a blob's bytes go; ``reset()`` empties it (a download starts over)."""

    def write(self, data: bytes, /) -> Any: ...

    def reset(self) -> None: ...


class FileSink:
    """A seekable file as a :class:`Sink`."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.start = f.tell()

    def write(self, data: bytes, /) -> Any:
        return self.f.write(data)

    def reset(self) -> None:
        self.f.seek(self.start)
        self.f.truncate()


class RegistryClient:
    """One registry host; safe to share between threads."""

    def __init__(self, host: str, *, credentials: Credentials | None = None,
                 tls_verify: bool = True, retry_times: int = 3, timeout: float = 60.0,
                 user_agent: str = USER_AGENT) -> None:
        self.host = host
        self.credentials = credentials
        self.tls_verify = tls_verify
        self.retry_times = max(0, retry_times)
        self.timeout = timeout
        self.user_agent = user_agent
        self._base: str | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._pinged = False
        self._auth_scheme: str | None = None  # "basic" | "bearer" | None (anonymous)
        self._bearer: dict[str, str] = {}  # realm, service
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._token_lock = threading.Lock()
        self.warnings: set[str] = set()

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _http(self, verify: bool) -> httpx.Client:
        import httpx

        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        tls: bool | ssl.SSLContext = verify
        if not verify:
            # An unverified context is cheap; httpx's own loads the CA bundle (~25 ms).
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0))
        _large_reads()
        # identity: blobs are hashed as sent; a transparently decoded body would not match.
        return httpx.Client(verify=tls, timeout=timeout, limits=limits, follow_redirects=False,
                            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"})

    def _tls_offered(self) -> bool:
        """Does host:port answer a TLS handshake? (Cheap: no CA bundle is loaded.)"""
        name, port = _split_host_port(self.host, 443)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # No SNI for an IP literal (and no idna codec import for it).
        sni = None if _is_ip(name) else name
        try:
            with socket.create_connection((name, port), timeout=min(self.timeout, 10.0)) as sock:
                with ctx.wrap_socket(sock, server_hostname=sni):
                    return True
        except ssl.SSLError:
            return False
        except OSError as e:
            raise RegistryError(f"pinging registry {self.host}: {e.strerror or e}") from e

    def base(self) -> str:
        """https://host, or http://host for a loopback host (or --tls-verify=false) without TLS."""
        with self._lock:
            if self._base is None:
                insecure_ok = not self.tls_verify or is_loopback(self.host)
                if insecure_ok and not self._tls_offered():
                    self._base = f"http://{self.host}"
                    self._client = self._http(verify=False)
                else:
                    self._base = f"https://{self.host}"
                    self._client = self._http(verify=self.tls_verify)
            return self._base

    @property
    def client(self) -> httpx.Client:
        self.base()
        assert self._client is not None
        return self._client

    def url(self, path: str) -> str:
        return self.base() + path

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.netloc.lower() == self.host.lower() and parts.scheme + "://" + parts.netloc.lower() == self.base().lower()

    # ---------------------------------------------------------------- auth

    def _basic_header(self) -> str | None:
        if not self.credentials:
            return None
        raw = f"{self.credentials[0]}:{self.credentials[1]}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def _auth_header(self, scopes: tuple[str, ...], *, refresh: bool = False,
                     stale: str | None = None) -> str | None:
        if self._auth_scheme == "basic":
            return self._basic_header()
        if self._auth_scheme == "bearer":
            return "Bearer " + self._token(scopes, refresh=refresh, stale=stale)
        return None

    def _token(self, scopes: tuple[str, ...], *, refresh: bool, stale: str | None = None) -> str:
        key = tuple(sorted(set(scopes)))
        with self._token_lock:
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic():
                # A refresh asked for by a request that used ``stale`` is done once:
                # another thread may have fetched a new token already.
                if not refresh or (stale is not None and "Bearer " + cached[0] != stale):
                    return cached[0]
            token, lifetime = self._fetch_token(key)
            # Refresh a little early; tokens without expires_in last 60 s (docker's rule).
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 10, lifetime / 2))
            return token

    def _fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        realm = self._bearer.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"registry {self.host}: bearer challenge has an unusable realm {realm!r}")
        params: list[tuple[str, str]] = []
        if self._bearer.get("service"):
            params.append(("service", self._bearer["service"]))
        params.extend(("scope", s) for s in scopes if s)
        headers = {"Accept": "application/json"}
        basic = self._basic_header()
        if basic:
            # Credentials travel to the realm the registry named, but not in clear
            # text to a remote host unless plain http was allowed for this registry.
            if parts.scheme == "http" and not (is_loopback(parts.netloc) or not self.tls_verify
                                               or self.base().startswith("http://")):
                raise RegistryError(
                    f"registry {self.host}: refusing to send credentials to token server {realm} over plain http")
            headers["Authorization"] = basic
        url = realm + ("&" if parts.query else "?") + urlencode(params) if params else realm
        resp = self._send_with_retry(lambda: self.client.build_request("GET", url, headers=headers),
                                     what=f"fetching a token from {parts.netloc}")
        try:
            if resp.status_code in (401, 403):
                who = f"as {self.credentials[0]}" if self.credentials else "anonymously"
                raise RegistryError(
                    f"registry {self.host}: authentication {who} refused by token server: {_error_detail(resp)}")
            if resp.status_code != 200:
                raise RegistryError(f"registry {self.host}: token server {parts.netloc}: {_error_detail(resp)}")
            body = resp.read()
        finally:
            resp.close()
        try:
            doc = jsonfast.loads(body)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as e:
            raise RegistryError(f"registry {self.host}: token server {parts.netloc}: invalid JSON response") from e
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}: token server {parts.netloc}: response has no token")
        return token, max(lifetime, 1.0)

    def _on_challenge(self, resp: httpx.Response) -> bool:
        """Learn the auth scheme from a 401; True if a new try could succeed."""
        header = resp.headers.get("WWW-Authenticate", "")
        challenges = parse_www_authenticate(header)
        for scheme, params in challenges:
            if scheme == "bearer" and params.get("realm"):
                self._auth_scheme = "bearer"
                self._bearer = {"realm": params["realm"], "service": params.get("service", "")}
                return True
        for scheme, _params in challenges:
            if scheme == "basic":
                if self.credentials is None:
                    return False
                changed = self._auth_scheme != "basic"
                self._auth_scheme = "basic"
                return changed
        return False

    def ping(self) -> None:
        """GET /v2/: check the API and learn the auth scheme."""
        if self._pinged:
            return
        url = self.url("/v2/")
        resp = self._send_with_retry(lambda: self.client.build_request("GET", url), what=f"pinging registry {self.host}")
        try:
            if resp.status_code == 401:
                self._on_challenge(resp)
            elif resp.status_code == 404:
                raise RegistryError(f"registry {self.host}: /v2/ not found: not a distribution-spec registry")
            elif resp.status_code >= 400:
                raise RegistryError(f"pinging registry {self.host}: {_error_detail(resp)}")
        finally:
            resp.close()
        self._pinged = True

    # ------------------------------------------------------------- requests

    def _backoff(self, attempt: int, resp: httpx.Response | None = None) -> None:
        delay = min(0.2 * (2 ** attempt), 5.0) * (0.75 + random.random() / 2)
        if resp is not None and resp.status_code == 429:
            try:
                delay = max(delay, min(float(resp.headers.get("Retry-After", "0")), 30.0))
            except ValueError:
                pass
        time.sleep(delay)

    def _send_with_retry(self, build: Callable[[], httpx.Request], *, what: str,
                         stream: bool = False) -> httpx.Response:
        """Send, retrying transport errors and 5xx/429 with backoff."""
        import httpx

        attempt = 0
        while True:
            try:
                resp = self.client.send(build(), stream=True)
            except (httpx.TransportError, ssl.SSLError) as e:
                if attempt < self.retry_times and not isinstance(e, httpx.UnsupportedProtocol):
                    self._backoff(attempt)
                    attempt += 1
                    continue
                if isinstance(e, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(e):
                    raise RegistryError(f"{what}: TLS certificate not trusted ({e}); "
                                        "use --tls-verify=false to skip verification") from e
                raise RegistryError(f"{what}: {type(e).__name__}: {e}") from e
            if resp.status_code in _RETRY_STATUS and attempt < self.retry_times:
                resp.close()
                self._backoff(attempt, resp)
                attempt += 1
                continue
            for w in resp.headers.get_list("Warning"):
                if w.startswith("299"):
                    self.warnings.add(w)
            if not stream:
                try:
                    resp.read()
                except httpx.TransportError as e:
                    resp.close()
                    if attempt < self.retry_times:
                        self._backoff(attempt)
                        attempt += 1
                        continue
                    raise RegistryError(f"{what}: {type(e).__name__}: {e}") from e
            return resp

    def request(self, method: str, url: str, *, scopes: tuple[str, ...], what: str,
                headers: dict[str, str] | None = None,
                content: Callable[[], bytes | Iterable[bytes]] | None = None,
                stream: bool = False, follow_redirects: bool = True) -> httpx.Response:
        """One API call with auth, retry and redirects; ``content`` is a body factory (replayable)."""
        self.ping()
        if not url.startswith(("http://", "https://")):
            url = self.url(url)
        refreshed = False
        redirects = 0
        target = url
        while True:
            hdrs = dict(headers or {})
            if self._same_origin(target):
                auth = self._auth_header(scopes)
                if auth:
                    hdrs["Authorization"] = auth

            def build(m: str = method, t: str = target, h: dict[str, str] = hdrs) -> httpx.Request:
                return self.client.build_request(m, t, headers=h, content=content() if content else None)

            resp = self._send_with_retry(build, what=what, stream=stream)
            if resp.status_code == 401 and self._same_origin(target) and not refreshed:
                retry = self._on_challenge(resp)
                resp.close()
                refreshed = True
                if retry:
                    if self._auth_scheme == "bearer":
                        self._auth_header(scopes, refresh=True, stale=hdrs.get("Authorization"))
                    continue
                raise RegistryError(f"{what}: unauthorized: {self._who()}")
            if resp.status_code in (301, 302, 303, 307, 308) and follow_redirects and method in ("GET", "HEAD"):
                loc = resp.headers.get("Location")
                resp.close()
                redirects += 1
                if not loc or redirects > 10:
                    raise RegistryError(f"{what}: too many or empty redirects")
                target = urljoin(target, loc)
                if urlsplit(target).scheme not in ("http", "https"):
                    raise RegistryError(f"{what}: redirect to unsupported URL {target!r}")
                continue
            if resp.status_code == 401:
                detail = _error_detail(resp)
                resp.close()
                raise RegistryError(f"{what}: unauthorized ({detail}); {self._who()}")
            return resp

    def _who(self) -> str:
        if self.credentials:
            return f"credentials for {self.credentials[0]} were refused"
        return "no credentials: use --creds, --authfile or ~/.docker/config.json"

    # ------------------------------------------------------------ manifests

    @staticmethod
    def _scope(repo: str, actions: str = "pull") -> tuple[str, ...]:
        return (f"repository:{repo}:{actions}",)

    def get_manifest(self, repo: str, reference: str, *, accept: Iterable[str] = MANIFEST_ACCEPT,
                     max_size: int = MAX_MANIFEST_SIZE) -> tuple[bytes, str, str]:
        """(bytes, media type, digest); the bytes match ``reference`` when it is a digest."""
        what = f"reading manifest {self.host}/{repo}:{reference}" if ":" not in reference else \
            f"reading manifest {self.host}/{repo}@{reference}"
        if ":" in reference:
            check_digest(reference, what)
        resp = self.request("GET", f"/v2/{repo}/manifests/{quote(reference, safe=':')}",
                            scopes=self._scope(repo), what=what, stream=True,
                            headers={"Accept": ", ".join(accept)})
        try:
            if resp.status_code == 404:
                raise RegistryError(f"{what}: manifest unknown ({_error_detail(resp)})")
            if resp.status_code != 200:
                raise RegistryError(f"{what}: {_error_detail(resp)}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_size:
                raise RegistryError(f"{what}: manifest of {declared} bytes exceeds the {max_size}-byte limit")
            buf = bytearray()
            for chunk in resp.iter_raw():
                buf += chunk
                if len(buf) > max_size:
                    raise RegistryError(f"{what}: manifest exceeds the {max_size}-byte limit")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        except _transport_errors() as e:
            raise RegistryError(f"{what}: {type(e).__name__}: {e}") from e
        finally:
            resp.close()
        data = bytes(buf)
        if ":" in reference:
            alg = reference.split(":", 1)[0]
            got = digest_of(data, alg)
            if got != reference:
                raise RegistryError(f"{what}: registry returned a manifest with digest {got}, not the one asked for")
            digest = reference
        else:
            digest = digest_of(data)
            if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
                raise RegistryError(
                    f"{what}: Docker-Content-Digest {header_digest} does not match the manifest's digest {digest}")
        media_type = _manifest_media_type(data, media_type, what)
        return data, media_type, digest

    def head_manifest(self, repo: str, reference: str,
                      accept: Iterable[str] = MANIFEST_ACCEPT) -> tuple[str, str, int] | None:
        """(digest, media type, size) from HEAD, or None on 404 or without a digest header."""
        what = f"checking manifest {self.host}/{repo}:{reference}"
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{quote(reference, safe=':')}",
                            scopes=self._scope(repo), what=what, headers={"Accept": ", ".join(accept)})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise RegistryError(f"{what}: HTTP {resp.status_code}")
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not digest:
            return None
        length = resp.headers.get("Content-Length", "")
        return digest, resp.headers.get("Content-Type", "").split(";")[0].strip(), int(length) if length.isdigit() else -1

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> httpx.Response:
        digest = digest_of(data)
        what = f"writing manifest {digest} to {self.host}/{repo}"
        resp = self.request("PUT", f"/v2/{repo}/manifests/{quote(reference, safe=':')}",
                            scopes=self._scope(repo, "pull,push"), what=what,
                            headers={"Content-Type": media_type}, content=lambda: data)
        if resp.status_code not in (200, 201, 202):
            raise RegistryError(f"{what}: {_error_detail(resp)}")
        got = resp.headers.get("Docker-Content-Digest", "")
        if got.startswith("sha256:") and got != digest:
            raise RegistryError(f"{what}: registry stored it as {got}, not {digest}")
        return resp

    def delete_manifest(self, repo: str, digest: str) -> None:
        what = f"deleting {self.host}/{repo}@{digest}"
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}",
                            scopes=self._scope(repo, "delete"), what=what)
        if resp.status_code == 404:
            raise RegistryError(f"{what}: manifest unknown")
        if resp.status_code in (400, 405) and resp.status_code != 404:
            raise RegistryError(f"{what}: deletion is disabled on this registry ({_error_detail(resp)})")
        if resp.status_code not in (200, 202, 204):
            raise RegistryError(f"{what}: {_error_detail(resp)}")

    # ---------------------------------------------------------------- blobs

    def has_blob(self, repo: str, digest: str) -> int | None:
        """The blob's size if ``repo`` has it, None if not."""
        what = f"checking blob {digest} in {self.host}/{repo}"
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=self._scope(repo), what=what)
        if resp.status_code == 200:
            length = resp.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else -1
        if resp.status_code == 404:
            return None
        raise RegistryError(f"{what}: HTTP {resp.status_code}")

    def fetch_blob(self, repo: str, digest: str, size: int | None, out: Sink,
                   progress: Callable[[int], None] | None = None) -> None:
        """Write the blob into ``out``, verified (raises after the last write if it fails).

        A broken download resumes with ``Range``; a registry that ignores the
        range sends everything again, and ``out.reset()`` starts the sink over.
        """
        import httpx

        what = f"fetching blob {digest} from {self.host}/{repo}"
        v = Verifier(digest, size, what)
        attempts = 0
        while True:
            offset = v.count
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=self._scope(repo),
                                what=what, headers=headers, stream=True)
            try:
                if resp.status_code == 404:
                    raise RegistryError(f"{what}: blob unknown ({_error_detail(resp)})")
                if offset and resp.status_code == 206:
                    cr = resp.headers.get("Content-Range", "")
                    if not cr.startswith(f"bytes {offset}-"):
                        raise RegistryError(f"{what}: resumed download has Content-Range {cr!r}, expected from byte {offset}")
                elif resp.status_code == 200:
                    if offset:  # Range ignored: start again
                        out.reset()
                        v = Verifier(digest, size, what)
                else:
                    raise RegistryError(f"{what}: {_error_detail(resp)}")
                declared = resp.headers.get("Content-Length", "")
                if size is not None and size >= 0 and declared.isdigit() and \
                        resp.status_code == 200 and int(declared) != size:
                    raise RegistryError(f"{what}: registry announces {declared} bytes, descriptor says {size}")
                for chunk in resp.iter_raw():
                    v.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            except httpx.TransportError as e:
                if attempts < self.retry_times:
                    attempts += 1
                    self._backoff(attempts - 1)
                    continue
                raise RegistryError(f"{what}: {type(e).__name__} after {v.count} bytes: {e}") from e
            finally:
                resp.close()
            break
        v.finish()

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True if the registry mounted it."""
        what = f"mounting blob {digest} from {from_repo} into {self.host}/{repo}"
        q = urlencode({"mount": digest, "from": from_repo})
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}",
                            scopes=self._scope(repo, "pull,push") + self._scope(from_repo),
                            what=what, content=lambda: b"")
        if resp.status_code == 201:
            return True
        if resp.status_code == 202:
            loc = resp.headers.get("Location")
            if loc:
                self._cancel_upload(repo, loc)
            return False
        return False

    def _cancel_upload(self, repo: str, location: str) -> None:
        try:
            self.request("DELETE", self._abs(location), scopes=self._scope(repo, "pull,push"),
                         what="cancelling upload", content=lambda: b"").close()
        except RegistryError:
            pass

    def _abs(self, location: str) -> str:
        return urljoin(self.base() + "/", location)

    def _start_upload(self, repo: str, what: str) -> tuple[str, int]:
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=self._scope(repo, "pull,push"),
                            what=what, content=lambda: b"")
        if resp.status_code != 202:
            raise RegistryError(f"{what}: starting upload: {_error_detail(resp)}")
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{what}: registry started an upload without a Location")
        min_chunk = resp.headers.get("OCI-Chunk-Min-Length", "")
        return self._abs(loc), int(min_chunk) if min_chunk.isdigit() else 0

    @staticmethod
    def _with_query(url: str, **params: str) -> str:
        return url + ("&" if urlsplit(url).query else "?") + urlencode(params)

    def push_blob(self, repo: str, digest: str, size: int, path: str, *,
                  chunk_size: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        """Upload the verified file ``path``: monolithic PUT, or PATCH chunks of ``chunk_size``."""
        what = f"uploading blob {digest} to {self.host}/{repo}"
        scopes = self._scope(repo, "pull,push")
        location, min_chunk = self._start_upload(repo, what)
        try:
            if chunk_size:
                chunk_size = max(chunk_size, min_chunk)
                offset = 0
                with open(path, "rb") as f:
                    while offset < size:
                        f.seek(offset)
                        data = f.read(min(chunk_size, size - offset))
                        end = offset + len(data) - 1
                        resp = self.request("PATCH", location, scopes=scopes, what=what, content=lambda d=data: d,  # type: ignore[misc]
                                            headers={"Content-Type": "application/octet-stream",
                                                     "Content-Range": f"{offset}-{end}"})
                        if resp.status_code != 202:
                            raise RegistryError(f"{what}: chunk {offset}-{end}: {_error_detail(resp)}")
                        loc = resp.headers.get("Location")
                        if loc:
                            location = self._abs(loc)
                        offset = end + 1
                        if progress:
                            progress(len(data))
                resp = self.request("PUT", self._with_query(location, digest=digest), scopes=scopes,
                                    what=what, content=lambda: b"")
            else:
                def body() -> Iterator[bytes]:
                    with open(path, "rb") as f:
                        while True:
                            data = f.read(CHUNK)
                            if not data:
                                return
                            if progress:
                                progress(len(data))
                            yield data

                resp = self.request("PUT", self._with_query(location, digest=digest), scopes=scopes, what=what,
                                    content=body, headers={"Content-Type": "application/octet-stream",
                                                           "Content-Length": str(size)})
            if resp.status_code not in (201, 204):
                raise RegistryError(f"{what}: {_error_detail(resp)}")
            got = resp.headers.get("Docker-Content-Digest", "")
            if got and got != digest and got.split(":")[0] == digest.split(":")[0]:
                raise RegistryError(f"{what}: registry stored it as {got}")
        except BaseException:
            self._cancel_upload(repo, location)
            raise

    # ------------------------------------------------------------ discovery

    def list_tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """Every tag, following ``Link: <…>; rel="next"`` pages."""
        what = f"listing tags of {self.host}/{repo}"
        url = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []
        seen = set()
        for _ in range(100000):
            resp = self.request("GET", url, scopes=self._scope(repo), what=what)
            if resp.status_code == 404:
                raise RegistryError(f"{what}: repository unknown ({_error_detail(resp)})")
            if resp.status_code != 200:
                raise RegistryError(f"{what}: {_error_detail(resp)}")
            if len(resp.content) > 64 * 1024 * 1024:
                raise RegistryError(f"{what}: response too large")
            try:
                doc = jsonfast.loads(resp.content)
                page = doc.get("tags") or []
            except (ValueError, AttributeError) as e:
                raise RegistryError(f"{what}: invalid JSON response") from e
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: 'tags' is not a list of strings")
            tags.extend(page)
            nxt = _next_link(resp.headers.get_list("Link"))
            if not nxt:
                return tags
            url = urljoin(self.url(url) if url.startswith("/") else url, nxt)
            if url in seen:
                raise RegistryError(f"{what}: pagination loops on {nxt!r}")
            seen.add(url)
            if not self._same_origin(url):
                raise RegistryError(f"{what}: next page link points to another host: {nxt!r}")
        raise RegistryError(f"{what}: too many pages")

    def referrers(self, repo: str, digest: str, artifact_type: str | None = None) -> dict[str, Any]:
        """The referrers index of ``digest``: the API, or the ``alg-hex`` tag fallback."""
        what = f"listing referrers of {self.host}/{repo}@{digest}"
        check_digest(digest, what)
        url = f"/v2/{repo}/referrers/{digest}"
        if artifact_type:
            url += "?" + urlencode({"artifactType": artifact_type})
        manifests: list[Any] = []
        for _ in range(1000):
            resp = self.request("GET", url, scopes=self._scope(repo), what=what,
                                headers={"Accept": MT_OCI_INDEX})
            if resp.status_code == 404 and not manifests:
                return self._referrers_from_tag(repo, digest, artifact_type)
            if resp.status_code != 200:
                raise RegistryError(f"{what}: {_error_detail(resp)}")
            if len(resp.content) > MAX_MANIFEST_SIZE:
                raise RegistryError(f"{what}: response exceeds {MAX_MANIFEST_SIZE} bytes")
            try:
                doc = jsonfast.loads(resp.content)
                page = doc["manifests"]
                assert isinstance(page, list)
            except (ValueError, KeyError, TypeError, AssertionError) as e:
                raise RegistryError(f"{what}: response is not an image index") from e
            manifests.extend(page)
            filtered = "artifacttype" in resp.headers.get("OCI-Filters-Applied", "").lower()
            nxt = _next_link(resp.headers.get_list("Link"))
            if not nxt:
                break
            url = urljoin(self.url(url) if url.startswith("/") else url, nxt)
        if artifact_type and not filtered:
            manifests = [m for m in manifests if isinstance(m, dict) and m.get("artifactType") == artifact_type]
        return {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}

    def _referrers_from_tag(self, repo: str, digest: str, artifact_type: str | None) -> dict[str, Any]:
        empty: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
        tag = referrers_tag(digest)
        try:
            data, mt, _ = self.get_manifest(repo, tag, accept=(MT_OCI_INDEX,))
        except RegistryError:
            if self.head_manifest(repo, tag) is None:
                return empty
            raise
        if mt != MT_OCI_INDEX:
            return empty
        doc = jsonfast.loads(data)
        manifests = [m for m in doc.get("manifests") or [] if isinstance(m, dict)]
        if artifact_type:
            manifests = [m for m in manifests if m.get("artifactType") == artifact_type]
        empty["manifests"] = manifests
        return empty


def referrers_tag(digest: str) -> str:
    """The distribution-spec referrers tag schema: ``alg-hex`` truncated, bad characters replaced."""
    import re

    alg, _, enc = digest.partition(":")
    return re.sub(r"[^a-zA-Z0-9._-]", "-", f"{alg[:32]}-{enc[:64]}")


def _next_link(values: list[str]) -> str | None:
    for value in values:
        for part in value.split(","):
            target, _, params = part.strip().partition(";")
            if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
                target = target.strip()
                if target.startswith("<") and target.endswith(">"):
                    return target[1:-1]
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TransportError,)


def _manifest_media_type(data: bytes, content_type: str, what: str) -> str:
    """The manifest's media type: its ``mediaType`` field, which must agree with Content-Type."""
    from ocipy.spec.image import manifest_media_type

    try:
        doc = jsonfast.loads(data)
    except ValueError as e:
        raise RegistryError(f"{what}: manifest is not valid JSON: {e}") from e
    return manifest_media_type(doc, content_type or None, what, RegistryError)
