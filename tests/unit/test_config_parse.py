"""The one parse of config.json (spec/config.py), without root or a kernel.

Every section is read into typed objects; a bad value is a ConfigError naming
its JSON path; keys are matched as runc's Go decoding matches them (exactly,
else case-insensitively); unknown keys are ignored (config.md
"Extensibility": runtimes MUST ignore unknown properties) and the keys of
free-form maps are left as written.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocipy.errors import ConfigError
from ocipy.spec import config as spec
from ocipy.spec.runtime import NAMESPACES, RLIMITS, default_spec


def full() -> dict[str, Any]:
    """A config with every section the runtime reads."""
    c = copy.deepcopy(default_spec())
    c["process"].update(
        terminal=False, args=["/bin/sh", "-c", "true"], env=["A=1"], cwd="/work", oomScoreAdj=-10,
        user={"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [5, 6]},
        consoleSize={"height": 24, "width": 80}, apparmorProfile="prof", selinuxLabel="lab",
        scheduler={"policy": "SCHED_BATCH", "nice": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
        ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 4},
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}, {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
    )
    c["hostname"], c["domainname"] = "box", "example.org"
    c["mounts"].append({"destination": "/data", "source": "data", "options": ["rbind", "ro"]})
    c["hooks"] = {"prestart": [{"path": "/bin/pre", "args": ["pre", "x"], "env": ["E=1"], "timeout": 5}],
                  "poststop": [{"path": "/bin/post"}]}
    c["annotations"] = {"org.example/key": "v"}
    linux = c["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")]
    linux["namespaces"][1]["path"] = "/proc/1/ns/net"
    linux.update(
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        devices=[{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 1, "gid": 2}],
        netDevices={"eth9": {"name": "ctr0"}, "eth8": {}},
        cgroupsPath="/pod/ctr", sysctl={"net.ipv4.ip_forward": "1"}, rootfsPropagation="rslave",
        mountLabel="ml", timeOffsets={"monotonic": {"secs": 5, "nanosecs": 7}},
        personality={"domain": "LINUX32"}, memoryPolicy={"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]},
        seccomp={"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86"],
                 "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                 "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                              {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                               "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]}]},
        resources={"memory": {"limit": 1 << 30, "swap": 2 << 30, "disableOOMKiller": False},
                   "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
                   "pids": {"limit": 64},
                   "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                               "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}]},
                   "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
                   "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 3}]},
                   "rdma": {"mlx5_0": {"hcaHandles": 3}},
                   "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}],
                   "unified": {"memory.high": "max"}},
    )
    return c


def test_every_section_is_typed():
    raw = full()
    c = spec.parse(raw)
    assert c.raw is raw and c.oci_version == raw["ociVersion"] and c.root_path == "rootfs" and c.root_readonly
    p = c.process
    assert p is not None
    assert (p.args, p.env, p.cwd, p.terminal, p.no_new_privileges) == (["/bin/sh", "-c", "true"], ["A=1"], "/work", False, True)
    assert (p.user.uid, p.user.gid, p.user.umask, p.user.additional_gids) == (1000, 1000, 0o027, [5, 6])
    assert p.capabilities is not None and p.capabilities.bounding == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert p.capabilities.inheritable == []
    assert [(r.type, r.resource, r.soft, r.hard) for r in p.rlimits] == [
        ("RLIMIT_NOFILE", RLIMITS["RLIMIT_NOFILE"], 512, 1024), ("RLIMIT_CORE", RLIMITS["RLIMIT_CORE"], 0, 0)]
    assert p.console_size == (24, 80) and p.oom_score_adj == -10
    assert (p.apparmor_profile, p.selinux_label) == ("prof", "lab")
    assert p.scheduler is not None and (p.scheduler.policy, p.scheduler.nice, p.scheduler.flags) == (3, 3, 1)
    assert p.io_priority == ("IOPRIO_CLASS_BE", 2, 4)
    assert (c.hostname, c.domainname) == ("box", "example.org")
    assert [m.destination for m in c.mounts][-1] == "/data"
    data = c.mounts[-1]
    assert (data.index, data.source, data.options, data.type) == (7, "data", ["rbind", "ro"], "")
    pre = c.hooks.of("prestart")[0]
    assert (pre.path, pre.args, pre.env, pre.timeout) == ("/bin/pre", ["pre", "x"], ["E=1"], 5)
    post = c.hooks.of("poststop")[0]
    assert (post.args, post.env, post.timeout) == (["/bin/post"], None, None)  # no env: the runtime's own
    assert c.hooks.of("createRuntime") == []
    assert c.annotations == {"org.example/key": "v"}
    lx = c.linux
    assert [(n.type, n.path, n.flag) for n in lx.namespaces][:2] == [
        ("pid", "", NAMESPACES["pid"][0]), ("network", "/proc/1/ns/net", NAMESPACES["network"][0])]
    assert lx.ns_types == {"pid", "network", "ipc", "uts", "mount", "user"}
    assert lx.namespace("network") is lx.namespaces[1] and lx.namespace("time") is None
    assert [m.line() for m in lx.uid_mappings] == ["0 100000 65536\n"]
    dev = lx.devices[0]
    assert (dev.path, dev.type, dev.major, dev.minor, dev.file_mode, dev.uid, dev.gid) == ("/dev/fuse", "c", 10, 229, 0o600, 1, 2)
    assert lx.net_devices == {"eth9": "ctr0", "eth8": "eth8"}
    assert (lx.cgroups_path, lx.rootfs_propagation, lx.mount_label) == ("/pod/ctr", "rslave", "ml")
    assert lx.sysctl == {"net.ipv4.ip_forward": "1"} and lx.time_offsets == {"monotonic": (5, 7)}
    assert lx.personality == 0x0008
    assert lx.memory_policy is not None and (lx.memory_policy.mode, lx.memory_policy.nodes) == (2 | 1 << 15, "0-1")
    assert lx.masked_paths == raw["linux"]["maskedPaths"] and lx.readonly_paths == raw["linux"]["readonlyPaths"]


def test_resources_are_typed():
    r = spec.parse(full()).linux.resources
    assert r is not None and r.memory is not None and (r.memory.limit, r.memory.swap, r.memory.disable_oom_killer) == (1 << 30, 2 << 30, False)
    assert r.memory.reservation is None and r.memory.any_set()
    assert r.cpu is not None and (r.cpu.shares, r.cpu.quota, r.cpu.period, r.cpu.cpus, r.cpu.mems) == (512, 50000, 100000, "0-1", "0")
    assert r.pids_limit == 64
    bio = r.block_io
    assert bio is not None and bio.weight == 500 and bio.any_set()
    assert [(d.major, d.minor, d.weight, d.leaf_weight) for d in bio.weight_device] == [(8, 0, 100, None)]
    assert [(d.major, d.minor, d.rate) for d in bio.throttle["throttleReadBpsDevice"]] == [(8, 0, 1 << 20)]
    assert r.hugepage_limits == [("2MB", 1 << 21)]
    assert r.network is not None and (r.network.class_id, r.network.priorities) == (7, [("eth0", 3)])
    assert r.rdma == {"mlx5_0": (3, None)}
    assert r.devices == [(False, "a", -1, -1, "rwm"), (True, "c", 1, 3, "rwm")]
    assert r.unified == {"memory.high": "max"}
    assert spec.parse({"ociVersion": "1.0.0", "root": {"path": "r"}}).linux.resources is None
    empty = spec.parse({"ociVersion": "1.0.0", "root": {"path": "r"}, "linux": {"resources": {}}}).linux.resources
    assert empty is not None and empty.memory is None and empty.devices is None and empty.unified == {}
    # exec reads a saved config again without its limits (and without importing their parse)
    assert spec.parse(full(), resources=False).linux.resources is None


def test_seccomp_plan():
    plan = spec.parse(full()).linux.seccomp
    assert plan is not None
    assert (plan.default_name, plan.default_action) == ("SCMP_ACT_ERRNO", 0x00050000 | 38)
    assert plan.archs == [(0, "SCMP_ARCH_X86")] and plan.flags == [(0, "SECCOMP_FILTER_FLAG_LOG")]
    assert [(r.index, r.name, r.action_name) for r in plan.rules] == [
        (0, "read", "SCMP_ACT_ALLOW"), (0, "write", "SCMP_ACT_ALLOW"), (1, "kill", "SCMP_ACT_ALLOW")]
    assert plan.rules[2].args == [(1, 1, 9, 0)] and not plan.needs_notify
    # an empty object is no filter, as before the one parse
    assert spec.parse({"ociVersion": "1.0.0", "root": {"path": "r"}, "linux": {"seccomp": {}}}).linux.seccomp is None


def _bad(edit: Any) -> ConfigError:
    c = full()
    edit(c)
    with pytest.raises(ConfigError) as e:
        spec.parse(c)
    return e.value


# (edit, the field the error must name, a piece of the message): one per section
BAD: list[tuple[str, Any, str, str]] = [
    ("version", lambda c: c.update(ociVersion="one"), "ociVersion", "SemVer"),
    ("root", lambda c: c.update(root={"path": ""}), "root.path", "must not be empty"),
    ("no root", lambda c: c.pop("root"), "root", "is required"),
    ("args", lambda c: c["process"].update(args=[]), "process.args", "non-empty"),
    ("cwd", lambda c: c["process"].update(cwd="rel"), "process.cwd", "absolute"),
    ("env", lambda c: c["process"].update(env=["A", 1]), "process.env[1]", "expected string, got int"),
    ("uid", lambda c: c["process"]["user"].update(uid=-1), "process.user.uid", "negative"),
    ("umask", lambda c: c["process"]["user"].update(umask=0o1000), "process.user.umask", "not a umask"),
    ("gids", lambda c: c["process"]["user"].update(additionalGids=[1, "x"]), "process.user.additionalGids[1]", "expected integer"),
    ("caps", lambda c: c["process"]["capabilities"].update(bounding="CAP_KILL"), "process.capabilities.bounding", "expected array"),
    ("rlimit type", lambda c: c["process"]["rlimits"][1].update(type="RLIMIT_NOPE"), "process.rlimits[1].type", "unknown rlimit"),
    ("rlimit order", lambda c: c["process"]["rlimits"][0].update(soft=2048), "process.rlimits[0]", "exceeds hard"),
    ("rlimit twice", lambda c: c["process"]["rlimits"][1].update(type="RLIMIT_NOFILE"), "process.rlimits[1].type", "duplicate"),
    ("oom", lambda c: c["process"].update(oomScoreAdj=1001), "process.oomScoreAdj", "-1000..1000"),
    ("console", lambda c: c["process"]["consoleSize"].update(width=70000), "process.consoleSize.width", "0..65535"),
    ("sched", lambda c: c["process"]["scheduler"].update(policy="SCHED_X"), "process.scheduler.policy", "is not one of"),
    ("sched flag", lambda c: c["process"]["scheduler"].update(flags=["X"]), "process.scheduler.flags[0]", "unknown flag"),
    ("ioprio", lambda c: c["process"]["ioPriority"].update(priority=8), "process.ioPriority.priority", "0..7"),
    ("hostname", lambda c: c.update(hostname=5), "hostname", "expected string"),
    ("mount dest", lambda c: c["mounts"][2].update(destination=""), "mounts[2].destination", "must not be empty"),
    ("mount opts", lambda c: c["mounts"][0].update(options="ro"), "mounts[0].options", "expected array"),
    ("idmap", lambda c: c["mounts"][0].update(options=["idmap"]), "mounts[0].options", "only supported on bind"),
    ("mount maps", lambda c: c["mounts"][7].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
     "mounts[7].uidMappings", "given together"),
    ("hook path", lambda c: c["hooks"]["prestart"][0].update(path="rel"), "hooks.prestart[0].path", "absolute"),
    ("hook timeout", lambda c: c["hooks"]["poststop"][0].update(timeout=0), "hooks.poststop[0].timeout", "greater than zero"),
    ("annotations", lambda c: c["annotations"].update(k=1), "annotations.k", "expected string"),
    ("ns type", lambda c: c["linux"]["namespaces"][2].update(type="nope"), "linux.namespaces[2].type", "unknown namespace"),
    ("ns twice", lambda c: c["linux"]["namespaces"][2].update(type="pid"), "linux.namespaces[2].type", "listed twice"),
    ("mapping", lambda c: c["linux"]["uidMappings"][0].update(size=2**32), "linux.uidMappings[0].size", "32 bits"),
    ("maps need userns", lambda c: c["linux"].update(namespaces=[{"type": "mount"}]), "linux.uidMappings", "user namespace"),
    ("masked", lambda c: c["linux"]["maskedPaths"].append("rel"), "linux.maskedPaths[11]", "absolute"),
    ("sysctl", lambda c: c["linux"]["sysctl"].update({"kernel.pid_max": "1"}), "linux.sysctl.kernel.pid_max", "separate kernel namespace"),
    ("device", lambda c: c["linux"]["devices"][0].update(type="x"), "linux.devices[0].type", "is not one of"),
    ("device path", lambda c: c["linux"]["devices"][0].update(path="/.."), "linux.devices[0].path", "not a valid device path"),
    ("cgroups path", lambda c: c["linux"].update(cgroupsPath="/a/../b"), "linux.cgroupsPath", "'..'"),
    ("cgroups root", lambda c: c["linux"].update(cgroupsPath="/"), "linux.cgroupsPath", "root cgroup"),
    ("net device", lambda c: c["linux"]["netDevices"].update(eth7={"name": 1}), "linux.netDevices.eth7.name", "expected string"),
    ("time offset", lambda c: c["linux"]["timeOffsets"].update(boottime={"secs": "x"}), "linux.timeOffsets.boottime", "integers"),
    ("mempolicy", lambda c: c["linux"]["memoryPolicy"].update(nodes="a-b"), "linux.memoryPolicy.nodes", "not a list"),
    ("personality", lambda c: c["linux"]["personality"].update(flags=["x"]), "linux.personality.flags", "no personality flags"),
    ("propagation", lambda c: c["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation", "unknown propagation"),
    ("resources type", lambda c: c["linux"].update(resources=[]), "linux.resources", "expected object"),
    ("memory", lambda c: c["linux"]["resources"]["memory"].update(limit="1G"), "linux.resources.memory.limit", "must be an integer"),
    ("swap", lambda c: c["linux"]["resources"]["memory"].update(swap=1), "linux.resources.memory.swap", "must be >="),
    ("cpu", lambda c: c["linux"]["resources"]["cpu"].update(period=10), "linux.resources.cpu.period", "out of range"),
    ("cpus", lambda c: c["linux"]["resources"]["cpu"].update(cpus="x"), "linux.resources.cpu.cpus", "not a list"),
    ("pids", lambda c: c["linux"]["resources"]["pids"].update(limit=-2), "linux.resources.pids.limit", "minimum -1"),
    ("blkio", lambda c: c["linux"]["resources"]["blockIO"]["weightDevice"][0].pop("major"),
     "linux.resources.blockIO.weightDevice[0].major", "is required"),
    ("hugepage", lambda c: c["linux"]["resources"]["hugepageLimits"][0].update(pageSize="2X"),
     "linux.resources.hugepageLimits[0].pageSize", "like '2MB'"),
    ("net prio", lambda c: c["linux"]["resources"]["network"]["priorities"][0].update(name="a/b"),
     "linux.resources.network.priorities[0].name", "interface name"),
    ("rdma", lambda c: c["linux"]["resources"]["rdma"].update(mlx5_1={}), "linux.resources.rdma['mlx5_1']", "needs hcaHandles"),
    ("dev rule", lambda c: c["linux"]["resources"]["devices"][1].update(access="x"), "linux.resources.devices[1].access", "none of r, w"),
    ("unified", lambda c: c["linux"]["resources"]["unified"].update({"../x": "1"}), "linux.resources.unified['../x']", "name a file"),
    ("seccomp action", lambda c: c["linux"]["seccomp"]["syscalls"][1].update(action="SCMP_ACT_NOPE"),
     "linux.seccomp.syscalls[1].action", "unknown seccomp action"),
    ("seccomp arg", lambda c: c["linux"]["seccomp"]["syscalls"][1]["args"][0].update(index=6),
     "linux.seccomp.syscalls[1].args[0].index", "from 0 to 5"),
    ("seccomp errno", lambda c: c["linux"]["seccomp"]["syscalls"][0].update(errnoRet=1),
     "linux.seccomp.syscalls[0].errnoRet", "does not take an errno"),
]


@pytest.mark.parametrize("edit, field, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_value_names_its_field(edit, field, words):
    e = _bad(edit)
    assert e.field == field and words in str(e)
    assert str(e).startswith(f"invalid configuration: {field}: ")  # runc's wording, which tools grep


def test_process_alone_for_exec():
    p = spec.parse_process({"args": ["ls"], "cwd": "/", "User": {"UID": 5}})
    assert p.user.uid == 5 and p.capabilities is None and p.rlimits == []
    with pytest.raises(ConfigError, match=r"^invalid configuration: process\.cwd: is required"):
        spec.parse_process({"args": ["ls"]})


def test_keys_match_case_insensitively_as_go_decodes_them():
    c = full()
    c["Process"] = c.pop("process")
    c["Process"]["NoNewPrivileges"] = c["Process"].pop("noNewPrivileges")
    c["Process"]["User"] = c["Process"].pop("user")
    c["Process"]["User"]["UID"] = c["Process"]["User"].pop("uid")
    c["Linux"] = c.pop("linux")
    c["Linux"]["Namespaces"] = [{"TYPE": ns["type"], **({"Path": ns["path"]} if "path" in ns else {})}
                                for ns in c["Linux"].pop("namespaces")]  # fmt: skip
    del c["Linux"]["resources"], c["Linux"]["seccomp"]
    c["Linux"]["Resources"] = {"CPU": {"Cpus": "0", "SHARES": 2}, "Memory": {"Limit": 4096}}
    c["Linux"]["Seccomp"] = {"DefaultAction": "SCMP_ACT_ALLOW", "Syscalls": [{"Names": ["kill"], "Action": "SCMP_ACT_LOG"}]}
    c["mounts"][0]["Destination"] = c["mounts"][0].pop("destination")
    del c["hooks"]
    c["Hooks"] = {"PreStart": [{"Path": "/bin/x"}]}
    # the long s (U+017F) folds to s, as strings.EqualFold folds it
    c["Process"]["\u017fcheduler"] = c["Process"].pop("scheduler")
    parsed = spec.parse(c)
    assert parsed.process is not None and parsed.process.no_new_privileges and parsed.process.user.uid == 1000
    assert parsed.process.scheduler is not None
    assert parsed.linux.namespaces[1].path == "/proc/1/ns/net"
    res = parsed.linux.resources
    assert res is not None and res.cpu is not None and res.cpu.cpus == "0"
    assert res.memory is not None and res.memory.limit == 4096
    assert parsed.linux.seccomp is not None and parsed.linux.seccomp.rules[0].action_name == "SCMP_ACT_LOG"
    assert parsed.mounts[0].destination == "/proc" and parsed.hooks.of("prestart")[0].path == "/bin/x"
    # renamed in place: the dict saved in state.json reads with the spec's spelling
    assert "Process" not in c and c["process"]["noNewPrivileges"] is True and c["process"]["user"]["uid"] == 1000
    assert c["linux"]["namespaces"][0] == {"type": "pid"} and c["linux"]["resources"]["cpu"] == {"cpus": "0", "shares": 2}
    assert c["mounts"][0]["destination"] == "/proc" and c["hooks"] == {"prestart": [{"path": "/bin/x"}]}


def test_a_second_spelling_merges_into_the_first_as_go_decodes_it():
    c = full()
    c["process"]["user"] = {"uid": 1}
    c["process"]["User"] = {"gid": 2}
    p = spec.parse(c).process
    assert p is not None and (p.user.uid, p.user.gid) == (1, 2)
    assert c["process"]["user"] == {"uid": 1, "gid": 2} and "User" not in c["process"]


def test_unknown_keys_are_ignored_and_map_keys_kept_as_written():
    c = full()
    c["FutureThing"] = {"X": 1}
    c["process"]["someNewField"] = [1]
    c["linux"]["someNewField"] = {"Type": 1}
    c["linux"]["resources"]["memroy"] = {"limit": "not even a number"}  # a typo is no field: ignored, as runc does
    c["linux"]["resources"]["cpu"]["shareZ"] = "x"
    c["linux"]["seccomp"]["futureKnob"] = True
    c["annotations"] = {"Org.Example/Key": "v"}
    c["linux"]["resources"]["unified"] = {"Memory.High": "1"}
    c["linux"]["resources"]["rdma"] = {"MLX5_0": {"HCAHandles": 3}}
    before = copy.deepcopy(c)
    parsed = spec.parse(c)
    assert parsed.annotations == {"Org.Example/Key": "v"}
    res = parsed.linux.resources
    assert res is not None and res.unified == {"Memory.High": "1"} and res.rdma == {"MLX5_0": (3, None)}
    assert res.cpu is not None and res.cpu.shares == 512
    # unknown keys stay in the saved dict as written; only the rdma limits' field names were folded
    before["linux"]["resources"]["rdma"] = {"MLX5_0": {"hcaHandles": 3}}
    assert c == before


def test_parsing_needs_no_heavy_imports():
    """The parse is on every create and exec: plain classes, no dataclasses/typing/enum/re."""
    code = ("import sys; from ocipy.spec import config, resources, seccomp; "
            "print(sorted(m for m in ('dataclasses', 'typing', 'enum', 're') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(spec.__file__).resolve().parents[2])}).stdout
    assert json.loads(out.replace("'", '"')) == []
