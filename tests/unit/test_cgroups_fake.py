"""cgroups against fake cgroupfs trees (tmp dirs): detection, paths, values written,
validation errors, and no partial state left behind on failure.

The fake kernel: a new directory gets a copy of its parent's files (as cgroupfs
gives every cgroup the controller's files); a file replaced by a directory
makes a write fail (EISDIR), standing in for a value the kernel refuses.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ocipy.errors import ConfigError, KernelError, OcipyError
from ocipy.linux import cgroups
from ocipy.linux.cgroups import devices, ebpf, v2
from ocipy.runtime.resources import merge_resources
from ocipy.spec.resources import Memory, Resources, Rule, parse_device_rules, parse_resources
from support.helpers import parsed_config  # tests/ is on sys.path (conftest.py)

V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
            "cpu.cfs_burst_us": "0", "cpu.rt_runtime_us": "0", "cpu.rt_period_us": "1000000", "cpu.idle": "0",
            "cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n"},
    "cpuacct": {"cpuacct.usage": "5000", "cpuacct.usage_percpu": "2000 3000 ", "cpuacct.stat": "user 3\nsystem 2\n"},
    "cpuset": {"cpuset.cpus": "0-3", "cpuset.mems": "0"},
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.soft_limit_in_bytes": "9223372036854771712",
               "memory.memsw.limit_in_bytes": "9223372036854771712", "memory.kmem.limit_in_bytes": "0",
               "memory.kmem.tcp.limit_in_bytes": "0", "memory.swappiness": "60", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.use_hierarchy": "1", "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192",
               "memory.failcnt": "0", "memory.stat": "cache 100\nrss 200\n", "cgroup.event_control": ""},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.weight": "500", "blkio.weight_device": "", "blkio.leaf_weight": "500",
              "blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive": "8:0 Read 100\n8:0 Write 50\nTotal 150\n"},
    "pids": {"pids.max": "max", "pids.current": "3"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "0", "hugetlb.2MB.usage_in_bytes": "0", "hugetlb.2MB.failcnt": "0"},
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": ""},
    "systemd": {},
}

V2_FILES = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma",
    "cgroup.subtree_control": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.kill": "", "memory.max": "max", "memory.low": "0", "memory.swap.max": "max", "memory.current": "0",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", "memory.stat": "anon 10\nfile 20\n",
    "memory.high": "max", "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
    "cpu.stat": "usage_usec 7\nuser_usec 4\nsystem_usec 3\n", "cpuset.cpus": "", "cpuset.mems": "",
    "io.max": "", "io.weight": "default 100", "io.stat": "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n",
    "pids.max": "max", "pids.current": "0", "hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0",
    "hugetlb.2MB.events": "max 0\n",
}


def _fill(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup.procs").write_text("")
    for name, text in files.items():
        (d / name).write_text(text)


@pytest.fixture
def fake_mkdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """New cgroup directories inherit their parent's files, as on cgroupfs."""
    real = os.mkdir

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real(path, mode, dir_fd=dir_fd)
        p = Path(os.fsdecode(path))
        if dir_fd is None and str(p).startswith(str(tmp_path)):
            for f in p.parent.iterdir():
                if f.is_file():
                    shutil.copy(f, p / f.name)

    real_rmdir = os.rmdir

    def rmdir(path: Any, *, dir_fd: int | None = None) -> None:
        p = Path(os.fsdecode(path))
        if dir_fd is None and str(p).startswith(str(tmp_path)) and p.is_dir():
            if any(f.is_dir() for f in p.iterdir()):
                real_rmdir(path)  # ENOTEMPTY, as for a cgroup with children
            for f in p.iterdir():
                f.unlink()
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "rmdir", rmdir)


@pytest.fixture
def v1root(tmp_path: Path, fake_mkdir: None) -> Path:
    root = tmp_path / "cg1"
    for name, files in V1_FILES.items():
        _fill(root / name, files)
    return root


@pytest.fixture
def v2root(tmp_path: Path, fake_mkdir: None) -> Path:
    root = tmp_path / "cg2"
    _fill(root, V2_FILES)
    return root


def cfg(resources: dict[str, Any] | None = None, path: str | None = "/ctr", **linux: Any) -> dict[str, Any]:
    lx: dict[str, Any] = {"resources": resources or {}, **linux}
    if path is not None:
        lx["cgroupsPath"] = path
    return {"linux": lx}


def manager(config: dict[str, Any], container_id: str, **kw: Any) -> cgroups.Manager:
    """The Manager create makes: from the typed pieces of the parsed config."""
    linux = parsed_config(config).linux
    return cgroups.manager(linux.resources or Resources(), linux.cgroups_path, container_id, **kw)


def memory(doc: dict[str, Any]) -> Memory:
    out = parse_resources({"memory": doc}).memory
    assert out is not None
    return out


def config_rules_of(resources: dict[str, Any]) -> list[Rule]:
    return devices.config_rules(parse_resources(resources).devices)


def rd(p: Path) -> str:
    return p.read_text().strip()


# --- detection ---------------------------------------------------------------------

def test_detect_v1_v2_hybrid(tmp_path: Path) -> None:
    v1 = tmp_path / "a"
    _fill(v1 / "cpu,cpuacct", {})
    _fill(v1 / "memory", {})
    os.symlink("cpu,cpuacct", v1 / "cpu")
    lay = cgroups.Layout.detect(str(v1))
    assert lay.mode == "v1"
    assert lay.v1["cpu"] == lay.v1["cpuacct"] == str(v1 / "cpu,cpuacct")
    _fill(v1 / "unified", {"cgroup.controllers": "hugetlb"})
    lay = cgroups.Layout.detect(str(v1))
    assert lay.mode == "hybrid" and lay.unified == str(v1 / "unified") and lay.v2_controllers == {"hugetlb"}
    assert lay.available("hugetlb") and not lay.available("net_cls")
    v2r = tmp_path / "b"
    _fill(v2r, {"cgroup.controllers": "memory pids"})
    assert cgroups.detect(str(v2r)) == "v2"
    with pytest.raises(OcipyError, match="no cgroup hierarchy"):
        cgroups.detect(str(tmp_path / "c")) if (tmp_path / "c").mkdir() is None else None


# --- paths (config-linux.md "Cgroups Path") ------------------------------------------

def test_absolute_path_is_under_each_mount_point(v1root: Path) -> None:
    # an absolute path MUST be taken relative to the cgroups mount point
    m = manager(cfg(path="/a/b"), "id", root=str(v1root), self_cgroup="4:memory:/elsewhere\n0::/\n")
    assert m.paths()["memory"] == str(v1root / "memory/a/b")
    assert m.paths()["name=systemd"] == str(v1root / "systemd/a/b")


def test_relative_and_default_paths_follow_own_cgroup(v1root: Path) -> None:
    own = "4:memory:/runtime/x\n3:cpu:/\n8:pids:/p\n"
    m = manager(cfg(path="a/b"), "id", root=str(v1root), self_cgroup=own)
    assert m.paths()["memory"] == str(v1root / "memory/runtime/x/a/b")
    assert m.paths()["cpu"] == str(v1root / "cpu/a/b")
    assert m.paths()["pids"] == str(v1root / "pids/p/a/b")
    m = manager(cfg(path=None), "myid", root=str(v1root), self_cgroup=own)
    assert m.paths()["memory"] == str(v1root / "memory/runtime/x/myid")
    assert m.paths()["freezer"] == str(v1root / "freezer/myid")


@pytest.mark.parametrize("bad", ["/a/../b", "../x", "a/..", "/", "//", "a\0b"])
def test_bad_cgroups_path(v1root: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        manager(cfg(path=bad), "id", root=str(v1root))


def test_systemd_driver_refused_clearly(v1root: Path) -> None:
    with pytest.raises(OcipyError, match="systemd"):
        manager(cfg(path="system.slice:ocipy:x"), "id", systemd=True, root=str(v1root))
    with pytest.raises(ConfigError, match="slice:prefix:name"):
        manager(cfg(path="/not/systemd"), "id", systemd=True, root=str(v1root))


# --- v1 values ------------------------------------------------------------------------

def test_v1_values_written(v1root: Path) -> None:
    res = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10,
                   "disableOOMKiller": True, "kernelTCP": 1 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "realtimeRuntime": 100,
                "realtimePeriod": 1000, "cpus": "0-1", "mems": "0", "idle": 1},
        "pids": {"limit": 0},
        "blockIO": {"weight": 300, "leafWeight": 200, "weightDevice": [{"major": 8, "minor": 0, "weight": 400}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
        "devices": [{"allow": False, "access": "rwm"}],
    }
    m = manager(cfg(res, linux_devices_unused=None), "c", root=str(v1root))
    m.create()
    p = {k: Path(v) for k, v in m.paths().items()}
    assert rd(p["memory"] / "memory.limit_in_bytes") == str(64 << 20)
    assert rd(p["memory"] / "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert rd(p["memory"] / "memory.soft_limit_in_bytes") == str(32 << 20)
    assert rd(p["memory"] / "memory.swappiness") == "10"
    assert rd(p["memory"] / "memory.oom_control") == "1"
    assert rd(p["cpu"] / "cpu.shares") == "512"
    assert rd(p["cpu"] / "cpu.cfs_quota_us") == "50000"
    assert rd(p["cpu"] / "cpu.cfs_burst_us") == "1000"
    assert rd(p["cpu"] / "cpu.rt_runtime_us") == "100"
    assert rd(p["cpu"] / "cpu.idle") == "1"
    assert rd(p["cpuset"] / "cpuset.cpus") == "0-1"
    # config-linux.md: 0 is a valid pids limit and SHOULD be treated as such
    assert rd(p["pids"] / "pids.max") == "0"
    assert rd(p["blkio"] / "blkio.weight") == "300"
    assert rd(p["blkio"] / "blkio.weight_device") == "8:0 400"
    assert rd(p["blkio"] / "blkio.throttle.read_bps_device") == "8:0 1000"
    assert rd(p["hugetlb"] / "hugetlb.2MB.limit_in_bytes") == str(4 << 20)
    assert rd(p["net_cls"] / "net_cls.classid") == str(0x100001)
    assert rd(p["net_prio"] / "net_prio.ifpriomap") == "eth0 5"
    # default-deny then runc's standard devices, one write(2) each on one open file
    # (a regular file here concatenates what the kernel takes as separate rules)
    assert rd(p["devices"] / "devices.deny") == "a"
    assert rd(p["devices"] / "devices.allow") == "".join([
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm", "c 1:9 rwm",
        "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"])  # fmt: skip
    assert len(m.to_state()["created"]) == len(set(m.paths().values()))
    m.destroy()
    assert not any(os.path.exists(d) for d in m.paths().values())


def test_v1_pids_unlimited_and_memory_unlimited(v1root: Path) -> None:
    m = manager(cfg({"pids": {"limit": -1}, "memory": {"limit": -1}}), "c", root=str(v1root))
    m.create()
    assert rd(Path(m.paths()["pids"]) / "pids.max") == "max"
    assert rd(Path(m.paths()["memory"]) / "memory.limit_in_bytes") == "-1"
    m.destroy()


def test_new_cpuset_copies_parent(v1root: Path) -> None:
    (v1root / "cpuset" / "cpuset.cpus").write_text("0-3")
    m = manager(cfg({}, path="/x/y"), "c", root=str(v1root))
    # make the copied value empty, as the kernel does for a new v1 cpuset
    real_mkdir = os.mkdir

    def mkdir_empty(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        f = Path(os.fsdecode(path)) / "cpuset.cpus"
        if f.exists():
            f.write_text("")

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "mkdir", mkdir_empty)
    try:
        m.create()
    finally:
        mp.undo()
    assert rd(v1root / "cpuset/x/y/cpuset.cpus") == "0-3"
    m.destroy()


def test_preexisting_dirs_stay(v1root: Path) -> None:
    for c in V1_FILES:
        _fill(v1root / c / "outer", V1_FILES[c])
    m = manager(cfg({"pids": {"limit": 5}}, path="/outer/inner"), "c", root=str(v1root))
    m.create()
    assert all(d.endswith("/outer/inner") for d in m.to_state()["created"])
    m2 = cgroups.from_state(json.loads(json.dumps(m.to_state())))
    m2.destroy()
    assert (v1root / "pids/outer").is_dir() and not (v1root / "pids/outer/inner").exists()


# --- errors: nothing left behind ----------------------------------------------------------

@pytest.mark.parametrize("res, field", [
    ({"memory": {"limit": -5}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": "1g"}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares"),
    ({"cpu": {"period": 10}}, "linux.resources.cpu.period"),
    ({"cpu": {"quota": 1000, "burst": 2000}}, "linux.resources.cpu.burst"),
    ({"cpu": {"cpus": "0-a"}}, "linux.resources.cpu.cpus"),
    ({"pids": {"limit": -2}}, "linux.resources.pids.limit"),
    ({"blockIO": {"weight": 5}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}}, "linux.resources.blockIO.weightDevice[0]"),
    ({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}, "linux.resources.hugepageLimits[0].pageSize"),
    ({"devices": [{"allow": True, "access": "xyz"}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"allow": True, "access": 7}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow"),
    ({"network": {"priorities": [{"name": "a b", "priority": 1}]}}, "linux.resources.network.priorities[0].name"),
    ({"unified": {"../x": "1"}}, "linux.resources.unified"),
])
def test_bad_values_are_config_errors(v1root: Path, res: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        manager(cfg(res), "c", root=str(v1root)).create()
    assert e.value.field.startswith(field)
    assert not (v1root / "memory" / "ctr").exists()


def test_kernel_refusal_names_file_and_value_and_cleans_up(v1root: Path) -> None:
    # cpu.shares replaced by a directory: the write fails like a refused value
    (v1root / "cpu" / "cpu.shares").unlink()
    (v1root / "cpu" / "cpu.shares").mkdir()
    m = manager(cfg({"memory": {"limit": 1 << 20}, "cpu": {"shares": 512}}, path="/a/b"), "c",
                        root=str(v1root))
    with pytest.raises(KernelError) as e:
        m.create()
    assert "'512'" in str(e.value) and "cpu.shares" in str(e.value)
    for c in V1_FILES:
        assert not (v1root / c / "a").exists(), c


def test_unavailable_controller_is_an_error(v1root: Path) -> None:
    shutil.rmtree(v1root / "net_cls")
    with pytest.raises(ConfigError, match="net_cls"):
        manager(cfg({"network": {"classID": 1}}), "c", root=str(v1root))
    with pytest.raises(ConfigError, match=r"^invalid configuration: linux.resources.unified.*: cannot use unified on cgroup v1"):
        manager(cfg({"unified": {"memory.high": "1"}}), "c", root=str(v1root))


# --- v2 ---------------------------------------------------------------------------------

def test_v2_values_written(v2root: Path) -> None:
    res = {
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 1 << 20},
        "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "burst": 500, "cpus": "0", "idle": 1},
        "pids": {"limit": 7},
        "blockIO": {"weight": 1000, "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}],
        "unified": {"memory.high": "50000000"},
    }
    m = manager(cfg(res), "c", root=str(v2root))
    assert m.mode == "v2" and list(m.paths()) == [""]
    rules_seen: list[Any] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(ebpf, "attach", lambda d, rules: rules_seen.append((d, rules)))
    try:
        m.create()
    finally:
        mp.undo()
    d = v2root / "ctr"
    assert rd(d / "memory.max") == str(64 << 20)
    assert rd(d / "memory.swap.max") == str(32 << 20)  # memory+swap minus memory
    assert rd(d / "memory.low") == str(1 << 20)
    assert rd(d / "cpu.weight") == str(v2.shares_to_weight(1024)) == "39"
    assert rd(d / "cpu.max") == "20000 100000"
    assert rd(d / "cpu.max.burst") == "500"
    assert rd(d / "pids.max") == "7"
    assert rd(d / "io.weight") == "default 10000"
    assert rd(d / "io.max") == "8:16 wiops=300"
    assert rd(d / "hugetlb.2MB.max") == str(2 << 20)
    assert rd(d / "memory.high") == "50000000"
    assert rules_seen and rules_seen[0][0] == str(d)
    # the parent's subtree_control was written (+controller), as v2 requires
    assert rd(v2root / "cgroup.subtree_control").startswith("+")
    m.destroy()
    assert not d.exists()


def test_v2_unconvertible_values(v2root: Path) -> None:
    for res, field in (({"memory": {"swappiness": 5}}, "swappiness"),
                       ({"cpu": {"realtimeRuntime": 5}}, "realtimeRuntime"),
                       ({"blockIO": {"leafWeight": 100}}, "leafWeight"),
                       ({"memory": {"swap": 100}}, "swap")):
        m = manager(cfg(res), "c", root=str(v2root))
        mp = pytest.MonkeyPatch()
        mp.setattr(ebpf, "attach", lambda d, rules: None)
        try:
            with pytest.raises(ConfigError, match=field):
                m.create()
        finally:
            mp.undo()
        assert not (v2root / "ctr").exists()


def test_v2_unified_unknown_controller(v2root: Path) -> None:
    # config-linux.md "Unified": MUST error for a controller that is not present
    m = manager(cfg({"unified": {"nosuch.max": "1"}}), "c", root=str(v2root))
    with pytest.raises(ConfigError, match="nosuch"):
        m.create()
    assert not (v2root / "ctr").exists()


def test_v2_freeze_kill_and_stats(v2root: Path) -> None:
    m = manager(cfg({}), "c", root=str(v2root))
    mp = pytest.MonkeyPatch()
    mp.setattr(ebpf, "attach", lambda d, rules: None)
    try:
        m.create()
    finally:
        mp.undo()
    d = v2root / "ctr"
    (d / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    m.freeze()
    assert rd(d / "cgroup.freeze") == "1"
    assert cgroups.from_state(m.to_state()).is_frozen()
    (d / "cgroup.events").write_text("populated 0\nfrozen 0\n")
    m.thaw()
    assert not m.is_frozen()
    m.kill_all(9)
    assert rd(d / "cgroup.kill") == "1"
    st = m.stats()
    assert st["cpu"]["usage"] == {"kernel": 3000, "user": 4000, "total": 7000}
    assert st["blkio"]["ioServiceBytesRecursive"] == [{"op": "Read", "major": 8, "value": 1},
                                                      {"op": "Write", "major": 8, "value": 2}]
    assert st["memory"]["cache"] == 20 and st["memory"]["raw"]["anon"] == 10
    assert st["hugetlb"] == {"2MB": {"failcnt": 0}}
    (d / "memory.events").write_text("oom 1\noom_kill 1\n")
    w = m.oom_events()
    (d / "memory.events").write_text("oom 3\noom_kill 3\n")
    assert w.check() == 2 and w.check() == 0
    w.close()
    m.destroy()


def test_v1_stats_shape(v1root: Path) -> None:
    m = manager(cfg({}), "c", root=str(v1root))
    m.create()
    st = m.stats()
    for key in ("cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"):
        assert key in st
    assert st["cpu"]["usage"]["total"] == 5000 and st["cpu"]["usage"]["percpu"] == [2000, 3000]
    assert st["cpu"]["usage"]["user"] == 30_000_000 and st["cpu"]["throttling"]["throttled_periods"] == 2
    assert st["memory"]["usage"]["usage"] == 4096 and st["memory"]["cache"] == 100
    assert st["pids"] == {"current": 3}
    assert st["blkio"]["ioServiceBytesRecursive"][0] == {"major": 8, "op": "Read", "value": 100}
    assert st["hugetlb"] == {"2MB": {"failcnt": 0}}
    json.dumps(st)
    m.destroy()


# --- devices ------------------------------------------------------------------------------

def test_device_rules_reduce_like_v1() -> None:
    rules = parse_device_rules([{"allow": False, "access": "rwm"},
                                 {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                                 {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "m"},
                                 {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    assert devices.reduce(rules) == (False, [(True, "c", 1, 3, "rm")])
    # "a" with numbers cannot be written to v1 as such: it becomes c and b rules
    assert devices.reduce(parse_device_rules([{"allow": True, "type": "a", "major": 8, "access": "r"}])) == \
        (False, [(True, "c", 8, -1, "r"), (True, "b", 8, -1, "r")])
    assert devices.reduce(parse_device_rules([{"allow": True, "access": "rwm"},
                                               {"allow": False, "type": "a", "major": 8, "access": "r"}])) == \
        (True, [(False, "c", 8, -1, "r"), (False, "b", 8, -1, "r")])
    defaults = devices.default_device_rules()
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in defaults
    rules = config_rules_of({"devices": [{"allow": False, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]})
    default_allow, exc = devices.reduce(rules)
    assert not default_allow and (True, "c", 10, 229, "rw") in exc and (True, "c", 5, 2, "rwm") in exc


DEFAULT_V1_LIST = ("c *:* m\nb *:* m\nc 1:3 rwm\nc 1:8 rwm\nc 1:7 rwm\nc 5:0 rwm\nc 1:5 rwm\nc 1:9 rwm\n"
                   "c 136:* rwm\nc 5:2 rwm\nc 10:200 rwm")


@pytest.mark.parametrize("res", [{}, {"devices": []}, {"devices": [{"allow": True, "type": "c", "major": 1,
                                                                    "minor": 11, "access": "r"}]}])
def test_devices_start_from_deny_all(res: dict[str, Any]) -> None:
    """No linux.resources.devices, or only allow rules: everything but the default list
    (and what is allowed) is denied -- no 'a *:* rwm' (runc's default deny)."""
    default_allow, exc = devices.reduce(config_rules_of(res))
    assert default_allow is False
    assert {(t, ma, mi) for _, t, ma, mi, _ in exc} >= {("c", 1, 3), ("c", 136, -1), ("c", -1, -1), ("b", -1, -1)}
    assert ("c", 1, 11) not in {(t, ma, mi) for _, t, ma, mi, _ in exc} or res.get("devices")
    assert all(acc == "m" for _, t, ma, _, acc in exc if ma == -1 and t in "cb")  # only mknod for wildcards
    assert devices.v1_transitions("a *:* rwm", config_rules_of(res))[0] == ("devices.deny", "a")


def test_linux_devices_get_no_rule_of_their_own(v1root: Path) -> None:
    """runc's "device cgroup deny": a linux.devices node is created, but the rules decide access."""
    m = manager(cfg({"devices": [{"allow": False, "access": "rwm"}]},
                            devices=[{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]),
                        "c", root=str(v1root))
    m.create()
    allowed = rd(v1root / "devices/ctr/devices.allow")
    assert "1:11" not in allowed and "c 1:3 rwm" in allowed
    assert rd(v1root / "devices/ctr/devices.deny") == "a"


@pytest.mark.parametrize("access, want", [("rwa", "rw"), ("mr", "rm"), ("wwr", "rw"), (None, "rwm"), ("", "rwm")])
def test_device_access_strings_as_runc(access: str | None, want: str) -> None:
    """runc ignores letters other than r, w, m ('rwa' in its update.bats is 'rw')."""
    entry: dict[str, Any] = {"allow": True, "type": "c", "major": 1, "minor": 3}
    if access is not None:
        entry["access"] = access
    assert parse_device_rules([entry]) == [(True, "c", 1, 3, want)]


def test_v1_minimal_transitions() -> None:
    rules = config_rules_of({"devices": [{"allow": False, "access": "rwm"},
                                              {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]})
    # re-applying the same rules writes nothing: no deny-all window for a running container
    assert devices.v1_transitions(DEFAULT_V1_LIST, rules) == []
    # a change writes only the difference, allows before denies
    more = config_rules_of({"devices": [{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
    assert devices.v1_transitions(DEFAULT_V1_LIST, more) == [("devices.allow", "c 1:11 r")]
    fewer = list(more) + [(False, "c", 1, 3, "w"), (True, "b", 8, 0, "r")]
    assert devices.v1_transitions(DEFAULT_V1_LIST, fewer) == [
        ("devices.allow", "c 1:11 r"), ("devices.allow", "b 8:0 r"), ("devices.deny", "c 1:3 w")]
    # from an allow-all cgroup (a new one), the default is reset first
    assert devices.v1_transitions("a *:* rwm", rules)[0] == ("devices.deny", "a")
    # to a default-allow list, too (its deny exceptions cannot be read back)
    assert devices.v1_transitions(DEFAULT_V1_LIST, [(True, "a", -1, -1, "rwm"), (False, "c", 1, 11, "rwm")]) == [
        ("devices.allow", "a"), ("devices.deny", "c 1:11 rwm")]


def test_ebpf_program_shape() -> None:
    prog = ebpf.program(parse_device_rules([{"allow": False, "access": "rwm"},
                                              {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]))
    assert len(prog) % 8 == 0
    # 6 loads, one block of 3 checks + 2 (return), default return 2
    assert len(prog) // 8 == 6 + 5 + 2
    assert prog[-8:] == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])


# --- update helpers ---------------------------------------------------------------------------

def test_merge_resources() -> None:
    cur = {"memory": {"limit": 1, "swap": 2}, "devices": [{"allow": False}]}
    out = merge_resources(cur, {"memory": {"limit": 5}, "pids": {"limit": 3}})
    assert out == {"memory": {"limit": 5, "swap": 2}, "devices": [{"allow": False}], "pids": {"limit": 3}}
    assert cur["memory"] == {"limit": 1, "swap": 2}


def test_cli_parsers() -> None:
    from ocipy.cli.resources import parse_bytes, parse_duration

    assert parse_bytes("64m", "--memory") == 64 << 20
    assert parse_bytes("1.5g", "--memory") == 3 << 29
    assert parse_bytes("512MiB", "--memory") == 512 << 20
    assert parse_bytes("-1", "--memory-swap") == -1
    assert parse_bytes("100", "--memory") == 100
    with pytest.raises(OcipyError):
        parse_bytes("lots", "--memory")
    assert parse_duration("5s") == 5 and parse_duration("1m30s") == 90 and parse_duration("250ms") == 0.25
    with pytest.raises(OcipyError):
        parse_duration("5 seconds")


def test_from_state_tolerates_garbage() -> None:
    m = cgroups.from_state({"paths": {"freezer": "/nonexistent/x"}})
    assert not m.is_frozen() and m.pids() == []


def test_import_is_light() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, ocipy.linux.cgroups as c; "
                          "print(' '.join(m for m in ('dataclasses', 'subprocess', 'json', 'ctypes') if m in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# --- keys as runc's JSON decoding matches them; unknown properties ------------------------

def test_keys_match_case_insensitively_and_unknown_ones_are_ignored(v1root: Path) -> None:
    """Go's encoding/json matches keys case-insensitively (runc's update.bats writes
    ``CPU``/``Cpus``); config.md "Extensibility": runtimes "MUST otherwise ignore"
    unknown properties."""
    res = {"CPU": {"Cpus": "0-1", "MEMS": "0", "shareZ": 1}, "Memory": {"Limit": 1 << 20},
           "memroy": {"limit": 5}, "pids": {"limit": 3, "extra": True}, "x-vendor": [1, 2]}
    config = {"linux": {"Resources": res, "CgroupsPath": "/ctr"}}
    m = manager(config, "c", root=str(v1root))
    m.create()
    assert rd(v1root / "cpuset/ctr/cpuset.cpus") == "0-1" and rd(v1root / "cpuset/ctr/cpuset.mems") == "0"
    assert rd(v1root / "memory/ctr/memory.limit_in_bytes") == str(1 << 20)
    assert rd(v1root / "pids/ctr/pids.max") == "3"
    assert rd(v1root / "cpu/ctr/cpu.shares") == "1024"  # "shareZ" is no field
    m.destroy()
    # data keys stay as written; an exact match wins; a repeated object merges as Go's does
    doc = {"unified": {"Memory.High": "1"}, "rdma": {"MLX5_0": {"HCAHandles": 3}}, "cpu": {"shares": 2},
           "Cpu": {"quota": 1000}}
    parse_resources(doc)
    assert doc == {
        "unified": {"Memory.High": "1"}, "rdma": {"MLX5_0": {"hcaHandles": 3}},
        "cpu": {"shares": 2, "quota": 1000}}


def _hybrid(v1root: Path) -> Path:
    _fill(v1root / "unified", {"cgroup.controllers": "hugetlb", "cgroup.subtree_control": "",
                               "hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0", "hugetlb.2MB.events": "max 0\n"})
    return v1root


def test_unified_on_v1_or_hybrid_is_an_invalid_configuration(v1root: Path) -> None:
    """runc: "invalid configuration: cannot use unified on cgroup v1"; a controller the
    hybrid host has in cgroup2 only (hugetlb) stays usable (config-linux.md "Unified":
    the runtime "MUST generate an error when the configuration refers to a cgroup
    controller that is not present")."""
    root = _hybrid(v1root)
    (root / "hugetlb").rename(root / "hugetlb-gone")  # hugetlb only in cgroup2, as on this host
    with pytest.raises(ConfigError, match=r"^invalid configuration: linux.resources.unified.*: cannot use unified on cgroup v1") as e:
        manager(cfg({"unified": {"memory.min": "131072"}}), "c", root=str(root))
    assert "memory" in str(e.value)
    assert not (root / "memory" / "ctr").exists()
    m = manager(cfg({"unified": {"hugetlb.2MB.max": "4194304"}}), "c", root=str(root))
    m.create()
    assert rd(root / "unified/ctr/hugetlb.2MB.max") == "4194304"
    with pytest.raises(ConfigError, match="invalid configuration"):
        m.set(parse_resources({"unified": {"memory.high": "1"}}))  # update -r takes the same check
    m.destroy()


# --- memory / memsw order (update --memory -1) ------------------------------------------------

def test_v1_memory_and_swap_written_in_a_valid_order(v1root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel keeps memory <= memory+swap at each write: raise memsw first, lower memory first."""
    from ocipy.linux.cgroups import v1

    d = v1root / "memory"
    writes: list[tuple[str, str]] = []
    real = v1.write

    def record(directory: str, name: str, value: str | int) -> None:
        writes.append((name, str(value)))
        real(directory, name, value)

    monkeypatch.setattr(v1, "write", record)
    (d / "memory.limit_in_bytes").write_text(str(50 << 20))
    (d / "memory.memsw.limit_in_bytes").write_text(str(92 << 20))
    v1.set_memory(str(d), memory({"limit": -1}))  # runc update --memory -1: memsw is lifted too, first
    assert writes == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]
    writes.clear()
    (d / "memory.limit_in_bytes").write_text(str(64 << 20))
    v1.set_memory(str(d), memory({"limit": 30 << 20, "swap": 50 << 20}))  # memory 64M > new memsw 50M
    assert writes == [("memory.limit_in_bytes", str(30 << 20)), ("memory.memsw.limit_in_bytes", str(50 << 20))]
    writes.clear()
    (d / "memory.limit_in_bytes").write_text(str(30 << 20))
    v1.set_memory(str(d), memory({"limit": 60 << 20, "swap": 80 << 20}))
    assert writes == [("memory.memsw.limit_in_bytes", str(80 << 20)), ("memory.limit_in_bytes", str(60 << 20))]


# --- pre-existing cgroups -------------------------------------------------------------------

def test_preexisting_cpuset_parents_get_cpus_and_mems(v1root: Path) -> None:
    """A pod's parent made by someone else with empty cpuset.cpus/mems: filled from its
    parent, or no task could join the container's cpuset (ENOSPC)."""
    _fill(v1root / "cpuset/pod", {"cpuset.cpus": "", "cpuset.mems": ""})
    m = manager(cfg({}, path="/pod/ctr"), "c", root=str(v1root))
    m.create()
    assert rd(v1root / "cpuset/pod/cpuset.cpus") == "0-3" and rd(v1root / "cpuset/pod/cpuset.mems") == "0"
    m.destroy()
    assert (v1root / "cpuset/pod").is_dir()


def test_non_empty_cgroup_warns_and_frozen_one_is_refused(v1root: Path, caplog: pytest.LogCaptureFixture) -> None:
    for c in V1_FILES:
        _fill(v1root / c / "ctr", V1_FILES[c])
    (v1root / "freezer/ctr/cgroup.procs").write_text("4242\n")
    m = manager(cfg({}), "c", root=str(v1root))
    m.create()
    # library code warns through `logging` (the CLI prints runc's line instead)
    assert [r.name for r in caplog.records] == ["ocipy.linux.cgroups"]
    assert "container's cgroup is not empty: 1 process(es) found" in caplog.text
    assert m.owned
    (v1root / "freezer/ctr/cgroup.procs").write_text("")
    (v1root / "freezer/ctr/freezer.state").write_text("FROZEN")
    m2 = manager(cfg({}, path="/ctr/sub"), "c", root=str(v1root))
    (v1root / "freezer/ctr/sub").mkdir()
    (v1root / "freezer/ctr/sub/freezer.state").write_text("FROZEN")
    with pytest.raises(OcipyError, match="container's cgroup unexpectedly frozen"):
        m2.create()
    # refused before it was the container's: the pre-existing directory stays, ours went
    assert (v1root / "freezer/ctr/sub").is_dir() and not (v1root / "memory/ctr/sub").exists()
    m2.destroy()
    assert (v1root / "freezer/ctr/sub").is_dir()


def test_delete_removes_a_preexisting_container_cgroup_and_its_children(v1root: Path) -> None:
    """runc removes the container's own directories (and cgroups made inside them) on
    delete, even when they were there before; parents it did not make stay."""
    for c in V1_FILES:
        _fill(v1root / c / "pod" / "ctr", V1_FILES[c])
    m = manager(cfg({}, path="/pod/ctr"), "c", root=str(v1root))
    m.create()
    assert m.to_state()["created"] == [] and m.to_state()["owned"] is True
    (v1root / "memory/pod/ctr/foo").mkdir()  # a sub-cgroup made by the container
    cgroups.from_state(json.loads(json.dumps(m.to_state()))).destroy()
    assert not (v1root / "memory/pod/ctr").exists() and not (v1root / "pids/pod/ctr").exists()
    assert (v1root / "memory/pod").is_dir()


# --- stats: runc's key order -------------------------------------------------------------------

def test_stats_keys_in_runc_order(v1root: Path) -> None:
    m = manager(cfg({}), "c", root=str(v1root))
    m.create()
    st = m.stats()
    assert list(st) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"]
    assert list(st["cpu"]["usage"]) == ["total", "percpu", "kernel", "user"]
    assert list(st["cpu"]["throttling"]) == ["periods", "throttled_periods", "throttled_time"]
    assert list(st["cpuset"])[:3] == ["cpus", "cpu_exclusive", "mems"]
    assert list(st["memory"]) == ["cache", "usage", "swap", "kernel", "kernelTCP", "raw"]
    assert list(st["memory"]["usage"]) == ["limit", "usage", "max", "failcnt"]
    assert list(st["memory"]["raw"]) == sorted(st["memory"]["raw"])
    assert list(st["hugetlb"]["2MB"]) == ["failcnt"]
    m.destroy()


# --- exec ------------------------------------------------------------------------------------

def test_exec_sub_cgroups_and_v2_init_fallback(v2root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules_seen: list[Any] = []
    monkeypatch.setattr(ebpf, "attach", lambda d, rules: rules_seen.append(devices.reduce(rules)))
    m = manager(cfg({}), "c", root=str(v2root))
    m.create()
    assert rules_seen and rules_seen[0][0] is False  # v2 too: the device program starts from deny all
    base = m.paths()[""]
    assert m.for_exec(None, 1, self_cgroup="0::/ctr\n").paths() == m.paths()
    (v2root / "ctr/foo").mkdir()
    for bad, word in (("..", "is not a sub cgroup path"), ("foo/../../x", "is not a sub cgroup path"),
                      ("nope", "nope/cgroup.procs: no such file"), ("memory:foo", "unknown controller"),
                      ("", "empty --cgroup argument")):
        with pytest.raises(OcipyError, match=word):
            m.for_exec([bad], 1)
    assert m.for_exec(["foo"], 1).paths()[""] == f"{base}/foo"
    assert m.for_exec(["/"], 1).paths()[""] == base
    # a domain controller enabled below the container's cgroup: join the init's cgroup instead
    (v2root / "ctr/cgroup.subtree_control").write_text("memory")
    assert m.for_exec(None, 1, self_cgroup="0::/ctr/foo\n").paths()[""] == f"{base}/foo"
    assert m.for_exec(None, 1, self_cgroup="0::/elsewhere\n").paths()[""] == base  # never outside
    assert m.for_exec(["/"], 1, self_cgroup="0::/ctr/foo\n").paths()[""] == base  # --cgroup / disables it
    (v2root / "ctr/foo").rmdir()
    m.destroy()


def test_exec_sub_cgroups_v1_controllers(v1root: Path) -> None:
    m = manager(cfg({}), "c", root=str(v1root))
    m.create()
    for c in ("memory", "cpu", "cpuacct"):
        (v1root / c / "ctr/sub").mkdir()
    e = m.for_exec(["memory:sub", "cpu,cpuacct:sub"], 1)
    assert e.paths()["memory"] == str(v1root / "memory/ctr/sub") and e.paths()["cpu"].endswith("/ctr/sub")
    assert e.paths()["pids"] == str(v1root / "pids/ctr") and e.created == []
    assert m.for_exec(["systemd:/"], 1).paths()["name=systemd"] == str(v1root / "systemd/ctr")
    for args, word in ((["memory:sub", "memory:sub"], "specified multiple times"),
                       (["sub", "memory:sub"], "missing <controller>: prefix"),
                       ([":sub"], "empty <controller> prefix")):
        with pytest.raises(OcipyError, match=word):
            m.for_exec(args, 1)
    for c in ("memory", "cpu", "cpuacct"):
        (v1root / c / "ctr/sub").rmdir()
    m.destroy()


def test_a_parent_we_made_is_removed_only_when_empty(v1root: Path) -> None:
    """Two containers under one new parent: the first one's failure (or delete) must not
    remove the second one's cgroups, which now live below the parent it made."""
    first = manager(cfg({}, path="/pod/a"), "a", root=str(v1root))
    first.create()
    assert str(v1root / "memory/pod") in first.created
    second = manager(cfg({}, path="/pod/b"), "b", root=str(v1root))
    second.create()
    first.destroy()
    assert (v1root / "memory/pod/b").is_dir() and not (v1root / "memory/pod/a").exists()
    second.destroy()
    assert not (v1root / "memory/pod/b").exists()
    for c in V1_FILES:  # left for the one who made it: empty, nobody's container
        shutil.rmtree(v1root / c / "pod")


def test_planned_directories_are_removed_after_a_killed_create(v1root: Path) -> None:
    """A create SIGKILLed after a mkdir but before it recorded it: the state saved before
    (paths planned from the config and the id) lets delete -f remove what was made."""
    for c in V1_FILES:
        _fill(v1root / c / "pod", V1_FILES[c])
    m = manager(cfg({"pids": {"limit": 5}}, path="/pod/new/ctr"), "c", root=str(v1root))
    early = json.loads(json.dumps(m.to_state()))  # what create.py saves before making anything
    assert str(v1root / "memory/pod/new") in early["planned"] and str(v1root / "memory/pod") not in early["planned"]
    m.create()  # ... and then the runtime is killed: `created` never reaches the state
    cgroups.from_state(early).destroy()
    assert not (v1root / "memory/pod/new").exists() and not (v1root / "pids/pod/new").exists()
    assert (v1root / "memory/pod").is_dir()
