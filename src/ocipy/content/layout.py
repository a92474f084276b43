"""``oci:DIR[:TAG|@DIGEST]`` as a content source and destination, over ``ocipy.image.store``.

Blobs go into the layout through the store's writer (temp file in the
layout, fsync, rename) only after their digest and size check out; the tag
is set in index.json last.  The destination holds the layout's exclusive
lock for the whole copy.

Every byte is hashed once: the source verifies the blob while it streams
(``ImageSource.fetch_blob`` raises after the last write unless digest and
size match), so the store's writer takes it without hashing it again
(``VerifiedBlobWriter``) and only renames it into place once ``fetch_blob``
has returned.

Nothing is created at the destination before there is verified content to
write: the layout directory appears with the first blob, and a copy that
fails into a layout it created removes it again (an unreachable registry
leaves no empty layout behind).

Crash safety, with one directory fsync per copy instead of one per blob:
each blob's file is fsynced *before* its rename, so a name under blobs/
always holds the complete content (a crash can lose a rename, never expose
a half-written blob).  The renames are made durable by one fsync of the
blobs/<alg> directories before index.json is replaced (itself temp, fsync,
rename, fsync of the layout directory), so index.json never names a blob
whose entry could vanish in a crash.  That is what fsyncing the directory
after each blob gave, with N-1 fewer directory fsyncs.  The directories are
fsynced even when every blob was already there, in case an earlier copy
died between its renames and its directory fsync.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from ocipy.content.store import (
    Descriptor,
    ImageSource,
    Progress,
    Sink,
    copy_verified,
    manifest_media_type,
)
from ocipy.errors import ImageError
from ocipy.spec import digest as _digest
from ocipy.spec import image as spec


class LayoutSource:
    def __init__(self, path: str, tag: str | None, digest: str | None = None) -> None:
        from ocipy.image.store import Layout

        self.layout = Layout.open(path)
        self.tag = tag
        self.digest = digest
        self.name = f"oci:{path}" + (f"@{digest}" if digest else f":{tag}" if tag else "")
        self._types: dict[str, str] = {}

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        if digest is None and self.digest is None:
            # no lock: index.json is replaced by rename, and a destination in the
            # same layout holds the exclusive one for the whole copy
            desc = self.layout.resolve(self.tag)
            digest, size, declared = desc["digest"], desc.get("size"), desc.get("mediaType")
        else:
            digest = digest or self.digest
            assert digest is not None
            size, declared = None, self._types.get(digest)
        what = f"{self.name}: manifest {digest}"
        data = self.layout.read_blob(digest, size, max_size=spec.MAX_DOCUMENT_SIZE)
        _digest.verify_bytes(data, digest, size, what)
        mt = manifest_media_type(data, declared, what)
        doc = spec.load_json(data, what)
        for child in doc.get("manifests") or [] if isinstance(doc, dict) else []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str) \
                    and isinstance(child.get("mediaType"), str):
                self._types[child["digest"]] = child["mediaType"]
        return data, mt, digest

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        # the store opens it (no symlink, no fifo: a hostile layout cannot hang or redirect the read)
        copy_verified(self.layout.open_blob(desc["digest"]), desc, sink, progress,
                      f"{self.name}: blob {desc['digest']}")

    def local_path(self, desc: Descriptor) -> str | None:
        if not self.layout.has_blob(desc["digest"]):
            return None
        return self.layout.blob_path(desc["digest"])

    def list_tags(self) -> list[str]:
        return [name for name, _ in self.layout.tags()]

    def close(self) -> None:
        pass


class _WriterSink:
    """A store VerifiedBlobWriter (the source verifies) that can start over.

    Every ``WRITEBACK`` bytes the kernel is asked to start writing the new part
    out (``POSIX_FADV_DONTNEED`` starts writeback of dirty pages and, as they are
    still dirty or under writeback, drops none of them), so the fsync before the
    rename finds little left to wait for: the disk works while the download goes
    on (a 16 MB blob's fsync took 25-35 ms at the end before, on this VM's disk).
    """

    WRITEBACK = 4 << 20

    def __init__(self, layout: Any) -> None:
        self.layout = layout
        self.writer = layout.verified_blob_writer()
        self._started = 0  # bytes whose writeback was started

    def write(self, data: bytes, /) -> Any:
        n = self.writer.write(data)
        done = self.writer.size
        if done - self._started >= self.WRITEBACK:
            try:
                os.posix_fadvise(self.writer.file.fd, self._started, done - self._started,
                                 os.POSIX_FADV_DONTNEED)
            except (OSError, AttributeError):
                pass  # only an optimisation; the fsync still makes the blob durable
            self._started = done
        return n

    def reset(self) -> None:
        self.writer.abort()
        self.writer = self.layout.verified_blob_writer()
        self._started = 0


class LayoutDestination:
    # Peers (skopeo, umoci) read only OCI manifests from a layout; Docker ones are converted.
    oci_only = True

    def __init__(self, path: str, tag: str | None, *, durable: bool = True) -> None:
        from ocipy.image.store import Layout

        self.path = os.path.abspath(path)
        self.tag = tag
        self.durable = durable  # False: a scratch layout, nothing fsynced
        self.name = f"oci:{path}" + (f":{tag}" if tag else "")
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._created: str | None = None  # what this copy made, removed again if it fails
        self._committed = False
        self.layout: Any = None
        if os.path.exists(os.path.join(self.path, "oci-layout")):
            self._open(Layout.open(path))
        elif os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise ImageError(f"image layout {path}: exists and is not a directory")

    def _open(self, layout: Any) -> None:
        self.layout = layout
        self._stack.enter_context(layout.lock())

    def _ensure(self) -> Any:
        """The layout, created on the first write (and only then)."""
        with self._lock:
            if self.layout is None:
                from ocipy.image.store import Layout

                existed = os.path.isdir(self.path)
                layout = Layout.init(self.path, exist_ok=True)
                self._created = "contents" if existed else "directory"
                self._open(layout)
            return self.layout

    def has_blob(self, desc: Descriptor) -> bool:
        if self.layout is None:
            return False
        return bool(self.layout.has_blob(desc["digest"], desc.get("size")))

    def try_mount(self, desc: Descriptor, source: ImageSource) -> bool:
        return False

    def put_blob(self, desc: Descriptor, source: ImageSource, progress: Progress | None = None) -> None:
        layout = self._ensure()
        sink = _WriterSink(layout)
        try:
            source.fetch_blob(desc, sink, progress)  # raises unless digest and size match
            sink.writer.commit_verified(desc["digest"], desc["size"], sync=self.durable, sync_dir=False)
        finally:
            sink.writer.abort()

    def put_manifest(self, data: bytes, media_type: str, digest: str) -> None:
        _digest.verify_bytes(data, digest, None, f"{self.name}: manifest {digest}")
        layout = self._ensure()
        if layout.has_blob(digest, len(data)):
            return
        w = layout.verified_blob_writer()
        try:
            w.write(data)
            w.commit_verified(digest, len(data), sync=self.durable, sync_dir=False)
        finally:
            w.abort()

    def put_top(self, data: bytes, media_type: str, digest: str) -> None:
        self.put_manifest(data, media_type, digest)
        if self.durable:
            self.layout.sync_blob_dirs()  # every rename durable before index.json names them
        desc: Descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if self.tag:
            desc["annotations"] = {spec.ANNOTATION_REF_NAME: self.tag}

        def change(index: dict[str, Any]) -> None:
            kept = []
            for d in index.get("manifests", []):
                name = (d.get("annotations") or {}).get(spec.ANNOTATION_REF_NAME)
                if self.tag and name == self.tag:
                    continue
                if not self.tag and name is None and d.get("digest") == digest:
                    continue
                kept.append(d)
            kept.append(desc)
            index["manifests"] = kept

        self.layout.update_index(change)

    def commit(self) -> None:
        self._committed = True

    def close(self) -> None:
        self._stack.close()
        if self._created and not self._committed:
            self._remove_created()

    def _remove_created(self) -> None:
        import shutil

        if self._created == "directory":
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in ("oci-layout", "index.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.path, name))
        shutil.rmtree(os.path.join(self.path, "blobs"), ignore_errors=True)
