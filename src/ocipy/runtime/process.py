"""Turning the runtime's process into the container's process.

Shared by the container init (create/run) and by exec: rlimits, oom score,
the terminal, user and groups, capabilities, no_new_privs, seccomp, and the
final execve with a clean signal state and no stray file descriptors.
"""

from __future__ import annotations

import os

from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.linux import exe_guard  # module level: it makes its memfd before pivot_root
from ocipy.linux import syscalls as sc
from ocipy.spec.runtime import DEFAULT_PATH

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.config import Linux, Process, Rlimit


def env_dict(process: Process) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.env:
        key, sep, value = item.partition("=")
        if key:
            env[key] = value if sep else ""
    return env


def find_executable(process: Process, env: dict[str, str]) -> str:
    """Resolve args[0] inside the container (after pivot_root) as execvp would."""
    name = process.args[0]
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(process.cwd, name)
        if not os.path.exists(path):
            raise OcipyError(f'exec: "{name}": stat {name}: no such file or directory')
        return path
    search = env.get("PATH", DEFAULT_PATH.partition("=")[2])
    for directory in search.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise OcipyError(f'exec: "{name}": executable file not found in $PATH')


def home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def set_rlimits(rlimits: list[Rlimit]) -> None:
    import resource

    for i, rl in enumerate(rlimits):
        try:
            resource.setrlimit(rl.resource, (rl.soft, rl.hard))
        except (ValueError, OSError) as e:
            raise ConfigError(f"process.rlimits[{i}]", f"setrlimit {rl.type} soft={rl.soft} hard={rl.hard}: {e}") from None


def set_oom_score_adj(process: Process) -> None:
    value = process.oom_score_adj
    if value is None:
        return  # config.md: if not set, the runtime MUST NOT change it
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ConfigError("process.oomScoreAdj", f"{value}: {e.strerror}") from None


def set_scheduling(process: Process, linux: Linux) -> None:
    """process.scheduler, process.ioPriority, linux.personality and linux.memoryPolicy (before caps are dropped)."""
    sched = process.scheduler
    if sched is not None:
        try:
            sc.sched_setattr(sched.policy, sched.flags, sched.nice, sched.priority, sched.runtime, sched.deadline,
                             sched.period)  # fmt: skip
        except KernelError as e:
            raise ConfigError("process.scheduler", f"{sched.policy_name}: {os.strerror(e.errno)}") from None
    if process.io_priority is not None:
        name, klass, priority = process.io_priority
        try:
            sc.ioprio_set_process(klass, priority)
        except KernelError as e:
            raise ConfigError("process.ioPriority", f"{name}/{priority}: {os.strerror(e.errno)}") from None
    if linux.personality is not None:
        sc.personality(linux.personality)
    policy = linux.memory_policy
    if policy is not None:
        from ocipy.spec.runtime import parse_id_list

        try:
            sc.set_mempolicy(policy.mode, parse_id_list(policy.nodes) or [] if policy.nodes else [])
        except KernelError as e:
            raise ConfigError("linux.memoryPolicy", f"{policy.mode_name} nodes={policy.nodes!r}: {os.strerror(e.errno)}") from None


def apply_lsm_labels(process: Process) -> None:
    """process.apparmorProfile and process.selinuxLabel take effect at execve, as with runc.

    Without the LSM in the kernel a label cannot be honoured: that is an
    error, never a silent downgrade.
    """
    profile = process.apparmor_profile
    if profile:
        for path in ("/proc/thread-self/attr/apparmor/exec", "/proc/self/attr/exec"):
            try:
                with open(path, "w") as f:
                    f.write(f"exec {profile}")
                break
            except OSError as e:
                failure = e.strerror
        else:
            raise ConfigError("process.apparmorProfile", f"cannot apply profile {profile!r}: {failure} (is AppArmor enabled?)")
    label = process.selinux_label
    if label:
        if not os.path.isdir("/sys/fs/selinux") and not os.path.exists("/proc/self/attr/current"):
            raise ConfigError("process.selinuxLabel", "an SELinux label is set, but SELinux is disabled or not supported")
        try:
            with open("/proc/thread-self/attr/exec", "w") as f:
                f.write(label)
        except OSError as e:
            raise ConfigError("process.selinuxLabel", f"cannot apply {label!r}: {e.strerror}") from None


def setup_terminal(console_fd: int, process: Process) -> None:
    """Make a pty, send its master over the console socket, and use its slave for stdio."""
    import fcntl
    import socket
    import struct
    import termios

    master, slave = os.openpty()
    try:
        os.fchown(slave, process.user.uid, -1)
        if process.console_size is not None:
            height, width = process.console_size
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
        sock = socket.socket(fileno=console_fd)
        try:
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
        finally:
            sock.detach()
            os.close(console_fd)
    finally:
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def take_stdio(stdio: tuple[int | None, int | None, int | None]) -> None:
    """In a child, before the container is entered: the given fds become 0, 1
    and 2 (None keeps the inherited one).  The API hands the container pipes
    this way, never by changing the caller's own fds.  Copied aside first, so
    that a source that is itself 0-2 (stdout and stderr swapped) is not lost."""
    copies = [os.dup(fd) if fd is not None else -1 for fd in stdio]
    for target, fd in enumerate(copies):
        if fd >= 0:
            os.dup2(fd, target)  # inheritable: the container's process keeps it across execve
            os.close(fd)


def reset_signals(keep_sigpipe: bool = False) -> None:
    """Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve, so restore them."""
    import _signal as signal  # type: ignore[import-not-found]  # the C module: `signal` pulls in enum
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        if not (keep_sigpipe and sig == signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def change_user(process: Process, cap_top: int) -> None:
    """Groups, gid, uid, then the capability sets (keepcaps bridges setuid)."""
    from ocipy.linux import caps

    user = process.user
    uid, gid = user.uid, user.gid
    # No `capabilities` object at all: leave them alone, as runc does (root keeps its set).
    capabilities = process.capabilities
    if capabilities is not None:
        caps.drop_bounding(capabilities.bounding, cap_top)
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(list(user.additional_gids))
    except PermissionError:
        # setgroups is denied in a user namespace with setgroups=deny; runc tolerates that
        if user.additional_gids:
            raise
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise KernelError("setresuid/setresgid", f"{uid}:{gid}", e.errno or 1) from None
    if capabilities is not None:
        caps.apply(capabilities, cap_top)
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)


def chdir_in_root(cwd: str) -> None:
    """chdir to `cwd` resolved inside our root, never through a magic link.

    A cwd like /proc/self/fd/N naming a directory fd of the runtime would put
    the process outside the container's root (CVE-2024-21626 class): resolve
    with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), then check with
    getcwd(), which fails (ENOENT) when the cwd is unreachable from the root.
    """
    import errno

    try:
        root = os.open("/", sc.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = sc.openat2(root, cwd.lstrip("/") or ".", sc.O_PATH | os.O_DIRECTORY, 0,
                            sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)  # fmt: skip
        finally:
            os.close(root)
        try:
            os.fchdir(fd)
        finally:
            os.close(fd)
    except KernelError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):  # openat2 missing or denied by seccomp
            raise OSError(e.errno, os.strerror(e.errno), cwd) from None
        os.chdir(cwd)
    try:
        os.getcwd()
    except FileNotFoundError:
        raise OSError(errno.EACCES, "the directory is outside the container's root", cwd) from None


def chdir_as_root(cwd: str) -> bool:
    """Try the cwd before the user change (runc does: root may reach a
    directory the user cannot).  True when done; False when permission was
    denied (retried as the user by `chdir_as_user`)."""
    try:
        chdir_in_root(cwd)
    except PermissionError:
        return False
    except OSError as e:
        raise OcipyError(f"process.cwd: chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}") from None
    return True


def chdir_as_user(cwd: str) -> None:
    try:
        chdir_in_root(cwd)
    except OSError as e:
        raise OcipyError(f"process.cwd: chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}") from None


def load_seccomp(seccomp_filter: Any, on_notify_fd: Any) -> None:
    """Load the filter (if any); with SCMP_ACT_NOTIFY rules `on_notify_fd(fd)`
    hands the listener on right away, before any later syscall can need it."""
    if seccomp_filter is None:
        return
    notify_fd = seccomp_filter.load()
    if notify_fd is not None and on_notify_fd is not None:
        on_notify_fd(notify_fd)


def prepare_exec(process: Process, extra_fds: int) -> None:
    """What execve needs that a seccomp profile may deny, done before the filter:
    the umask, the signal dispositions, and every fd but 0-2 and the
    preserved ones marked close-on-exec (CVE-2024-21626 class)."""
    umask = process.user.umask
    os.umask(umask if umask is not None else 0o022)
    reset_signals(keep_sigpipe=True)  # SIGPIPE last: startContainer hooks may not read their stdin
    sc.close_range(3 + extra_fds, 0xFFFFFFFF, sc.CLOSE_RANGE_CLOEXEC)


def check_executable(executable: str) -> None:
    """A create-time error (not a start-time one) when execve would refuse it."""
    exe_guard.precheck(executable)


def exec_now(process: Process, executable: str, env: dict[str, str]) -> None:
    """Replace this process with the user's program. Never returns.

    Runs under the seccomp filter: only rt_sigaction and execveat (execve
    by path as a fallback) of the sealed trampoline."""
    import _signal as signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    exe_guard.execve(executable, process.args, env)  # via a sealed memfd (CVE-2019-5736 class)


_CAP_TOP: list[int] = []


def _cap_top() -> int:
    """cap_last_cap, read once (before pivot_root, while /proc/sys is the host's)."""
    if not _CAP_TOP:
        from ocipy.linux.caps import last_cap

        _CAP_TOP.append(last_cap())
    return _CAP_TOP[0]
