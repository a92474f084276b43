"""The public Python API of the ocipy runtime: containers without a daemon.

A Python program runs containers in-process with it; the ``ocipy`` CLI is a
thin layer over the same functions::

    from ocipy import api

    result = api.run("job", "/path/to/bundle", root="/tmp/state", capture=True)
    print(result.exit_code, result.stdout)

    with api.create("web", "/path/to/bundle", root="/tmp/state") as c:
        c.start()
        r = c.exec(["sh", "-c", "echo hi; exit 3"], capture=True)
        assert (r.exit_code, r.stdout) == (3, b"hi\\n")
        c.kill("KILL")
        c.wait()
    # deleted here, also when the block raised

Every function raises :class:`ocipy.errors.OcipyError` (or a subclass, see
:mod:`ocipy.errors`) with a one-line message.  ``root`` (the state
directory, ``/run/ocipy`` by default) is keyword-only everywhere.  Imports
are lazy: ``import ocipy.api`` costs well under a millisecond.

The calling process becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``)
when it creates a container or runs a process in one: the container's init
and exec'd processes are then its children, so that :meth:`Container.wait`
and :meth:`Container.exec` learn their exit status and nothing is left as a
zombie.  Image and registry functions are in ``ocipy.api_image`` and
``ocipy.api_registry``; an asyncio face is in :mod:`ocipy.aio`.
See docs/api.md for a tutorial and the reference.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Literal, overload

    from ocipy._container import Container
    from ocipy._stdio import Process, Stream

__all__ = [
    "DEFAULT_ROOT", "DEVNULL", "PIPE", "Container", "Process", "Result", "Stream", "containers", "create",
    "delete", "events", "exec", "exec_stream", "features", "get", "kill", "list_containers", "pause", "processes",
    "resume", "run", "run_stream", "spawn", "spec", "start", "state", "stats", "update",
]  # fmt: skip

DEFAULT_ROOT = "/run/ocipy"
PIPE = -1  # stdin/stdout/stderr=PIPE: a pipe between the caller and the container's process
DEVNULL = -2  # stdin/stdout/stderr=DEVNULL: /dev/null

def __getattr__(name: str) -> Any:
    """Stream and Process live in an internal module, loaded when first used
    (the CLI never needs them; every command imports this module)."""
    if name in ("Stream", "Process"):
        from ocipy import _stdio

        return getattr(_stdio, name)
    if name == "Container":
        from ocipy._container import Container

        return Container
    raise AttributeError(f"module 'ocipy.api' has no attribute {name!r}")


_subreaper = False  # set once this process is the subreaper of what the API starts

# Held by every API step that forks or holds a state lock (an flock'd fd).
# A child forked by one thread inherits every fd another thread has open at
# that moment, and a container's init keeps them until its execve at
# `start`: another thread's flock would stay held (a deadlock on that
# container), its pipes would never see EOF.  So these steps (milliseconds)
# take turns; waiting and reading output, the long parts, run in parallel.
_lock = _thread.RLock()  # type: ignore[attr-defined]  # the C RLock (threading costs ~4 ms to import)


def _reap_finished(root: str, container_id: str) -> None:
    """Collect the API's ended processes in this container, if it ever started one."""
    import sys

    if "ocipy._stdio" in sys.modules:
        from ocipy import _stdio

        _stdio.reap_finished((root, container_id))


def _alone() -> bool:
    """One thread: nothing can fork while we hold a lock (the CLI's case)."""
    from ocipy.linux.syscalls import single_threaded

    return single_threaded()


def _adopt() -> None:
    """Become the subreaper of our descendants: a container's init forked by a
    bootstrap (user namespace, or a caller with threads) and exec'd processes
    are then our children, to wait for and to reap."""
    global _subreaper
    if not _subreaper:
        from ocipy.linux import syscalls as sc

        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        _subreaper = True


class Result:
    """What a process that ran to its end left: ``exit_code`` (128+N when
    killed by signal N), ``stdout`` and ``stderr`` (bytes; None when not
    captured; with a terminal both streams are in ``stdout``) and ``pid``.

    Unpacks as ``exit_code, stdout, stderr = result``."""

    __slots__ = ("exit_code", "stdout", "stderr", "pid")

    def __init__(self, exit_code: int, stdout: bytes | None = None, stderr: bytes | None = None, pid: int = 0) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.pid = pid

    def __iter__(self) -> Iterator[Any]:
        return iter((self.exit_code, self.stdout, self.stderr))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Result):
            return (self.exit_code, self.stdout, self.stderr) == (other.exit_code, other.stdout, other.stderr)
        if isinstance(other, tuple):
            return (self.exit_code, self.stdout, self.stderr) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Result(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"


# --- functions by id ------------------------------------------------------------


def spec(rootless: bool = False) -> dict[str, Any]:
    """A default config.json (the same defaults as ``runc spec``)."""
    from ocipy.spec.runtime import default_spec

    return default_spec(rootless)


def create(container_id: str, bundle: str, *, root: str | None = None, console_socket: str | None = None,
           pid_file: str | None = None, no_pivot: bool = False, no_new_keyring: bool = False,
           preserve_fds: int = 0, systemd_cgroup: bool = False, stdin: Any = None, stdout: Any = None,
           stderr: Any = None) -> Container:  # fmt: skip
    """Create a container from a bundle; its process waits for :meth:`Container.start`.

    `stdin`, `stdout`, `stderr`: what the container's process gets as fds
    0-2: None (the caller's own), an fd or a file object, :data:`DEVNULL`;
    `stdin` may also be bytes (the data, then end of file).  To capture the
    output use :func:`run` or :func:`run_stream`.  The other options are
    ``ocipy create``'s flags."""
    from ocipy.runtime.create import create as _create

    root = root or DEFAULT_ROOT
    for name, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        if isinstance(value, int) and value == PIPE:
            raise ValueError(f"create: {name}=PIPE has no reader: use run(capture=True) or run_stream()")
    _adopt()
    plan = None
    with _lock:
        if stdin is not None or stdout is not None or stderr is not None:
            from ocipy import _stdio

            plan = _stdio.Plan(stdin, stdout, stderr)
        try:
            loaded = _create(root, container_id, bundle, console_socket=console_socket, pid_file=pid_file,
                             no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                             systemd_cgroup=systemd_cgroup, stdio=plan.stdio() if plan else None)  # fmt: skip
        finally:
            if plan is not None:
                plan.close()
    if "ocipy._stdio" in __import__("sys").modules:
        from ocipy import _stdio

        _stdio.started(loaded.pid)
    from ocipy._container import Container

    return Container(container_id, root=root, _loaded=loaded)


def get(container_id: str, *, root: str | None = None) -> Container:
    """The container with this id (:class:`~ocipy.errors.ContainerNotFound` if there is none)."""
    from ocipy._container import Container

    return Container.get(container_id, root=root)


def list_containers(*, root: str | None = None) -> list[Container]:
    """Every container under `root`, by id.

    A container whose state.json cannot be read is left out with a warning
    (logger ``ocipy.runtime``; runc's "load container ID: ..."): it never
    hides the others."""
    from ocipy import log
    from ocipy._container import Container
    from ocipy.errors import OcipyError
    from ocipy.runtime import store

    root = root or DEFAULT_ROOT
    found = []
    for container_id in store.list_ids(root):
        try:
            found.append(Container(container_id, root=root, _loaded=store.load(root, container_id)))
        except store.CorruptState as e:
            log.warning(f"load container {container_id}: {e}")
        except OcipyError:
            continue  # removed meanwhile, or not a container directory
    return found


containers = list_containers


def start(container_id: str, *, root: str | None = None) -> None:
    """Run the user program of a created container."""
    from ocipy.runtime.operations import start as _start

    with _lock:
        _start(root or DEFAULT_ROOT, container_id)


def state(container_id: str, *, root: str | None = None) -> dict[str, Any]:
    """The container's state: ociVersion, id, pid, status, bundle, rootfs, created, owner, annotations."""
    from ocipy.runtime.operations import state as _state

    return _state(root or DEFAULT_ROOT, container_id)


def kill(container_id: str, signal: str | int = "SIGTERM", *, root: str | None = None,
         all_processes: bool = False) -> None:  # fmt: skip
    """Send a signal (name or number) to the container's process, or to all its processes."""
    from ocipy.runtime.operations import kill as _kill

    _kill(root or DEFAULT_ROOT, container_id, signal, all_processes)


def delete(container_id: str, *, root: str | None = None, force: bool = False) -> None:
    """Delete a stopped container and everything create made; `force` kills it first
    (and succeeds when there is no such container, as runc's ``delete -f`` does).

    What the API started in this process is collected here (the init, exec'd
    processes nobody waited for, and without a pid namespace what was left
    in the container): a delete leaves no zombie behind."""
    import sys

    from ocipy.errors import ContainerNotFound
    from ocipy.runtime.operations import delete as _delete

    root = root or DEFAULT_ROOT
    ours = _subreaper or "ocipy._stdio" in sys.modules  # this process started something in a container
    if "ocipy._stdio" in sys.modules:
        from ocipy import _stdio

        # exec'd processes are ours to reap: a pid namespace's init cannot finish exiting before
        if force:
            _stdio.kill_tracked((root, container_id))
        else:
            _stdio.reap_finished((root, container_id))
    pid, start_time, leftovers, dirs = _init_of(root, container_id, ours)
    if ours and pid > 0 and start_time is not None:
        from ocipy import _stdio
        from ocipy.runtime import store

        if store.process_start_time(pid) is None:  # exited: keep its status for a later wait()
            try:
                _stdio.reap(pid)
            except ChildProcessError:
                pass
    try:
        with _lock:
            _delete(root, container_id, force)
    except ContainerNotFound:
        if not force:
            raise
        return  # runc: `delete -f` of a container that does not exist succeeds (it is gone either way)
    if pid > 0:
        _collect(pid, start_time)
    if ours:
        from ocipy import _stdio

        if dirs:  # no pid namespace: what died meanwhile was reparented to us, ours to collect
            leftovers += _stdio.children_in(dirs)
        _stdio.reap_container((root, container_id), leftovers, killed=force)


def _init_of(root: str, container_id: str, leftovers: bool) -> tuple[int, int | None, list[int], list[str]]:
    """The init's pid and start time, if the container's state can be read,
    and (with `leftovers`, when it has no pid namespace) its processes and cgroup directories."""
    from ocipy.errors import OcipyError
    from ocipy.runtime import store

    try:
        container = store.load(root, container_id)
    except store.CorruptState as e:
        container = e.container
    except OcipyError:
        return 0, None, [], []
    start = container.data.get("pid_start")
    pids: list[int] = []
    dirs: list[str] = []
    namespaces = (container.config.get("linux") or {}).get("namespaces") or []
    if leftovers and not any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces):
        from ocipy.runtime.operations import _manager

        try:
            manager = _manager(container)
            if manager is not None:
                from ocipy import _stdio

                # live ones, and ours already (orphans reparented to us, maybe dead already)
                dirs = list(manager.paths().values())
                pids = [int(p) for p in manager.pids()] + _stdio.children_in(dirs)
        except (OcipyError, OSError, ValueError):
            pids = []
    return container.pid, start if isinstance(start, int) else None, pids, dirs


def _collect(pid: int, start_time: int | None) -> None:
    """Reap `pid` if it is our child and the same process (start time): delete
    has killed it, but it may not have finished dying yet."""
    from ocipy.runtime import store

    if start_time is None:
        return  # without a start time it may be another process by now
    store.wait_gone(pid, start_time, timeout=5.0)
    store.reap(pid, start_time)


if TYPE_CHECKING:

    @overload
    def run(container_id: str, bundle: str, *, root: str | None = None, capture: bool = False,
            detach: Literal[False] = False, keep: bool = False, stdin: Any = None, stdout: Any = None,
            stderr: Any = None, pid_file: str | None = None, console_socket: str | None = None,
            no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
            systemd_cgroup: bool = False, forward_signals: bool = False) -> Result: ...  # fmt: skip

    @overload
    def run(container_id: str, bundle: str, *, root: str | None = None, capture: bool = False,
            detach: Literal[True], keep: bool = False, stdin: Any = None, stdout: Any = None,
            stderr: Any = None, pid_file: str | None = None, console_socket: str | None = None,
            no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
            systemd_cgroup: bool = False, forward_signals: bool = False) -> Container: ...  # fmt: skip

    @overload
    def run(container_id: str, bundle: str, *, root: str | None = None, capture: bool = False,
            detach: bool, keep: bool = False, stdin: Any = None, stdout: Any = None,
            stderr: Any = None, pid_file: str | None = None, console_socket: str | None = None,
            no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
            systemd_cgroup: bool = False, forward_signals: bool = False) -> Result | Container: ...  # fmt: skip


def run(container_id: str, bundle: str, *, root: str | None = None, capture: bool = False, detach: bool = False,
        keep: bool = False, stdin: Any = None, stdout: Any = None, stderr: Any = None,
        pid_file: str | None = None, console_socket: str | None = None, no_pivot: bool = False,
        no_new_keyring: bool = False, preserve_fds: int = 0, systemd_cgroup: bool = False,
        forward_signals: bool = False) -> Result | Container:  # fmt: skip
    """Create and start a container.

    In the foreground (the default) wait for it, delete it (unless `keep`)
    and return a :class:`Result`: ``exit_code`` (128+N when killed by signal
    N), and with `capture` its ``stdout`` and ``stderr`` as bytes.  `stdin`
    may be bytes (fed, then end of file), a file or an fd; `stdout` and
    `stderr` an fd, a file, :data:`PIPE` (captured) or :data:`DEVNULL`.
    With process.terminal and no `console_socket` the output comes through a
    pty (in ``stdout``, or copied to the caller's terminal when not captured).
    `forward_signals` (main thread only; the CLI's behaviour) passes SIGINT,
    SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to the container.

    With `detach`, return the running :class:`Container` at once."""
    root = root or DEFAULT_ROOT
    if detach:
        if capture:
            raise ValueError("run: capture=True needs the foreground (use run_stream, or exec on the container)")
        c = create(container_id, bundle, root=root, console_socket=console_socket, pid_file=pid_file,
                   no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                   systemd_cgroup=systemd_cgroup, stdin=stdin, stdout=stdout, stderr=stderr)  # fmt: skip
        try:
            c.start()
        except BaseException:
            delete(container_id, root=root, force=True)
            raise
        return c
    if not capture and stdin is None and stdout is None and stderr is None and _alone():
        from ocipy.runtime.operations import run as _run

        _adopt()
        code = _run(root, container_id, bundle, detach=False, keep=keep, pid_file=pid_file,
                    console_socket=console_socket, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                    preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup,
                    forward_signals=forward_signals)  # fmt: skip
        return Result(code)
    stream = run_stream(container_id, bundle, root=root, keep=keep, stdin=stdin,
                        stdout=PIPE if capture and stdout is None else stdout,
                        stderr=PIPE if capture and stderr is None else stderr, pid_file=pid_file,
                        console_socket=console_socket, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                        preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup)  # fmt: skip
    from ocipy import _stdio

    return _stdio.collect(stream, capture)


def run_stream(container_id: str, bundle: str, *, root: str | None = None, keep: bool = False,
               stdin: Any = None, stdout: Any = PIPE, stderr: Any = PIPE, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False, no_new_keyring: bool = False,
               preserve_fds: int = 0, systemd_cgroup: bool = False) -> Stream:  # fmt: skip
    """Create and start a container and stream its output: a :class:`Stream`
    of ``(name, bytes)`` chunks as they come, whose ``exit_code`` is set when
    the iteration ends.  The container is deleted then (unless `keep`), or
    killed and deleted when the stream is closed early."""
    from ocipy import _stdio
    from ocipy.runtime.create import create as _create
    from ocipy.runtime.operations import _wants_terminal

    root = root or DEFAULT_ROOT
    _adopt()
    terminal = console_socket is None and _wants_terminal(bundle)
    created = False
    with _lock:
        plan = _stdio.Plan(stdin, stdout, stderr, terminal=terminal)
        try:
            loaded = _create(root, container_id, bundle, console_socket=console_socket,
                             console_fd=plan.console_child, pid_file=pid_file, no_pivot=no_pivot,
                             no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                             systemd_cgroup=systemd_cgroup, stdio=plan.stdio())  # fmt: skip
            created = True
            _stdio.started(loaded.pid)
            plan.spawned()
            start(container_id, root=root)
        except BaseException:
            plan.close()
            if created:
                delete(container_id, root=root, force=True)
            raise

    def end() -> None:
        if not keep:
            delete(container_id, root=root, force=True)

    return _stdio.Stream(loaded.pid, plan, end)


def pause(container_id: str, *, root: str | None = None) -> None:
    """Freeze every process of the container."""
    from ocipy.runtime import resources

    with _lock:
        resources.pause(root or DEFAULT_ROOT, container_id)


def resume(container_id: str, *, root: str | None = None) -> None:
    """Thaw a paused container."""
    from ocipy.runtime import resources

    with _lock:
        resources.resume(root or DEFAULT_ROOT, container_id)


def processes(container_id: str, *, root: str | None = None) -> list[int]:
    """The host pids of every process in the container (its cgroup)."""
    from ocipy.runtime import resources

    return resources.ps(root or DEFAULT_ROOT, container_id)


ps = processes


def stats(container_id: str, *, root: str | None = None) -> dict[str, Any]:
    """One runc stats event, ``{"type": "stats", "id": ID, "data": {...}}``, as ``ocipy events --stats``."""
    from ocipy.runtime import resources

    return resources.stats(root or DEFAULT_ROOT, container_id)


def events(container_id: str, interval: float = 5.0, *, root: str | None = None) -> Iterator[dict[str, Any]]:
    """runc's event stream: a stats event every `interval` s and ``{"type": "oom"}`` per OOM kill, until it stops."""
    from ocipy.runtime import resources

    return resources.events(root or DEFAULT_ROOT, container_id, interval)


# update's keywords: (keyword, linux.resources section, key), as runc update's flags
_LIMITS = (
    ("memory", "memory", "limit"), ("memory_reservation", "memory", "reservation"), ("memory_swap", "memory", "swap"),
    ("kernel_memory", "memory", "kernel"), ("kernel_memory_tcp", "memory", "kernelTCP"),
    ("cpu_shares", "cpu", "shares"), ("cpu_quota", "cpu", "quota"), ("cpu_period", "cpu", "period"),
    ("cpu_burst", "cpu", "burst"), ("cpu_rt_period", "cpu", "realtimePeriod"),
    ("cpu_rt_runtime", "cpu", "realtimeRuntime"), ("cpu_idle", "cpu", "idle"), ("cpuset_cpus", "cpu", "cpus"),
    ("cpuset_mems", "cpu", "mems"), ("pids_limit", "pids", "limit"), ("blkio_weight", "blockIO", "weight"),
)  # fmt: skip


def update(container_id: str, resources: dict[str, Any] | None = None, *, root: str | None = None,
           **limits: Any) -> dict[str, Any]:  # fmt: skip
    """Change a running container's limits (``ocipy update``); returns the new linux.resources.

    `resources` is a linux.resources object (config.md); the keywords, as
    update's flags, are applied over it: ``memory``, ``memory_reservation``,
    ``memory_swap``, ``kernel_memory``, ``kernel_memory_tcp`` (bytes, -1 for
    unlimited), ``cpu_shares``, ``cpu_quota``, ``cpu_period``, ``cpu_burst``,
    ``cpu_rt_period``, ``cpu_rt_runtime``, ``cpu_idle``, ``pids_limit``,
    ``blkio_weight`` (integers), ``cpuset_cpus``, ``cpuset_mems`` (strings
    like ``"0-3"``).  ``l3_cache_schema`` and ``mem_bw_schema`` (Intel RDT)
    are refused.  Only what is given is written; the rest is left as it is."""
    from ocipy.errors import OcipyError
    from ocipy.runtime import resources as _resources

    res: dict[str, Any] = dict(resources) if resources else {}
    if limits.pop("l3_cache_schema", None) is not None or limits.pop("mem_bw_schema", None) is not None:
        raise OcipyError("Intel RDT is not supported by ocipy (--l3-cache-schema / --mem-bw-schema)")
    for keyword, section, key in _LIMITS:
        value = limits.pop(keyword, None)
        if value is None:
            continue
        sec = res.get(section)
        if sec is None:
            sec = res[section] = {}
        elif not isinstance(sec, dict):
            raise OcipyError(f"update: {section} in the resources file must be an object")
        else:
            sec = res[section] = dict(sec)
        sec[key] = value
    if limits:
        raise TypeError(f"update: unknown limit {sorted(limits)[0]!r}")
    with _lock:
        return _resources.update(root or DEFAULT_ROOT, container_id, res)


def features() -> dict[str, Any]:
    """What this runtime supports (runtime-spec features.md)."""
    from ocipy.runtime.features import features as _features

    return _features()


def _process(root: str, container_id: str, args: list[str] | None, process: dict[str, Any] | None, *,
             env: list[str] | dict[str, str] | None, cwd: str | None, user: str | int | None,
             additional_gids: list[int] | None, caps: list[str] | None, no_new_privs: bool, tty: bool,
             apparmor: str | None, process_label: str | None) -> dict[str, Any]:  # fmt: skip
    """exec's process: a full `process` object, or the container's process with these changes (as runc)."""
    from ocipy.errors import OcipyError

    if process is not None:
        return process
    if not args:
        raise OcipyError("exec: no command given (args or --process)")
    from ocipy.runtime import exec as _exec
    from ocipy.runtime import store

    if isinstance(env, dict):
        env = [f"{k}={v}" for k, v in env.items()]
    config = store.load(root, container_id).config
    built = _exec.build_process(config, list(args), env=env, cwd=cwd, user=None if user is None else str(user),
                                additional_gids=additional_gids, caps=caps, no_new_privs=no_new_privs, tty=tty)  # fmt: skip
    if apparmor:
        built["apparmorProfile"] = apparmor
    if process_label:
        built["selinuxLabel"] = process_label
    return built


def exec(container_id: str, args: list[str] | None = None, *, root: str | None = None, capture: bool = False,
         stdin: Any = None, stdout: Any = None, stderr: Any = None, process: dict[str, Any] | None = None,
         env: list[str] | dict[str, str] | None = None, cwd: str | None = None, user: str | int | None = None,
         additional_gids: list[int] | None = None, caps: list[str] | None = None, no_new_privs: bool = False,
         tty: bool = False, apparmor: str | None = None, process_label: str | None = None, detach: bool = False,
         pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0,
         ignore_paused: bool = False, cgroup: list[str] | None = None) -> Result:  # fmt: skip
    """Run a process in a running container (``ocipy exec``) and wait for it.

    Give `args` (the container's process settings are the base, as runc
    does: `env` entries are added, `cwd`, `user` ("UID[:GID]"),
    `additional_gids`, `caps` (added to bounding/effective/permitted),
    `no_new_privs`, `tty`, `apparmor`, `process_label` change it) or a full
    `process` object.  Returns a :class:`Result`: with `capture` the output
    as bytes (with `tty`, both streams in ``stdout``).  `stdin` may be bytes
    (fed, then end of file), a file or an fd.  Without `capture` and
    redirections the process shares the caller's stdio (with `tty`, the
    caller's terminal is copied through a pty, as the CLI does).  `detach`
    returns at once (``Result(0, pid=PID)``): the process is collected at
    :func:`delete`, or use :func:`spawn` to wait for it.  `cgroup`:
    ``[CONTROLLER:]PATH`` sub-cgroups, `preserve_fds`, `pid_file`,
    `console_socket`, `ignore_paused`: as the CLI's flags."""
    opts: dict[str, Any] = {
        "process": process, "env": env, "cwd": cwd, "user": user, "additional_gids": additional_gids, "caps": caps,
        "no_new_privs": no_new_privs, "tty": tty, "apparmor": apparmor, "process_label": process_label,
        "pid_file": pid_file, "console_socket": console_socket, "preserve_fds": preserve_fds,
        "ignore_paused": ignore_paused, "cgroup": cgroup,
    }  # fmt: skip
    if capture:
        stdout = PIPE if stdout is None else stdout
        stderr = PIPE if stderr is None else stderr
    plain = stdin is None and stdout is None and stderr is None
    if detach:
        if capture:
            raise ValueError("exec: capture=True and detach=True: use spawn() to read a running process's output")
        from ocipy import _stdio

        pid, plan, _ = _stdio.spawn(container_id, args, root, opts, (stdin, stdout, stderr), detach=True)
        plan.close()
        return Result(0, pid=pid)
    if plain:
        # the caller's stdio (the CLI's exec): with a tty, our terminal is copied through the pty
        return Result(_exec_inherit(container_id, args, root or DEFAULT_ROOT, opts))
    from ocipy import _stdio

    pid, plan, root = _stdio.spawn(container_id, args, root, opts, (stdin, stdout, stderr))
    return _stdio.collect(_stdio.Stream(pid, plan), capture)


def _exec_inherit(container_id: str, args: list[str] | None, root: str, opts: dict[str, Any]) -> int:
    """exec with the caller's stdio (the runtime's exec_process, started under our lock): the exit status."""
    from ocipy.runtime.exec import exec_process

    console_socket = opts.pop("console_socket")
    exec_opts = {k: opts.pop(k) for k in ("pid_file", "preserve_fds", "ignore_paused", "cgroup")}
    process = _process(root, container_id, args, opts.pop("process"), **opts)
    _adopt()
    return exec_process(root, container_id, process, console_socket=console_socket, adopt=True, lock=_lock,
                        **exec_opts)  # fmt: skip


def exec_stream(container_id: str, args: list[str] | None = None, *, root: str | None = None, stdin: Any = None,
                stdout: Any = PIPE, stderr: Any = PIPE, **options: Any) -> Stream:  # fmt: skip
    """Run a process in the container and stream its output: a :class:`Stream`
    of ``(name, bytes)`` chunks, whose ``exit_code`` is set when the
    iteration ends.  Options as :func:`exec`'s (with `tty`, the pty's output
    comes as ``"stdout"``)."""
    from ocipy import _stdio

    pid, plan, _ = _stdio.spawn(container_id, args, root, dict(options), (stdin, stdout, stderr))
    return _stdio.Stream(pid, plan)


def spawn(container_id: str, args: list[str] | None = None, *, root: str | None = None, stdin: Any = None,
          stdout: Any = None, stderr: Any = None, **options: Any) -> Process:  # fmt: skip
    """Start a process in the container and return it running, as a
    :class:`Process` (its pid, the caller's ends of the :data:`PIPE`
    streams, with ``tty=True`` the pty master fd; :meth:`Process.wait`).
    Options as :func:`exec`'s."""
    from ocipy import _stdio

    pid, plan, _ = _stdio.spawn(container_id, args, root, dict(options), (stdin, stdout, stderr))
    return _stdio.Process(pid, plan)
