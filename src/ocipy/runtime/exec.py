"""exec: run a new process inside a running container.

Like create, a bootstrap child joins the container (cgroups first, then the
user namespace, the other namespaces and the mount namespace last) and forks
the process, so that it is inside the container's pid namespace.  The new
process gets the same treatment as the container's init: rlimits, user,
capabilities, no_new_privs, the container's seccomp filter, a clean fd table.
A close-on-exec pipe tells the parent whether execve happened.
"""

from __future__ import annotations

import os

from ocipy import log
from ocipy.errors import ConfigError, InvalidState, NotRunning, OcipyError
from ocipy.linux import syscalls as sc
from ocipy.runtime import store
from ocipy.runtime.handshake import Channel, FdOwner, Msg, pipes
from ocipy.runtime.init import enter_container, fork_bootstrap, hand_over_notify_fd, report_error
from ocipy.spec.config import Linux, Process, parse, parse_process
from ocipy.spec.runtime import NAMESPACES, find_nul

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any, NoReturn


def build_process(config: dict[str, Any], args: list[str], *, env: list[str] | None = None,
                  cwd: str | None = None, user: str | None = None, additional_gids: list[int] | None = None,
                  caps: list[str] | None = None, no_new_privs: bool = False, tty: bool = False) -> dict[str, Any]:  # fmt: skip
    """runc's exec without --process: the container's process (the saved config.json
    dict) with these changes, as a process.json document for `exec_process`."""
    from ocipy.errors import ConfigError

    # Shallow copies of what changes below (`copy.deepcopy` costs an import on the exec path).
    process: dict[str, Any] = dict(config.get("process") or {})
    process["user"] = dict(process.get("user") or {})
    process["capabilities"] = {k: list(v or []) for k, v in (process.get("capabilities") or {}).items()}
    process["args"] = args
    process["env"] = list(process.get("env") or []) + list(env or [])
    if cwd:
        process["cwd"] = cwd
    process.setdefault("cwd", "/")
    process["terminal"] = tty
    process.pop("consoleSize", None)
    if user:
        uid, _, gid = user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid) if gid else 0}
        except ValueError:
            raise ConfigError("--user", f"{user!r} is not UID[:GID]") from None
    if additional_gids:
        process.setdefault("user", {})["additionalGids"] = additional_gids
    if caps:
        sets = process.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted"):
            sets[name] = list(sets.get(name) or []) + [c.upper() for c in caps]
    if no_new_privs:
        process["noNewPrivileges"] = True
    return process


class _ExecContext:
    def __init__(self) -> None:
        self.process = Process()
        self.seccomp_filter: Any = None
        self.linux = Linux()
        self.manager: Any = None
        self.cgroup_self_join = False
        self.ns_fds: list[tuple[str, int]] = []
        self.channel: Channel | None = None
        self.parent_only_fds: list[int] = []
        self.console_fd: int | None = None
        self.extra_fds = 0
        self.stdio: tuple[int | None, int | None, int | None] | None = None


def exec_process(root: str, container_id: str, process: dict[str, Any], *, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0,
                 ignore_paused: bool = False, cgroup: list[str] | None = None, adopt: bool = False,
                 lock: Any = None) -> int:  # fmt: skip
    """Run `process` in the container with the caller's stdio (with a terminal
    and no console socket, the caller's copied through a pty held here);
    foreground returns its exit status (128+N on signal N), detached 0.

    `lock` (the API's, for callers with threads) is held while the process is started."""
    from ocipy.runtime.operations import wait_exit

    proxy = None
    if lock is not None:
        lock.acquire()
    try:
        if process.get("terminal") and console_socket is None and not detach:
            from ocipy.runtime.console import ConsoleProxy

            proxy = ConsoleProxy()  # the runtime holds the pty master and copies our stdio through it
        pid = spawn_process(root, container_id, process, detach=detach, pid_file=pid_file,
                            console_socket=console_socket, console_fd=proxy.child_fd if proxy else None,
                            preserve_fds=preserve_fds, ignore_paused=ignore_paused, cgroup=cgroup,
                            adopt=adopt)  # fmt: skip
        if proxy is not None:
            proxy.receive_master()
    except BaseException:
        if proxy is not None:
            proxy.close()
        raise
    finally:
        if lock is not None:
            lock.release()
    try:
        if detach:
            return 0
        if proxy is not None:
            proxy.copy_until_exit(pid)
        return wait_exit(pid)
    finally:
        if proxy is not None:
            proxy.close()


def spawn_process(root: str, container_id: str, process: dict[str, Any], *, detach: bool = False,
                  pid_file: str | None = None, console_socket: str | None = None, console_fd: int | None = None,
                  preserve_fds: int = 0, ignore_paused: bool = False, cgroup: list[str] | None = None,
                  adopt: bool = False, stdio: tuple[int | None, int | None, int | None] | None = None) -> int:  # fmt: skip
    """Start `process` in the container and return its host pid once it has
    exec'd (not detached, or with `adopt`: as our child, for the caller to wait for).

    `console_fd`: a socket the child sends the pty master over (one end of the
    caller's socketpair, which the caller closes); `stdio`: fds that become
    the process's 0-2 (the caller closes its copies)."""
    from ocipy.runtime import create as create_mod

    create_mod.check_preserve_fds(preserve_fds)
    from ocipy.runtime.operations import _manager

    proc = parse_process(process)
    nul = find_nul(process, "process")
    if nul:
        raise ConfigError(nul, "contains a NUL character")
    container = store.load(root, container_id)
    status = container.status
    if status == store.PAUSED and not ignore_paused:
        raise InvalidState("cannot exec in a paused container (use --ignore-paused to override)")
    if status == store.STOPPED:
        raise InvalidState("cannot exec in a stopped container")  # runc's wording
    if status not in (store.CREATED, store.RUNNING, store.PAUSED):
        raise NotRunning(container_id)
    if proc.terminal and console_socket is None and console_fd is None:
        raise OcipyError("cannot allocate tty if ocipy will detach without setting console socket")
    linux = parse(container.config, resources=False).linux  # the saved config.json, typed again

    ctx = _ExecContext()
    ctx.process = proc
    ctx.linux = linux
    ctx.stdio = stdio
    _preload(ctx, linux)
    ctx.extra_fds = preserve_fds
    ns_types = [ns.type for ns in linux.namespaces]
    ns_types.sort(key=lambda t: (t != "user", t == "mount"))
    bootstrap_pid = pid = 0
    # Every fd made for the child is owned here until it is handed on: the
    # error paths close them all.
    with FdOwner() as fds:
        for ns_type in ns_types:
            name = NAMESPACES[ns_type][1]
            try:
                fd = fds.own(os.open(f"/proc/{container.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                raise OcipyError(f"container {container_id}: cannot open its {ns_type} namespace: {e.strerror}") from None
            ctx.ns_fds.append((ns_type, fd))
        if proc.terminal:
            if console_socket is not None:
                ctx.console_fd = fds.own(create_mod._connect_console(console_socket))
            else:
                ctx.console_fd = console_fd
        # The exec'd process is orphaned when the bootstrap exits: as our child
        # (subreaper) a failed one is reaped here, not left as a zombie of the
        # container's init. The CLI adopts a detached one too (it is handed on to
        # that init when the CLI exits); a long-lived API caller does not.
        if not detach or adopt:
            sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        parent, ctx.channel = pipes(fds)
        ctx.parent_only_fds = [parent.rfd, parent.wfd]
        try:
            manager = _manager(container)
            log.debug(f"nsexec container setup: joining the namespaces of {container_id} (init {container.pid})")
            if manager is not None:
                manager = manager.for_exec(cgroup, container.pid)  # and exec --cgroup [CONTROLLER:]SUB
            bootstrap_pid, ctx.cgroup_self_join = fork_bootstrap(manager)
            if bootstrap_pid == 0:
                ctx.manager = manager
                _bootstrap(ctx)
            # The child's ends, the namespaces and the console are the child's now.
            for fd in (ctx.channel.rfd, ctx.channel.wfd, *(fd for _, fd in ctx.ns_fds)):
                fds.close(fd)
            ctx.ns_fds = []
            if ctx.console_fd is not None and console_socket is not None:
                fds.close(ctx.console_fd)
            if manager is not None and not ctx.cgroup_self_join:
                manager.join(bootstrap_pid)
            parent.send(Msg.GO)
            pid = _await_exec(parent, bootstrap_pid, container, linux)
        except BaseException:
            create_mod._kill_children(bootstrap_pid, pid)
            raise
    if pid_file:
        try:
            create_mod._write_pid_file(pid_file, pid)
        except BaseException:
            # the process runs already: kill and reap it, as runc does, so the failed exec leaves nothing
            create_mod._kill_children(0, pid)
            raise
    return pid


def _await_exec(parent: Channel, bootstrap_pid: int, container: store.Container, linux: Linux) -> int:
    from ocipy.runtime.create import forward_notify_fd

    pid = 0
    while True:
        try:
            word, rest = parent.recv()
        except EOFError:
            break  # the close-on-exec write end went away: execve succeeded
        if word == Msg.ERROR:
            while not pid:  # the bootstrap's "pid" may come after the child's error
                try:
                    more, arg = parent.recv()
                except EOFError:
                    break
                if more == Msg.PID:
                    pid = int(arg)
            from ocipy.runtime.create import _kill_children

            _kill_children(bootstrap_pid, pid)  # and reap both: nothing left in the container
            raise OcipyError(f"exec failed: {rest}")
        if word == Msg.PID:
            pid = int(rest)
            os.waitpid(bootstrap_pid, 0)
        elif word == Msg.SECCOMP:
            assert linux.seccomp is not None
            forward_notify_fd(pid, int(rest), linux.seccomp, dict(container.oci_state(), pid=pid))
            parent.send(Msg.SECCOMP_DONE)
    if not pid:
        raise OcipyError("exec failed: the process did not start")
    return pid


def _bootstrap(ctx: _ExecContext) -> NoReturn:
    ch = ctx.channel
    assert ch is not None
    try:
        enter_container(ch, ctx.parent_only_fds, ctx.ns_fds, ctx.manager if ctx.cgroup_self_join else None, ctx.stdio)
        pid = os.fork()
        if pid == 0:
            try:
                _exec_child(ctx, ch)
            except BaseException as e:  # noqa: BLE001
                report_error(ch, e)
        ch.send(Msg.PID, pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return
        report_error(ch, e)


def _preload(ctx: _ExecContext, linux: Linux) -> None:
    """Load now what the child needs: after setns(user, mnt) the host's files are out of reach."""
    from ocipy.runtime.init import preload_process, preload_terminal

    preload_process()
    if ctx.process.terminal:
        preload_terminal()
    if linux.seccomp is not None:
        from ocipy.linux import seccomp

        ctx.seccomp_filter = seccomp.prepare(linux.seccomp, cache=True)


def _exec_child(ctx: _ExecContext, ch: Channel) -> NoReturn:
    """The process joining the container: the init's steps from "terminal" on
    (see init.INIT_STEPS), the seccomp filter last before execve."""
    from ocipy.runtime import process as proc_mod

    process = ctx.process
    log.debug(f"child process in init(): pid {os.getpid()} in the container")
    nnp = process.no_new_privileges
    cwd = process.cwd

    def notify(fd: int) -> None:
        hand_over_notify_fd(ch, fd)

    if ctx.console_fd is not None:
        proc_mod.setup_terminal(ctx.console_fd, process)
    proc_mod.set_oom_score_adj(process)
    proc_mod.set_rlimits(process.rlimits)
    proc_mod.set_scheduling(process, ctx.linux)
    proc_mod.apply_lsm_labels(process)
    env = proc_mod.env_dict(process)
    if "HOME" not in env:
        env["HOME"] = proc_mod.home_of(process.user.uid)
    executable = proc_mod.find_executable(process, env)
    log.debug(f"setns_init: about to exec {executable}")  # before the seccomp filter
    cwd_done = proc_mod.chdir_as_root(cwd)
    # ch's write end is close-on-exec (os.pipe): the parent reads EOF once execve succeeds.
    proc_mod.prepare_exec(process, ctx.extra_fds)
    if not nnp:
        proc_mod.load_seccomp(ctx.seccomp_filter, notify)  # needs CAP_SYS_ADMIN: before the user change
    proc_mod.change_user(process, proc_mod._cap_top())
    if not cwd_done:
        proc_mod.chdir_as_user(cwd)
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    proc_mod.check_executable(executable)
    if nnp:
        proc_mod.load_seccomp(ctx.seccomp_filter, notify)
    proc_mod.exec_now(process, executable, env)
    os._exit(127)
