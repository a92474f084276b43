"""``oci:DIR[:TAG]`` as a copy source and destination, over ``ocipy.image.store``.

Blobs go into the layout through the store's writer (temp file in the
layout, fsync, rename) only after their digest and size check out; the tag
is set in index.json last.  The destination holds the layout's exclusive
lock for the whole copy.

Every byte is hashed once: the source verifies the blob while it streams
(``ImageSource.fetch_blob`` raises after the last write unless digest and
size match), so the store's writer takes it without hashing it again
(``VerifiedBlobWriter``) and only renames it into place once ``fetch_blob``
has returned.

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
import json
import threading
from typing import Any

from ocipy.errors import ImageError
from ocipy.registry.transports import Descriptor, ImageSource, Progress, Sink, read_verified_file
from ocipy.registry.verify import MAX_MANIFEST_SIZE, digest_of, verify_bytes

REF_NAME = "org.opencontainers.image.ref.name"


def _media_type(data: bytes, declared: str | None, what: str) -> str:
    from ocipy.registry.transports import manifest_media_type

    return manifest_media_type(data, declared, what)


class LayoutSource:
    def __init__(self, path: str, tag: str | None) -> None:
        from ocipy.image.store import Layout

        self.layout = Layout.open(path)
        self.tag = tag
        self.name = f"oci:{path}" + (f":{tag}" if tag else "")
        self._types: dict[str, str] = {}

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        if digest is None:
            with self.layout.lock(shared=True):
                desc = self.layout.resolve(self.tag)
            digest, size, declared = desc["digest"], desc.get("size"), desc.get("mediaType")
        else:
            size, declared = None, self._types.get(digest)
        what = f"{self.name}: manifest {digest}"
        data = self.layout.read_blob(digest, size, max_size=MAX_MANIFEST_SIZE)
        verify_bytes(data, digest, size, what)
        mt = _media_type(data, declared, what)
        try:
            doc = json.loads(data)
            for child in doc.get("manifests") or []:
                if isinstance(child, dict) and isinstance(child.get("digest"), str) \
                        and isinstance(child.get("mediaType"), str):
                    self._types[child["digest"]] = child["mediaType"]
        except (ValueError, AttributeError):
            pass
        return data, mt, digest

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        read_verified_file(self.layout.blob_path(desc["digest"]), desc, sink, progress,
                           f"{self.name}: blob {desc['digest']}")

    def local_path(self, desc: Descriptor) -> str | None:
        path = self.layout.blob_path(desc["digest"])
        import os

        return path if os.path.isfile(path) else None

    def close(self) -> None:
        pass


class _WriterSink:
    """A store VerifiedBlobWriter (the source verifies) that can start over."""

    def __init__(self, layout: Any) -> None:
        self.layout = layout
        self.writer = layout.verified_blob_writer()

    def write(self, data: bytes, /) -> Any:
        return self.writer.write(data)

    def reset(self) -> None:
        self.writer.abort()
        self.writer = self.layout.verified_blob_writer()


class LayoutDestination:
    # Peers (skopeo, umoci) read only OCI manifests from a layout; Docker ones are converted.
    oci_only = True

    def __init__(self, path: str, tag: str | None, *, durable: bool = True) -> None:
        from ocipy.image.store import Layout

        self.layout = Layout.init(path, exist_ok=True)
        self.tag = tag
        self.durable = durable  # False: a scratch layout, nothing fsynced
        self.name = f"oci:{path}" + (f":{tag}" if tag else "")
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(self.layout.lock())
        self._lock = threading.Lock()

    def has_blob(self, desc: Descriptor) -> bool:
        return bool(self.layout.has_blob(desc["digest"]))

    def try_mount(self, desc: Descriptor, source: ImageSource) -> bool:
        return False

    def put_blob(self, desc: Descriptor, source: ImageSource, progress: Progress | None = None) -> None:
        sink = _WriterSink(self.layout)
        try:
            source.fetch_blob(desc, sink, progress)  # raises unless digest and size match
            sink.writer.commit_verified(desc["digest"], desc["size"], sync=self.durable, sync_dir=False)
        finally:
            sink.writer.abort()

    def put_manifest(self, data: bytes, media_type: str, digest: str) -> None:
        if digest != digest_of(data, digest.split(":")[0]):
            raise ImageError(f"{self.name}: manifest digest mismatch for {digest}")
        if self.layout.has_blob(digest):
            return
        w = self.layout.verified_blob_writer()
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
            desc["annotations"] = {REF_NAME: self.tag}

        def change(index: dict[str, Any]) -> None:
            kept = []
            for d in index.get("manifests", []):
                name = (d.get("annotations") or {}).get(REF_NAME)
                if self.tag and name == self.tag:
                    continue
                if not self.tag and name is None and d.get("digest") == digest:
                    continue
                kept.append(d)
            kept.append(desc)
            index["manifests"] = kept

        self.layout.update_index(change)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self._stack.close()
