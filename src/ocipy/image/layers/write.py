"""Writing layers: a PAX tar streamed through a codec into a blob.

:class:`LayerWriter` computes the blob digest (the layout's blob writer) and
the diff_id (sha256 of the tar) on the way.  Host files are read through
directory fds, one component at a time, so trees of any depth (paths longer
than PATH_MAX included) can be added, and a symlink is recorded, never
followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from typing import IO, Any

from ocipy import fstree
from ocipy.errors import ImageError
from ocipy.image.layers.compression import CompressingWriter, DecompressedReader, sniff
from ocipy.image.layers.compression import get as get_codec
from ocipy.image.layers.stream import CHUNK
from ocipy.image.layers.whiteout import WHITEOUT_PREFIX

_SKIP_XATTRS = ("security.selinux",)


class _Sink:
    """tarfile output: hash the tar (diff_id), then compress into the blob writer."""

    def __init__(self, out: Any, codec: Any) -> None:
        self.diff = hashlib.sha256()
        self.writer = CompressingWriter(out, codec)

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        return self.writer.write(data)

    def close(self) -> None:
        self.writer.close()

    def tell(self) -> int:
        return 0


def _xattrs(path: str | int) -> dict[str, str]:
    """SCHILY.xattr.* PAX records of `path` (not followed) or of an open fd."""
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError:
        return {}
    pax: dict[str, str] = {}
    for attr in names:
        if attr in _SKIP_XATTRS or attr.startswith("trusted.overlay."):
            continue
        try:
            value = os.getxattr(path, attr, follow_symlinks=follow)
        except OSError:
            continue
        pax[f"SCHILY.xattr.{attr}"] = value.decode("utf-8", "surrogateescape")
    return pax


class LayerWriter:
    """Write a layer blob: add entries, then finish() -> (descriptor, diff_id)."""

    def __init__(self, layout: Any, compression: str = "gzip") -> None:
        codec = get_codec(compression, "layer")
        self.media_type = codec.media_type
        self.blob = layout.blob_writer()
        self.sink = _Sink(self.blob, codec)
        self._tar: tarfile.TarFile | None = None
        self._copied = False
        self._inodes: dict[tuple[int, int], str] = {}
        self._parent: tuple[int, str, int] | None = None  # (root fd, rel dir, fd) of add_from

    @property
    def tar(self) -> tarfile.TarFile:
        if self._tar is None:
            self._tar = tarfile.open(fileobj=self.sink, mode="w|",  # type: ignore[call-overload]
                                     format=tarfile.PAX_FORMAT, bufsize=CHUNK)
        return self._tar

    def _info(self, arcname: str, st: os.stat_result) -> tarfile.TarInfo | None:
        """The header of a file with `st` (None for sockets, which tar cannot hold)."""
        info = tarfile.TarInfo(arcname)
        mode = st.st_mode
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(mode) and st.st_nlink > 1 and key in self._inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = self._inodes[key]
        elif stat.S_ISREG(mode):
            info.size = st.st_size
            if st.st_nlink > 1:
                self._inodes[key] = arcname
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return None
        return info

    def add_at(self, dir_fd: int, name: str, arcname: str, st: os.stat_result | None = None) -> None:
        """Add entry `name` of directory `dir_fd` as `arcname` (a directory's content is not added)."""
        if st is None:
            st = os.lstat(name, dir_fd=dir_fd)
        info = self._info(arcname, st)
        if info is None:
            return
        if info.type == tarfile.SYMTYPE:
            info.linkname = os.readlink(name, dir_fd=dir_fd)
        # the magic link is the directory; `name` in it is not followed
        pax = _xattrs(f"/proc/self/fd/{dir_fd}/{name}")
        if pax:
            info.pax_headers = pax
        if info.type == tarfile.REGTYPE and info.size:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)

    def _add_dir_fd(self, fd: int, arcname: str) -> None:
        """Add the directory open as `fd` (its entry only)."""
        info = self._info(arcname, os.fstat(fd))
        assert info is not None
        pax = _xattrs(fd)
        if pax:
            info.pax_headers = pax
        self.tar.addfile(info)

    def add_from(self, root_fd: int, rel: str, arcname: str) -> None:
        """Add `rel` (a path below directory `root_fd`, resolved without any symlink) as `arcname`."""
        parent, _, name = rel.rpartition("/")
        cached = self._parent
        if cached is None or cached[0] != root_fd or cached[1] != parent:
            self._close_parent()
            fd = fstree.open_beneath(root_fd, parent) if parent else os.dup(root_fd)
            self._parent = cached = (root_fd, parent, fd)
        self.add_at(cached[2], name, arcname)

    def _close_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[2])
            self._parent = None

    def add_whiteout(self, arcname_of_deleted: str) -> None:
        parent, _, base = arcname_of_deleted.rpartition("/")
        info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)
        info.mode = 0o644
        info.uname = info.gname = ""
        info.mtime = 0
        self.tar.addfile(info)

    def add_tree(self, root: str, prefix: str = "") -> None:
        """Add everything below host directory `root` (sorted, stable; any depth)."""
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

        def visit(rel: str, fd: int, entries: list[os.DirEntry[str]]) -> list[str]:
            if rel:
                self._add_dir_fd(fd, prefix + rel)
            dirs: list[os.DirEntry[str]] = []
            others: list[os.DirEntry[str]] = []
            for e in entries:
                (dirs if e.is_dir(follow_symlinks=False) else others).append(e)
            for e in sorted(others, key=lambda e: e.name):
                self.add_at(fd, e.name, prefix + (f"{rel}/{e.name}" if rel else e.name),
                            e.stat(follow_symlinks=False))
            return sorted(e.name for e in dirs)

        try:
            fstree.walk(top, visit)
        finally:
            os.close(top)

    def copy_tar(self, src: IO[bytes]) -> None:
        """Copy an existing (uncompressed or gzip/zstd) tar stream as the layer's content."""
        if self._tar is not None:
            raise ImageError("copy_tar: entries were already added to this layer")
        self._copied = True
        head = src.read(4)

        class _Cat:
            def __init__(self) -> None:
                self.first = head

            def read(self, n: int) -> bytes:
                if self.first:
                    out, self.first = self.first, b""
                    return out
                return src.read(n)

        reader = DecompressedReader(_Cat(), sniff(head), "tar")
        while True:
            data = reader.read(CHUNK)
            if not data:
                break
            self.sink.write(data)

    def finish(self) -> tuple[dict[str, Any], str]:
        self._close_parent()
        if not self._copied:
            self.tar.close()
        self.sink.close()
        digest, size = self.blob.commit()
        return {"mediaType": self.media_type, "digest": digest, "size": size}, "sha256:" + self.sink.diff.hexdigest()

    def abort(self) -> None:
        self._close_parent()
        self.blob.abort()
