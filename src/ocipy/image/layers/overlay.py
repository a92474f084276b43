"""Overlay form: one layer unpacked onto an empty directory, to be stacked by overlayfs.

The layer's own entries are applied as usual (:mod:`.apply`), but what the
regular unpack does *to the lower layers* cannot be done here -- they are
other directories, never written.  Instead:

* whiteouts become overlayfs whiteouts (:mod:`.whiteout`): a 0:0 character
  device for ``.wh.NAME``, ``trusted.overlay.opaque=y`` for ``.wh..wh..opq``
  (the form containerd's overlayfs snapshotter writes);
* a parent directory the layer needs but does not list is created with the
  metadata the lowers give it (mode, owner, times, xattrs): overlayfs shows
  the upper directory's inode, so 0755 root:root would override the image's;
* a hardlink whose target is only in a lower layer copies the target up into
  this layer first (a link cannot cross directories of different layers),
  with the target's other visible names in that lower (one group stays one).

The lowers are read-only here and looked up as overlayfs does (:meth:`find`):
top first, one component at a time, never following a symlink, stopping at
a whiteout, an opaque directory or a non-directory.  A symlink in a lower
layer is not followed for this layer's paths: ``a/x`` over a lower symlink
``a`` makes a directory ``a`` in this layer (as containerd and Docker do; a
flat unpack would write through the link).
"""

from __future__ import annotations

import errno
import os
import stat

from ocipy.errors import KernelError
from ocipy.image.layers import whiteout
from ocipy.image.layers.rootdirs import DIR_PATH, DIR_READ

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.image.layers.apply import Applier

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


def copy_file(sfd: int, sname: str, dfd: int, dname: str, st: os.stat_result) -> None:
    """Copy the regular file `sname` of directory `sfd` (stat `st`) to the new
    `dname` of `dfd`: its data (a reflink where possible) and its owner, mode,
    xattrs and times; neither name is followed."""
    src = os.open(sname, _READ, dir_fd=sfd)
    try:
        dst = os.open(dname, _CREATE, 0o600, dir_fd=dfd)
        try:
            copy_data(src, dst, st.st_size)
            Overlay.copy_meta(src, dst, st)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_data(src: int, dst: int, size: int) -> None:
    """Copy `size` bytes of file `src` to the empty file `dst`: a reflink where the
    filesystem shares extents (btrfs, xfs), else copy_file_range (in the kernel)."""
    if size == 0:
        return
    import fcntl

    try:
        fcntl.ioctl(dst, FICLONE, src)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EBADF):
            raise
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src, dst, size - done, done, done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            n = _copy_plain(src, dst, done, size - done)
        if n == 0:
            raise OSError(errno.EIO, "file shrank while it was copied")
        done += n


def _copy_plain(src: int, dst: int, offset: int, count: int) -> int:
    from ocipy.fsutil import write_all

    data = os.pread(src, min(count, 1 << 20), offset)
    os.lseek(dst, offset, os.SEEK_SET)
    write_all(dst, data)
    return len(data)


def copy_xattrs(src: int | str, dst: int | str) -> None:
    """The xattrs of `src` onto `dst`, but not overlayfs' own (trusted.overlay.*)."""
    try:
        names = os.listxattr(src)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        if name.startswith(whiteout.OVERLAY_XATTR_PREFIX):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA):
                raise


class Found:
    """An entry of the lowers: its directory's fd (owned), its name, stat and lower (index)."""

    __slots__ = ("fd", "name", "st", "layer")

    def __init__(self, fd: int, name: str, st: os.stat_result, layer: int) -> None:
        self.fd, self.name, self.st, self.layer = fd, name, st, layer

    def close(self) -> None:
        os.close(self.fd)


class Overlay:
    """The overlay-form part of an :class:`~.apply.Applier` (its ``dirs.hooks`` too).

    `lowers`: the snapshot directories below this layer, top first.
    """

    def __init__(self, app: Applier, lowers: list[str]) -> None:
        self.app = app
        self.roots = [os.open(p, DIR_PATH) for p in lowers]
        self.whited: set[str] = set()  # whiteout devices this layer made
        self.opaque: set[str] = set()  # directories this layer made opaque
        self._cursor: tuple[tuple[str, ...], list[tuple[int, int]]] = (
            (), [(i, os.dup(fd)) for i, fd in enumerate(self.roots)])
        self._links: dict[int, dict[int, list[str]]] = {}  # lower -> inode -> its names (nlink > 1)

    def close(self) -> None:
        for fd in self.roots + [fd for _i, fd in self._cursor[1]]:
            os.close(fd)
        self.roots = []
        self._cursor = ((), [])

    def start_layer(self) -> None:
        self.whited = set()
        self.opaque = set()

    # -- the lowers, as overlayfs sees them ----------------------------------------

    def hidden(self, parts: list[str]) -> bool:
        """Whether this layer hides the lowers at `parts` (a whiteout or opaque dir above it)."""
        if not self.whited and not self.opaque:
            return False
        if "" in self.opaque:
            return True
        path = "/".join(parts)
        return any(path.startswith(p + "/") for p in self.whited) or any(
            path.startswith(p + "/") for p in self.opaque)

    def find(self, parts: list[str]) -> Found | None:
        """The topmost visible entry at `parts` in the lowers, or None."""
        if self.hidden(parts) or not parts:
            return None
        fds = self._dirs(tuple(parts[:-1]))
        try:
            for i, (layer, fd) in enumerate(fds):
                try:
                    st = os.lstat(parts[-1], dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if whiteout.is_whiteout(st):
                    return None
                fds.pop(i)
                return Found(fd, parts[-1], st, layer)
            return None
        finally:
            for _layer, fd in fds:
                os.close(fd)

    def _dirs(self, path: tuple[str, ...]) -> list[tuple[int, int]]:
        """(lower, fd) of the lowers' visible directories at `path`, top first (the fds are the caller's).

        The last answer is kept: parents are made one level after the other,
        so each step costs one component, not the whole path (2,000 levels)."""
        base, cached = self._cursor
        if path[:len(base)] == base:
            fds, rest = [(i, os.dup(fd)) for i, fd in cached], path[len(base):]
        else:
            fds, rest = [(i, os.dup(fd)) for i, fd in enumerate(self.roots)], path
        for name in rest:
            nxt: list[tuple[int, int]] = []
            for layer, fd in fds:
                try:
                    st = os.lstat(name, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    break  # a whiteout or a non-directory hides the layers below
                nfd = os.open(name, DIR_READ | os.O_NOFOLLOW, dir_fd=fd)
                nxt.append((layer, nfd))
                if whiteout.is_opaque(nfd):
                    break
            for _layer, fd in fds:
                os.close(fd)
            fds = nxt
            if not fds:
                break
        for _layer, fd in cached:
            os.close(fd)
        self._cursor = (path, [(i, os.dup(fd)) for i, fd in fds])
        return fds

    def is_lower_dir(self, parts: list[str]) -> bool:
        if not parts:
            return bool(self.roots) and not self.hidden([""])
        found = self.find(parts)
        if found is None:
            return False
        found.close()
        return stat.S_ISDIR(found.st.st_mode)

    # -- hooks of RootDirs.mkdir_parents -----------------------------------------

    def made_dir(self, pfd: int, name: str, parts: list[str]) -> None:
        """A parent directory the layer does not list: give it the lowers' metadata."""
        found = self.find(parts)
        if found is None:
            return  # new here: 0755 root:root, as the regular unpack makes it
        try:
            if not stat.S_ISDIR(found.st.st_mode):
                return
            src = os.open(found.name, DIR_READ | os.O_NOFOLLOW, dir_fd=found.fd)
        finally:
            found.close()
        try:
            fd = os.open(name, DIR_READ | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                self.copy_meta(src, fd, found.st)
                st = os.fstat(fd)
                # entries still to come change its mtime: set at the layer's end
                self.app.dir_times.append(("/".join(parts), found.st.st_mtime_ns, (st.st_dev, st.st_ino)))
            finally:
                os.close(fd)
        finally:
            os.close(src)

    def replace_whiteout(self, pfd: int, name: str, parts: list[str]) -> bool:
        """A parent directory goes where this layer put a whiteout: an opaque directory."""
        path = "/".join(parts)
        if path not in self.whited:
            return False
        os.unlink(name, dir_fd=pfd)
        os.mkdir(name, 0o755, dir_fd=pfd)
        fd = os.open(name, DIR_READ | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            self.make_opaque(fd, path)
        finally:
            os.close(fd)
        return True

    def make_opaque(self, fd: int, path: str) -> None:
        whiteout.set_opaque(fd)
        self.whited.discard(path)
        self.opaque.add(path)

    # -- hardlinks to the lowers ---------------------------------------------------

    def copy_up(self, tparts: list[str]) -> bool:
        """Copy the lowers' non-directory at `tparts` into this layer; False if there is none."""
        found = self.find(tparts)
        if found is None:
            return False
        try:
            st = found.st
            if stat.S_ISDIR(st.st_mode):
                return False
            app = self.app
            pfd = app.dirs.parent(tparts)
            name = tparts[-1]
            if stat.S_ISREG(st.st_mode):
                app.files_budget -= st.st_size
                if app.files_budget < 0:
                    from ocipy.errors import ImageError

                    raise ImageError(f"{app.what}: hardlink target {'/'.join(tparts)!r}: expanded size "
                                     f"exceeds the limit (decompression bomb?); raise it with --max-size")
                copy_file(found.fd, found.name, pfd, name, st)
            else:
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(found.name, dir_fd=found.fd), name, dir_fd=pfd)
                else:
                    os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=pfd)
                    os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=pfd, follow_symlinks=False)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=pfd, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)
            if st.st_nlink > 1:
                self._copy_up_group(found.layer, st, tparts)
            return True
        finally:
            found.close()

    def _copy_up_group(self, layer: int, st: os.stat_result, tparts: list[str]) -> None:
        """The lower's other names of a copied-up inode, linked to the copy where they are
        still visible: the merged tree keeps one hardlink group, as a flat unpack has it."""
        app = self.app
        target = "/".join(tparts)
        for other in self._groups(layer).get(st.st_ino, []):
            if other == target:
                continue
            oparts = other.split("/")
            found = self.find(oparts)
            if found is None:
                continue
            same = found.layer == layer and found.st.st_ino == st.st_ino
            found.close()
            if not same:
                continue  # hidden or replaced above that lower
            try:
                opfd = app.dirs.parent(oparts)
                tpfd = app.dirs.parent(tparts, create=False)
                os.link(tparts[-1], oparts[-1], src_dir_fd=tpfd, dst_dir_fd=opfd, follow_symlinks=False)
            except FileExistsError:
                continue  # this layer has its own entry there
            except (OSError, KernelError) as e:
                if e.errno not in (errno.ENOTDIR, errno.ENOENT):
                    raise
                continue  # this layer has a non-directory on the way

    def _groups(self, layer: int) -> dict[int, list[str]]:
        """inode -> names of the multiply-linked files of one lower snapshot (one walk, cached)."""
        groups = self._links.get(layer)
        if groups is None:
            from ocipy import fstree

            groups = {}

            def visit(rel: str, fd: int, entries: list[os.DirEntry[str]]) -> list[str]:
                for e in entries:
                    est = e.stat(follow_symlinks=False)
                    if est.st_nlink > 1 and not stat.S_ISDIR(est.st_mode):
                        groups.setdefault(est.st_ino, []).append(f"{rel}/{e.name}" if rel else e.name)
                return fstree.subdirs(entries)

            fstree.walk(self.roots[layer], visit)
            self._links[layer] = groups
        return groups

    @staticmethod
    def copy_meta(src: int, dst: int, st: os.stat_result) -> None:
        """Owner, mode, xattrs and times of `st` (open as `src`) onto the fd `dst`."""
        os.fchown(dst, st.st_uid, st.st_gid)
        os.fchmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
        copy_xattrs(src, dst)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
