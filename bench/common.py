"""Shared helpers of the side-by-side benchmarks: timing, statistics, tools, cleanup, leak checks.

Everything here uses only the standard library.  Commands are started with
``os.posix_spawn`` and reaped with ``os.wait4`` so the harness adds the same
(small) cost to every tool, and so each measurement also gets the child's
``ru_maxrss`` (the maximum RSS of the process and of the descendants it reaped).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
OCIPY = os.path.join(REPO, ".venv", "bin", "ocipy")
# --baseline: another ocipy (an older checkout's launcher) timed alongside as "ocipy-base"
BASELINE: str | None = None

# crun 1.8.1 refuses the hybrid cgroup layout while cgroup2 is mounted at
# /sys/fs/cgroup/unified: every crun command runs in a private mount namespace
# without it.  The namespace dies with the command, so crun's --root (a plain
# directory) is all that carries state between commands.
CRUN_WRAP = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh"]


class Skip(Exception):
    """A measurement that cannot be made on this machine (the reason goes into the table)."""


# --------------------------------------------------------------------------- timing


@dataclass
class Proc:
    seconds: float
    rc: int
    maxrss_kib: int
    out: bytes = b""


def _spawn(argv: list[str], *, cwd: str | None, env: dict[str, str] | None, stdout_fd: int,
           stdin_fd: int, stderr_fd: int) -> int:  # fmt: skip
    actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0), (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
               (os.POSIX_SPAWN_DUP2, stderr_fd, 2)]  # fmt: skip
    exe = argv[0] if "/" in argv[0] else (shutil.which(argv[0]) or argv[0])
    if cwd is not None:  # posix_spawn has no chdir action before glibc 2.29's extension; use sh
        argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]
        exe = "/bin/sh"
    return os.posix_spawn(exe, argv, env if env is not None else os.environ, file_actions=actions)


_DEVNULL: int | None = None


def devnull() -> int:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _DEVNULL


def timed(argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
          capture: bool = False, check: bool = True, errlog: str | None = None) -> Proc:  # fmt: skip
    """Run argv to completion; wall time, exit status and ru_maxrss (KiB).

    stdin and stderr are /dev/null (stderr goes to `errlog` if given); stdout
    too unless `capture` (a temp file, never a pipe: a detached container
    would hold a pipe open).
    """
    out_fd = devnull()
    tmp = None
    if capture:
        tmp = tempfile.TemporaryFile()
        out_fd = tmp.fileno()
    err_fd = devnull()
    errf = None
    if errlog:
        errf = open(errlog, "ab")
        err_fd = errf.fileno()
    try:
        t0 = time.perf_counter()
        pid = _spawn(argv, cwd=cwd, env=env, stdout_fd=out_fd, stdin_fd=devnull(), stderr_fd=err_fd)
        _, status, ru = os.wait4(pid, 0)
        dt = time.perf_counter() - t0
    finally:
        if errf:
            errf.close()
    rc = os.waitstatus_to_exitcode(status)
    out = b""
    if tmp is not None:
        tmp.seek(0)
        out = tmp.read()
        tmp.close()
    if check and rc != 0:
        tail = ""
        if errlog and os.path.exists(errlog):
            with open(errlog, "rb") as f:
                tail = f.read()[-600:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {rc}: {tail.strip()}")
    return Proc(dt, rc, ru.ru_maxrss, out)


def sh(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Untimed helper command (set-up and tear-down)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    return subprocess.run(argv, **kw)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def p90(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(0.9 * (len(s) - 1)))))
    return s[k]


def rotated(items: list[Any], i: int) -> list[Any]:
    """The tools in a different order every iteration, so ordering effects hit all alike."""
    k = i % len(items)
    return items[k:] + items[:k]


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the table: samples per tool, and optionally a target ratio against a peer."""

    workload: str
    metric: str
    unit: str  # "ms", "MiB", "c/s", "s"
    samples: dict[str, list[float]] = field(default_factory=dict)
    target: tuple[str, float] | None = None  # (peer, max ratio ocipy ÷ peer)
    higher_is_better: bool = False
    note: str = ""
    ocipy_key: str = "ocipy"

    def value(self, tool: str) -> float:
        return median(self.samples.get(tool, []))

    def ratio(self, peer: str) -> float | None:
        a, b = self.value(self.ocipy_key), self.value(peer)
        if not self.samples.get(self.ocipy_key) or not self.samples.get(peer) or b != b or a != a or b == 0:
            return None
        return a / b

    def verdict(self) -> str:
        if self.target is None:
            return ""
        peer, limit = self.target
        r = self.ratio(peer)
        if r is None:
            return "n/a"
        ok = r >= 1 / limit if self.higher_is_better else r <= limit
        return "PASS" if ok else "MISS"


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.leaks: list[str] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        print(f"  note: {text}", file=sys.stderr)
        self.notes.append(text)


def fmt(v: float, unit: str) -> str:
    if v != v:
        return "–"
    if unit in ("ms",):
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"
    if unit in ("MiB",):
        return f"{v:.1f}"
    if unit in ("c/s",):
        return f"{v:.1f}"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:.3g}"


# --------------------------------------------------------------------------- run context, cleanup


class Bench:
    """One benchmark run: a private temp dir, a unique tag for container ids, and a cleanup stack."""

    def __init__(self, quick: bool, keep_tmp: bool = False, tmp_parent: str | None = None) -> None:
        self.quick = quick
        self.keep_tmp = keep_tmp
        self.tag = f"ob{os.getpid():x}{int(time.time()) % 100000:x}"
        self.tmp = tempfile.mkdtemp(prefix="ocipy-bench-", dir=tmp_parent)
        self.errlog = os.path.join(self.tmp, "stderr.log")
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self.results = Results()
        self._seq = 0

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def cid(self, what: str) -> str:
        self._seq += 1
        return f"{self.tag}-{what}-{self._seq}"

    def on_cleanup(self, name: str, fn: Callable[[], None]) -> None:
        self._cleanups.append((name, fn))

    def cleanup(self) -> None:
        # Ctrl-C during cleanup must not leave things half-done
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._cleanups:
                name, fn = self._cleanups.pop()
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(f"cleanup {name}: {e}", file=sys.stderr)
            sweep(self)
            if not self.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)


# --------------------------------------------------------------------------- runtimes


@dataclass
class Runtime:
    name: str
    prefix: list[str]  # argv before the command
    root: str

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]


def runtimes(b: Bench, names: Iterable[str]) -> list[Runtime]:
    out = []
    for name in names:
        root = b.path("state", name)
        os.makedirs(root, exist_ok=True)
        if name == "ocipy":
            out.append(Runtime(name, [OCIPY, "--root", root], root))
        elif name == "ocipy-base" and BASELINE:
            out.append(Runtime(name, [BASELINE, "--root", root], root))
        elif name == "runc":
            out.append(Runtime(name, ["runc", "--root", root], root))
        elif name == "crun":
            out.append(Runtime(name, [*CRUN_WRAP, "crun", "--root", root], root))
        else:
            raise ValueError(name)
    return out


def force_delete_all(rt: Runtime, b: Bench) -> None:
    """Delete every container left under the runtime's --root."""
    if not os.path.isdir(rt.root):
        return
    for entry in os.listdir(rt.root):
        if entry.startswith(b.tag):
            sh(rt.argv("delete", "-f", entry))


# --------------------------------------------------------------------------- bundles


def write_bundle(bundle: str, rootfs: str, args: list[str], mark: str,
                 memory_limit: int | None = None) -> str:  # fmt: skip
    """config.json from `ocipy spec`, terminal false, pid/net/ipc/uts/mount namespaces, shared rootfs."""
    os.makedirs(bundle, exist_ok=True)
    path = os.path.join(bundle, "config.json")
    base = os.path.join(os.path.dirname(rootfs), "spec.json")
    if not os.path.exists(base):
        d = os.path.dirname(rootfs)
        sh([OCIPY, "spec", "--bundle", d], check=True)
        os.rename(os.path.join(d, "config.json"), base)
    with open(base) as f:
        c = json.load(f)
    # crun 1.8.1 rejects "1.2.x" ("unknown version specified"); every runtime accepts 1.0.2
    c["ociVersion"] = "1.0.2"
    c["root"] = {"path": rootfs, "readonly": True}
    p = c["process"]
    p["terminal"] = False
    p["args"] = args
    p["env"] = [e for e in p.get("env", []) if not e.startswith("OCIPY_BENCH=")] + [f"OCIPY_BENCH={mark}"]
    lin = c.setdefault("linux", {})
    lin["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    if memory_limit is not None:
        lin.setdefault("resources", {})["memory"] = {"limit": memory_limit}
    with open(path, "w") as f:
        json.dump(c, f, indent=1)
    return bundle


def make_rootfs(b: Bench) -> str:
    rootfs = b.path("bundles", "rootfs")
    if not os.path.isdir(rootfs):
        sys.path.insert(0, os.path.join(REPO, "tests", "support"))
        from rootfs import build_busybox_rootfs  # type: ignore[import-not-found]

        build_busybox_rootfs(rootfs)
    return rootfs


# --------------------------------------------------------------------------- leaks


def _marked_pids(b: Bench) -> list[int]:
    mark = f"OCIPY_BENCH={b.tag}".encode()
    pids = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if mark in env or b.tmp.encode() in cmd:
            pids.append(int(d))
    return pids


def _cgroup_dirs(b: Bench) -> list[str]:
    found = []
    for top in ("/sys/fs/cgroup",):
        for dirpath, dirnames, _ in os.walk(top):
            depth = dirpath[len(top):].count("/")
            for dn in dirnames:
                if b.tag in dn:
                    found.append(os.path.join(dirpath, dn))
            if depth >= 3:
                dirnames[:] = []
            else:
                dirnames[:] = [d for d in dirnames if b.tag not in d]
    return found


def _mounts(b: Bench) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if b.tmp in fields[4] or b.tag in line:
                out.append(fields[4])
    return out


def leak_check(b: Bench, runtimes_: list[Runtime], where: str) -> list[str]:
    """State dirs, mounts, cgroup dirs and processes this run left behind."""
    leaks = []
    for rt in runtimes_:
        if os.path.isdir(rt.root):
            left = [e for e in os.listdir(rt.root) if b.tag in e]
            if left:
                leaks.append(f"{where}: {rt.name} state dirs {left[:5]}{'…' if len(left) > 5 else ''}")
    m = _mounts(b)
    if m:
        leaks.append(f"{where}: mounts {m[:5]}")
    cg = _cgroup_dirs(b)
    if cg:
        leaks.append(f"{where}: cgroup dirs {cg[:5]}{'…' if len(cg) > 5 else ''} ({len(cg)})")
    # processes exit asynchronously after a forced delete: give them a moment
    for _ in range(20):
        pids = _marked_pids(b)
        if not pids:
            break
        time.sleep(0.05)
    if pids:
        desc = []
        for p in pids[:5]:
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                desc.append(f"{p}:{cmdline[:60]}")
            except OSError:
                pass
        leaks.append(f"{where}: processes {desc}")
    for leak in leaks:
        print(f"  LEAK {leak}", file=sys.stderr)
    b.results.leaks.extend(leaks)
    return leaks


def sweep(b: Bench) -> None:
    """Last resort at exit: kill marked processes, remove cgroup dirs, unmount, so nothing stays."""
    for p in _marked_pids(b):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.1)
    for d in sorted(_cgroup_dirs(b), key=len, reverse=True):
        for dirpath, _, _ in sorted(os.walk(d), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    for m in sorted(_mounts(b), key=len, reverse=True):
        sh(["umount", "-l", m])


def machine_info() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            r = sh(argv)
            return (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            return "not installed"

    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from ocipy import __version__

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "ocipy": __version__ + " (git " + sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).stdout.decode().strip() + ")",
        "runc": first_line(["runc", "--version"]),
        "crun": first_line(["crun", "--version"]),
        "umoci": first_line(["umoci", "--version"]),
        "skopeo": first_line(["skopeo", "--version"]),
        "docker-registry": first_line(["/usr/bin/docker-registry", "--version"]),
        "tar": first_line(["tar", "--version"]),
        "cgroups": "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)"
        if os.path.ismount("/sys/fs/cgroup/unified") else "see /proc/self/mountinfo",
    }
