"""The child side of create: bootstrap process, then the container's init.

The parent (create.py) forks a *bootstrap* process, which joins and creates
the namespaces, then forks the *init*: the first process of the new pid
namespace.  The init builds the rootfs, pivots into it, applies the process
settings, reports "ready", and blocks opening the exec fifo until `start`
opens the other end; only then does it execve the user's program.

Without a user or time namespace and with no namespace to join, no bootstrap
is needed: `clone_init` clones the init directly into new namespaces.  The
messages exchanged with the parent are in `ocipy.runtime.handshake`.

bootstrap: wait for cgroup placement → setns(paths) → unshare(user) →
           id maps (parent) → unshare(rest) → time offsets → fork init

init: the steps of `INIT_STEPS`, in that order (read the table there: each
step says what it needs).  The seccomp filter is loaded as late as the
kernel allows: with no_new_privs right before "ready", after which only the
exec fifo, the startContainer hooks (which runtime-spec and runc run under
the filter) and the final execve(at) of the sealed trampoline happen;
without no_new_privs loading needs CAP_SYS_ADMIN, so it comes right before
the user and capability change.  Every fd the user process must not get is
close-on-exec before the filter (close_range is often not allowed).

Everything the children run is imported by the parent (`preload`): after
unshare(user) a mapped root may not read the host's package directory, and
after pivot_root nothing of the host is reachable.

Both run only in forked children: they never return, they `os._exit`.
"""

from __future__ import annotations

import errno
import os

from ocipy import log
from ocipy.errors import KernelError, OcipyError
from ocipy.linux import syscalls as sc
from ocipy.runtime.handshake import Channel, Msg
from ocipy.spec.runtime import NAMESPACES

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from ocipy.spec.config import Config, Hooks, Linux, Process


class InitContext:
    """Everything the children need, prepared by the parent before fork."""

    def __init__(self) -> None:
        self.config: Config  # parsed by create (spec/config.py)
        self.bundle = ""
        self.rootfs = ""
        self.state: dict[str, Any] = {}
        self.channel: Channel | None = None
        self.ns_fds: list[tuple[str, int]] = []  # (type, fd) to join, user first, mount last
        self.new_ns_flags = 0
        self.new_userns = False
        self.fifo_path = ""
        self.fifo_fd = -1
        self.console_fd: int | None = None
        self.stdio: tuple[int | None, int | None, int | None] | None = None  # the container's fds 0-2 (API)
        self.no_pivot = False
        self.new_keyring = True  # a session keyring of its own, unless --no-new-keyring
        self.extra_fds = 0
        self.listen_env = False
        self.cgroup_manager: Any = None
        self.seccomp_filter: Any = None  # built by the parent (libseccomp is loaded there)
        self.cgroup_self_join = False  # the bootstrap moves itself into the v1 cgroups
        self.idmap_trees: dict[int, int] = {}  # mount index -> detached tree (parent-made: idmap, userns sources)
        self.mount_plan: Any = None  # rootfs.mount_plan(config.mounts, bundle), made by the parent
        self.parent_hooks = False  # prestart/createRuntime hooks run by the parent
        self.cgroups_pending = False  # cloned directly: "init-go", then join v1, when needed
        # The parent's fds the children must not keep: the state dir lock (a
        # held flock would block `start`) and the parent's pipe ends (EOF on
        # them is how the children learn that the parent died).
        self.parent_only_fds: list[int] = []


def preload_process() -> None:
    """Import what the process side (init and exec) runs: see `preload`."""
    import _signal  # type: ignore[import-not-found]  # noqa: F401  # process.reset_signals, exec_now
    import resource  # noqa: F401  # process.set_rlimits
    import stat  # noqa: F401  # exe_guard.precheck

    from ocipy.linux import caps  # noqa: F401
    from ocipy.runtime import process

    process._cap_top()


def preload(config: Config, terminal: bool) -> None:
    """Import now, in the parent, everything the children use.

    After unshare(user) the children may no longer read the host's Python
    files (a mapped root is not the host's root: a checkout under a 0700
    directory is out of its reach), and after pivot_root they cannot reach
    them at all.  A lazy import in a child is a bug; the unit test
    test_init_steps checks the child-side functions against this list.
    """
    preload_process()
    from ocipy import jsonfast  # noqa: F401  # hooks: the state on stdin
    from ocipy.linux.cgroups import common  # noqa: F401  # Manager.join_self_v1
    from ocipy.runtime import hooks, rootfs  # noqa: F401

    if any(m.type == "cgroup" for m in config.mounts):
        from ocipy.linux.cgroups import mount  # noqa: F401  # rootfs._mount_cgroup
    if config.hooks.of("createContainer") or config.hooks.of("startContainer"):
        import subprocess  # noqa: F401
    if terminal:
        preload_terminal()


def preload_terminal() -> None:
    import fcntl  # noqa: F401
    import socket  # noqa: F401
    import struct  # noqa: F401
    import termios  # noqa: F401


def report_error(channel: Channel | None, exc: BaseException) -> NoReturn:
    if isinstance(exc, OcipyError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        message = f"internal error: {type(exc).__name__}: {exc}"
    message = " ".join(message.split("\n"))
    try:
        if channel is None:
            raise OSError
        channel.send(Msg.ERROR, message, strict=True)
    except OSError:
        # After "ready" nobody listens on the channel: tell the container's stderr.
        try:
            os.write(2, f"ocipy: container init: {message}\n".encode())
        except OSError:
            pass
    os._exit(1)


def fork_bootstrap(manager: Any) -> tuple[int, bool]:
    """Fork the bootstrap child; returns (pid, joins_itself).

    Where the kernel allows, the child is born in the container's cgroup2
    directory (clone3) and moves itself into the v1 hierarchies (see
    `Manager.join_self_v1`): neither path waits for the RCU grace period a
    parent writing the child's pid into cgroup.procs does.  Otherwise
    (joins_itself False) the parent places it, as before.
    """
    if manager is None:
        return os.fork(), False
    v2 = manager.v2_dir()
    if v2 is None:
        return os.fork(), True
    if not sc.single_threaded():
        return os.fork(), False
    fd = os.open(v2, sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return sc.clone_fork(0, fd), True
    except OcipyError:
        return os.fork(), False  # e.g. no clone3: the parent writes cgroup.procs
    finally:
        os.close(fd)


def can_clone_init(ctx: InitContext) -> bool:
    time_ns = NAMESPACES["time"][0]
    return not (ctx.new_userns or ctx.ns_fds or ctx.new_ns_flags & time_ns) and sc.single_threaded()


def clone_init(ctx: InitContext) -> int:
    """Clone the container's init straight into its new namespaces and cgroup.

    The common case (no user or time namespace, no namespace to join) needs
    no bootstrap process: one clone3 creates the namespaces, places the child
    in its cgroup2 directory, and the child moves itself into the v1
    hierarchies.  Like runc's init (CLONE_PARENT), the init is then a child
    of the creating process.  For a context `can_clone_init` accepted;
    returns the init's pid, or 0 when clone3 refused (take the bootstrap path).

    Only the cgroup2 directory needs to exist: the parent makes the v1 ones
    while the init mounts, and says "init-go" once they and the device rules
    are there (then records the pid and writes the limits, before "ready");
    the init waits for that before its first step that needs its cgroups
    (`_join_cgroups`).
    """
    manager = ctx.cgroup_manager
    v2 = manager.v2_dir() if manager is not None else None
    fd = os.open(v2, sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if v2 else -1
    # The cgroup namespace is rooted where its creator is: the init makes it
    # itself once it is in every hierarchy (_join_cgroups).
    cgroup_ns = NAMESPACES["cgroup"][0]
    try:
        pid = sc.clone_fork(ctx.new_ns_flags & ~cgroup_ns, fd)
    except OcipyError:
        return 0
    finally:
        if fd >= 0:
            os.close(fd)
    if pid == 0:
        ch = ctx.channel
        try:
            assert ch is not None
            _leave_parent(ctx.parent_only_fds, ctx.stdio)
            ctx.cgroups_pending = True
        except BaseException as e:  # noqa: BLE001 - a forked child must never return
            report_error(ch, e)
        container_init(ctx)
    return pid


def _leave_parent(parent_only_fds: list[int], stdio: tuple[int | None, int | None, int | None] | None = None) -> None:
    """A child's first step: drop the parent's fds, take the stdio the caller
    chose for the container (if any), and become non-dumpable."""
    for fd in parent_only_fds:
        os.close(fd)
    if stdio is not None:
        from ocipy.runtime.process import take_stdio

        take_stdio(stdio)
    sc.prctl(sc.PR_SET_DUMPABLE, 0)  # CVE-2019-5736: no /proc/PID/exe for the container


def enter_container(ch: Channel, parent_only_fds: list[int], ns_fds: list[tuple[str, int]],
                    self_join: Any = None, stdio: tuple[int | None, int | None, int | None] | None = None) -> None:  # fmt: skip
    """The bootstrap child's first steps (create and exec): drop the parent's
    fds, become non-dumpable, be in the container's cgroups (moving itself
    into them with `self_join`, else placed by the parent before "go"), then
    join the namespaces given by fd (user first)."""
    _leave_parent(parent_only_fds, stdio)
    ch.expect(Msg.GO)
    if self_join is not None:
        self_join.join_self_v1()
    for ns_type, fd in ns_fds:
        sc.setns(fd, NAMESPACES[ns_type][0], ns_type)
        os.close(fd)


def bootstrap(ctx: InitContext) -> NoReturn:
    """First child: namespaces, then fork the container's init."""
    ch = ctx.channel
    assert ch is not None
    try:
        enter_container(ch, ctx.parent_only_fds, ctx.ns_fds, ctx.cgroup_manager if ctx.cgroup_self_join else None,
                        ctx.stdio)  # fmt: skip
        if ctx.new_userns:
            sc.unshare(NAMESPACES["user"][0])
            ch.send(Msg.USERNS)
            ch.expect(Msg.MAPPED)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if ctx.new_ns_flags:
            sc.unshare(ctx.new_ns_flags)
        offsets = ctx.config.linux.time_offsets
        if offsets and ctx.new_ns_flags & NAMESPACES["time"][0]:
            _write_time_offsets(offsets)
        pid = os.fork()
        if pid == 0:
            container_init(ctx)
        ch.send(Msg.PID, pid)
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return
        report_error(ch, e)


def hand_over_notify_fd(ch: Channel, fd: int) -> None:
    """The parent copies our seccomp notify fd (pidfd_getfd) for the listener.

    A plain write, not sendmsg: the filter is already active and may notify
    on sendmsg, which nobody could answer yet.
    """
    ch.send(Msg.SECCOMP, fd)
    ch.expect(Msg.SECCOMP_DONE)
    os.close(fd)


def _write_time_offsets(offsets: dict[str, tuple[int, int]]) -> None:
    lines = "".join(
        f"{clock} {secs} {nanosecs}\n" for clock, (secs, nanosecs) in offsets.items() if clock in ("monotonic", "boottime")
    )
    with open("/proc/self/timens_offsets", "w") as f:
        f.write(lines)


def container_init(ctx: InitContext) -> NoReturn:
    """The container's first process. Reports errors to the parent, never returns."""
    ch = ctx.channel
    assert ch is not None
    log.debug(f"child process in init(): pid {os.getpid()}")
    log.release()  # we live until `start`: do not hold the caller's stderr (or the log) open
    try:
        if not ctx.cgroups_pending:
            ch.expect(Msg.INIT_GO)  # the parent knows our pid now
        run_steps(ctx, ch)
    except BaseException as e:  # noqa: BLE001
        report_error(ch, e)
    os._exit(127)


# --- the init's steps --------------------------------------------------------------


class _Run:
    """What the steps hand on to later steps."""

    def __init__(self, ctx: InitContext, ch: Channel) -> None:
        config = ctx.config
        assert config.process is not None  # create refuses a config without one
        self.ctx, self.ch, self.config = ctx, ch, config
        self.linux: Linux = config.linux
        self.proc: Process = config.process
        self.hooks: Hooks = config.hooks
        self.ns_types = self.linux.ns_types
        self.nnp = self.proc.no_new_privileges
        self.cwd: str = self.proc.cwd
        self.cwd_done = False
        self.proc_fd_dir = -1
        self.env: dict[str, str] = {}
        self.executable = ""
        self.container_state: dict[str, Any] = {}


def _join_cgroups(ctx: InitContext, ch: Channel) -> None:
    """Once the parent has made the v1 directories and the device rules, move
    into them: before the cgroup mount, /dev's nodes, the parent's hooks and
    pivot_root, as runc's init is in its cgroups before any of these."""
    if ctx.cgroups_pending:
        ch.expect(Msg.INIT_GO)
        if ctx.cgroup_manager is not None:
            ctx.cgroup_manager.join_self_v1()
        if ctx.new_ns_flags & NAMESPACES["cgroup"][0]:
            sc.unshare(NAMESPACES["cgroup"][0])
        ctx.cgroups_pending = False


def _hostname(r: _Run) -> None:
    if "uts" in r.ns_types:
        if r.config.hostname:
            sc.sethostname(r.config.hostname)
        if r.config.domainname:
            sc.setdomainname(r.config.domainname)


def _mounts(r: _Run) -> None:
    from ocipy.runtime import rootfs

    ctx = r.ctx
    if "mount" not in r.ns_types:
        return
    rootfs.set_root_propagation(r.linux.rootfs_propagation, ctx.rootfs)
    rootfs.bind_rootfs(ctx.rootfs)
    root_fd = os.open(ctx.rootfs, sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount_ctx = {"cgroup_manager": ctx.cgroup_manager, "cgroupns": "cgroup" in r.ns_types,
                     "trees": ctx.idmap_trees}  # fmt: skip
        plan = ctx.mount_plan or rootfs.mount_plan(r.config.mounts, ctx.bundle)
        for m, ops in zip(plan.mounts, plan.steps, strict=True):
            if m.type == "cgroup":
                _join_cgroups(ctx, r.ch)
            rootfs.execute(root_fd, ops, mount_ctx)
        _join_cgroups(ctx, r.ch)  # mknod under the container's device rules
        rootfs.create_devices(root_fd, r.linux.devices, "user" in r.ns_types, plan.dev_bound)
        os.close(rootfs.make_path(root_fd, r.cwd, True))  # runc creates a missing cwd
        rootfs.execute(root_fd, plan.deferred, mount_ctx)  # a read-only /dev once its nodes are made
    finally:
        os.close(root_fd)


def _cgroups(r: _Run) -> None:
    _join_cgroups(r.ctx, r.ch)


def _runtime_hooks(r: _Run) -> None:
    if r.ctx.parent_hooks:
        r.ch.send(Msg.HOOKS)
        r.ch.expect(Msg.HOOKS_DONE)


def _create_container_hooks(r: _Run) -> None:
    from ocipy.runtime import hooks

    r.container_state = dict(r.ctx.state, pid=os.getpid())
    if r.hooks.of("createContainer"):
        # runc runs them from the rootfs (its hooks write ./lib/...), still in the host's root
        hooks.run_hooks("createContainer", r.hooks.of("createContainer"), r.container_state, cwd=r.ctx.rootfs)


def _keep_proc_fd(r: _Run) -> None:
    # A handle on our own fd table that outlives pivot_root: the exec fifo is
    # re-opened through it (the fifo fd is O_PATH, made by the parent: a
    # mapped root may not reach --root).  It must not be the host's /proc:
    # while the container is "created" a container process granted
    # CAP_SYS_PTRACE can open our fds, and `..` from a host procfs handle
    # reaches the host's /proc/sys.  So it is a procfs of our own: detached,
    # read-only, only the pid directories, of the container's pid namespace.
    # Without one (kernel < 5.8, a refusing LSM) the fifo is re-opened through
    # the container's own /proc after pivot_root, as runc does.
    try:
        mnt = sc.procfs_of_pids(sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC)
    except KernelError:
        return
    try:
        r.proc_fd_dir = os.open("self/fd", sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mnt)
    finally:
        os.close(mnt)


def _pivot_root(r: _Run) -> None:
    from ocipy.runtime import rootfs

    if "mount" not in r.ns_types:
        os.chroot(r.ctx.rootfs)
        os.chdir("/")
    elif r.ctx.no_pivot:
        rootfs.move_root(r.ctx.rootfs)
    else:
        rootfs.pivot_root(r.ctx.rootfs)


def _sysctl(r: _Run) -> None:
    from ocipy.runtime import rootfs

    rootfs.write_sysctls(r.linux.sysctl)


def _protect_paths(r: _Run) -> None:
    from ocipy.runtime import rootfs

    if "mount" not in r.ns_types:
        return
    for path in r.linux.readonly_paths:
        rootfs.readonly_path(path)
    for path in r.linux.masked_paths:
        rootfs.mask_path(path, r.linux.mount_label or None)
    if r.config.root_readonly:
        rootfs.readonly_root()
    rootfs.finish_root_propagation(r.linux.rootfs_propagation)  # last: an unbindable tree refuses the binds above


def _terminal(r: _Run) -> None:
    from ocipy.runtime import process

    if r.ctx.console_fd is not None:
        process.setup_terminal(r.ctx.console_fd, r.proc)


def _process_settings(r: _Run) -> None:
    from ocipy.runtime import process

    process.set_oom_score_adj(r.proc)
    process.set_rlimits(r.proc.rlimits)
    process.set_scheduling(r.proc, r.linux)
    process.apply_lsm_labels(r.proc)


def _keyring(r: _Run) -> None:
    if not r.ctx.new_keyring:
        return
    try:
        sc.join_session_keyring(f"_ses.{r.ctx.state['id']}")
    except OcipyError as e:
        if getattr(e, "errno", 0) not in (errno.ENOSYS, errno.EACCES, errno.EPERM, errno.EDQUOT):
            raise


def _environment(r: _Run) -> None:
    from ocipy.runtime import process

    env = process.env_dict(r.proc)
    if "HOME" not in env:
        env["HOME"] = process.home_of(r.proc.user.uid)
    if r.ctx.listen_env:
        env["LISTEN_FDS"] = str(r.ctx.extra_fds)
        env["LISTEN_PID"] = "1"
    r.env = env
    r.executable = process.find_executable(r.proc, env)


def _cwd_as_root(r: _Run) -> None:
    from ocipy.runtime import process

    r.cwd_done = process.chdir_as_root(r.cwd)


def _exec_prepare(r: _Run) -> None:
    from ocipy.runtime import process

    process.prepare_exec(r.proc, r.ctx.extra_fds)


def _seccomp_privileged(r: _Run) -> None:
    from ocipy.runtime import process

    if not r.nnp:
        process.load_seccomp(r.ctx.seccomp_filter, lambda fd: hand_over_notify_fd(r.ch, fd))


def _user(r: _Run) -> None:
    from ocipy.runtime import process

    process.change_user(r.proc, process._cap_top())


def _cwd_as_user(r: _Run) -> None:
    from ocipy.runtime import process

    if not r.cwd_done:
        process.chdir_as_user(r.cwd)


def _no_new_privs(r: _Run) -> None:
    if r.nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def _exec_check(r: _Run) -> None:
    from ocipy.runtime import process

    process.check_executable(r.executable)


def _seccomp(r: _Run) -> None:
    from ocipy.runtime import process

    if r.nnp:
        process.load_seccomp(r.ctx.seccomp_filter, lambda fd: hand_over_notify_fd(r.ch, fd))


def _ready(r: _Run) -> None:
    r.ch.send(Msg.READY)
    r.ch.close()


def _exec_fifo(r: _Run) -> None:
    # Block until `start` opens the read end (runtime.md: the user program
    # MUST NOT run before start).
    fifo_fd = r.ctx.fifo_fd
    if r.proc_fd_dir >= 0:
        fd = os.open(str(fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=r.proc_fd_dir)
        os.close(r.proc_fd_dir)
    else:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)


def _start_container_hooks(r: _Run) -> None:
    from ocipy.runtime import hooks

    if r.hooks.of("startContainer"):
        hooks.run_hooks("startContainer", r.hooks.of("startContainer"), dict(r.container_state, status="created"))


def _execve(r: _Run) -> None:
    from ocipy.runtime import process

    process.exec_now(r.proc, r.executable, r.env)


# (name, what the step needs, function), in the order the init runs them.
# "host fs": the host's filesystem (before pivot_root); "/proc": a procfs;
# "caps": privileges dropped by "user"; "syscalls": what a seccomp profile
# must allow for the steps after "seccomp".
INIT_STEPS: tuple[tuple[str, str, Callable[[_Run], None]], ...] = (
    ("hostname", "uts namespace; sethostname, setdomainname", _hostname),
    ("mounts", "host fs (bundle, sources), mount namespace, CAP_SYS_ADMIN; joins the cgroups first", _mounts),
    ("cgroups", "host /sys/fs/cgroup: move into the v1 hierarchies, then unshare(cgroup)", _cgroups),
    ("runtime hooks", "the parent runs prestart and createRuntime hooks (handshake)", _runtime_hooks),
    ("createContainer hooks", "host fs, cwd = rootfs; fork, execve, wait", _create_container_hooks),
    ("proc fd dir", "fsopen(proc): a private pid-only procfs's self/fd, for the exec fifo", _keep_proc_fd),
    ("pivot_root", "host fs, CAP_SYS_ADMIN; after it only the container's files", _pivot_root),
    ("sysctl", "the container's /proc/sys", _sysctl),
    ("readonly and masked paths", "the container's /proc and /sys, CAP_SYS_ADMIN", _protect_paths),
    ("terminal", "the container's /dev/pts, the console socket", _terminal),
    ("process settings", "/proc/self (oom_score_adj, attr), CAP_SYS_RESOURCE, CAP_SYS_NICE", _process_settings),
    ("keyring", "keyctl", _keyring),
    ("environment", "the container's /etc/passwd and PATH: finds the executable", _environment),
    ("cwd as root", "the container's cwd, with root's access (runc chdirs before the user change)", _cwd_as_root),
    ("exec prepare", "umask, signal dispositions, close_range(CLOEXEC): fds marked before any filter",
     _exec_prepare),
    ("seccomp without no_new_privs", "CAP_SYS_ADMIN: loaded before the user change; seccomp, notify handshake",
     _seccomp_privileged),
    ("user", "CAP_SETUID/SETGID/SETPCAP; setgroups, setresgid, setresuid, capset, prctl", _user),
    ("cwd as user", "the container's cwd, when root could not reach it", _cwd_as_user),
    ("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)", _no_new_privs),
    ("exec check", "stat, access: the executable is runnable (a create error, not a start one)", _exec_check),
    ("seccomp", "seccomp(2) with no_new_privs; the notify handshake (write, read) may follow", _seccomp),
    ("ready", "under the filter: write, close", _ready),
    ("exec fifo", "under the filter: openat (via /proc/self/fd), write, close", _exec_fifo),
    ("startContainer hooks", "under the filter, as runc: fork, execve, wait, pipes", _start_container_hooks),
    ("execve", "under the filter: execveat of the sealed trampoline (execve by path as fallback)", _execve),
)


def run_steps(ctx: InitContext, ch: Channel) -> NoReturn:
    r = _Run(ctx, ch)
    for _name, _needs, step in INIT_STEPS:
        step(r)
    os._exit(127)  # _execve does not return
