"""Whiteouts (layer.md "Whiteouts"): `.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory.

Removal is by name in a directory fd resolved inside the root, never
following the victim, and walks trees of any depth without recursion.

In overlay form (:mod:`.overlay`: one layer on an empty directory) nothing
below is removed: ``.wh.NAME`` becomes a 0:0 character device NAME, and
``.wh..wh..opq`` the xattr ``trusted.overlay.opaque=y`` on its directory --
overlayfs' own whiteouts.  What the layer itself adds stays in both forms.
"""

from __future__ import annotations

import errno
import os
import stat

from ocipy import fstree
from ocipy.errors import ImageError, KernelError
from ocipy.image.layers.rootdirs import DIR_READ

TYPE_CHECKING = False
if TYPE_CHECKING:  # this module stays light: a container's rootfs mount uses it, not the tar reader
    import tarfile

    from ocipy.image.layers.apply import Applier

# layer.md "Whiteouts"
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

OVERLAY_XATTR_PREFIX = "trusted.overlay."
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device 0:0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(fd: int) -> bool:
    """Whether the directory open as `fd` (not O_PATH) is an opaque overlayfs directory."""
    try:
        return os.getxattr(fd, OPAQUE_XATTR) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise


def set_opaque(fd: int) -> None:
    os.setxattr(fd, OPAQUE_XATTR, b"y")


def apply(app: Applier, parts: list[str], info: tarfile.TarInfo) -> None:
    """Apply the whiteout entry `parts` (its last component starts with .wh.)."""
    base = parts[-1]
    parent = "/".join(parts[:-1])
    if app.overlay is not None:
        _overlay(app, parts, info)
        return
    try:
        pfd = app.dirs.parent(parts, create=False)
    except KernelError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return  # nothing below a missing directory to hide
        raise
    if base == WHITEOUT_OPAQUE:
        # layer.md: an opaque whiteout "hides all children of the directory, including
        # sub-directories"; "Whiteout files MUST only apply to resources in lower/parent
        # layers", so what this layer already added stays.
        fd = app.dirs.open(parent, DIR_READ)
        try:
            remove_lower(app, fd, parent)
        finally:
            os.close(fd)
        # the directory itself now belongs to this layer (so a later whiteout of it in the
        # same layer does not remove what this layer adds below it)
        app.added_dirs.add(parent)
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # other aufs metadata (.wh..wh.plnk etc.): never part of the tree
    victim = base[len(WHITEOUT_PREFIX):]
    if not victim or victim in (".", ".."):
        # layer.md: "A .wh. file, without a basename to delete, is invalid"
        raise ImageError(f"{app.what}: entry {info.name!r}: whiteout without a name")
    vpath = f"{parent}/{victim}" if parent else victim
    try:
        st = os.lstat(victim, dir_fd=pfd)
    except FileNotFoundError:
        return
    if vpath in app.added or vpath in app.added_dirs:
        if stat.S_ISDIR(st.st_mode):
            fd = fstree.open_dir(pfd, victim, fix_perms=not app.opts.root)
            try:
                remove_lower(app, fd, vpath)
            finally:
                os.close(fd)
        return
    app.remove(pfd, victim, st)


def remove_lower(app: Applier, fd: int, path: str) -> None:
    """Remove everything below directory `fd` (at `path`) that this layer did not add."""
    added, added_dirs = app.added, app.added_dirs

    def visit(rel: str, dfd: int, entries: list[os.DirEntry[str]]) -> list[str]:
        here = f"{path}/{rel}" if path and rel else path or rel
        keep = []
        for e in entries:
            cpath = f"{here}/{e.name}" if here else e.name
            if cpath in added_dirs or cpath in added:
                if e.is_dir(follow_symlinks=False):
                    keep.append(e.name)  # added by this layer: only what is below it from lower ones goes
                continue
            app.remove(dfd, e.name)
        return keep

    fstree.walk(fd, visit, fix_perms=not app.opts.root)


def _victim(app: Applier, parts: list[str], info: tarfile.TarInfo) -> str | None:
    """The name `.wh.NAME` hides (None for other aufs metadata)."""
    base = parts[-1]
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return None
    victim = base[len(WHITEOUT_PREFIX):]
    if not victim or victim in (".", ".."):
        # layer.md: "A .wh. file, without a basename to delete, is invalid"
        raise ImageError(f"{app.what}: entry {info.name!r}: whiteout without a name")
    return victim


def _overlay(app: Applier, parts: list[str], info: tarfile.TarInfo) -> None:
    """A whiteout in overlay form (see the module's docstring)."""
    assert app.overlay is not None
    ov = app.overlay
    base = parts[-1]
    parent = "/".join(parts[:-1])
    victim = None if base == WHITEOUT_OPAQUE else _victim(app, parts, info)
    if victim is None and base != WHITEOUT_OPAQUE:
        return
    try:
        pfd = app.dirs.parent(parts, create=False)
    except KernelError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise
        # not in this layer: there is something to hide only if the lowers have the directory
        if e.errno == errno.ENOTDIR or not ov.is_lower_dir(parts[:-1]):
            return
        pfd = app.dirs.parent(parts)  # made with the lowers' metadata (Overlay.made_dir)
    if victim is None:
        # layer.md: an opaque whiteout "hides all children of the directory"; what this
        # layer adds to it stays (overlayfs hides only the lower layers' children)
        fd = app.dirs.open(parent, DIR_READ)
        try:
            ov.make_opaque(fd, parent)
        finally:
            os.close(fd)
        app.added_dirs.add(parent)
        return
    vpath = f"{parent}/{victim}" if parent else victim
    try:
        st: os.stat_result | None = os.lstat(victim, dir_fd=pfd)
    except FileNotFoundError:
        st = None
    if st is not None:
        if vpath in app.added or vpath in app.added_dirs:
            # layer.md: "Whiteout files MUST only apply to resources in lower/parent layers"
            if stat.S_ISDIR(st.st_mode):
                fd = fstree.open_dir(pfd, victim)
                try:
                    ov.make_opaque(fd, vpath)
                finally:
                    os.close(fd)
            return
        app.remove(pfd, victim, st)  # only parents and whiteouts made for this layer's whiteouts
    os.mknod(victim, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
    ov.whited.add(vpath)
