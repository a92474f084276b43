"""The store: pulled images by name (podman's image store, on an OCI layout).

Names are fully qualified docker references (``docker.io/library/busybox:latest``,
``localhost:5000/app:1``); :meth:`Store.find` resolves a short name (``busybox``,
``app:1``) the way podman does, but only where it is unambiguous.  An image
pulled from a layout or an archive is named ``localhost/BASENAME:TAG`` (podman's
``localhost/`` prefix for images that came from no registry).

Locking: everything that reads or adds takes ``ROOT/lock`` shared; ``prune``
and ``rm`` take it exclusively, so a prune never removes a blob or snapshot
that a concurrent pull or run is about to use.  Adding a name rewrites the
content layout's index.json under that layout's own exclusive lock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ocipy.errors import ImageError

DEFAULT_ROOT = "/var/lib/ocipy/storage"
PULL_POLICIES = ("missing", "always", "never", "newer")

Progress = Callable[[str, int, int], None]


def default_root() -> str:
    """``OCIPY_STORAGE``, else root's /var/lib/ocipy/storage, else the user's data dir."""
    env = os.environ.get("OCIPY_STORAGE")
    if env:
        return os.path.abspath(env)
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "ocipy", "storage")


class StoredImage:
    """One name in the store and the descriptor (in content/index.json) it names."""

    __slots__ = ("name", "descriptor")

    def __init__(self, name: str, descriptor: dict[str, Any]) -> None:
        self.name = name
        self.descriptor = descriptor

    @property
    def digest(self) -> str:
        return str(self.descriptor["digest"])

    def __repr__(self) -> str:
        return f"StoredImage({self.name!r}, {self.digest})"


def _lower_name(text: str) -> str:
    """A docker repository component made of `text` (lower case, [a-z0-9._-])."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return re.sub(r"[-._]{2,}", "-", name) or "image"


def name_for(ref: Any) -> str:
    """The store name an image pulled from the parsed reference `ref` gets."""
    from ocipy.content.reference import parse_docker_reference

    if ref.transport == "docker":
        d = ref.docker
        return f"{d.host}/{d.repository}" + (f":{d.tag}" if d.tag else f"@{d.digest}")
    if ref.transport == "docker-archive" and ref.tag and not ref.tag.startswith("@"):
        d = parse_docker_reference(ref.tag)  # docker-archive:FILE:NAME:TAG names its image
        return f"{d.host}/{d.repository}:{d.tag}"
    base = os.path.basename(os.path.normpath(ref.path))
    if ref.transport != "oci":
        base = base.rsplit(".", 1)[0] if "." in base else base
    tag = ref.tag if ref.tag and re.fullmatch(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", ref.tag) else "latest"
    return f"localhost/{_lower_name(base)}:{tag}"


def normalize(text: str) -> str:
    """The fully qualified name of `text` as docker reads it (``busybox`` ->
    ``docker.io/library/busybox:latest``); an ImageError if it is no name."""
    from ocipy.content.reference import parse_docker_reference

    d = parse_docker_reference(text)
    return f"{d.host}/{d.repository}" + (f":{d.tag}" if d.tag else f"@{d.digest}")


def phase_done(progress: Any) -> None:
    """End a progress display (a terminal's bars) when its phase is over."""
    if progress is not None and hasattr(progress, "close"):
        progress.close()


def names_layout(ref: Any) -> bool:
    """Whether the parsed reference `ref` names an OCI layout directory: written
    with ``oci:``, or bare (no transport) and a path (``/…``, ``./…``), an
    existing layout or no valid image name -- any other bare reference
    (``busybox``, ``localhost:5000/app:1``) is a store name."""
    if ref.transport != "oci":
        return False
    if not ref.bare or ref.path.startswith(("/", ".", "~")) or os.path.isfile(os.path.join(ref.path, "oci-layout")):
        return True
    try:
        normalize(ref.text)
    except ImageError:
        return True  # no image name (upper case, say): a layout path, as it always was
    return False


def _has_host(text: str) -> bool:
    first, sep, _ = text.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


class Store:
    """The store at `root` (default :func:`default_root`).  Nothing is created
    on disk until something is added."""

    def __init__(self, root: str | None = None, *, driver: str | None = None) -> None:
        self.root = os.path.abspath(root) if root else default_root()
        if ":" in self.root:
            raise ImageError(f"storage {self.root}: the path must not contain ':'")
        self.content_path = os.path.join(self.root, "content")
        self.snapshots_path = os.path.join(self.root, "snapshots")
        self.containers_path = os.path.join(self.root, "containers")
        self._driver = driver
        self._snapshots: Any = None

    # -- on disk ---------------------------------------------------------------

    def ensure(self) -> None:
        """Make the store's directories (0700: the store holds every image's files)
        and its content layout -- once: two processes making a new store at the
        same time must not both write an empty index.json (the second would drop
        the first one's image), so the layout is made under ``ROOT/lock``
        held exclusively."""
        import fcntl

        from ocipy.image.store import Layout

        try:
            os.makedirs(self.root, 0o700, exist_ok=True)
            for path in (self.snapshots_path, self.containers_path):
                os.makedirs(path, 0o700, exist_ok=True)
        except OSError as e:
            raise ImageError(f"storage {self.root}: {e.strerror or e}") from None
        if self.exists():
            return
        fd = self._lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self.exists():
                try:  # a crash between oci-layout and index.json: start over
                    os.unlink(os.path.join(self.content_path, "oci-layout"))
                except FileNotFoundError:
                    pass
                Layout.init(self.content_path)
        finally:
            os.close(fd)

    def _lock_fd(self) -> int:
        try:
            return os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise ImageError(f"storage {self.root}: lock: {e.strerror or e}") from None

    def exists(self) -> bool:
        """Whether the content layout is complete (index.json is the last file Layout.init writes)."""
        return os.path.exists(os.path.join(self.content_path, "index.json"))

    @contextmanager
    def lock(self, shared: bool = True) -> Iterator[None]:
        """flock ``ROOT/lock`` (creating the store if need be)."""
        import fcntl

        self.ensure()
        fd = self._lock_fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @property
    def content(self) -> Any:
        """The content layout (an :class:`ocipy.image.store.Layout`)."""
        from ocipy.image.store import Layout

        return Layout(self.content_path)

    @property
    def snapshots(self) -> Any:
        """The layer snapshots (:class:`ocipy.storage.snapshots.Snapshots`)."""
        if self._snapshots is None:
            from ocipy.storage.snapshots import Snapshots

            self.ensure()
            self._snapshots = Snapshots(self.snapshots_path, self._driver)
        return self._snapshots

    # -- names -----------------------------------------------------------------

    def names(self) -> list[StoredImage]:
        if not self.exists():
            return []
        return [StoredImage(name, desc) for name, desc in self.content.tags()]

    def find(self, text: str) -> StoredImage | None:
        """The image `text` names: a full name, a short one that matches one stored
        name (``app:1`` -> ``localhost:5000/app:1``), or a digest (prefix) of one."""
        stored = self.names()
        if not stored:
            return None
        if re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", text):
            hexpart = text.removeprefix("sha256:")
            hits = {s.digest: s for s in stored if s.digest.removeprefix("sha256:").startswith(hexpart)}
            if len(hits) == 1:
                return next(iter(hits.values()))
        try:
            full = normalize(text)
        except ImageError:
            return None
        for s in stored:
            if s.name == full:
                return s
        if _has_host(text):
            return None
        # a short name: the repository's last components and the tag as typed
        repo, _, tag = full.partition("/")[2].partition(":")
        short_repo = repo.removeprefix("library/")
        matches = [s for s in stored if _short_match(s.name, short_repo, tag)]
        if len(matches) > 1:
            raise ImageError(f"image {text!r} is ambiguous in the store: it may be any of "
                             + ", ".join(sorted(m.name for m in matches)) + " (give the full name)")
        return matches[0] if matches else None

    def get(self, text: str) -> StoredImage:
        found = self.find(text)
        if found is None:
            raise ImageError(f"image {text!r}: not in the store {self.root} (`ocipy image pull` it)")
        return found

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
        from ocipy import api_registry

        ref = self.source_reference(ref_text)
        target = name or name_for(ref)
        with self.lock():
            api_registry.copy(str(ref), f"oci:{self.content_path}:{target}", platform=platform,
                              src_options=options, progress=progress)
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
        if ref.transport == "oci" and not names_layout(ref):
            return reference.parse("docker://" + text)
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


def _short_match(name: str, short_repo: str, tag: str) -> bool:
    repo_tag = name.partition("/")[2] if _has_host(name) else name
    repo, sep, have_tag = repo_tag.partition(":")
    if not sep or have_tag != tag:
        return False
    return repo == short_repo or repo.endswith("/" + short_repo) or repo == "library/" + short_repo
