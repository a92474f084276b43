"""Thin wrappers for the system calls the standard library lacks.

This package (ocipy.linux) is the only place that talks to the kernel
directly.  Every wrapper raises :class:`KernelError` naming the call, the
path and the errno.  The calls go through `_syscall.syscall`, a few lines of
C built by `make install` (importing ctypes would cost ~2.8 ms of every
runtime command's start); without it, through ctypes.  Structures are packed
with `struct`, native byte order.

The kernel seam: the calls that change the mount table, make device nodes
or move the process between namespaces are the module-level functions
listed in `Kernel` below.  Code that performs them (runtime/rootfs.py) takes
a `Kernel` argument whose default is this module, so a unit test can hand
it a recording fake (tests/support/kernel.py) and assert the exact sequence
of mounts for a config without root.
"""

from __future__ import annotations

import os
import struct

from ocipy.errors import KernelError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class Kernel(Protocol):
        """The calls behind the seam; this module is the real implementation."""

        def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
                  data: str | None = None) -> None: ...  # fmt: skip
        def umount2(self, target: str, flags: int = 0) -> None: ...
        def pivot_root(self, new_root: str, put_old: str) -> None: ...
        def chroot(self, path: str) -> None: ...
        def openat2(self, dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int: ...
        def open_tree(self, dfd: int, path: str, flags: int, what: str | None = None) -> int: ...
        def move_mount(self, from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int,
                       what: str | None = None) -> None: ...  # fmt: skip
        def mount_setattr(self, dfd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                          propagation: int = 0, userns_fd: int = 0, what: str | None = None) -> None: ...  # fmt: skip
        def mount_flags(self, path: str) -> int: ...
        def mknod(self, dir_fd: int, name: str, mode: int, rdev: int, shown: str) -> None: ...
        def chown(self, dir_fd: int, name: str, uid: int, gid: int, shown: str) -> None: ...
        def symlink(self, target: str, dir_fd: int, name: str) -> None: ...
        def setns(self, fd: int, nstype: int, path: str | None = None) -> None: ...
        def unshare(self, flags: int) -> None: ...


def _ctypes_syscall() -> Callable[..., int]:
    """syscall(nr, *args) through ctypes, for a checkout where _syscall.c was not built."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    raw = libc.syscall
    raw.restype = ctypes.c_long

    def call(nr: int, *args: Any) -> int:
        conv: list[Any] = []
        for a in args:
            if a is None or isinstance(a, bytes):
                conv.append(a)
            elif isinstance(a, int):
                conv.append(ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF))
            else:
                conv.append((ctypes.c_char * len(a)).from_buffer(a))
        result = int(raw(ctypes.c_long(nr), *conv))
        if result == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return result

    return call


try:
    from ocipy.linux._syscall import syscall as _c_syscall

    _raw: Callable[..., int] = _c_syscall
except ImportError:
    _raw = _ctypes_syscall()

_MACHINE = os.uname().machine


def _nr(x86_64: int, aarch64: int) -> int:
    return aarch64 if _MACHINE == "aarch64" else x86_64


# New syscalls (>= 424) share numbers on every architecture; older ones do not.
_NR = {
    "mount": _nr(165, 40),
    "umount2": _nr(166, 39),
    "pivot_root": _nr(155, 41),
    "unshare": _nr(272, 97),
    "setns": _nr(308, 268),
    "prctl": _nr(157, 167),
    "sethostname": _nr(170, 161),
    "setdomainname": _nr(171, 162),
    "personality": _nr(135, 92),
    "capset": _nr(126, 91),
    "keyctl": _nr(250, 219),
    "ioprio_set": _nr(251, 30),
    "sched_setattr": _nr(314, 274),
    "set_mempolicy": _nr(238, 237),
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "close_range": 436,
    "openat2": 437,
    "pidfd_send_signal": 424,
    "pidfd_getfd": 438,
    "clone3": 435,
    "mount_setattr": 442,
    "syncfs": _nr(306, 267),
}


def call(name: str, *args: Any, op: str | None = None, path: str | None = None) -> int:
    """The system call `name`; KernelError(op or name, path, errno) on failure."""
    try:
        return _raw(_NR[name], *args)
    except OSError as e:
        raise KernelError(op or name, path, e.errno or 5) from None


# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_IVERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2
PROPAGATION_FLAGS = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
O_PATH = 0o10000000

# mount_setattr / open_tree / move_mount
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_SYMLINK_NOFOLLOW = 0x100
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# prctl
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def unshare(flags: int) -> None:
    call("unshare", flags)


def setns(fd: int, nstype: int, path: str | None = None) -> None:
    call("setns", fd, nstype, path=path)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    call("mount", source.encode() if source is not None else None, target.encode(),
         fstype.encode() if fstype is not None else None, flags, data.encode() if data else None,
         op=f"mount {source or ''} ({fstype or 'none'}) on", path=target)  # fmt: skip


def umount2(target: str, flags: int = 0) -> None:
    call("umount2", target.encode(), flags, op="umount", path=target)


def pivot_root(new_root: str, put_old: str) -> None:
    call("pivot_root", new_root.encode(), put_old.encode(), path=new_root)


def chroot(path: str) -> None:
    try:
        os.chroot(path)
    except OSError as e:
        raise KernelError("chroot", path, e.errno or 5) from None


def mount_flags(path: str) -> int:
    """The MS_* flags the mount at `path` has that a bind remount must keep
    (inside a user namespace the kernel refuses to clear them)."""
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError as e:
        raise KernelError("statvfs", path, e.errno or 5) from None
    flags = 0
    for vfs, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                    (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                    (os.ST_RELATIME, MS_RELATIME)):  # fmt: skip
        if f_flag & vfs:
            flags |= ms
    return flags


def mknod(dir_fd: int, name: str, mode: int, rdev: int, shown: str) -> None:
    """mknod(2) of `name` in `dir_fd`, with the umask out of the way (`mode` is exact)."""
    old = os.umask(0)
    try:
        os.mknod(name, mode, rdev, dir_fd=dir_fd)
    except OSError as e:
        raise KernelError("mknod", shown, e.errno or 1) from None
    finally:
        os.umask(old)


def chown(dir_fd: int, name: str, uid: int, gid: int, shown: str) -> None:
    try:
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        raise KernelError("chown", shown, e.errno or 1) from None


def symlink(target: str, dir_fd: int, name: str) -> None:
    """symlink(2); FileExistsError passes through (callers decide)."""
    os.symlink(target, name, dir_fd=dir_fd)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` below `dirfd` with kernel-enforced resolution rules."""
    how = struct.pack("=QQQ", flags | os.O_CLOEXEC, mode, resolve)  # struct open_how
    encoded = path.encode()
    while True:
        try:
            return _raw(_NR["openat2"], dirfd, encoded, how, len(how))
        except OSError as e:
            if e.errno not in (4, 11):  # EINTR, EAGAIN (a rename raced the lookup)
                raise KernelError("openat2", path, e.errno or 5) from None


def mount_setattr(dfd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0, what: str | None = None) -> None:  # fmt: skip
    attr = struct.pack("=QQQQ", attr_set, attr_clr, propagation, userns_fd)  # struct mount_attr
    call("mount_setattr", dfd, path.encode(), flags, attr, len(attr), path=what or path)


def open_tree(dfd: int, path: str, flags: int, what: str | None = None) -> int:
    return call("open_tree", dfd, path.encode(), flags, path=what or path)


def move_mount(from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int, what: str | None = None) -> None:
    call("move_mount", from_dfd, from_path.encode(), to_dfd, to_path.encode(), flags, path=what or to_path)


_FSCONFIG_SET_FLAG = 0
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6


def new_mount(fstype: str, options: list[tuple[str, str | None]], what: str) -> int:
    """A new, detached mount of `fstype` (fsopen/fsconfig/fsmount, Linux >= 5.2):
    each option set on its own (a value of None sets a flag), so no mount(2)
    data page limits them (overlayfs' repeatable ``lowerdir+``, Linux >= 6.8).
    The fd of its root: attach it with :func:`move_mount`."""
    fs = call("fsopen", fstype.encode(), 1, path=what)  # FSOPEN_CLOEXEC
    try:
        for key, value in options:
            if value is None:
                call("fsconfig", fs, _FSCONFIG_SET_FLAG, key.encode(), None, 0, op=f"fsconfig({key})", path=what)
            else:
                call("fsconfig", fs, _FSCONFIG_SET_STRING, key.encode(), value.encode(), 0,
                     op=f"fsconfig({key})", path=what)  # fmt: skip
        call("fsconfig", fs, _FSCONFIG_CMD_CREATE, None, None, 0, op=f"mount {fstype} on", path=what)
        return call("fsmount", fs, 1, 0, path=what)  # FSMOUNT_CLOEXEC
    finally:
        os.close(fs)


def syncfs(fd: int, path: str) -> None:
    """syncfs(2): write out the whole filesystem holding `fd` (one call for many files)."""
    call("syncfs", fd, path=path)


def procfs_of_pids(attrs: int) -> int:
    """A new procfs instance holding only the pid directories (subset=pid,
    Linux >= 5.8), detached (in no mount tree), mounted with `attrs`
    (MOUNT_ATTR_*): the fd of its root.  It shows the pid namespace of the
    caller, and no /proc/sys, /proc/kcore or other system-wide file."""
    fs = call("fsopen", b"proc", 1, path="proc")  # FSOPEN_CLOEXEC
    try:
        call("fsconfig", fs, _FSCONFIG_SET_STRING, b"subset", b"pid", 0, op="fsconfig(subset=pid)", path="proc")
        call("fsconfig", fs, _FSCONFIG_CMD_CREATE, None, None, 0, op="fsconfig(create)", path="proc")
        return call("fsmount", fs, 1, attrs, path="proc")  # FSMOUNT_CLOEXEC
    finally:
        os.close(fs)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    call("close_range", first, last, flags)


CLOSE_RANGE_CLOEXEC = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return call("prctl", option, arg2, arg3, arg4, arg5, op=f"prctl({option})")


def sethostname(name: str) -> None:
    data = name.encode()
    call("sethostname", data, len(data), path=name)


def setdomainname(name: str) -> None:
    data = name.encode()
    call("setdomainname", data, len(data), path=name)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2), version 3: two 32-bit words per set."""
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = struct.pack("=6I", effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                       effective >> 32, permitted >> 32, inheritable >> 32)  # fmt: skip
    call("capset", header, data)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    call("pidfd_send_signal", pidfd, sig, None, 0)


def pidfd_getfd(pid: int, target_fd: int) -> int:
    """A copy of another process's fd (needs ptrace rights over it)."""
    pidfd = os.pidfd_open(pid)
    try:
        return call("pidfd_getfd", pidfd, target_fd, 0, path=f"pid {pid} fd {target_fd}")
    finally:
        os.close(pidfd)


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> None:
    """A new session keyring, so containers do not share the caller's keys (runc does this)."""
    call("keyctl", KEYCTL_JOIN_SESSION_KEYRING, name.encode(), op="keyctl join", path=name)


def ioprio_set_process(ioprio_class: int, level: int) -> None:
    call("ioprio_set", 1, 0, (ioprio_class << 13) | level)  # IOPRIO_WHO_PROCESS, self


def sched_setattr(policy: int, flags: int, nice: int, priority: int, runtime: int, deadline: int, period: int) -> None:
    attr = struct.pack("=IIQiIQQQ", 48, policy, flags, nice, priority, runtime, deadline, period)  # struct sched_attr
    call("sched_setattr", 0, attr, 0)


def personality(persona: int) -> None:
    call("personality", persona)


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    """set_mempolicy(2) for this process (inherited across fork and execve)."""
    if not nodes:
        call("set_mempolicy", mode, None, 0)
        return
    maxnode = max(nodes) + 1
    words = [0] * (maxnode // 64 + 1)
    for node in nodes:
        words[node // 64] |= 1 << (node % 64)
    call("set_mempolicy", mode, struct.pack(f"={len(words)}Q", *words), maxnode + 1)


CLONE_INTO_CGROUP = 0x200000000


def clone_fork(flags: int = 0, cgroup_fd: int = -1) -> int:
    """fork(2) through clone3: the child may be born in new namespaces
    (CLONE_NEW* `flags`) and in the cgroup2 directory `cgroup_fd`.

    For the runtime's own children only, and only while the caller has one
    thread (see `single_threaded`): Python's fork bookkeeping (at-fork
    handlers, thread states) is skipped, which a process with one thread that
    soon execs or exits does not need.
    """
    if cgroup_fd >= 0:
        flags |= CLONE_INTO_CGROUP
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal (SIGCHLD),
    # stack, stack_size, tls, set_tid, set_tid_size, cgroup
    args = struct.pack("=11Q", flags, 0, 0, 0, 17, 0, 0, 0, 0, 0, max(cgroup_fd, 0))
    return call("clone3", args, len(args))


def single_threaded() -> bool:
    """True when the calling process has one thread (a raw clone is safe:
    no other thread can hold a lock the child would inherit)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False
