"""The container's root filesystem: mounts, /dev, pivot_root, masked and readonly paths.

Runs in the container's init process, inside its new mount namespace.
What to mount is planned by runtime/mountplan.py (pure); `execute` runs a
plan through the kernel seam (`ocipy.linux.syscalls`, or a fake in tests).
Every destination is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT)
and mounted on through its ``/proc/self/fd/N`` handle, so a symlink or
``..`` in the rootfs can never send a mount, a mkdir or a device node
outside it (the CVE-2021-30465 class of escapes).
"""

from __future__ import annotations

import errno
import os
import stat

from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.linux import syscalls as sc
from ocipy.runtime import mountplan
from ocipy.runtime.mountplan import (
    PROPAGATION,
    Bind,
    Cgroup,
    CheckDir,
    MountFs,
    MountOptions,
    Propagate,
    Remount,
    RemountRo,
    SetAttr,
    clean_path,
)
from ocipy.spec.config import Device

__all__ = ["MountOptions", "clean_path"]  # re-exported: mountplan's, named here before

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.linux.syscalls import Kernel
    from ocipy.runtime.mountplan import Op, Plan
    from ocipy.spec.config import IdMapping, Linux, MountEntry

# --- resolving paths inside the rootfs -------------------------------------

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS


def open_in_root(root_fd: int, path: str, flags: int = sc.O_PATH) -> int:
    return sc.openat2(root_fd, path.lstrip("/") or ".", flags, 0, _RESOLVE)


def make_path(root_fd: int, path: str, is_dir: bool, mode: int = 0o755) -> int:
    """Open `path` inside the root (O_PATH), creating what is missing on the way.

    The walk resolves symlinks itself, each relative to the root (an
    absolute target means the rootfs's /), so a dangling symlink gets its
    target created inside the rootfs; every open is openat2 with
    RESOLVE_IN_ROOT, so a symlink swapped in by a race still cannot lead out.
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []  # components already known to be real directories
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        last = not pending
        dir_fd = open_in_root(root_fd, "/".join(resolved), os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                _create(dir_fd, part, is_dir or not last, mode, "/" + "/".join(resolved + [part]))
                resolved.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > 40:
                    raise KernelError("resolve", "/" + path.lstrip("/"), errno.ELOOP)
                target = os.readlink(part, dir_fd=dir_fd)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            resolved.append(part)
        finally:
            os.close(dir_fd)
    return open_in_root(root_fd, "/".join(resolved))


def _create(dir_fd: int, name: str, is_dir: bool, mode: int, shown: str) -> None:
    try:
        if is_dir:
            os.mkdir(name, mode, dir_fd=dir_fd)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd))
    except FileExistsError:
        pass  # created by someone else meanwhile; the caller re-resolves
    except OSError as e:
        raise KernelError("mkdir" if is_dir else "create", shown, e.errno or errno.EIO) from None


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# --- the steps ---------------------------------------------------------------


def set_root_propagation(propagation: str, rootfs: str | None = None, k: Kernel = sc) -> None:
    """Keep the container's mounts from propagating back to the host.

    linux.rootfsPropagation private/slave applies here; shared and unbindable
    cannot (pivot_root refuses a shared new root; an unbindable tree refuses
    the rootfs bind mount), so until pivot_root the tree is a slave and those
    are applied by `finish_root_propagation`.

    A non-recursive private/slave changes "/" only (runc's reading): the
    mount holding `rootfs` may still be a peer of the host's, and every
    mount made in the container would appear on the host.  Make that one
    private, as runc does (an rslave/rprivate "/" has no shared mount left).
    """
    flags = PROPAGATION[propagation or "rslave"]
    early = sc.MS_SLAVE | sc.MS_REC if flags & (sc.MS_SHARED | sc.MS_UNBINDABLE) else flags
    k.mount(None, "/", None, early)
    if rootfs and not early & sc.MS_REC:
        with open("/proc/self/mountinfo") as f:
            point = shared_mount_holding(f.read(), os.path.realpath(rootfs))
        if point is not None:
            k.mount(None, point, None, sc.MS_PRIVATE)


def shared_mount_holding(mountinfo: str, path: str) -> str | None:
    """The mount point of the mount `path` is on, when that mount is shared."""
    best, best_shared = "", False
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 7 or "-" not in fields:
            continue
        point = _unescape(fields[4])
        inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equals is the top one
            best, best_shared = point, any(f.startswith("shared:") for f in fields[6 : fields.index("-")])
    return best if best and best_shared else None


def bind_rootfs(rootfs: str, k: Kernel = sc) -> None:
    k.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def finish_root_propagation(propagation: str, k: Kernel = sc) -> None:
    """After pivot_root: a shared or unbindable linux.rootfsPropagation on the new root (as runc does)."""
    if propagation in ("shared", "rshared", "unbindable", "runbindable"):
        k.mount(None, "/", None, PROPAGATION[propagation])


def remount_bind(target: str, flags: int, clear: int = 0, k: Kernel = sc) -> None:
    """MS_REMOUNT|MS_BIND with `flags`, keeping the flags the mount has that
    `clear` does not ask to clear (the kernel refuses to drop locked ones)."""
    flags = (flags | (k.mount_flags(target) & ~clear)) & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    k.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | flags)


def mount_plan(mounts: list[MountEntry], bundle: str) -> Plan:
    """The config's mounts planned (pure: see runtime/mountplan.py).

    Called by the parent: what executing the plan will import is imported
    here, while the runtime's files can still be read (a mapped root in a
    user namespace may not reach them, and after pivot_root nothing can).
    """
    plan = mountplan.plan(mounts, bundle)
    if any(m.type == "cgroup" and not m.is_bind for m in plan.mounts):
        import ocipy.linux.cgroups.mount  # noqa: F401
    return plan


def execute(root_fd: int, ops: list[Op], ctx: dict[str, Any], k: Kernel = sc) -> None:
    """Run a mount plan's operations inside the rootfs `root_fd`.

    ctx: "trees" {mount index: fd of a tree the parent opened (idmapped, or a
    source the container's root could not reach)}, "cgroup_manager",
    "cgroupns".  Every destination is resolved anew inside the root: after a
    mount, an old O_PATH handle points at the covered directory.
    """
    for op in ops:
        if isinstance(op, Bind):
            _bind(root_fd, op, ctx, k)
        elif isinstance(op, MountFs):
            fd = make_path(root_fd, op.dest, True)
            try:
                k.mount(op.source, fd_path(fd), op.fstype, op.flags, op.data)
            except KernelError as e:
                raise OcipyError(f"{op.field}: mounting {op.fstype} on {op.dest}: {os.strerror(e.errno)}") from None
            finally:
                os.close(fd)
        elif isinstance(op, CheckDir):
            _check_dir(root_fd, op.dest, op.field, op.fstype)
        elif isinstance(op, Cgroup):
            fd = make_path(root_fd, op.dest, True)
            try:
                host_bind = _mount_cgroup(fd, op.readonly, ctx, k)
            finally:
                os.close(fd)
            if host_bind:
                with _InRoot(root_fd, op.dest) as target:
                    remount_bind(target, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, k=k)
        elif isinstance(op, Remount):
            with _InRoot(root_fd, op.dest) as target:
                remount_bind(target, op.flags, op.clear, k)
        elif isinstance(op, Propagate):
            with _InRoot(root_fd, op.dest) as target:
                k.mount(None, target, None, op.flag)
        elif isinstance(op, SetAttr):
            fd = open_in_root(root_fd, op.dest)
            try:
                k.mount_setattr(fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, op.attr_set, op.attr_clr, what=op.dest)
            finally:
                os.close(fd)
        elif isinstance(op, RemountRo):
            with _InRoot(root_fd, op.dest) as target:
                k.mount(None, target, None, sc.MS_REMOUNT | op.flags | sc.MS_RDONLY)
        else:  # pragma: no cover - a new Op without an executor
            raise AssertionError(f"no executor for {op!r}")


class _InRoot:
    """`with _InRoot(root_fd, dest) as target:` a /proc/self/fd path to dest, inside the root."""

    __slots__ = ("root_fd", "dest", "fd")

    def __init__(self, root_fd: int, dest: str) -> None:
        self.root_fd, self.dest, self.fd = root_fd, dest, -1

    def __enter__(self) -> str:
        self.fd = open_in_root(self.root_fd, self.dest)
        return fd_path(self.fd)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _bind(root_fd: int, op: Bind, ctx: dict[str, Any], k: Kernel) -> None:
    tree = (ctx.get("trees") or {}).get(op.index)
    try:
        st = os.stat(tree) if tree is not None else os.stat(op.source)
    except OSError as e:
        raise ConfigError(f"{op.field}.source", f"{op.source}: {os.strerror(e.errno or errno.ENOENT)}") from None
    fd = make_path(root_fd, op.dest, stat.S_ISDIR(st.st_mode))
    try:
        target = fd_path(fd)
        if tree is not None:  # opened by the parent: move it in place
            k.move_mount(tree, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH, what=op.dest)
        else:
            k.mount(op.source, target, None, sc.MS_BIND | (sc.MS_REC if op.recursive else 0))
    finally:
        os.close(fd)
    if tree is not None:
        # A tree cloned from the host's namespace is a peer of the host's
        # mount: make it a slave, as everything else in the container is.
        with _InRoot(root_fd, op.dest) as target:
            k.mount(None, target, None, sc.MS_SLAVE | sc.MS_REC)


def _check_dir(root_fd: int, dest: str, field: str, fstype: str) -> None:
    """runc refuses proc and sysfs on anything but a directory (a symlink
    /proc could point the kernel's files anywhere in the rootfs)."""
    parent, name = os.path.split(clean_path(dest))
    if not name:
        return
    try:
        dir_fd = open_in_root(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
    except KernelError:
        return  # the parent is made on the way: nothing there yet
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    finally:
        os.close(dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{field}.destination", f"{dest}: filesystem {fstype!r} must be mounted on ordinary directory")


def prepare_mount_sources(plan: Plan, linux: Linux, userns: bool, k: Kernel = sc) -> dict[int, int]:
    """Trees the parent opens for the init: {mount index: tree fd}.

    - config.md `idmap`/`ridmap`: detached, idmapped clones of the bind
      sources (attaching an idmapping needs CAP_SYS_ADMIN in the initial
      user namespace, which the container's init no longer has);
    - with a user namespace, every other bind source too: the container's
      mapped root may not be able to reach it (a 0700 parent directory),
      the runtime can (runc opens them before joining the namespace).
    The init only moves them into place.
    """
    trees: dict[int, int] = {}
    userns_fds: dict[str, int] = {}
    try:
        for m in plan.mounts:
            if not m.is_bind or not (m.options.idmap or userns):
                continue
            rec = sc.AT_RECURSIVE if m.options.flags & sc.MS_REC else 0
            flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | rec
            if not m.options.idmap:
                try:
                    trees[m.index] = k.open_tree(-100, m.source, flags, what=f"{m.field}.source {m.source}")  # AT_FDCWD
                except KernelError as e:
                    if e.errno in (errno.EPERM, errno.ENOSYS):
                        continue  # rootless, or an old kernel: the init mounts it by path
                    raise ConfigError(f"{m.field}.source", f"{m.source}: {os.strerror(e.errno)}") from None
                continue
            uids, gids = mountplan.idmap_mappings(m, linux)
            key = repr((uids, gids))
            if key not in userns_fds:
                userns_fds[key] = _user_namespace_with(uids, gids, m.field)
            tree = k.open_tree(-100, m.source, flags, what=f"{m.field}.source {m.source}")
            trees[m.index] = tree
            k.mount_setattr(tree, "", sc.AT_EMPTY_PATH | (sc.AT_RECURSIVE if m.options.recursive_idmap else 0),
                            sc.MOUNT_ATTR_IDMAP, 0, 0, userns_fds[key], what=f"{m.field} idmap of {m.source}")  # fmt: skip
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in userns_fds.values():
            os.close(fd)
    return trees


def _user_namespace_with(uids: list[IdMapping], gids: list[IdMapping], field: str) -> int:
    """An fd of a new user namespace with these mappings (held by a short-lived child)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)
            sc.unshare(0x10000000)  # CLONE_NEWUSER
            os.write(ready_w, b"1")
            os.read(hold_r, 1)  # until the parent has the namespace open
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OcipyError(f"{field}: could not make a user namespace for the idmapping")
        for name, maps in (("uid_map", uids), ("gid_map", gids)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(m.line() for m in maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def _mount_cgroup(fd: int, readonly: bool, ctx: dict[str, Any], k: Kernel) -> bool:
    """Set up /sys/fs/cgroup; True when it fell back to binding the host's tree."""
    manager = ctx.get("cgroup_manager")
    if manager is not None:
        from ocipy.linux.cgroups.mount import mount_cgroupfs

        mount_cgroupfs(manager, fd_path(fd), bool(ctx.get("cgroupns")), readonly)
        return False
    # No cgroup manager: show the host's hierarchy, read-only (the caller remounts).
    k.mount("/sys/fs/cgroup", fd_path(fd), None, sc.MS_BIND | sc.MS_REC)
    return True


# --- /dev ----------------------------------------------------------------------

DEFAULT_DEVICES = [
    Device("/dev/null", "c", 1, 3, 0o666),
    Device("/dev/zero", "c", 1, 5, 0o666),
    Device("/dev/full", "c", 1, 7, 0o666),
    Device("/dev/random", "c", 1, 8, 0o666),
    Device("/dev/urandom", "c", 1, 9, 0o666),
    Device("/dev/tty", "c", 5, 0, 0o666),
]


def create_devices(root_fd: int, devices: list[Device], in_userns: bool, dev_bound: bool, k: Kernel = sc) -> None:
    """The default devices, then linux.devices; in a user namespace, bind the host's node.

    `dev_bound`: /dev is a bind mount (the host's nodes are there already).
    """
    if not dev_bound:
        for dev in DEFAULT_DEVICES:
            _create_device(root_fd, dev, in_userns, f"default device {dev.path}", k)
    for i, dev in enumerate(devices):
        _create_device(root_fd, dev, in_userns, f"linux.devices[{i}]", k)
    if not dev_bound:
        _dev_symlinks(root_fd, k)


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _create_device(root_fd: int, dev: Device, in_userns: bool, field: str, k: Kernel) -> None:
    # Anywhere in the rootfs, as runc allows (config-linux.md names no
    # directory); resolved inside the root like every other path.
    path = clean_path(dev.path)
    parent, name = os.path.split(path)
    if not name:
        raise ConfigError(f"{field}.path", f"{dev.path!r} is not a valid device path")
    parent_fd = make_path(root_fd, parent, True)
    try:
        dir_fd = os.open(fd_path(parent_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(parent_fd)
    try:
        mode = (dev.file_mode or 0o666) & 0o7777
        kind = _DEV_TYPES[dev.type]
        rdev = os.makedev(dev.major, dev.minor)
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):
            if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise ConfigError(f"{field}.path", f"{path} is a directory in the rootfs") from None
            raise
        if in_userns and kind != stat.S_IFIFO:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd))
            fd = sc.openat2(dir_fd, name, sc.O_PATH, 0, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS)
            try:
                k.mount(path, fd_path(fd), None, sc.MS_BIND)
            finally:
                os.close(fd)
            return
        k.mknod(dir_fd, name, kind | mode, rdev, path)
        k.chown(dir_fd, name, dev.uid, dev.gid, path)
    finally:
        os.close(dir_fd)


def _dev_symlinks(root_fd: int, k: Kernel) -> None:
    dev_fd = open_in_root(root_fd, "/dev", os.O_RDONLY | os.O_DIRECTORY)
    try:
        links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                 ("/proc/self/fd/2", "stderr")]  # fmt: skip
        try:
            os.stat("pts/ptmx", dir_fd=dev_fd, follow_symlinks=False)
            links.append(("pts/ptmx", "ptmx"))
        except FileNotFoundError:
            pass
        for target, name in links:
            try:
                k.symlink(target, dev_fd, name)
            except FileExistsError:
                if name == "ptmx":  # a ptmx node from the rootfs: replace it
                    os.unlink(name, dir_fd=dev_fd)
                    k.symlink(target, dev_fd, name)
    finally:
        os.close(dev_fd)


# --- pivot_root and after --------------------------------------------------------


def pivot_root(rootfs: str, k: Kernel = sc) -> None:
    """Make `rootfs` the root; detach the old root so no host path stays reachable."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        k.pivot_root(".", ".")
        os.fchdir(old_root)
        k.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        k.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def move_root(rootfs: str, k: Kernel = sc) -> None:
    """--no-pivot: move the rootfs mount over / and chroot (for ramdisk roots).

    The host's mounts stay in the namespace, out of the chroot's sight; the
    kernel allows a new procfs or sysfs mount where a fully visible one is in
    the namespace, so a container root could mount a bare /proc (and write
    /proc/sysrq-trigger).  Detach the host's proc and sysfs mounts first, or
    cover them where detaching is refused, as runc does.
    """
    for mountpoint in _host_proc_sys_mounts(rootfs):
        try:
            k.mount(None, mountpoint, None, sc.MS_SLAVE | sc.MS_REC)  # no umount event reaches the host
        except KernelError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        try:
            k.umount2(mountpoint, sc.MNT_DETACH)
        except KernelError as e:
            # EPERM: no privilege (rootless); EINVAL: a mount locked by a user
            # namespace.  Cover it instead.
            if e.errno not in (errno.EPERM, errno.EINVAL):
                raise
            k.mount("tmpfs", mountpoint, "tmpfs", 0)
    os.chdir(rootfs)
    k.mount(rootfs, "/", None, sc.MS_MOVE)
    k.chroot(".")
    os.chdir("/")


def _host_proc_sys_mounts(rootfs: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of proc and sysfs mounts outside `rootfs`, deepest first."""
    with open(mountinfo) as f:
        text = f.read()
    return host_proc_sys_mounts(text, rootfs)


def host_proc_sys_mounts(mountinfo: str, rootfs: str) -> list[str]:
    """From /proc/self/mountinfo's text: the proc and sysfs mount points not under `rootfs`."""
    root = rootfs.rstrip("/") + "/"
    found: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if sep + 1 >= len(fields) or fields[sep + 1] not in ("proc", "sysfs") or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == rootfs.rstrip("/") or point.startswith(root):
            continue
        found.append(point)  # twice when stacked: each detach takes the top one
    # parents before children is the kernel's order; detaching a parent takes
    # the children along, so go deepest first to treat each one itself
    return sorted(found, key=lambda p: -p.count("/"))


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def check_sysctl_namespaces(linux: Linux) -> None:
    """linux.sysctl with a namespace joined by `path`: refuse it when that is
    the runtime's own (the host's) namespace, whose values a write would change."""
    from ocipy.spec.runtime import sysctl_namespace

    paths = {ns.type: ns.path for ns in linux.namespaces}
    for key in linux.sysctl:
        kind = sysctl_namespace(key)
        path = paths.get(kind or "")
        if not path:
            continue
        proc_name = "net" if kind == "network" else "ipc"
        try:
            theirs, ours = os.stat(path), os.stat(f"/proc/self/ns/{proc_name}")
        except OSError:
            continue  # create reports an unusable path itself
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            raise ConfigError(f"linux.sysctl.{key}", f'sysctl "{key}" not allowed in host {kind} namespace ({path})')


def write_sysctls(sysctls: dict[str, str]) -> None:
    """linux.sysctl, after pivot_root (validated at create: only namespaced keys,
    and only with the namespace of the container's own, see spec.runtime)."""
    for key, value in sysctls.items():
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split(".") or "/" in key:
            raise ConfigError(f"linux.sysctl.{key}", "is not a valid sysctl name")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ConfigError(f"linux.sysctl.{key}", f"cannot set to {value!r}: {os.strerror(e.errno or errno.EIO)}") from None


def readonly_path(path: str, k: Kernel = sc) -> None:
    try:
        k.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except KernelError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    remount_bind(path, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, k=k)


def mask_path(path: str, label: str | None = None, k: Kernel = sc) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return  # a path that does not exist needs no mask
    if is_dir:
        k.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, label)
    else:
        k.mount("/dev/null", path, None, sc.MS_BIND)


def readonly_root(k: Kernel = sc) -> None:
    remount_bind("/", sc.MS_RDONLY, k=k)
