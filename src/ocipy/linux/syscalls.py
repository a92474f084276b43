"""Thin ctypes wrappers for the system calls the standard library lacks.

This package (ocipy.linux) is the only place that talks to the kernel
directly.  Every wrapper raises :class:`KernelError` naming the call, the
path and the errno.
"""

from __future__ import annotations

import ctypes
import os

from ocipy.errors import KernelError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_MACHINE = os.uname().machine
# New syscalls (>= 424) share numbers on every architecture; older ones do not.
_NR = {
    "pivot_root": {"x86_64": 155, "aarch64": 41}.get(_MACHINE, 155),
    "keyctl": {"x86_64": 250, "aarch64": 219}.get(_MACHINE, 250),
    "ioprio_set": {"x86_64": 251, "aarch64": 30}.get(_MACHINE, 251),
    "sched_setattr": {"x86_64": 314, "aarch64": 274}.get(_MACHINE, 314),
    "set_mempolicy": {"x86_64": 238, "aarch64": 237}.get(_MACHINE, 238),
    "open_tree": 428,
    "move_mount": 429,
    "close_range": 436,
    "openat2": 437,
    "pidfd_send_signal": 424,
    "pidfd_getfd": 438,
    "clone3": 435,
    "mount_setattr": 442,
}

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


def _check(result: int, op: str, path: str | None = None) -> int:
    if result < 0:
        raise KernelError(op, path, ctypes.get_errno())
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int, path: str | None = None) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns", path)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {source or ''} ({fstype or 'none'}) on", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_syscall(_NR["pivot_root"], new_root.encode(), put_old.encode()), "pivot_root", new_root)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` below `dirfd` with kernel-enforced resolution rules."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    while True:
        fd = _syscall(_NR["openat2"], ctypes.c_int(dirfd), path.encode(), ctypes.byref(how), ctypes.c_size_t(24))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != 4 and err != 11:  # EINTR, EAGAIN (a rename raced the lookup)
            raise KernelError("openat2", path, err)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64),
    ]  # fmt: skip


def mount_setattr(dfd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                  propagation: int = 0, userns_fd: int = 0, what: str | None = None) -> None:  # fmt: skip
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    result = _syscall(_NR["mount_setattr"], ctypes.c_int(dfd), path.encode(), ctypes.c_uint(flags),
                      ctypes.byref(attr), ctypes.c_size_t(32))  # fmt: skip
    _check(result, "mount_setattr", what or path)


def open_tree(dfd: int, path: str, flags: int, what: str | None = None) -> int:
    return _check(_syscall(_NR["open_tree"], ctypes.c_int(dfd), path.encode(), ctypes.c_uint(flags)),
                  "open_tree", what or path)  # fmt: skip


def move_mount(from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int, what: str | None = None) -> None:
    result = _syscall(_NR["move_mount"], ctypes.c_int(from_dfd), from_path.encode(),
                      ctypes.c_int(to_dfd), to_path.encode(), ctypes.c_uint(flags))  # fmt: skip
    _check(result, "move_mount", what or to_path)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)), "close_range")


CLOSE_RANGE_CLOEXEC = 4


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                    ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)),  # fmt: skip
        f"prctl({option})",
    )


def sethostname(name: str) -> None:
    data = name.encode()
    _check(_libc.sethostname(data, ctypes.c_size_t(len(data))), "sethostname", name)


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(_libc.setdomainname(data, ctypes.c_size_t(len(data))), "setdomainname", name)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(_syscall(_NR["pidfd_send_signal"], ctypes.c_int(pidfd), ctypes.c_int(sig), None, ctypes.c_uint(0)),
           "pidfd_send_signal")  # fmt: skip


def pidfd_getfd(pid: int, target_fd: int) -> int:
    """A copy of another process's fd (needs ptrace rights over it)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _check(_syscall(_NR["pidfd_getfd"], ctypes.c_int(pidfd), ctypes.c_int(target_fd), ctypes.c_uint(0)),
                      "pidfd_getfd", f"pid {pid} fd {target_fd}")  # fmt: skip
    finally:
        os.close(pidfd)


KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> None:
    """A new session keyring, so containers do not share the caller's keys (runc does this)."""
    _check(_syscall(_NR["keyctl"], ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), name.encode()), "keyctl join", name)


def ioprio_set_process(ioprio_class: int, level: int) -> None:
    value = (ioprio_class << 13) | level
    _check(_syscall(_NR["ioprio_set"], ctypes.c_int(1), ctypes.c_int(0), ctypes.c_int(value)), "ioprio_set")  # IOPRIO_WHO_PROCESS, self


class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
    ]  # fmt: skip


def sched_setattr(policy: int, flags: int, nice: int, priority: int, runtime: int, deadline: int, period: int) -> None:
    attr = _SchedAttr(48, policy, flags, nice, priority, runtime, deadline, period)
    _check(_syscall(_NR["sched_setattr"], ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(0)), "sched_setattr")


def personality(persona: int) -> None:
    _check(_libc.personality(ctypes.c_ulong(persona)), "personality")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    """set_mempolicy(2) for this process (inherited across fork and execve)."""
    maxnode = (max(nodes) + 1) if nodes else 0
    words = (ctypes.c_ulong * (maxnode // 64 + 1))()
    for node in nodes:
        words[node // 64] |= 1 << (node % 64)
    mask = ctypes.byref(words) if nodes else None
    _check(_syscall(_NR["set_mempolicy"], ctypes.c_int(mode), mask, ctypes.c_ulong(maxnode + 1 if nodes else 0)),
           "set_mempolicy")  # fmt: skip


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]  # fmt: skip


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
    args = _CloneArgs(flags=flags, exit_signal=17, cgroup=max(cgroup_fd, 0))  # SIGCHLD
    return _check(_syscall(_NR["clone3"], ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))), "clone3")


def single_threaded() -> bool:
    """True when the calling process has one thread (a raw clone is safe:
    no other thread can hold a lock the child would inherit)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False
