"""Check ``linux.resources`` before anything is created or written.

Everything that can be decided without the kernel is decided here, so a bad
config fails with a :class:`ConfigError` naming the field and leaves no
cgroup behind.  Values the kernel later refuses are reported by the writers
(file and value named).
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.linux.cgroups.common import (
    INT64_MAX,
    UINT16_MAX,
    UINT32_MAX,
    want_bool,
    want_dict,
    want_int,
    want_list,
)
from ocipy.spec.keys import fold_key  # one folding rule for every config key
from ocipy.spec.runtime import parse_id_list

W = "linux.resources"

KNOWN = ("memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma", "devices", "unified")

# The shape of linux.resources (runtime-spec specs-go LinuxResources), for `canonical`:
# a dict is an object with these fields, a list an array of that, ("map", x) an
# object whose keys are data (device names, file names) and whose values are x,
# None a value.
_DEV_RATE = {"major": None, "minor": None, "rate": None}
_SHAPE: dict[str, object] = {
    "devices": [{"allow": None, "type": None, "major": None, "minor": None, "access": None}],
    "memory": {k: None for k in ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
                                 "disableOOMKiller", "useHierarchy", "checkBeforeUpdate")},
    "cpu": {k: None for k in ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod",
                              "cpus", "mems", "idle")},
    "pids": {"limit": None},
    "blockIO": {"weight": None, "leafWeight": None,
                "weightDevice": [{"major": None, "minor": None, "weight": None, "leafWeight": None}],
                "throttleReadBpsDevice": [_DEV_RATE], "throttleWriteBpsDevice": [_DEV_RATE],
                "throttleReadIOPSDevice": [_DEV_RATE], "throttleWriteIOPSDevice": [_DEV_RATE]},
    "hugepageLimits": [{"pageSize": None, "limit": None}],
    "network": {"classID": None, "priorities": [{"name": None, "priority": None}]},
    "rdma": ("map", {"hcaHandles": None, "hcaObjects": None}),
    "unified": ("map", None),
}




def _canon(value: object, shape: object) -> object:
    if shape is None:
        return value
    if isinstance(shape, list):
        return [_canon(v, shape[0]) for v in value] if isinstance(value, list) else value
    if isinstance(shape, tuple):
        return {k: _canon(v, shape[1]) for k, v in value.items()} if isinstance(value, dict) else value
    assert isinstance(shape, dict)
    if not isinstance(value, dict):
        return value
    folded = {fold_key(k): k for k in shape}
    out: dict[str, object] = {}
    for key, v in value.items():
        name = key if key in shape else folded.get(fold_key(key))
        if name is None:
            continue  # config.md "Extensibility": unknown properties MUST be ignored
        v = _canon(v, shape[name])
        old = out.get(name)
        # Go decodes a repeated (or differently cased) object key into the same struct
        out[name] = {**old, **v} if isinstance(old, dict) and isinstance(v, dict) else v
    return out


def canonical(resources: object) -> object:
    """linux.resources with each key spelled as the spec spells it, matched as
    runc's JSON decoding matches them (configs in the wild write ``CPU`` and
    ``Cpus``); unknown properties dropped.  Keys that are data (unified file
    names, rdma device names) are kept as written.  Anything that is not an
    object is returned as is, for `validate` to report."""
    return _canon(resources, _SHAPE)

# Hand-written matchers: `re` costs ~7 ms of every create's start-up.


def _split_page_size(size: str) -> tuple[str, str] | None:
    """"2MB" -> ("2", "M"); None if it is not NUMBER[KMGT]B."""
    if not size.endswith("B"):
        return None
    body = size[:-1]
    unit = body[-1:] if body[-1:] in ("K", "M", "G", "T") else ""
    number = body[: len(body) - len(unit)]
    return (number, unit) if number.isdigit() and number.isascii() else None


def _is_iface(name: str) -> bool:
    return 1 <= len(name) <= 15 and not any(c.isspace() or c in "/:" for c in name)


def controllers_needed(resources: dict[str, object]) -> set[str]:
    """The (v1-named) controllers that `resources` sets; validates on the way."""
    validate(resources)
    need: set[str] = set()
    mem = resources.get("memory")
    if isinstance(mem, dict) and any(v is not None for v in mem.values()):
        need.add("memory")
    cpu = resources.get("cpu")
    if isinstance(cpu, dict):
        if any(cpu.get(k) is not None for k in ("shares", "quota", "period", "burst", "realtimeRuntime",
                                                 "realtimePeriod", "idle")):
            need.add("cpu")
        if cpu.get("cpus") or cpu.get("mems"):
            need.add("cpuset")
    pids = resources.get("pids")
    if isinstance(pids, dict) and pids.get("limit") is not None:
        need.add("pids")
    bio = resources.get("blockIO")
    if isinstance(bio, dict) and any(v not in (None, []) for v in bio.values()):
        need.add("blkio")
    if resources.get("hugepageLimits"):
        need.add("hugetlb")
    net = resources.get("network")
    if isinstance(net, dict):
        if net.get("classID") is not None:
            need.add("net_cls")
        if net.get("priorities"):
            need.add("net_prio")
    if resources.get("rdma"):
        need.add("rdma")
    return need


def validate(resources: object) -> None:
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise ConfigError(W, f"must be an object, not {type(resources).__name__}")
    _memory(want_dict(resources, "memory", W))
    _cpu(want_dict(resources, "cpu", W))
    pids = want_dict(resources, "pids", W)
    if pids is not None:
        # config-linux.md: -1 means no limit; 0 is a valid limit
        want_int(pids, "limit", f"{W}.pids", -1, INT64_MAX)
    _block_io(want_dict(resources, "blockIO", W))
    _hugepages(want_list(resources, "hugepageLimits", W))
    _network(want_dict(resources, "network", W))
    _rdma(want_dict(resources, "rdma", W))
    from ocipy.linux.cgroups.devices import parse_rules

    devices = want_list(resources, "devices", W)
    if devices is not None:
        parse_rules(devices, f"{W}.devices")
    unified = want_dict(resources, "unified", W)
    if unified is not None:
        for k, v in unified.items():
            where = f"{W}.unified[{k!r}]"
            if not isinstance(v, str):
                raise ConfigError(where, f"value must be a string, not {v!r}")
            if not k or "/" in k or k.startswith(".") or "\0" in k or "." not in k:
                raise ConfigError(where, "must name a file of the cgroup directory (like 'memory.high')")


def _memory(mem: dict[str, object] | None) -> None:
    if mem is None:
        return
    w = f"{W}.memory"
    limit = want_int(mem, "limit", w, -1, INT64_MAX)
    want_int(mem, "reservation", w, -1, INT64_MAX)
    swap = want_int(mem, "swap", w, -1, INT64_MAX)
    want_int(mem, "kernel", w, -1, INT64_MAX)
    want_int(mem, "kernelTCP", w, -1, INT64_MAX)
    sw = mem.get("swappiness")
    # swappiness is uint64 in the spec; runc treats -1 as "unset"
    if sw is not None and sw != -1:
        want_int(mem, "swappiness", w, 0, 100)
    want_bool(mem, "disableOOMKiller", w)
    want_bool(mem, "useHierarchy", w)
    want_bool(mem, "checkBeforeUpdate", w)
    if limit and swap and limit > 0 and 0 < swap < limit:
        raise ConfigError(f"{w}.swap", f"memory+swap limit {swap} must be >= the memory limit {limit}")


def _cpu(cpu: dict[str, object] | None) -> None:
    if cpu is None:
        return
    w = f"{W}.cpu"
    shares = want_int(cpu, "shares", w, 0, 262144)
    if shares is not None and 0 < shares < 2:
        raise ConfigError(f"{w}.shares", f"{shares} is out of range (minimum 2)")
    quota = want_int(cpu, "quota", w, -1, INT64_MAX)
    period = want_int(cpu, "period", w, 0, 1_000_000)
    if period is not None and 0 < period < 1000:
        raise ConfigError(f"{w}.period", f"{period} is out of range (1000..1000000 microseconds)")
    burst = want_int(cpu, "burst", w, 0, INT64_MAX)
    # config-linux.md: a positive quota MUST be no smaller than burst
    if burst and quota is not None and quota > 0 and burst > quota:
        raise ConfigError(f"{w}.burst", f"{burst} must not be larger than quota {quota}")
    if burst and (quota is None or quota <= 0):
        raise ConfigError(f"{w}.burst", "needs a positive quota")
    want_int(cpu, "realtimeRuntime", w, -1, INT64_MAX)
    want_int(cpu, "realtimePeriod", w, 0, INT64_MAX)
    want_int(cpu, "idle", w, 0, 1)
    for key in ("cpus", "mems"):
        v = cpu.get(key)
        if v is None or v == "":
            continue
        if not isinstance(v, str) or parse_id_list(v) is None:
            raise ConfigError(f"{w}.{key}", f"{v!r} is not a list like '0-3,7'")


def _block_io(bio: dict[str, object] | None) -> None:
    if bio is None:
        return
    w = f"{W}.blockIO"
    weight = want_int(bio, "weight", w, 0, 1000)
    if weight and weight < 10:
        raise ConfigError(f"{w}.weight", f"{weight} is out of range (10..1000)")
    leaf = want_int(bio, "leafWeight", w, 0, 1000)
    if leaf and leaf < 10:
        raise ConfigError(f"{w}.leafWeight", f"{leaf} is out of range (10..1000)")
    for i, dev in enumerate(want_list(bio, "weightDevice", w) or []):
        where = f"{w}.weightDevice[{i}]"
        if not isinstance(dev, dict):
            raise ConfigError(where, "must be an object")
        _major_minor(dev, where)
        wt = want_int(dev, "weight", where, 0, 1000)
        lw = want_int(dev, "leafWeight", where, 0, 1000)
        if wt is None and lw is None:
            raise ConfigError(where, "needs weight or leafWeight")
        for name, val in (("weight", wt), ("leafWeight", lw)):
            if val and val < 10:
                raise ConfigError(f"{where}.{name}", f"{val} is out of range (10..1000)")
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                "throttleWriteIOPSDevice"):
        for i, dev in enumerate(want_list(bio, key, w) or []):
            where = f"{w}.{key}[{i}]"
            if not isinstance(dev, dict):
                raise ConfigError(where, "must be an object")
            _major_minor(dev, where)
            if want_int(dev, "rate", where, 0, (1 << 64) - 1) is None:
                raise ConfigError(f"{where}.rate", "is required")


def _major_minor(dev: dict[str, object], where: str) -> None:
    for k in ("major", "minor"):
        if want_int(dev, k, where, 0, UINT32_MAX) is None:
            raise ConfigError(f"{where}.{k}", "is required")


def _hugepages(pages: list[object] | None) -> None:
    for i, entry in enumerate(pages or []):
        where = f"{W}.hugepageLimits[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "must be an object")
        size = entry.get("pageSize")
        if not isinstance(size, str) or _split_page_size(size) is None:
            raise ConfigError(f"{where}.pageSize", f"{size!r} is not a size like '2MB' or '1GB'")
        if want_int(entry, "limit", where, 0, (1 << 64) - 1) is None:
            raise ConfigError(f"{where}.limit", "is required")


def _network(net: dict[str, object] | None) -> None:
    if net is None:
        return
    w = f"{W}.network"
    want_int(net, "classID", w, 0, UINT32_MAX)
    for i, p in enumerate(want_list(net, "priorities", w) or []):
        where = f"{w}.priorities[{i}]"
        if not isinstance(p, dict):
            raise ConfigError(where, "must be an object")
        name = p.get("name")
        if not isinstance(name, str) or not _is_iface(name):
            raise ConfigError(f"{where}.name", f"{name!r} is not an interface name")
        if want_int(p, "priority", where, 0, UINT32_MAX) is None:
            raise ConfigError(f"{where}.priority", "is required")


def _rdma(rdma: dict[str, object] | None) -> None:
    for dev, limits in (rdma or {}).items():
        where = f"{W}.rdma[{dev!r}]"
        if not isinstance(limits, dict) or not _is_iface(dev):
            raise ConfigError(where, "must be an object keyed by a device name")
        a = want_int(limits, "hcaHandles", where, 0, UINT32_MAX)
        b = want_int(limits, "hcaObjects", where, 0, UINT32_MAX)
        if a is None and b is None:
            raise ConfigError(where, "needs hcaHandles or hcaObjects")


def page_size_bytes(size: str) -> int:
    parts = _split_page_size(size)
    assert parts
    return int(parts[0]) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[parts[1]]


_ = UINT16_MAX
