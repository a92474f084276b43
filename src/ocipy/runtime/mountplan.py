"""config.json `mounts` as typed entries, and the pure plan of what to do with them.

`parse_mounts` turns the parsed config's mounts (spec/config.py `MountEntry`)
into small slotted `Mount` objects with their options sorted for the kernel
(each keeps its field name, ``mounts[3]``, for messages);
`plan_mount` turns one into the list of operations the kernel is asked for,
without touching the filesystem.  `rootfs.execute` runs a plan through the
kernel seam (`ocipy.linux.syscalls`, or a recording fake in the unit tests).

The operations, in the order a mount's appear:

  CheckDir   proc/sysfs: the destination, if it exists, must be a real
             directory (runc: "must be mounted on ordinary directory")
  MountFs    mount(2) a new filesystem on the destination (made as a directory)
  Bind       bind (or rbind) the source; the destination is made a directory
             or a file like the source; a tree opened by the parent is moved
  Cgroup     the cgroup filesystem on /sys/fs/cgroup
  Remount    MS_REMOUNT|MS_BIND with the entry's flags (keeping locked ones)
  Propagate  one propagation change (shared, rslave, ...)
  SetAttr    mount_setattr(AT_RECURSIVE) for the recursive `r*` options

and, run once the mounts and the devices are in place (a read-only /dev or
tmpfs still needs its mount points and nodes made first, as runc does):

  RemountRo  MS_REMOUNT|MS_RDONLY of a non-bind filesystem
"""

from __future__ import annotations

import os

from ocipy.errors import ConfigError
from ocipy.linux import syscalls as sc

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from ocipy.spec.config import IdMapping, Linux, MountEntry

# option -> (clear?, flag) for mount(2) flags (config.md "Mount options").
FLAGS: dict[str, tuple[bool, int]] = {
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

PROPAGATION: dict[str, int] = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}  # fmt: skip

# recursive option -> (clear?, MOUNT_ATTR_*), applied with mount_setattr(AT_RECURSIVE)
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, sc.MOUNT_ATTR_RDONLY), "rrw": (True, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, sc.MOUNT_ATTR_NOSUID), "rsuid": (True, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, sc.MOUNT_ATTR_NODEV), "rdev": (True, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, sc.MOUNT_ATTR_NOEXEC), "rexec": (True, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, sc.MOUNT_ATTR_NODIRATIME), "rdiratime": (True, sc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, sc.MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, sc.MOUNT_ATTR_NOSYMFOLLOW),
}  # fmt: skip
# atime options are a field, not bits: (attr to set in MOUNT_ATTR__ATIME)
RECURSIVE_ATIME = {
    "rrelatime": sc.MOUNT_ATTR_RELATIME, "rnorelatime": sc.MOUNT_ATTR_RELATIME,
    "rnoatime": sc.MOUNT_ATTR_NOATIME, "ratime": sc.MOUNT_ATTR_RELATIME,
    "rstrictatime": sc.MOUNT_ATTR_STRICTATIME, "rnostrictatime": sc.MOUNT_ATTR_RELATIME,
}  # fmt: skip


class MountOptions:
    """A mount entry's `options`, sorted into what each system call needs."""

    __slots__ = ("flags", "clear", "propagation", "attr_set", "attr_clr", "idmap", "recursive_idmap", "data")

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
            if opt in FLAGS:
                clear, flag = FLAGS[opt]
                if clear:
                    self.flags &= ~flag
                    self.clear |= flag
                else:
                    self.flags |= flag
            elif opt in PROPAGATION:
                self.propagation.append(PROPAGATION[opt])
            elif opt in RECURSIVE:
                clear, attr = RECURSIVE[opt]
                if clear:
                    self.attr_clr |= attr
                else:
                    self.attr_set |= attr
            elif opt in RECURSIVE_ATIME:
                self.attr_clr |= sc.MOUNT_ATTR__ATIME
                self.attr_set |= RECURSIVE_ATIME[opt]
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


class Mount:
    """One `mounts[i]` entry, parsed: what the runtime needs of it, typed."""

    __slots__ = ("index", "field", "destination", "type", "source", "options", "uid_mappings", "gid_mappings")

    def __init__(self, index: int, destination: str, mtype: str, source: str, options: MountOptions,
                 uid_mappings: list[IdMapping] | None = None,
                 gid_mappings: list[IdMapping] | None = None) -> None:  # fmt: skip
        self.index = index
        self.field = f"mounts[{index}]"
        self.destination = destination
        self.type = mtype
        self.source = source
        self.options = options
        self.uid_mappings = uid_mappings
        self.gid_mappings = gid_mappings

    @property
    def is_bind(self) -> bool:
        return self.options.is_bind

    def __repr__(self) -> str:
        return f"Mount({self.field} {self.type or '-'} {self.source!r} on {self.destination})"


def clean_path(path: str) -> str:
    """An absolute, normalised path ('//x' and 'a/../b' folded, never above '/')."""
    return os.path.normpath("/" + path.lstrip("/"))


def parse_mounts(entries: list[MountEntry], bundle: str) -> list[Mount]:
    """config.json's (parsed) mounts as `Mount`s.

    config.md: a relative `destination` is relative to "/" (runc's reading);
    a relative bind `source` is relative to the bundle; a mount with the
    `bind` or `rbind` option, or of type "bind", is a bind mount.
    """
    out: list[Mount] = []
    for entry in entries:
        dest = entry.destination
        if not dest.startswith("/"):
            dest = "/" + dest
        opts = MountOptions(entry.options)
        mtype = entry.type or ("bind" if opts.is_bind else "")
        if mtype == "bind":
            opts.flags |= sc.MS_BIND
        source = entry.source
        if opts.is_bind and not source.startswith("/"):
            source = os.path.join(bundle, source)
        out.append(Mount(entry.index, dest, mtype, source, opts, entry.uid_mappings, entry.gid_mappings))
    return out


# --- the operations -------------------------------------------------------------


class Op:
    """One step of a plan; compared and shown by its fields (for the tests)."""

    __slots__ = ("dest", "field")
    dest: str
    field: str

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ()))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        names = [n for cls in reversed(type(self).__mro__) for n in getattr(cls, "__slots__", ()) if n != "field"]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"


class CheckDir(Op):
    __slots__ = ("fstype",)

    def __init__(self, dest: str, fstype: str, field: str) -> None:
        self.dest, self.fstype, self.field = dest, fstype, field


class MountFs(Op):
    __slots__ = ("source", "fstype", "flags", "data")

    def __init__(self, dest: str, source: str, fstype: str, flags: int, data: str | None, field: str) -> None:
        self.dest, self.source, self.fstype, self.flags, self.data, self.field = dest, source, fstype, flags, data, field


class Bind(Op):
    __slots__ = ("source", "recursive", "index")

    def __init__(self, dest: str, source: str, recursive: bool, index: int, field: str) -> None:
        self.dest, self.source, self.recursive, self.index, self.field = dest, source, recursive, index, field


class Cgroup(Op):
    __slots__ = ("readonly",)

    def __init__(self, dest: str, readonly: bool, field: str) -> None:
        self.dest, self.readonly, self.field = dest, readonly, field


class Remount(Op):
    __slots__ = ("flags", "clear")

    def __init__(self, dest: str, flags: int, clear: int, field: str) -> None:
        self.dest, self.flags, self.clear, self.field = dest, flags, clear, field


class Propagate(Op):
    __slots__ = ("flag",)

    def __init__(self, dest: str, flag: int, field: str) -> None:
        self.dest, self.flag, self.field = dest, flag, field


class SetAttr(Op):
    __slots__ = ("attr_set", "attr_clr")

    def __init__(self, dest: str, attr_set: int, attr_clr: int, field: str) -> None:
        self.dest, self.attr_set, self.attr_clr, self.field = dest, attr_set, attr_clr, field


class RemountRo(Op):
    __slots__ = ("flags",)

    def __init__(self, dest: str, flags: int, field: str) -> None:
        self.dest, self.flags, self.field = dest, flags, field


_BIND_ONLY = sc.MS_BIND | sc.MS_REC


def plan_mount(m: Mount) -> tuple[list[Op], list[Op]]:
    """The operations for one mount, and those deferred until after /dev's nodes."""
    opts, dest, field = m.options, m.destination, m.field
    ops: list[Op] = []
    later: list[Op] = []
    if m.is_bind:
        ops.append(Bind(dest, m.source, bool(opts.flags & sc.MS_REC), m.index, field))
        # A bind mount takes its flags from a remount (the first mount ignores them).
        if opts.flags & ~_BIND_ONLY or opts.clear:
            ops.append(Remount(dest, opts.flags & ~(_BIND_ONLY | sc.MS_REMOUNT), opts.clear, field))
    elif m.type == "cgroup":
        ops.append(Cgroup(dest, bool(opts.flags & sc.MS_RDONLY), field))
    else:
        flags = opts.flags
        if m.type in ("proc", "sysfs"):
            ops.append(CheckDir(dest, m.type, field))
        if flags & sc.MS_RDONLY and not flags & sc.MS_REMOUNT and (m.type == "tmpfs" or clean_path(dest) == "/dev"):
            # runc: mount it writable, make it read-only once the mount points
            # and device nodes below it exist (mkdir /dev/pts on a ro /dev).
            flags &= ~sc.MS_RDONLY
            later.append(RemountRo(dest, flags, field))
        ops.append(MountFs(dest, m.source or m.type, m.type, flags, opts.data or None, field))
    for prop in opts.propagation:
        ops.append(Propagate(dest, prop, field))
    if opts.attr_set or opts.attr_clr:
        ops.append(SetAttr(dest, opts.attr_set, opts.attr_clr, field))
    return ops, later


class Plan:
    """The mounts' operations in config order, then the deferred ones."""

    __slots__ = ("mounts", "steps", "deferred", "dev_bound")

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts = mounts
        self.steps: list[list[Op]] = []  # per mount, in config order
        self.deferred: list[Op] = []
        self.dev_bound = False  # /dev is a bind mount: no default devices, no /dev symlinks
        dev_seen = False
        for m in mounts:
            ops, later = plan_mount(m)
            self.steps.append(ops)
            self.deferred.extend(later)
            if not dev_seen and clean_path(m.destination) == "/dev":
                dev_seen, self.dev_bound = True, m.is_bind

    def ops(self) -> list[Op]:
        return [op for ops in self.steps for op in ops] + self.deferred


def plan(mounts: list[MountEntry], bundle: str) -> Plan:
    return Plan(parse_mounts(mounts, bundle))


def idmap_mappings(m: Mount, linux: Linux) -> tuple[list[IdMapping], list[IdMapping]]:
    """The mappings of an idmap/ridmap mount: its own, else the container's."""
    uids = m.uid_mappings or linux.uid_mappings
    gids = m.gid_mappings or linux.gid_mappings
    if not uids or not gids:
        # config.md: no mappings for the mount and none for the container MUST be an error
        raise ConfigError(f"{m.field}.options", "idmap needs uidMappings/gidMappings (on the mount or the container)")
    return uids, gids
