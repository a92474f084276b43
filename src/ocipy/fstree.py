"""Walking and removing directory trees of any depth, through fds, without recursion.

A layer may legally hold a directory thousands of levels deep: Python's
recursive walkers (``os.walk`` before 3.12, ``shutil.rmtree`` before 3.14)
raise RecursionError on it, and whole paths longer than PATH_MAX cannot be
used at all.  Here every directory is opened relative to its parent's fd with
``O_NOFOLLOW`` (so a symlink is never walked into), the walk keeps its own
stack, and at most ``MAX_OPEN`` directory fds are held: deeper frames close
their ancestors' fds, which are reopened through ``..`` (and checked to be the
same directory) on the way back up.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

MAX_OPEN = 64
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH = 0o10000000


class _Frame:
    __slots__ = ("name", "rel", "fd", "ident", "todo")

    def __init__(self, name: str, rel: str, fd: int) -> None:
        self.name = name
        self.rel = rel
        self.fd = fd
        self.ident: tuple[int, int] | None = None
        self.todo: Iterable[str] = ()


def open_dir(dir_fd: int, name: str, fix_perms: bool = False) -> int:
    """Open directory `name` of `dir_fd` for reading, never following a symlink.

    fix_perms: a directory we may not read or search (one of our own, as a
    non-root user) first gets u+rwx, through an O_PATH fd of that very inode.
    """
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except PermissionError:
        if not fix_perms:
            raise
    pfd = os.open(name, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        mode = os.fstat(pfd).st_mode
        os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(mode) | 0o700)
    finally:
        os.close(pfd)
    return os.open(name, _DIR, dir_fd=dir_fd)


def open_beneath(root_fd: int, rel: str) -> int:
    """A readable fd of directory `rel` below `root_fd`, through real directories only.

    No symlink and no ``..`` may be on the way (openat2 RESOLVE_BENEATH |
    RESOLVE_NO_SYMLINKS); a path longer than PATH_MAX is opened in pieces.
    """
    from ocipy.linux import syscalls

    how = syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_NO_MAGICLINKS
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        while parts:
            piece: list[str] = []
            size = 0
            while parts and (not piece or size + len(parts[0]) < 2048):
                size += len(parts[0]) + 1
                piece.append(parts.pop(0))
            nfd = syscalls.openat2(fd, "/".join(piece), os.O_RDONLY | os.O_DIRECTORY, 0, how)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def walk(top_fd: int, visit: Callable[[str, int, list[os.DirEntry[str]]], Iterable[str]],
         leave: Callable[[int, str, str], None] | None = None, fix_perms: bool = False) -> None:
    """Depth-first walk of the directory `top_fd` (which stays open and unchanged).

    ``visit(rel, fd, entries)`` is called once per directory, parents before
    children (`rel` is "" for the top, "a/b" below it; `fd` is open only during
    the call) and returns the names of the subdirectories to descend into, in
    order.  ``leave(parent_fd, name, rel)`` is called after a subdirectory's
    whole subtree was visited.  A subdirectory that vanished or was replaced
    by a non-directory in the meantime is skipped.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=top_fd)
    stack = [_Frame("", "", fd)]
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        stack[0].todo = iter(visit("", fd, entries))
        while stack:
            top = stack[-1]
            name = next(top.todo, None)  # type: ignore[call-overload]
            if name is None:
                stack.pop()
                if stack:
                    parent = stack[-1]
                    if parent.fd < 0:
                        _reopen_parent(parent, top)
                    os.close(top.fd)
                    top.fd = -1
                    if leave is not None:
                        leave(parent.fd, top.name, top.rel)
                continue
            try:
                cfd = open_dir(top.fd, name, fix_perms)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                if e.errno != errno.ELOOP:  # replaced by a symlink: not ours to walk
                    raise
                continue
            frame = _Frame(name, f"{top.rel}/{name}" if top.rel else name, cfd)
            stack.append(frame)
            if len(stack) > MAX_OPEN:
                old = stack[-MAX_OPEN - 1]
                if old.fd >= 0:
                    st = os.fstat(old.fd)
                    old.ident = (st.st_dev, st.st_ino)
                    os.close(old.fd)
                    old.fd = -1
            with os.scandir(cfd) as it:
                entries = list(it)
            frame.todo = iter(visit(frame.rel, cfd, entries))
    finally:
        for f in stack:
            if f.fd >= 0:
                os.close(f.fd)


def _reopen_parent(parent: _Frame, child: _Frame) -> None:
    pfd = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=child.fd)
    st = os.fstat(pfd)
    if (st.st_dev, st.st_ino) != parent.ident:
        os.close(pfd)
        raise OSError(errno.ESTALE, f"{parent.rel or '.'}: directory was moved during the walk")
    parent.fd = pfd


def subdirs(entries: list[os.DirEntry[str]]) -> list[str]:
    """The names of the real directories (not symlinks to them) among `entries`."""
    return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def rmtree_at(dir_fd: int, name: str, fix_perms: bool = False) -> None:
    """Remove `name` of `dir_fd` and everything below it; a symlink is removed, never followed.

    fix_perms: give our own directories u+rwx where we lack the rights to
    empty them (a non-root user's unpack of a 0555 directory, say).
    """
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        fd = open_dir(dir_fd, name, fix_perms)
    except (NotADirectoryError, FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)  # swapped for a non-directory meanwhile
        return
    try:
        walk(fd, lambda rel, dfd, entries: _empty(dfd, entries, fix_perms),
             lambda pfd, child, rel: _rmdir(pfd, child, fix_perms), fix_perms)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _rmdir(fd: int, name: str, fix_perms: bool) -> None:
    try:
        os.rmdir(name, dir_fd=fd)
    except PermissionError:
        if not fix_perms:
            raise
        os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
        os.rmdir(name, dir_fd=fd)


def _empty(fd: int, entries: list[os.DirEntry[str]], fix_perms: bool) -> list[str]:
    """Unlink the non-directories of `fd`; the directories are left for the walk."""
    dirs = []
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            dirs.append(e.name)
            continue
        try:
            os.unlink(e.name, dir_fd=fd)
        except FileNotFoundError:
            pass
        except PermissionError:
            if not fix_perms:
                raise
            os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | 0o700)
            os.unlink(e.name, dir_fd=fd)
    return dirs


def rmtree(path: str, fix_perms: bool = False) -> None:
    """Remove the tree at `path` (missing is fine); `path`'s last component is not followed."""
    parent, name = os.path.split(os.path.abspath(path))
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rmtree_at(pfd, name, fix_perms)
    finally:
        os.close(pfd)


def remove_quietly(path: str) -> None:
    """Best-effort removal of a temp tree of ours (cleanup after a failure): never raises."""
    try:
        rmtree(path, fix_perms=True)
    except (OSError, ValueError):
        pass
