"""cgroups on the real kernel (this machine: v1 controllers + cgroup2 with hugetlb), as root.

Each test makes a Manager with a relative cgroupsPath (so it nests under the
test runner's own cgroup, as runc does), runs plain child processes in it,
and removes processes and cgroups even when it fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ocipy.errors import OcipyError
from ocipy.linux import cgroups
from ocipy.spec.resources import Resources, parse_device_rules, parse_resources
from support.helpers import parsed_config  # tests/ is on sys.path (conftest.py)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs cgroup v1 controllers"),
]

PY = sys.executable


def cfg(resources: dict[str, Any], path: str | None = None, **linux: Any) -> dict[str, Any]:
    return {"linux": {"cgroupsPath": path or f"ocipy-test-{uuid.uuid4().hex[:8]}/c",
                      "resources": resources, **linux}}


class Env:
    def __init__(self) -> None:
        self.managers: list[cgroups.Manager] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def manager(self, config: dict[str, Any]) -> cgroups.Manager:
        linux = parsed_config(config).linux
        m = cgroups.manager(linux.resources or Resources(), linux.cgroups_path, "test")
        self.managers.append(m)
        return m

    def spawn(self, m: cgroups.Manager, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a child that waits until it is in the cgroup, then execs `args`."""
        r, w = os.pipe()
        p = subprocess.Popen([PY, "-c", f"import os; os.read({r}, 1); os.execvp({args[0]!r}, {args!r})"],
                             pass_fds=(r,), **kw)
        os.close(r)
        self.procs.append(p)
        try:
            m.apply(p.pid)
        finally:
            os.write(w, b"x")
            os.close(w)
        return p

    def cleanup(self) -> None:
        for m in self.managers:
            try:
                if m.is_frozen():
                    m.thaw()
                m.kill_all(signal.SIGKILL)
            except Exception:
                pass
        for p in self.procs:
            p.kill()
            p.wait()
        for m in self.managers:
            deadline = time.monotonic() + 5
            while m.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            m.destroy()
            # our top directory ocipy-test-*/ too (runc leaves parents; tests must not)
            for d in set(m.paths().values()):
                parent = os.path.dirname(d)
                if os.path.basename(parent).startswith("ocipy-test-"):
                    try:
                        os.rmdir(parent)
                    except FileNotFoundError:
                        pass


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()
        for m in e.managers:
            left = [d for d in m.paths().values() if os.path.exists(d)]
            assert left == [], f"cgroups left behind: {left}"


def read(m: cgroups.Manager, controller: str, name: str) -> str:
    with open(os.path.join(m.paths()[controller], name)) as f:
        return f.read().strip()


def wait_for(cond: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_detect_hybrid() -> None:
    assert cgroups.detect() in ("v1", "hybrid")


def test_create_apply_set_limits(env: Env) -> None:
    res = {"memory": {"limit": 256 << 20, "reservation": 128 << 20, "swappiness": 20},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
           "pids": {"limit": 100}}
    m = env.manager(cfg(res))
    m.create()
    # cgroupsPath relative: under the runtime's own cgroup in each hierarchy
    own = cgroups.own_cgroups(cgroups.Layout.detect())
    assert m.paths()["memory"].startswith(os.path.join("/sys/fs/cgroup/memory", own["memory"].lstrip("/")))
    p = env.spawn(m, ["sleep", "30"])
    assert p.pid in m.pids()
    with open(f"/proc/{p.pid}/cgroup") as f:
        text = f.read()
    assert "ocipy-test-" in text
    assert read(m, "memory", "memory.limit_in_bytes") == str(256 << 20)
    assert read(m, "memory", "memory.soft_limit_in_bytes") == str(128 << 20)
    assert read(m, "memory", "memory.swappiness") == "20"
    assert read(m, "cpu", "cpu.shares") == "512"
    assert read(m, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(m, "cpuset", "cpuset.cpus") == "0"
    assert read(m, "pids", "pids.max") == "100"
    # update (what `ocipy update` does)
    m.set(parse_resources({"memory": {"limit": 128 << 20}, "pids": {"limit": -1}, "cpu": {"quota": -1}}))
    assert read(m, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert read(m, "pids", "pids.max") == "max"
    assert read(m, "cpu", "cpu.cfs_quota_us") == "-1"
    # the container's init is in every hierarchy, the unified one included
    assert all(p.pid in [int(x) for x in open(os.path.join(d, "cgroup.procs")).read().split()]
               for d in set(m.paths().values()))


def test_kernel_refused_value_names_file_and_value(env: Env) -> None:
    m = env.manager(cfg({}))
    m.create()
    from ocipy.errors import KernelError

    with pytest.raises(KernelError, match=r"'500' to .*cpu.cfs_quota_us"):
        m.set(parse_resources({"cpu": {"period": 1000, "quota": 500}}))  # quota below 1ms: the kernel says EINVAL


def test_failed_create_leaves_nothing(env: Env) -> None:
    # cpu.rt_runtime_us beyond the parent's budget is refused by the kernel (or missing)
    config = cfg({"memory": {"limit": 64 << 20}, "cpu": {"realtimeRuntime": 10**9, "realtimePeriod": 1000000}})
    m = env.manager(config)
    with pytest.raises(OcipyError):
        m.create()
    assert not any(os.path.exists(d) for d in m.paths().values())
    assert m.to_state()["created"] == []


def test_oom_kill(env: Env) -> None:
    """A process over its memory limit is OOM-killed and the watcher reports it."""
    m = env.manager(cfg({"memory": {"limit": 32 << 20, "swap": 32 << 20}}))
    m.create()
    watcher = m.oom_events()
    try:
        p = env.spawn(m, [PY, "-c", "x = []\nfor i in range(400): x.append(bytearray(1 << 20))\nprint('survived')"],
                      stdout=subprocess.PIPE)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL, out
        assert wait_for(lambda: "oom_kill 0" not in read(m, "memory", "memory.oom_control"))
        assert watcher.check() >= 1
    finally:
        watcher.close()


def test_pids_limit_stops_fork_bomb(env: Env) -> None:
    """A bounded fork loop: 60 children wanted, the limit of 10 lets only a few start."""
    m = env.manager(cfg({"pids": {"limit": 10}}))
    m.create()
    script = ("import os, time\nok = fail = 0\n"
              "for i in range(60):\n"
              "    try:\n        pid = os.fork()\n    except OSError:\n        fail += 1\n        continue\n"
              "    if pid == 0:\n        time.sleep(20)\n        os._exit(0)\n    ok += 1\n"
              "print(ok, fail, flush=True)\ntime.sleep(20)\n")
    p = env.spawn(m, [PY, "-c", script], stdout=subprocess.PIPE)
    assert p.stdout is not None
    ok, fail = map(int, p.stdout.readline().split())
    assert ok <= 9 and fail >= 51
    assert int(read(m, "pids", "pids.current")) <= 10
    assert len(m.pids()) <= 10
    m.kill_all(signal.SIGKILL)
    assert wait_for(lambda: m.pids() == [])


def test_freeze_stops_a_counter(env: Env, tmp_path: Any) -> None:
    counter = tmp_path / "count"
    m = env.manager(cfg({}))
    m.create()
    env.spawn(m, ["sh", "-c", f"i=0; while :; do i=$((i+1)); echo $i > {counter}; done"])
    assert wait_for(lambda: counter.exists() and counter.read_text().strip() not in ("", "0"))
    m.freeze()
    assert m.is_frozen()
    assert cgroups.from_state(m.to_state()).is_frozen()
    time.sleep(0.1)
    before = counter.read_text()
    time.sleep(0.4)
    assert counter.read_text() == before
    m.thaw()
    assert not m.is_frozen()
    assert wait_for(lambda: counter.read_text() != before, 5)


def test_kill_all_and_destroy(env: Env) -> None:
    m = env.manager(cfg({}))
    m.create()
    p = env.spawn(m, ["sh", "-c", "sleep 60 & sleep 60 & wait"])
    assert wait_for(lambda: len(m.pids()) == 3)
    m.kill_all(signal.SIGTERM)
    p.wait(10)
    assert wait_for(lambda: m.pids() == [])
    m.destroy()
    assert not any(os.path.exists(d) for d in m.paths().values())


def test_destroy_keeps_preexisting_dirs(env: Env) -> None:
    top = f"ocipy-test-{uuid.uuid4().hex[:8]}"
    outer = env.manager(cfg({}, path=f"{top}/outer"))
    outer.create()
    inner = env.manager(cfg({"pids": {"limit": 5}}, path=f"{top}/outer/inner"))
    inner.create()
    assert all(d.endswith("/inner") for d in inner.to_state()["created"])
    inner.destroy()
    assert all(os.path.isdir(d) for d in outer.paths().values())
    assert not any(os.path.exists(d) for d in inner.paths().values())


def test_destroy_busy_cgroup_is_an_error(env: Env) -> None:
    m = env.manager(cfg({}))
    m.create()
    env.spawn(m, ["sleep", "30"])
    from ocipy.errors import KernelError

    t = time.monotonic()
    with pytest.raises(KernelError, match="rmdir"):
        m.destroy()
    assert time.monotonic() - t < 3
    assert all(os.path.isdir(d) for d in m.paths().values())  # nothing half-removed
    assert m.to_state()["created"]


def test_v1_device_rules(env: Env) -> None:
    """Default runc rules after deny-all: /dev/null works, /dev/kmsg (1:11) is refused."""
    m = env.manager(cfg({"devices": [{"allow": False, "access": "rwm"}]}))
    m.create()
    assert "c 1:3 rwm" in read(m, "devices", "devices.list")
    assert "a *:* rwm" not in read(m, "devices", "devices.list")
    code = ("import os\nfor p in ('/dev/null', '/dev/kmsg'):\n"
            "    try:\n        os.close(os.open(p, os.O_RDONLY)); print(p, 'ok')\n"
            "    except OSError as e: print(p, e.errno)\n")
    p = env.spawn(m, [PY, "-c", code], stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=30)
    assert out.decode().split("\n")[:2] == ["/dev/null ok", "/dev/kmsg 1"]


def test_hugetlb_through_unified(env: Env) -> None:
    if not os.path.exists("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2MB huge pages")
    m = env.manager(cfg({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}))
    m.create()
    hd = m.paths().get("hugetlb") or m.paths()[""]
    name = "hugetlb.2MB.limit_in_bytes" if "hugetlb" in m.paths() else "hugetlb.2MB.max"
    with open(os.path.join(hd, name)) as f:
        assert f.read().strip() == str(4 << 20)
    assert "2MB" in m.stats()["hugetlb"]


def test_stats_of_a_real_process(env: Env) -> None:
    m = env.manager(cfg({"memory": {"limit": 256 << 20}, "pids": {"limit": 50}}))
    m.create()
    p = env.spawn(m, [PY, "-c", "x = bytearray(20 << 20)\nimport time\nfor i in range(10**7): pass\ntime.sleep(30)"])
    assert wait_for(lambda: m.stats()["memory"]["usage"].get("usage", 0) > 10 << 20)
    st = m.stats()
    assert st["memory"]["usage"]["limit"] == 256 << 20
    assert st["pids"]["current"] >= 1 and st["pids"]["limit"] == 50
    assert st["cpu"]["usage"]["total"] > 0
    assert p.pid in m.pids()


def test_ebpf_device_filter_on_real_cgroup2() -> None:
    """v2 devices: the eBPF program on a real cgroup2 directory (the unified mount)."""
    from ocipy.linux.cgroups import ebpf

    lay = cgroups.Layout.detect()
    if lay.unified is None:
        pytest.skip("no cgroup2 mount")
    d = os.path.join(lay.unified, f"ocipy-test-bpf-{uuid.uuid4().hex[:8]}")
    os.mkdir(d)
    try:
        rules = parse_device_rules([{"allow": False, "access": "rwm"},
                                     {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                                     {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}])
        ebpf.attach(d, rules)
        assert len(ebpf.attached(d)) == 1
        code = (f"import os\nopen('{d}/cgroup.procs', 'w').write(str(os.getpid()))\n"
                "for p, f in (('/dev/null', os.O_RDWR), ('/dev/zero', os.O_RDONLY), ('/dev/zero', os.O_WRONLY),"
                " ('/dev/full', os.O_RDONLY)):\n"
                "    try:\n        os.close(os.open(p, f)); print('ok')\n"
                "    except OSError as e: print(e.errno)\n")
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30).stdout.split()
        assert out == ["ok", "ok", "1", "1"]
        # replace (update): allow all but writes to /dev/null
        ebpf.attach(d, parse_device_rules([{"allow": True, "access": "rwm"},
                                            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]))
        assert len(ebpf.attached(d)) == 1
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30).stdout.split()
        assert out == ["1", "ok", "ok", "ok"]
    finally:
        os.rmdir(d)


def test_mount_cgroupfs(env: Env, tmp_path: Any) -> None:
    """The container's /sys/fs/cgroup, with and without a cgroup namespace, read-only."""
    m = env.manager(cfg({"memory": {"limit": 50 << 20}}))
    m.create()
    script = f"""
import os, json, sys
from ocipy.linux import cgroups, syscalls as sc
from ocipy.linux.cgroups.mount import mount_cgroupfs
m = cgroups.from_state(json.loads(sys.argv[1]))
m.apply(os.getpid())
out = {{}}
for ns in (False, True):
    pid = os.fork()
    if pid == 0:
        res = {{}}
        try:
            sc.unshare(0x00020000 | (0x02000000 if ns else 0))
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            t = "{tmp_path}/t" + str(ns)
            os.mkdir(t)
            fd = os.open(t, os.O_RDONLY | os.O_DIRECTORY)
            mount_cgroupfs(m, f"/proc/self/fd/{{fd}}", ns, True)
            res["ls"] = sorted(os.listdir(t))
            res["limit"] = open(t + "/memory/memory.limit_in_bytes").read().strip()
            try:
                os.mkdir(t + "/x"); res["ro"] = False
            except OSError:
                res["ro"] = True
        except BaseException as e:
            res["error"] = repr(e)
        print(json.dumps(res), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""
    import json

    p = subprocess.run([PY, "-c", script, json.dumps(m.to_state())], capture_output=True, text=True, timeout=60)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(lines) == 2, p.stderr
    for res in lines:
        assert "error" not in res, res
        assert "memory" in res["ls"] and "unified" in res["ls"]
        assert res["limit"] == str(50 << 20)
        assert res["ro"]


def test_create_warns_on_a_busy_cgroup_and_refuses_a_frozen_one(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """config-linux.md "Control groups": a runtime that checks whether the cgroup is fit
    "MUST generate an error if such a check fails".  A frozen cgroup is refused with
    runc's words; a non-empty one only warns, as runc 1.1 does (docs/compat.md)."""
    path = f"ocipy-test-{uuid.uuid4().hex[:8]}/c"
    first = env.manager(cfg({}, path=path))
    first.create()
    env.spawn(first, ["sleep", "30"])
    second = env.manager(cfg({}, path=path))
    second.create()
    # a library warning: through `logging` (the CLI prints runc's line)
    assert "container's cgroup is not empty: 1 process(es) found" in caplog.text
    assert second.to_state()["created"] == []
    first.kill_all(signal.SIGKILL)
    assert wait_for(lambda: first.pids() == [])
    first.freeze()
    third = env.manager(cfg({}, path=path))
    with pytest.raises(OcipyError, match="container's cgroup unexpectedly frozen"):
        third.create()
    assert not third.owned and all(os.path.isdir(d) for d in first.paths().values())
    first.thaw()


def test_ebpf_default_rules_deny_what_is_not_listed() -> None:
    """v2 devices with no linux.resources.devices: the eBPF program starts from deny all
    too, so mknod works (runc's 'c *:* m') but opening /dev/kmsg does not; /dev/null does."""
    from ocipy.linux.cgroups import devices, ebpf

    lay = cgroups.Layout.detect()
    if lay.unified is None:
        pytest.skip("no cgroup2 mount")
    d = os.path.join(lay.unified, f"ocipy-test-bpf-{uuid.uuid4().hex[:8]}")
    os.mkdir(d)
    tmp = f"/dev/shm/ocipy-kmsg-{uuid.uuid4().hex[:8]}"
    try:
        ebpf.attach(d, devices.config_rules(None))
        code = (f"import os\nopen('{d}/cgroup.procs', 'w').write(str(os.getpid()))\n"
                f"os.mknod({tmp!r}, 0o600 | 0o020000, os.makedev(1, 11)); print('made')\n"
                f"for p in ('/dev/null', {tmp!r}):\n"
                "    try:\n        os.close(os.open(p, os.O_RDONLY)); print('ok')\n"
                "    except OSError as e: print(e.errno)\n")
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["made", "ok", "1"], out.stderr
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        os.rmdir(d)
