"""Internal to ocipy.api: the stdio a container process gets, the copy loop
that reads its output while it runs, and the reaping of the processes the
API starts.  Not a public module: use :mod:`ocipy.api`.

The container's process gets its fds 0-2 from the child the runtime forks
(runtime/process.take_stdio): pipes, a memfd holding the stdin bytes, or any
fd the caller names.  The caller's own fds 0-2 are never changed.

End of output is the process's exit (a pidfd), then what is left in the
pipes: a pipe end inherited by another child of the caller (a container
created meanwhile by another thread holds it until its own execve) must not
make a capture wait forever.
"""

from __future__ import annotations

import _thread
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any

    from ocipy.api import Result

PIPE = -1  # stdin/stdout/stderr=PIPE: a pipe the caller reads (writes, for stdin)
DEVNULL = -2  # stdin/stdout/stderr=DEVNULL: /dev/null

_lock = _thread.allocate_lock()
_exits: dict[int, int] = {}  # pid -> exit status, for processes reaped here (waiters share them)
_tracked: dict[tuple[str, str], set[int]] = {}  # (root, id) -> pids started by the API, not yet reaped


def status_code(status: int) -> int:
    """A waitpid status as a shell shows it: the exit code, 128+N for signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def started(pid: int, key: tuple[str, str] | None = None) -> None:
    """A new process of ours: forget an old exit status of a reused pid, and
    remember it under its container (so that delete reaps it)."""
    with _lock:
        _exits.pop(pid, None)
        if key is not None:
            _tracked.setdefault(key, set()).add(pid)


def reap(pid: int) -> int | None:
    """The exit status of `pid` if it has exited, reaping it if it is our
    child; None while it runs.  ChildProcessError: not our child (and not
    reaped here before)."""
    with _lock:
        if pid in _exits:
            return _exits[pid]
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == 0:
            return None
        code = status_code(status)
        if len(_exits) >= 4096:
            del _exits[next(iter(_exits))]
        _exits[pid] = code
        for pids in _tracked.values():
            pids.discard(pid)
        return code


def pidfd(pid: int) -> int:
    return os.pidfd_open(pid)


def wait(pid: int, timeout: float | None = None, start_time: int | None = None,
         key: tuple[str, str] | None = None) -> int:  # fmt: skip
    """Wait for `pid` to exit; its exit status, or -1 when it is not our
    child (its status cannot be known).  TimeoutError after `timeout` seconds.

    `key` (a container's init): meanwhile collect the API's processes in that
    container as they end.  The init of a pid namespace finishes exiting only
    once every process of the namespace is reaped, and exec'd ones are ours."""
    import select
    import time

    try:
        code = reap(pid)
    except ChildProcessError:
        code = None
        if start_time is None:
            return -1
    if code is not None:
        return code
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return _after_exit(pid)
    others: dict[int, int] = {}  # pidfd -> pid of the container's exec'd processes
    try:
        if start_time is not None:
            from ocipy.runtime.store import process_start_time

            if process_start_time(pid) not in (None, start_time):
                return _after_exit(pid)  # another process has that pid now
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if key is not None:
                with _lock:
                    pids = set(_tracked.get(key, ())) - set(others.values())
                for other in pids:
                    try:
                        ofd = os.pidfd_open(other)
                    except ProcessLookupError:
                        continue
                    others[ofd] = other
                    poller.register(ofd, select.POLLIN)
            wait_ms = -1 if key is None else 1000  # with a key: look for new processes now and then
            if deadline is not None:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                wait_ms = left if wait_ms < 0 else min(wait_ms, left)
            ready = poller.poll(wait_ms)
            if any(rfd == fd for rfd, _ in ready):
                break
            for rfd, _ in ready:
                other = others.pop(rfd)
                poller.unregister(rfd)
                os.close(rfd)
                try:
                    reap(other)
                except ChildProcessError:
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"process {pid} still running after {timeout} s")
    finally:
        os.close(fd)
        for ofd in others:
            os.close(ofd)
    return _after_exit(pid)


def kill_tracked(key: tuple[str, str], timeout: float = 5.0) -> None:
    """SIGKILL the API's processes in a container and collect them (a forced
    delete: the init of a pid namespace cannot finish exiting before)."""
    with _lock:
        pids = list(_tracked.get(key, ()))
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            wait(pid, timeout)
        except (TimeoutError, ChildProcessError):
            pass  # frozen (a paused container), or not ours after all: delete -f deals with it


def _after_exit(pid: int) -> int:
    try:
        code = reap(pid)
    except ChildProcessError:
        return -1
    if code is None:  # exited (pidfd readable) but not yet a zombie we can see: rare, wait for it
        with _lock:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                return _exits.get(pid, -1)
            code = status_code(status)
            _exits[pid] = code
            for pids in _tracked.values():
                pids.discard(pid)
    return code


def reap_container(key: tuple[str, str], extra: list[int] | None = None, timeout: float = 5.0,
                   killed: bool = True) -> None:  # fmt: skip
    """After a delete: collect what the API started in the container (exec'd
    processes not waited for) and `extra` pids (left over without a pid
    namespace, reparented to us), so that no zombie of the caller stays.
    `killed` (delete -f killed them all): wait for them to finish dying."""
    with _lock:
        pids = _tracked.pop(key, set())
    pids.update(extra or [])
    if not pids:
        return
    import time

    deadline = time.monotonic() + timeout
    me = os.getpid()
    for pid in sorted(pids):
        while True:
            st = _stat(pid)
            if st is None or st[1] != me:
                break  # gone, or not ours
            if st[0] == b"Z":
                try:
                    reap(pid)
                except ChildProcessError:
                    pass
                break
            if not killed or time.monotonic() >= deadline:
                break
            time.sleep(0.002)


def children_in(cgroup_dirs: list[str]) -> list[int]:
    """Our children that are (or, as zombies, were) in one of these cgroup
    directories: /proc/PID/cgroup still names a zombie's cgroup, which
    cgroup.procs no longer lists."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None or st[1] != me:
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            path = line.split(":", 2)[-1].removesuffix(" (deleted)")
            if path not in ("", "/") and any(d.endswith(path) for d in cgroup_dirs):
                found.append(int(entry))
                break
    return found


def reap_finished(key: tuple[str, str]) -> None:
    """Collect the API's processes in this container that have exited already."""
    with _lock:
        pids = list(_tracked.get(key, ()))
    for pid in pids:
        try:
            reap(pid)
        except ChildProcessError:
            with _lock:
                _tracked.get(key, set()).discard(pid)


def _stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, parent pid) of `pid`, None if there is no such process."""
    from ocipy.linux import procstat

    f = procstat.fields(pid)
    return None if f is None else (f[procstat.STATE], int(f[procstat.PPID]))


def _data_fd(data: bytes) -> int:
    """A memfd holding `data`, at offset 0: stdin that ends (EOF) without a writer."""
    fd = os.memfd_create("ocipy-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Plan:
    """The fds 0-2 of one container process, and the caller's ends.

    `stdin`: None (the caller's), bytes/str (the data, then EOF), a file
    object or fd, PIPE or DEVNULL.  `stdout`/`stderr`: None (the caller's), a
    file object or fd, PIPE or DEVNULL.  `terminal`: the process gets a pty
    instead (its master comes back over a socketpair)."""

    def __init__(self, stdin: Any = None, stdout: Any = None, stderr: Any = None, terminal: bool = False) -> None:
        self.child: list[int | None] = [None, None, None]
        self.parent: dict[str, int] = {}  # "stdin" (write end), "stdout", "stderr" (read ends)
        self.stdin_data = b""  # with a terminal: written to the master once it is there
        self._close_after: list[int] = []
        self.console_child: int | None = None
        self._console: Any = None
        self.master: int | None = None
        try:
            if terminal:
                import socket

                self._console, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                self.console_child = theirs.detach()
                self._close_after.append(self.console_child)
                if isinstance(stdin, bytes | bytearray | memoryview | str):
                    self.stdin_data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
                    stdin = None
                # the pty is the process's stdio: its output comes from the master
                stdout = None if stdout == PIPE else stdout
                stderr = None if stderr == PIPE else stderr
            self.child[0] = self._in(stdin)
            self.child[1] = self._out(stdout, "stdout")
            self.child[2] = self._out(stderr, "stderr")
        except BaseException:
            self.close()
            raise

    def _in(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes | bytearray | memoryview):
            fd = _data_fd(bytes(value))
            self._close_after.append(fd)
            return fd
        if value == PIPE:
            r, w = os.pipe()
            self._close_after.append(r)
            self.parent["stdin"] = w
            return r
        if value == DEVNULL:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            self._close_after.append(fd)
            return fd
        if isinstance(value, int):
            return value
        if hasattr(value, "fileno"):
            try:
                return int(value.fileno())
            except (OSError, ValueError, AttributeError):
                pass  # io.BytesIO and friends: no fd
        if hasattr(value, "read"):
            return self._in(value.read())
        raise TypeError(f"stdin: expected bytes, a file, an fd, PIPE or DEVNULL, not {type(value).__name__}")

    def _out(self, value: Any, name: str) -> int | None:
        if value is None:
            return None
        if value == PIPE:
            r, w = os.pipe()
            self._close_after.append(w)
            self.parent[name] = r
            return w
        if value == DEVNULL:
            fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            self._close_after.append(fd)
            return fd
        if isinstance(value, int):
            return value
        if hasattr(value, "fileno"):
            if hasattr(value, "flush"):
                value.flush()
            return int(value.fileno())
        raise TypeError(f"{name}: expected a file, an fd, PIPE or DEVNULL, not {type(value).__name__}")

    def stdio(self) -> tuple[int | None, int | None, int | None] | None:
        if self.child == [None, None, None]:
            return None
        return self.child[0], self.child[1], self.child[2]

    def spawned(self) -> None:
        """The child has its copies: close ours (else our pipes never see EOF),
        then take the pty master if there is one."""
        for fd in self._close_after:
            os.close(fd)
        self._close_after = []
        if self._console is not None:
            import socket

            from ocipy.errors import OcipyError

            _, fds, _, _ = socket.recv_fds(self._console, 64, 1)
            self._console.close()
            self._console = None
            if not fds:
                raise OcipyError("the container sent no terminal")
            self.master = fds[0]
            os.set_inheritable(self.master, False)
            if self.stdin_data:
                _write_all(self.master, self.stdin_data + b"\x04")  # then EOF, as a user's ^D

    def outputs(self) -> dict[int, str]:
        """The fds to read, by stream name (the pty master counts as stdout)."""
        outs = {fd: name for name, fd in self.parent.items() if name != "stdin"}
        if self.master is not None:
            outs[self.master] = "stdout"
        return outs

    def close(self) -> None:
        for fd in [*self._close_after, *self.parent.values()]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._close_after, self.parent = [], {}
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.master is not None:
            try:
                os.close(self.master)
            except OSError:
                pass
            self.master = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def chunks(pid: int, outputs: dict[int, str], chunk_size: int = 65536) -> Generator[tuple[str, bytes], None, None]:
    """(stream name, bytes) as `pid` writes them, until it has exited and
    what it wrote is read.  Closes nothing: the caller owns the fds."""
    import select

    fd_pid = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd_pid, select.POLLIN)
        live = dict(outputs)
        for fd in live:
            poller.register(fd, select.POLLIN)
        exited = False
        while live and not exited:
            for fd, _ in poller.poll():
                if fd == fd_pid:
                    exited = True
                    continue
                if fd not in live:
                    continue
                data = _read(fd, chunk_size)
                if data:
                    yield live[fd], data
                else:
                    poller.unregister(fd)
                    del live[fd]
        for fd, name in live.items():  # exited: what is left in the pipes, without waiting for EOF
            os.set_blocking(fd, False)
            while True:
                data = _read(fd, chunk_size)
                if not data:
                    break
                yield name, data
    finally:
        os.close(fd_pid)


def _read(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return b""
    except OSError:  # EIO: the pty's last slave holder is gone
        return b""


# --- the objects ocipy.api hands out for running processes (ocipy.api.Stream, ocipy.api.Process) ---


class Stream:
    """The output of a running process, chunk by chunk: iterate for
    ``(name, data)`` pairs, ``name`` being ``"stdout"`` or ``"stderr"``.
    Once the iteration ends, :attr:`exit_code` holds the exit status.

    Leaving early (``break``, :meth:`close`, or the ``with`` block) kills the
    process (SIGKILL) and collects it; a run's container is deleted."""

    def __init__(self, pid: int, plan: Any, on_end: Any = None) -> None:
        self.pid = pid
        self.exit_code: int | None = None
        self._plan = plan
        self._on_end = on_end
        outputs = plan.outputs()
        self.streams = frozenset(outputs.values())  # the names this stream yields
        self._chunks: Generator[tuple[str, bytes], None, None] | None = chunks(pid, outputs)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple[str, bytes]:
        if self._chunks is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except StopIteration:
            self._finish(kill=False)
            raise
        except BaseException:
            self._finish(kill=True)
            raise

    def _finish(self, kill: bool) -> None:
        if self._chunks is None:
            return
        chunks, self._chunks = self._chunks, None
        chunks.close()
        try:
            if kill:
                try:
                    os.kill(self.pid, 9)
                except ProcessLookupError:
                    pass
            self.exit_code = wait(self.pid)
        finally:
            self._plan.close()
            if self._on_end is not None:
                self._on_end()

    def close(self) -> None:
        """Stop reading: kill the process if it still runs, and collect it."""
        self._finish(kill=True)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_chunks", None) is not None:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing can be reported from a finaliser
                pass


class Process:
    """A process started in a container by :meth:`Container.spawn`, running.

    ``stdin`` (a writable fd), ``stdout`` and ``stderr`` (readable fds) are
    set for the streams given as :data:`PIPE`; with ``tty=True`` ``master``
    is the pty master fd (read the output, write the input, set the window
    size).  They are the caller's to use; :meth:`close` (or the end of the
    ``with`` block, which also waits) closes them.  :meth:`wait` collects
    the process and returns its exit status."""

    def __init__(self, pid: int, plan: Any) -> None:
        self.pid = pid
        self.exit_code: int | None = None
        self._plan = plan
        self.stdin: int | None = plan.parent.get("stdin")
        self.stdout: int | None = plan.parent.get("stdout")
        self.stderr: int | None = plan.parent.get("stderr")
        self.master: int | None = plan.master

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit status (TimeoutError after `timeout` s)."""
        self.exit_code = wait(self.pid, timeout)
        return self.exit_code

    def poll(self) -> int | None:
        """The exit status if the process has ended, else None."""
        try:
            code = reap(self.pid)
        except ChildProcessError:
            code = -1
        if code is not None:
            self.exit_code = code
        return code

    def kill(self, signal: str | int = "TERM") -> None:
        """Send a signal (name or number) to the process, while it runs."""
        from ocipy.runtime.operations import parse_signal

        if self.exit_code is None:
            try:
                os.kill(self.pid, parse_signal(signal))
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Close the caller's ends of the pipes and the pty master."""
        self._plan.close()
        self.stdin = self.stdout = self.stderr = self.master = None

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self.exit_code is None:
            self.kill("KILL")
        if self.stdin is not None:
            os.close(self.stdin)
            self._plan.parent.pop("stdin", None)
            self.stdin = None
        try:
            self.wait()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, exit_code={self.exit_code})"




def collect(stream: Stream, capture: bool) -> Result:
    """Read a stream to its end: a Result with the streams it had."""
    from ocipy.api import Result

    out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    with stream:
        for name, data in stream:
            out[name].append(data)
    assert stream.exit_code is not None
    stdout = b"".join(out["stdout"]) if "stdout" in stream.streams else None
    stderr = b"".join(out["stderr"]) if "stderr" in stream.streams else None
    return Result(stream.exit_code, stdout, stderr, stream.pid)




def spawn(container_id: str, args: list[str] | None, root: str | None, opts: dict[str, Any],
           plan_args: tuple[Any, Any, Any], detach: bool = False) -> tuple[int, Any, str]:  # fmt: skip
    """Start exec's process with pipes/pty per `plan_args`: (pid, plan, root)."""
    from ocipy.api import DEFAULT_ROOT, _adopt, _lock, _process
    from ocipy.runtime.exec import spawn_process

    root = root or DEFAULT_ROOT
    exec_opts = {k: opts.pop(k) for k in ("pid_file", "console_socket", "preserve_fds", "ignore_paused", "cgroup")
                 if k in opts}  # fmt: skip
    process = _process(root, container_id, args, opts.pop("process", None), env=opts.pop("env", None),
                       cwd=opts.pop("cwd", None), user=opts.pop("user", None),
                       additional_gids=opts.pop("additional_gids", None), caps=opts.pop("caps", None),
                       no_new_privs=bool(opts.pop("no_new_privs", False)), tty=bool(opts.pop("tty", False)),
                       apparmor=opts.pop("apparmor", None), process_label=opts.pop("process_label", None))  # fmt: skip
    if opts:
        raise TypeError(f"exec: unexpected keyword {sorted(opts)[0]!r}")
    tty = bool(process.get("terminal"))
    _adopt()
    reap_finished((root, container_id))
    with _lock:  # see ocipy.api._lock: our pipes must not leak into another thread's fork
        # detached, a terminal needs a console socket (the runtime's error says so)
        plan = Plan(*plan_args, terminal=tty and not detach and exec_opts.get("console_socket") is None)
        try:
            pid = spawn_process(root, container_id, process, detach=detach, adopt=True, stdio=plan.stdio(),
                                console_fd=plan.console_child, **exec_opts)  # fmt: skip
            started(pid, (root, container_id))
            plan.spawned()
        except BaseException:
            plan.close()
            raise
    return pid, plan, root
