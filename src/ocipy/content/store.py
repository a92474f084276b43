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


def open_source(ref: Any, options: Any = None, storage: str | None = None) -> ImageSource:
    """The source a parsed reference (:mod:`ocipy.content.reference`) names; a
    bare name that is no layout directory is an image in the store at `storage`
    (default :func:`ocipy.storage.names.default_root`)."""
    if ref.transport == "oci" and ref.bare:
        from ocipy.storage.names import StoreRoot, names_layout

        if not names_layout(ref):
            from ocipy.content.layout import LayoutSource

            store = StoreRoot(storage)
            return LayoutSource(store.content_path, store.get(ref.text).name)
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


def open_destination(ref: Any, options: Any = None, storage: str | None = None) -> ImageDestination:
    """The destination a parsed reference names (a bare name that is no layout
    directory: the store, under that name fully qualified).  Nothing is
    created yet: a layout or archive appears only when the first verified
    content is written."""
    if ref.transport == "oci" and ref.bare and not ref.digest:
        from ocipy.storage.names import StoreRoot, names_layout, normalize

        if not names_layout(ref):
            from ocipy.content.layout import LayoutDestination

            store = StoreRoot(storage)
            store.ensure()
            return LayoutDestination(store.content_path, normalize(ref.text))
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


class _PullReader:
    """A blob downloading on a helper thread (``fetch_blob``) into an unlinked temp
    file, read in order as it arrives; the read that reaches EOF raises what
    fetch_blob raised (a failed verification).

    The download runs at the network's pace whatever the reader's: the layers an
    unpack reads later are fetched in full while an earlier one is applied, and
    their bytes never reach anything but this file (``O_TMPFILE``: gone with the
    reader, also after a crash).  If the download starts over (``reset()``: a
    registry ignored a Range), the bytes already there must come again the same
    or the blob is refused.  At most ``AHEAD`` bytes wait unread (the temp dir
    may be a tmpfs): past that the download waits for the reader.
    """

    AHEAD = 1 << 30

    def __init__(self, source: ImageSource, desc: Descriptor) -> None:
        import tempfile

        self._file = tempfile.TemporaryFile(buffering=0)
        self._fd = self._file.fileno()
        self._cond = threading.Condition()
        self._avail = 0  # bytes in the file the reader may read
        self._wpos = 0  # where the next write goes (below _avail after a reset)
        self._pos = 0
        self._done = False
        self._closed = False
        self._waiting = False  # the download waits for the reader (AHEAD bytes unread)
        self._error: BaseException | None = None
        self._what = f"{source.name}: blob {desc['digest']}"

        def run() -> None:
            try:
                source.fetch_blob(desc, self)
            except BaseException as e:  # noqa: BLE001 - handed to the reader
                self._error = e
            finally:
                with self._cond:
                    self._done = True
                    self._cond.notify_all()

        self._thread = threading.Thread(target=run, name=f"blob {desc['digest'][:19]}", daemon=True)
        self._thread.start()

    # -- the Sink fetch_blob writes into (the download thread)

    def write(self, data: bytes, /) -> int:
        import os

        if self._avail - self._pos > self.AHEAD:
            with self._cond:
                while self._avail - self._pos > self.AHEAD and not self._closed:
                    self._waiting = True
                    self._cond.wait()
                self._waiting = False
        if self._closed:  # the reader gave up: stop the download
            raise ImageError("blob stream closed by its reader")
        view = memoryview(data)
        if self._wpos < self._avail:  # a download started over: what is there must match
            n = min(len(view), self._avail - self._wpos)
            if os.pread(self._fd, n, self._wpos) != view[:n]:
                raise ImageError(f"{self._what}: the registry sent other bytes when the download started over")
            self._wpos += n
            view = view[n:]
        while view:
            n = os.pwrite(self._fd, view, self._wpos)
            if n <= 0:
                raise ImageError(f"{self._what}: short write to the download's temp file")
            self._wpos += n
            view = view[n:]
        if self._wpos > self._avail:
            with self._cond:
                self._avail = self._wpos
                self._cond.notify_all()
        return len(data)

    def reset(self) -> None:
        self._wpos = 0

    # -- the reader

    def read(self, n: int = READ_CHUNK) -> bytes:
        import os

        if n is None or n < 0:
            parts = []
            while chunk := self.read(READ_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        with self._cond:
            while self._pos >= self._avail and not self._done:
                self._cond.wait()
            avail = self._avail
        if self._pos >= avail:
            if self._error is not None:
                raise self._error
            return b""
        data = os.pread(self._fd, min(n, avail - self._pos), self._pos)
        with self._cond:  # under the lock: a download about to wait for the reader sees it
            self._pos += len(data)
            if self._waiting:
                self._cond.notify_all()
        return data

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # a download waiting for the reader stops
        self._thread.join()
        self._file.close()

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

    # layers downloading while an earlier one is applied (into temp files: the
    # network never waits for the extraction)
    PREFETCH = 3

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
