"""Compiled seccomp programs kept between runtime commands.

Compiling a profile is the largest single cost of a `create` or `exec` that
engines make: podman's default profile (~430 syscall rules, three
architectures) takes libseccomp ~15-20 ms of CPU to turn into BPF, every
time (bench/FINDINGS.md), and runc pays the same.  The program depends only on
the profile, the libseccomp build and the kernel, so :func:`ocipy.linux.seccomp.prepare`
compiles it once and stores it here; a later command with the same profile
loads the stored program.

Nothing is skipped on a hit: ``prepare`` validates the whole profile and checks
it against this libseccomp's API level first, every time.  The key is the
SHA-256 of the profile exactly as given, the libseccomp version and API level,
the library file (device, inode, size, mtime) and the kernel (uname), so a
different profile, an upgraded library or another kernel compiles afresh.

The directory is root's alone (0700, owned by the caller, checked on every
read); an entry is written whole and renamed into place, and carries the
SHA-256 of its program, checked before use: an entry that fails any check is
ignored and the profile compiled.  The cache lives on /run (tmpfs: gone at
reboot, as is the kernel it was made for); a caller that cannot write there
simply compiles every time.
"""

from __future__ import annotations

import posix

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hashlib import sha256
    from typing import Any
else:
    # _sha256 (built into CPython) rather than hashlib: hashlib loads OpenSSL's
    # libcrypto first, ~1 ms more on every create and exec.
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256

DIR = "/run/ocipy/.seccomp"  # a dot name: never a container id under the default --root
_MAGIC = b"ocipy-bpf-1\n"


def key(profile: dict[str, Any], library: str, version: str, api: int) -> str:
    """The entry's name: everything the compiled program depends on (`library`:
    the loaded library's soname, looked up in this process's mappings)."""
    from ocipy import jsonfast

    lib_id = library
    try:
        with open("/proc/self/maps", "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                path = line.split(maxsplit=5)[-1]
                if "/" in path and path.rsplit("/", 1)[1].startswith(library):
                    st = posix.stat(path)
                    lib_id = f"{path}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
                    break
    except (OSError, IndexError):
        pass
    u = posix.uname()
    text = "\n".join([version, str(api), lib_id, u.release, u.version, u.machine, jsonfast.dumps(profile)])
    return sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def load(name: str, directory: str | None = None) -> tuple[int, bool, list[str], bytes] | None:
    """(kernel flags, needs_notify, skipped names, program) of a sound entry, or None."""
    from ocipy import jsonfast

    directory = directory or DIR

    try:
        dst = posix.stat(directory)
        if dst.st_uid != posix.geteuid() or dst.st_mode & 0o077:
            return None
        fd = posix.open(f"{directory}/{name}", posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_uid != posix.geteuid() or st.st_mode & 0o077 or st.st_size > 1 << 20:
            return None
        data = b""
        while chunk := posix.read(fd, 1 << 16):
            data += chunk
    except OSError:
        return None
    finally:
        posix.close(fd)
    if not data.startswith(_MAGIC):
        return None
    header, sep, program = data[len(_MAGIC):].partition(b"\n")
    try:
        meta = jsonfast.loads(header) if sep else None
    except ValueError:
        return None
    if (not isinstance(meta, dict) or not program or len(program) % 8
            or meta.get("sha256") != sha256(program).hexdigest()):  # fmt: skip
        return None
    flags, notify, skipped = meta.get("flags"), meta.get("notify"), meta.get("skipped")
    if not isinstance(flags, int) or not isinstance(notify, bool) or not isinstance(skipped, list):
        return None
    return flags, notify, [str(s) for s in skipped], program


def store(name: str, flags: int, notify: bool, skipped: list[str], program: bytes,
          directory: str | None = None) -> None:  # fmt: skip
    """Write an entry (whole, then renamed into place); any failure leaves no entry and is not an error.

    Two creates storing the same entry at once share write_file's temp name and
    may publish a mix of both: its digest then fails, it is not used, and the
    next create compiles and writes it again."""
    from ocipy import jsonfast

    directory = directory or DIR
    from ocipy.errors import OcipyError
    from ocipy.runtime.store import write_file

    meta = {"flags": flags, "notify": notify, "skipped": skipped, "sha256": sha256(program).hexdigest()}
    try:
        for d, mode in ((directory.rpartition("/")[0], 0o711), (directory, 0o700)):
            try:
                posix.mkdir(d, mode)
            except FileExistsError:
                pass
        dst = posix.stat(directory)
        if dst.st_uid != posix.geteuid() or dst.st_mode & 0o077:
            return
        write_file(f"{directory}/{name}", _MAGIC + jsonfast.dumps(meta).encode() + b"\n" + program)
    except (OSError, OcipyError):
        pass
