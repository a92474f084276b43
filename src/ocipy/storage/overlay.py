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


def probe(tmp: str) -> str | None:
    """Why overlayfs with a whiteout and an opaque directory cannot be mounted in the
    empty directory `tmp` (None: it can, and hides both as it should)."""
    import os
    import stat

    from ocipy.errors import ImageError, KernelError
    from ocipy.linux import syscalls

    for d in ("top", "bottom", "bottom/o", "upper", "work", "merged"):
        os.mkdir(os.path.join(tmp, d), 0o700)
    merged = os.path.join(tmp, "merged")
    try:
        # bottom: w and o/hidden; top: w whited out, o opaque
        os.mknod(os.path.join(tmp, "bottom", "w"), stat.S_IFREG)
        os.mknod(os.path.join(tmp, "bottom", "o", "hidden"), stat.S_IFREG)
        os.mknod(os.path.join(tmp, "top", "w"), stat.S_IFCHR, 0)
        os.mkdir(os.path.join(tmp, "top", "o"))
        os.setxattr(os.path.join(tmp, "top", "o"), "trusted.overlay.opaque", b"y")
        mount([os.path.join(tmp, "top"), os.path.join(tmp, "bottom")], os.path.join(tmp, "upper"),
              os.path.join(tmp, "work"), merged)
    except (OSError, KernelError, ImageError) as e:
        return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    try:
        if os.listdir(merged) != ["o"] or os.listdir(os.path.join(merged, "o")) != []:
            return "overlayfs shows the whiteouts (no trusted.overlay xattrs here?)"
        return None
    finally:
        syscalls.umount2(merged, syscalls.MNT_DETACH)


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
