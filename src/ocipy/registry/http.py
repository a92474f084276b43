"""The registry client's HTTP/1.1 transport: the standard library's ``http.client``
behind a small thread-safe connection pool.

httpx (with httpcore and h11) cost ~60 ms to import and ~40 µs of Python per
socket read; ``http.client`` and ``ssl`` import in ~15 ms and read a body with
one ``recv`` per chunk.  What the client needs from a transport is small and
lives here: requests built once and sent on a pooled keep-alive connection
(per scheme, host and port; a connection the server closed while idle is
noticed before reuse, and a request that fails on a reused connection before
any answer is sent once more on a new one), answers read as a stream of raw
chunks (no transparent decoding: blobs are hashed as sent), separate connect
and read timeouts, and the proxies of ``HTTPS_PROXY``/``HTTP_PROXY``/
``NO_PROXY`` (CONNECT tunnels for https; loopback hosts never go through one).
Redirects, retries, auth and body bounds are the client's
(:mod:`ocipy.registry.client`).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import overload
from urllib.parse import urlsplit

READ_SIZE = 256 << 10  # one recv per chunk; larger reads outgrow the L2 cache (docs/distribution.md)


class TransportError(Exception):
    """The request did not get an answer (connection, TLS, timeout, protocol)."""


class ConnectError(TransportError):
    pass


class UnsupportedProtocol(TransportError):
    pass


class ResponseNotRead(Exception):
    pass


class Headers:
    """An answer's header fields: case-insensitive, repeated fields kept in order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field called ``name`` (RFC 9110 allows repeats only of list fields)."""
        n = name.lower()
        for k, v in self._items:
            if k.lower() == n:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_list(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self._items if k.lower() == n]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)


class Request:
    __slots__ = ("method", "url", "headers", "content")

    def __init__(self, method: str, url: str, headers: dict[str, str],
                 content: bytes | Iterable[bytes] | None) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.content = content


class Response:
    """One answer; its body is read with :meth:`iter_raw` (or given as ``content``).

    Closing a completely read answer gives its connection back to the pool;
    closing one read only in part closes the connection.
    """

    def __init__(self, status_code: int, headers: Headers, request: Request, *,
                 reason_phrase: str = "", content: bytes | None = None,
                 raw: http.client.HTTPResponse | None = None,
                 release: Callable[[bool], None] | None = None) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.request = request
        self._content = content
        self._raw = raw
        self._release = release
        self.is_stream_consumed = raw is None

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead()
        return self._content

    def iter_raw(self, chunk: int = READ_SIZE) -> Iterator[bytes]:
        if self._raw is None:
            if self._content:
                yield self._content
            return
        raw = self._raw
        self.is_stream_consumed = True
        try:
            while True:
                data = raw.read1(chunk)
                if not data:
                    break
                yield data
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(_describe(e)) from e
        if raw.length:  # read1 returns b"" when the connection ends early
            raise TransportError(f"answer ended {raw.length} bytes before its Content-Length")

    def close(self) -> None:
        raw, self._raw = self._raw, None
        release, self._release = self._release, None
        if raw is not None:
            # complete: chunked to its last chunk, or every byte of its Content-Length
            reusable = (raw.isclosed() or raw.length == 0) and not raw.will_close
            raw.close()
            if release is not None:
                release(reusable)


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, http.client.RemoteDisconnected):
        return "server closed the connection without an answer"
    if isinstance(e, http.client.IncompleteRead):
        return f"answer ended after {len(e.partial)} bytes"
    text = str(e) or type(e).__name__
    return text if type(e).__name__ in text else f"{type(e).__name__}: {text}"


def connect_tcp(address: tuple[str, int], timeout: float | None = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
    """socket.create_connection with an ASCII host passed as bytes: a str host goes
    through the idna codec, whose import (stringprep, unicodedata) cost ~1.5 ms."""
    host: str | bytes = address[0]
    if isinstance(host, str) and host.isascii():
        host = host.encode("ascii")
    return socket.create_connection((host, address[1]), timeout, source_address)  # type: ignore[arg-type]


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of the http:// proxy the environment names for ``scheme://host``.

    The variables are read as the standard library reads them
    (``urllib.request.getproxies_environment`` / ``proxy_bypass_environment``:
    ``*_proxy``, ``all_proxy``, ``no_proxy`` with domain suffixes and ``*``),
    loaded only when one is set; a loopback host never goes through a proxy."""
    from ocipy.registry.client import is_loopback

    if is_loopback(host) or not any(k.lower().endswith("_proxy") for k in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]  # not in typeshed
        return None
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http" or not parts.hostname:
        raise UnsupportedProtocol(f"proxy {url!r}: only http:// proxies are supported")
    return parts.hostname, parts.port or 80


class Client:
    """Keep-alive connections per (scheme, host, port), at most ``max_connections`` idle each."""

    def __init__(self, *, tls: ssl.SSLContext, timeout: float, connect_timeout: float,
                 headers: dict[str, str], max_connections: int = 16) -> None:
        self.tls = tls
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.headers = headers
        self.max_connections = max_connections
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def build_request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      content: bytes | Iterable[bytes] | None = None) -> Request:
        return Request(method, url, {**self.headers, **(headers or {})}, content)

    def _new(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        proxy = _proxy_for(scheme, f"{host}:{port}")
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(*(proxy or (host, port)), timeout=self.connect_timeout,
                                               context=self.tls)
            if proxy:
                conn.set_tunnel(host, port)
        else:
            conn = http.client.HTTPConnection(*(proxy or (host, port)), timeout=self.connect_timeout)
        conn.ocipy_absolute = proxy is not None and scheme == "http"  # type: ignore[attr-defined]
        conn._create_connection = connect_tcp  # type: ignore[attr-defined]
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.timeout)
        return conn

    def _get(self, key: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        """A connection for ``key`` and whether it was used before."""
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                sock = conn.sock
                # readable while idle: the server closed it (or sent junk): not reusable
                if sock is not None:
                    p = select.poll()
                    p.register(sock, select.POLLIN)
                    if not p.poll(0):
                        return conn, True
                conn.close()
        return self._new(*key), False

    def _put(self, key: tuple[str, str, int], conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self.max_connections:
                    idle.append(conn)
                    return
        conn.close()

    def send(self, request: Request, *, stream: bool = True) -> Response:
        """Send ``request``; the answer comes back with its body still to be read."""
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        try:
            host = parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as e:
            raise UnsupportedProtocol(f"invalid URL: {e}") from e
        if not host:
            raise UnsupportedProtocol("URL without a host")
        key = (scheme, host, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        replayable = not isinstance(request.content, Iterator)
        for _ in range(2):
            try:
                conn, reused = self._get(key)
            except ssl.SSLCertVerificationError as e:
                raise ConnectError(f"[SSL: CERTIFICATE_VERIFY_FAILED] {e.verify_message}") from e
            except (OSError, http.client.HTTPException) as e:
                raise ConnectError(_describe(e)) from e
            path = request.url if getattr(conn, "ocipy_absolute", False) else target
            try:
                conn.request(request.method, path, body=request.content, headers=request.headers)
                raw = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                # a keep-alive connection the server dropped just as we reused it
                if reused and replayable and isinstance(e, ConnectionError | http.client.RemoteDisconnected):
                    continue
                raise TransportError(_describe(e)) from e
            break
        items = [(k, v) for k, v in raw.getheaders()]

        def release(reusable: bool, conn: http.client.HTTPConnection = conn) -> None:
            self._put(key, conn, reusable)

        resp = Response(raw.status, Headers(items), request, reason_phrase=raw.reason or "",
                        raw=raw, release=release)
        if raw.length == 0:  # no body (HEAD, 204, 304, Content-Length: 0): free the connection
            resp.close()
            resp._content = b""
            resp.is_stream_consumed = True
        return resp

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()
