"""cgroup v1: write linux.resources into per-controller directories; read stats.

`dirs` maps a controller name (memory, cpu, cpuset, ...) to the container's
directory in that controller's hierarchy.  Validation already happened
(the parse, spec/config.py); here the kernel may still refuse a value, which is reported
naming the file and the value.
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

    from ocipy.spec.resources import BlockIO, Cpu, Memory, Network


def _limit(v: int) -> str:
    return "-1" if v == -1 else str(v)


def set_memory(d: str, mem: Memory) -> None:
    limit = mem.limit or 0
    swap = mem.swap or 0
    if mem.check_before_update and limit > 0:
        usage = read_int(d, "memory.usage_in_bytes")
        if limit < usage:
            raise ConfigError("linux.resources.memory.limit",
                              f"{limit} is below the current usage {usage} (checkBeforeUpdate)")
    has_memsw = exists(d, "memory.memsw.limit_in_bytes")
    if swap and not has_memsw:
        if swap == -1:
            swap = 0  # unlimited swap where the kernel does not account it: nothing to write
        else:
            raise ConfigError("linux.resources.memory.swap",
                              "swap accounting is not enabled in this kernel (no memory.memsw.limit_in_bytes)")
    if limit == -1 and swap == 0 and has_memsw:
        swap = -1  # as runc: an unlimited memory with no swap given lifts the memory+swap limit too
    if limit and swap:
        # The kernel keeps memory <= memory+swap at every step: write memory+swap first
        # when the current memory limit fits under the new memory+swap, else memory first.
        current = read_int(d, "memory.limit_in_bytes")
        if swap == -1 or current <= swap:
            write(d, "memory.memsw.limit_in_bytes", _limit(swap))
            write(d, "memory.limit_in_bytes", _limit(limit))
        else:
            write(d, "memory.limit_in_bytes", _limit(limit))
            write(d, "memory.memsw.limit_in_bytes", _limit(swap))
    elif limit:
        write(d, "memory.limit_in_bytes", _limit(limit))
    elif swap:
        write(d, "memory.memsw.limit_in_bytes", _limit(swap))
    if mem.reservation:
        write(d, "memory.soft_limit_in_bytes", _limit(mem.reservation))
    # kernel / kernelTCP: only where the kernel has the files (kmem limits are gone
    # from cgroup v1 since Linux 5.16's deprecation; writes are then accepted but ignored)
    if mem.kernel:
        if not exists(d, "memory.kmem.limit_in_bytes"):
            raise ConfigError("linux.resources.memory.kernel", "kernel memory limits are not supported by this kernel")
        write(d, "memory.kmem.limit_in_bytes", _limit(mem.kernel))
    if mem.kernel_tcp:
        if not exists(d, "memory.kmem.tcp.limit_in_bytes"):
            raise ConfigError("linux.resources.memory.kernelTCP", "kernel TCP memory limits are not supported by this kernel")
        write(d, "memory.kmem.tcp.limit_in_bytes", _limit(mem.kernel_tcp))
    sw = mem.swappiness
    if sw is not None and sw != -1:
        write(d, "memory.swappiness", sw)
    if mem.disable_oom_killer:
        write(d, "memory.oom_control", "1")
    uh = mem.use_hierarchy
    if uh is not None:
        current_uh = (read_opt(d, "memory.use_hierarchy") or "").strip()
        if current_uh != ("1" if uh else "0"):
            write(d, "memory.use_hierarchy", "1" if uh else "0")


def set_cpu(d: str, cpu: Cpu) -> None:
    shares = cpu.shares
    if shares:
        write(d, "cpu.shares", shares)
        got = read_int(d, "cpu.shares")
        if got != shares:
            raise ConfigError("linux.resources.cpu.shares", f"the kernel set {got} instead of {shares}")
    period, quota = cpu.period, cpu.quota
    # The kernel checks quota against period: write in an order that is valid at each step,
    # falling back to the other order (as runc does).
    pairs: list[tuple[str, int]] = []
    if period:
        pairs.append(("cpu.cfs_period_us", period))
    if quota:
        pairs.append(("cpu.cfs_quota_us", quota))
    _write_pair(d, pairs)
    if cpu.burst is not None and exists(d, "cpu.cfs_burst_us"):
        write(d, "cpu.cfs_burst_us", cpu.burst)
    elif cpu.burst:
        raise ConfigError("linux.resources.cpu.burst", "cpu.cfs_burst_us is not supported by this kernel")
    rt: list[tuple[str, int]] = []
    if cpu.realtime_period:
        rt.append(("cpu.rt_period_us", cpu.realtime_period))
    if cpu.realtime_runtime:
        rt.append(("cpu.rt_runtime_us", cpu.realtime_runtime))
    if rt and not exists(d, rt[0][0]):
        raise ConfigError("linux.resources.cpu.realtimeRuntime",
                          "realtime scheduling groups are not supported by this kernel (CONFIG_RT_GROUP_SCHED)")
    _write_pair(d, rt)
    if cpu.idle is not None:
        if not exists(d, "cpu.idle"):
            raise ConfigError("linux.resources.cpu.idle", "cpu.idle is not supported by this kernel")
        write(d, "cpu.idle", cpu.idle)


def _write_pair(d: str, pairs: list[tuple[str, int]]) -> None:
    from ocipy.errors import KernelError

    try:
        for name, value in pairs:
            write(d, name, value)
    except KernelError:
        if len(pairs) != 2:
            raise
        for name, value in reversed(pairs):
            write(d, name, value)


def set_cpuset(d: str, cpu: Cpu) -> None:
    if cpu.cpus:
        write(d, "cpuset.cpus", cpu.cpus)
    if cpu.mems:
        write(d, "cpuset.mems", cpu.mems)


def set_pids(d: str, limit: int | None) -> None:
    if limit is not None:
        write(d, "pids.max", "max" if limit < 0 else limit)


def set_blkio(d: str, bio: BlockIO) -> None:
    # Kernels without CFQ have only the BFQ weight files (blkio.bfq.weight).
    weight_file = "blkio.weight" if exists(d, "blkio.weight") else "blkio.bfq.weight"
    wdev_file = "blkio.weight_device" if exists(d, "blkio.weight_device") else "blkio.bfq.weight_device"
    if bio.weight:
        _need(d, weight_file, "linux.resources.blockIO.weight")
        write(d, weight_file, bio.weight)
    if bio.leaf_weight:
        _need(d, "blkio.leaf_weight", "linux.resources.blockIO.leafWeight")
        write(d, "blkio.leaf_weight", bio.leaf_weight)
    for i, dev in enumerate(bio.weight_device):
        where = f"linux.resources.blockIO.weightDevice[{i}]"
        if dev.weight is not None:
            _need(d, wdev_file, where)
            write(d, wdev_file, f"{dev.major}:{dev.minor} {dev.weight}")
        if dev.leaf_weight is not None:
            _need(d, "blkio.leaf_weight_device", where)
            write(d, "blkio.leaf_weight_device", f"{dev.major}:{dev.minor} {dev.leaf_weight}")
    for key, name in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                      ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                      ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                      ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for i, tdev in enumerate(bio.throttle.get(key) or []):
            _need(d, name, f"linux.resources.blockIO.{key}[{i}]")
            write(d, name, f"{tdev.major}:{tdev.minor} {tdev.rate}")


def _need(d: str, name: str, field: str) -> None:
    if not exists(d, name):
        raise ConfigError(field, f"not supported by this kernel's blkio controller (no {name})")


def set_hugetlb(d: str, pages: list[tuple[str, int]]) -> None:
    set_hugetlb_limits(d, pages, "limit_in_bytes")


def set_net_cls(d: str, net: Network) -> None:
    if net.class_id is not None:
        write(d, "net_cls.classid", net.class_id)


def set_net_prio(d: str, net: Network) -> None:
    for name, priority in net.priorities:
        write(d, "net_prio.ifpriomap", f"{name} {priority}")


def set_rdma(d: str, rdma: dict[str, tuple[int | None, int | None]]) -> None:
    for dev, (handles, objects) in rdma.items():
        parts = [dev]
        if handles is not None:
            parts.append(f"hca_handle={handles}")
        if objects is not None:
            parts.append(f"hca_object={objects}")
        write(d, "rdma.max", " ".join(parts))


# --- stats (runc's types.Stats shape) ----------------------------------------------

def _entry(d: str, prefix: str) -> dict[str, int]:
    """runc's MemoryEntry, in its key order: limit, usage, max (omitted when 0), failcnt."""
    out = {"limit": read_int(d, f"{prefix}.limit_in_bytes")}
    usage = read_int(d, f"{prefix}.usage_in_bytes")
    mx = read_int(d, f"{prefix}.max_usage_in_bytes")
    if usage:
        out["usage"] = usage
    if mx:
        out["max"] = mx
    out["failcnt"] = read_int(d, f"{prefix}.failcnt")
    return out


def memory_stats(d: str) -> dict[str, Any]:
    raw = read_keyed(d, "memory.stat")
    out: dict[str, Any] = {}
    if raw.get("cache"):
        out["cache"] = raw["cache"]
    out["usage"] = _entry(d, "memory")
    out["swap"] = _entry(d, "memory.memsw")
    out["kernel"] = _entry(d, "memory.kmem")
    out["kernelTCP"] = _entry(d, "memory.kmem.tcp")
    if raw:
        out["raw"] = dict(sorted(raw.items()))  # a Go map: marshalled in key order
    return out


def cpu_usage(total: int, percpu: list[int] | None, percpu_kernel: list[int] | None,
              percpu_user: list[int] | None, kernel: int, user: int) -> dict[str, Any]:
    """runc's CpuUsage, in its key order (empty ones omitted but kernel and user)."""
    usage: dict[str, Any] = {}
    if total:
        usage["total"] = total
    for key, values in (("percpu", percpu), ("percpu_kernel", percpu_kernel), ("percpu_user", percpu_user)):
        if values:
            usage[key] = values
    usage["kernel"] = kernel
    usage["user"] = user
    return usage


def throttling(periods: int, throttled: int, throttled_time: int) -> dict[str, int]:
    """runc's Throttling (snake_case keys, zeros omitted)."""
    out: dict[str, int] = {}
    for key, value in (("periods", periods), ("throttled_periods", throttled), ("throttled_time", throttled_time)):
        if value:
            out[key] = value
    return out


def cpu_stats(cpu_dir: str | None, cpuacct_dir: str | None) -> dict[str, Any]:
    total, kernel, user = 0, 0, 0
    per: dict[str, list[int] | None] = {"percpu": None, "percpu_kernel": None, "percpu_user": None}
    if cpuacct_dir:
        total = read_int(cpuacct_dir, "cpuacct.usage")
        for name, key in (("cpuacct.usage_percpu", "percpu"), ("cpuacct.usage_percpu_sys", "percpu_kernel"),
                          ("cpuacct.usage_percpu_user", "percpu_user")):
            text = read_opt(cpuacct_dir, name)
            if text and text.split():
                per[key] = [int(x) for x in text.split() if x.isdigit()]
        st = read_keyed(cpuacct_dir, "cpuacct.stat")
        hz = 100  # USER_HZ
        kernel = st.get("system", 0) * 1_000_000_000 // hz
        user = st.get("user", 0) * 1_000_000_000 // hz
    st = read_keyed(cpu_dir, "cpu.stat") if cpu_dir else {}
    return {"usage": cpu_usage(total, per["percpu"], per["percpu_kernel"], per["percpu_user"], kernel, user),
            "throttling": throttling(st.get("nr_periods", 0), st.get("nr_throttled", 0),
                                     st.get("throttled_time", 0))}


def pids_stats(d: str) -> dict[str, int]:
    out: dict[str, int] = {}
    cur = read_int(d, "pids.current")
    lim = read_int(d, "pids.max")
    if cur:
        out["current"] = cur
    if lim:
        out["limit"] = lim
    return out


_BLKIO_KEYS = (
    ("io_service_bytes_recursive", "ioServiceBytesRecursive"),
    ("io_serviced_recursive", "ioServicedRecursive"),
    ("io_queued_recursive", "ioQueueRecursive"),
    ("io_service_time_recursive", "ioServiceTimeRecursive"),
    ("io_wait_time_recursive", "ioWaitTimeRecursive"),
    ("io_merged_recursive", "ioMergedRecursive"),
    ("time_recursive", "ioTimeRecursive"),
    ("sectors_recursive", "sectorsRecursive"),
)


def _blkio_entries(text: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 2 or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        entry: dict[str, Any] = {}
        if int(major):
            entry["major"] = int(major)
        if int(minor):
            entry["minor"] = int(minor)
        if len(parts) == 3:
            entry["op"] = parts[1]
            value = int(parts[2])
        else:
            value = int(parts[1])
        if value:
            entry["value"] = value
        out.append(entry)
    return out


def blkio_stats(d: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for src, dst in _BLKIO_KEYS:
        entries = _blkio_entries(read_opt(d, f"blkio.{src}"))
        if entries:
            out[dst] = entries
    if not out:  # no CFQ: the throttle (and bfq) counters
        for prefix in ("blkio.throttle.", "blkio.bfq."):
            for src, dst in (("io_service_bytes_recursive", "ioServiceBytesRecursive"),
                             ("io_serviced_recursive", "ioServicedRecursive")):
                entries = _blkio_entries(read_opt(d, prefix + src))
                if entries and dst not in out:
                    out[dst] = entries
    return out


def hugetlb_stats(d: str, sizes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        e: dict[str, int] = {}
        u = read_int(d, f"hugetlb.{size}.usage_in_bytes")
        m = read_int(d, f"hugetlb.{size}.max_usage_in_bytes")
        if u:
            e["usage"] = u
        if m:
            e["max"] = m
        e["failcnt"] = read_int(d, f"hugetlb.{size}.failcnt")
        out[size] = e
    return out


def cpuset_stats(d: str) -> dict[str, Any]:
    """runc's CPUSet, in its key order (cpus and mems omitted when empty)."""
    from ocipy.linux.cgroups.common import parse_list

    out: dict[str, Any] = {}
    cpus = parse_list(read_opt(d, "cpuset.cpus") or "")
    mems = parse_list(read_opt(d, "cpuset.mems") or "")
    if cpus:
        out["cpus"] = cpus
    out["cpu_exclusive"] = read_int(d, "cpuset.cpu_exclusive")
    if mems:
        out["mems"] = mems
    for name in ("mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page", "memory_spread_slab",
                 "memory_pressure", "sched_load_balance", "sched_relax_domain_level"):
        out[name] = read_int(d, f"cpuset.{name}")
    return out
