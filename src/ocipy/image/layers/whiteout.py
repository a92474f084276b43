"""Whiteouts (layer.md "Whiteouts"): `.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory.

Removal is by name in a directory fd resolved inside the root, never
following the victim, and walks trees of any depth without recursion.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile

from ocipy import fstree
from ocipy.errors import ImageError, KernelError
from ocipy.image.layers.rootdirs import DIR_READ
from ocipy.image.layers.stream import WHITEOUT_OPAQUE, WHITEOUT_PREFIX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.image.layers.apply import Applier


def apply(app: Applier, parts: list[str], info: tarfile.TarInfo) -> None:
    """Apply the whiteout entry `parts` (its last component starts with .wh.)."""
    base = parts[-1]
    parent = "/".join(parts[:-1])
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
