"""Image sources and destinations: what ``copy`` reads from and writes to.

A source hands out manifests (by digest, or the top one the reference names)
and blobs, always verified against their digest while they stream.  A
destination tells whether it has a blob, takes verified blobs and
manifests, and names the top manifest (tag) when everything else is in.
Registries are here; OCI layouts and archives go through ``ocipy.image``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ocipy.errors import ImageError, RegistryError
from ocipy.registry.client import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MT_OCI_INDEX,
    FileSink,
    RegistryClient,
    Sink,
    referrers_tag,
)
from ocipy.registry.reference import DockerReference
from ocipy.registry.verify import MAX_MANIFEST_SIZE, Verifier, digest_of, verify_bytes

Descriptor = dict[str, Any]
Progress = Callable[[int], None]
READ_CHUNK = 1 << 20


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


def read_verified_file(path: str, desc: Descriptor, sink: Sink, progress: Progress | None,
                       what: str) -> None:
    v = Verifier(desc["digest"], desc.get("size"), what)
    try:
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise ImageError(f"{what}: missing ({path})") from None
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


class LocalFileSource:
    """One verified-on-read local blob file (used for recompressed layers)."""

    name = "local file"

    def __init__(self, path: str) -> None:
        self.path = path

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        raise RegistryError("a local blob file has no manifest")

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        read_verified_file(self.path, desc, sink, progress, f"blob {desc['digest']}")

    def local_path(self, desc: Descriptor) -> str | None:
        return self.path

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ registries


class RegistrySource:
    def __init__(self, ref: DockerReference, client: RegistryClient) -> None:
        self.ref = ref
        self.client = client
        self.name = "docker://" + str(ref)

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        return self.client.get_manifest(self.ref.repository, digest or self.ref.reference)

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        self.client.fetch_blob(self.ref.repository, desc["digest"], desc.get("size"), sink, progress)

    def local_path(self, desc: Descriptor) -> str | None:
        return None

    def close(self) -> None:
        self.client.close()


class RegistryDestination:
    def __init__(self, ref: DockerReference, client: RegistryClient, *,
                 chunk_size: int | None = None) -> None:
        self.ref = ref
        self.client = client
        self.name = "docker://" + str(ref)
        self.chunk_size = chunk_size
        self._tmpdir: str | None = None
        self._tmpdir_lock = threading.Lock()  # put_blob runs in the copier's worker threads

    def has_blob(self, desc: Descriptor) -> bool:
        size = self.client.has_blob(self.ref.repository, desc["digest"])
        return size is not None and (size < 0 or desc.get("size") in (None, size))

    def try_mount(self, desc: Descriptor, source: ImageSource) -> bool:
        if not isinstance(source, RegistrySource) or source.ref.api_host != self.ref.api_host \
                or source.ref.repository == self.ref.repository:
            return False
        try:
            return self.client.mount_blob(self.ref.repository, desc["digest"], source.ref.repository)
        except RegistryError:
            return False

    def _temp(self) -> str:
        with self._tmpdir_lock:  # one directory, however many workers ask at once (close removes it)
            if self._tmpdir is None:
                self._tmpdir = tempfile.mkdtemp(prefix="ocipy-push-")
            return self._tmpdir

    def put_blob(self, desc: Descriptor, source: ImageSource, progress: Progress | None = None) -> None:
        path = source.local_path(desc)
        tmp = None
        try:
            if path is None:
                fd, tmp = tempfile.mkstemp(dir=self._temp())
                with os.fdopen(fd, "w+b") as f:
                    source.fetch_blob(desc, FileSink(f), None)
                path = tmp
            self.client.push_blob(self.ref.repository, desc["digest"], desc["size"], path,
                                  chunk_size=self.chunk_size, progress=progress)
        finally:
            if tmp:
                os.unlink(tmp)

    def put_manifest(self, data: bytes, media_type: str, digest: str) -> None:
        self._put(digest, data, media_type)

    def put_top(self, data: bytes, media_type: str, digest: str) -> None:
        self._put(self.ref.digest or self.ref.tag or digest, data, media_type)

    def _put(self, reference: str, data: bytes, media_type: str) -> None:
        if reference.startswith(("sha256:", "sha512:")) and reference != digest_of(data, reference.split(":")[0]):
            raise RegistryError(f"{self.name}: the manifest's digest is not {reference}")
        resp = self.client.put_manifest(self.ref.repository, reference, data, media_type)
        try:
            doc = json.loads(data)
        except ValueError:
            return
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if isinstance(subject, dict) and isinstance(subject.get("digest"), str) \
                and not resp.headers.get("OCI-Subject"):
            self._update_referrers_tag(subject["digest"], doc, data, media_type)

    def _update_referrers_tag(self, subject: str, doc: dict[str, Any], data: bytes, media_type: str) -> None:
        """distribution-spec "Pushing Manifests with Subject" without a referrers API."""
        repo = self.ref.repository
        tag = referrers_tag(subject)
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
        if self.client.head_manifest(repo, tag, accept=(MT_OCI_INDEX,)) is not None:
            raw, mt, _ = self.client.get_manifest(repo, tag, accept=(MT_OCI_INDEX,))
            if mt != MT_OCI_INDEX:
                raise RegistryError(f"{self.name}: referrers tag {tag} holds a {mt}, not an image index")
            index = json.loads(raw)
        digest = digest_of(data)
        manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
        if any(m.get("digest") == digest for m in manifests):
            return
        entry: Descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        artifact = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
        if artifact:
            entry["artifactType"] = artifact
        if doc.get("annotations"):
            entry["annotations"] = doc["annotations"]
        manifests.append(entry)
        index["manifests"] = manifests
        self.client.put_manifest(repo, tag, json.dumps(index, separators=(",", ":")).encode(), MT_OCI_INDEX)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        with self._tmpdir_lock:
            if self._tmpdir:
                import shutil

                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
        self.client.close()


def manifest_media_type(data: bytes, declared: str | None, what: str) -> str:
    """A manifest's media type from its ``mediaType`` (or its shape), checked against ``declared``."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ImageError(f"{what}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ImageError(f"{what}: not a JSON object")
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        if declared and declared != mt:
            raise ImageError(f"{what}: mediaType {mt!r} does not match the descriptor's {declared!r}")
        return mt
    if declared:
        return declared
    return MT_OCI_INDEX if "manifests" in doc else MANIFEST_ACCEPT[1]


def check_manifest_bytes(data: bytes, digest: str, size: int | None, what: str) -> None:
    if len(data) > MAX_MANIFEST_SIZE:
        raise RegistryError(f"{what}: manifest exceeds the {MAX_MANIFEST_SIZE}-byte limit")
    verify_bytes(data, digest, size, what)


__all__ = ["INDEX_TYPES", "FileSink", "ImageDestination", "ImageSource", "LocalFileSource",
           "RegistryDestination", "RegistrySource", "Sink"]
