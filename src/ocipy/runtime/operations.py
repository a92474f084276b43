"""Operations on an existing container: start, kill, delete, run, state, list."""

from __future__ import annotations

import posix  # not os, on the start/kill/delete path: see store.py

from ocipy import log
from ocipy.errors import ContainerNotFound, HookError, InvalidState, NotRunning, OcipyError
from ocipy.runtime import lifecycle, store
from ocipy.runtime.store import STOPPED

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


# Linux signal numbers (the same on x86_64 and aarch64); a table, because the
# `signal` module pulls in `enum` (~4 ms of start-up for every `kill`).
SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31, "RTMIN": 34, "RTMAX": 64,
}  # fmt: skip
SIGKILL = 9


def parse_signal(value: str | int) -> int:
    """"KILL", "SIGKILL", "kill", "9", "RTMIN+3" → a signal number, as runc accepts them.

    0 is accepted (runc's `kill -a ID 0` checks the processes exist); numbers
    are ASCII decimal (str.isdigit also takes "١٥") of at most three digits."""
    text = str(value).strip(" \t\n\r")
    if text.isascii() and text.isdigit():
        number = int(text) if len(text) <= 3 else -1  # int() of 5,000 digits raises, and is no signal
        if not 0 <= number < 65:
            raise OcipyError(f"invalid signal {_shown(text)}: signal numbers are 0 to 64")
        return number
    if not text.isascii() or len(text) > 16:
        raise OcipyError(f"unknown signal {_shown(text)}")
    name = text.upper().removeprefix("SIG")
    for base, sign in (("RTMIN+", 1), ("RTMAX-", -1)):
        offset = name[len(base):]
        if name.startswith(base) and offset.isdigit() and len(offset) <= 2:
            number = SIGNALS[base[:-1]] + sign * int(offset)
            if 34 <= number <= 64:
                return number
    if name not in SIGNALS:
        raise OcipyError(f"unknown signal {_shown(text)}")
    return SIGNALS[name]


def _shown(text: str) -> str:
    """A user's value in an error line: quoted, and cut short if long."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def start(root: str, container_id: str) -> None:
    """Run the user program of a created container (runtime.md "Start")."""
    with store.locked(root, container_id) as container:
        lifecycle.refuse_start(container_id, container.status)
        _release_init(container)
        hooks_cfg = container.config.get("hooks")
        if hooks_cfg and hooks_cfg.get("poststart"):
            from ocipy.runtime import hooks
            from ocipy.spec.config import parse_hooks

            try:
                hooks.run_hooks("poststart", parse_hooks(hooks_cfg).of("poststart"), container.oci_state())
            except HookError:
                # runtime.md step 9: error, stop the container, continue at step 12
                _kill_and_wait(container)
                raise


def _release_init(container: store.Container) -> None:
    """Open the exec fifo's read end: the init's blocked open returns and it execs."""
    import select

    try:
        fd = posix.open(container.exec_fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidState("cannot start an already running container") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                try:
                    data = posix.read(fd, 1)
                except BlockingIOError:
                    continue
                if data:
                    break
                if not container.init_alive():
                    raise OcipyError("container init exited before start")
            elif not container.init_alive():
                raise OcipyError("container init exited before start")
    finally:
        posix.close(fd)
    posix.unlink(container.exec_fifo)


def _manager(container: store.Container) -> Any:
    data = container.data.get("cgroup")
    if not data:
        return None
    from ocipy.linux import cgroups

    return cgroups.from_state(data)


def kill(root: str, container_id: str, sig: str | int = "SIGTERM", all_processes: bool = False) -> None:
    """Send a signal to the container's init, or with all_processes to every process in its cgroup."""
    signum = parse_signal(sig)
    container = store.load(root, container_id)
    lifecycle.refuse_kill(container_id, container.status, all_processes)
    if container.status == STOPPED:  # only `--all` gets here (lifecycle note 2)
        # runtime.md "Kill": "Attempting to send a signal to a container that is
        # neither created nor running MUST have no effect on the container and
        # MUST generate an error" -- the spec's `kill ID SIGNAL`, kept above.
        # `--all` is runc's extension: on a stopped container it signals what is
        # left in the cgroup (nothing, with a pid namespace) and succeeds.
        manager = _manager(container)
        if manager is not None and manager.pids():
            manager.kill_all(signum)
        return
    manager = _manager(container) if all_processes else None
    if manager is not None:
        manager.kill_all(signum)
        return
    try:
        posix.kill(container.pid, signum)
    except ProcessLookupError:
        raise NotRunning(container_id) from None


def _kill_and_wait(container: store.Container) -> None:
    manager = _manager(container)
    if manager is not None:
        try:
            manager.kill_all(SIGKILL)
        except OSError:
            pass
    pid = container.pid
    if pid > 0 and container.init_alive():
        try:
            posix.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
        store.wait_gone(pid, container.data.get("pid_start"))
        store.reap(pid, container.data.get("pid_start"))


def _kill_leftovers(container: store.Container) -> None:
    """The init is gone; without a pid namespace its children may not be."""
    manager = _manager(container)
    if manager is not None and manager.pids():
        manager.kill_all(SIGKILL)


def delete(root: str, container_id: str, force: bool = False) -> None:
    """Delete a stopped container (runtime.md "Delete"); force kills it first.

    With force, a container that does not exist is not an error (runc's
    `delete --force`: engines clean up with it whatever state they are in)."""
    try:
        _delete(root, container_id, force)
    except ContainerNotFound:
        if not force:
            raise


def _delete(root: str, container_id: str, force: bool) -> None:
    with store.locked(root, container_id, recover=force) as container:  # -f: also a corrupt state.json
        status = container.status
        lifecycle.refuse_delete(container_id, status, force)
        if lifecycle.must_kill_before_delete(status):
            # a created container is killed, as runc does; creating means a create died
            _kill_and_wait(container)
        else:
            store.reap(container.pid, container.data.get("pid_start"))
            # Its cgroups gone at once, nothing was left in them to kill; otherwise
            # the manager looks (and _destroy removes what is left).
            if _remove_cgroups_quickly(container):
                _destroy(container, cgroups_done=True)
                return
            if force:
                _kill_leftovers(container)
        _destroy(container)


def _remove_cgroups_quickly(container: store.Container) -> bool:
    """True when the container has no cgroups, or they were removed by one rmdir
    each (linux/cgroup_rmdir.py: no cgroup manager to import)."""
    data = container.data.get("cgroup")
    if not data:
        return True
    from ocipy.linux import cgroup_rmdir

    return isinstance(data, dict) and cgroup_rmdir.remove(data)


def _destroy(container: store.Container, cgroups_done: bool = False) -> None:
    """Undo create (runtime.md step 12), then run poststop hooks (step 13)."""
    manager = None if cgroups_done or _remove_cgroups_quickly(container) else _manager(container)
    if manager is not None:
        try:
            manager.destroy()
        except (OcipyError, OSError) as e:
            log.warning(f"removing cgroups of {container.id}: {e}")
    hooks_cfg = container.config.get("hooks")
    state = container.oci_state()
    store.remove_dir(container.dir)
    if hooks_cfg and hooks_cfg.get("poststop"):
        from ocipy.runtime import hooks
        from ocipy.spec.config import parse_hooks

        try:
            hooks.run_hooks("poststop", parse_hooks(hooks_cfg).of("poststop"), dict(state, status=STOPPED))
        except HookError as e:
            log.warning(str(e))  # runtime.md step 13: poststop failures only warn


def state(root: str, container_id: str) -> dict[str, Any]:
    return store.load(root, container_id).oci_state()


def list_states(root: str) -> list[dict[str, Any]]:
    states = []
    for container_id in store.list_ids(root):
        try:
            states.append(store.load(root, container_id).oci_state())
        except OcipyError:
            continue
    return states


def wait_exit(pid: int) -> int:
    """Wait for our child `pid`; return its exit status, 128+N for a signal death."""
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if posix.WIFEXITED(status):
            return posix.WEXITSTATUS(status)
        if posix.WIFSIGNALED(status):
            return 128 + posix.WTERMSIG(status)


def run(root: str, container_id: str, bundle: str, *, detach: bool = False, keep: bool = False,
        pid_file: str | None = None, console_socket: str | None = None, no_pivot: bool = False,
        no_new_keyring: bool = False, preserve_fds: int = 0, systemd_cgroup: bool = False,
        forward_signals: bool = True) -> int:  # fmt: skip
    """create + start; in the foreground wait and return the exit status, then delete.

    `forward_signals` (main thread only): pass INT, TERM, HUP, QUIT, USR1 and
    USR2 on to the container while waiting, as runc does; the previous
    handlers are restored afterwards."""
    # The C module, loaded at every interpreter start: `signal` is a wrapper
    # that imports enum, functools and collections (~1.5 ms per container).
    import _signal as signal  # type: ignore[import-not-found]
    import os

    from ocipy.linux import syscalls
    from ocipy.runtime.create import create, load_config

    console_fd = None
    proxy = None
    config = None
    if not detach:
        # The init may be a grandchild (bootstrap path): become the subreaper so it is ours to wait for.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        if console_socket is None:
            config = load_config(os.path.abspath(bundle))  # parsed once: create takes it
            if config.process is not None and config.process.terminal:
                from ocipy.runtime.console import ConsoleProxy

                proxy = ConsoleProxy()
                console_fd = proxy.child_fd
    container = create(root, container_id, bundle, console_socket=console_socket, console_fd=console_fd,
                       pid_file=pid_file, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                       preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup, config=config)  # fmt: skip
    try:
        if proxy is not None:
            proxy.receive_master()
        start(root, container_id)
    except BaseException:
        delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    pid = container.pid
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                 signal.SIGUSR2) if forward_signals else ()  # fmt: skip

    def forward(signum: int, _frame: Any) -> None:
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = [signal.signal(sig, forward) for sig in forwarded]
    try:
        if proxy is not None:
            proxy.copy_until_exit(pid)
        status = wait_exit(pid)
        log.debug(f"process exited: pid {pid}, status {status}")
    finally:
        for sig, handler in zip(forwarded, previous, strict=True):
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if proxy is not None:
            proxy.close()
    if not keep:
        delete(root, container_id, force=True)
    return status


def _wants_terminal(bundle: str) -> bool:
    import os

    from ocipy.runtime.create import load_config

    process = load_config(os.path.abspath(bundle)).process
    return process is not None and process.terminal
