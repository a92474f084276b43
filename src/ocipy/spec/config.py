"""config.json parsed once: one validating pass into small typed objects.

`parse` walks config.json once.  Each object on the way has its keys matched
as runc's Go decoding matches them (exactly, else case-insensitively, see
`keys.fold`): the dict is renamed in place, so the copy saved in state.json
reads with the spec's spelling.  Unknown keys are ignored (config.md
"Extensibility": they MUST be), and every field the runtime uses is checked
and read into a slotted object that knows its JSON path for messages
(``invalid configuration: linux.resources.memory.limit: ...``).

The rest of the runtime reads only these objects: create and init the
`Config`, exec a `Process` (`parse_process`, exec -p process.json), the
cgroup manager a `Resources` (spec/resources.py, also update's), the
seccomp filter a `SeccompPlan` (spec/seccomp.py), the hooks `Hook` lists.
Checks that need the host (a namespace path, a cgroup controller,
libseccomp's API level) stay where the host is asked.

Plain classes and dict walking: this runs on every create and exec, so no
dataclasses, typing or enum imports.
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.spec.keys import fold, names
from ocipy.spec.runtime import (
    CAPABILITIES,
    CAPABILITY_SETS,
    HOOK_KINDS,
    IOPRIO_CLASSES,
    MEMPOLICY_FLAGS,
    MEMPOLICY_MODES,
    NAMESPACES,
    PERSONALITY_DOMAINS,
    RLIMITS,
    SCHED_FLAGS,
    SCHED_POLICIES,
    SUPPORTED_MAJOR,
    check_sysctl,
    parse_id_list,
)

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.resources import Resources
    from ocipy.spec.seccomp import SeccompPlan

# --- value checks (the wording of each section's messages is kept as tools and tests read it) --------

_JSON_NAMES = {"str": "string", "int": "integer", "dict": "object", "list": "array", "bool": "boolean"}


def _expect(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
    # bool is an int in Python; JSON true must not pass as a number.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        label = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(field, f"expected {_JSON_NAMES.get(label, label)}, got {type(value).__name__}")
    return value


def _str_list(value: Any, field: str) -> list[str]:
    _expect(value, list, field)
    for i, item in enumerate(value):
        _expect(item, str, f"{field}[{i}]")
    return value  # type: ignore[no-any-return]


def _optional(obj: dict[str, Any], key: str, kind: type, field: str) -> Any:
    value = obj.get(key)
    if value is not None:
        _expect(value, kind, f"{field}.{key}" if field else key)
    return value


def _obj(value: Any, field: str, names: frozenset[str]) -> dict[str, Any]:
    """An object of config.json: checked, and its keys folded to `names`."""
    return fold(_expect(value, dict, field), names)


def _number(value: int) -> str:
    """An int for an error line: never thousands of digits (nor the ValueError str() gives for them)."""
    if -(10**20) < value < 10**20:
        return str(value)
    return f"{'-' if value < 0 else ''}a {value.bit_length()}-bit number"


# rlim_t is 64 bits; all ones is RLIM_INFINITY
RLIM_INFINITY = 2**64 - 1
# uid_t/gid_t are 32 bits; (uid_t)-1 means "leave unchanged" to setresuid(2) and
# setresgid(2), so a process asking for it would silently keep the caller's id
ID_MAX = 2**32 - 2


def _check_id_number(value: int, field: str) -> None:
    if value < 0:
        raise ConfigError(field, f"{_number(value)} is negative")
    if value > ID_MAX:
        raise ConfigError(field, f"{_number(value)} is out of range (0 to {ID_MAX}: ids are 32 bits, "
                                 "and 4294967295 means 'no id')")  # fmt: skip


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


# --- the objects -------------------------------------------------------------------------------------


class Config:
    """config.json, parsed: `raw` is the (key-folded) dict, saved as is in state.json."""

    __slots__ = ("raw", "oci_version", "root_path", "root_readonly", "process", "hostname", "domainname",
                 "mounts", "hooks", "linux", "annotations")  # fmt: skip

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.oci_version = ""
        self.root_path = ""
        self.root_readonly = False
        self.process: Process | None = None
        self.hostname = ""
        self.domainname = ""
        self.mounts: list[MountEntry] = []
        self.hooks = Hooks()
        self.linux = Linux()
        self.annotations: dict[str, str] = {}


class User:
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, uid: int = 0, gid: int = 0, umask: int | None = None,
                 additional_gids: list[int] | None = None) -> None:  # fmt: skip
        self.uid, self.gid, self.umask = uid, gid, umask
        self.additional_gids = additional_gids or []


class Capabilities:
    """The five capability sets, by name (unknown names dropped); an absent set is empty."""

    __slots__ = CAPABILITY_SETS

    def __init__(self) -> None:
        self.bounding: list[str] = []
        self.effective: list[str] = []
        self.inheritable: list[str] = []
        self.permitted: list[str] = []
        self.ambient: list[str] = []


class Rlimit:
    __slots__ = ("type", "resource", "soft", "hard")

    def __init__(self, kind: str, soft: int, hard: int) -> None:
        self.type, self.resource, self.soft, self.hard = kind, RLIMITS[kind], soft, hard


class Scheduler:
    __slots__ = ("policy_name", "policy", "flags", "nice", "priority", "runtime", "deadline", "period")

    def __init__(self, policy_name: str) -> None:
        self.policy_name, self.policy = policy_name, SCHED_POLICIES[policy_name]
        self.flags = 0
        self.nice = self.priority = self.runtime = self.deadline = self.period = 0


class Process:
    """process (config.json) or exec's process.json."""

    __slots__ = ("terminal", "console_size", "cwd", "env", "args", "user", "capabilities", "rlimits",
                 "no_new_privileges", "oom_score_adj", "scheduler", "io_priority", "apparmor_profile",
                 "selinux_label")  # fmt: skip

    def __init__(self) -> None:
        self.terminal = False
        self.console_size: tuple[int, int] | None = None  # (height, width)
        self.cwd = "/"
        self.env: list[str] = []
        self.args: list[str] = []
        self.user = User()
        self.capabilities: Capabilities | None = None  # absent: left as they are (runc)
        self.rlimits: list[Rlimit] = []
        self.no_new_privileges = False
        self.oom_score_adj: int | None = None
        self.scheduler: Scheduler | None = None
        self.io_priority: tuple[str, int, int] | None = None  # (class name, class, priority)
        self.apparmor_profile = ""
        self.selinux_label = ""


class Hook:
    __slots__ = ("path", "args", "env", "timeout")

    def __init__(self, path: str, args: list[str], env: list[str] | None, timeout: int | None) -> None:
        self.path, self.args, self.env, self.timeout = path, args, env, timeout


class Hooks:
    """hooks: kind (the spec's name, e.g. "createRuntime") -> its hooks in order."""

    __slots__ = ("by_kind",)

    def __init__(self) -> None:
        self.by_kind: dict[str, list[Hook]] = {}

    def of(self, kind: str) -> list[Hook]:
        return self.by_kind.get(kind) or []


class IdMapping:
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int) -> None:
        self.container_id, self.host_id, self.size = container_id, host_id, size

    def line(self) -> str:
        """The line of /proc/PID/uid_map (or gid_map)."""
        return f"{self.container_id} {self.host_id} {self.size}\n"

    def __repr__(self) -> str:
        return f"IdMapping({self.container_id}, {self.host_id}, {self.size})"


class Namespace:
    __slots__ = ("type", "path", "flag", "index")

    def __init__(self, kind: str, path: str, index: int) -> None:
        self.type, self.path, self.flag, self.index = kind, path, NAMESPACES[kind][0], index


class Device:
    """One linux.devices entry."""

    __slots__ = ("path", "type", "major", "minor", "file_mode", "uid", "gid")

    def __init__(self, path: str, kind: str, major: int = 0, minor: int = 0, file_mode: int | None = None,
                 uid: int = 0, gid: int = 0) -> None:  # fmt: skip
        self.path, self.type, self.major, self.minor = path, kind, major, minor
        self.file_mode, self.uid, self.gid = file_mode, uid, gid


class MountEntry:
    """One mounts[i] entry as written (runtime/mountplan.py sorts its options for the kernel)."""

    __slots__ = ("index", "destination", "type", "source", "options", "uid_mappings", "gid_mappings")

    def __init__(self, index: int, destination: str, mtype: str = "", source: str = "",
                 options: list[str] | None = None, uid_mappings: list[IdMapping] | None = None,
                 gid_mappings: list[IdMapping] | None = None) -> None:  # fmt: skip
        self.index, self.destination, self.type, self.source = index, destination, mtype, source
        self.options = options or []
        self.uid_mappings, self.gid_mappings = uid_mappings or [], gid_mappings or []


class MemoryPolicy:
    __slots__ = ("mode_name", "mode", "nodes")

    def __init__(self, mode_name: str, mode: int, nodes: str) -> None:
        self.mode_name, self.mode, self.nodes = mode_name, mode, nodes


class Linux:
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "devices", "net_devices", "cgroups_path",
                 "resources", "sysctl", "seccomp", "masked_paths", "readonly_paths", "mount_label",
                 "rootfs_propagation", "time_offsets", "personality", "memory_policy")  # fmt: skip

    def __init__(self) -> None:
        self.namespaces: list[Namespace] = []
        self.uid_mappings: list[IdMapping] = []
        self.gid_mappings: list[IdMapping] = []
        self.devices: list[Device] = []
        self.net_devices: dict[str, str] = {}  # host name -> name in the container
        self.cgroups_path = ""
        self.resources: Resources | None = None  # spec/resources.py; None: not given
        self.sysctl: dict[str, str] = {}
        self.seccomp: SeccompPlan | None = None  # spec/seccomp.py
        self.masked_paths: list[str] = []
        self.readonly_paths: list[str] = []
        self.mount_label = ""
        self.rootfs_propagation = ""
        self.time_offsets: dict[str, tuple[int, int]] = {}  # clock -> (secs, nanosecs)
        self.personality: int | None = None
        self.memory_policy: MemoryPolicy | None = None

    @property
    def ns_types(self) -> set[str]:
        return {ns.type for ns in self.namespaces}

    def namespace(self, kind: str) -> Namespace | None:
        return next((ns for ns in self.namespaces if ns.type == kind), None)


# --- parsing -----------------------------------------------------------------------------------------

_CONFIG = names("ociVersion", "root", "mounts", "process", "hostname", "domainname", "hooks", "annotations",
                 "linux")  # fmt: skip
_ROOT = names("path", "readonly")


def parse(raw: Any, *, resources: bool = True) -> Config:
    """config.json (the decoded JSON) as a `Config`; raises ConfigError naming the field.

    resources=False leaves linux.resources unread (exec reads a saved config
    again: it does not touch the cgroup limits, and need not import them)."""
    config = _obj(raw, "config.json", _CONFIG)
    out = Config(config)
    check_oci_version(config.get("ociVersion"))
    out.oci_version = config["ociVersion"]
    root = config.get("root")
    if root is None:
        raise ConfigError("root", "is required on Linux")
    root = _obj(root, "root", _ROOT)
    out.root_path = _expect(root.get("path"), str, "root.path")
    if not out.root_path:
        raise ConfigError("root.path", "must not be empty")
    out.root_readonly = bool(_optional(root, "readonly", bool, "root"))
    if config.get("process") is not None:
        out.process = parse_process(config["process"])
    out.hostname = _optional(config, "hostname", str, "") or ""
    out.domainname = _optional(config, "domainname", str, "") or ""
    out.mounts = [_mount(m, i) for i, m in enumerate(_expect(config.get("mounts") or [], list, "mounts"))]
    out.hooks = parse_hooks(config.get("hooks"))
    out.linux = _linux(config.get("linux") or {}, out.domainname, resources)
    annotations = _expect(config.get("annotations") or {}, dict, "annotations")
    for key, value in annotations.items():
        _expect(value, str, f"annotations.{key}")
    out.annotations = annotations
    return out


_PROCESS = names("terminal", "consoleSize", "cwd", "env", "args", "commandLine", "rlimits", "apparmorProfile",
                  "capabilities", "noNewPrivileges", "oomScoreAdj", "scheduler", "selinuxLabel", "ioPriority",
                  "execCPUAffinity", "user")  # fmt: skip
_USER = names("uid", "gid", "umask", "additionalGids", "username")
_CAPS = frozenset(CAPABILITY_SETS)
_RLIMIT = names("type", "soft", "hard")
_SIZE = names("height", "width")
_SCHED = names("policy", "nice", "priority", "flags", "runtime", "deadline", "period")
_IOPRIO = names("class", "priority")
_AFFINITY = names("initial", "final")


def parse_process(value: Any, field: str = "process") -> Process:
    """A process object (config.json's `process` or exec's process.json)."""
    process = _obj(value, field, _PROCESS)
    out = Process()
    args = process.get("args")
    if args is None or args == []:
        raise ConfigError(f"{field}.args", "must be a non-empty array")
    out.args = _str_list(args, f"{field}.args")
    cwd = process.get("cwd")
    if cwd is None:
        raise ConfigError(f"{field}.cwd", "is required")
    out.cwd = _expect(cwd, str, f"{field}.cwd")
    if not cwd.startswith("/"):
        raise ConfigError(f"{field}.cwd", f"{cwd!r} must be an absolute path")
    if process.get("env") is not None:
        out.env = _str_list(process["env"], f"{field}.env")
    out.terminal = bool(_optional(process, "terminal", bool, field))
    out.no_new_privileges = bool(_optional(process, "noNewPrivileges", bool, field))
    out.oom_score_adj = _optional(process, "oomScoreAdj", int, field)
    out.apparmor_profile = _optional(process, "apparmorProfile", str, field) or ""
    out.selinux_label = _optional(process, "selinuxLabel", str, field) or ""
    if process.get("execCPUAffinity") is not None:
        _obj(process["execCPUAffinity"], f"{field}.execCPUAffinity", _AFFINITY)
    user = _obj(process.get("user", {}) or {}, f"{field}.user", _USER)
    ids = []
    for key in ("uid", "gid"):
        value = _optional(user, key, int, f"{field}.user")
        if value is not None:
            _check_id_number(value, f"{field}.user.{key}")
        ids.append(value or 0)
    umask = _optional(user, "umask", int, f"{field}.user")
    if umask is not None and not 0 <= umask <= 0o777:
        # umask(2) keeps only the permission bits: anything else is a mistake, not a mask
        raise ConfigError(f"{field}.user.umask", f"{_number(umask)} is not a umask (0 to 0777)")
    gids = _expect(user.get("additionalGids") or [], list, f"{field}.user.additionalGids")
    for i, gid in enumerate(gids):
        _check_id_number(_expect(gid, int, f"{field}.user.additionalGids[{i}]"), f"{field}.user.additionalGids[{i}]")
    out.user = User(ids[0], ids[1], umask, gids)
    oom = out.oom_score_adj
    if oom is not None and not -1000 <= oom <= 1000:  # the kernel's range
        raise ConfigError(f"{field}.oomScoreAdj", f"{_number(oom)} is not in -1000..1000")
    if process.get("capabilities") is not None:
        out.capabilities = _capabilities(process["capabilities"], f"{field}.capabilities")
    else:
        _expect(process.get("capabilities") or {}, dict, f"{field}.capabilities")
    seen: set[str] = set()
    for i, rl in enumerate(_expect(process.get("rlimits") or [], list, f"{field}.rlimits")):
        where = f"{field}.rlimits[{i}]"
        rl = _obj(rl, where, _RLIMIT)
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
        out.rlimits.append(Rlimit(kind, rl["soft"], rl["hard"]))
    size = process.get("consoleSize")
    if size is not None:
        size = _obj(size, f"{field}.consoleSize", _SIZE)
        hw = []
        for key in ("height", "width"):
            value = _optional(size, key, int, f"{field}.consoleSize")
            if value is not None and not 0 <= value <= 65535:  # struct winsize: unsigned short
                raise ConfigError(f"{field}.consoleSize.{key}", f"{_number(value)} is not in 0..65535")
            hw.append(value or 0)
        out.console_size = (hw[0], hw[1])
    sched = process.get("scheduler")
    if sched is not None:
        sched = _obj(sched, f"{field}.scheduler", _SCHED)
        if sched.get("policy") not in SCHED_POLICIES:
            raise ConfigError(f"{field}.scheduler.policy", f"{sched.get('policy')!r} is not one of {', '.join(SCHED_POLICIES)}")
        out.scheduler = s = Scheduler(sched["policy"])
        for i, flag in enumerate(_str_list(sched.get("flags") or [], f"{field}.scheduler.flags")):
            if flag not in SCHED_FLAGS:
                raise ConfigError(f"{field}.scheduler.flags[{i}]", f"unknown flag {flag!r}")
            s.flags |= SCHED_FLAGS[flag]
        for key, low, high in (("nice", -20, 19), ("priority", 0, 2**31 - 1), ("runtime", 0, 2**64 - 1),
                               ("deadline", 0, 2**64 - 1), ("period", 0, 2**64 - 1)):  # fmt: skip
            value = _optional(sched, key, int, f"{field}.scheduler")
            if value is not None and not low <= value <= high:
                raise ConfigError(f"{field}.scheduler.{key}", f"{_number(value)} is not in {low}..{high}")
            setattr(s, key, value or 0)
    io = process.get("ioPriority")
    if io is not None:
        io = _obj(io, f"{field}.ioPriority", _IOPRIO)
        if io.get("class") not in IOPRIO_CLASSES:
            raise ConfigError(f"{field}.ioPriority.class", f"{io.get('class')!r} is not one of {', '.join(IOPRIO_CLASSES)}")
        prio = _expect(io.get("priority"), int, f"{field}.ioPriority.priority")
        if not 0 <= prio <= 7:
            raise ConfigError(f"{field}.ioPriority.priority", f"{_number(prio)} is not in 0..7")
        out.io_priority = (io["class"], IOPRIO_CLASSES[io["class"]], prio)
    return out


def _capabilities(value: Any, field: str) -> Capabilities:
    caps = _obj(value, field, _CAPS)
    out = Capabilities()
    # config.md: runtimes SHOULD NOT fail on capabilities that cannot be granted.
    # As runc: unknown names are dropped from the sets with one warning.
    unknown: set[str] = set()
    for cap_set in CAPABILITY_SETS:
        names = _str_list(caps.get(cap_set) or [], f"{field}.{cap_set}")
        known = [name for name in names if name.upper() in CAPABILITIES]
        if len(known) != len(names):
            unknown.update(name for name in names if name.upper() not in CAPABILITIES)
            caps[cap_set] = known
        setattr(out, cap_set, known)
    if unknown:
        from ocipy import log

        log.warning(f"ignoring unknown or unavailable capabilities: [{' '.join(sorted(unknown))}]", "ocipy.spec")
    return out


_MOUNT = names("destination", "type", "source", "options", "uidMappings", "gidMappings")
_ID_MAP = names("containerID", "hostID", "size")


def _mount(value: Any, i: int) -> MountEntry:
    where = f"mounts[{i}]"
    m = _obj(value, where, _MOUNT)
    dest = _expect(m.get("destination"), str, f"{where}.destination")
    if not dest:
        raise ConfigError(f"{where}.destination", "must not be empty")
    mtype = _optional(m, "type", str, where) or ""
    source = _optional(m, "source", str, where) or ""
    options = _str_list(m.get("options") or [], f"{where}.options")
    idmapped = "idmap" in options or "ridmap" in options
    if idmapped and mtype != "bind" and "bind" not in options and "rbind" not in options:
        # config.md: with idmap "the mount MUST have an idmapping applied"; only a bind mount can have one
        raise ConfigError(f"{where}.options", "idmap/ridmap is only supported on bind mounts")
    uids = _id_mappings(m, "uidMappings", where)
    gids = _id_mappings(m, "gidMappings", where)
    if bool(uids) != bool(gids):
        # config.md: uidMappings "MUST be specified along with gidMappings"
        raise ConfigError(f"{where}.uidMappings", "uidMappings and gidMappings must be given together")
    return MountEntry(i, dest, mtype, source, options, uids, gids)


def _id_mappings(obj: dict[str, Any], key: str, where: str) -> list[IdMapping]:
    out = []
    for i, m in enumerate(_expect(obj.get(key) or [], list, f"{where}.{key}")):
        m = _obj(m, f"{where}.{key}[{i}]", _ID_MAP)
        values = []
        for k in ("containerID", "hostID", "size"):
            value = _expect(m.get(k), int, f"{where}.{key}[{i}].{k}")
            if value < 0:
                raise ConfigError(f"{where}.{key}[{i}].{k}", "is negative")
            if value > 2**32 - 1:
                raise ConfigError(f"{where}.{key}[{i}].{k}", f"{_number(value)} is out of range (ids are 32 bits)")
            values.append(value)
        out.append(IdMapping(values[0], values[1], values[2]))
    return out


_HOOKS = frozenset(HOOK_KINDS)
_HOOK = names("path", "args", "env", "timeout")


def parse_hooks(value: Any) -> Hooks:
    """config.json `hooks` (also read back from state.json by start and delete)."""
    out = Hooks()
    if value is None:
        return out
    hooks = _obj(value, "hooks", _HOOKS)
    for kind in HOOK_KINDS:
        entries = []
        for i, hook in enumerate(_expect(hooks.get(kind) or [], list, f"hooks.{kind}")):
            where = f"hooks.{kind}[{i}]"
            hook = _obj(hook, where, _HOOK)
            path = _expect(hook.get("path"), str, f"{where}.path")
            if not path.startswith("/"):
                raise ConfigError(f"{where}.path", f"{path!r} must be absolute")
            args = _str_list(hook.get("args") or [], f"{where}.args")
            env = hook.get("env")
            _str_list(env or [], f"{where}.env")
            timeout = _optional(hook, "timeout", int, where)
            if timeout is not None and not 0 < timeout <= 2**31 - 1:
                raise ConfigError(f"{where}.timeout", f"{_number(timeout)} must be greater than zero (seconds)"
                                  if timeout <= 0 else f"{_number(timeout)} seconds is out of range")  # fmt: skip
            entries.append(Hook(path, args or [path], env, timeout))
        if entries:
            out.by_kind[kind] = entries
    return out


_LINUX = names("namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "netDevices", "cgroupsPath",
                "rootfsPropagation", "resources", "intelRdt", "sysctl", "seccomp", "maskedPaths", "readonlyPaths",
                "mountLabel", "personality", "memoryPolicy")  # fmt: skip
_NAMESPACE = names("type", "path")
_DEVICE = names("type", "path", "major", "minor", "fileMode", "uid", "gid")
_NET_DEVICE = names("name")
_OFFSET = names("secs", "nanosecs")
_INTEL_RDT = names("closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring")
_PERSONALITY = names("domain", "flags")
_MEMPOLICY = names("mode", "nodes", "flags")
_PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")


def _linux(value: Any, domainname: str, resources: bool) -> Linux:
    linux = _obj(value, "linux", _LINUX)
    out = Linux()
    seen: set[str] = set()
    for i, ns in enumerate(_expect(linux.get("namespaces") or [], list, "linux.namespaces")):
        where = f"linux.namespaces[{i}]"
        ns = _obj(ns, where, _NAMESPACE)
        kind = _expect(ns.get("type"), str, f"{where}.type")
        if kind not in NAMESPACES:
            raise ConfigError(f"{where}.type", f"unknown namespace type {kind!r}")
        if kind in seen:  # config-linux.md: "No duplication is allowed."
            raise ConfigError(f"{where}.type", f"namespace {kind} is listed twice")
        seen.add(kind)
        out.namespaces.append(Namespace(kind, _optional(ns, "path", str, where) or "", i))
    out.uid_mappings = _id_mappings(linux, "uidMappings", "linux")
    out.gid_mappings = _id_mappings(linux, "gidMappings", "linux")
    if bool(out.uid_mappings) != bool(out.gid_mappings):
        raise ConfigError("linux.uidMappings", "uidMappings and gidMappings must be given together")
    if out.uid_mappings and "user" not in seen:
        raise ConfigError("linux.uidMappings", "mappings need a user namespace")
    for key in ("maskedPaths", "readonlyPaths"):
        paths = _str_list(linux.get(key) or [], f"linux.{key}")
        for i, path in enumerate(paths):
            if not path.startswith("/"):
                raise ConfigError(f"linux.{key}[{i}]", f"{path!r} must be absolute")
        if paths and "mount" not in seen:
            raise ConfigError(f"linux.{key}", "masking or making paths read-only needs a mount namespace")
    out.masked_paths = linux.get("maskedPaths") or []
    out.readonly_paths = linux.get("readonlyPaths") or []
    out.mount_label = _optional(linux, "mountLabel", str, "linux") or ""
    sysctl = _expect(linux.get("sysctl") or {}, dict, "linux.sysctl")
    for key, value in sysctl.items():
        _expect(value, str, f"linux.sysctl.{key}")
        check_sysctl(key, seen, domainname)
    out.sysctl = sysctl
    for i, dev in enumerate(_expect(linux.get("devices") or [], list, "linux.devices")):
        out.devices.append(_device(dev, f"linux.devices[{i}]"))
    cgroups_path = _optional(linux, "cgroupsPath", str, "linux") or ""
    if cgroups_path:
        if ".." in cgroups_path.split("/"):
            raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r} must not contain '..'")
        if "\0" in cgroups_path or "\n" in cgroups_path:
            raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r} contains a NUL or newline")
        if not any(p and p != "." for p in cgroups_path.split("/")):
            raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r} names the root cgroup")
    out.cgroups_path = cgroups_path
    if _optional(linux, "resources", dict, "linux") is not None and resources:
        from ocipy.spec.resources import parse_resources

        out.resources = parse_resources(linux["resources"])
    if _optional(linux, "seccomp", dict, "linux"):  # an empty object: no filter
        from ocipy.spec.seccomp import parse_seccomp  # only with a filter: the import is not free

        out.seccomp = parse_seccomp(linux["seccomp"])
    if linux.get("intelRdt") is not None:
        _obj(linux["intelRdt"], "linux.intelRdt", _INTEL_RDT)
    net_devices = _expect(linux.get("netDevices") or {}, dict, "linux.netDevices")
    for name, dev in net_devices.items():
        dev = _obj(dev, f"linux.netDevices.{name}", _NET_DEVICE)
        out.net_devices[name] = _optional(dev, "name", str, f"linux.netDevices.{name}") or name
    offsets = _expect(linux.get("timeOffsets") or {}, dict, "linux.timeOffsets")
    for clock, offset in offsets.items():
        offset = _obj(offset, f"linux.timeOffsets.{clock}", _OFFSET)
        try:
            out.time_offsets[clock] = (int(offset.get("secs", 0)), int(offset.get("nanosecs", 0)))
        except (TypeError, ValueError):
            raise ConfigError(f"linux.timeOffsets.{clock}", "secs and nanosecs must be integers") from None
    policy = linux.get("memoryPolicy")
    if policy is not None:
        policy = _obj(policy, "linux.memoryPolicy", _MEMPOLICY)
        if policy.get("mode") not in MEMPOLICY_MODES:
            raise ConfigError("linux.memoryPolicy.mode", f"{policy.get('mode')!r} is not one of {', '.join(MEMPOLICY_MODES)}")
        mode = MEMPOLICY_MODES[policy["mode"]]
        for i, flag in enumerate(_str_list(policy.get("flags") or [], "linux.memoryPolicy.flags")):
            if flag not in MEMPOLICY_FLAGS:
                raise ConfigError(f"linux.memoryPolicy.flags[{i}]", f"unknown flag {flag!r}")
            mode |= MEMPOLICY_FLAGS[flag]
        nodes = _optional(policy, "nodes", str, "linux.memoryPolicy") or ""
        if nodes and parse_id_list(nodes) is None:
            raise ConfigError("linux.memoryPolicy.nodes", f"{nodes!r} is not a list like 0-3,7")
        out.memory_policy = MemoryPolicy(policy["mode"], mode, nodes)
    personality = linux.get("personality")
    if personality is not None:
        personality = _obj(personality, "linux.personality", _PERSONALITY)
        if personality.get("domain") not in PERSONALITY_DOMAINS:
            raise ConfigError("linux.personality.domain", f"{personality.get('domain')!r} is not LINUX or LINUX32")
        if personality.get("flags"):
            raise ConfigError("linux.personality.flags", "no personality flags are supported")
        out.personality = PERSONALITY_DOMAINS[personality["domain"]]
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in _PROPAGATIONS:
        raise ConfigError("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    out.rootfs_propagation = prop or ""
    return out


def _device(value: Any, where: str) -> Device:
    dev = _obj(value, where, _DEVICE)
    path = _expect(dev.get("path"), str, f"{where}.path")
    if not path.startswith("/"):
        raise ConfigError(f"{where}.path", f"{path!r} must be absolute")
    if not path.strip("/") or all(p in ("", ".", "..") for p in path.split("/")):
        # anywhere in the rootfs (runc makes /mydev/x too), but not the rootfs itself
        raise ConfigError(f"{where}.path", f"{path!r} is not a valid device path")
    kind = dev.get("type")
    if kind not in ("c", "b", "u", "p"):
        raise ConfigError(f"{where}.type", f"{kind!r} is not one of c, b, u, p")
    if kind != "p":
        _expect(dev.get("major"), int, f"{where}.major")
        _expect(dev.get("minor"), int, f"{where}.minor")
    return Device(path, kind, dev.get("major", 0), dev.get("minor", 0), dev.get("fileMode"),
                  dev.get("uid", 0), dev.get("gid", 0))  # fmt: skip
