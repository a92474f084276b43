"""The -ENOSYS stub put before a deny-by-default filter (runc's seccomp.bats "-ENOSYS handling").

Each case loads the filter for real in a forked child (with no_new_privs,
which needs no privilege) and reports the errno of raw system calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

import pytest

from ocipy.linux import seccomp
from ocipy.spec.seccomp import parse_seccomp

try:
    seccomp._library()
except seccomp.SeccompUnavailable:  # pragma: no cover
    pytest.skip("libseccomp not available", allow_module_level=True)

if os.uname().machine != "x86_64":  # pragma: no cover
    pytest.skip("syscall numbers below are x86_64's", allow_module_level=True)

NR_MKDIR, NR_CLONE3, NR_FAKE = 83, 435, 1000


def prepare(doc: Any) -> seccomp.Filter:
    """linux.seccomp as create hands it to the filter builder: parsed first."""
    return seccomp.prepare(parse_seccomp(doc))


def errnos_under(profile: dict[str, Any], numbers: list[int]) -> list[int]:
    """errno (0 for success) of syscall(nr, 0, 0, 0) for each nr, under the filter."""
    flt = prepare(profile)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            flt.load()
            out = []
            for nr in numbers:
                ctypes.set_errno(0)
                rc = libc.syscall(ctypes.c_long(nr), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
                out.append(ctypes.get_errno() if rc == -1 else 0)
            os.write(w, struct.pack(f"{len(out)}i", *out))
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    flt.release()
    return list(struct.unpack(f"{len(numbers)}i", data))


BASE = ["read", "write", "exit_group", "exit", "getpid", "rt_sigreturn", "mmap", "munmap", "brk", "futex",
        "rt_sigprocmask", "rt_sigaction", "close"]


def test_newer_syscalls_get_enosys_older_ones_the_default_errno() -> None:
    # The highest syscall the profile names is exit_group (231): mkdir (83)
    # is older and gets the default action's errno, clone3 (435) and an
    # unassigned number get ENOSYS (the C library then falls back).
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": BASE, "action": "SCMP_ACT_ALLOW"}]}
    assert errnos_under(profile, [NR_MKDIR, NR_CLONE3, NR_FAKE]) == [errno.EPERM, errno.ENOSYS, errno.ENOSYS]


def test_default_errno_ret_is_kept_for_known_syscalls() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENXIO,
               "syscalls": [{"names": [*BASE, "clone3"], "action": "SCMP_ACT_ALLOW"}]}
    # clone3 is named: numbers up to it follow the profile; above it ENOSYS.
    assert errnos_under(profile, [NR_MKDIR, NR_FAKE]) == [errno.ENXIO, errno.ENOSYS]


def test_allow_by_default_has_no_stub() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    assert errnos_under(profile, [NR_MKDIR, NR_FAKE]) == [errno.EPERM, errno.ENOSYS]  # 1000: the kernel's own ENOSYS
    flt = prepare(profile)
    try:
        assert flt._raw_prog is None  # libseccomp's program as it is
    finally:
        flt.release()
