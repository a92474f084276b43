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
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
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
    from ocipy.content.store import Sink
    from ocipy.registry import http as transport

USER_AGENT = "ocipy"
CHUNK = 1 << 20
# 429 and the 5xx that say "try later" (501 and 505 never change); 408 is a timeout.
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A Retry-After longer than this is not waited for: the request fails at once.
MAX_RETRY_AFTER = 60.0

# The most a registry may send for each kind of answer, in bytes (docs/distribution.md).
# Manifests and referrers pages share MAX_MANIFEST_SIZE (4 MiB); a blob is bounded by its
# descriptor's size, checked while it streams.
MAX_TOKEN_BODY = 1 << 20  # skopeo's bound on a token server's answer
MAX_BODY = 1 << 20  # /v2/, upload and push answers, redirects: small JSON at most
MAX_ERROR_BODY = 64 << 10  # error bodies: read this far, the rest is ignored
MAX_TAGS_PAGE = 4 << 20  # one page of a tag list
MAX_LIST_TOTAL = 32 << 20  # all the pages of one tag list (or referrers list) together
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DECIMAL = re.compile(r"[0-9]{1,19}")
_LOOPBACK = ("localhost", "127.", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    h = host
    if h.startswith("["):
        h = h[1:h.index("]")] if "]" in h else h
    else:
        h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return h == "localhost" or h.startswith("127.") or h == "::1"


def _is_ip(name: str) -> bool:
    import socket

    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            pass
    return False


def _split_host_port(host: str, default: int) -> tuple[str, int]:
    if host.startswith("["):
        end = host.index("]")
        name, rest = host[1:end], host[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") else default
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, int(port)
    return host, default


def _number(value: str | None) -> int | None:
    """A header's non-negative decimal integer, or None (``str.isdigit`` also takes "²")."""
    value = (value or "").strip()
    return int(value) if _DECIMAL.fullmatch(value) else None


def _printable(text: str, limit: int = 300) -> str:
    """A registry's message as one short line (no control characters from a hostile server)."""
    text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def read_limited(resp: transport.Response, limit: int, what: str, kind: str = "response",
                 *, truncate: bool = False) -> bytes:
    """The body of ``resp``, refused (or with ``truncate`` cut) past ``limit`` bytes.

    The bytes are counted as they arrive, so a registry sending an endless
    body costs at most ``limit`` plus one socket read of memory.  A body the
    server compressed against our ``Accept-Encoding: identity`` is decoded
    under the same bound.
    """
    # A HEAD answer's Content-Length is the size of what a GET would send (a blob's).
    declared = None if resp.request.method == "HEAD" else _number(resp.headers.get("Content-Length"))
    if not truncate and declared is not None and declared > limit:
        raise RegistryError(f"{what}: {kind} of {declared} bytes exceeds the {limit}-byte limit",
                            status=resp.status_code)
    buf = bytearray()
    for chunk in resp.iter_raw():
        buf += chunk
        if len(buf) > limit:
            if truncate:
                del buf[limit:]
                break
            raise RegistryError(f"{what}: {kind} exceeds the {limit}-byte limit", status=resp.status_code)
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return bytes(buf)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise RegistryError(f"{what}: unsupported Content-Encoding {_printable(encoding, 40)!r}",
                            status=resp.status_code)
    import zlib

    d = zlib.decompressobj(47 if "gzip" in encoding else 15)  # 47: a gzip header; 15: zlib's
    try:
        out = d.decompress(bytes(buf), limit + 1)
    except zlib.error as e:
        raise RegistryError(f"{what}: {kind} is not valid {encoding}: {e}", status=resp.status_code) from e
    if len(out) > limit:
        if truncate:
            return out[:limit]
        raise RegistryError(f"{what}: {kind} exceeds the {limit}-byte limit once decompressed",
                            status=resp.status_code)
    return out


def _error_body(resp: transport.Response) -> bytes:
    """The first MAX_ERROR_BODY bytes of an error answer, read or not yet (best effort)."""
    from ocipy.registry import http as transport

    try:
        return resp.content[:MAX_ERROR_BODY]
    except transport.ResponseNotRead:
        pass
    try:
        return read_limited(resp, MAX_ERROR_BODY, "", truncate=True)
    except (transport.TransportError, RegistryError):
        return b""


def error_info(status: int, reason: str, body: bytes) -> tuple[str, tuple[str, ...]]:
    """(one-line detail, error codes) of an error answer's distribution-spec error body."""
    codes: list[str] = []
    parts: list[str] = []
    try:
        doc = jsonfast.loads(body)
    except ValueError:
        doc = None
    errs = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errs, list):
        for e in errs[:20]:
            if not isinstance(e, dict):
                continue
            code = e.get("code")
            code = code.strip() if isinstance(code, str) else ""
            if not _ERROR_CODE.fullmatch(code):
                code = ""
            msg = e.get("message")
            msg = _printable(msg) if isinstance(msg, str) else ""
            if code:
                codes.append(code)
            if (code or msg) and len(parts) < 5:
                parts.append(f"{code}: {msg}" if code and msg else code or msg)
    status_line = f"HTTP {status} {_printable(reason, 60)}".strip()
    if parts:
        return f"{status_line}: {'; '.join(parts)}", tuple(codes)
    return status_line, ()


def http_error(what: str, resp: transport.Response, problem: str | None = None) -> RegistryError:
    """The RegistryError for an unexpected answer: its status, codes and detail in the message."""
    detail, codes = error_info(resp.status_code, resp.reason_phrase, _error_body(resp))
    if resp.status_code in _RETRY_STATUS:
        after = resp.headers.get("Retry-After", "").strip()
        if after:
            detail += f" (Retry-After: {_printable(after, 40)})"
    msg = f"{what}: {problem} ({detail})" if problem else f"{what}: {detail}"
    return RegistryError(msg, status=resp.status_code, codes=codes)


def retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    value = value.strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return float(seconds)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _drain(resp: transport.Response) -> None:
    """Read a small unwanted body to its end, so the connection goes back to the pool; close."""
    from ocipy.registry import http as transport

    try:
        if not resp.is_stream_consumed:
            read_limited(resp, MAX_ERROR_BODY, "", truncate=True)
    except (transport.TransportError, RegistryError):
        pass
    finally:
        resp.close()


def _read_response(resp: transport.Response, body: bytes) -> transport.Response:
    """``resp`` with ``body`` (already decoded) as its content."""
    from ocipy.registry import http as transport

    headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-encoding"]
    return transport.Response(resp.status_code, transport.Headers(headers), resp.request,
                          reason_phrase=resp.reason_phrase, content=body)


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
        self._client: transport.Client | None = None
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

    def _http(self, verify: bool) -> transport.Client:
        import ssl

        from ocipy.registry import http as transport

        if verify:
            tls = ssl.create_default_context()  # the system's CA store (SSL_CERT_FILE/DIR honoured)
        else:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        # identity: blobs are hashed as sent; a transparently decoded body would not match.
        return transport.Client(tls=tls, timeout=self.timeout, connect_timeout=min(self.timeout, 15.0),
                            headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
                            max_connections=16)

    def _tls_offered(self) -> bool:
        """Does host:port answer a TLS handshake? (Cheap: no CA bundle is loaded.)"""
        import ssl

        name, port = _split_host_port(self.host, 443)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # No SNI for an IP literal (and no idna codec import for it).
        sni = None if _is_ip(name) else name
        try:
            from ocipy.registry.http import connect_tcp

            with connect_tcp((name, port), timeout=min(self.timeout, 10.0)) as sock:
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
    def client(self) -> transport.Client:
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
        what = f"registry {self.host}: token server {parts.netloc}"
        resp = self._send_with_retry(lambda: self.client.build_request("GET", url, headers=headers),
                                     what=what, limit=MAX_TOKEN_BODY)
        if resp.status_code in (401, 403):
            who = f"as {self.credentials[0]}" if self.credentials else "anonymously"
            raise http_error(f"registry {self.host}", resp, f"authentication {who} refused by token server")
        if resp.status_code != 200:
            raise http_error(what, resp)
        try:
            doc = jsonfast.loads(resp.content)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError, RecursionError) as e:
            raise RegistryError(f"registry {self.host}: token server {parts.netloc}: invalid JSON response") from e
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}: token server {parts.netloc}: response has no token")
        return token, max(lifetime, 1.0)

    def _on_challenge(self, resp: transport.Response) -> bool:
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
        what = f"pinging registry {self.host}"
        resp = self._send_with_retry(lambda: self.client.build_request("GET", url), what=what)
        if resp.status_code == 401:
            self._on_challenge(resp)
        elif resp.status_code == 404:
            raise http_error(f"registry {self.host}", resp, "/v2/ not found: not a distribution-spec registry")
        elif resp.status_code >= 400:
            raise http_error(what, resp)
        self._pinged = True

    # ------------------------------------------------------------- requests

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)

    def _delay(self, attempt: int, resp: transport.Response | None = None) -> float | None:
        """How long to wait before try ``attempt + 1``; None: the server asks for too long."""
        delay: float = min(0.2 * (2 ** attempt), 5.0) * (0.75 + random.random() / 2)
        if resp is not None:
            after = retry_after(resp.headers.get("Retry-After", ""))
            if after is not None:
                if after > MAX_RETRY_AFTER:
                    return None
                delay = after
        return delay

    def _backoff(self, attempt: int) -> None:
        delay = self._delay(attempt)
        assert delay is not None
        self._sleep(delay)

    def _send_with_retry(self, build: Callable[[], transport.Request], *, what: str,
                         stream: bool = False, limit: int = MAX_BODY) -> transport.Response:
        """Send, retrying transport errors, 429 and 5xx with exponential backoff.

        A ``Retry-After`` (seconds or an HTTP-date) on a retried answer is
        waited for instead, up to MAX_RETRY_AFTER; a longer one ends the
        retries.  Without ``stream`` the body is read here, refused past
        ``limit`` bytes (an error answer's is cut at MAX_ERROR_BODY), and the
        response returned already read.
        """
        from ocipy.registry import http as transport

        attempt = 0
        while True:
            try:
                resp = self.client.send(build(), stream=True)
            except transport.TransportError as e:
                if attempt < self.retry_times and not isinstance(e, transport.UnsupportedProtocol):
                    self._backoff(attempt)
                    attempt += 1
                    continue
                if isinstance(e, transport.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(e):
                    raise RegistryError(f"{what}: TLS certificate not trusted ({e}); "
                                        "use --tls-verify=false to skip verification") from e
                raise RegistryError(f"{what}: {e}") from e
            if resp.status_code in _RETRY_STATUS and attempt < self.retry_times:
                delay = self._delay(attempt, resp)
                if delay is not None:
                    _drain(resp)
                    self._sleep(delay)
                    attempt += 1
                    continue
            for w in resp.headers.get_list("Warning"):
                if w.startswith("299"):
                    self.warnings.add(w)
            if stream:
                return resp
            try:
                if resp.status_code >= 400:
                    body = read_limited(resp, MAX_ERROR_BODY, what, truncate=True)
                else:
                    body = read_limited(resp, limit, what)
            except transport.TransportError as e:
                if attempt < self.retry_times:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                raise RegistryError(f"{what}: {e}") from e
            finally:
                resp.close()
            return _read_response(resp, body)

    def request(self, method: str, url: str, *, scopes: tuple[str, ...], what: str,
                headers: dict[str, str] | None = None,
                content: Callable[[], bytes | Iterable[bytes]] | None = None,
                stream: bool = False, follow_redirects: bool = True,
                limit: int = MAX_BODY) -> transport.Response:
        """One API call with auth, retry and redirects; ``content`` is a body factory (replayable).

        Without ``stream`` the answer comes back read, its body bounded by
        ``limit``; with it the caller reads (bounded) and closes.
        """
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

            def build(m: str = method, t: str = target, h: dict[str, str] = hdrs) -> transport.Request:
                return self.client.build_request(m, t, headers=h, content=content() if content else None)

            resp = self._send_with_retry(build, what=what, stream=stream, limit=limit)
            if resp.status_code == 401:
                retry = self._same_origin(target) and not refreshed and self._on_challenge(resp)
                if not retry:
                    try:
                        raise http_error(what, resp, f"unauthorized; {self._who()}")
                    finally:
                        resp.close()
                _drain(resp)
                refreshed = True
                if self._auth_scheme == "bearer":
                    self._auth_header(scopes, refresh=True, stale=hdrs.get("Authorization"))
                continue
            if resp.status_code in (301, 302, 303, 307, 308) and follow_redirects and method in ("GET", "HEAD"):
                loc = resp.headers.get("Location")
                _drain(resp)
                redirects += 1
                if not loc or redirects > 10:
                    raise RegistryError(f"{what}: too many or empty redirects", status=resp.status_code)
                target = urljoin(target, loc)
                if urlsplit(target).scheme not in ("http", "https"):
                    raise RegistryError(f"{what}: redirect to unsupported URL {_printable(target, 200)!r}",
                                        status=resp.status_code)
                continue
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
                raise http_error(what, resp, "manifest unknown")
            if resp.status_code != 200:
                raise http_error(what, resp)
            data = read_limited(resp, max_size, what, "manifest")
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest", "").strip()
        except _transport_errors() as e:
            raise RegistryError(f"{what}: {e}") from e
        finally:
            resp.close()
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
            raise http_error(what, resp)
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not digest:
            return None
        length = resp.headers.get("Content-Length", "")
        size = _number(length)
        return digest, resp.headers.get("Content-Type", "").split(";")[0].strip(), -1 if size is None else size

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> transport.Response:
        digest = digest_of(data)
        what = f"writing manifest {digest} to {self.host}/{repo}"
        resp = self.request("PUT", f"/v2/{repo}/manifests/{quote(reference, safe=':')}",
                            scopes=self._scope(repo, "pull,push"), what=what,
                            headers={"Content-Type": media_type}, content=lambda: data)
        if resp.status_code not in (200, 201, 202):
            raise http_error(what, resp)
        got = resp.headers.get("Docker-Content-Digest", "")
        if got.startswith("sha256:") and got != digest:
            raise RegistryError(f"{what}: registry stored it as {got}, not {digest}")
        return resp

    def delete_manifest(self, repo: str, digest: str) -> None:
        what = f"deleting {self.host}/{repo}@{digest}"
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}",
                            scopes=self._scope(repo, "delete"), what=what)
        if resp.status_code == 404:
            raise http_error(what, resp, "manifest unknown")
        if resp.status_code in (400, 405):
            raise http_error(what, resp, "deletion is disabled on this registry")
        if resp.status_code not in (200, 202, 204):
            raise http_error(what, resp)

    # ---------------------------------------------------------------- blobs

    def has_blob(self, repo: str, digest: str) -> int | None:
        """The blob's size if ``repo`` has it, None if not."""
        what = f"checking blob {digest} in {self.host}/{repo}"
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=self._scope(repo), what=what)
        if resp.status_code == 200:
            length = resp.headers.get("Content-Length", "")
            size = _number(length)
            return -1 if size is None else size
        if resp.status_code == 404:
            return None
        raise http_error(what, resp)

    def fetch_blob(self, repo: str, digest: str, size: int | None, out: Sink,
                   progress: Callable[[int], None] | None = None) -> None:
        """Write the blob into ``out``, verified (raises after the last write if it fails).

        A broken download resumes with ``Range``; a registry that ignores the
        range sends everything again, and ``out.reset()`` starts the sink over.
        """
        from ocipy.registry import http as transport

        what = f"fetching blob {digest} from {self.host}/{repo}"
        if size is None or size < 0:
            raise RegistryError(f"{what}: the descriptor has no size to bound the download by")
        v = Verifier(digest, size, what)
        attempts = 0
        while True:
            offset = v.count
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scopes=self._scope(repo),
                                what=what, headers=headers, stream=True)
            try:
                if resp.status_code == 404:
                    raise http_error(what, resp, "blob unknown")
                if offset and resp.status_code == 206:
                    cr = resp.headers.get("Content-Range", "")
                    if not cr.startswith(f"bytes {offset}-"):
                        raise RegistryError(f"{what}: resumed download has Content-Range {_printable(cr, 80)!r}, "
                                            f"expected from byte {offset}", status=206)
                elif resp.status_code == 200:
                    if offset:  # Range ignored: start again
                        out.reset()
                        v = Verifier(digest, size, what)
                else:
                    raise http_error(what, resp)
                declared = _number(resp.headers.get("Content-Length"))
                if resp.status_code == 200 and declared is not None and declared != size:
                    raise RegistryError(f"{what}: registry announces {declared} bytes, descriptor says {size}",
                                        status=200)
                for chunk in resp.iter_raw():
                    v.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            except transport.TransportError as e:
                if attempts < self.retry_times:
                    attempts += 1
                    self._backoff(attempts - 1)
                    continue
                raise RegistryError(f"{what}: after {v.count} bytes: {e}") from e
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
            raise http_error(what, resp, "starting upload")
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{what}: registry started an upload without a Location")
        min_chunk = resp.headers.get("OCI-Chunk-Min-Length", "")
        return self._abs(loc), _number(min_chunk) or 0

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
                            raise http_error(what, resp, f"chunk {offset}-{end}")
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
                raise http_error(what, resp)
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
        total = 0
        for _ in range(100000):
            resp = self.request("GET", url, scopes=self._scope(repo), what=what, limit=MAX_TAGS_PAGE)
            if resp.status_code == 404:
                raise http_error(what, resp, "repository unknown")
            if resp.status_code != 200:
                raise http_error(what, resp)
            total += len(resp.content)
            if total > MAX_LIST_TOTAL:
                raise RegistryError(f"{what}: the pages exceed the {MAX_LIST_TOTAL}-byte limit", status=200)
            try:
                doc = jsonfast.loads(resp.content)
                page = doc.get("tags") or []
            except (ValueError, AttributeError, RecursionError) as e:
                raise RegistryError(f"{what}: invalid JSON response") from e
            if not isinstance(page, list) or not all(isinstance(t, str) for t in page):
                raise RegistryError(f"{what}: 'tags' is not a list of strings")
            tags.extend(page)
            nxt = _next_link(resp.headers.get_list("Link"))
            if not nxt:
                return tags
            url = urljoin(self.url(url) if url.startswith("/") else url, nxt)
            if url in seen:
                raise RegistryError(f"{what}: pagination loops on {_printable(nxt, 200)!r}")
            seen.add(url)
            if not self._same_origin(url):
                raise RegistryError(f"{what}: next page link points to another host: {_printable(nxt, 200)!r}")
        raise RegistryError(f"{what}: too many pages")

    def referrers(self, repo: str, digest: str, artifact_type: str | None = None) -> dict[str, Any]:
        """The referrers index of ``digest``: the API, or the ``alg-hex`` tag fallback."""
        what = f"listing referrers of {self.host}/{repo}@{digest}"
        check_digest(digest, what)
        url = f"/v2/{repo}/referrers/{digest}"
        if artifact_type:
            url += "?" + urlencode({"artifactType": artifact_type})
        manifests: list[Any] = []
        total = 0
        for _ in range(1000):
            resp = self.request("GET", url, scopes=self._scope(repo), what=what,
                                headers={"Accept": MT_OCI_INDEX}, limit=MAX_MANIFEST_SIZE)
            if resp.status_code == 404 and not manifests:
                return self._referrers_from_tag(repo, digest, artifact_type)
            if resp.status_code != 200:
                raise http_error(what, resp)
            total += len(resp.content)
            if total > MAX_LIST_TOTAL:
                raise RegistryError(f"{what}: the pages exceed the {MAX_LIST_TOTAL}-byte limit", status=200)
            try:
                doc = jsonfast.loads(resp.content)
                page = doc["manifests"]
                assert isinstance(page, list)
            except (ValueError, KeyError, TypeError, AssertionError, RecursionError) as e:
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
    from ocipy.registry import http as transport

    return (transport.TransportError,)


def _manifest_media_type(data: bytes, content_type: str, what: str) -> str:
    """The manifest's media type: its ``mediaType`` field, which must agree with Content-Type."""
    from ocipy.spec.image import manifest_media_type

    try:
        doc = jsonfast.loads(data)
    except ValueError as e:
        raise RegistryError(f"{what}: manifest is not valid JSON: {e}") from e
    return manifest_media_type(doc, content_type or None, what, RegistryError)
