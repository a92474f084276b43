"""The child side of create: bootstrap process, then the container's init.

The parent (create.py) forks a *bootstrap* process, which joins and creates
the namespaces, then forks the *init*: the first process of the new pid
namespace.  The init builds the rootfs, pivots into it, applies the process
settings, reports "ready", and blocks opening the exec fifo until `start`
opens the other end; only then does it execve the user's program.

Without a user or time namespace and with no namespace to join, no bootstrap
is needed: `clone_init` clones the init directly into new namespaces.

Fixed order (runtime.md lifecycle, runc's behaviour):
  bootstrap: wait for cgroup placement → setns(paths) → unshare(user) →
             id maps (parent) → unshare(rest) → time offsets → fork init
  init:      hostname → mounts → devices → prestart/createRuntime hooks
             (parent) → createContainer hooks → pivot_root → sysctl →
             readonly/masked paths → readonly root → terminal → oom score →
             rlimits → user, caps, seccomp → "ready" → exec fifo →
             startContainer hooks → execve

Both run only in forked children: they never return, they `os._exit`.
"""

from __future__ import annotations

import errno
import os

from ocipy import log
from ocipy.errors import OcipyError
from ocipy.linux import syscalls as sc
from ocipy.spec.runtime import NAMESPACES

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any, NoReturn


class Channel:
    """Line messages over a pair of pipes between the parent and its children."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._buf = b""

    def send(self, message: str, strict: bool = False) -> None:
        try:
            os.write(self.wfd, (message.replace("\n", " ") + "\n").encode())
        except BrokenPipeError:
            if strict:
                raise
            # The other side is gone: its last words (or EOF) are what recv reads next.

    def recv(self) -> str:
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def expect(self, word: str) -> str:
        try:
            message = self.recv()
        except EOFError:
            os._exit(1)  # the parent went away: nothing to create any more
        if message.split(" ", 1)[0] != word:
            os._exit(1)
        return message

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


class InitContext:
    """Everything the children need, prepared by the parent before fork."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
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
        self.no_pivot = False
        self.new_keyring = True  # a session keyring of its own, unless --no-new-keyring
        self.extra_fds = 0
        self.listen_env = False
        self.cgroup_manager: Any = None
        self.seccomp_filter: Any = None  # built by the parent (libseccomp is loaded there)
        self.cgroup_self_join = False  # the bootstrap moves itself into the v1 cgroups
        self.idmap_trees: dict[int, int] = {}  # mount index -> detached tree (parent-made: idmap, userns sources)
        self.mount_plan: Any = None  # rootfs.mount_plan(config, bundle), made by the parent
        self.parent_hooks = False  # prestart/createRuntime hooks run by the parent
        self.cgroups_pending = False  # cloned directly: "init-go", then join v1, when needed
        # The parent's fds the children must not keep: the state dir lock (a
        # held flock would block `start`) and the parent's pipe ends (EOF on
        # them is how the children learn that the parent died).
        self.parent_only_fds: list[int] = []


def preload(config: dict[str, Any], terminal: bool) -> None:
    """Import now, in the parent, everything the children use.

    After unshare(user) the children may no longer read the host's Python
    files (a mapped root is not the host's root), and after pivot_root they
    cannot reach them at all.
    """
    import resource  # noqa: F401

    from ocipy.linux import caps  # noqa: F401
    from ocipy.runtime import hooks, process, rootfs  # noqa: F401

    process._cap_top()
    hook_cfg = config.get("hooks") or {}
    if hook_cfg.get("createContainer") or hook_cfg.get("startContainer"):
        import subprocess  # noqa: F401
    if terminal:
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
        message = f"{type(exc).__name__}: {exc}"
    try:
        if channel is None:
            raise OSError
        channel.send("error " + message, strict=True)
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
            _leave_parent(ctx.parent_only_fds)
            ctx.cgroups_pending = True
        except BaseException as e:  # noqa: BLE001 - a forked child must never return
            report_error(ch, e)
        container_init(ctx)
    return pid


def _leave_parent(parent_only_fds: list[int]) -> None:
    """A child's first step: drop the parent's fds and become non-dumpable."""
    for fd in parent_only_fds:
        os.close(fd)
    sc.prctl(sc.PR_SET_DUMPABLE, 0)  # CVE-2019-5736: no /proc/PID/exe for the container


def enter_container(ch: Channel, parent_only_fds: list[int], ns_fds: list[tuple[str, int]],
                    self_join: Any = None) -> None:  # fmt: skip
    """The bootstrap child's first steps (create and exec): drop the parent's
    fds, become non-dumpable, be in the container's cgroups (moving itself
    into them with `self_join`, else placed by the parent before "go"), then
    join the namespaces given by fd (user first)."""
    _leave_parent(parent_only_fds)
    ch.expect("go")
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
        enter_container(ch, ctx.parent_only_fds, ctx.ns_fds, ctx.cgroup_manager if ctx.cgroup_self_join else None)
        if ctx.new_userns:
            sc.unshare(NAMESPACES["user"][0])
            ch.send("userns")
            ch.expect("mapped")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if ctx.new_ns_flags:
            sc.unshare(ctx.new_ns_flags)
        offsets = (ctx.config.get("linux") or {}).get("timeOffsets")
        if offsets and ctx.new_ns_flags & NAMESPACES["time"][0]:
            _write_time_offsets(offsets)
        pid = os.fork()
        if pid == 0:
            container_init(ctx)
        ch.send(f"pid {pid}")
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - a forked child must never return
        report_error(ch, e)


def hand_over_notify_fd(ch: Channel, fd: int) -> None:
    """The parent copies our seccomp notify fd (pidfd_getfd) for the listener.

    A plain write, not sendmsg: the filter is already active and may notify
    on sendmsg, which nobody could answer yet.
    """
    ch.send(f"seccomp {fd}")
    ch.expect("seccomp-done")
    os.close(fd)


def _write_time_offsets(offsets: dict[str, Any]) -> None:
    lines = "".join(
        f"{clock} {int(v.get('secs', 0))} {int(v.get('nanosecs', 0))}\n"
        for clock, v in offsets.items()
        if clock in ("monotonic", "boottime")
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
            ch.expect("init-go")  # the parent knows our pid now
        _init(ctx, ch)
    except BaseException as e:  # noqa: BLE001
        report_error(ch, e)
    os._exit(127)


def _join_cgroups(ctx: InitContext, ch: Channel) -> None:
    """Once the parent has made the v1 directories and the device rules, move
    into them: before the cgroup mount, /dev's nodes, the parent's hooks and
    pivot_root, as runc's init is in its cgroups before any of these."""
    if ctx.cgroups_pending:
        ch.expect("init-go")
        if ctx.cgroup_manager is not None:
            ctx.cgroup_manager.join_self_v1()
        if ctx.new_ns_flags & NAMESPACES["cgroup"][0]:
            sc.unshare(NAMESPACES["cgroup"][0])
        ctx.cgroups_pending = False


def _init(ctx: InitContext, ch: Channel) -> NoReturn:
    from ocipy.runtime import hooks, process, rootfs

    config = ctx.config
    linux = config.get("linux") or {}
    proc = config["process"]
    hook_cfg = config.get("hooks") or {}
    ns_types = {ns["type"] for ns in linux.get("namespaces") or []}
    seccomp_filter = ctx.seccomp_filter
    if "uts" in ns_types:
        if config.get("hostname"):
            sc.sethostname(config["hostname"])
        if config.get("domainname"):
            sc.setdomainname(config["domainname"])

    if "mount" in ns_types:
        rootfs.set_root_propagation(config, ctx.rootfs)
        rootfs.bind_rootfs(ctx.rootfs)
        root_fd = os.open(ctx.rootfs, sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        mount_ctx = {"cgroup_manager": ctx.cgroup_manager, "cgroupns": "cgroup" in ns_types,
                     "trees": ctx.idmap_trees}  # fmt: skip
        plan = ctx.mount_plan or rootfs.mount_plan(config, ctx.bundle)
        for m, ops in zip(plan.mounts, plan.steps, strict=True):
            if m.type == "cgroup":
                _join_cgroups(ctx, ch)
            rootfs.execute(root_fd, ops, mount_ctx)
        _join_cgroups(ctx, ch)  # mknod under the container's device rules
        rootfs.create_devices(root_fd, config, "user" in ns_types, plan.dev_bound)
        os.close(rootfs.make_path(root_fd, proc.get("cwd") or "/", True))  # runc creates a missing cwd
        rootfs.execute(root_fd, plan.deferred, mount_ctx)  # a read-only /dev once its nodes are made
        os.close(root_fd)

    _join_cgroups(ctx, ch)
    if ctx.parent_hooks:
        ch.send("hooks")
        ch.expect("hooks-done")
    container_state = dict(ctx.state, pid=os.getpid())
    hooks.run_hooks("createContainer", hook_cfg.get("createContainer"), container_state)

    # Handles that must outlive pivot_root: the fifo and our own fd table.
    fifo_fd = ctx.fifo_fd  # opened by the parent: a mapped root may not reach --root
    proc_fd_dir = os.open("/proc/self/fd", sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    if "mount" in ns_types:
        if ctx.no_pivot:
            rootfs.move_root(ctx.rootfs)
        else:
            rootfs.pivot_root(ctx.rootfs)
        rootfs.write_sysctls(linux.get("sysctl") or {})
        for path in linux.get("readonlyPaths") or []:
            rootfs.readonly_path(path)
        for path in linux.get("maskedPaths") or []:
            rootfs.mask_path(path, linux.get("mountLabel"))
        if (config.get("root") or {}).get("readonly"):
            rootfs.readonly_root()
        rootfs.finish_root_propagation(config)  # last: an unbindable tree refuses the binds above
    else:
        os.chroot(ctx.rootfs)
        os.chdir("/")
        rootfs.write_sysctls(linux.get("sysctl") or {})

    if ctx.console_fd is not None:
        process.setup_terminal(ctx.console_fd, proc)
    process.set_oom_score_adj(proc)
    process.set_rlimits(proc.get("rlimits"))
    process.set_scheduling(proc, linux)
    process.apply_lsm_labels(proc)
    if ctx.new_keyring:
        try:
            sc.join_session_keyring(f"_ses.{ctx.state['id']}")
        except OcipyError as e:
            if getattr(e, "errno", 0) not in (errno.ENOSYS, errno.EACCES, errno.EPERM, errno.EDQUOT):
                raise
    env = process.env_dict(proc)
    user = proc.get("user") or {}
    if "HOME" not in env:
        env["HOME"] = process.home_of(user.get("uid", 0))
    if ctx.listen_env:
        env["LISTEN_FDS"] = str(ctx.extra_fds)
        env["LISTEN_PID"] = "1"
    executable = process.find_executable(proc, env)
    process.finalize(proc, seccomp_filter, lambda fd: hand_over_notify_fd(ch, fd))
    ch.send("ready")
    ch.close()

    # Block until `start` opens the read end (runtime.md: the user program
    # MUST NOT run before start).
    fd = os.open(str(fifo_fd), os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc_fd_dir)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    os.close(proc_fd_dir)
    if hook_cfg.get("startContainer"):
        hooks.run_hooks("startContainer", hook_cfg["startContainer"], dict(container_state, status="created"))
    process.execve(proc, executable, env, ctx.extra_fds)
    os._exit(127)
