"""linux.resources parsed: what the cgroup manager writes (linux/cgroups).

Part of the one parse of config.json (spec/config.py calls `parse_resources`
for linux.resources), and the parse of `update -r`'s document.  Keys are
folded in place (spec/keys.py), every value checked without the kernel;
what the host's cgroups refuse is reported by the writers.  Messages keep
this section's own wording ("must be an integer, not ...", "is out of
range"), which tools and tests read.
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.spec.keys import fold, fold_entry, names
from ocipy.spec.runtime import parse_id_list

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


W = "linux.resources"  # the section's path, for messages
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1


def _int(obj: dict[str, Any], key: str, where: str, lo: int | None = None, hi: int | None = None) -> int | None:
    """obj[key] as an int within [lo, hi], None if absent; ConfigError otherwise."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}", f"must be an integer, not {value!r}")
    assert isinstance(value, int)
    if lo is not None and value < lo:
        raise ConfigError(f"{where}.{key}", f"{value} is out of range (minimum {lo})")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}.{key}", f"{value} is out of range (maximum {hi})")
    return value


def _want_bool(obj: dict[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}", f"must be true or false, not {value!r}")
    return value


def _want(obj: dict[str, Any], key: str, where: str, kind: type, names: frozenset[str] | None = None) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}", f"must be {'an object' if kind is dict else 'an array'}, "
                                            f"not {type(value).__name__}")  # fmt: skip
    return fold(value, names) if names is not None and isinstance(value, dict) else value


class Memory:
    __slots__ = ("limit", "reservation", "swap", "kernel", "kernel_tcp", "swappiness", "disable_oom_killer",
                 "use_hierarchy", "check_before_update")  # fmt: skip

    def __init__(self) -> None:
        self.limit: int | None = None
        self.reservation: int | None = None
        self.swap: int | None = None
        self.kernel: int | None = None
        self.kernel_tcp: int | None = None
        self.swappiness: int | None = None
        self.disable_oom_killer: bool | None = None
        self.use_hierarchy: bool | None = None
        self.check_before_update: bool | None = None

    def any_set(self) -> bool:
        return any(getattr(self, name) is not None for name in Memory.__slots__)


class Cpu:
    __slots__ = ("shares", "quota", "burst", "period", "realtime_runtime", "realtime_period", "cpus", "mems", "idle")

    def __init__(self) -> None:
        self.shares: int | None = None
        self.quota: int | None = None
        self.burst: int | None = None
        self.period: int | None = None
        self.realtime_runtime: int | None = None
        self.realtime_period: int | None = None
        self.idle: int | None = None
        self.cpus = ""
        self.mems = ""


class WeightDevice:
    __slots__ = ("major", "minor", "weight", "leaf_weight")

    def __init__(self, major: int, minor: int, weight: int | None, leaf_weight: int | None) -> None:
        self.major, self.minor, self.weight, self.leaf_weight = major, minor, weight, leaf_weight


class ThrottleDevice:
    __slots__ = ("major", "minor", "rate")

    def __init__(self, major: int, minor: int, rate: int) -> None:
        self.major, self.minor, self.rate = major, minor, rate


class BlockIO:
    __slots__ = ("weight", "leaf_weight", "weight_device", "throttle")

    def __init__(self) -> None:
        self.weight: int | None = None
        self.leaf_weight: int | None = None
        self.weight_device: list[WeightDevice] = []
        self.throttle: dict[str, list[ThrottleDevice]] = {}  # "throttleReadBpsDevice", ... -> devices

    def any_set(self) -> bool:
        return self.weight is not None or self.leaf_weight is not None or bool(self.weight_device) or any(
            self.throttle.values())


class Network:
    __slots__ = ("class_id", "priorities")

    def __init__(self) -> None:
        self.class_id: int | None = None
        self.priorities: list[tuple[str, int]] = []


Rule = tuple[bool, str, int, int, str]  # a device rule: (allow, type a/c/b, major, minor, access); -1 = any


class Resources:
    """linux.resources (also `update`'s document); None/empty where unset."""

    __slots__ = ("memory", "cpu", "pids_limit", "block_io", "hugepage_limits", "network", "rdma", "devices",
                 "unified")  # fmt: skip

    def __init__(self) -> None:
        self.memory: Memory | None = None
        self.cpu: Cpu | None = None
        self.pids_limit: int | None = None
        self.block_io: BlockIO | None = None
        self.hugepage_limits: list[tuple[str, int]] = []  # (page size like "2MB", limit)
        self.network: Network | None = None
        self.rdma: dict[str, tuple[int | None, int | None]] = {}  # device -> (hcaHandles, hcaObjects)
        self.devices: list[Rule] | None = None  # None: not given
        self.unified: dict[str, str] = {}


_RESOURCES = names("devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "unified")
_MEMORY = names("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
                 "useHierarchy", "checkBeforeUpdate")  # fmt: skip
_CPU = names("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle")
_PIDS = names("limit")
_BLKIO = names("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice")  # fmt: skip
_THROTTLES = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice")
_WEIGHT_DEVICE = names("major", "minor", "weight", "leafWeight")
_DEV_RATE = names("major", "minor", "rate")
_HUGEPAGE = names("pageSize", "limit")
_NETWORK = names("classID", "priorities")
_PRIORITY = names("name", "priority")
_RDMA = names("hcaHandles", "hcaObjects")
_DEVICE_RULE = names("allow", "type", "major", "minor", "access")


def parse_resources(value: Any, where: str = W) -> Resources:
    """linux.resources: keys folded in place, every value checked (no kernel needed)."""
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be an object, not {type(value).__name__}")
    res = fold(value, _RESOURCES)
    out = Resources()
    mem = _want(res, "memory", where, dict, _MEMORY)
    if mem is not None:
        out.memory = _memory(mem, f"{where}.memory")
    cpu = _want(res, "cpu", where, dict, _CPU)
    if cpu is not None:
        out.cpu = _cpu(cpu, f"{where}.cpu")
    pids = _want(res, "pids", where, dict, _PIDS)
    if pids is not None:
        # config-linux.md: -1 means no limit; 0 is a valid limit
        out.pids_limit = _int(pids, "limit", f"{where}.pids", -1, INT64_MAX)
    bio = _want(res, "blockIO", where, dict, _BLKIO)
    if bio is not None:
        out.block_io = _block_io(bio, f"{where}.blockIO")
    for i, entry in enumerate(_want(res, "hugepageLimits", where, list) or []):
        w = f"{where}.hugepageLimits[{i}]"
        entry = fold_entry(entry, w, _HUGEPAGE)
        size = entry.get("pageSize")
        if not isinstance(size, str) or split_page_size(size) is None:
            raise ConfigError(f"{w}.pageSize", f"{size!r} is not a size like '2MB' or '1GB'")
        limit = _int(entry, "limit", w, 0, UINT64_MAX)
        if limit is None:
            raise ConfigError(f"{w}.limit", "is required")
        out.hugepage_limits.append((size, limit))
    net = _want(res, "network", where, dict, _NETWORK)
    if net is not None:
        out.network = _network(net, f"{where}.network")
    for dev, limits in (_want(res, "rdma", where, dict) or {}).items():
        w = f"{where}.rdma[{dev!r}]"
        if not isinstance(limits, dict) or not _is_iface(dev):
            raise ConfigError(w, "must be an object keyed by a device name")
        fold(limits, _RDMA)
        a = _int(limits, "hcaHandles", w, 0, UINT32_MAX)
        b = _int(limits, "hcaObjects", w, 0, UINT32_MAX)
        if a is None and b is None:
            raise ConfigError(w, "needs hcaHandles or hcaObjects")
        out.rdma[dev] = (a, b)
    devices = _want(res, "devices", where, list)
    if devices is not None:
        out.devices = parse_device_rules(devices, f"{where}.devices")
    unified = _want(res, "unified", where, dict)
    for k, v in (unified or {}).items():
        w = f"{where}.unified[{k!r}]"
        if not isinstance(v, str):
            raise ConfigError(w, f"value must be a string, not {v!r}")
        if not k or "/" in k or k.startswith(".") or "\0" in k or "." not in k:
            raise ConfigError(w, "must name a file of the cgroup directory (like 'memory.high')")
    out.unified = unified or {}
    return out


def _memory(mem: dict[str, Any], w: str) -> Memory:
    out = Memory()
    out.limit = limit = _int(mem, "limit", w, -1, INT64_MAX)
    out.reservation = _int(mem, "reservation", w, -1, INT64_MAX)
    out.swap = swap = _int(mem, "swap", w, -1, INT64_MAX)
    out.kernel = _int(mem, "kernel", w, -1, INT64_MAX)
    out.kernel_tcp = _int(mem, "kernelTCP", w, -1, INT64_MAX)
    sw = mem.get("swappiness")
    # swappiness is uint64 in the spec; runc treats -1 as "unset"
    if sw is not None and sw != -1:
        _int(mem, "swappiness", w, 0, 100)
    out.swappiness = sw
    out.disable_oom_killer = _want_bool(mem, "disableOOMKiller", w)
    out.use_hierarchy = _want_bool(mem, "useHierarchy", w)
    out.check_before_update = _want_bool(mem, "checkBeforeUpdate", w)
    if limit and swap and limit > 0 and 0 < swap < limit:
        raise ConfigError(f"{w}.swap", f"memory+swap limit {swap} must be >= the memory limit {limit}")
    return out


def _cpu(cpu: dict[str, Any], w: str) -> Cpu:
    out = Cpu()
    out.shares = shares = _int(cpu, "shares", w, 0, 262144)
    if shares is not None and 0 < shares < 2:
        raise ConfigError(f"{w}.shares", f"{shares} is out of range (minimum 2)")
    out.quota = quota = _int(cpu, "quota", w, -1, INT64_MAX)
    out.period = period = _int(cpu, "period", w, 0, 1_000_000)
    if period is not None and 0 < period < 1000:
        raise ConfigError(f"{w}.period", f"{period} is out of range (1000..1000000 microseconds)")
    out.burst = burst = _int(cpu, "burst", w, 0, INT64_MAX)
    # config-linux.md: a positive quota MUST be no smaller than burst
    if burst and quota is not None and quota > 0 and burst > quota:
        raise ConfigError(f"{w}.burst", f"{burst} must not be larger than quota {quota}")
    if burst and (quota is None or quota <= 0):
        raise ConfigError(f"{w}.burst", "needs a positive quota")
    out.realtime_runtime = _int(cpu, "realtimeRuntime", w, -1, INT64_MAX)
    out.realtime_period = _int(cpu, "realtimePeriod", w, 0, INT64_MAX)
    out.idle = _int(cpu, "idle", w, 0, 1)
    for key in ("cpus", "mems"):
        v = cpu.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str) or parse_id_list(v) is None:
            raise ConfigError(f"{w}.{key}", f"{v!r} is not a list like '0-3,7'")
        setattr(out, key, v)
    return out


def _block_io(bio: dict[str, Any], w: str) -> BlockIO:
    out = BlockIO()
    out.weight = weight = _int(bio, "weight", w, 0, 1000)
    if weight and weight < 10:
        raise ConfigError(f"{w}.weight", f"{weight} is out of range (10..1000)")
    out.leaf_weight = leaf = _int(bio, "leafWeight", w, 0, 1000)
    if leaf and leaf < 10:
        raise ConfigError(f"{w}.leafWeight", f"{leaf} is out of range (10..1000)")
    for i, dev in enumerate(_want(bio, "weightDevice", w, list) or []):
        where = f"{w}.weightDevice[{i}]"
        dev = fold_entry(dev, where, _WEIGHT_DEVICE)
        major, minor = _major_minor(dev, where)
        wt = _int(dev, "weight", where, 0, 1000)
        lw = _int(dev, "leafWeight", where, 0, 1000)
        if wt is None and lw is None:
            raise ConfigError(where, "needs weight or leafWeight")
        for name, val in (("weight", wt), ("leafWeight", lw)):
            if val and val < 10:
                raise ConfigError(f"{where}.{name}", f"{val} is out of range (10..1000)")
        out.weight_device.append(WeightDevice(major, minor, wt, lw))
    for key in _THROTTLES:
        devs = []
        for i, dev in enumerate(_want(bio, key, w, list) or []):
            where = f"{w}.{key}[{i}]"
            dev = fold_entry(dev, where, _DEV_RATE)
            major, minor = _major_minor(dev, where)
            rate = _int(dev, "rate", where, 0, UINT64_MAX)
            if rate is None:
                raise ConfigError(f"{where}.rate", "is required")
            devs.append(ThrottleDevice(major, minor, rate))
        if devs:
            out.throttle[key] = devs
    return out


def _major_minor(dev: dict[str, Any], where: str) -> tuple[int, int]:
    out = []
    for k in ("major", "minor"):
        value = _int(dev, k, where, 0, UINT32_MAX)
        if value is None:
            raise ConfigError(f"{where}.{k}", "is required")
        out.append(value)
    return out[0], out[1]


def _network(net: dict[str, Any], w: str) -> Network:
    out = Network()
    out.class_id = _int(net, "classID", w, 0, UINT32_MAX)
    for i, p in enumerate(_want(net, "priorities", w, list) or []):
        where = f"{w}.priorities[{i}]"
        p = fold_entry(p, where, _PRIORITY)
        name = p.get("name")
        if not isinstance(name, str) or not _is_iface(name):
            raise ConfigError(f"{where}.name", f"{name!r} is not an interface name")
        priority = _int(p, "priority", where, 0, UINT32_MAX)
        if priority is None:
            raise ConfigError(f"{where}.priority", "is required")
        out.priorities.append((name, priority))
    return out


def parse_device_rules(entries: list[Any], where: str = f"{W}.devices") -> list[Rule]:
    """linux.resources.devices as rules, in order (config-linux.md "Allowed Device list")."""
    rules: list[Rule] = []
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        e = fold_entry(e, w, _DEVICE_RULE)
        allow = e.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError(f"{w}.allow", "is required and must be true or false")
        typ = e.get("type") or "a"
        if typ not in ("a", "c", "b", "u", "p"):
            raise ConfigError(f"{w}.type", f"{typ!r} is not a, c or b")
        if typ in ("u", "p"):  # unbuffered char device / fifo: the kernel's "c" class
            typ = "c"
        nums = []
        for k in ("major", "minor"):
            v = e.get(k)
            if v is None:
                nums.append(-1)
            elif isinstance(v, bool) or not isinstance(v, int) or v < -1 or v > 0xFFFFFFFF:
                raise ConfigError(f"{w}.{k}", f"{v!r} is not a device number")
            else:
                nums.append(v)
        access = e.get("access")
        if access is None or access == "":
            access = "rwm"
        if not isinstance(access, str):
            raise ConfigError(f"{w}.access", f"must be a string of r, w and m, not {access!r}")
        # As runc: letters other than r, w and m are ignored ("rwa" is "rw"), but
        # a string with none of them grants or denies nothing and is refused.
        access = "".join(ch for ch in "rwm" if ch in access)
        if not access:
            raise ConfigError(f"{w}.access", f"{e.get('access')!r} has none of r, w and m")
        rules.append((allow, typ, nums[0], nums[1], access))
    return rules


# Hand-written matchers: `re` costs ~7 ms of every create's start-up.


def split_page_size(size: str) -> tuple[str, str] | None:
    """"2MB" -> ("2", "M"); None if it is not NUMBER[KMGT]B."""
    if not size.endswith("B"):
        return None
    body = size[:-1]
    unit = body[-1:] if body[-1:] in ("K", "M", "G", "T") else ""
    number = body[: len(body) - len(unit)]
    return (number, unit) if number.isdigit() and number.isascii() else None


def _is_iface(name: str) -> bool:
    return 1 <= len(name) <= 15 and not any(c.isspace() or c in "/:" for c in name)
