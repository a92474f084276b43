"""The store: pulled images by name (podman's image store, on an OCI layout).

:class:`Store` adds to :class:`ocipy.storage.names.StoreRoot` (directories,
lock, names) what changes the store: pull (copy, then unpack each layer's
snapshot), tag, remove, prune, and the listing ``ocipy image ls`` shows.

Locking: everything that reads or adds takes ``ROOT/lock`` shared; ``prune``
takes it exclusively, so a prune never removes a blob or snapshot that a
concurrent pull or run is about to use.  Adding a name rewrites the content
layout's index.json under that layout's own exclusive lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ocipy.errors import ImageError
from ocipy.storage.names import (
    DEFAULT_ROOT,
    StoredImage,
    StoreRoot,
    default_root,
    name_for,
    names_layout,
    normalize,
)

__all__ = ["DEFAULT_ROOT", "PULL_POLICIES", "Store", "StoredImage", "default_root", "name_for", "names_layout",
           "normalize", "phase_done"]

PULL_POLICIES = ("missing", "always", "never", "newer")

Progress = Callable[[str, int, int], None]


def phase_done(progress: Any) -> None:
    """End a progress display (a terminal's bars) when its phase is over."""
    if progress is not None and hasattr(progress, "close"):
        progress.close()


class Store(StoreRoot):
    """The store at `root`, with what pulls into it and prunes it."""

    def __init__(self, root: str | None = None, *, driver: str | None = None) -> None:
        super().__init__(root)
        self._driver = driver
        self._snapshots: Any = None

    @property
    def snapshots(self) -> Any:
        """The layer snapshots (:class:`ocipy.storage.snapshots.Snapshots`)."""
        if self._snapshots is None:
            from ocipy.storage.snapshots import Snapshots

            self.ensure()
            self._snapshots = Snapshots(self.snapshots_path, self._driver)
        return self._snapshots

    # -- adding ----------------------------------------------------------------

    def pull(self, ref_text: str, *, platform: str | dict[str, str] | None = None, options: Any = None,
             progress: Progress | None = None, unpack_progress: Progress | None = None,
             name: str | None = None) -> StoredImage:
        """Copy the image `ref_text` (any transport; a bare name is a registry name)
        into the store under `name` (default :func:`name_for`), then unpack its
        layers' snapshots.  Blobs and snapshots already there are not fetched again.
        `progress` sees the blobs' bytes move, `unpack_progress` the layers'
        compressed bytes as they are unpacked; a callback with a ``close()``
        (a :class:`ocipy.content.progress.Reporter`) is closed when its phase ends."""
        from ocipy.content.copy import copy
        from ocipy.content.layout import LayoutDestination
        from ocipy.content.store import open_source
        from ocipy.spec.image import parse_platform

        ref = self.source_reference(ref_text)
        target = name or name_for(ref)
        plat = parse_platform(platform) if isinstance(platform, str) else platform
        with self.lock():
            src = open_source(ref, options)
            try:
                dst = LayoutDestination(self.content_path, target)
                try:
                    copy(src, dst, platform=plat, progress=progress)
                finally:
                    dst.close()
            finally:
                src.close()
            phase_done(progress)
            image = StoredImage(target, self.content.resolve(target))
            if os.geteuid() == 0:  # a user's store keeps the blobs only (see prepare)
                self.prepare(image, platform, unpack_progress)
            phase_done(unpack_progress)
        return image

    def source_reference(self, text: str) -> Any:
        """The reference a pull of `text` reads: transports as written, a bare name
        (``busybox``, ``localhost:5000/app:1``) from its registry."""
        from ocipy.content import reference

        ref = reference.parse(text)
        if ref.transport == "oci" and ref.bare and not (
                ref.path.startswith(("/", ".", "~")) or os.path.isfile(os.path.join(ref.path, "oci-layout"))):
            return reference.parse("docker://" + text)  # a bad name gets the registry grammar's error
        return ref

    def prepare(self, image: StoredImage, platform: str | dict[str, str] | None = None,
                progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """(manifest, config, chain ids) of `image` for `platform`, every layer's
        snapshot unpacked.  Call with the store's lock held.  Root only (see
        :meth:`ocipy.storage.snapshots.Snapshots.prepare`)."""
        from ocipy.spec.image import parse_platform

        plat = parse_platform(platform) if isinstance(platform, str) else platform
        layout = self.content
        _mdesc, manifest = layout.resolve_image(image.descriptor, plat)
        config = layout.read_config(manifest["config"])
        chain = self.snapshots.prepare(layout, manifest, config, progress)
        return manifest, config, chain

    def tag(self, text: str, new_name: str) -> StoredImage:
        """Give the image `text` names another name (``ocipy image tag``)."""
        from ocipy.image import build

        image = self.get(text)
        full = normalize(new_name)
        with self.lock():
            build.set_tag(self.content, full, image.descriptor)
        return StoredImage(full, image.descriptor)

    # -- removing --------------------------------------------------------------

    def remove(self, text: str) -> StoredImage:
        """Remove a name (its blobs and snapshots go at the next prune)."""
        from ocipy.image import build

        image = self.get(text)
        with self.lock():
            build.remove_tag(self.content, image.name)
        return image

    def prune(self) -> dict[str, list[str]]:
        """Remove what no name and no container uses: containers whose container is
        gone, unpacks a crash left, snapshots, then blobs.  Returns what went."""
        from ocipy.storage import containers

        removed: dict[str, list[str]] = {"containers": [], "snapshots": [], "blobs": []}
        if not self.exists():
            return removed
        with self.lock(shared=False):
            removed["containers"] = containers.sweep(self.containers_path)
            snaps = self.snapshots
            snaps.clean_temp()
            keep = self._chains_in_use() | containers.chains_in_use(self.containers_path)
            for chain in snaps.list():
                if chain not in keep:
                    snaps.remove(chain)
                    removed["snapshots"].append(chain)
            removed["blobs"] = self.content.gc()
        return removed

    def _chains_in_use(self) -> set[str]:
        """Chain ids of every image (every platform) the names reach."""
        from ocipy.content.walk import walk
        from ocipy.spec import image as spec

        layout = self.content
        keep: set[str] = set()

        def read(desc: dict[str, Any]) -> dict[str, Any] | None:
            return layout.read_manifest(desc) if layout.has_blob(desc["digest"]) else None

        for desc in walk(read, layout.index()["manifests"]):
            if desc.get("mediaType") not in spec.MANIFEST_TYPES or not layout.has_blob(desc["digest"]):
                continue
            manifest = layout.read_manifest(desc)
            if not layout.has_blob(manifest["config"]["digest"]):
                continue
            config = layout.read_config(manifest["config"])
            keep.update(spec.chain_ids(list(config.get("rootfs", {}).get("diff_ids", []))))
        return keep

    # -- listing ---------------------------------------------------------------

    def images(self) -> list[dict[str, Any]]:
        """What ``ocipy image ls`` shows: name, digest, size, created, per name."""
        out = []
        layout = self.content
        for s in self.names():
            entry: dict[str, Any] = {"name": s.name, "digest": s.digest, "size": None, "created": None}
            try:
                _m, manifest = layout.resolve_image(s.descriptor)
                entry["size"] = sum(int(x.get("size", 0)) for x in manifest["layers"])
                entry["created"] = layout.read_config(manifest["config"]).get("created")
            except ImageError:
                pass  # an image for another platform only: listed without size
            out.append(entry)
        return out
