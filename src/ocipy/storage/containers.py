"""The store's container directories: ``ROOT/containers/<id>/``.

Each holds one container's bundle (config.json and rootfs/, the overlay of its
image's snapshots) and the overlay's upper/ and work/, plus ``owner.json``:
the container id, the runtime's state directory (``--root``), the image and
the chain ids it uses (so prune keeps those snapshots while it exists).

A directory goes away with its container: the poststop hook :func:`remove`
runs at ``ocipy delete``, ``--rm`` and every failure path.  If the engine was
killed before the container existed, :func:`sweep` (run by ``image prune``
and by every ``image run``) finds a directory whose container is gone and
that no live engine holds (each engine keeps an flock on its directory while
it sets the container up) and removes it.

Importing this module stays cheap: the poststop hook runs it.
"""

from __future__ import annotations

import os

OWNER = "owner.json"


class ContainerDir:
    """A new container directory, flock'ed by this process until :meth:`release`."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, containers_path: str, container_id: str, owner: dict[str, object]) -> ContainerDir:
        import fcntl
        import json

        from ocipy import fsutil
        from ocipy.errors import ContainerExists

        path = os.path.join(containers_path, container_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise ContainerExists(container_id) from None  # the store has a directory for it
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        made = cls(path, fd)
        try:
            # no fsync: after a crash the container is gone and a lost owner.json only
            # makes sweep() remove the directory sooner, which it would anyway
            fsutil.write_file(os.path.join(path, OWNER), json.dumps(owner).encode(), 0o600, sync=False)
        except BaseException:
            made.remove()
            raise
        return made

    def release(self) -> None:
        """Let :func:`sweep` judge the directory by its container from now on."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        remove(self.path)
        self.release()


def removal_hook(path: str) -> dict[str, object]:
    """A poststop hook doing what :func:`remove` does, as a shell command: ``delete``
    runs it without starting an interpreter (~15 ms of every ``image run --rm``).
    ``rm --one-file-system`` never descends into a rootfs still mounted (a lazy
    unmount cannot fail, but a stray mount below the directory must not be
    emptied through it); GNU rm walks any depth."""
    script = 'umount -l "$1/rootfs" 2>/dev/null; exec rm -rf --one-file-system "$1"'
    return {"path": "/bin/sh", "args": ["sh", "-c", script, "sh", path], "timeout": 60}


def remove(path: str) -> None:
    """Unmount the rootfs (if mounted) and remove the directory, any depth.
    Quiet when it is already gone: hooks and failure paths may both run it."""
    from ocipy import fstree
    from ocipy.storage.overlay import unmount

    if not os.path.isdir(path):
        return
    unmount(path)
    fstree.remove_quietly(path)


def _owner(path: str) -> dict[str, object] | None:
    import json

    try:
        with open(os.path.join(path, OWNER), "rb") as f:
            doc = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _entries(containers_path: str) -> list[str]:
    try:
        return sorted(os.listdir(containers_path))
    except FileNotFoundError:
        return []


def sweep(containers_path: str) -> list[str]:
    """Remove the directories of containers that are gone; return their ids."""
    import fcntl

    from ocipy.runtime.store import STATE_FILE

    removed = []
    for name in _entries(containers_path):
        path = os.path.join(containers_path, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # an engine is setting this one up right now
            owner = _owner(path)
            root = owner.get("root") if owner else None
            if isinstance(root, str) and os.path.exists(os.path.join(root, name, STATE_FILE)):
                continue  # its container exists: `ocipy delete` will remove the directory
            remove(path)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


def chains_in_use(containers_path: str) -> set[str]:
    """The chain ids every container directory's owner.json names."""
    used: set[str] = set()
    for name in _entries(containers_path):
        owner = _owner(os.path.join(containers_path, name))
        chains = owner.get("chains") if owner else None
        if isinstance(chains, list):
            used.update(c for c in chains if isinstance(c, str))
    return used
