"""The container's root filesystem: mounts, /dev, pivot_root, masked and readonly paths.

Runs in the container's init process, inside its new mount namespace.
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

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

# option -> (clear?, flag) for mount(2) flags (config.md "Mount options").
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, sc.MS_SYNCHRONOUS), "atime": (True, sc.MS_NOATIME),
    "bind": (False, sc.MS_BIND), "defaults": (False, 0), "dev": (True, sc.MS_NODEV),
    "diratime": (True, sc.MS_NODIRATIME), "dirsync": (False, sc.MS_DIRSYNC),
    "exec": (True, sc.MS_NOEXEC), "iversion": (False, sc.MS_IVERSION),
    "lazytime": (False, sc.MS_LAZYTIME), "loud": (True, sc.MS_SILENT),
    "mand": (False, sc.MS_MANDLOCK), "noatime": (False, sc.MS_NOATIME),
    "nodev": (False, sc.MS_NODEV), "nodiratime": (False, sc.MS_NODIRATIME),
    "noexec": (False, sc.MS_NOEXEC), "noiversion": (True, sc.MS_IVERSION),
    "nolazytime": (True, sc.MS_LAZYTIME), "nomand": (True, sc.MS_MANDLOCK),
    "norelatime": (True, sc.MS_RELATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "nosuid": (False, sc.MS_NOSUID), "nosymfollow": (False, sc.MS_NOSYMFOLLOW),
    "rbind": (False, sc.MS_BIND | sc.MS_REC), "relatime": (False, sc.MS_RELATIME),
    "remount": (False, sc.MS_REMOUNT), "ro": (False, sc.MS_RDONLY),
    "rw": (True, sc.MS_RDONLY), "silent": (False, sc.MS_SILENT),
    "strictatime": (False, sc.MS_STRICTATIME), "suid": (True, sc.MS_NOSUID),
    "symfollow": (True, sc.MS_NOSYMFOLLOW), "sync": (False, sc.MS_SYNCHRONOUS),
}  # fmt: skip

_PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}  # fmt: skip

# recursive option -> (clear?, MOUNT_ATTR_*), applied with mount_setattr(AT_RECURSIVE)
_RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY), "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID), "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV), "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC), "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME), "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}  # fmt: skip
# atime options are a field, not bits: (attr to set in MOUNT_ATTR__ATIME)
_RECURSIVE_ATIME = {
    "rrelatime": sc.MOUNT_ATTR_RELATIME, "rnorelatime": sc.MOUNT_ATTR_RELATIME,
    "rnoatime": sc.MOUNT_ATTR_NOATIME, "ratime": sc.MOUNT_ATTR_RELATIME,
    "rstrictatime": sc.MOUNT_ATTR_STRICTATIME, "rnostrictatime": sc.MOUNT_ATTR_RELATIME,
}  # fmt: skip


class MountOptions:
    """A mount entry's `options`, sorted into what each system call needs."""

    def __init__(self, options: list[str]) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.idmap = False
        self.recursive_idmap = False
        data: list[str] = []
        for opt in options:
            if opt in _FLAGS:
                clear, flag = _FLAGS[opt]
                if clear:
                    self.flags &= ~flag
                    self.clear |= flag
                else:
                    self.flags |= flag
            elif opt in _PROPAGATION:
                self.propagation.append(_PROPAGATION[opt])
            elif opt in _RECURSIVE:
                clear, attr = _RECURSIVE[opt]
                if clear:
                    self.attr_clr |= attr
                else:
                    self.attr_set |= attr
            elif opt in _RECURSIVE_ATIME:
                self.attr_clr |= sc.MOUNT_ATTR__ATIME
                self.attr_set |= _RECURSIVE_ATIME[opt]
            elif opt in ("idmap", "ridmap"):
                self.idmap = True
                self.recursive_idmap = opt == "ridmap"
            elif opt == "tmpcopyup":
                pass  # a runc extension we do not implement; harmless to ignore
            else:
                data.append(opt)
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & sc.MS_BIND)


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


def clean_path(path: str) -> str:
    """An absolute, normalised path ('//x' and 'a/../b' folded)."""
    return os.path.normpath("/" + path.lstrip("/"))


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# --- the steps ---------------------------------------------------------------


def set_root_propagation(config: dict[str, Any]) -> None:
    """Keep the container's mounts from propagating back to the host.

    linux.rootfsPropagation private/slave applies here; shared and unbindable
    cannot (pivot_root refuses a shared new root; an unbindable tree refuses
    the rootfs bind mount), so until pivot_root the tree is a slave and those
    are applied by `finish_root_propagation`.
    """
    prop = (config.get("linux") or {}).get("rootfsPropagation") or "rslave"
    flags = _PROPAGATION[prop]
    early = sc.MS_SLAVE | sc.MS_REC if flags & (sc.MS_SHARED | sc.MS_UNBINDABLE) else flags
    sc.mount(None, "/", None, early)


def bind_rootfs(rootfs: str) -> None:
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def finish_root_propagation(config: dict[str, Any]) -> None:
    """After pivot_root: a shared or unbindable rootfsPropagation on the new root (as runc does)."""
    prop = (config.get("linux") or {}).get("rootfsPropagation")
    if prop in ("shared", "rshared", "unbindable", "runbindable"):
        sc.mount(None, "/", None, _PROPAGATION[prop])


def _locked_flags(path: str) -> int:
    """Flags a bind mount must keep (the kernel refuses to clear them inside a user namespace)."""
    st = os.statvfs(path)
    flags = 0
    for vfs, ms in ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV),
                    (os.ST_NOEXEC, sc.MS_NOEXEC), (os.ST_NOATIME, sc.MS_NOATIME),
                    (os.ST_NODIRATIME, sc.MS_NODIRATIME), (os.ST_RELATIME, sc.MS_RELATIME)):  # fmt: skip
        if st.f_flag & vfs:
            flags |= ms
    return flags


def remount_bind(target: str, flags: int, clear: int = 0) -> None:
    flags = (flags | (_locked_flags(target) & ~clear)) & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | flags)


def mount_entry(root_fd: int, bundle: str, index: int, entry: dict[str, Any], ctx: dict[str, Any]) -> None:
    """Mount one `mounts[i]` entry inside the rootfs."""
    dest = entry["destination"]
    if not dest.startswith("/"):
        dest = "/" + dest  # config.md: relative destinations are relative to "/"
    opts = MountOptions(entry.get("options") or [])
    mtype = entry.get("type") or ("bind" if opts.is_bind else "")
    source = entry.get("source") or ""
    field = f"mounts[{index}]"
    if mtype == "bind":
        opts.flags |= sc.MS_BIND
    if opts.is_bind:
        if not os.path.isabs(source):
            source = os.path.join(bundle, source)
        try:
            src_is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise ConfigError(f"{field}.source", f"{source}: {os.strerror(e.errno or errno.ENOENT)}") from None
        fd = make_path(root_fd, dest, src_is_dir)
        try:
            target = fd_path(fd)
            if opts.idmap:  # the parent made the idmapped tree: move it in place
                sc.move_mount(ctx["idmap_trees"][index], "", fd, "",
                              sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH, what=dest)  # fmt: skip
            else:
                sc.mount(source, target, None, sc.MS_BIND | (opts.flags & sc.MS_REC))
            # Remount a fresh fd: the old O_PATH handle points at the covered dentry.
            _finish_mount(root_fd, dest, opts, bind=True)
        finally:
            os.close(fd)
        return
    if mtype == "cgroup":
        fd = make_path(root_fd, dest, True)
        try:
            host_bind = _mount_cgroup(fd, opts, ctx)
        finally:
            os.close(fd)
        if host_bind:  # a fresh handle: the old one points under the new mount
            fd = open_in_root(root_fd, dest)
            try:
                remount_bind(fd_path(fd), sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
            finally:
                os.close(fd)
        _finish_mount(root_fd, dest, opts, bind=False, skip_flags=True)
        return
    fd = make_path(root_fd, dest, True)
    try:
        flags = opts.flags & ~sc.MS_REMOUNT if not opts.flags & sc.MS_REMOUNT else opts.flags
        sc.mount(source or mtype, fd_path(fd), mtype, flags, opts.data or None)
    except KernelError as e:
        raise OcipyError(f"{field}: mounting {mtype} on {dest}: {os.strerror(e.errno)}") from None
    finally:
        os.close(fd)
    _finish_mount(root_fd, dest, opts, bind=False, skip_flags=True)


def _finish_mount(root_fd: int, dest: str, opts: MountOptions, bind: bool, skip_flags: bool = False) -> None:
    remount = bind and (opts.flags & ~(sc.MS_BIND | sc.MS_REC) or opts.clear)
    if not (remount or opts.propagation or opts.attr_set or opts.attr_clr):
        return  # nothing to change: spare the lookup (most of the default mounts)
    fd = open_in_root(root_fd, dest)
    try:
        target = fd_path(fd)
        if bind and opts.flags & ~(sc.MS_BIND | sc.MS_REC) or (bind and opts.clear):
            remount_bind(target, opts.flags, opts.clear)
        for prop in opts.propagation:
            sc.mount(None, target, None, prop)
        if opts.attr_set or opts.attr_clr:
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, opts.attr_set, opts.attr_clr, what=dest)
    finally:
        os.close(fd)


def prepare_idmapped_mounts(config: dict[str, Any], bundle: str) -> dict[int, int]:
    """config.md `idmap`/`ridmap`: detached, idmapped clones of the bind sources.

    Made by the runtime's parent (attaching an idmapping needs CAP_SYS_ADMIN
    in the initial user namespace, which the container's init no longer has);
    the init only moves them into place.  Returns {mount index: tree fd}.
    """
    linux = config.get("linux") or {}
    trees: dict[int, int] = {}
    userns_fds: dict[str, int] = {}
    try:
        for i, entry in enumerate(config.get("mounts") or []):
            opts = MountOptions(entry.get("options") or [])
            if not opts.idmap:
                continue
            field = f"mounts[{i}]"
            uids = entry.get("uidMappings") or linux.get("uidMappings")
            gids = entry.get("gidMappings") or linux.get("gidMappings")
            if not uids or not gids:
                # config.md: no mappings for the mount and none for the container MUST be an error
                raise ConfigError(f"{field}.options", "idmap needs uidMappings/gidMappings (on the mount or the container)")
            key = repr((uids, gids))
            if key not in userns_fds:
                userns_fds[key] = _user_namespace_with(uids, gids, field)
            source = entry.get("source") or ""
            if not os.path.isabs(source):
                source = os.path.join(bundle, source)
            flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC | (sc.AT_RECURSIVE if opts.flags & sc.MS_REC else 0)
            tree = sc.open_tree(-100, source, flags, what=f"{field}.source {source}")  # AT_FDCWD
            trees[i] = tree
            sc.mount_setattr(tree, "", sc.AT_EMPTY_PATH | (sc.AT_RECURSIVE if opts.recursive_idmap else 0),
                             sc.MOUNT_ATTR_IDMAP, 0, 0, userns_fds[key], what=f"{field} idmap of {source}")  # fmt: skip
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in userns_fds.values():
            os.close(fd)
    return trees


def _user_namespace_with(uids: list[dict[str, int]], gids: list[dict[str, int]], field: str) -> int:
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
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def _mount_cgroup(fd: int, opts: MountOptions, ctx: dict[str, Any]) -> bool:
    """Set up /sys/fs/cgroup; True when it fell back to binding the host's tree."""
    manager = ctx.get("cgroup_manager")
    readonly = bool(opts.flags & sc.MS_RDONLY)
    if manager is not None:
        from ocipy.linux.cgroups.mount import mount_cgroupfs

        mount_cgroupfs(manager, fd_path(fd), bool(ctx.get("cgroupns")), readonly)
        return False
    # No cgroup manager: show the host's hierarchy, read-only (the caller remounts).
    sc.mount("/sys/fs/cgroup", fd_path(fd), None, sc.MS_BIND | sc.MS_REC)
    return True


# --- /dev ----------------------------------------------------------------------

DEFAULT_DEVICES = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8, "fileMode": 0o666},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 0o666},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 0o666},
]


def dev_is_bind_mounted(config: dict[str, Any]) -> bool:
    for m in config.get("mounts") or []:
        if clean_path(m.get("destination", "")) == "/dev":
            return "bind" in (m.get("options") or []) or "rbind" in (m.get("options") or []) or m.get("type") == "bind"
    return False


def create_devices(root_fd: int, config: dict[str, Any], in_userns: bool) -> None:
    """The default devices, then linux.devices; in a user namespace, bind the host's node."""
    if not dev_is_bind_mounted(config):
        for dev in DEFAULT_DEVICES:
            _create_device(root_fd, dev, in_userns, f"default device {dev['path']}")
    for i, dev in enumerate((config.get("linux") or {}).get("devices") or []):
        _create_device(root_fd, dev, in_userns, f"linux.devices[{i}]")
    if not dev_is_bind_mounted(config):
        _dev_symlinks(root_fd)


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _create_device(root_fd: int, dev: dict[str, Any], in_userns: bool, field: str) -> None:
    path = clean_path(dev["path"])
    if not path.startswith("/dev/"):
        raise ConfigError(f"{field}.path", f"{path} is not under /dev")
    parent, name = os.path.split(path)
    parent_fd = make_path(root_fd, parent, True)
    try:
        dir_fd = os.open(fd_path(parent_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(parent_fd)
    try:
        mode = (dev.get("fileMode") or 0o666) & 0o7777
        kind = _DEV_TYPES[dev["type"]]
        rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0))
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise ConfigError(f"{field}.path", f"{path} is a directory in the rootfs") from None
        if in_userns and kind != stat.S_IFIFO:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd))
            fd = sc.openat2(dir_fd, name, sc.O_PATH, 0, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS)
            try:
                sc.mount(path, fd_path(fd), None, sc.MS_BIND)
            finally:
                os.close(fd)
            return
        old = os.umask(0)
        try:
            os.mknod(name, kind | mode, rdev, dir_fd=dir_fd)
        except OSError as e:
            raise KernelError("mknod", path, e.errno or errno.EPERM) from None
        finally:
            os.umask(old)
        os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(dir_fd)


def _dev_symlinks(root_fd: int) -> None:
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
                os.symlink(target, name, dir_fd=dev_fd)
            except FileExistsError:
                if name == "ptmx":  # a ptmx node from the rootfs: replace it
                    os.unlink(name, dir_fd=dev_fd)
                    os.symlink(target, name, dir_fd=dev_fd)
    finally:
        os.close(dev_fd)


# --- pivot_root and after --------------------------------------------------------


def pivot_root(rootfs: str) -> None:
    """Make `rootfs` the root; detach the old root so no host path stays reachable."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        sc.pivot_root(".", ".")
        os.fchdir(old_root)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs mount over / and chroot (for ramdisk roots)."""
    os.chdir(rootfs)
    sc.mount(rootfs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def write_sysctls(sysctls: dict[str, str]) -> None:
    for key, value in sysctls.items():
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split(".") or "/" in key:
            raise ConfigError(f"linux.sysctl.{key}", "is not a valid sysctl name")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise ConfigError(f"linux.sysctl.{key}", f"cannot set to {value!r}: {os.strerror(e.errno or errno.EIO)}") from None


def readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except KernelError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    remount_bind(path, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def mask_path(path: str, label: str | None = None) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return  # a path that does not exist needs no mask
    if is_dir:
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, label)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND)


def readonly_root() -> None:
    remount_bind("/", sc.MS_RDONLY)
