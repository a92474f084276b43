"""Container state on disk: ``<root>/<id>/state.json``.

* The directory is created with ``mkdir`` (atomic: a second create of the
  same id fails with "container with id exists").
* Every command that changes a container holds ``flock`` on the directory,
  so commands on one container are serialised and different containers run
  in parallel.
* state.json is written to a temp file and renamed into place.
* ``status`` is never stored: it is derived from the init process (alive,
  same start time), the exec fifo (still there → created) and the freezer.
"""

from __future__ import annotations

import os

from ocipy import jsonfast
from ocipy.errors import ContainerNotFound, OcipyError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.:=-")


def check_id(container_id: str) -> None:
    """An id names a directory under --root: no separators, no dot-dot."""
    if (not container_id or not container_id[0].isalnum() or not container_id.isascii()
            or not _ID_CHARS.issuperset(container_id)):  # fmt: skip
        raise OcipyError(f"invalid container id {container_id!r}: use letters, digits and _+.:=- (no '/' or '..')")
    if len(container_id) > 1024:
        raise OcipyError("invalid container id: longer than 1024 characters")


def container_dir(root: str, container_id: str) -> str:
    check_id(container_id)
    return os.path.join(root, container_id)


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time) from /proc/PID/stat, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0], int(fields[19])


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None if the process is gone (or a zombie)."""
    st = _stat(pid)
    if st is None or st[0] in (b"Z", b"X"):
        return None
    return st[1]


def reap(pid: int, start_time: int | None) -> None:
    """Collect a dead init that is our own child (create clones it directly;
    `run` and API callers may be its subreaper), so no zombie stays behind.
    A zombie with another start time is not the container's."""
    st = _stat(pid)
    if st is None or st[0] != b"Z" or (start_time is not None and st[1] != start_time):
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid: int, start_time: int | None = None, timeout: float = 10.0) -> None:
    """Wait until `pid` has exited (a zombie counts as gone)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = process_start_time(pid)
        if current is None or (start_time is not None and current != start_time):
            return
        time.sleep(0.002)


class Container:
    """One container's saved state; `status` is computed when read."""

    def __init__(self, root: str, container_id: str, data: dict[str, Any]) -> None:
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data

    # fields saved by create
    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def bundle(self) -> str:
        return str(self.data.get("bundle", ""))

    @property
    def config(self) -> dict[str, Any]:
        return self.data.get("config") or {}

    @property
    def exec_fifo(self) -> str:
        return os.path.join(self.dir, EXEC_FIFO)

    def init_alive(self) -> bool:
        pid = self.pid
        if pid <= 0:
            return False
        start = process_start_time(pid)
        return start is not None and start == self.data.get("pid_start")

    @property
    def status(self) -> str:
        if not self.data.get("created_done"):
            return CREATING
        if not self.init_alive():
            return STOPPED
        if os.path.exists(self.exec_fifo):
            return CREATED
        cgroup = self.data.get("cgroup")
        if cgroup:
            try:
                from ocipy.linux import cgroups

                if cgroups.from_state(cgroup).is_frozen():
                    return PAUSED
            except (ImportError, AttributeError, OSError):
                pass
        return RUNNING

    def oci_state(self) -> dict[str, Any]:
        """The runtime-spec state (runtime.md "State") plus runc's extra fields."""
        from ocipy import OCI_RUNTIME_SPEC_VERSION

        status = self.status
        state: dict[str, Any] = {
            "ociVersion": OCI_RUNTIME_SPEC_VERSION,
            "id": self.id,
            "pid": self.pid if status in (CREATED, RUNNING, PAUSED) else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        }
        annotations = self.config.get("annotations")
        if annotations:
            state["annotations"] = annotations
        return state

    def save(self) -> None:
        # 0600: the saved config holds the process environment, which may hold secrets.
        tmp = os.path.join(self.dir, f".{STATE_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, jsonfast.dumps(self.data).encode())
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.dir, STATE_FILE))


def load(root: str, container_id: str) -> Container:
    path = os.path.join(container_dir(root, container_id), STATE_FILE)
    try:
        with open(path, "rb") as f:
            data = jsonfast.loads(f.read())
    except FileNotFoundError:
        if os.path.isdir(os.path.join(root, container_id)):
            return Container(root, container_id, {})  # still being created
        raise ContainerNotFound(container_id) from None
    except (OSError, ValueError) as e:
        raise OcipyError(f"container {container_id}: unreadable state {path}: {e}") from None
    return Container(root, container_id, data)


def list_ids(root: str) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def remove_dir(path: str) -> None:
    """Remove a container's state directory (flat: state.json, the fifo, temp files)."""
    try:
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        import shutil  # something unexpected inside: fall back to the general tool

        shutil.rmtree(path, ignore_errors=True)


class locked:
    """``with locked(root, id) as container``: hold the container's lock, state re-read under it."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root, self.id = root, container_id
        self.fd = -1

    def __enter__(self) -> Container:
        import fcntl

        path = container_dir(self.root, self.id)
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return load(self.root, self.id)
        except BaseException:
            os.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


class new_container:
    """``with new_container(root, id) as (container, lock_fd)``: create ``<root>/<id>``
    exclusively and hold its lock; on an error inside the block remove it again."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root, self.id = root, container_id
        self.fd = -1
        self.path = ""

    def __enter__(self) -> tuple[Container, int]:
        import fcntl

        from ocipy.errors import ContainerExists

        self.path = container_dir(self.root, self.id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise ContainerExists(self.id) from None
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return Container(self.root, self.id, {}), self.fd

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            remove_dir(self.path)
        os.close(self.fd)
