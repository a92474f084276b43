"""``oci-archive:FILE[:TAG]`` and ``docker-archive:FILE[:NAME:TAG]`` as copy sources and
destinations, over ``ocipy.image.archive``.

* An oci-archive source is extracted (its layout members only) into a temp
  directory and read as an ``oci:`` layout: every blob is verified when read.
* A docker-archive source is read in place.  Its image becomes a Docker
  schema2 manifest, as skopeo makes it: the config's bytes as they are, and
  each uncompressed layer tar with its digest, which is the config's
  ``diff_id``, so the layer is verified against the config as it streams.
  (A compressed layer, which newer ``docker save`` may write, is hashed once
  to name it, and verified again when copied.)
* A destination collects the image in a temp layout next to the target file
  (through ``LayoutDestination``: verified blobs only), and ``commit`` writes
  the archive with ``export_oci_archive`` / ``export_docker_archive``: a temp
  file, fsync, rename.  A failed copy leaves neither the archive nor the temp
  layout behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import threading
from typing import Any

from ocipy.content.layout import LayoutDestination, LayoutSource
from ocipy.content.reference import ImageReference
from ocipy.content.store import (
    READ_CHUNK,
    Descriptor,
    ImageDestination,
    ImageSource,
    Progress,
    Sink,
)
from ocipy.errors import ImageError
from ocipy.spec import image as spec
from ocipy.spec.digest import Verifier
from ocipy.spec.digest import of_bytes as digest_of

DOCKER_CONFIG = spec.DOCKER_CONFIG
DOCKER_LAYER = spec.DOCKER_LAYER
DOCKER_LAYER_GZIP = spec.DOCKER_LAYER_GZIP
OCI_LAYER_ZSTD = spec.MEDIA_LAYER_ZSTD
_COMPRESSED_ARCHIVE = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ")


def open_archive_source(ref: ImageReference) -> ImageSource:
    if ref.transport == "oci-archive":
        return OciArchiveSource(ref)
    return DockerArchiveSource(ref)


def open_archive_destination(ref: ImageReference) -> ImageDestination:
    return ArchiveDestination(ref)


# ------------------------------------------------------------------ sources


class OciArchiveSource(LayoutSource):
    def __init__(self, ref: ImageReference) -> None:
        from ocipy.image.archive import extract_oci_archive

        if not os.path.isfile(ref.path):
            raise ImageError(f"{ref}: no such archive file {ref.path}")
        self._tmp = tempfile.mkdtemp(prefix="ocipy-oci-archive-")
        try:
            extract_oci_archive(ref.path, self._tmp)
            super().__init__(self._tmp, ref.tag)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        self.name = str(ref)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


class DockerArchiveSource:
    """One image of a ``docker save`` archive, read in place."""

    def __init__(self, ref: ImageReference) -> None:
        from ocipy.image.archive import docker_archive_image

        self.path = ref.path
        self.name = str(ref)
        try:
            with open(ref.path, "rb") as f:
                head = f.read(6)
            self._tf = tarfile.open(ref.path, "r:*")
        except (OSError, tarfile.TarError) as e:
            raise ImageError(f"{self.name}: cannot read: {e}") from None
        # Members of a plain tar are read in parallel with pread; anything else
        # (a compressed archive, links) through the one TarFile, serialized.
        self._plain = not head.startswith(_COMPRESSED_ARCHIVE)
        self._lock = threading.Lock()
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            entry, config_bytes, _config = docker_archive_image(self._tf, ref.path, ref.tag)
            self._config = config_bytes
            diff_ids: list[str] = _config["rootfs"]["diff_ids"]
            layers: list[Descriptor] = []
            for i, name in enumerate(entry["Layers"]):
                if not isinstance(name, str):
                    raise ImageError(f"{self.name}: manifest.json: Layers[{i}] is not a file name")
                layers.append(self._layer(name, diff_ids[i]))
        except tarfile.TarError as e:
            self._tf.close()
            raise ImageError(f"{self.name}: corrupt archive: {e}") from None
        except BaseException:
            self._tf.close()
            raise
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": spec.MEDIA_MANIFEST if any(d["mediaType"] == OCI_LAYER_ZSTD for d in layers)
            else spec.DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config_bytes), "digest": digest_of(config_bytes)},
            "layers": layers,
        }
        if manifest["mediaType"] == spec.MEDIA_MANIFEST:
            manifest["config"]["mediaType"] = spec.MEDIA_CONFIG
            for d in layers:
                d["mediaType"] = spec.DOCKER_TO_OCI.get(d["mediaType"], d["mediaType"])
        self._manifest = json.dumps(manifest, separators=(",", ":")).encode()
        self._tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        self._digest = digest_of(self._manifest)

    def _member(self, name: str) -> tarfile.TarInfo:
        try:
            member = self._tf.getmember(name)
        except KeyError:
            raise ImageError(f"{self.name}: layer {name!r} is missing from the archive") from None
        if not (member.isreg() or member.issym() or member.islnk()):
            raise ImageError(f"{self.name}: layer {name!r} is not a file")
        return member

    def _layer(self, name: str, diff_id: str) -> Descriptor:
        member = self._member(name)
        head = self._read_head(member)
        desc: Descriptor
        if head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd":
            # Compressed: its digest is not the diff_id; hash it once to name it.
            v = _Hasher(diff_id.partition(":")[0])
            self._stream(member, v, None)
            desc = {"mediaType": DOCKER_LAYER_GZIP if head[:2] == b"\x1f\x8b" else OCI_LAYER_ZSTD,
                    "size": v.size, "digest": v.digest()}
        else:
            desc = {"mediaType": DOCKER_LAYER, "size": self._size(member), "digest": diff_id}
        self._members[desc["digest"]] = member
        return desc

    def _direct(self, member: tarfile.TarInfo) -> bool:
        return self._plain and member.isreg() and not member.issparse()

    def _size(self, member: tarfile.TarInfo) -> int:
        if self._direct(member):
            return member.size
        with self._lock:
            f = self._tf.extractfile(member)
            if f is None:
                raise ImageError(f"{self.name}: layer {member.name!r} is not a file")
            return f.seek(0, os.SEEK_END)

    def _read_head(self, member: tarfile.TarInfo) -> bytes:
        class _First:
            data = b""

            def write(self, b: bytes, /) -> int:
                self.data += b
                raise _Enough

        first = _First()
        try:
            self._stream(member, first, None, limit=4)
        except _Enough:
            pass
        return first.data[:4]

    def _stream(self, member: tarfile.TarInfo, sink: Any, progress: Progress | None, limit: int = READ_CHUNK) -> None:
        if self._direct(member):
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                offset, end = member.offset_data, member.offset_data + member.size
                while offset < end:
                    chunk = os.pread(fd, min(limit, end - offset), offset)
                    if not chunk:
                        raise ImageError(f"{self.name}: layer {member.name!r} is truncated")
                    offset += len(chunk)
                    sink.write(chunk)
                    if progress:
                        progress(len(chunk))
            finally:
                os.close(fd)
            return
        with self._lock:
            f = self._tf.extractfile(member)
            if f is None:
                raise ImageError(f"{self.name}: layer {member.name!r} is not a file")
            while True:
                chunk = f.read(limit)
                if not chunk:
                    return
                sink.write(chunk)
                if progress:
                    progress(len(chunk))

    def get_manifest(self, digest: str | None = None) -> tuple[bytes, str, str]:
        if digest is not None and digest != self._digest:
            raise ImageError(f"{self.name}: no manifest {digest} (the archive's image is {self._digest})")
        mt = json.loads(self._manifest)["mediaType"]
        return self._manifest, mt, self._digest

    def fetch_blob(self, desc: Descriptor, sink: Sink, progress: Progress | None = None) -> None:
        what = f"{self.name}: blob {desc['digest']}"
        v = Verifier(desc["digest"], desc.get("size"), what)
        if desc["digest"] == digest_of(self._config, desc["digest"].partition(":")[0]):
            v.update(self._config)
            sink.write(self._config)
            v.finish()
            return
        member = self._members.get(desc["digest"])
        if member is None:
            raise ImageError(f"{what}: not in the archive")

        class _Verified:
            def write(self, chunk: bytes, /) -> Any:
                v.update(chunk)
                return sink.write(chunk)

        try:
            self._stream(member, _Verified(), progress)
        except tarfile.TarError as e:
            raise ImageError(f"{what}: corrupt archive: {e}") from None
        v.finish()

    def local_path(self, desc: Descriptor) -> str | None:
        return None

    def list_tags(self) -> list[str]:
        return list(self._tags)

    def close(self) -> None:
        self._tf.close()


class _Enough(Exception):
    pass


class _Hasher:
    def __init__(self, algorithm: str) -> None:
        from ocipy.spec.digest import hasher

        self.algorithm = algorithm
        self._h = hasher(algorithm)
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self._h.update(data)
        self.size += len(data)
        return len(data)

    def digest(self) -> str:
        return f"{self.algorithm}:{self._h.hexdigest()}"


# ------------------------------------------------------------- destinations


class ArchiveDestination(LayoutDestination):
    """Collect the image in a temp layout beside the target (made on the first
    write); write the archive on commit (temp file, fsync, rename)."""

    def __init__(self, ref: ImageReference) -> None:
        self.ref = ref
        self._directory = os.path.dirname(os.path.abspath(ref.path))
        if not os.path.isdir(self._directory):
            raise ImageError(f"{ref}: directory {self._directory} does not exist")
        if os.path.isdir(ref.path):
            raise ImageError(f"{ref}: {ref.path} is a directory")
        self._tmp: str | None = None
        # A scratch layout: no fsync (the archive is fsynced before its rename).
        super().__init__(os.path.join(self._directory, ".ocipy-unused"), None, durable=False)
        self.name = str(ref)
        self._top: Descriptor | None = None

    def _ensure(self) -> Any:
        with self._lock:
            if self._tmp is None:
                from ocipy.fsutil import TMP_PREFIX

                self._tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self._directory)
                self.path = self._tmp
        return super()._ensure()

    def put_top(self, data: bytes, media_type: str, digest: str) -> None:
        if self.ref.transport == "docker-archive" and media_type not in spec.MANIFEST_TYPES:
            raise ImageError(f"{self.name}: a docker-archive holds one image, not an index "
                             "(copy without --all, or choose one with --platform)")
        self.put_manifest(data, media_type, digest)
        self._top = {"mediaType": media_type, "digest": digest, "size": len(data)}

    def commit(self) -> None:
        from ocipy.image import archive

        if self._top is None:
            raise ImageError(f"{self.name}: nothing to write")
        if self.ref.transport == "oci-archive":
            archive.export_oci_archive(self.layout, self._top, self.ref.path, self.ref.tag)
        else:
            archive.export_docker_archive(self.layout, self._top, self.ref.path, self.ref.tag)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
