"""Workloads 2 and 3: concurrent throughput (with leak checks) and memory (create RSS, memory floor)."""

from __future__ import annotations

import json
import os
import time

from common import (
    Bench,
    Row,
    Runtime,
    Skip,
    _spawn,
    devnull,
    force_delete_all,
    leak_check,
    make_rootfs,
    rotated,
    runtimes,  # fmt: skip
    sh,
    timed,
    write_bundle,
)

MIB = 1024 * 1024
TIME = "/usr/bin/time"


def throughput(b: Bench, ns: list[int], rounds: int, names: list[str]) -> None:
    """N foreground `run /bin/true` at once; containers per second = N ÷ wall time of the batch."""
    rootfs = make_rootfs(b)
    true_b = write_bundle(b.path("bundles", "true"), rootfs, ["/bin/true"], b.tag)
    rts = runtimes(b, names)
    for rt in rts:
        b.on_cleanup(f"{rt.name} containers", lambda rt=rt: force_delete_all(rt, b))
    errf = open(b.errlog, "ab")
    try:
        for n in ns:
            rate: dict[str, list[float]] = {rt.name: [] for rt in rts}
            failures: dict[str, int] = {rt.name: 0 for rt in rts}
            for i in range(rounds):
                for rt in rotated(rts, i):
                    t0 = time.perf_counter()
                    pids = [_spawn(rt.argv("run", "--bundle", true_b, b.cid(f"tp{n}")), cwd=None, env=None,
                                   stdout_fd=devnull(), stdin_fd=devnull(), stderr_fd=errf.fileno())
                            for _ in range(n)]  # fmt: skip
                    for pid in pids:
                        _, status, _ = os.wait4(pid, 0)
                        if os.waitstatus_to_exitcode(status) != 0:
                            failures[rt.name] += 1
                    dt = time.perf_counter() - t0
                    rate[rt.name].append(n / dt)
            note = f"{n} × `run /bin/true` started at once"
            bad = {k: v for k, v in failures.items() if v}
            if bad:
                note += f"; FAILED runs: {bad}"
                b.results.note(f"throughput N={n}: failed runs {bad} (see the stderr log)")
            b.results.add(Row("throughput", f"N={n}", "c/s", rate, higher_is_better=True, note=note))
            leak_check(b, rts, f"throughput N={n}")
    finally:
        errf.close()


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _create_rss(b: Bench, rt: Runtime, bundle: str) -> tuple[float, float]:
    """(max RSS of the CLI and the children it reaped, VmHWM of the container init waiting in `created`), MiB.

    The CLI is started by /usr/bin/time (a small C program that forks it), not
    by the harness: a child spawned straight from this Python process would
    report the harness's own RSS (ru_maxrss carries the pre-exec image's peak).
    """
    cid = b.cid("rss")
    out = b.path("time.out")
    try:
        timed([TIME, "-f", "%M", "-o", out, *rt.argv("create", "--bundle", bundle, cid)], errlog=b.errlog)
        with open(out) as f:
            cli_kib = int(f.read().split()[-1])
        st = json.loads(timed(rt.argv("state", cid), capture=True, errlog=b.errlog).out)
        init_hwm = _vm_hwm_kib(int(st["pid"]))
        return cli_kib / 1024, init_hwm / 1024
    finally:
        timed(rt.argv("delete", "-f", cid), check=False)


def _runs_with(b: Bench, rt: Runtime, rootfs: str, limit: int) -> bool:
    bundle = write_bundle(b.path("bundles", f"mem-{rt.name}"), rootfs, ["/bin/true"], b.tag, memory_limit=limit)
    cid = b.cid("mem")
    r = timed(rt.argv("run", "--bundle", bundle, cid), check=False, errlog=b.errlog)
    if r.rc != 0:  # a failed run may leave the container behind (e.g. its init OOM-killed)
        sh(rt.argv("delete", "-f", cid))
    return r.rc == 0


def memory(b: Bench, iterations: int, resolution_kib: int, names: list[str]) -> None:
    rootfs = make_rootfs(b)
    sleep_b = write_bundle(b.path("bundles", "sleep"), rootfs, ["/bin/sleep", "3600"], b.tag)
    rts = runtimes(b, names)
    for rt in rts:
        b.on_cleanup(f"{rt.name} containers", lambda rt=rt: force_delete_all(rt, b))
    cli: dict[str, list[float]] = {rt.name: [] for rt in rts}
    init: dict[str, list[float]] = {rt.name: [] for rt in rts}
    tot: dict[str, list[float]] = {rt.name: [] for rt in rts}
    if not os.path.exists(TIME):
        raise Skip(f"{TIME} is not installed (Debian package `time`)")
    base = b.path("time.out")
    timed([TIME, "-f", "%M", "-o", base, "/bin/true"])
    with open(base) as f:
        b.results.note(f"memory: /usr/bin/time -f %M of /bin/true (the method's floor) = {int(f.read().split()[-1]) / 1024:.1f} MiB")
    for i in range(iterations):
        for rt in rotated(rts, i):
            a, c = _create_rss(b, rt, sleep_b)
            cli[rt.name].append(a)
            init[rt.name].append(c)
            tot[rt.name].append(a + c)
    b.results.add(Row("memory", "create: CLI peak RSS", "MiB", cli,
                      note="`/usr/bin/time -f %M`: the CLI process and the children it reaped (crun: incl. unshare/sh)"))
    b.results.add(Row("memory", "create: init peak RSS", "MiB", init,
                      note="VmHWM of the container's init while it waits in `created` (runc: `runc init`)"))
    b.results.add(Row("memory", "create: runtime peak RSS", "MiB", tot, target=("runc", 1.0),
                      note="sum of the two above (an upper bound of the peak of the runtime's processes)"))

    # smallest linux.resources.memory.limit with which `run /bin/true` succeeds (bisection)
    floor: dict[str, list[float]] = {}
    step = resolution_kib * 1024
    for rt in rts:
        hi = 256 * MIB
        if not _runs_with(b, rt, rootfs, hi):
            b.results.note(f"memory floor: {rt.name} fails even with {hi // MIB} MiB")
            continue
        lo = step  # assumed to fail; checked below
        if _runs_with(b, rt, rootfs, lo):
            floor[rt.name] = [lo / MIB]
            continue
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if mid <= lo:
                break
            if _runs_with(b, rt, rootfs, mid):
                hi = mid
            else:
                lo = mid
        # the boundary is noisy: the floor must succeed three times in a row, else step up
        while not all(_runs_with(b, rt, rootfs, hi) for _ in range(3)):
            hi += step
        floor[rt.name] = [hi / MIB]
    b.results.add(Row("memory", "floor: smallest memory.limit for run /bin/true", "MiB", floor,
                      target=("runc", 1.0), note=f"bisection, {resolution_kib} KiB resolution, 3× confirmed"))
    leak_check(b, rts, "memory")
