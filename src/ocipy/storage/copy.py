"""The copy driver: a container's rootfs as a real directory holding the merged snapshots.

Where overlayfs cannot be mounted, the snapshots (overlay form) are applied
bottom first onto the empty rootfs with overlayfs' rules: a 0:0 character
device removes its name, an opaque directory drops what the layers below put
in it, a directory over a non-directory (or the reverse) replaces it, and a
directory's metadata is the topmost layer's.  File data is shared by reflink
where the filesystem can (FICLONE), else copied in the kernel
(copy_file_range).  Hardlinks inside a snapshot stay hardlinks.  Trees of any
depth, without recursion (:func:`ocipy.fstree.walk`); nothing is followed.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ocipy import fstree
from ocipy.image.layers import whiteout
from ocipy.image.layers.overlay import Overlay, copy_file

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_OPEN = 64


def merge(layers: list[str], rootfs: str) -> None:
    """Apply the snapshot trees `layers` (bottom first) onto the directory `rootfs`."""
    root_fd = os.open(rootfs, _DIR)
    try:
        for layer in layers:
            _Layer(layer, root_fd).run()
    finally:
        os.close(root_fd)


class _Layer:
    """One snapshot applied onto the rootfs being built."""

    def __init__(self, src: str, root_fd: int) -> None:
        self.src = src
        self.root_fd = root_fd
        # the destination directories along the walk: [rel, fd (-1 once closed to save fds), stat]
        self.stack: list[list[Any]] = []
        self.links: dict[int, str] = {}  # inode -> rel path of its first copy (hardlinks)

    def run(self) -> None:
        sfd = os.open(self.src, _DIR)
        try:
            st = os.fstat(sfd)
            Overlay.copy_meta(sfd, self.root_fd, st)
            self.stack = [["", os.dup(self.root_fd), st]]
            fstree.walk(sfd, self.visit, self.leave)
            self._done(self.stack.pop())
        finally:
            os.close(sfd)
            for frame in self.stack:
                if frame[1] >= 0:
                    os.close(frame[1])
            self.stack = []

    def _fd(self, frame: list[Any]) -> int:
        if frame[1] < 0:  # closed on the way down: reopened through real directories only
            frame[1] = fstree.open_beneath(self.root_fd, frame[0])
        return int(frame[1])

    def _done(self, frame: list[Any]) -> None:
        """A directory is complete: its times (which its entries changed) as in the snapshot."""
        fd = self._fd(frame)
        try:
            os.utime(fd, ns=(frame[2].st_atime_ns, frame[2].st_mtime_ns))
        finally:
            os.close(fd)

    def leave(self, parent_fd: int, name: str, rel: str) -> None:
        self._done(self.stack.pop())

    def visit(self, rel: str, sfd: int, entries: list[os.DirEntry[str]]) -> list[str]:
        if rel:
            parent = self._fd(self.stack[-1])
            dfd = os.open(rel.rpartition("/")[2], _DIR, dir_fd=parent)
            st = os.fstat(sfd)
            self.stack.append([rel, dfd, st])
            if len(self.stack) > MAX_OPEN:
                old = self.stack[-MAX_OPEN - 1]
                if old[1] >= 0 and old[0]:
                    os.close(old[1])
                    old[1] = -1
            Overlay.copy_meta(sfd, dfd, st)
            if whiteout.is_opaque(sfd):
                for name in os.listdir(dfd):  # what the layers below put here is hidden
                    fstree.rmtree_at(dfd, name)
        else:
            dfd = self._fd(self.stack[-1])
        subdirs = []
        for e in entries:
            st = e.stat(follow_symlinks=False)
            name = e.name
            try:
                have: os.stat_result | None = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                have = None
            if whiteout.is_whiteout(st):
                if have is not None:
                    fstree.rmtree_at(dfd, name)
                continue
            if stat.S_ISDIR(st.st_mode):
                if have is not None and not stat.S_ISDIR(have.st_mode):
                    os.unlink(name, dir_fd=dfd)
                    have = None
                if have is None:
                    os.mkdir(name, 0o700, dir_fd=dfd)
                subdirs.append(name)
                continue
            if have is not None:
                fstree.rmtree_at(dfd, name)
            self._node(sfd, dfd, name, st, f"{rel}/{name}" if rel else name)
        return subdirs

    def _node(self, sfd: int, dfd: int, name: str, st: os.stat_result, rel: str) -> None:
        if st.st_nlink > 1:
            first = self.links.get(st.st_ino)
            if first is not None:
                head = first.rpartition("/")[0]
                pfd = fstree.open_beneath(self.root_fd, head) if head else os.dup(self.root_fd)
                try:
                    os.link(first.rpartition("/")[2], name, src_dir_fd=pfd, dst_dir_fd=dfd,
                            follow_symlinks=False)
                finally:
                    os.close(pfd)
                return
            self.links[st.st_ino] = rel
        if stat.S_ISREG(st.st_mode):
            copy_file(sfd, name, dfd, name, st)
            return
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        else:
            os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dfd)
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dfd, follow_symlinks=False)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
