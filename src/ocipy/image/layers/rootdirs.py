"""Directories inside the rootfs being unpacked, resolved so nothing leads out of it.

Every path is resolved by the kernel with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)`` relative to an ``O_PATH`` fd of the rootfs: ``..``
and symlinks planted by earlier entries or layers are followed as if the
rootfs were ``/``, so they cannot lead out of it.  What the applier then does
in such a directory fd names one component and never follows it.

Resolved parent directories are cached (tar entries come grouped by
directory); the cache is dropped whenever a directory or symlink is removed,
so a cached fd never stands for a path whose meaning changed.

Where openat2 is missing (Linux < 5.6, or a seccomp profile that refuses it)
:func:`resolve_in_root` does the same resolution in userspace: one component
at a time with ``O_PATH|O_NOFOLLOW``, symlink targets read as strings and
resolved again from the root's fd, ``..`` never above the root.
"""

from __future__ import annotations

import errno
import os
import stat

from ocipy.errors import ImageError, KernelError
from ocipy.linux import syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

O_PATH = syscalls.O_PATH
DIR_PATH = O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_IN_ROOT = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
CACHE_MAX = 512  # cached directory fds (a non-root user's default limit is 1024 fds)
MAX_SYMLINKS = 40  # as the kernel's path walk

if TYPE_CHECKING:
    from typing import Protocol

    class ParentHooks(Protocol):
        """What an overlay-form unpack (:mod:`.overlay`) does about implicit parent directories."""

        def made_dir(self, pfd: int, name: str, parts: list[str]) -> None: ...
        def replace_whiteout(self, pfd: int, name: str, parts: list[str]) -> bool: ...


def _kernel_resolves(root_fd: int) -> bool:
    """Whether openat2(RESOLVE_IN_ROOT) works here (ENOSYS: old kernel; EPERM: seccomp)."""
    try:
        os.close(syscalls.openat2(root_fd, ".", DIR_PATH, 0, _IN_ROOT))
    except KernelError as e:
        if e.errno in (errno.ENOSYS, errno.EPERM):
            return False
        raise
    return True


def resolve_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2(root_fd, path, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) for directories, in userspace.

    Every component is opened O_PATH|O_NOFOLLOW below the previous one, so the
    kernel never follows a link; a symlink's target is resolved from the root
    (absolute) or from its directory (relative), and ``..`` stops at the root.
    """
    assert flags & os.O_DIRECTORY
    todo = [c for c in reversed(path.split("/")) if c and c != "."]
    stack = [os.dup(root_fd)]  # the directories from the root down to where we are
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(name, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except OSError as e:
                raise KernelError("openat", path, e.errno or errno.EIO) from None
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                if not todo and flags & os.O_NOFOLLOW:
                    raise KernelError("openat", path, errno.ENOTDIR)  # as open(O_DIRECTORY|O_NOFOLLOW)
                links += 1
                if links > MAX_SYMLINKS:
                    raise KernelError("openat", path, errno.ELOOP)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(c for c in reversed(target.split("/")) if c and c != ".")
                continue
            if not stat.S_ISDIR(mode):
                os.close(fd)
                raise KernelError("openat", path, errno.ENOTDIR)
            stack.append(fd)
        if flags & O_PATH:
            return os.dup(stack[-1])
        try:
            return os.open(".", (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC, dir_fd=stack[-1])
        except OSError as e:
            raise KernelError("openat", path, e.errno or errno.EIO) from None
    finally:
        for fd in stack:
            os.close(fd)


class RootDirs:
    """O_PATH fds of directories of `rootfs`, resolved inside it.

    `barrier` is called before anything that could race a worker thread still
    using a cached fd or creating a directory on a path being resolved.
    """

    def __init__(self, rootfs: str, barrier: Callable[[], None]) -> None:
        self.root_fd = os.open(rootfs, DIR_PATH)
        self.in_kernel = _kernel_resolves(self.root_fd)
        self.barrier = barrier
        self.what = "layer"
        self.cache: dict[str, int] = {}
        # per cached directory: the gid a new entry in it gets, whether it has a default ACL,
        # and its (st_dev, st_ino)
        self.meta: dict[str, tuple[int, bool, tuple[int, int]]] = {}
        self.made = False  # mkdir_parents created a directory (the caller resets it)
        self.graveyard: list[int] = []
        self.hooks: ParentHooks | None = None  # overlay form: see :mod:`.overlay`

    def close(self) -> None:
        self.forget()
        self.bury()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # -- the cache -------------------------------------------------------------------

    def forget(self) -> None:
        """Drop every cached fd (after a directory or symlink was removed, or at a layer's end).

        The fds are closed by :meth:`bury` at the start of the next entry: the
        current one may still use one.
        """
        self.graveyard.extend(self.cache.values())
        self.cache.clear()
        self.meta.clear()

    def drop(self) -> None:
        """forget(), once no worker can still be using a cached fd."""
        self.barrier()
        self.forget()

    def bury(self) -> None:
        for fd in self.graveyard:
            os.close(fd)
        self.graveyard.clear()

    def keep(self, path: str, fd: int) -> None:
        """Cache `fd` (an open fd of directory `path`, now owned by the cache)."""
        if path in self.cache:
            os.close(fd)  # the same directory; pending tasks may be using the cached fd
            return
        if len(self.cache) >= CACHE_MAX:
            self.drop()
        self.cache[path] = fd

    def new_entry_meta(self, key: str, fd: int) -> tuple[int, bool, tuple[int, int]]:
        """(gid, default ACL?, identity) for a new entry in cached directory `key` (fd `fd`).

        A new inode's group is the directory's when it is setgid, else ours; a
        default ACL, not the umask, then limits its mode.  Forgotten with the
        cache, and by :meth:`changed` when the directory's attributes change.
        """
        meta = self.meta.get(key)
        if meta is None:
            st = os.fstat(fd)
            gid = st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()
            try:
                # fd may be O_PATH: its magic link names this very directory
                os.getxattr(f"/proc/self/fd/{fd}", "system.posix_acl_default")
                acl = True
            except OSError as e:
                acl = e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
            meta = self.meta[key] = (gid, acl, (st.st_dev, st.st_ino))
        return meta

    def changed(self, key: str) -> None:
        """Directory `key`'s mode, owner or xattrs were just changed (forget its meta)."""
        self.meta.pop(key, None)

    # -- resolution --------------------------------------------------------------------

    def open(self, path: str, flags: int = DIR_PATH) -> int:
        """An fd of directory `path` (flags as for open), resolved inside the root."""
        if self.in_kernel:
            return syscalls.openat2(self.root_fd, path or ".", flags, 0, _IN_ROOT)
        return resolve_in_root(self.root_fd, path, flags)

    def parent(self, parts: list[str], create: bool = True) -> int:
        """A cached O_PATH fd of the directory holding parts[-1] (created if missing)."""
        key = "/".join(parts[:-1])
        fd = self.cache.get(key)
        if fd is not None:
            return fd
        self.barrier()  # a pending task may be creating a component of this path
        try:
            fd = self.open(key)
        except KernelError as e:
            # ENOTDIR: in overlay form a whiteout of this layer may stand where a parent goes
            if not create or not (e.errno == errno.ENOENT or (e.errno == errno.ENOTDIR and self.hooks)):
                raise
            fd = self.mkdir_parents(parts[:-1])
        self.keep(key, fd)
        return fd

    def mkdir_parents(self, parts: list[str], depth: int = 0) -> int:
        """mkdir -p inside the root (missing parents get 0755 root:root, like umoci).

        A dangling symlink on the way is followed as the kernel would inside the root
        (absolute targets from the rootfs, `..` stopping at it) and its target created.
        """
        if depth > 40:
            raise ImageError(f"{self.what}: {'/'.join(parts)!r}: too many levels of symbolic links")
        fd = os.dup(self.root_fd)
        try:
            for i, name in enumerate(parts):
                try:
                    # a real directory below a directory inside the root is inside the root
                    nfd = os.open(name, DIR_PATH | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    try:
                        os.mkdir(name, 0o755, dir_fd=fd)
                        self.made = True
                        if self.hooks is not None:
                            self.hooks.made_dir(fd, name, parts[: i + 1])
                    except FileExistsError:
                        st = os.lstat(name, dir_fd=fd)
                        if not stat.S_ISLNK(st.st_mode):
                            raise
                        os.close(self._symlink_target(fd, name, parts[:i], depth))
                    nfd = self.open("/".join(parts[: i + 1]))
                except (NotADirectoryError, OSError) as e:
                    if (isinstance(e, NotADirectoryError) and self.hooks is not None
                            and self.hooks.replace_whiteout(fd, name, parts[: i + 1])):
                        nfd = os.open(name, DIR_PATH | os.O_NOFOLLOW, dir_fd=fd)
                    elif isinstance(e, NotADirectoryError) or e.errno == errno.ELOOP:
                        # a symlink (or not a directory): let the kernel resolve it inside the root
                        try:
                            nfd = self.open("/".join(parts[: i + 1]))
                        except KernelError as ke:
                            if ke.errno != errno.ENOENT:
                                raise
                            os.close(self._symlink_target(fd, name, parts[:i], depth))
                            nfd = self.open("/".join(parts[: i + 1]))
                    else:
                        raise
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _symlink_target(self, fd: int, name: str, base_parts: list[str], depth: int) -> int:
        """Create the directory a dangling symlink `name` of `fd` points to (inside the root)."""
        target = os.readlink(name, dir_fd=fd)
        base = [] if target.startswith("/") else base_parts
        resolved: list[str] = []
        for comp in base + target.split("/"):
            if comp == "..":
                if resolved:
                    resolved.pop()
            elif comp and comp != ".":
                resolved.append(comp)
        return self.mkdir_parents(resolved, depth + 1)

    def reopen(self, path: str, ident: tuple[int, int]) -> int | None:
        """A readable fd of directory `path` if it is still the inode `ident` (dev, ino), else None.

        For the fix-ups at the end (directory modes and times): the path is
        resolved again inside the root, its last component is not followed,
        and what it names now must be the directory that was created.
        """
        try:
            fd = self.open(path, DIR_READ | os.O_NOFOLLOW)
        except (KernelError, OSError):
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != ident:
            os.close(fd)
            return None
        return fd
