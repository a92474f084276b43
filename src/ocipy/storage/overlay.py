"""Mounting and unmounting a container's overlayfs root filesystem.

The lower directories are passed as ``/proc/self/fd/N`` of ``O_PATH`` fds:
short names whatever the store's path, and no ``:`` or ``,`` to escape.
mount(2)'s option string is limited to a page (~220 such layers); beyond
that, ``lowerdir+`` is set once per layer through fsconfig (Linux >= 6.8).
overlayfs itself stacks at most 500 lowers.

:func:`unmount` must stay cheap to import (a poststop hook and ``ocipy
delete`` call it): nothing is imported at module level.
"""

from __future__ import annotations

MAX_LOWERS = 500  # overlayfs' OVL_MAX_STACK
_PAGE = 4096
_UMOUNT_NOFOLLOW = 8
_OPTIONS = "index=off"  # no origin records in upper/: the upper is never reused with other lowers


def mount(lowers: list[str], upper: str, work: str, target: str) -> None:
    """Mount overlayfs on `target`: `lowers` top first, then `upper` and `work`.

    A failure raises KernelError naming `target`; nothing is left mounted.
    """
    import os

    from ocipy.errors import ImageError
    from ocipy.linux import syscalls

    if not lowers:
        raise ImageError(f"{target}: overlay needs at least one lower directory")
    if len(lowers) > MAX_LOWERS:
        raise ImageError(f"{target}: {len(lowers)} layers: overlayfs stacks at most {MAX_LOWERS}")
    flags = syscalls.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    fds: list[int] = []
    try:
        for path in [*lowers, upper, work]:
            try:
                fds.append(os.open(path, flags))
            except OSError as e:
                raise ImageError(f"{target}: cannot open overlay directory {path}: "
                                 f"{e.strerror or e}") from None
        names = [f"/proc/self/fd/{fd}" for fd in fds]
        data = f"lowerdir={':'.join(names[:-2])},upperdir={names[-2]},workdir={names[-1]},{_OPTIONS}"
        if len(data) < _PAGE:
            syscalls.mount("overlay", target, "overlay", 0, data)
            return
        options: list[tuple[str, str | None]] = [("lowerdir+", n) for n in names[:-2]]
        options += [("upperdir", names[-2]), ("workdir", names[-1]), ("index", "off")]
        mfd = syscalls.new_mount("overlay", options, target)
        try:
            syscalls.move_mount(mfd, "", -100, target, syscalls.MOVE_MOUNT_F_EMPTY_PATH)  # AT_FDCWD
        finally:
            os.close(mfd)
    finally:
        for fd in fds:
            os.close(fd)


def is_mount(path: str) -> bool:
    """Whether `path` is the root of a mount (per /proc/self/mountinfo)."""
    import os

    want = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ", 5)
            if len(fields) > 4 and _unescape(fields[4]) == want:
                return True
    return False


def _unescape(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    if "\\" not in text:
        return text
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def unmount(container_dir: str) -> None:
    """Lazily unmount `container_dir`/rootfs while it is a mount point (MNT_DETACH);
    nothing otherwise.  Idempotent."""
    from ocipy.errors import KernelError
    from ocipy.linux import syscalls

    target = container_dir.rstrip("/") + "/rootfs"
    for _ in range(64):  # a mount stacked on another comes off one per call
        try:
            syscalls.umount2(target, syscalls.MNT_DETACH | _UMOUNT_NOFOLLOW)
        except KernelError as e:
            if e.errno in (22, 2, 20):  # EINVAL: not a mount point; ENOENT, ENOTDIR: no rootfs
                return
            raise
