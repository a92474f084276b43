"""The content-store interface, and how a reference opens one.

A **source** (umoci's ``cas.Engine`` and containers/image's ``ImageSource``
are the models) hands out:

* ``get_manifest(digest=None)`` -> (bytes, media type, digest): a manifest or
  index by digest, or the one the reference names; the bytes are verified
  against the digest before they are returned;
* ``fetch_blob(desc, sink)``: the blob's bytes into ``sink``, verified while
  they stream (the call raises after the last write unless digest and size
  match; a sink may be told to ``reset()`` when a download starts over);
* ``open_blob(desc)`` (:func:`open_blob` for any source): a reader whose read
  that reaches EOF raises unless the blob verified;
* ``list_tags()``; ``local_path(desc)`` (a local file holding the blob, still
  to be verified); ``close()``.

A **destination** has ``has_blob(desc)``, ``try_mount``, ``put_blob(desc,
source)`` (nothing kept unless it verifies), ``put_manifest`` (children),
``put_top`` (the manifest the reference names: the tag, written last),
``commit()`` and ``close()``.

Implemented by the OCI layout (:mod:`ocipy.content.layout`), both archive
kinds (:mod:`ocipy.content.archives`) and the registry client
(:mod:`ocipy.registry.transports`).  :class:`Image` puts any source behind
what the image commands (inspect, validate, unpack, run, export) read:
validated documents by descriptor and verified blob streams.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

from ocipy.errors import ImageError
from ocipy.spec import digest as _digest
from ocipy.spec import image as spec

Descriptor = dict[str, Any]
Progress = Callable[[int], None]
READ_CHUNK = 1 << 20

__all__ = ["Descriptor", "FileSink", "Image", "ImageDestination", "ImageSource", "LocalFileSource",
           "Progress", "Sink", "open_blob", "open_destination", "open_source", "read_verified_file"]


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


class ImageSource(Protocol):
    name: str

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of ``digest``, or of the reference's own manifest."""
        ...

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        """Write the blob into ``sink``; raise (after the last write) unless it verifies."""
        ...

    def local_path(self, desc: Descriptor) -> str | None:
        """A local file holding the blob, if there is one (content still to be verified)."""
        ...

    def list_tags(self) -> list[str]: ...

    def close(self) -> None: ...


class ImageDestination(Protocol):
    name: str

    def has_blob(self, desc: Descriptor) -> bool: ...

    def try_mount(self, desc: Descriptor, source: ImageSource) -> bool:
        """Reuse a blob the destination can reach without a transfer (cross-repo mount)."""
        ...

    def put_blob(self, desc: Descriptor, source: ImageSource, progress: Progress | None = None) -> None:
        """Copy the blob from ``source``; nothing is kept unless it verifies."""
        ...

    def put_manifest(self, data: bytes, media_type: str, digest: str) -> None:
        """Store a manifest by digest (children of an index)."""
        ...

    def put_top(self, data: bytes, media_type: str, digest: str) -> None:
        """Store the manifest the destination reference names (tag it)."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


def copy_verified(f: Any, desc: Descriptor, sink: Sink, progress: Progress | None, what: str) -> None:
    """Copy the open file `f` into `sink`, verified against `desc` (raises after the last write)."""
    v = _digest.Verifier(desc["digest"], desc.get("size"), what)
    with f:
        while True:
            chunk = f.read(READ_CHUNK)
            if not chunk:
                break
            v.update(chunk)
            sink.write(chunk)
            if progress:
                progress(len(chunk))
    v.finish()


def read_verified_file(path: str, desc: Descriptor, sink: Sink, progress: Progress | None,
                       what: str) -> None:
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise ImageError(f"{what}: missing ({path})") from None
    copy_verified(f, desc, sink, progress, what)


class LocalFileSource:
    """One verified-on-read local blob file (used for recompressed layers)."""

    name = "local file"

    def __init__(self, path: str) -> None:
        self.path = path

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        raise ImageError("a local blob file has no manifest")

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        read_verified_file(self.path, desc, sink, progress, f"blob {desc['digest']}")

    def local_path(self, desc: Descriptor) -> str | None:
        return self.path

    def list_tags(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def manifest_media_type(data: bytes, declared: str | None, what: str) -> str:
    """The media type of a manifest's bytes (:func:`ocipy.spec.image.manifest_media_type`)."""
    return spec.manifest_media_type(spec.load_json(data, what), declared, what)


# ------------------------------------------------------------------ opening


def open_source(ref: Any, options: Any = None) -> ImageSource:
    """The source a parsed reference (:mod:`ocipy.content.reference`) names."""
    if ref.transport == "docker":
        from ocipy.registry.endpoints import make_client
        from ocipy.registry.transports import RegistrySource

        assert ref.docker is not None
        return RegistrySource(ref.docker, make_client(ref.docker, options, "--src-creds"))
    if ref.transport == "oci":
        from ocipy.content.layout import LayoutSource

        return LayoutSource(ref.path, ref.tag, ref.digest)
    from ocipy.content.archives import open_archive_source

    return open_archive_source(ref)


def open_destination(ref: Any, options: Any = None) -> ImageDestination:
    """The destination a parsed reference names.  Nothing is created yet: a layout
    or archive appears only when the first verified content is written."""
    if ref.transport == "docker":
        from ocipy.registry.endpoints import RegistryOptions, make_client
        from ocipy.registry.transports import RegistryDestination

        assert ref.docker is not None
        opts = options or RegistryOptions()
        return RegistryDestination(ref.docker, make_client(ref.docker, opts, "--dest-creds"),
                                   chunk_size=opts.chunk_size)
    if ref.digest:
        raise ImageError(f"{ref}: a destination is named by a tag, not a digest")
    if ref.transport == "oci":
        from ocipy.content.layout import LayoutDestination

        return LayoutDestination(ref.path, ref.tag)
    from ocipy.content.archives import open_archive_destination

    return open_archive_destination(ref)


# ------------------------------------------------------------ pull-side reading


class _PipeSink:
    """fetch_blob (push) into a reader (pull): chunks cross a bounded queue.

    If the download starts over (``reset()``: a registry ignored a Range),
    the bytes already handed to the reader are skipped in the new stream."""

    def __init__(self, q: Any, closed: threading.Event) -> None:
        self.q = q
        self.closed = closed
        self.sent = 0
        self.skip = 0

    def write(self, data: bytes, /) -> int:
        import queue

        n = len(data)
        if self.skip:
            cut = min(self.skip, n)
            self.skip -= cut
            data = data[cut:]
        while data:
            if self.closed.is_set():  # the reader gave up: stop the download
                raise ImageError("blob stream closed by its reader")
            try:
                self.q.put(bytes(data), timeout=0.1)
            except queue.Full:
                continue
            self.sent += len(data)
            break
        return n

    def reset(self) -> None:
        self.skip = self.sent


class _PullReader:
    """A blob stream from a source's ``fetch_blob`` on a helper thread; the read
    that reaches EOF raises what fetch_blob raised (a failed verification)."""

    _END = object()

    def __init__(self, source: ImageSource, desc: Descriptor) -> None:
        import queue

        self._q: Any = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._buf = b""
        self._eof = False
        self._closed = threading.Event()
        sink = _PipeSink(self._q, self._closed)

        def run() -> None:
            try:
                source.fetch_blob(desc, sink)
            except BaseException as e:  # noqa: BLE001 - handed to the reader
                self._error = e
            finally:
                self._put(self._END)

        self._thread = threading.Thread(target=run, name=f"blob {desc['digest'][:19]}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        import queue

        while not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = READ_CHUNK) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(READ_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        while not self._buf and not self._eof:
            item = self._q.get()
            if item is self._END:
                self._eof = True
                if self._error is not None:
                    raise self._error
            else:
                self._buf = item
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._closed.set()
        while self._thread.is_alive():  # unblock a writer waiting on a full queue
            try:
                self._q.get_nowait()
            except Exception:  # noqa: BLE001 - queue.Empty
                self._thread.join(0.05)

    def __enter__(self) -> _PullReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_blob(source: ImageSource, desc: Descriptor) -> Any:
    """A reader of `desc`'s blob from any source; reading to EOF verifies it."""
    path = source.local_path(desc)
    what = f"{source.name}: blob {desc['digest']}"
    if path is not None:
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise ImageError(f"{what}: missing") from None
        return _digest.VerifyingReader(f, desc["digest"], desc.get("size"), what)
    return _PullReader(source, desc)


class Image:
    """Any source seen as the image commands read a layout: validated documents by
    descriptor and verified blob streams (``open_blob``), so ``unpack``,
    ``validate``, ``inspect`` and ``export`` take every transport.  Descriptors
    met in the documents read so far give the sizes blobs are verified with."""

    # layers downloaded ahead of the one being applied (each holds at most a
    # few chunks until it is read: memory stays bounded)
    PREFETCH = 2

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self.path = source.name  # what a bundle records as its origin
        self._descs: dict[str, Descriptor] = {}
        self._layers: list[str] = []  # the layer order of the last manifest read
        self._ahead: dict[str, Any] = {}  # digest -> reader already started

    @contextmanager
    def lock(self, shared: bool = True) -> Iterator[None]:
        layout = getattr(self.source, "layout", None)
        if layout is None:
            yield
            return
        with layout.lock(shared=True):
            yield

    def top(self) -> Descriptor:
        """The descriptor of the manifest or index the reference names."""
        data, mt, digest = self.source.get_manifest(None)
        desc: Descriptor = {"mediaType": mt, "digest": digest, "size": len(data)}
        self._docs = {digest: data}
        return desc

    def _remember(self, doc: dict[str, Any]) -> None:
        from ocipy.content.walk import children

        for d in children(doc):
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                self._descs.setdefault(d["digest"], d)

    def read_manifest(self, desc: Descriptor) -> dict[str, Any]:
        digest = desc["digest"]
        cached = getattr(self, "_docs", {}).get(digest)
        data = cached if cached is not None else self.source.get_manifest(digest)[0]
        _digest.verify_bytes(data, digest, desc.get("size"), f"{self.source.name}: manifest {digest}")
        doc = spec.parse_document(data, desc)
        self._remember(doc)
        if desc.get("mediaType") in spec.MANIFEST_TYPES:
            self._layers = [d["digest"] for d in doc["layers"]]
        return doc

    def read_blob(self, desc: Descriptor, max_size: int = spec.MAX_DOCUMENT_SIZE) -> bytes:
        if desc.get("size", 0) > max_size:
            raise ImageError(f"blob {desc['digest']}: size {desc['size']} exceeds the limit of {max_size} bytes")
        with self.open_blob(desc["digest"], desc) as r:
            return r.read(-1)  # type: ignore[no-any-return]

    def read_config(self, desc: Descriptor) -> dict[str, Any]:
        if desc.get("mediaType") not in spec.CONFIG_TYPES:
            raise ImageError(f"config {desc.get('digest')}: unknown media type {desc.get('mediaType')!r}")
        return spec.parse_document(self.read_blob(desc), desc)

    def open_blob(self, digest: str, desc: Descriptor | None = None) -> Any:
        desc = desc or self._descs.get(digest)
        if desc is None:
            raise ImageError(f"{self.source.name}: blob {digest} is not named by any document read")
        reader = self._ahead.pop(digest, None) or open_blob(self.source, desc)
        if digest in self._layers and self.source.local_path(desc) is None:
            # the next layers start downloading while this one is applied
            i = self._layers.index(digest)
            for nxt in self._layers[i + 1:i + 1 + self.PREFETCH]:
                if nxt not in self._ahead and nxt != digest:
                    self._ahead[nxt] = open_blob(self.source, self._descs[nxt])
        return _Closing(reader)

    def resolve_image(self, desc: Descriptor, platform: dict[str, str] | None = None) -> tuple[Descriptor, dict[str, Any]]:
        from ocipy.content.walk import resolve_image

        return resolve_image(self.read_manifest, desc, platform)

    def close(self) -> None:
        for reader in self._ahead.values():
            reader.close()
        self._ahead.clear()
        self.source.close()


class _Closing:
    """A reader usable in ``with`` (closing the underlying reader)."""

    def __init__(self, reader: Any) -> None:
        self._r = reader
        self.read = reader.read

    def close(self) -> None:
        self._r.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self._r.close()
