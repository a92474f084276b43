"""Layer snapshots and container root filesystems.

One snapshot per layer stack, keyed by its chain id (config.md "Layer
ChainID"), shared by every image that has the same layers below::

    snapshots/<hex>/info.json   {"chain_id", "diff_id", "parent", "digest", "size", "opaque_root"}
    snapshots/<hex>/fs/         the layer in overlay form (:mod:`ocipy.image.layers.overlay`)
    snapshots/.tmp-*            unpacks in progress (flock'd by their process) and removals
    snapshots/driver.json       the probe's verdict: overlay, or copy and why

A snapshot is unpacked into ``.tmp-<random>/``, its info.json written
through :mod:`ocipy.fsutil`, the filesystem synced (once for all the layers
of a prepare), and only then renamed to ``<hex>``: a renamed directory is
complete, anything else is never trusted.  Two processes preparing the same
layer both unpack it; the loser of the rename discards its copy.

A container's rootfs (:meth:`Snapshots.mount`) is an overlayfs mount of the
snapshots with ``upper/`` and ``work/`` beside it, or with the copy driver
(no overlayfs here) a real directory holding the merged tree, copied with
reflinks where the filesystem has them.
"""

from __future__ import annotations

import builtins
import errno
import os
import stat

from ocipy.errors import ImageError
from ocipy.storage.overlay import is_mount, unmount  # unmount: cheap to import from here too

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["DRIVERS", "Snapshots", "unmount"]

DRIVERS = ("overlay", "copy")
TMP = ".tmp-"
_PROBE = "driver.json"
_warned = False


def _name(chain_id: str) -> str:
    alg, _, enc = chain_id.partition(":")
    if not enc or not enc.isalnum() or not alg.isalnum():
        raise ImageError(f"snapshot {chain_id!r}: not a chain id (algorithm:hex)")
    return enc if alg == "sha256" else f"{alg}-{enc}"


def _chain_id(name: str) -> str | None:
    alg, sep, enc = name.rpartition("-")
    if not sep:
        alg = "sha256"
    if enc and enc.isalnum() and alg.isalnum() and (alg != "sha256" or len(enc) == 64):
        return f"{alg}:{enc}"
    return None


class Snapshots:
    """The snapshots under `root` (a store's ``snapshots/``), and rootfs mounts of them."""

    def __init__(self, root: str, driver: str | None = None) -> None:
        self.root = os.path.abspath(root)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise ImageError(f"snapshots {self.root}: {e.strerror or e}") from None
        choice = driver or os.environ.get("OCIPY_STORAGE_DRIVER") or None
        if choice is not None and choice not in DRIVERS:
            raise ImageError(f"storage driver {choice!r}: must be one of {', '.join(DRIVERS)}")
        self.driver: str = choice or self._probe()

    # -- the driver ----------------------------------------------------------------

    def _probe(self) -> str:
        """overlay if it mounts here (the verdict is cached in driver.json), else copy."""
        import json

        global _warned
        path = os.path.join(self.root, _PROBE)
        try:
            with open(path, "rb") as f:
                verdict = json.loads(f.read())
        except (OSError, ValueError):
            verdict = None
        if not isinstance(verdict, dict) or verdict.get("driver") not in DRIVERS:
            reason = self._try_overlay()
            verdict = {"driver": "copy" if reason else "overlay", "reason": reason}
            from ocipy import fsutil

            fsutil.write_file(path, json.dumps(verdict).encode(), 0o600)
        if verdict["driver"] == "copy" and not _warned:
            from ocipy import log

            _warned = True
            log.warning(f"storage {self.root}: overlayfs cannot be used ({verdict.get('reason')}); "
                        f"container root filesystems are copies", "ocipy.storage")
        return str(verdict["driver"])

    def _try_overlay(self) -> str | None:
        if os.geteuid() != 0:
            return "not running as root"
        from ocipy import fstree
        from ocipy.storage import overlay

        tmp = self._new_tmp()
        try:
            return overlay.probe(tmp)
        finally:
            fstree.remove_quietly(tmp)

    # -- snapshots -------------------------------------------------------------------

    def path(self, chain_id: str) -> str:
        """The snapshot's directory (its tree is in ``fs/``)."""
        return os.path.join(self.root, _name(chain_id))

    def exists(self, chain_id: str) -> bool:
        return os.path.isdir(os.path.join(self.root, _name(chain_id), "fs"))

    def info(self, chain_id: str) -> dict[str, Any]:
        import json

        try:
            with open(os.path.join(self.path(chain_id), "info.json"), "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise ImageError(f"snapshot {chain_id}: no readable info.json: {e}") from None
        if not isinstance(doc, dict):
            raise ImageError(f"snapshot {chain_id}: info.json is not an object")
        return doc

    def list(self) -> list[str]:
        """The chain ids of the complete snapshots."""
        out = []
        for name in sorted(os.listdir(self.root)):
            cid = None if name.startswith(".") else _chain_id(name)
            if cid is not None and os.path.isdir(os.path.join(self.root, name, "fs")):
                out.append(cid)
        return out

    def disk_usage(self, chain_id: str) -> int:
        """Bytes the snapshot's tree takes on disk (recorded when it was made)."""
        return int(self.info(chain_id).get("size", 0))

    def remove(self, chain_id: str) -> None:
        """Remove one snapshot (missing is fine): renamed out of sight first, then deleted."""
        from ocipy import fstree

        src = self.path(chain_id)
        dst = os.path.join(self.root, f"{TMP}rm-{os.urandom(6).hex()}")
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return
        fstree.rmtree(dst, fix_perms=True)

    def clean_temp(self) -> None:
        """Remove the ``.tmp-*`` left by crashed unpacks (not those of live ones: they hold a flock)."""
        import fcntl

        from ocipy import fstree

        for name in os.listdir(self.root):
            if not name.startswith(TMP):
                continue
            path = os.path.join(self.root, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live unpack
            try:
                fstree.rmtree(path, fix_perms=True)
            finally:
                os.close(fd)

    def _new_tmp(self) -> str:
        path = os.path.join(self.root, f"{TMP}{os.urandom(8).hex()}")
        os.mkdir(path, 0o700)
        return path

    # -- prepare -------------------------------------------------------------------

    def prepare(self, image: Any, manifest: dict[str, Any], config: dict[str, Any],
                progress: Callable[[str, int, int], None] | None = None) -> builtins.list[str]:
        """Make sure every layer of the image has its snapshot; the chain ids, bottom first."""
        from ocipy.spec.image import chain_ids, layer_diff_ids

        if os.geteuid() != 0:
            # whiteout devices, trusted.overlay xattrs and exact owners
            raise ImageError(f"snapshots {self.root}: layer snapshots can only be made as root (owners are "
                             "kept, overlay whiteouts are device nodes); as a user, `ocipy image unpack` "
                             "makes a bundle")

        layers = manifest["layers"]
        diff_ids = layer_diff_ids(manifest, config)
        chains = chain_ids(diff_ids)
        try:
            return self._prepare(image, layers, diff_ids, chains, progress)
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            raise ImageError(f"snapshots {self.root}:{where}: {e.strerror or e}") from None

    def _prepare(self, image: Any, layers: builtins.list[dict[str, Any]], diff_ids: builtins.list[str],
                 chains: builtins.list[str], progress: Callable[[str, int, int], None] | None) -> builtins.list[str]:
        import fcntl
        import json

        from ocipy import fstree, fsutil
        from ocipy.linux import syscalls

        fs_dirs = [os.path.join(self.root, _name(c), "fs") for c in chains]
        made: builtins.list[tuple[int, str, int]] = []  # (layer, tmp dir, its flock'd fd)
        try:
            for i, chain in enumerate(chains):
                if os.path.isdir(fs_dirs[i]):
                    continue  # complete: not even opened
                tmp = self._new_tmp()
                lock = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                fcntl.flock(lock, fcntl.LOCK_EX)  # clean_temp() leaves it alone while we live
                made.append((i, tmp, lock))
                fs = os.path.join(tmp, "fs")
                os.mkdir(fs, 0o755)
                lowers = [fs_dirs[j] for j in range(i - 1, -1, -1)]
                opaque_root = self._unpack(image, layers[i], diff_ids[i], i, fs, lowers, progress)
                fs_dirs[i] = fs  # the layers above use this copy as their lower
                info = {"chain_id": chain, "diff_id": diff_ids[i], "parent": chains[i - 1] if i else None,
                        "digest": layers[i]["digest"], "size": _disk_usage(fs), "opaque_root": opaque_root}
                fsutil.write_file(os.path.join(tmp, "info.json"), json.dumps(info).encode(), 0o600)
            if not made:
                return chains
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                syscalls.syncfs(fd, self.root)  # every layer's files at once; then the renames
                for i, tmp, _lock in made:
                    try:
                        os.rename(tmp, os.path.join(self.root, _name(chains[i])))
                    except OSError as e:
                        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                            raise
                        fstree.rmtree(tmp, fix_perms=True)  # another process made it first
                os.fsync(fd)
            finally:
                os.close(fd)
            return chains
        finally:
            for _i, tmp, lock in made:
                fstree.remove_quietly(tmp)  # gone already unless this failed
                os.close(lock)

    def _unpack(self, image: Any, desc: dict[str, Any], diff_id: str, index: int, fs: str,
                lowers: builtins.list[str], progress: Callable[[str, int, int], None] | None) -> bool:
        """One layer in overlay form onto the empty `fs`; whether its root is opaque."""
        from ocipy.image.layers import whiteout
        from ocipy.image.layers.apply import Applier, ApplyOptions
        from ocipy.image.layers.overlay import Overlay
        from ocipy.image.unpack import apply_layer

        # the root as the lowers have it (overlayfs shows the topmost one), unless the layer sets it
        fd = os.open(fs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if lowers:
                src = os.open(lowers[0], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    Overlay.copy_meta(src, fd, os.fstat(src))
                finally:
                    os.close(src)
            else:
                os.fchown(fd, 0, 0)
                os.fchmod(fd, 0o755)
        finally:
            os.close(fd)
        with Applier(fs, ApplyOptions(overlay=True), lowers=lowers) as applier:
            apply_layer(applier, image, desc, diff_id, index, progress)
        fd = os.open(fs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return whiteout.is_opaque(fd)
        finally:
            os.close(fd)

    # -- container root filesystems -----------------------------------------------

    def lowers(self, chain_ids: builtins.list[str]) -> builtins.list[str]:
        """The snapshot trees of an image, top first, down to the first opaque root."""
        out = []
        for chain in reversed(chain_ids):
            fs = os.path.join(self.path(chain), "fs")
            if not os.path.isdir(fs):
                raise ImageError(f"snapshot {chain}: missing from {self.root} (prepare the image first)")
            out.append(fs)
            if self.info(chain).get("opaque_root"):
                break  # the layers below are hidden whole
        return out

    def mount(self, chain_ids: builtins.list[str], container_dir: str) -> str:
        """The container's rootfs over the snapshots `chain_ids` (bottom first): its path."""
        from ocipy import fstree
        from ocipy.storage import overlay

        lowers = self.lowers(chain_ids)
        container_dir = os.path.abspath(container_dir)
        rootfs = os.path.join(container_dir, "rootfs")
        os.makedirs(container_dir, mode=0o700, exist_ok=True)
        if os.path.lexists(rootfs) and (os.path.islink(rootfs) or is_mount(rootfs) or os.listdir(rootfs)):
            raise ImageError(f"{rootfs}: already exists (a mount, a symlink or not empty)")
        made = [d for d in ("upper", "work", "rootfs", "empty")
                if not os.path.lexists(os.path.join(container_dir, d))]
        try:
            try:
                self._make_dirs(container_dir, made, empty=not lowers)
            except OSError as e:
                raise ImageError(f"{e.filename or container_dir}: {e.strerror or e}") from None
            if self.driver == "copy":
                from ocipy.storage.copy import merge

                merge(list(reversed(lowers)), rootfs)
                return rootfs
            upper = os.path.join(container_dir, "upper")
            # the merged root is upper's inode: give it the image's root
            _copy_root(lowers[0] if lowers else None, upper)
            if not lowers:
                lowers = [os.path.join(container_dir, "empty")]  # overlayfs needs a lowerdir
            overlay.mount(lowers, upper, os.path.join(container_dir, "work"), rootfs)
            return rootfs
        except BaseException:
            unmount(container_dir)
            for d in made:
                fstree.remove_quietly(os.path.join(container_dir, d))
            raise


    def _make_dirs(self, container_dir: str, missing: builtins.list[str], empty: bool) -> None:
        """rootfs/ (and for overlay upper/, work/, empty/ if needed): real directories, never symlinks."""
        names = ["rootfs"] if self.driver == "copy" else ["upper", "work", "rootfs"] + ["empty"] * empty
        for name in names:
            path = os.path.join(container_dir, name)
            if name in missing:
                os.mkdir(path, 0o700 if name == "work" else 0o755)
            elif not stat.S_ISDIR(os.lstat(path).st_mode):
                raise ImageError(f"{path}: exists and is not a directory")


def _copy_root(src_path: str | None, dst_path: str) -> None:
    from ocipy.image.layers.overlay import Overlay

    fd = os.open(dst_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if src_path is None:
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o755)
            return
        src = os.open(src_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            Overlay.copy_meta(src, fd, os.fstat(src))
        finally:
            os.close(src)
    finally:
        os.close(fd)


def _disk_usage(path: str) -> int:
    """Bytes of the tree at `path` on disk (each inode once), any depth."""
    from ocipy import fstree

    seen: set[int] = set()
    total = [0]

    def visit(rel: str, fd: int, entries: list[os.DirEntry[str]]) -> list[str]:
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            total[0] += st.st_blocks * 512
        return fstree.subdirs(entries)

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        total[0] += os.fstat(fd).st_blocks * 512
        fstree.walk(fd, visit)
    finally:
        os.close(fd)
    return total[0]
