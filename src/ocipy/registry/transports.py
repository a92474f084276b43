"""The registry as a content store: a ``docker://`` source and destination
(:mod:`ocipy.content.store` describes the interface), over :class:`RegistryClient`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import Any

from ocipy.content.reference import DockerReference
from ocipy.content.store import Descriptor, FileSink, ImageSource, Progress, Sink
from ocipy.errors import ImageError, RegistryError
from ocipy.registry.client import RegistryClient, referrers_tag
from ocipy.spec import image as spec
from ocipy.spec.digest import of_bytes as digest_of

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

    def list_tags(self) -> list[str]:
        return self.client.list_tags(self.ref.repository)

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
            doc = spec.load_json(data, "manifest")
        except ImageError:
            return
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if isinstance(subject, dict) and isinstance(subject.get("digest"), str) \
                and not resp.headers.get("OCI-Subject"):
            self._update_referrers_tag(subject["digest"], doc, data, media_type)

    def _update_referrers_tag(self, subject: str, doc: dict[str, Any], data: bytes, media_type: str) -> None:
        """distribution-spec "Pushing Manifests with Subject" without a referrers API."""
        repo = self.ref.repository
        tag = referrers_tag(subject)
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": []}
        if self.client.head_manifest(repo, tag, accept=(spec.MEDIA_INDEX,)) is not None:
            raw, mt, _ = self.client.get_manifest(repo, tag, accept=(spec.MEDIA_INDEX,))
            if mt != spec.MEDIA_INDEX:
                raise RegistryError(f"{self.name}: referrers tag {tag} holds a {mt}, not an image index")
            index = spec.load_json(raw, f"{self.name}: referrers tag {tag}")
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
        self.client.put_manifest(repo, tag, json.dumps(index, separators=(",", ":")).encode(), spec.MEDIA_INDEX)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        with self._tmpdir_lock:
            if self._tmpdir:
                import shutil

                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
        self.client.close()
