"""The store's names and directories: what reading an image by name needs.

Names are fully qualified docker references (``docker.io/library/busybox:latest``,
``localhost:5000/app:1``); :meth:`StoreRoot.find` resolves a short name
(``busybox``, ``app:1``) the way podman does, but only where it is
unambiguous.  An image pulled from a layout or an archive is named
``localhost/BASENAME:TAG`` (podman's ``localhost/`` prefix for images that
came from no registry).  :func:`names_layout` is the one rule for what a
bare reference (no transport) names: a layout directory or a store image.

This module sits below the content core (``ocipy.content.store`` opens a
store name through it); pulling, unpacking and pruning are
:mod:`ocipy.storage.store`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocipy.errors import ImageError

DEFAULT_ROOT = "/var/lib/ocipy/storage"


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


class StoreRoot:
    """The store at `root` (default :func:`default_root`): its directories, its
    lock and its names.  Nothing is created on disk until something is added."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root) if root else default_root()
        if ":" in self.root:
            raise ImageError(f"storage {self.root}: the path must not contain ':'")
        self.content_path = os.path.join(self.root, "content")
        self.snapshots_path = os.path.join(self.root, "snapshots")
        self.containers_path = os.path.join(self.root, "containers")

    # -- on disk ---------------------------------------------------------------

    def ensure(self) -> None:
        """Make the store's directories (0700: the store holds every image's files)
        and its content layout -- once: two processes making a new store at the
        same time must not both write an empty index.json (the second would drop
        the first one's image), so the layout is made under ``ROOT/lock``
        held exclusively."""
        import fcntl

        from ocipy.image.store import Layout

        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ImageError(f"storage {self.root}: not a directory")
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


def _short_match(name: str, short_repo: str, tag: str) -> bool:
    repo_tag = name.partition("/")[2] if _has_host(name) else name
    repo, sep, have_tag = repo_tag.partition(":")
    if not sep or have_tag != tag:
        return False
    return repo == short_repo or repo.endswith("/" + short_repo) or repo == "library/" + short_repo
