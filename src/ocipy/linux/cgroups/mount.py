"""The container's /sys/fs/cgroup.

Called in the container's mount namespace before pivot_root, with `target`
already resolved safely by the caller (typically ``/proc/self/fd/N``).

* v1 and hybrid: a tmpfs, then one mount per hierarchy in a subdirectory
  named like the host's (``cpu``, ``cpu,cpuacct``, ``systemd``, ``unified``):
  with a cgroup namespace a fresh ``cgroup`` mount with the controller
  options (it shows the namespace root, i.e. the container's own cgroup);
  without one a bind mount of the container's own directory.  Co-mounted
  hierarchies get the ``cpu -> cpu,cpuacct`` symlinks.
* v2: a ``cgroup2`` mount with a cgroup namespace, else a bind mount of the
  container's directory.

A mount over a ``/proc/self/fd/N`` path covers the directory N refers to, so
N itself keeps pointing below the new mount; we re-open the new mount's root
through N's parent and its name, and check that it is the fresh mount.
"""

from __future__ import annotations

import os

from ocipy.errors import KernelError
from ocipy.linux import syscalls as sc

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from ocipy.linux.cgroups import Manager

_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def _open_mounted(target: str, covered_dev: int) -> int:
    """An fd for the root of the mount just made on `target`."""
    name = os.path.basename(os.readlink(target)) if target.startswith("/proc/self/fd/") else None
    if name is None:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        parent = os.open(target + "/..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
    if os.fstat(fd).st_dev == covered_dev:
        os.close(fd)
        raise KernelError("open the new tmpfs on", target, 116)  # ESTALE: not the fresh mount
    return fd


def _bind(source: str, dest: str, readonly: bool) -> None:
    sc.mount(source, dest, None, sc.MS_BIND | sc.MS_REC)
    _remount(dest, readonly)


def _remount(dest: str, readonly: bool) -> None:
    sc.mount(None, dest, None, sc.MS_REMOUNT | sc.MS_BIND | _FLAGS | (sc.MS_RDONLY if readonly else 0))


def _set_flags_below(root: int, binds: list[str], readonly: bool) -> None:
    """nosuid/nodev/noexec (and ro) on the tmpfs and every bind below it: one
    recursive mount_setattr where the kernel has it (~10 hierarchies would
    take one remount each), else a remount per bind."""
    attrs = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
    try:
        sc.mount_setattr(root, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, attrs | (sc.MOUNT_ATTR_RDONLY if readonly else 0))
        return
    except KernelError as e:
        if e.errno not in (38, 22, 1):  # ENOSYS, EINVAL, EPERM: an older kernel or a locked mount
            raise
    for dest in binds:
        _remount(dest, readonly)
    if readonly:
        sc.mount(None, f"/proc/self/fd/{root}", None, sc.MS_REMOUNT | sc.MS_BIND | _FLAGS | sc.MS_RDONLY)


def mount_cgroupfs(manager: Manager, target: str, cgroupns: bool, readonly: bool) -> None:
    ro = sc.MS_RDONLY if readonly else 0
    paths = manager.paths()
    mounts = manager.mounts()
    if manager.mode == "v2":
        if cgroupns:
            sc.mount("cgroup2", target, "cgroup2", _FLAGS | ro)
        else:
            _bind(paths[""], target, readonly)
        return

    covered = os.stat(target).st_dev
    sc.mount("tmpfs", target, "tmpfs", _FLAGS, "mode=755")
    root = _open_mounted(target, covered)
    try:
        base = f"/proc/self/fd/{root}"
        binds: list[str] = []  # flags set below, all at once
        groups: dict[str, list[str]] = {}
        for key, mp in mounts.items():
            groups.setdefault(mp, []).append(key)
        for mp, keys in sorted(groups.items()):
            name = os.path.basename(mp.rstrip("/"))
            if not name or name in (".", "..") or "/" in name:
                continue
            os.mkdir(name, 0o755, dir_fd=root)
            dest = f"{base}/{name}"
            if "" in keys:
                if cgroupns:
                    sc.mount("cgroup2", dest, "cgroup2", _FLAGS | ro)
                else:
                    sc.mount(paths[""], dest, None, sc.MS_BIND | sc.MS_REC)
                    binds.append(dest)
                continue
            if cgroupns:
                ctrls = [k for k in keys if not k.startswith("name=")]
                named = [k for k in keys if k.startswith("name=")]
                opts = ",".join(ctrls + named) if ctrls else ",".join(["none", *named])
                sc.mount("cgroup", dest, "cgroup", _FLAGS | ro, opts)
            else:
                sc.mount(paths[keys[0]], dest, None, sc.MS_BIND | sc.MS_REC)
                binds.append(dest)
            if "," in name:
                for alias in name.split(","):
                    if alias and alias != name:
                        os.symlink(name, alias, dir_fd=root)
        _set_flags_below(root, binds, readonly)
    finally:
        os.close(root)
