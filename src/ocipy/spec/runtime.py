"""The runtime-spec documents: config.json and state, as plain dicts.

Configs stay the parsed JSON dicts (cheap to load on the runtime's hot path:
no dataclasses); :func:`validate_config` checks every field the runtime uses
and raises :class:`ConfigError` naming the offending field.  Unknown
properties are ignored, as config.md requires.  The name tables here
(capabilities, rlimits, namespaces) are kernel ABI facts, pure data.
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.spec import keys

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_MAJOR = 1

# Capability names to numbers (include/uapi/linux/capability.h).
CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
            "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
            "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER "
            "CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT "
            "CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME "
            "CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE CAP_AUDIT_CONTROL "
            "CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
            "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
        ).split()
    )
}
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# rlimit names to resource numbers (include/uapi/asm-generic/resource.h).
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}  # fmt: skip

# Namespace type (config-linux.md) to (CLONE_* flag, /proc/PID/ns entry).
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (0x20000000, "pid"),
    "network": (0x40000000, "net"),
    "mount": (0x00020000, "mnt"),
    "ipc": (0x08000000, "ipc"),
    "uts": (0x04000000, "uts"),
    "user": (0x10000000, "user"),
    "cgroup": (0x02000000, "cgroup"),
    "time": (0x00000080, "time"),
}

SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}  # fmt: skip
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
               "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}  # fmt: skip
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
MEMPOLICY_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
                   "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}  # fmt: skip
MEMPOLICY_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_NUMA_BALANCING": 1 << 13}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec(rootless: bool = False) -> dict[str, Any]:
    """The config.json `ocipy spec` writes: the same defaults as `runc spec`."""
    from ocipy import OCI_RUNTIME_SPEC_VERSION

    spec: dict[str, Any] = {
        "ociVersion": OCI_RUNTIME_SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_DEFAULT_CAPS),
                "effective": list(_DEFAULT_CAPS),
                "permitted": list(_DEFAULT_CAPS),
                "ambient": list(_DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocipy",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }  # fmt: skip
    if unified_cgroup_host():
        # As newer runc: a cgroup namespace of its own where the host is cgroup v2 only
        # (on v1 and hybrid hosts runc's tools expect the host's cgroup paths inside).
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        _make_rootless(spec)
    return spec


def unified_cgroup_host() -> bool:
    """True when /sys/fs/cgroup is a cgroup2 mount (no v1 hierarchies)."""
    import os

    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _make_rootless(spec: dict[str, Any]) -> None:
    """Adjust a default spec for an unprivileged user, as `runc spec --rootless` does:
    no network namespace but a user namespace mapping the caller to root, no
    resources, /sys bound from the host, devpts without gid=5."""
    import os

    old = spec["linux"]
    namespaces = [ns for ns in old["namespaces"] if ns["type"] not in ("network", "user")] + [{"type": "user"}]
    spec["linux"] = {
        "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
        "namespaces": namespaces,
        **{key: value for key, value in old.items() if key not in ("resources", "namespaces")},
    }
    mounts = []
    for m in spec["mounts"]:
        if m["destination"] == "/sys":
            m = {"destination": "/sys", "type": "none", "source": "/sys",
                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}  # fmt: skip
        elif m["type"] == "devpts":
            m = dict(m, options=[o for o in m["options"] if not o.startswith("gid=")])
        mounts.append(m)
    spec["mounts"] = mounts


# --- validation -------------------------------------------------------------


def _expect(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
    # bool is an int in Python; JSON true must not pass as a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(field, f"expected {_JSON_NAMES.get(names, names)}, got {type(value).__name__}")
    return value


_JSON_NAMES = {"str": "string", "int": "integer", "dict": "object", "list": "array", "bool": "boolean"}


def _str_list(value: Any, field: str) -> list[str]:
    _expect(value, list, field)
    for i, item in enumerate(value):
        _expect(item, str, f"{field}[{i}]")
    return value  # type: ignore[no-any-return]


def _optional(obj: dict[str, Any], key: str, kind: type, field: str) -> Any:
    value = obj.get(key)
    if value is not None:
        _expect(value, kind, f"{field}.{key}")
    return value


def check_oci_version(version: Any) -> None:
    """ociVersion MUST be SemVer (config.md); we handle major versions 0 and 1."""
    _expect(version, str, "ociVersion")
    core = version.split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ConfigError("ociVersion", f"{version!r} is not a SemVer version")
    # 0.x configs (the spec's own example is 0.5.0-dev) read as 1.x; a 2.x may mean anything.
    if int(parts[0]) > SUPPORTED_MAJOR:
        raise ConfigError("ociVersion", f"version {version} is not supported (this runtime handles up to 1.x)")


# rlim_t is 64 bits; all ones is RLIM_INFINITY
RLIM_INFINITY = 2**64 - 1
# uid_t/gid_t are 32 bits; (uid_t)-1 means "leave unchanged" to setresuid(2) and
# setresgid(2), so a process asking for it would silently keep the caller's id
ID_MAX = 2**32 - 2


def _number(value: int) -> str:
    """An int for an error line: never thousands of digits (nor the ValueError str() gives for them)."""
    if -(10**20) < value < 10**20:
        return str(value)
    return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit number"


def _check_id_number(value: int, field: str) -> None:
    if value < 0:
        raise ConfigError(field, f"{_number(value)} is negative")
    if value > ID_MAX:
        raise ConfigError(field, f"{_number(value)} is out of range (0 to {ID_MAX}: ids are 32 bits, "
                                 "and 4294967295 means 'no id')")  # fmt: skip


def validate_process(process: Any, field: str = "process") -> None:
    """Check a process object (config.json's `process` or exec's process.json)."""
    _expect(process, dict, field)
    keys.canonical(process, keys.PROCESS_SHAPE)
    args = process.get("args")
    if args is None or args == []:
        raise ConfigError(f"{field}.args", "must be a non-empty array")
    _str_list(args, f"{field}.args")
    cwd = process.get("cwd")
    if cwd is None:
        raise ConfigError(f"{field}.cwd", "is required")
    _expect(cwd, str, f"{field}.cwd")
    if not cwd.startswith("/"):
        raise ConfigError(f"{field}.cwd", f"{cwd!r} must be an absolute path")
    if "env" in process and process["env"] is not None:
        _str_list(process["env"], f"{field}.env")
    _optional(process, "terminal", bool, field)
    _optional(process, "noNewPrivileges", bool, field)
    _optional(process, "oomScoreAdj", int, field)
    _optional(process, "apparmorProfile", str, field)
    _optional(process, "selinuxLabel", str, field)
    user = process.get("user", {}) or {}
    _expect(user, dict, f"{field}.user")
    for key in ("uid", "gid"):
        value = _optional(user, key, int, f"{field}.user")
        if value is not None:
            _check_id_number(value, f"{field}.user.{key}")
    umask = _optional(user, "umask", int, f"{field}.user")
    if umask is not None and not 0 <= umask <= 0o777:
        # umask(2) keeps only the permission bits: anything else is a mistake, not a mask
        raise ConfigError(f"{field}.user.umask", f"{_number(umask)} is not a umask (0 to 0777)")
    for i, gid in enumerate(_expect(user.get("additionalGids") or [], list, f"{field}.user.additionalGids")):
        _check_id_number(_expect(gid, int, f"{field}.user.additionalGids[{i}]"), f"{field}.user.additionalGids[{i}]")
    oom = process.get("oomScoreAdj")
    if oom is not None and not -1000 <= oom <= 1000:  # type checked above; the kernel's range
        raise ConfigError(f"{field}.oomScoreAdj", f"{_number(oom)} is not in -1000..1000")
    caps = process.get("capabilities") or {}
    _expect(caps, dict, f"{field}.capabilities")
    # config.md: runtimes SHOULD NOT fail on capabilities that cannot be granted.
    # As runc: unknown names are dropped from the sets with one warning.
    unknown: set[str] = set()
    for cap_set in CAPABILITY_SETS:
        names = _str_list(caps.get(cap_set) or [], f"{field}.capabilities.{cap_set}")
        known = [name for name in names if name.upper() in CAPABILITIES]
        if len(known) != len(names):
            unknown.update(name for name in names if name.upper() not in CAPABILITIES)
            caps[cap_set] = known
    if unknown:
        from ocipy import log

        log.warning(f"ignoring unknown or unavailable capabilities: [{' '.join(sorted(unknown))}]", "ocipy.spec")
    seen: set[str] = set()
    for i, rl in enumerate(process.get("rlimits") or []):
        where = f"{field}.rlimits[{i}]"
        _expect(rl, dict, where)
        kind = _expect(rl.get("type"), str, f"{where}.type")
        if kind not in RLIMITS:
            raise ConfigError(f"{where}.type", f"unknown rlimit {kind!r}")
        if kind in seen:
            raise ConfigError(f"{where}.type", f"duplicate rlimit {kind}")
        seen.add(kind)
        for key in ("soft", "hard"):
            value = _expect(rl.get(key), int, f"{where}.{key}")
            if not 0 <= value <= RLIM_INFINITY:
                raise ConfigError(f"{where}.{key}", f"{_number(value)} is not in 0..2^64-1 (2^64-1 is unlimited)")
        if rl["soft"] > rl["hard"]:
            raise ConfigError(where, f"soft limit {rl['soft']} exceeds hard limit {rl['hard']}")
    size = process.get("consoleSize")
    if size is not None:
        _expect(size, dict, f"{field}.consoleSize")
        for key in ("height", "width"):
            value = _optional(size, key, int, f"{field}.consoleSize")
            if value is not None and not 0 <= value <= 65535:  # struct winsize: unsigned short
                raise ConfigError(f"{field}.consoleSize.{key}", f"{_number(value)} is not in 0..65535")
    sched = process.get("scheduler")
    if sched is not None:
        _expect(sched, dict, f"{field}.scheduler")
        if sched.get("policy") not in SCHED_POLICIES:
            raise ConfigError(f"{field}.scheduler.policy", f"{sched.get('policy')!r} is not one of {', '.join(SCHED_POLICIES)}")
        for i, flag in enumerate(_str_list(sched.get("flags") or [], f"{field}.scheduler.flags")):
            if flag not in SCHED_FLAGS:
                raise ConfigError(f"{field}.scheduler.flags[{i}]", f"unknown flag {flag!r}")
        for key, low, high in (("nice", -20, 19), ("priority", 0, 2**31 - 1), ("runtime", 0, 2**64 - 1),
                               ("deadline", 0, 2**64 - 1), ("period", 0, 2**64 - 1)):  # fmt: skip
            value = _optional(sched, key, int, f"{field}.scheduler")
            if value is not None and not low <= value <= high:
                raise ConfigError(f"{field}.scheduler.{key}", f"{_number(value)} is not in {low}..{high}")
    io = process.get("ioPriority")
    if io is not None:
        _expect(io, dict, f"{field}.ioPriority")
        if io.get("class") not in IOPRIO_CLASSES:
            raise ConfigError(f"{field}.ioPriority.class", f"{io.get('class')!r} is not one of {', '.join(IOPRIO_CLASSES)}")
        prio = _expect(io.get("priority"), int, f"{field}.ioPriority.priority")
        if not 0 <= prio <= 7:
            raise ConfigError(f"{field}.ioPriority.priority", f"{_number(prio)} is not in 0..7")


def find_nul(value: Any, field: str = "") -> str | None:
    """The field of the first string (or key) with a NUL character: no path,
    argument or name can hold one, and the kernel would cut it short there."""
    if isinstance(value, str):
        return field if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{field}.{key}" if field else str(key)
            if "\x00" in key:
                return sub
            found = find_nul(item, sub)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = find_nul(item, f"{field}[{i}]")
            if found:
                return found
    return None


def validate_config(config: Any) -> dict[str, Any]:
    """Validate a parsed config.json; return it (keys spelled as the spec spells
    them, see spec/keys.py) or raise ConfigError."""
    _expect(config, dict, "config.json")
    keys.canonical(config)
    check_oci_version(config.get("ociVersion"))
    root = config.get("root")
    if root is None:
        raise ConfigError("root", "is required on Linux")
    _expect(root, dict, "root")
    _expect(root.get("path"), str, "root.path")
    if not root["path"]:
        raise ConfigError("root.path", "must not be empty")
    _optional(root, "readonly", bool, "root")
    if config.get("process") is not None:
        validate_process(config["process"])
    _optional(config, "hostname", str, "")
    _optional(config, "domainname", str, "")
    for i, m in enumerate(_expect(config.get("mounts") or [], list, "mounts")):
        where = f"mounts[{i}]"
        _expect(m, dict, where)
        dest = _expect(m.get("destination"), str, f"{where}.destination")
        if not dest:
            raise ConfigError(f"{where}.destination", "must not be empty")
        mtype = _optional(m, "type", str, where)
        _optional(m, "source", str, where)
        options = _str_list(m.get("options") or [], f"{where}.options")
        idmapped = "idmap" in options or "ridmap" in options
        if idmapped and mtype != "bind" and "bind" not in options and "rbind" not in options:
            # config.md: with idmap "the mount MUST have an idmapping applied"; only a bind mount can have one
            raise ConfigError(f"{where}.options", "idmap/ridmap is only supported on bind mounts")
        if bool(m.get("uidMappings")) != bool(m.get("gidMappings")):
            # config.md: uidMappings "MUST be specified along with gidMappings"
            raise ConfigError(f"{where}.uidMappings", "uidMappings and gidMappings must be given together")
    _validate_hooks(config.get("hooks"))
    _validate_linux(config.get("linux") or {}, config.get("domainname"))
    annotations = config.get("annotations") or {}
    _expect(annotations, dict, "annotations")
    for key, value in annotations.items():
        _expect(value, str, f"annotations.{key}")
    return config  # type: ignore[no-any-return]


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def parse_id_list(text: str) -> list[int] | None:
    """"0-3,7" -> [0, 1, 2, 3, 7]; None when malformed (cpu and memory-node lists)."""
    out: list[int] = []
    for item in text.split(","):
        lo, dash, hi = item.strip().partition("-")
        if not (lo.isdigit() and lo.isascii()) or (dash and not (hi.isdigit() and hi.isascii())):
            return None
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first or last > 65535:
            return None
        out.extend(range(first, last + 1))
    return out


def _validate_hooks(hooks: Any) -> None:
    if hooks is None:
        return
    _expect(hooks, dict, "hooks")
    for kind in HOOK_KINDS:
        for i, hook in enumerate(_expect(hooks.get(kind) or [], list, f"hooks.{kind}")):
            where = f"hooks.{kind}[{i}]"
            _expect(hook, dict, where)
            path = _expect(hook.get("path"), str, f"{where}.path")
            if not path.startswith("/"):
                raise ConfigError(f"{where}.path", f"{path!r} must be absolute")
            _str_list(hook.get("args") or [], f"{where}.args")
            _str_list(hook.get("env") or [], f"{where}.env")
            timeout = _optional(hook, "timeout", int, where)
            if timeout is not None and not 0 < timeout <= 2**31 - 1:
                raise ConfigError(f"{where}.timeout", f"{_number(timeout)} must be greater than zero (seconds)"
                                  if timeout <= 0 else f"{_number(timeout)} seconds is out of range")  # fmt: skip


# The ipc namespace's sysctls (ipc/ipc_sysctl.c, ipc/mq_sysctl.c: fs.mqueue.*).
IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                         "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))  # fmt: skip


def sysctl_namespace(key: str) -> str | None:
    """The namespace type a sysctl belongs to; None for one that is the host's."""
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def check_sysctl(key: str, linux: dict[str, Any], domainname: object = None) -> None:
    """linux.sysctl: only a sysctl of a namespace the container has (writing
    any other changes the host's kernel), as runc allows, in runc's words.

    kernel.hostname is refused (the `hostname` field sets it, runc 1.1.5);
    kernel.domainname is allowed with a uts namespace, as runc 1.1.5 allows
    it, unless the `domainname` field sets it too.  A namespace joined by
    `path` may be the host's: the runtime checks that at create, where it
    can stat the path (rootfs.check_sysctl_namespaces).
    """
    field = f"linux.sysctl.{key}"
    kind = sysctl_namespace(key)
    types = {ns.get("type") for ns in linux.get("namespaces") or [] if isinstance(ns, dict)}
    if kind == "uts" and "uts" in types:
        if key == "kernel.domainname" and not domainname:
            return
        name = "hostname" if key == "kernel.hostname" else "domainname"
        raise ConfigError(field, f'sysctl "{key}" is not allowed as it conflicts with the OCI "{name}" field')
    if kind is None or kind == "uts":
        raise ConfigError(field, f'sysctl "{key}" is not in a separate kernel namespace')
    if kind not in types:
        raise ConfigError(field, f'sysctl "{key}" is not allowed in the hosts {"ipc" if kind == "ipc" else "network"} namespace')


def _validate_mappings(linux: dict[str, Any], key: str) -> None:
    for i, m in enumerate(_expect(linux.get(key) or [], list, f"linux.{key}")):
        _expect(m, dict, f"linux.{key}[{i}]")
        for k in ("containerID", "hostID", "size"):
            value = _expect(m.get(k), int, f"linux.{key}[{i}].{k}")
            if value < 0:
                raise ConfigError(f"linux.{key}[{i}].{k}", "is negative")
            if value > 2**32 - 1:
                raise ConfigError(f"linux.{key}[{i}].{k}", f"{_number(value)} is out of range (ids are 32 bits)")


def _validate_linux(linux: Any, domainname: object = None) -> None:
    _expect(linux, dict, "linux")
    seen: set[str] = set()
    for i, ns in enumerate(_expect(linux.get("namespaces") or [], list, "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        _expect(ns, dict, where)
        kind = _expect(ns.get("type"), str, f"{where}.type")
        if kind not in NAMESPACES:
            raise ConfigError(f"{where}.type", f"unknown namespace type {kind!r}")
        if kind in seen:  # config-linux.md: "No duplication is allowed."
            raise ConfigError(f"{where}.type", f"namespace {kind} is listed twice")
        seen.add(kind)
        _optional(ns, "path", str, where)
    _validate_mappings(linux, "uidMappings")
    _validate_mappings(linux, "gidMappings")
    if bool(linux.get("uidMappings")) != bool(linux.get("gidMappings")):
        raise ConfigError("linux.uidMappings", "uidMappings and gidMappings must be given together")
    if linux.get("uidMappings") and "user" not in seen:
        raise ConfigError("linux.uidMappings", "mappings need a user namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_str_list(linux.get(key) or [], f"linux.{key}")):
            if not path.startswith("/"):
                raise ConfigError(f"linux.{key}[{i}]", f"{path!r} must be absolute")
        if linux.get(key) and "mount" not in seen:
            raise ConfigError(f"linux.{key}", "masking or making paths read-only needs a mount namespace")
    sysctl = _expect(linux.get("sysctl") or {}, dict, "linux.sysctl")
    for key, value in sysctl.items():
        _expect(value, str, f"linux.sysctl.{key}")
        check_sysctl(key, linux, domainname)
    for i, dev in enumerate(_expect(linux.get("devices") or [], list, "linux.devices")):
        where = f"linux.devices[{i}]"
        _expect(dev, dict, where)
        path = _expect(dev.get("path"), str, f"{where}.path")
        if not path.startswith("/"):
            raise ConfigError(f"{where}.path", f"{path!r} must be absolute")
        if not path.strip("/") or all(p in ("", ".", "..") for p in path.split("/")):
            # anywhere in the rootfs (runc makes /mydev/x too), but not the rootfs itself
            raise ConfigError(f"{where}.path", f"{path!r} is not a valid device path")
        if dev.get("type") not in ("c", "b", "u", "p"):
            raise ConfigError(f"{where}.type", f"{dev.get('type')!r} is not one of c, b, u, p")
        if dev["type"] != "p":
            _expect(dev.get("major"), int, f"{where}.major")
            _expect(dev.get("minor"), int, f"{where}.minor")
    cgroups_path = _optional(linux, "cgroupsPath", str, "linux")
    if cgroups_path and ".." in cgroups_path.split("/"):
        raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r} must not contain '..'")
    _optional(linux, "resources", dict, "linux")
    _optional(linux, "seccomp", dict, "linux")
    net_devices = _expect(linux.get("netDevices") or {}, dict, "linux.netDevices")
    for name, dev in net_devices.items():
        _expect(dev, dict, f"linux.netDevices.{name}")
        _optional(dev, "name", str, f"linux.netDevices.{name}")
    policy = linux.get("memoryPolicy")
    if policy is not None:
        _expect(policy, dict, "linux.memoryPolicy")
        if policy.get("mode") not in MEMPOLICY_MODES:
            raise ConfigError("linux.memoryPolicy.mode", f"{policy.get('mode')!r} is not one of {', '.join(MEMPOLICY_MODES)}")
        for i, flag in enumerate(_str_list(policy.get("flags") or [], "linux.memoryPolicy.flags")):
            if flag not in MEMPOLICY_FLAGS:
                raise ConfigError(f"linux.memoryPolicy.flags[{i}]", f"unknown flag {flag!r}")
        nodes = _optional(policy, "nodes", str, "linux.memoryPolicy")
        if nodes and parse_id_list(nodes) is None:
            raise ConfigError("linux.memoryPolicy.nodes", f"{nodes!r} is not a list like 0-3,7")
    personality = linux.get("personality")
    if personality is not None:
        _expect(personality, dict, "linux.personality")
        if personality.get("domain") not in PERSONALITY_DOMAINS:
            raise ConfigError("linux.personality.domain", f"{personality.get('domain')!r} is not LINUX or LINUX32")
        if personality.get("flags"):
            raise ConfigError("linux.personality.flags", "no personality flags are supported")
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"):
        raise ConfigError("linux.rootfsPropagation", f"unknown propagation {prop!r}")
