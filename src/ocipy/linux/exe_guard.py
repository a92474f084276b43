"""The final execve through a sealed in-memory trampoline (CVE-2019-5736 class).

The runtime is a Python interpreter: until the user program is loaded, a
container's init or exec process has the *host's* interpreter as
/proc/self/exe.  The children are non-dumpable, so other container
processes cannot open that link (and one granted CAP_SYS_PTRACE, which
can, finds the interpreter on a read-only mount: see launcher.c); but during the final execve the kernel
resolves the program's `#!` interpreter with the old /proc/self/exe still
in place, so a container binary that is a script starting with
``#!/proc/self/exe`` would make the host interpreter the container's
process, dumpable again, and let the container open and later overwrite the
host binary through /proc/PID/exe.

So the final execve goes through a tiny static program (trampoline.c,
built by ``make install`` next to this module) copied into a memfd that is
sealed against every change.  We execute the memfd; it execve()s the user
program.  While the kernel loads the user program /proc/self/exe is the
sealed memfd, never a host file; and the trampoline refuses to run as a
``#!`` interpreter, so ``#!/proc/self/exe`` gives a clear error, not a loop.

runc solves the same problem by running ``runc init`` from a sealed copy of
its own binary; copying a Python interpreter plus libpython per container is
far dearer than this ~1 KiB program.

The memfd is made when this module is imported: before pivot_root (the
package directory is out of reach afterwards) and before the container's
seccomp filter is loaded (which may deny memfd_create).  process.py imports
it at module level for that reason.
"""

from __future__ import annotations

import errno
import os
import stat

from ocipy.errors import OcipyError

MAGIC = "ocipy-exe-guard"  # argv[0] the trampoline insists on (see trampoline.c)
BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ocipy-exe-guard")

_MFD_CLOEXEC = 0x1
_MFD_ALLOW_SEALING = 0x2
_MFD_EXEC = 0x10  # Linux >= 6.3; needed when vm.memfd_noexec is set
_F_ADD_SEALS = 1033
_F_GET_SEALS = 1034
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
_F_SEAL_EXEC = 0x20  # Linux >= 6.3: the mode (x bits) cannot change either
SEALS = _F_SEAL_SEAL | _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE


def _memfd() -> int:
    try:
        return os.memfd_create(MAGIC, _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a kernel older than MFD_EXEC
            raise
        return os.memfd_create(MAGIC, _MFD_CLOEXEC | _MFD_ALLOW_SEALING)


def seal(fd: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(fd, _F_ADD_SEALS, SEALS | _F_SEAL_EXEC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # F_SEAL_EXEC unknown to this kernel
            raise
        fcntl.fcntl(fd, _F_ADD_SEALS, SEALS)


def make_sealed_trampoline(binary: str = BINARY) -> int:
    """A close-on-exec memfd holding the trampoline, sealed against any change."""
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OcipyError(f"exe guard: cannot read the trampoline {binary}: {e.strerror} (run `make install`)") from None
    fd = _memfd()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o555)
        seal(fd)
    except OSError as e:
        os.close(fd)
        raise OcipyError(f"exe guard: sealing the trampoline memfd: {e.strerror}") from None
    return fd


_FD: int = make_sealed_trampoline()


def precheck(executable: str) -> None:
    """Fail here, as os.execve would, for the errors the caller should report itself.

    Once the trampoline runs, the runtime's error channel is gone; only the
    format errors (ENOEXEC and the like) are left for the trampoline to
    print on the process's stderr (exit 126/127, as a shell does).
    """
    st = os.stat(executable)
    if not stat.S_ISREG(st.st_mode) or not os.access(executable, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), executable)


def execve(executable: str, args: list[str], env: dict[str, str]) -> None:
    """os.execve(executable, args, env), with /proc/self/exe never a host file. Never returns.

    Makes no system call but execveat(2) (and execve(2) as a fallback): it
    runs under the container's seccomp filter; call `precheck` before it.
    """
    argv = [MAGIC, executable, *args]
    try:
        os.execve(_FD, argv, env)  # fexecve: execveat(fd, "", AT_EMPTY_PATH)
    except OSError as e:
        first = e
    # execveat denied (a seccomp profile that only allows execve): the same memfd by path.
    try:
        os.execve(f"/proc/self/fd/{_FD}", argv, env)
    except OSError:
        raise first from None
