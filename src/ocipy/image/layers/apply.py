"""Applying layers (layer.md) onto a rootfs: nothing outside it is ever created, changed or read.

* every directory is resolved inside the root (:mod:`.rootdirs`), so ``..``
  and symlinks planted by earlier entries or layers cannot lead out of it;
* the last component is never followed: files are created with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` (an existing path is unlinked first, as
  layer.md's "changeset over existing files" says), so writing through a
  planted symlink, device node or fifo is impossible;
* every metadata change goes to the inode that was just created: through its
  fd (files, directories) or by name in its parent's fd without following it
  (symlinks, nodes); directory modes and times fixed up later are applied to
  a fd reopened inside the root and checked to be the same inode;
* names with ``..`` components, absolute names, hardlinks to absolute or
  ``..`` targets and non-directory duplicate entries are rejected with an
  :class:`ImageError` naming the layer and the entry;
* a cap on the expanded size (``max_size``) stops decompression bombs and
  huge sparse entries before they fill the disk.

Whiteouts are in :mod:`.whiteout`; removal of trees of any depth in
:mod:`ocipy.fstree`.  ``ApplyOptions(overlay=True)`` unpacks one layer onto an
empty directory in the form overlayfs stacks (:mod:`.overlay`).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile

from ocipy import fstree
from ocipy.errors import ImageError, KernelError
from ocipy.image.layers import whiteout
from ocipy.image.layers.rootdirs import DIR_READ, O_PATH, RootDirs
from ocipy.image.layers.stream import (
    CHUNK,
    LayerStream,
    entries,
    max_size_default,
    mtime_ns,
    split_name,
)
from ocipy.image.layers.workers import Workers, worker_count

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.image.layers.overlay import Overlay

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR = "SCHILY.xattr."


def _umask() -> int | None:
    """The process's umask, read without changing it (os.umask would, for every thread); None if unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


class ApplyOptions:
    """How layers are applied.

    max_size: cap on the expanded bytes of the whole unpack (decompressed
      stream and file sizes); exceeding it is an ImageError.
    ownership: chown entries to their uid/gid (default: when running as root).
    devices: create device nodes (default: when running as root; skipped otherwise).
    xattrs: apply SCHILY.xattr.* PAX records.
    overlay: overlay form (:mod:`.overlay`): one layer onto an empty directory, the
      layers below it given to the Applier as `lowers`.
    """

    def __init__(self, max_size: int | None = None, ownership: bool | None = None,
                 devices: bool | None = None, xattrs: bool = True, overlay: bool = False) -> None:
        root = os.geteuid() == 0
        self.max_size = max_size if max_size is not None else max_size_default()
        self.ownership = root if ownership is None else ownership
        self.devices = root if devices is None else devices
        self.xattrs = xattrs
        self.root = root
        self.overlay = overlay


class Applier:
    """Apply layers, one after the other, onto `rootfs` (which must exist), then finish().

    In overlay form (``options.overlay``) `rootfs` is the new layer's empty
    directory and `lowers` the snapshot directories below it, top first.
    """

    SMALL_FILE = 1 << 20  # files up to this size are written by the worker threads

    def __init__(self, rootfs: str, options: ApplyOptions | None = None, threads: int | None = None,
                 lowers: list[str] | None = None) -> None:
        self.opts = options or ApplyOptions()
        self.rootfs = rootfs
        self.workers: Workers | None = None
        self.dirs = RootDirs(rootfs, self._barrier)
        self.budget = [self.opts.max_size]
        self.files_budget = self.opts.max_size
        self.what = "layer"
        self.added: set[str] = set()
        self.added_dirs: set[str] = set()
        # by directory (st_dev, st_ino), not by path (a symlink of this layer may name it too):
        # the names this layer created in it, and the directories this layer made (nothing
        # but those names is in them)
        self.created: dict[tuple[int, int], set[str]] = {}
        self.fresh: set[tuple[int, int]] = set()
        self.first = True  # no layer applied yet
        self.euid = os.geteuid()
        self.umask = _umask()
        self.dir_times: list[tuple[str, int, tuple[int, int]]] = []
        # a non-root user keeps its directories u+rwx until every layer is applied
        self.dir_modes: dict[str, tuple[int, tuple[int, int]]] = {}
        self.overlay: Overlay | None = None
        if self.opts.overlay:
            from ocipy.image.layers.overlay import Overlay

            self.overlay = Overlay(self, lowers or [])
            self.dirs.hooks = self.overlay
        n = worker_count() if threads is None else threads
        self.workers = Workers(n) if n > 1 else None

    def close(self) -> None:
        if self.workers is not None:
            self.workers.error = self.workers.error or ("", ImageError("aborted"))
            self.workers.stop()
            self.workers = None
        if self.overlay is not None:
            self.overlay.close()
        self.dirs.close()

    def __enter__(self) -> Applier:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self.close()

    # -- threads -------------------------------------------------------------------

    def _barrier(self) -> None:
        if self.workers is not None:
            err = self.workers.barrier()
            if err is not None:
                name, e = err
                if isinstance(e, ImageError):
                    raise e
                msg = str(e) if isinstance(e, KernelError) else (
                    e.strerror if isinstance(e, OSError) and e.strerror else str(e))
                raise ImageError(f"{self.what}: entry {name!r}: {msg}")

    def remove(self, pfd: int, name: str, st: os.stat_result | None = None) -> None:
        """Remove name (any type, a whole tree) from directory pfd without following it."""
        if st is None:
            st = os.lstat(name, dir_fd=pfd)
        if stat.S_ISDIR(st.st_mode):
            self.dirs.drop()
            self.fresh.clear()  # its inode number may come back
            fstree.rmtree_at(pfd, name, fix_perms=not self.opts.root)
        else:
            if stat.S_ISLNK(st.st_mode):
                self.dirs.drop()
            os.unlink(name, dir_fd=pfd)

    # -- one layer ---------------------------------------------------------------

    def apply(self, stream: LayerStream, what: str) -> None:
        """Apply one layer's tar stream (already decompressed by `stream`)."""
        self.what = self.dirs.what = what
        self.added = set()
        self.added_dirs = set()
        self.created = {}
        self.fresh = set()
        self.dir_times = []
        if self.overlay is not None:
            self.overlay.start_layer()
        elif self.first:
            self._root_fresh()
        self.first = False
        dirs = self.dirs
        try:
            for tf, info in entries(stream, what):
                if dirs.graveyard:
                    dirs.bury()
                try:
                    self._entry(tf, stream, info)
                except ImageError:
                    raise
                except (OSError, ValueError, KernelError) as e:  # KernelError is no OSError
                    msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise ImageError(f"{what}: entry {info.name!r}: {msg}") from None
            self._barrier()
            self._finish_times()
        finally:
            if self.workers is not None:
                self.workers.barrier()
            dirs.forget()

    def _root_fresh(self) -> None:
        """Before the first layer: an empty rootfs counts as made by this layer."""
        fd = os.open(".", DIR_READ, dir_fd=self.dirs.root_fd)
        try:
            st = os.fstat(fd)
            with os.scandir(fd) as it:
                empty = next(it, None) is None
        finally:
            os.close(fd)
        if empty:
            self.fresh.add((st.st_dev, st.st_ino))

    def finish(self) -> None:
        """After the last layer: the directory modes a non-root user had to defer."""
        # deepest first: a parent made unsearchable must not hide its children
        for path in sorted(self.dir_modes, key=lambda p: -p.count("/") if p else 1):
            mode, ident = self.dir_modes[path]
            fd = self.dirs.reopen(path, ident)
            if fd is None:
                continue  # replaced or removed by a later entry: the fix-up no longer applies
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        self.dir_modes = {}

    def _finish_times(self) -> None:
        for path, mtime, ident in reversed(self.dir_times):
            fd = self.dirs.reopen(path, ident)
            if fd is None:
                continue
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)
        self.dir_times = []

    def _mark_added(self, path: str) -> None:
        self.added.add(path)
        if self.overlay is not None:
            self.overlay.whited.discard(path)  # replaced by this entry
        added_dirs = self.added_dirs
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            if path in added_dirs:
                break
            added_dirs.add(path)
        else:
            added_dirs.add("")

    def _entry(self, tf: tarfile.TarFile, stream: LayerStream, info: tarfile.TarInfo) -> None:
        what = self.what
        parts = split_name(info.name, info.name, what)
        if not parts:
            # "./" -- the root directory itself: apply its attributes
            if info.isdir():
                fd = os.open(".", DIR_READ, dir_fd=self.dirs.root_fd)
                try:
                    self._dir_attrs(fd, info, "")
                finally:
                    os.close(fd)
                self.dirs.changed("")
            return
        base = parts[-1]
        if base.startswith(whiteout.WHITEOUT_PREFIX):
            self._barrier()
            whiteout.apply(self, parts, info)
            return
        path = "/".join(parts)
        if path in self.added and not (info.isdir() and self._is_dir(parts)):
            # layer.md: "Layer Changesets for the media type application/vnd.oci.image.layer.v1.tar
            # MUST NOT include duplicate entries for file paths in the resulting tar archive."
            raise ImageError(f"{what}: entry {info.name!r}: duplicate entry in layer")
        dirs = self.dirs
        pfd = dirs.parent(parts)
        if dirs.made:  # implicit parents were made: their names are not tracked
            dirs.made = False
            self.fresh.clear()
        key = path.rpartition("/")[0]
        meta = dirs.new_entry_meta(key, pfd)
        names = self.created.get(meta[2])
        if names is None:
            names = self.created[meta[2]] = set()
        if info.isdir():
            self._dir(pfd, base, info, path)
        elif info.islnk():
            self._barrier()  # the target may be a file a worker is still writing
            self._hardlink(pfd, base, info)
        else:
            workers = self.workers
            st: os.stat_result | None = None
            if base in names:
                self._barrier()  # made by this layer (a worker may still be at it): look
            if base in names or meta[2] not in self.fresh:
                # a directory this layer made holds only what this layer created in it;
                # anywhere else something may be in the way
                try:
                    st = os.lstat(base, dir_fd=pfd)
                except FileNotFoundError:
                    pass
            if st is not None:
                # layer.md "Changeset over existing files": remove, then recreate (here, inline)
                self._barrier()
                self.remove(pfd, base, st)
                workers = None
            if info.isreg():
                size = info.size
                self.files_budget -= size
                if size < 0 or self.files_budget < 0:
                    raise ImageError(f"{what}: entry {info.name!r}: expanded size exceeds the limit "
                                     f"(decompression bomb?); raise it with --max-size")
                if workers is not None and info.sparse is None and size <= self.SMALL_FILE:
                    if size:
                        stream.seek(info.offset_data)
                        data = stream.read(size)
                        if len(data) != size:
                            raise ImageError(f"{what}: entry {info.name!r}: truncated file data")
                    else:
                        data = b""
                    workers.submit(key or parts[0], self._write_file,
                                   (pfd, base, info, data, self._plan(meta, info)), info.name, size)
                else:
                    self._file(pfd, base, tf, stream, info, self._plan(meta, info))
            elif info.issym() or info.isfifo() or info.ischr() or info.isblk():
                if (info.ischr() or info.isblk()) and not self.opts.devices:
                    return  # not root: device nodes cannot be created (as umoci --rootless)
                chown = self._plan(meta, info)[1]
                if workers is not None:
                    workers.submit(key, self._node, (pfd, base, info, chown), info.name)
                else:
                    self._node(pfd, base, info, chown)
            else:
                raise ImageError(f"{what}: entry {info.name!r}: unsupported tar entry type {info.type!r}")
        names.add(base)
        self._mark_added(path)

    def _is_dir(self, parts: list[str]) -> bool:
        try:
            pfd = self.dirs.parent(parts, create=False)
            return stat.S_ISDIR(os.lstat(parts[-1], dir_fd=pfd).st_mode)
        except (OSError, KernelError):
            return False

    def _plan(self, meta: tuple[int, bool, tuple[int, int]], info: tarfile.TarInfo) -> tuple[int, bool, bool]:
        """(mode to create with, chown needed, chmod needed) for a new entry in a directory
        of RootDirs.new_entry_meta `meta`.

        A new inode already has our uid and the directory's gid if it is setgid (else
        ours), and the mode it was created with minus the umask (a default ACL instead
        of the umask: then always chmod).  A chown or chmod that would change nothing
        is left out; set-id and sticky bits are always set by chmod (after chown, which
        clears them).
        """
        mode = info.mode & 0o7777
        gid, acl = meta[0], meta[1]
        chown = self.opts.ownership and (info.uid != self.euid or info.gid != gid)
        umask = self.umask
        if umask is None or acl or mode & (0o7000 | umask):
            return 0o600, chown, True
        return mode, chown, False

    # -- entry kinds ---------------------------------------------------------------

    def _node(self, pfd: int, name: str, info: tarfile.TarInfo, chown: bool = True) -> None:
        """Create a symlink, fifo or device node (the name does not exist)."""
        if info.issym():
            os.symlink(info.linkname, name, dir_fd=pfd)
        else:
            if info.isfifo():
                kind, dev = stat.S_IFIFO, 0
            else:
                kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
                dev = os.makedev(info.devmajor, info.devminor)
            os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
        # by name in pfd, never following it (a symlink's own owner and times)
        if chown and self.opts.ownership:
            os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        if not info.issym():
            os.chmod(name, info.mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        if self.opts.xattrs and info.pax_headers and any(k.startswith(_XATTR) for k in info.pax_headers):
            fd = os.open(name, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                self._xattrs(f"/proc/self/fd/{fd}", info)  # the magic link names this very inode
            finally:
                os.close(fd)
        mtime = mtime_ns(info)
        os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _write_file(self, pfd: int, name: str, info: tarfile.TarInfo, data: bytes,
                    plan: tuple[int, bool, bool]) -> None:
        """Create a regular file with `data` (the name does not exist); `plan` is :meth:`_plan`'s."""
        fd = os.open(name, _FILE_FLAGS, plan[0], dir_fd=pfd)
        try:
            if data:
                self._write_all(fd, data)
            self._file_attrs(fd, info, plan)
        finally:
            os.close(fd)

    def _file_attrs(self, fd: int, info: tarfile.TarInfo, plan: tuple[int, bool, bool]) -> None:
        if plan[1]:
            os.fchown(fd, info.uid, info.gid)
        if plan[2]:
            os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears setuid bits
        if self.opts.xattrs and info.pax_headers:
            self._xattrs(fd, info)
        mtime = mtime_ns(info)
        os.utime(fd, ns=(mtime, mtime))

    def _file(self, pfd: int, name: str, tf: tarfile.TarFile, stream: LayerStream,
              info: tarfile.TarInfo, plan: tuple[int, bool, bool]) -> None:
        """Create a regular file streaming its data (large or sparse files, or no workers)."""
        fd = os.open(name, _FILE_FLAGS, plan[0], dir_fd=pfd)
        try:
            if info.sparse is not None:
                src = tf.extractfile(info)
                assert src is not None
                while True:
                    data = src.read(CHUNK)
                    if not data:
                        break
                    self._write_all(fd, data)
            elif info.size:
                stream.seek(info.offset_data)
                remaining = info.size
                read = stream.read
                while remaining:
                    data = read(CHUNK if remaining > CHUNK else remaining)
                    if not data:
                        raise ImageError(f"{self.what}: entry {info.name!r}: truncated file data")
                    remaining -= len(data)
                    self._write_all(fd, data)
            self._file_attrs(fd, info, plan)
        finally:
            os.close(fd)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        n = os.write(fd, data)
        if n != len(data):
            view = memoryview(data)
            while n < len(view):
                w = os.write(fd, view[n:])
                if w <= 0:
                    raise OSError(errno.ENOSPC, "short write")
                n += w

    def _dir(self, pfd: int, name: str, info: tarfile.TarInfo, path: str) -> None:
        made = True
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.lstat(name, dir_fd=pfd)
            if stat.S_ISDIR(st.st_mode):
                made = False
            else:
                # layer.md "Changeset over existing files": remove, then recreate
                self.remove(pfd, name, st)
                os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_READ | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            if self.overlay is not None and path in self.overlay.whited:
                self.overlay.make_opaque(fd, path)  # the lowers' directory was whited out: hide it
            ident = self._dir_attrs(fd, info, path)
            if made and self.overlay is None:
                # (in overlay form whiteouts and copy-ups create entries too: not tracked)
                self.fresh.add(ident)
        except BaseException:
            os.close(fd)
            raise
        self.dirs.changed(path)  # a new owner or mode: what new entries in it get
        # the directory we just made is the parent of the entries that follow: cache it
        self.dirs.keep(path, fd)

    def _dir_attrs(self, fd: int, info: tarfile.TarInfo, path: str) -> tuple[int, int]:
        if self.opts.ownership:
            os.fchown(fd, info.uid, info.gid)
        mode = info.mode & 0o7777
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if not self.opts.root:
            if mode & 0o700 != 0o700:
                self.dir_modes[path] = (mode, ident)  # keep the dir usable until every layer is in
                mode |= 0o700
            else:
                self.dir_modes.pop(path, None)
        os.fchmod(fd, mode)
        if self.opts.xattrs and info.pax_headers:
            self._xattrs(fd, info)
        self.dir_times.append((path, mtime_ns(info), ident))
        return ident

    def _xattrs(self, target: int | str, info: tarfile.TarInfo) -> None:
        for key, value in info.pax_headers.items():
            if not key.startswith(_XATTR):
                continue
            attr = key[len(_XATTR):]
            if attr.startswith("trusted.overlay.") or attr == "security.selinux":
                continue  # would change how overlayfs/SELinux treat the file, not its content
            raw = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(target, attr, raw)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise

    def _link_target(self, tparts: list[str]) -> tuple[int, os.stat_result]:
        """The parent fd and stat of a hardlink's target (in overlay form, copied up from the lowers)."""
        ov = self.overlay
        try:
            spfd = self.dirs.parent(tparts, create=False)
            st = os.lstat(tparts[-1], dir_fd=spfd)
        except (FileNotFoundError, KernelError) as e:
            if ov is None or (isinstance(e, KernelError) and e.errno != errno.ENOENT):
                raise
            if not ov.copy_up(tparts):
                raise
            spfd = self.dirs.parent(tparts, create=False)
            st = os.lstat(tparts[-1], dir_fd=spfd)
        if ov is not None and "/".join(tparts) in ov.whited:
            raise FileNotFoundError(errno.ENOENT, "whited out")
        return spfd, st

    def _hardlink(self, pfd: int, name: str, info: tarfile.TarInfo) -> None:
        tparts = split_name(info.linkname, info.name, self.what, "hardlink target")
        if not tparts:
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink to the root directory")
        try:
            spfd, st = self._link_target(tparts)
        except (FileNotFoundError, NotADirectoryError, KernelError):
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink target "
                             f"{info.linkname!r} does not exist in the rootfs") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{self.what}: entry {info.name!r}: hardlink to directory {info.linkname!r}")
        if spfd == pfd and tparts[-1] == name:
            return  # a link to itself: nothing to do

        def link() -> None:
            # linkat() without AT_SYMLINK_FOLLOW: the last component is never followed
            os.link(tparts[-1], name, src_dir_fd=spfd, dst_dir_fd=pfd, follow_symlinks=False)

        try:
            link()
        except FileExistsError:
            self.remove(pfd, name)
            link()

