"""The OCI image layout (image-layout.md): ``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``.

* Blobs are written to a temp file in the layout, fsynced, then renamed into
  place; they are verified (digest and size) whenever they are read.
* ``index.json`` is replaced atomically (temp + fsync + rename).
* Writers take an exclusive ``flock`` on the layout directory for the whole
  operation (blobs and index), readers a shared one, so two ``ocipy``
  processes never corrupt a layout and ``gc`` never removes a blob another
  writer is about to reference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from ocipy import fsutil
from ocipy.errors import ImageError
from ocipy.fsutil import TMP_PREFIX
from ocipy.spec import digest as _digest
from ocipy.spec import image as spec

MAX_DOCUMENT_SIZE = 4 << 20  # manifests, indexes and configs larger than this are refused
CHUNK = 1 << 20


def dumps(doc: Any) -> bytes:
    """Canonical-ish JSON bytes for documents we write (compact, stable key order)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


class BlobWriter:
    """Stream a blob into the layout: write(), then commit() -> (digest, size).

    The bytes go to a temp file in the layout (:class:`ocipy.fsutil.AtomicFile`:
    every write complete or an error, so a full disk fails the write instead of
    leaving a short file); the file is renamed to ``blobs/<alg>/<hex>`` only
    after its digest and size matched what the caller expects.
    """

    def __init__(self, layout: Layout, algorithm: str = "sha256") -> None:
        self.layout = layout
        self.algorithm = algorithm
        self._hash = _digest.hasher(algorithm)
        try:
            self.file = fsutil.AtomicFile(layout.path, 0o644)
        except OSError as e:
            raise ImageError(f"image layout {layout.path}: cannot write a blob: {e.strerror or e}") from None

    @property
    def size(self) -> int:
        return self.file.size

    def _write(self, data: bytes | memoryview) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            raise ImageError(f"image layout {self.layout.path}: writing a blob: {e.strerror or e}") from None

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        return self._write(data)

    def commit(self, expect_digest: str | None = None, expect_size: int | None = None) -> tuple[str, int]:
        digest = f"{self.algorithm}:{self._hash.hexdigest()}"
        try:
            if expect_size is not None and self.size != expect_size:
                raise ImageError(f"blob {expect_digest or digest}: size {self.size} does not match descriptor size {expect_size}")
            if expect_digest is not None and digest != expect_digest:
                raise ImageError(f"blob {expect_digest}: digest mismatch (content is {digest})")
            return self._rename(digest, sync=True, sync_dir=True)
        finally:
            self.abort()

    def _rename(self, digest: str, *, sync: bool, sync_dir: bool) -> tuple[str, int]:
        target = self.layout.blob_path(digest)
        size = self.size
        try:
            self.layout.blob_dir(digest)
            self.file.commit(target, sync=sync, sync_dir=sync_dir)
        except OSError as e:
            raise ImageError(f"blob {digest}: cannot store it in {self.layout.path}: {e.strerror or e}") from None
        return digest, size

    def abort(self) -> None:
        self.file.abort()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class VerifiedBlobWriter(BlobWriter):
    """A BlobWriter for content its caller verifies as it streams (a registry download
    hashes every byte against the digest already): write() does not hash it again, and
    commit_verified() names the blob by the digest the caller checked.

    ``sync=False`` skips the file's fsync (scratch layouts); ``sync_dir=False``
    leaves the directory's fsync to the caller, who does one for many blobs with
    :meth:`Layout.sync_blob_dirs` before anything (index.json) names them.
    """

    def write(self, data: bytes | memoryview) -> int:
        return self._write(data)

    def commit_verified(self, digest: str, size: int, *, sync: bool = True,
                        sync_dir: bool = True) -> tuple[str, int]:
        try:
            if self.size != size:
                raise ImageError(f"blob {digest}: size {self.size} does not match descriptor size {size}")
            return self._rename(digest, sync=sync, sync_dir=sync_dir)
        finally:
            self.abort()


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._lock_fd = -1
        self._lock_depth = 0
        self._lock_shared = False

    # -- creation and opening -------------------------------------------------

    @classmethod
    def init(cls, path: str, exist_ok: bool = False) -> Layout:
        """Create an empty layout (oci-layout, empty index.json, blobs/)."""
        layout = cls(path)
        if os.path.exists(os.path.join(layout.path, "oci-layout")):
            if exist_ok:
                return cls.open(path)
            raise ImageError(f"image layout {path}: already exists")
        if os.path.exists(layout.path) and not os.path.isdir(layout.path):
            raise ImageError(f"image layout {path}: exists and is not a directory")
        os.makedirs(os.path.join(layout.path, "blobs", "sha256"), exist_ok=True)
        layout._write_file("oci-layout", dumps({"imageLayoutVersion": spec.IMAGE_LAYOUT_VERSION}))
        layout._write_file("index.json", dumps({"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": []}))
        return layout

    @classmethod
    def open(cls, path: str) -> Layout:
        layout = cls(path)
        marker = os.path.join(layout.path, "oci-layout")
        try:
            with open(marker, "rb") as f:
                raw = f.read(65536)
        except FileNotFoundError:
            raise ImageError(f"image layout {path}: no oci-layout file (not an OCI image layout)") from None
        except NotADirectoryError:
            raise ImageError(f"image layout {path}: not a directory") from None
        doc = spec.load_json(raw, f"image layout {path}: oci-layout")
        spec.validate_layout_file(doc)
        return layout

    # -- locking ---------------------------------------------------------------

    @contextmanager
    def lock(self, shared: bool = False) -> Iterator[None]:
        """flock the layout directory (re-entrant; a nested exclusive lock in a
        shared one is an error)."""
        import fcntl

        if self._lock_depth:
            if self._lock_shared and not shared:
                raise ImageError(f"image layout {self.path}: cannot upgrade a shared lock")
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            self._lock_fd, self._lock_depth, self._lock_shared = fd, 1, shared
            try:
                yield
            finally:
                self._lock_depth = 0
                self._lock_fd = -1
        finally:
            os.close(fd)  # releases the flock

    # -- files -----------------------------------------------------------------

    def _write_file(self, name: str, data: bytes) -> None:
        path = os.path.join(self.path, name)
        try:
            fsutil.write_file(path, data, 0o644, sync_dir=True, prefix=TMP_PREFIX)
        except OSError as e:
            raise ImageError(f"image layout {self.path}: writing {name}: {e.strerror or e}") from None

    # -- blobs -----------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        alg, enc = _digest.parse(digest, "blob digest")
        return os.path.join(self.path, "blobs", alg, enc)

    def blob_dir(self, digest: str) -> str:
        """blobs/<alg>, created if needed; a symlink or non-directory there is refused
        (a blob written through it would land outside the layout)."""
        alg, _ = _digest.parse(digest, "blob digest")
        path = os.path.join(self.path, "blobs", alg)
        for d in (os.path.join(self.path, "blobs"), path):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                if os.path.islink(d) or not os.path.isdir(d):
                    raise ImageError(f"image layout {self.path}: {os.path.relpath(d, self.path)} "
                                     "is not a directory (a symlink?)") from None
        return path

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """A regular file holds the blob (and has `size` bytes, if given).  A file of
        the wrong size (a write cut short by a full disk before ocipy checked writes)
        is not the blob: the caller writes it again, which replaces it."""
        import stat

        try:
            st = os.lstat(self.blob_path(digest))
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        return size is None or st.st_size == size

    def open_blob(self, digest: str, desc: dict[str, Any] | None = None) -> IO[bytes]:
        """Open a blob for streaming; the caller verifies (see
        :class:`ocipy.spec.digest.VerifyingReader`).  `desc` is ignored (other
        content stores need it to know the size)."""
        path = self.blob_path(digest)
        try:
            # O_NONBLOCK: a fifo planted under a blob's name must not hang the reader
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ImageError(f"blob {digest}: missing from image layout {self.path}") from None
        except OSError as e:
            raise ImageError(f"blob {digest}: cannot open it in {self.path}: {e.strerror or e}") from None
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"blob {digest}: not a regular file in image layout {self.path}")
        return os.fdopen(fd, "rb", buffering=0)

    def read_blob(self, digest: str, size: int | None = None, max_size: int = MAX_DOCUMENT_SIZE) -> bytes:
        """Read a whole blob, verifying digest and size."""
        if size is not None and size > max_size:
            raise ImageError(f"blob {digest}: size {size} exceeds the limit of {max_size} bytes")
        with self.open_blob(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise ImageError(f"blob {digest}: larger than the limit of {max_size} bytes")
        _digest.verify_bytes(data, digest, size, "blob")
        return data

    def write_blob(self, data: bytes, algorithm: str = "sha256") -> tuple[str, int]:
        with BlobWriter(self, algorithm) as w:
            w.write(data)
            return w.commit()

    def blob_writer(self, algorithm: str = "sha256") -> BlobWriter:
        return BlobWriter(self, algorithm)

    def verified_blob_writer(self) -> VerifiedBlobWriter:
        """A writer for content the caller has verified (see :class:`VerifiedBlobWriter`)."""
        return VerifiedBlobWriter(self)

    def sync_blob_dirs(self) -> None:
        """fsync every blobs/<alg> directory (after renames done with ``sync_dir=False``)."""
        blobs = os.path.join(self.path, "blobs")
        for alg in os.listdir(blobs):
            if os.path.isdir(os.path.join(blobs, alg)):
                fsutil.fsync_dir(os.path.join(blobs, alg))

    def put_json(self, doc: Any, media_type: str) -> dict[str, Any]:
        """Write a JSON document as a blob; return its descriptor."""
        data = dumps(doc)
        digest, size = self.write_blob(data)
        return {"mediaType": media_type, "digest": digest, "size": size}

    def read_manifest(self, desc: dict[str, Any]) -> dict[str, Any]:
        """Read, verify and validate the manifest or index `desc` points to."""
        return spec.parse_document(self.read_blob(desc["digest"], desc.get("size")), desc)

    def read_config(self, desc: dict[str, Any]) -> dict[str, Any]:
        if desc.get("mediaType") not in spec.CONFIG_TYPES:
            raise ImageError(f"config {desc.get('digest')}: unknown media type {desc.get('mediaType')!r}")
        return spec.parse_document(self.read_blob(desc["digest"], desc.get("size")), desc)

    # -- index -----------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        path = os.path.join(self.path, "index.json")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_DOCUMENT_SIZE + 1)
        except FileNotFoundError:
            raise ImageError(f"image layout {self.path}: index.json is missing") from None
        if len(raw) > MAX_DOCUMENT_SIZE:
            raise ImageError(f"image layout {self.path}: index.json is larger than {MAX_DOCUMENT_SIZE} bytes")
        doc = spec.load_json(raw, f"image layout {self.path}: index.json")
        return spec.validate_index(doc, "index.json")

    def update_index(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read index.json, apply `change` to it in place, write it back atomically (locked)."""
        with self.lock():
            idx = self.index()
            change(idx)
            spec.validate_index(idx, "index.json")
            self._write_file("index.json", dumps(idx))
            return idx

    def tags(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for desc in self.index()["manifests"]:
            name = (desc.get("annotations") or {}).get(spec.ANNOTATION_REF_NAME)
            if name is not None:
                out.append((name, desc))
        return out

    def resolve(self, tag: str | None) -> dict[str, Any]:
        """The index.json descriptor named `tag` (or the only one, if `tag` is None)."""
        manifests = self.index()["manifests"]
        if tag is None:
            if len(manifests) == 1:
                return manifests[0]  # type: ignore[no-any-return]
            if not manifests:
                raise ImageError(f"image layout {self.path}: no images in index.json")
            raise ImageError(f"image layout {self.path}: {len(manifests)} images in index.json; name a tag")
        found = [d for d in manifests if (d.get("annotations") or {}).get(spec.ANNOTATION_REF_NAME) == tag]
        if not found:
            raise ImageError(f"image layout {self.path}: tag {tag!r} not found")
        if len(found) > 1:
            raise ImageError(f"image layout {self.path}: tag {tag!r} names {len(found)} descriptors")
        return found[0]  # type: ignore[no-any-return]

    def resolve_image(self, desc: dict[str, Any], platform: dict[str, str] | None = None,
                      depth: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
        """Follow indexes down to one image manifest for `platform` (default: the host's),
        by the one platform rule (:func:`ocipy.spec.image.choose_platform`)."""
        from ocipy.content.walk import resolve_image

        return resolve_image(self.read_manifest, desc, platform)

    # -- garbage collection ----------------------------------------------------

    def reachable(self) -> set[str]:
        """Digests of every blob reachable from index.json (manifests' subjects included)."""
        from ocipy.content.walk import walk

        def read(desc: dict[str, Any]) -> dict[str, Any] | None:
            # a missing manifest still keeps its name; there is nothing below it to keep
            return self.read_manifest(desc) if self.has_blob(desc["digest"]) else None

        return {d["digest"] for d in walk(read, self.index()["manifests"], subjects=True)}

    def gc(self) -> list[str]:
        """Remove unreachable blobs and stale temp files; return the removed digests.

        Only regular files whose names are valid digests, in real directories
        blobs/<alg>, are removed (through directory fds, names never re-resolved).
        If blobs/ or any blobs/<alg> is a symlink or not a directory, nothing at
        all is removed: the layout is not ocipy's to clean (umoci gc does the same).
        """
        import stat

        removed: list[str] = []
        with self.lock():
            keep = self.reachable()
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                blobs_fd = os.open(os.path.join(self.path, "blobs"), flags)
            except FileNotFoundError:
                return removed
            except OSError:
                raise ImageError(f"image layout {self.path}: blobs is not a directory (a symlink?): "
                                 "gc removes nothing") from None
            dirs: list[tuple[str, int]] = []
            try:
                for alg in sorted(os.listdir(blobs_fd)):
                    try:
                        dirs.append((alg, os.open(alg, flags, dir_fd=blobs_fd)))
                    except OSError:
                        raise ImageError(f"image layout {self.path}: blobs/{alg} is not a directory "
                                         "(a symlink?): gc removes nothing") from None
                for name in os.listdir(self.path):
                    if name.startswith(TMP_PREFIX):
                        _remove_any(os.path.join(self.path, name))
                for alg, fd in dirs:
                    for enc in sorted(os.listdir(fd)):
                        digest = f"{alg}:{enc}"
                        if digest in keep or not _digest.is_valid(digest):
                            continue
                        st = os.stat(enc, dir_fd=fd, follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode):
                            os.unlink(enc, dir_fd=fd)
                            removed.append(digest)
            finally:
                for _, fd in dirs:
                    os.close(fd)
                os.close(blobs_fd)
        return removed


def _remove_any(path: str) -> None:
    from ocipy import fstree

    if os.path.isdir(path) and not os.path.islink(path):
        fstree.remove_quietly(path)  # any depth, through fds
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
