"""A recording fake of the kernel seam (ocipy.linux.syscalls.Kernel).

The filesystem is real (a temporary directory stands for the rootfs: paths
are resolved, directories and files made, as the runtime does without
privileges); the privileged calls (mount, move_mount, mount_setattr, mknod,
pivot_root, ...) are only recorded, with every `/proc/self/fd/N` target
turned back into its path inside the root, so a test can compare the exact
sequence of operations a config asks of the kernel.
"""

from __future__ import annotations

import os
from typing import Any

from ocipy.linux import syscalls as sc


class RecordingKernel:
    def __init__(self, root: str, locked: int = 0) -> None:
        self.root = os.path.realpath(root)
        self.calls: list[tuple[Any, ...]] = []
        self.locked = locked  # flags mount_flags reports for every mount (a user namespace's locked ones)
        self._next_fd = 1000
        self.fail: dict[str, int] = {}  # call name -> errno to raise

    def _path(self, path: str | None) -> str | None:
        """A /proc/self/fd/N path (or a real host path) as seen inside the root."""
        if path is None:
            return None
        if path.startswith("/proc/self/fd/"):
            path = os.readlink(path)
        real = os.path.realpath(path) if os.path.isabs(path) else path
        if real == self.root:
            return "/"
        if real.startswith(self.root + "/"):
            return real[len(self.root):]
        return path

    def _record(self, name: str, *args: Any) -> None:
        if name in self.fail:
            from ocipy.errors import KernelError

            raise KernelError(name, str(args[0] if args else ""), self.fail[name])
        self.calls.append((name, *args))

    # --- the seam ---
    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        self._record("mount", source, self._path(target), fstype, flags, data)

    def umount2(self, target: str, flags: int = 0) -> None:
        self._record("umount2", self._path(target), flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", new_root, put_old)

    def chroot(self, path: str) -> None:
        self._record("chroot", path)

    def openat2(self, dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
        return sc.openat2(dirfd, path, flags, mode, resolve)

    def open_tree(self, dfd: int, path: str, flags: int, what: str | None = None) -> int:
        self._record("open_tree", path, flags)
        self._next_fd += 1
        return os.open(path, os.O_PATH | os.O_CLOEXEC)  # a real fd, so it can be stat'ed and closed

    def move_mount(self, from_dfd: int, from_path: str, to_dfd: int, to_path: str, flags: int,
                   what: str | None = None) -> None:
        self._record("move_mount", self._path(f"/proc/self/fd/{to_dfd}"), flags)

    def mount_setattr(self, dfd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                      propagation: int = 0, userns_fd: int = 0, what: str | None = None) -> None:
        self._record("mount_setattr", self._path(f"/proc/self/fd/{dfd}"), flags, attr_set, attr_clr)

    def mount_flags(self, path: str) -> int:
        return self.locked

    def mknod(self, dir_fd: int, name: str, mode: int, rdev: int, shown: str) -> None:
        self._record("mknod", shown, mode, rdev)

    def chown(self, dir_fd: int, name: str, uid: int, gid: int, shown: str) -> None:
        self._record("chown", shown, uid, gid)

    def symlink(self, target: str, dir_fd: int, name: str) -> None:
        os.symlink(target, name, dir_fd=dir_fd)
        self._record("symlink", target, name)

    def setns(self, fd: int, nstype: int, path: str | None = None) -> None:
        self._record("setns", nstype, path)

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def mounts(self) -> list[tuple[Any, ...]]:
        """Only the calls that change the mount table."""
        return [c for c in self.calls if c[0] in ("mount", "move_mount", "mount_setattr", "umount2")]
