"""Container state on disk: ``<root>/<id>/state.json``.

* The directory is created with ``mkdir`` (atomic: a second create of the
  same id fails with "container with id exists").
* Every command that changes a container holds ``flock`` on the directory,
  so commands on one container are serialised and different containers run
  in parallel.
* state.json is written whole to a temp file (short writes retried, then
  fsync: see Container.save for the records that are not) and renamed into
  place only once that succeeded: a full disk fails the command that saves,
  never leaves a truncated state.json behind.
* ``status`` is never stored: it is derived from the init process (alive,
  same start time), the exec fifo (still there → created) and the freezer.
  What each operation may do in each status is in lifecycle.py.
* Before create makes a cgroup directory it saves the directories it is
  about to make (the cgroup manager's ``planned`` list, in ``cgroup``): a
  create killed at any point leaves a state that ``delete -f`` cleans up.
* A state.json that cannot be read (corrupted outside ocipy) is a one-line
  :class:`CorruptState` error for that container only; ``delete -f`` still
  kills its init and removes its cgroups as far as they can be recovered.
"""

from __future__ import annotations

# `posix`, not `os`: importing os (and the collections ABCs it pulls in) costs
# ~0.9 ms, a tenth of a `state`, and nothing else on the state/start/kill
# path needs it (bench/FINDINGS.md).  Paths are joined by `_join`.
import posix

from ocipy import jsonfast
from ocipy.errors import ContainerNotFound, KernelError, OcipyError
from ocipy.runtime import lifecycle
from ocipy.runtime.ids import check_id
from ocipy.runtime.lifecycle import CREATED, CREATING, PAUSED, RUNNING, STOPPED

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"

__all__ = ["CREATED", "CREATING", "PAUSED", "RUNNING", "STOPPED", "Container", "CorruptState", "check_id", "load",
           "locked", "new_container"]  # fmt: skip


def _join(directory: str, name: str) -> str:
    """os.path.join for a name without a slash."""
    return directory + name if directory.endswith("/") else directory + "/" + name


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _isdir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == 0o040000  # S_ISDIR
    except (OSError, ValueError):
        return False


def container_dir(root: str, container_id: str) -> str:
    check_id(container_id)
    return _join(root, container_id)


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time) from /proc/PID/stat, or None if there is no such process."""
    from ocipy.linux import procstat

    f = procstat.fields(pid)
    return None if f is None else (f[procstat.STATE], int(f[procstat.START_TIME]))


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
        posix.waitpid(pid, posix.WNOHANG)
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
        self.dir = _join(root, container_id)
        self.data = data
        self.corrupt = ""  # why state.json could not be read (a recovered container)

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
        return _join(self.dir, EXEC_FIFO)

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
        # Frozen first, as runc: a container paused before `start` is paused (start
        # and plain delete refuse it, resume thaws it), and created again once thawed.
        if self.frozen():
            return PAUSED
        return CREATED if _exists(self.exec_fifo) else RUNNING

    def frozen(self) -> bool:
        paths = (self.data.get("cgroup") or {}).get("paths")
        if not isinstance(paths, dict):
            return False
        from ocipy.linux.freezer import is_frozen  # not the cgroup manager: see freezer.py

        try:
            return is_frozen(paths)
        except (AttributeError, TypeError):  # a hand-edited state.json
            return False

    def oci_state(self) -> dict[str, Any]:
        """The runtime-spec state (runtime.md "State") plus runc's extra fields."""
        from ocipy import OCI_RUNTIME_SPEC_VERSION

        status = self.status
        state: dict[str, Any] = {
            "ociVersion": OCI_RUNTIME_SPEC_VERSION,
            "id": self.id,
            "pid": self.pid if lifecycle.is_alive(status) else 0,
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

    def save(self, *, sync: bool = True) -> None:
        """Write state.json whole (every byte, or the old one stays and the error
        is raised), then rename it into place; synced unless `sync` is False.

        create's records on the way (the cgroups it is about to make, the init's
        pid) are not synced: `delete -f` reads them after a killed create, from
        the page cache, and after a crash of the machine what they describe
        (cgroups, processes) is gone with it.  The record create ends with, the
        one the container lives by, is synced (~0.5 ms each on a disk-backed
        /run; runc syncs none)."""
        write_file(_join(self.dir, STATE_FILE), jsonfast.dumps(self.data).encode(), sync=sync)


def write_file(path: str, payload: bytes, mode: int = 0o600, *, sync: bool = True) -> None:
    """Replace `path` with `payload` atomically (:func:`ocipy.fsutil.write_file`:
    temp file, every byte written, fsync unless `sync` is False, rename); an
    OSError becomes a KernelError naming the path.  0600 by default: the saved
    config holds the process environment, which may hold secrets."""
    from ocipy import fsutil

    try:
        fsutil.write_file(path, payload, mode, sync=sync)
    except OSError as e:
        raise KernelError("write", path, e.errno or 5) from None


class CorruptState(OcipyError):
    """state.json exists but cannot be read; `container` is what could be recovered."""

    def __init__(self, container: Container, path: str, reason: str) -> None:
        self.container = container
        super().__init__(f"container {container.id}: corrupt state {path}: {reason} "
                         "(`delete -f` removes the container)")  # fmt: skip


def load(root: str, container_id: str) -> Container:
    path = _join(container_dir(root, container_id), STATE_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if _isdir(_join(root, container_id)):
            return Container(root, container_id, {})  # still being created
        raise ContainerNotFound(container_id) from None
    except OSError as e:
        raise OcipyError(f"container {container_id}: unreadable state {path}: {e.strerror}") from None
    try:
        data = jsonfast.loads(raw)
    except ValueError as e:  # also UnicodeDecodeError and jsonfast.TooDeep
        reason = str(e)
    else:
        if isinstance(data, dict) and _well_formed(data):
            return Container(root, container_id, data)
        reason = "not a state object"
    container = Container(root, container_id, _salvage(raw, container_id))
    container.corrupt = reason
    raise CorruptState(container, path, reason)


# field -> type, for the fields code trusts without looking
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "pid": int, "pid_start": int, "bundle": str, "rootfs": str, "config": dict, "cgroup": dict,
    "created": str, "owner": str,
}  # fmt: skip


def _well_formed(data: dict[str, Any]) -> bool:
    for key, kind in _FIELD_TYPES.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return False
    return True


def _salvage(raw: bytes, container_id: str) -> dict[str, Any]:
    """What `delete -f` needs from a state.json that does not parse: the init
    (pid and start time, so no other process is signalled) and the cgroups.
    Our own fields come after the saved config, so the last occurrence of a
    key is ours.  Without recorded cgroups, the ones the id alone leads to."""
    text = raw.decode(errors="replace")
    out: dict[str, Any] = {}
    for key, kind in (("pid", int), ("pid_start", int), ("cgroup", dict)):
        marker = f'"{key}":'
        at = text.rfind(marker)
        if at < 0:
            continue
        start = at + len(marker)
        start += len(text[start:start + 64]) - len(text[start:start + 64].lstrip(" \t\r\n"))
        try:
            value = jsonfast.loads_at(text, start)
        except ValueError:
            continue
        if isinstance(value, kind) and not isinstance(value, bool):
            out[key] = value
    cgroup = out.get("cgroup")
    if cgroup is not None and not _safe_cgroup(cgroup):
        del out["cgroup"]
    if "cgroup" not in out:
        derived = _derived_cgroup(container_id)
        if derived:
            out["cgroup"] = derived
    return out


def _safe_cgroup(cgroup: dict[str, Any]) -> bool:
    """Recovered cgroup paths must be directories under /sys/fs/cgroup: they are rmdir'd."""
    paths = cgroup.get("paths")
    created = cgroup.get("created")
    if not isinstance(paths, dict) or not isinstance(created, list):
        return False
    for p in [*paths.values(), *created]:
        if not isinstance(p, str) or not p.startswith("/sys/fs/cgroup/") or "/../" in p + "/":
            return False
    return True


def _derived_cgroup(container_id: str) -> dict[str, Any] | None:
    """The cgroups a config without linux.cgroupsPath gives the container: one
    directory named after the id below the runtime's own cgroup, per hierarchy.
    Only those that exist are recorded as ours (their parents are not)."""
    try:
        from ocipy.linux import cgroups
        from ocipy.spec.resources import Resources

        state = cgroups.manager(Resources(), "", container_id).to_state()
    except (OcipyError, OSError, ImportError):
        return None
    state["created"] = [d for d in dict.fromkeys(state["paths"].values()) if _isdir(d)]
    return state if state["created"] else None



def list_ids(root: str) -> list[str]:
    try:
        return sorted(e.name for e in posix.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def remove_dir(path: str) -> None:
    """Remove a container's state directory (flat: state.json, the fifo, temp files)."""
    try:
        for entry in posix.scandir(path):
            posix.unlink(entry.path)
        posix.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        from ocipy import fstree  # something unexpected inside: remove whatever it is

        fstree.remove_quietly(path)


class locked:
    """``with locked(root, id) as container``: hold the container's lock, state re-read under it.

    With `recover`, a corrupt state.json gives the container recovered from it
    (status ``creating``: only deleting it is allowed) instead of the error."""

    def __init__(self, root: str, container_id: str, recover: bool = False) -> None:
        self.root, self.id = root, container_id
        self.recover = recover
        self.fd = -1

    def __enter__(self) -> Container:
        import fcntl

        path = container_dir(self.root, self.id)
        try:
            self.fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                return load(self.root, self.id)
            except CorruptState as e:
                if not self.recover:
                    raise
                return e.container
        except BaseException:
            posix.close(self.fd)
            raise

    def __exit__(self, *exc: object) -> None:
        posix.close(self.fd)


class new_container:
    """``with new_container(root, id) as (container, lock_fd)``: create ``<root>/<id>``
    exclusively and hold its lock; on an error inside the block remove it again."""

    def __init__(self, root: str, container_id: str) -> None:
        self.root, self.id = root, container_id
        self.fd = -1
        self.path = ""

    def __enter__(self) -> tuple[Container, int]:
        import fcntl
        import os

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
        posix.close(self.fd)
