"""Diffing a rootfs against its recorded tree, and writing the changes as a layer (repack).

The record (``ocipy-mtree.json`` in a bundle) is :func:`scan_tree`'s
mtree-like map: path -> [st_mode, uid, gid, size, mtime_ns, ctime_ns, ino,
symlink target].  A file's ctime changes whenever its content, mode, owner or
xattrs change, so no content hashes are needed.  Both the scan and the layer
writing go through directory fds without recursion, so any depth works.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ocipy import fstree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocipy.image.layers.write import LayerWriter


def scan_tree(rootfs: str) -> dict[str, list[Any]]:
    """path -> [st_mode, uid, gid, size, mtime_ns, ctime_ns, ino, symlink target or None]."""
    out: dict[str, list[Any]] = {}

    def visit(rel: str, fd: int, entries: list[os.DirEntry[str]]) -> list[str]:
        dirs = []
        for e in entries:
            st = e.stat(follow_symlinks=False)
            mode = st.st_mode
            path = f"{rel}/{e.name}" if rel else e.name
            link = None
            if stat.S_ISDIR(mode):
                dirs.append(e.name)
            elif stat.S_ISLNK(mode):
                link = os.readlink(e.name, dir_fd=fd)
            out[path] = [mode, st.st_uid, st.st_gid, st.st_size if stat.S_ISREG(mode) else 0,
                         st.st_mtime_ns, st.st_ctime_ns, st.st_ino, link]
        return dirs

    top = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fstree.walk(top, visit)
    finally:
        os.close(top)
    return out


def diff_tree(rootfs: str, recorded: dict[str, list[Any]], masked: list[str]) -> tuple[list[str], list[str]]:
    """(added or modified paths, deleted paths) of rootfs against the recorded tree."""
    current = scan_tree(rootfs)

    def is_masked(path: str) -> bool:
        return any(path == m or path.startswith(m + "/") for m in masked)

    # [st_mode, uid, gid, size, mtime_ns, ctime_ns, ino, link]; ctime catches content edits
    changed = [p for p, meta in current.items()
               if not is_masked(p) and (p not in recorded or recorded[p] != meta)]
    deleted = []
    for p in recorded:
        if p in current or is_masked(p):
            continue
        parent = p.rpartition("/")[0]
        if parent and (parent not in current or not stat.S_ISDIR(current[parent][0])):
            continue  # the parent went away or is no longer a directory: one whiteout covers it
        deleted.append(p)
    # ancestors of changed paths must be in the layer too, so the tar recreates them in order
    need = set(changed)
    for p in list(changed):
        while "/" in p:
            p = p.rpartition("/")[0]
            if p in need:
                break
            need.add(p)
    return sorted(need), sorted(deleted)


def add_changes(writer: LayerWriter, rootfs: str, recorded: dict[str, list[Any]], masked: list[str]) -> None:
    """Write rootfs's changes against `recorded` into `writer`: whiteouts, then what changed."""
    changed, deleted = diff_tree(rootfs, recorded, masked)
    for p in deleted:
        writer.add_whiteout(p)  # layer.md: whiteouts SHOULD come before siblings
    top = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in changed:
            writer.add_from(top, p, p)
    finally:
        os.close(top)
