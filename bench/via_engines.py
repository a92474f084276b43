"""Workload 7: the runtime as engines call it -- through containerd's shim and podman's conmon.

containerd runs on a private socket, root and state dir; podman on private
--root/--runroot (vfs storage).  Both are started and torn down here with the
helpers the interop tests use (tests/interop/engines.py), so there is one copy
of how to run them privately.  The runtimes take turns in each iteration
(rotated order), and the table gives each median as a ratio to runc's.

`calls`: each runtime is wrapped once by a logging script (bash, timing
with $EPOCHREALTIME) while an engine runs a few containers: the table says
which runtime commands the engine makes per container, how often, and what
each cost -- where the milliseconds of a `ctr run` or `podman run` are.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import common
from common import REPO, Bench, Row, Skip, rotated, timed

sys.path.insert(0, os.path.join(REPO, "tests", "interop"))

import engines  # type: ignore[import-not-found]  # noqa: E402 - tests/interop/engines.py

MS = 1000.0
NS = "ocipy-bench"

# crun 1.8.1 refuses this machine's hybrid layout while cgroup2 is mounted at
# /sys/fs/cgroup/unified (see common.CRUN_WRAP): engines get it through a
# wrapper that runs it in a mount namespace without that mount.  The
# wrapper's own cost (unshare + sh, ~2 ms a call) is in crun's figures.
CRUN_WRAPPER = """#!/bin/sh
exec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh {crun} "$@"
"""

# One line per call: start and end (µs since the epoch), exit code, argv.
LOGGING_SHIM = """#!/bin/bash
t0=$EPOCHREALTIME
{real} "$@"
rc=$?
t1=$EPOCHREALTIME
printf '%s %s %s %s\\n' "${{t0/./}}" "${{t1/./}}" "$rc" "$*" >> {log}
exit $rc
"""

# runc's global options that take a value (the command is the first other word)
_VALUED = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def _binaries(b: Bench, names: list[str]) -> dict[str, str]:
    """name -> the executable an engine is given; each in a directory of its own, named as the runtime
    (podman tells runtimes apart by the executable's name)."""
    out = {}
    for name in names:
        if name == "ocipy":
            out[name] = engines.OCIPY
        elif name == "ocipy-base" and common.BASELINE:
            out[name] = common.BASELINE
        elif name == "runc":
            out[name] = engines.RUNC
        elif name == "crun":
            crun = shutil.which("crun")
            if crun is None:
                continue
            d = b.path("bin", "crun")
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, "crun")
            with open(path, "w") as f:
                f.write(CRUN_WRAPPER.format(crun=crun))
            os.chmod(path, 0o755)
            out[name] = path
    return out


def _logging_shim(b: Bench, engine: str, name: str, real: str) -> tuple[str, str]:
    """A wrapper named as the runtime, logging to a file of its own: (wrapper, log)."""
    d = b.path("shim", engine, name)
    os.makedirs(d, exist_ok=True)
    path, log = os.path.join(d, name), os.path.join(d, "calls.log")
    with open(path, "w") as f:
        f.write(LOGGING_SHIM.format(real=real, log=log))
    os.chmod(path, 0o755)
    return path, log


def _calls(log: str) -> list[tuple[str, float, int]]:
    """(command, ms, exit code) of each logged call."""
    out = []
    try:
        with open(log) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        t0, t1, rc, *argv = line.split(" ")
        command, i = "?", 0
        while i < len(argv):
            arg = argv[i]
            if arg in _VALUED:
                i += 2
                continue
            if arg.startswith("-"):
                i += 1
                continue
            command = arg
            break
        if command == "delete" and ("-f" in argv[i:] or "--force" in argv[i:]):
            command = "delete -f"
        if command == "exec" and ("-d" in argv[i:] or "--detach" in argv[i:]):
            command = "exec -d"
        out.append((command, (int(t1) - int(t0)) / 1000.0, int(rc)))
    return out


def _call_rows(b: Bench, engine: str, what: str, per: int, logs: dict[str, str]) -> None:
    """One row per runtime command: calls per container, and the median ms of each runtime."""
    calls = {name: _calls(log) for name, log in logs.items()}
    commands: list[str] = []
    for cs in calls.values():
        for c, _, _ in cs:
            if c not in commands:
                commands.append(c)
    totals: dict[str, list[float]] = {}
    for c in commands:
        samples = {name: [ms for cmd, ms, _ in cs if cmd == c] for name, cs in calls.items()}
        counts = ", ".join(f"{name} {len(v) / per:.3g}" for name, v in samples.items())
        failed = {name: sum(1 for cmd, _, rc in cs if cmd == c and rc) for name, cs in calls.items()}
        bad = {k: v for k, v in failed.items() if v}
        note = f"calls per container: {counts}" + (f"; non-zero exits {bad}" if bad else "")
        b.results.add(Row(f"{engine} calls", f"`{c}` (each)", "ms", samples, note=note))
        for name, v in samples.items():
            totals.setdefault(name, []).append(sum(v) / per)
    b.results.add(Row(f"{engine} calls", "all runtime calls, per container", "ms",
                      {name: [sum(v)] for name, v in totals.items()},
                      note=f"every call above, summed over {per} × {what}, ÷ {per} (a mean: tails count)"))  # fmt: skip


# --------------------------------------------------------------------------- containerd


def containerd(b: Bench, iterations: int, names: list[str], calls_per: int) -> None:
    if engines.missing("containerd", "ctr", engines.SHIM):
        raise Skip(f"not installed: {engines.missing('containerd', 'ctr', engines.SHIM)}")
    binaries = _binaries(b, names)
    archives = engines.build_busybox_image(Path(b.path("ctd-image")))
    daemon = engines.Containerd(Path(b.path("ctd")))
    daemon.binaries = list(binaries.values())
    b.on_cleanup("containerd", daemon.stop)
    daemon.start()
    imported = daemon.ctr("images", "import", str(archives.docker_archive), namespace=NS)
    if imported.returncode != 0:
        raise RuntimeError(f"ctr images import: {imported.stderr.strip()}")

    def ctr(*args: str) -> list[str]:
        return daemon.ctr_cmd(*args, namespace=NS)

    def run_args(binary: str) -> list[str]:
        return ["--runc-binary", binary, "--runc-root", daemon.runc_root(binary)]

    run: dict[str, list[float]] = {n: [] for n in binaries}
    ops = ("run -d (create+start)", "exec /bin/true", "kill -s SIGKILL", "delete -f", "cycle total")
    cycle: dict[str, dict[str, list[float]]] = {op: {n: [] for n in binaries} for op in ops}
    for i in range(iterations + 1):  # the first round warms up, not recorded
        for name in rotated(list(binaries), i):
            binary = binaries[name]
            cid = b.cid(f"ctd-{name}")
            r = timed(ctr("run", "--rm", *run_args(binary), engines.IMAGE, cid, "/bin/true"), errlog=b.errlog)
            cid = b.cid(f"ctdc-{name}")
            t = {
                ops[0]: timed(ctr("run", "-d", *run_args(binary), engines.IMAGE, cid, "sleep", "3600"),
                              errlog=b.errlog).seconds,  # fmt: skip
                ops[1]: timed(ctr("tasks", "exec", "--exec-id", "e1", cid, "/bin/true"), errlog=b.errlog).seconds,
                ops[2]: timed(ctr("tasks", "kill", "-s", "SIGKILL", cid), errlog=b.errlog).seconds,
                ops[3]: timed(ctr("tasks", "delete", "-f", cid), errlog=b.errlog).seconds,
            }
            timed(ctr("containers", "delete", cid), errlog=b.errlog)
            if i:
                run[name].append(r.seconds * MS)
                for op, v in t.items():
                    cycle[op][name].append(v * MS)
                cycle[ops[4]][name].append(sum(t.values()) * MS)
    b.results.add(Row("containerd", "ctr run --rm /bin/true", "ms", run, target=("runc", 1.0),
                      note="containerd 1.6 runc.v2 shim, `--runc-binary`; the whole ctr command"))  # fmt: skip
    for op in ops:
        target = ("runc", 1.0) if op == "cycle total" else None
        b.results.add(Row("containerd", f"ctr task: {op}", "ms", cycle[op], target=target,
                          note="ctr run -d, tasks exec, tasks kill, tasks delete -f" if target else ""))  # fmt: skip

    # which runtime calls the shim makes per container (a logging wrapper around each runtime)
    logs = {}
    for name in ("ocipy", "runc"):
        if name not in binaries:
            continue
        shim, logs[name] = _logging_shim(b, "containerd", name, binaries[name])
        daemon.binaries.append(shim)
        for _ in range(calls_per):
            cid = b.cid(f"ctdl-{name}")
            timed(ctr("run", "--rm", *run_args(shim), engines.IMAGE, cid, "/bin/true"), errlog=b.errlog)
    _call_rows(b, "containerd", "`ctr run --rm`", calls_per, logs)
    for log in logs.values():
        os.unlink(log)
    for name in ("ocipy", "runc"):
        if name not in binaries:
            continue
        shim = b.path("shim", "containerd", name, name)
        for _ in range(calls_per):
            cid = b.cid(f"ctdm-{name}")
            timed(ctr("run", "-d", *run_args(shim), engines.IMAGE, cid, "sleep", "3600"), errlog=b.errlog)
            timed(ctr("tasks", "exec", "--exec-id", "e1", cid, "/bin/true"), errlog=b.errlog)
            timed(ctr("tasks", "kill", "-s", "SIGKILL", cid), errlog=b.errlog)
            timed(ctr("tasks", "delete", "-f", cid), errlog=b.errlog)
            timed(ctr("containers", "delete", cid), errlog=b.errlog)
    _call_rows(b, "containerd", "ctr task cycle", calls_per, logs)
    for log in logs.values():
        os.unlink(log)
    daemon.stop()
    _leaks(b, "containerd", [daemon.runc_root(x) for x in daemon.binaries], str(daemon.base))


# --------------------------------------------------------------------------- podman


def podman(b: Bench, iterations: int, names: list[str], calls_per: int) -> None:
    if engines.missing("podman", "conmon"):
        raise Skip(f"not installed: {engines.missing('podman', 'conmon')}")
    binaries = _binaries(b, names)
    archives = engines.build_busybox_image(Path(b.path("pm-image")))
    pm = engines.Podman(Path(b.path("pm")))
    pm.binaries = list(binaries.values())
    b.on_cleanup("podman", pm.teardown)
    pm.setup()
    loaded = pm("load", "-i", str(archives.docker_archive))
    if loaded.returncode != 0:
        raise RuntimeError(f"podman load: {loaded.stderr.strip()}")
    env = pm.env
    opts = ["--network", "none", *engines.PODMAN_ULIMITS]

    def podman(*args: str, runtime: str | None = None) -> list[str]:
        return pm.cmd(*args, runtime=runtime)

    sleepers = {}
    for name, binary in binaries.items():
        cid = b.cid(f"pms-{name}")
        timed(podman("run", "-d", "--name", cid, *opts, engines.IMAGE, "sleep", "3600", runtime=binary),
              env=env, errlog=b.errlog)  # fmt: skip
        sleepers[name] = cid
    run: dict[str, list[float]] = {n: [] for n in binaries}
    exe: dict[str, list[float]] = {n: [] for n in binaries}
    for i in range(iterations + 1):
        for name in rotated(list(binaries), i):
            r = timed(podman("run", "--rm", *opts, engines.IMAGE, "/bin/true", runtime=binaries[name]),
                      env=env, errlog=b.errlog)  # fmt: skip
            e = timed(podman("exec", sleepers[name], "/bin/true"), env=env, errlog=b.errlog)
            if i:
                run[name].append(r.seconds * MS)
                exe[name].append(e.seconds * MS)
    b.results.add(Row("podman", "podman run --rm /bin/true", "ms", run, target=("runc", 1.0),
                      note="podman 4.3 + conmon, vfs, --network none, `--runtime`"))  # fmt: skip
    b.results.add(Row("podman", "podman exec /bin/true", "ms", exe, target=("runc", 1.0),
                      note="into a running `sleep` container of that runtime"))  # fmt: skip
    timed(podman("rm", "-f", "-t", "0", *sleepers.values()), env=env, errlog=b.errlog, check=False)

    logs = {}
    for name in ("ocipy", "runc"):
        if name not in binaries:
            continue
        shim, logs[name] = _logging_shim(b, "podman", name, binaries[name])
        pm.binaries.append(shim)
        for _ in range(calls_per):
            timed(podman("run", "--rm", *opts, engines.IMAGE, "/bin/true", runtime=shim), env=env, errlog=b.errlog)
    _call_rows(b, "podman", "`podman run --rm`", calls_per, logs)
    for name, log in logs.items():
        shim = b.path("shim", "podman", name, name)
        cid = b.cid(f"pml-{name}")
        timed(podman("run", "-d", "--name", cid, *opts, engines.IMAGE, "sleep", "3600", runtime=shim),
              env=env, errlog=b.errlog)  # fmt: skip
        os.unlink(log)  # from here on, only the execs
        for _ in range(calls_per):
            timed(podman("exec", cid, "/bin/true"), env=env, errlog=b.errlog)
        os.rename(log, log + ".exec")
        timed(podman("rm", "-f", "-t", "0", cid), env=env, errlog=b.errlog, check=False)
    _call_rows(b, "podman", "`podman exec`", calls_per, {name: log + ".exec" for name, log in logs.items()})
    pm.teardown()
    _leaks(b, "podman", [], str(pm.base))


def _leaks(b: Bench, where: str, roots: list[str], base: str) -> None:
    """What the engine run left: runtime state, mounts under its dirs, shims/conmons, cgroups."""
    leaks = []
    for root in roots:
        for dirpath, dirs, _ in os.walk(root):
            if dirpath != root and dirs:
                leaks.append(f"{where}: runtime state {dirpath}: {dirs[:5]}")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if base in line.split()[4]]
    if mounts:
        leaks.append(f"{where}: mounts {mounts[:5]}")
    time.sleep(0.2)
    procs = engines.pids_matching(engines.SHIM, "-address", os.path.join(base, "containerd.sock"))
    procs += [p for p in engines.pids_matching("conmon") if engines._cmdline_has(p, base)]
    if procs:
        leaks.append(f"{where}: processes {procs[:5]}")
    for leak in leaks:
        print(f"  LEAK {leak}", file=sys.stderr)
    b.results.leaks.extend(leaks)
