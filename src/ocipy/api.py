"""The public Python API of the ocipy runtime.

The CLI is a thin layer over these functions; a Python program can use them
directly to run containers without a daemon and without spawning a CLI::

    from ocipy import api
    api.create("web", "/path/to/bundle", root="/run/ocipy")
    api.start("web", root="/run/ocipy")
    print(api.state("web", root="/run/ocipy")["status"])
    api.kill("web", "TERM", root="/run/ocipy")
    api.delete("web", root="/run/ocipy", force=True)

    status = api.run("job", "/path/to/bundle")   # foreground: exit status

Every function raises :class:`ocipy.errors.OcipyError` (or a subclass) with
a one-line message on failure; imports are lazy so ``import ocipy.api`` is
cheap.  Image and registry functions live in ``ocipy.api_image`` and
``ocipy.api_registry``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


DEFAULT_ROOT = "/run/ocipy"


def spec(rootless: bool = False) -> dict[str, Any]:
    """A default config.json (the same defaults as ``runc spec``)."""
    from ocipy.spec.runtime import default_spec

    return default_spec(rootless)


def create(container_id: str, bundle: str, *, root: str | None = None, console_socket: str | None = None,
           pid_file: str | None = None, no_pivot: bool = False, no_new_keyring: bool = False,
           preserve_fds: int = 0, systemd_cgroup: bool = False) -> dict[str, Any]:  # fmt: skip
    """Create a container from a bundle; its process waits for :func:`start`.

    Returns the container's state (runtime-spec ``state``), status ``created``.
    Without a user or time namespace to set up (and from a caller with one
    thread) the container's process is a child of the caller, as runc's init
    is runc's: the caller may ``os.waitpid`` it, and :func:`delete` collects
    it if the caller did not.
    """
    from ocipy.runtime.create import create as _create

    container = _create(root or DEFAULT_ROOT, container_id, bundle, console_socket=console_socket,
                        pid_file=pid_file, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                        preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup)  # fmt: skip
    return container.oci_state()


def start(container_id: str, *, root: str | None = None) -> None:
    """Run the user program of a created container."""
    from ocipy.runtime.operations import start as _start

    _start(root or DEFAULT_ROOT, container_id)


def state(container_id: str, *, root: str | None = None) -> dict[str, Any]:
    """The container's state: ociVersion, id, pid, status, bundle, rootfs, created, owner, annotations."""
    from ocipy.runtime.operations import state as _state

    return _state(root or DEFAULT_ROOT, container_id)


def list_containers(*, root: str | None = None) -> list[dict[str, Any]]:
    """The state of every container under `root`.

    A container whose state.json cannot be read is left out with a warning
    (runc's "load container ID: ..."): it never hides the others."""
    from ocipy.errors import OcipyError
    from ocipy.runtime import store

    root = root or DEFAULT_ROOT
    states = []
    for container_id in store.list_ids(root):
        try:
            states.append(store.load(root, container_id).oci_state())
        except store.CorruptState as e:
            from ocipy.cli import log

            log.warning(f"load container {container_id}: {e}")
        except OcipyError:
            continue  # removed meanwhile, or not a container directory
    return states


def kill(container_id: str, signal: str | int = "SIGTERM", *, root: str | None = None,
         all_processes: bool = False) -> None:  # fmt: skip
    """Send a signal (name or number) to the container's process, or to all its processes."""
    from ocipy.runtime.operations import kill as _kill

    _kill(root or DEFAULT_ROOT, container_id, signal, all_processes)


def delete(container_id: str, *, root: str | None = None, force: bool = False) -> None:
    """Delete a stopped container and everything create made; `force` kills it first
    (and succeeds when there is no such container, as runc's ``delete -f`` does).

    The container's init is often the caller's own child (see :func:`create`):
    it is always collected here, so a delete leaves no zombie behind, however
    the init's death and the delete interleave."""
    from ocipy.errors import ContainerNotFound
    from ocipy.runtime.operations import delete as _delete

    root = root or DEFAULT_ROOT
    pid, start_time = _init_of(root, container_id)
    try:
        _delete(root, container_id, force)
    except ContainerNotFound:
        if not force:
            raise
        return  # runc: `delete -f` of a container that does not exist succeeds (it is gone either way)
    if pid > 0:
        _collect(pid, start_time)


def _init_of(root: str, container_id: str) -> tuple[int, int | None]:
    """The init's pid and start time, if the container's state can be read."""
    from ocipy.errors import OcipyError
    from ocipy.runtime import store

    try:
        container = store.load(root, container_id)
    except store.CorruptState as e:
        container = e.container
    except OcipyError:
        return 0, None
    start = container.data.get("pid_start")
    return container.pid, start if isinstance(start, int) else None


def _collect(pid: int, start_time: int | None) -> None:
    """Reap `pid` if it is our child and the same process (start time): delete
    has killed it, but it may not have finished dying yet."""
    from ocipy.runtime import store

    if start_time is None:
        return  # without a start time it may be another process by now
    store.wait_gone(pid, start_time, timeout=5.0)
    store.reap(pid, start_time)


def run(container_id: str, bundle: str, root: str | None = None, detach: bool = False, *,
        keep: bool = False, pid_file: str | None = None, console_socket: str | None = None,
        no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
        systemd_cgroup: bool = False) -> int:  # fmt: skip
    """Create and start a container.

    In the foreground (``detach=False``) wait for it, delete it (unless
    `keep`) and return its exit status (128+N when killed by signal N).
    Detached, return 0 once it runs.
    """
    from ocipy.runtime.operations import run as _run

    return _run(root or DEFAULT_ROOT, container_id, bundle, detach=detach, keep=keep, pid_file=pid_file,
                console_socket=console_socket, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup)  # fmt: skip


def features() -> dict[str, Any]:
    """What this runtime supports (runtime-spec features.md)."""
    from ocipy.runtime.features import features as _features

    return _features()


def exec(container_id: str, args: list[str] | None = None, *, root: str | None = None,
         process: dict[str, Any] | None = None, env: list[str] | None = None, cwd: str | None = None,
         user: str | None = None, tty: bool = False, detach: bool = False, pid_file: str | None = None,
         console_socket: str | None = None, preserve_fds: int = 0, ignore_paused: bool = False) -> int:  # fmt: skip
    """Run a process in a running container (``runc exec``).

    Give either `args` (the container's process settings are the base, as
    runc does) or a full `process` object.  Returns the exit status in the
    foreground, 0 when detached.
    """
    from ocipy.runtime import exec as _exec
    from ocipy.runtime import store

    root = root or DEFAULT_ROOT
    if process is None:
        config = store.load(root, container_id).config
        process = _exec.build_process(config, list(args or []), env=env, cwd=cwd, user=user, tty=tty)
    return _exec.exec_process(root, container_id, process, detach=detach, pid_file=pid_file,
                              console_socket=console_socket, preserve_fds=preserve_fds,
                              ignore_paused=ignore_paused)  # fmt: skip
