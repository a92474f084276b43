"""Internal: :class:`ocipy.api.Container` (import it from ocipy.api).

Kept out of ocipy.api itself, which every CLI command imports: only the
commands that hand out containers (create, list) load the class.
"""

from __future__ import annotations

from ocipy import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ocipy._stdio import Process, Stream
    from ocipy.api import Result
    from ocipy.runtime import store as _store_mod


class Container:
    """One container under a state root.

    Get one from :func:`create`, :func:`run` with ``detach=True`` or by id
    (:meth:`get`, :func:`list_containers`).  ``status`` and ``pid`` are read
    afresh from the container's state each time; ``bundle``, ``created``,
    ``rootfs``, ``owner`` and ``annotations`` are fixed at create.  As a
    context manager the container is deleted (forcibly) when the block ends,
    also when it raises.  Objects for different containers may be used from
    different threads at once."""

    def __init__(self, container_id: str, *, root: str | None = None,
                 _loaded: _store_mod.Container | None = None) -> None:  # fmt: skip
        self.id = container_id
        self.root = root or api.DEFAULT_ROOT
        self._loaded = _loaded

    @classmethod
    def get(cls, container_id: str, *, root: str | None = None) -> Container:
        """The container with this id (ContainerNotFound if there is none)."""
        c = cls(container_id, root=root)
        c._load()
        return c

    def _load(self) -> _store_mod.Container:
        from ocipy.runtime import store

        self._loaded = store.load(self.root, self.id)
        return self._loaded

    def _known(self) -> _store_mod.Container:
        return self._loaded if self._loaded is not None else self._load()

    # --- attributes -------------------------------------------------------
    @property
    def status(self) -> str:
        """creating, created, running, paused or stopped (ContainerNotFound once deleted)."""
        api._reap_finished(self.root, self.id)
        return self._load().status

    @property
    def pid(self) -> int:
        """The init's host pid while the container is alive, else 0."""
        from ocipy.runtime import lifecycle

        loaded = self._load()
        return loaded.pid if lifecycle.is_alive(loaded.status) else 0

    @property
    def bundle(self) -> str:
        """The bundle directory it was created from."""
        return self._known().bundle

    @property
    def rootfs(self) -> str:
        """The root filesystem's path, as config.json's root.path resolves it."""
        return str(self._known().data.get("rootfs", ""))

    @property
    def created(self) -> str:
        """RFC 3339 time of the create, in UTC."""
        return str(self._known().data.get("created", ""))

    @property
    def owner(self) -> str:
        """Who created it (the state's owner field, as `ocipy list` shows it)."""
        return str(self._known().data.get("owner", ""))

    @property
    def annotations(self) -> dict[str, str]:
        """config.json's annotations (a copy)."""
        return dict(self._known().config.get("annotations") or {})

    @property
    def config(self) -> dict[str, Any]:
        """The container's config.json as saved (with the limits `update` set)."""
        return self._load().config

    def state(self, refresh: bool = True) -> dict[str, Any]:
        """The runtime-spec state (ociVersion, id, pid, status, bundle, rootfs,
        created, owner, annotations); `refresh=False` uses the state.json read
        at lookup (the status is computed now either way)."""
        return (self._load() if refresh else self._known()).oci_state()

    # --- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Run the user program of a created container."""
        api.start(self.id, root=self.root)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container's init to exit; its exit status (128+N for
        signal N).  -1 when the status cannot be known: the init is not a
        child of this process (a container made by another process) or was
        collected elsewhere.  TimeoutError after `timeout` seconds."""
        from ocipy import _stdio
        from ocipy.errors import InvalidState

        loaded = self._known()
        if not loaded.pid:
            loaded = self._load()
        if not loaded.pid:
            raise InvalidState(f"container {self.id} has no init process yet")
        start_time = loaded.data.get("pid_start")
        return _stdio.wait(loaded.pid, timeout, start_time if isinstance(start_time, int) else None,
                           (self.root, self.id))  # fmt: skip

    def kill(self, signal: str | int = "TERM", *, all: bool = False) -> None:  # noqa: A002 - runc's flag
        """Send a signal (name or number) to the init, or with `all` to every process."""
        api.kill(self.id, signal, root=self.root, all_processes=all)

    def pause(self) -> None:
        """Freeze every process of the container (the freezer cgroup)."""
        api.pause(self.id, root=self.root)

    def resume(self) -> None:
        """Thaw a paused container."""
        api.resume(self.id, root=self.root)

    def processes(self) -> list[int]:
        """The host pids of the container's processes (``ocipy ps --format json``)."""
        return api.processes(self.id, root=self.root)

    def stats(self) -> dict[str, Any]:
        """Resource statistics: the ``data`` of ``ocipy events --stats`` (cpu, memory, pids, blkio...)."""
        return dict(api.stats(self.id, root=self.root)["data"])

    def events(self, interval: float = 5.0) -> Iterator[dict[str, Any]]:
        """``ocipy events``: a stats event every `interval` s and an oom event per OOM kill, until it stops."""
        return api.events(self.id, interval, root=self.root)

    def update(self, resources: dict[str, Any] | None = None, **limits: Any) -> dict[str, Any]:
        """Change the limits (see :func:`update`); returns the new linux.resources."""
        return api.update(self.id, resources, root=self.root, **limits)

    def exec(self, args: list[str] | None = None, **options: Any) -> Result:
        """Run a process in the container and wait for it (see :func:`exec`)."""
        return api.exec(self.id, args, root=self.root, **options)

    def exec_stream(self, args: list[str] | None = None, **options: Any) -> Stream:
        """Run a process; iterate over its output (see :func:`exec_stream`)."""
        return api.exec_stream(self.id, args, root=self.root, **options)

    def spawn(self, args: list[str] | None = None, **options: Any) -> Process:
        """Start a process and return at once (see :func:`spawn`)."""
        return api.spawn(self.id, args, root=self.root, **options)

    def delete(self, force: bool = False) -> None:
        """Delete the container (stopped, or any status with `force`)."""
        api.delete(self.id, root=self.root, force=force)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        api.delete(self.id, root=self.root, force=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Container) and (self.root, self.id) == (other.root, other.id)

    def __hash__(self) -> int:
        return hash((self.root, self.id))

    def __repr__(self) -> str:
        return f"Container({self.id!r}, root={self.root!r})"
