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

from ocipy.errors import ImageError
from ocipy.spec import digest as _digest
from ocipy.spec import image as spec

TMP_PREFIX = ".ocipy-tmp-"
MAX_DOCUMENT_SIZE = 4 << 20  # manifests, indexes and configs larger than this are refused
CHUNK = 1 << 20


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dumps(doc: Any) -> bytes:
    """Canonical-ish JSON bytes for documents we write (compact, stable key order)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


class BlobWriter:
    """Stream a blob into the layout: write(), then commit() -> (digest, size)."""

    def __init__(self, layout: Layout, algorithm: str = "sha256") -> None:
        import tempfile

        self.layout = layout
        self.algorithm = algorithm
        self._hash = _digest.hasher(algorithm)
        fd, self.tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=layout.path)
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=0)
        self.size = 0
        self.done = False

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self.file.write(data)
        self.size += len(data)
        return len(data)

    def commit(self, expect_digest: str | None = None, expect_size: int | None = None) -> tuple[str, int]:
        digest = f"{self.algorithm}:{self._hash.hexdigest()}"
        try:
            if expect_size is not None and self.size != expect_size:
                raise ImageError(f"blob {expect_digest or digest}: size {self.size} does not match descriptor size {expect_size}")
            if expect_digest is not None and digest != expect_digest:
                raise ImageError(f"blob {expect_digest}: digest mismatch (content is {digest})")
            os.fsync(self.file.fileno())
            self.file.close()
            target = self.layout.blob_path(digest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(self.tmp, target)
            _fsync_dir(os.path.dirname(target))
            self.done = True
            return digest, self.size
        finally:
            self.abort()

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        if not self.done:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.done = True

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
        self.file.write(data)
        self.size += len(data)
        return len(data)

    def commit_verified(self, digest: str, size: int, *, sync: bool = True,
                        sync_dir: bool = True) -> tuple[str, int]:
        try:
            if self.size != size:
                raise ImageError(f"blob {digest}: size {self.size} does not match descriptor size {size}")
            target = self.layout.blob_path(digest)
            if sync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(self.tmp, target)
            if sync_dir:
                _fsync_dir(os.path.dirname(target))
            self.done = True
            return digest, self.size
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
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise ImageError(f"image layout {path}: oci-layout: invalid JSON: {e}") from None
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
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, os.path.join(self.path, name))
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(self.path)

    # -- blobs -----------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        alg, enc = _digest.parse(digest, "blob digest")
        return os.path.join(self.path, "blobs", alg, enc)

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def open_blob(self, digest: str) -> IO[bytes]:
        """Open a blob for streaming; the caller verifies (see :class:`VerifyingReader`)."""
        path = self.blob_path(digest)
        try:
            return open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise ImageError(f"blob {digest}: missing from image layout {self.path}") from None

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
                _fsync_dir(os.path.join(blobs, alg))

    def put_json(self, doc: Any, media_type: str) -> dict[str, Any]:
        """Write a JSON document as a blob; return its descriptor."""
        data = dumps(doc)
        digest, size = self.write_blob(data)
        return {"mediaType": media_type, "digest": digest, "size": size}

    def read_json(self, desc: dict[str, Any], what: str = "blob") -> Any:
        data = self.read_blob(desc["digest"], desc.get("size"))
        try:
            return json.loads(data)
        except ValueError as e:
            raise ImageError(f"{what} {desc['digest']}: invalid JSON: {e}") from None

    def read_manifest(self, desc: dict[str, Any]) -> dict[str, Any]:
        """Read, verify and validate the manifest or index `desc` points to."""
        doc = self.read_json(desc, "manifest")
        mt = desc.get("mediaType")
        where = f"manifest {desc['digest']}"
        if mt in spec.INDEX_TYPES:
            spec.validate_index(doc, where)
        elif mt in spec.MANIFEST_TYPES:
            spec.validate_manifest(doc, where)
        else:
            raise ImageError(f"{where}: unknown media type {mt!r}")
        if isinstance(doc, dict) and doc.get("mediaType") not in (None, mt):
            raise ImageError(f"{where}: mediaType {doc.get('mediaType')!r} does not match the descriptor's {mt!r}")
        return doc  # type: ignore[no-any-return]

    def read_config(self, desc: dict[str, Any]) -> dict[str, Any]:
        if desc.get("mediaType") not in spec.CONFIG_TYPES:
            raise ImageError(f"config {desc.get('digest')}: unknown media type {desc.get('mediaType')!r}")
        doc = self.read_json(desc, "config")
        return spec.validate_config(doc, f"config {desc['digest']}")

    # -- index -----------------------------------------------------------------

    def index(self) -> dict[str, Any]:
        path = os.path.join(self.path, "index.json")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_DOCUMENT_SIZE + 1)
        except FileNotFoundError:
            raise ImageError(f"image layout {self.path}: index.json is missing") from None
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise ImageError(f"image layout {self.path}: index.json: invalid JSON: {e}") from None
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
        """Follow indexes down to one image manifest for `platform` (default: the host's)."""
        if depth > 8:
            raise ImageError(f"manifest {desc.get('digest')}: indexes nested too deeply")
        doc = self.read_manifest(desc)
        if desc["mediaType"] in spec.MANIFEST_TYPES:
            return desc, doc
        want = platform or spec.host_platform()
        candidates = [d for d in doc["manifests"] if d["mediaType"] in spec.MANIFEST_TYPES + spec.INDEX_TYPES]
        matching = [d for d in candidates if spec.platform_matches(want, d.get("platform"))]
        if not matching:
            no_platform = [d for d in candidates if "platform" not in d]
            if len(no_platform) == 1 and len(candidates) == 1:
                matching = no_platform
        if not matching:
            have = ", ".join(spec.format_platform(d["platform"]) for d in candidates if d.get("platform"))
            raise ImageError(f"index {desc['digest']}: no manifest for platform {spec.format_platform(want)}"
                             + (f" (has {have})" if have else ""))
        return self.resolve_image(matching[0], platform, depth + 1)

    # -- garbage collection ----------------------------------------------------

    def reachable(self) -> set[str]:
        """Digests of every blob reachable from index.json."""
        seen: set[str] = set()
        todo = list(self.index()["manifests"])
        while todo:
            desc = todo.pop()
            d = desc["digest"]
            if d in seen:
                continue
            seen.add(d)
            mt = desc.get("mediaType")
            if mt in spec.MANIFEST_TYPES + spec.INDEX_TYPES and self.has_blob(d):
                doc = self.read_manifest(desc)
                todo.extend(doc.get("manifests", []))
                if "config" in doc:
                    todo.append(doc["config"])
                todo.extend(doc.get("layers", []))
                if "subject" in doc:
                    todo.append(doc["subject"])
        return seen

    def gc(self) -> list[str]:
        """Remove unreachable blobs and stale temp files; return the removed digests."""
        removed: list[str] = []
        with self.lock():
            keep = self.reachable()
            for name in os.listdir(self.path):
                if name.startswith(TMP_PREFIX):
                    _remove_any(os.path.join(self.path, name))
            blobs = os.path.join(self.path, "blobs")
            for alg in sorted(os.listdir(blobs)) if os.path.isdir(blobs) else []:
                adir = os.path.join(blobs, alg)
                if not os.path.isdir(adir):
                    continue
                for enc in sorted(os.listdir(adir)):
                    digest = f"{alg}:{enc}"
                    if digest not in keep:
                        os.unlink(os.path.join(adir, enc))
                        removed.append(digest)
        return removed


def _remove_any(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class VerifyingReader:
    """Wrap a blob file: read() hashes as it goes; finish() checks digest and size."""

    def __init__(self, f: IO[bytes], digest: str, size: int | None, what: str = "blob") -> None:
        alg, self._enc = _digest.parse(digest, what)
        self._hash = _digest.hasher(alg)
        self._f = f
        self.digest = digest
        self.expect_size = size
        self.size = 0
        self.what = what

    def read(self, n: int = CHUNK) -> bytes:
        data = self._f.read(n)
        if data:
            self._hash.update(data)
            self.size += len(data)
            if self.expect_size is not None and self.size > self.expect_size:
                raise ImageError(f"{self.what} {self.digest}: larger than descriptor size {self.expect_size}")
        return data

    def finish(self) -> None:
        while self.read(CHUNK):
            pass
        if self.expect_size is not None and self.size != self.expect_size:
            raise ImageError(f"{self.what} {self.digest}: size {self.size} does not match descriptor size {self.expect_size}")
        if self._hash.hexdigest() != self._enc:
            raise ImageError(f"{self.what} {self.digest}: digest mismatch (content is "
                             f"{self.digest.partition(':')[0]}:{self._hash.hexdigest()})")
