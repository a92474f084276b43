"""Copy an image from a source to a destination.

The top manifest is read first.  An index is copied whole with
``all_platforms``; otherwise the manifest for one platform (the host's, or
``platform``) is chosen and becomes the destination's top manifest, as skopeo
does.  Copy is "walk a source into a destination": the graph below the top
is walked once (:func:`ocipy.content.walk.walk`, every document verified and
validated), then every blob of it -- all platforms of an index at once -- is
copied in parallel (bounded), skipped when the destination already has it,
mounted across repositories of one registry when it can, and recompressed on
request.  Manifests go last, children before indexes (rewritten when a
layer's digest or a Docker type changed), so a destination never names
content it does not hold.  ``progress`` (:mod:`ocipy.content.progress`) is
told each blob's bytes as they move, and when it is done or was there already.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from ocipy.content.progress import BlobProgress, ProgressCallback
from ocipy.content.store import Descriptor, ImageDestination, ImageSource, LocalFileSource
from ocipy.content.walk import MAX_INDEX_DEPTH, is_document, walk
from ocipy.errors import ImageError
from ocipy.spec import image as spec
from ocipy.spec.digest import of_bytes as digest_of

MANIFEST_TYPES = spec.MANIFEST_TYPES
INDEX_TYPES = spec.INDEX_TYPES
MAX_WORKERS = 6
MAX_DOCUMENTS = 10000  # manifests and indexes in one copy (a hostile source could serve endless ones)
COMPRESSIONS = ("gzip", "zstd")


def _json(data: bytes, what: str) -> dict[str, Any]:
    doc = spec.load_json(data, what)
    if not isinstance(doc, dict):
        raise ImageError(f"{what}: not a JSON object")
    return doc


def _descriptor(value: Any, where: str) -> Descriptor:
    spec.validate_descriptor(value, where)
    from ocipy.spec.digest import parse_verifiable

    parse_verifiable(value["digest"], f"{where}.digest")
    return value  # type: ignore[no-any-return]


class _Compressor:
    """Recompress one layer into a temp file; returns its new descriptor."""

    def __init__(self, target: str, workdir: str) -> None:
        self.target = target
        self.workdir = workdir

    def convert(self, source: ImageSource, desc: Descriptor, current: str,
                progress: Callable[[int], None] | None = None) -> tuple[Descriptor, str]:
        from ocipy.spec.digest import hasher

        raw_fd, raw_path = tempfile.mkstemp(dir=self.workdir)
        out_fd, out_path = tempfile.mkstemp(dir=self.workdir)
        try:
            from ocipy.content.store import FileSink

            with os.fdopen(raw_fd, "w+b") as raw:
                local = source.local_path(desc)
                if local is not None:
                    # Verify the local file while it is read below.
                    LocalFileSource(local).fetch_blob(desc, FileSink(raw), progress)
                else:
                    source.fetch_blob(desc, FileSink(raw), progress)
                raw.seek(0)
                h = hasher("sha256")
                size = 0
                with os.fdopen(out_fd, "wb") as out:
                    class _Hashing:
                        def write(self, data: bytes) -> int:
                            nonlocal size
                            h.update(data)
                            size += len(data)
                            out.write(data)
                            return len(data)

                        def flush(self) -> None:
                            pass

                    sink = _Hashing()
                    from ocipy.image.layers import compression  # the one compression table

                    codec = compression.sniff(raw.read(4))
                    raw.seek(0)
                    reader = compression.DecompressedReader(raw, codec, "layer")
                    writer = compression.CompressingWriter(sink, compression.get(self.target))
                    shutil.copyfileobj(reader, writer, 1 << 20)
                    writer.close()
            os.unlink(raw_path)
            new = dict(desc)
            new["digest"] = "sha256:" + h.hexdigest()
            new["size"] = size
            new.pop("urls", None)
            return new, out_path
        except BaseException:
            for p in (raw_path, out_path):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            raise


class Copier:
    def __init__(self, source: ImageSource, dest: ImageDestination, *, all_platforms: bool = False,
                 platform: dict[str, str] | None = None, compress: str | None = None,
                 progress: ProgressCallback | None = None, workers: int = MAX_WORKERS) -> None:
        if compress is not None and compress not in COMPRESSIONS:
            raise ImageError(f"--dest-compress: {compress!r} is not one of {', '.join(COMPRESSIONS)}")
        self.src = source
        self.dst = dest
        self.all_platforms = all_platforms
        self.platform = platform
        self.compress = compress
        self.progress = progress  # called per blob: (digest, done, total), see ocipy.content.progress
        self.workers = max(1, workers)
        self._done: dict[str, Descriptor] = {}  # source digest -> descriptor at the destination
        self._lock = threading.Lock()
        self._workdir: str | None = None
        self._oci_only = bool(getattr(dest, "oci_only", False))
        self._manifests: dict[str, tuple[bytes, str, str]] = {}

    # -- blobs -------------------------------------------------------------

    def _copy_blob(self, desc: Descriptor) -> Descriptor:
        conv = self._conversion(desc)
        bar = BlobProgress(self.progress, desc["digest"], desc.get("size") or 0)
        if conv is None:
            if self.dst.has_blob(desc) or self.dst.try_mount(desc, self.src):
                bar.skipped()
                return desc
            bar.start()
            self.dst.put_blob(desc, self.src, bar.add if self.progress else None)
            bar.finish()
            return desc
        if self._workdir is None:
            with self._lock:
                if self._workdir is None:
                    self._workdir = tempfile.mkdtemp(prefix="ocipy-copy-")
        # the source's layer is what is reported: reading it is most of the work
        bar.start()
        new, path = _Compressor(conv[1], self._workdir).convert(self.src, desc, conv[0],
                                                                bar.add if self.progress else None)
        try:
            new["mediaType"] = self._converted_type(desc["mediaType"], conv[1])
            if not self.dst.has_blob(new):
                self.dst.put_blob(new, LocalFileSource(path), None)
            bar.finish()
            return new
        finally:
            os.unlink(path)

    def _conversion(self, desc: Descriptor) -> tuple[str, str] | None:
        """(current compression, target) when the layer must be recompressed."""
        if self.compress is None:
            return None
        kind = spec.LAYER_TYPES.get(desc.get("mediaType", ""))
        if kind is None or not kind[2] or kind[1] == self.compress:
            return None  # not a layer, non-distributable, or already so
        return kind[1], self.compress

    @staticmethod
    def _converted_type(media_type: str, target: str) -> str:
        return spec.layer_with_compression(media_type, target)

    def _copy_blobs(self, descs: list[Descriptor]) -> list[Descriptor]:
        """Copy each distinct blob once (in parallel); return the destination descriptors."""
        todo: dict[str, Descriptor] = {}
        for d in descs:
            if d["digest"] not in self._done and d["digest"] not in todo:
                todo[d["digest"]] = d
        if len(todo) <= 1 or self.workers == 1:
            for digest, d in todo.items():
                self._done[digest] = self._copy_blob(d)
        else:
            self._parallel(list(todo.items()))
        out = []
        for d in descs:
            new = dict(d)
            got = self._done[d["digest"]]
            new.update({"digest": got["digest"], "size": got["size"], "mediaType": got["mediaType"]})
            if got is not d and "urls" in new and got["digest"] != d["digest"]:
                new.pop("urls")
            out.append(new)
        return out

    def _parallel(self, items: list[tuple[str, Descriptor]]) -> None:
        """Copy ``items`` on up to ``workers`` threads (plain threads: concurrent.futures
        costs ~7 ms of start-up).  After a failure no new blob is started; the
        running ones finish; the first error is raised."""
        lock = threading.Lock()
        pending = iter(items)
        errors: list[BaseException] = []

        def worker() -> None:
            while True:
                with lock:
                    if errors:
                        return
                    item = next(pending, None)
                if item is None:
                    return
                try:
                    got = self._copy_blob(item[1])
                except BaseException as e:  # noqa: BLE001 - reported by the caller
                    with lock:
                        errors.append(e)
                    return
                with lock:
                    self._done[item[0]] = got

        threads = [threading.Thread(target=worker, name=f"ocipy-blob-{i}", daemon=True)
                   for i in range(min(self.workers, len(items)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    # -- manifests ---------------------------------------------------------

    def _copy_manifest(self, data: bytes, media_type: str, digest: str, what: str) -> tuple[bytes, str, str]:
        """Copy an image manifest's blobs; return the (maybe rewritten) manifest to store."""
        doc = _json(data, what)
        config = _descriptor(doc.get("config"), f"{what}.config")
        layers_raw = doc.get("layers")
        if not isinstance(layers_raw, list):
            raise ImageError(f"{what}.layers: not a list")
        layers = [_descriptor(x, f"{what}.layers[{i}]") for i, x in enumerate(layers_raw)]
        # Foreign/non-distributable layers with urls stay where they are, as skopeo does.
        copyable = [d for d in layers if not d.get("urls")]
        new_all = self._copy_blobs([config] + copyable)
        new_config, new_copyable = new_all[0], new_all[1:]
        it = iter(new_copyable)
        new_layers = [next(it) if not d.get("urls") else d for d in layers]
        # zstd has no Docker schema2 media type, and OCI layouts take OCI manifests
        # (as skopeo does): such images become OCI images.
        to_oci = media_type == spec.DOCKER_MANIFEST and (
            self._oci_only or any(d["mediaType"].startswith(spec.MEDIA_LAYER) for d in new_layers))
        if not to_oci and all(n["digest"] == o["digest"] and n["mediaType"] == o["mediaType"]
                              for n, o in zip(new_all, [config] + copyable, strict=True)):
            return data, media_type, digest
        new_doc = dict(doc)
        new_doc["layers"] = new_layers
        new_doc["config"] = new_config
        if to_oci:
            media_type = spec.MEDIA_MANIFEST
            new_doc["mediaType"] = spec.MEDIA_MANIFEST
            for d in [new_config, *new_layers]:
                d["mediaType"] = spec.DOCKER_TO_OCI.get(d["mediaType"], d["mediaType"])
        new_data = json.dumps(new_doc, separators=(",", ":")).encode()
        return new_data, media_type, digest_of(new_data)

    def _copy_index(self, data: bytes, media_type: str, digest: str, what: str,
                    depth: int = 0) -> tuple[bytes, str, str]:
        if depth > MAX_INDEX_DEPTH:
            raise ImageError(f"{what}: indexes nested too deeply")
        doc = _json(data, what)
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ImageError(f"{what}.manifests: not a list")
        changed = False
        new_entries = []
        for i, raw in enumerate(entries):
            d = _descriptor(raw, f"{what}.manifests[{i}]")
            cdata, cmt, cdigest = self._get_manifest(d["digest"])
            _check_size(cdata, d, f"{what}.manifests[{i}]")
            cwhat = f"manifest {cdigest}"
            if cmt in INDEX_TYPES:
                ndata, nmt, ndigest = self._copy_index(cdata, cmt, cdigest, cwhat, depth + 1)
            elif cmt in MANIFEST_TYPES:
                ndata, nmt, ndigest = self._copy_manifest(cdata, cmt, cdigest, cwhat)
            else:
                raise ImageError(f"{cwhat}: unsupported media type {cmt!r}")
            self.dst.put_manifest(ndata, nmt, ndigest)
            if ndigest != cdigest:
                changed = True
                d = dict(d)
                d.update({"digest": ndigest, "size": len(ndata), "mediaType": nmt})
            new_entries.append(d)
        to_oci = media_type == spec.DOCKER_MANIFEST_LIST and (
            self._oci_only or any(e["mediaType"] == spec.MEDIA_MANIFEST for e in new_entries))
        if not changed and not to_oci:
            return data, media_type, digest
        new_doc = dict(doc)
        new_doc["manifests"] = new_entries
        if to_oci:
            media_type = spec.MEDIA_INDEX
            new_doc["mediaType"] = spec.MEDIA_INDEX
        new_data = json.dumps(new_doc, separators=(",", ":")).encode()
        return new_data, media_type, digest_of(new_data)

    def _get_manifest(self, digest: str) -> tuple[bytes, str, str]:
        """The source's manifest `digest` (each asked for once: the walk read them all)."""
        got = self._manifests.get(digest)
        if got is None:
            got = self._manifests[digest] = self.src.get_manifest(digest)
        return got

    def _copy_graph_blobs(self, data: bytes, media_type: str, digest: str) -> None:
        """Walk the image graph from the top (the one walker: every document read,
        verified and validated on the way) and copy all its blobs -- of every
        platform, for an index -- in one parallel pool, before any manifest."""
        self._manifests[digest] = (data, media_type, digest)

        def read(desc: Descriptor) -> dict[str, Any]:
            if len(self._manifests) > MAX_DOCUMENTS:
                raise ImageError(f"{self.src.name}: more than {MAX_DOCUMENTS} manifests in one image")
            cdata, cmt, cdigest = self._get_manifest(desc["digest"])
            _check_size(cdata, desc, f"{self.src.name}: manifest {desc['digest']}")
            return spec.parse_document(cdata, {"mediaType": cmt, "digest": cdigest},
                                       f"{self.src.name}: manifest {cdigest}")

        top: Descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        # foreign/non-distributable layers with urls stay where they are, as skopeo does
        blobs = [d for d in walk(read, [top]) if not is_document(d) and not d.get("urls")]
        self._copy_blobs(blobs)

    def run(self) -> str:
        """Copy; returns the digest of the manifest the destination now names."""
        try:
            data, media_type, digest = self.src.get_manifest(None)
            what = f"{self.src.name}: manifest {digest}"
            depth = 0
            while media_type in INDEX_TYPES and not self.all_platforms:  # the platform rule
                depth += 1
                if depth > MAX_INDEX_DEPTH:
                    raise ImageError(f"{what}: indexes nested too deeply")
                index = spec.validate_index(_json(data, what), what)
                chosen = spec.choose_platform(index["manifests"], self.platform, what)
                data, media_type, digest = self.src.get_manifest(chosen["digest"])
                _check_size(data, chosen, what)
                what = f"{self.src.name}: manifest {digest}"
            self._copy_graph_blobs(data, media_type, digest)
            if media_type in INDEX_TYPES:
                data, media_type, digest = self._copy_index(data, media_type, digest, what)
            elif media_type in MANIFEST_TYPES:
                data, media_type, digest = self._copy_manifest(data, media_type, digest, what)
            else:
                raise ImageError(f"{what}: unsupported manifest media type {media_type!r}")
            self.dst.put_top(data, media_type, digest)
            self.dst.commit()
            return digest
        finally:
            if self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)


def _check_size(data: bytes, desc: Descriptor, what: str) -> None:
    if desc.get("size") is not None and len(data) != desc["size"]:
        raise ImageError(f"{what}: manifest {desc['digest']} is {len(data)} bytes, descriptor says {desc['size']}")


def copy(source: ImageSource, dest: ImageDestination, **kw: Any) -> str:
    return Copier(source, dest, **kw).run()


__all__ = ["Copier", "copy"]
