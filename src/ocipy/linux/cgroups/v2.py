"""cgroup v2: write linux.resources into one directory of the unified hierarchy; read stats.

v1-shaped values are converted as runc converts them (cpu.shares -> cpu.weight,
blkio weight -> io.weight, memory+swap -> memory.swap.max); what cannot be
converted is an error naming the field.
"""

from __future__ import annotations

from ocipy.errors import ConfigError
from ocipy.linux.cgroups.common import (
    exists,
    read_int,
    read_keyed,
    read_opt,
    set_hugetlb_limits,
    write,
)

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.resources import BlockIO, Cpu, Memory


def _max(v: int) -> str:
    return "max" if v == -1 else str(v)


def shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000] (runc's linear mapping)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio weight [10, 1000] -> io.weight [1, 10000]."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_value(swap: int, limit: int) -> int | None:
    """OCI swap is memory+swap; v2's memory.swap.max is swap alone. None: leave unset."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap if swap == -1 else None
    if limit in (0, -1):
        raise ConfigError("linux.resources.memory.swap", "cannot set a swap limit without a memory limit")
    if swap < limit:
        raise ConfigError("linux.resources.memory.swap", f"memory+swap limit {swap} must be >= the memory limit {limit}")
    return swap - limit


def set_memory(d: str, mem: Memory) -> None:
    w = "linux.resources.memory"
    limit = mem.limit or 0
    swap = mem.swap or 0
    if mem.swappiness not in (None, -1):
        raise ConfigError(f"{w}.swappiness", "not supported on cgroup v2")
    if mem.disable_oom_killer:
        raise ConfigError(f"{w}.disableOOMKiller", "the OOM killer cannot be disabled on cgroup v2")
    if mem.use_hierarchy is False:
        raise ConfigError(f"{w}.useHierarchy", "cgroup v2 is always hierarchical")
    # kernel / kernelTCP: cgroup v2 has no separate kernel memory limits; runc ignores them.
    sv = swap_value(swap, limit)
    if mem.check_before_update and limit > 0:
        usage = read_int(d, "memory.current")
        if limit < usage:
            raise ConfigError(f"{w}.limit", f"{limit} is below the current usage {usage} (checkBeforeUpdate)")
    if sv is not None:
        if not exists(d, "memory.swap.max"):
            if sv not in (-1, 0):
                raise ConfigError(f"{w}.swap", "swap accounting is not enabled (no memory.swap.max)")
        else:
            write(d, "memory.swap.max", _max(sv))
    if limit:
        write(d, "memory.max", _max(limit))
    if mem.reservation:
        write(d, "memory.low", _max(mem.reservation))


def set_cpu(d: str, cpu: Cpu) -> None:
    w = "linux.resources.cpu"
    if cpu.realtime_runtime or cpu.realtime_period:
        raise ConfigError(f"{w}.realtimeRuntime", "realtime scheduling limits are not supported on cgroup v2")
    if cpu.shares:
        write(d, "cpu.weight", shares_to_weight(cpu.shares))
    quota, period = cpu.quota, cpu.period
    if quota or period:
        q = "max" if not quota or quota < 0 else str(quota)
        if not period:
            current = (read_opt(d, "cpu.max") or "max 100000").split()
            period = int(current[1]) if len(current) == 2 else 100000
        if not quota:
            current = (read_opt(d, "cpu.max") or "max").split()
            q = current[0] if current else "max"
        write(d, "cpu.max", f"{q} {period}")
    if cpu.burst is not None:
        write(d, "cpu.max.burst", cpu.burst)
    if cpu.idle is not None:
        write(d, "cpu.idle", cpu.idle)


def set_cpuset(d: str, cpu: Cpu) -> None:
    if cpu.cpus:
        write(d, "cpuset.cpus", cpu.cpus)
    if cpu.mems:
        write(d, "cpuset.mems", cpu.mems)


def set_pids(d: str, limit: int | None) -> None:
    if limit is not None:
        write(d, "pids.max", "max" if limit < 0 else limit)


def set_io(d: str, bio: BlockIO) -> None:
    w = "linux.resources.blockIO"
    if bio.leaf_weight:
        raise ConfigError(f"{w}.leafWeight", "not supported on cgroup v2")
    bfq = exists(d, "io.bfq.weight")
    if bio.weight:
        if bfq:
            write(d, "io.bfq.weight", bio.weight)
        else:
            write(d, "io.weight", f"default {blkio_to_io_weight(bio.weight)}")
    for i, dev in enumerate(bio.weight_device):
        if dev.leaf_weight:
            raise ConfigError(f"{w}.weightDevice[{i}].leafWeight", "not supported on cgroup v2")
        if dev.weight is None:
            continue
        if bfq:
            write(d, "io.bfq.weight", f"{dev.major}:{dev.minor} {dev.weight}")
        else:
            write(d, "io.weight", f"{dev.major}:{dev.minor} {blkio_to_io_weight(dev.weight)}")
    for key, knob in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for tdev in bio.throttle.get(key) or []:
            rate = tdev.rate
            write(d, "io.max", f"{tdev.major}:{tdev.minor} {knob}={'max' if rate == 0 else rate}")


set_blkio = set_io  # the v1 name, which Manager.set calls for either version


def set_hugetlb(d: str, pages: list[tuple[str, int]]) -> None:
    set_hugetlb_limits(d, pages, "max")


def set_rdma(d: str, rdma: dict[str, tuple[int | None, int | None]]) -> None:
    from ocipy.linux.cgroups import v1

    v1.set_rdma(d, rdma)


def set_unified(d: str, unified: dict[str, str], enabled: set[str]) -> None:
    """config-linux.md "Unified": write every key; a controller that is not present
    or cannot be enabled MUST be an error."""
    for key, value in unified.items():
        controller = key.split(".", 1)[0]
        if controller != "cgroup" and controller not in enabled:
            raise ConfigError(f"linux.resources.unified[{key!r}]",
                              f"the {controller} controller is not available in this cgroup")
        if not exists(d, key):
            raise ConfigError(f"linux.resources.unified[{key!r}]", f"no such cgroup file in {d}")
        write(d, key, value)


# --- stats ------------------------------------------------------------------------------

def cpu_stats(d: str) -> dict[str, Any]:
    from ocipy.linux.cgroups.v1 import cpu_usage, throttling

    st = read_keyed(d, "cpu.stat")
    return {"usage": cpu_usage(st.get("usage_usec", 0) * 1000, None, None, None, st.get("system_usec", 0) * 1000,
                               st.get("user_usec", 0) * 1000),
            "throttling": throttling(st.get("nr_periods", 0), st.get("nr_throttled", 0),
                                     st.get("throttled_usec", 0) * 1000)}


def memory_stats(d: str) -> dict[str, Any]:
    raw = read_keyed(d, "memory.stat")
    events = read_keyed(d, "memory.events")
    current = read_int(d, "memory.current")
    usage: dict[str, int] = {"limit": read_int(d, "memory.max")}
    if current:
        usage["usage"] = current
    peak = read_int(d, "memory.peak")
    if peak:
        usage["max"] = peak
    usage["failcnt"] = events.get("max", 0)
    swap: dict[str, int] = {"limit": 0}
    if exists(d, "memory.swap.current"):
        # v1 reports memory+swap; do the same for compatibility (as runc does)
        swap_total = read_int(d, "memory.swap.current") + current
        sl = read_int(d, "memory.swap.max")
        ml = usage["limit"]
        swap["limit"] = sl + ml if sl and ml else 0
        if swap_total:
            swap["usage"] = swap_total
    swap["failcnt"] = read_keyed(d, "memory.swap.events").get("max", 0)
    out: dict[str, Any] = {}
    if raw.get("file"):
        out["cache"] = raw["file"]
    out.update({"usage": usage, "swap": swap, "kernel": {"limit": 0, "failcnt": 0},
                "kernelTCP": {"limit": 0, "failcnt": 0}})
    if raw:
        out["raw"] = dict(sorted(raw.items()))
    return out


def pids_stats(d: str) -> dict[str, int]:
    out: dict[str, int] = {}
    cur = read_int(d, "pids.current")
    lim = read_int(d, "pids.max")
    if cur:
        out["current"] = cur
    if lim:
        out["limit"] = lim
    return out


def io_stats(d: str) -> dict[str, Any]:
    """io.stat lines ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") in runc's blkio shape."""
    by: list[dict[str, Any]] = []
    ios: list[dict[str, Any]] = []
    for line in (read_opt(d, "io.stat") or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, target in (("rbytes", "Read", by), ("wbytes", "Write", by),
                                ("rios", "Read", ios), ("wios", "Write", ios)):
            if key in kv:
                e: dict[str, Any] = {"op": op}
                if int(major):
                    e["major"] = int(major)
                if int(minor):
                    e["minor"] = int(minor)
                if int(kv[key]):
                    e["value"] = int(kv[key])
                target.append(e)
    out: dict[str, Any] = {}
    if by:
        out["ioServiceBytesRecursive"] = by
    if ios:
        out["ioServicedRecursive"] = ios
    return out


def hugetlb_stats(d: str, sizes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        e: dict[str, int] = {}
        u = read_int(d, f"hugetlb.{size}.current")
        if u:
            e["usage"] = u
        e["failcnt"] = read_keyed(d, f"hugetlb.{size}.events").get("max", 0)
        out[size] = e
    return out
