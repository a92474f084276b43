"""cgroups as runc 1.1 behaves, on real containers through the ocipy CLI (v1 / hybrid host).

Device access defaults to deny, `exec` joins every hierarchy (and sub-cgroups
with --cgroup), pre-existing cgroups are handled as runc does, `update` and
`events` behave and print as runc's.  Every test leaves no cgroup behind.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces, mounts and cgroups"),
    pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs cgroup v1 controllers"),
]

MakeBundle = Callable[..., Path]
CG = "/sys/fs/cgroup"


def cid() -> str:
    return f"cgc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def top() -> Iterator[str]:
    """A cgroup parent name unique to the test: nothing may be left under it in any
    hierarchy once the test (which deletes its containers) is done."""
    name = f"ocipy-cgc-{uuid.uuid4().hex[:8]}"
    yield name
    left = glob.glob(f"{CG}/*/{name}")
    for d in left:
        for sub, _dirs, _files in sorted(os.walk(d), key=lambda w: -len(w[0])):
            try:
                os.rmdir(sub)
            except OSError:
                pass
    assert left == [], f"cgroups left behind: {left}"


def start(runtime: Any, bundle: Path, c: str) -> subprocess.CompletedProcess[str]:
    proc = runtime("run", "-d", "--bundle", str(bundle), c, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc  # type: ignore[no-any-return]


def caps(config: dict[str, Any], *names: str) -> None:
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind] += list(names)


def no_cgroupns(config: dict[str, Any]) -> None:
    """As runc 1.1's `spec`: paths in /proc/self/cgroup are then the host's."""
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "cgroup"]


def in_container(runtime: Any, c: str, script: str) -> subprocess.CompletedProcess[str]:
    return runtime("exec", c, "sh", "-c", script, check=False)  # type: ignore[no-any-return]


# --- devices: default deny ---------------------------------------------------------------------

@pytest.mark.parametrize("resources", [None, {}, {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3,
                                                               "access": "rwm"}]}])
def test_no_device_rules_means_deny_all_but_the_defaults(runtime: Any, make_bundle: MakeBundle,
                                                         resources: dict[str, Any] | None) -> None:
    """An isolation hole before: no linux.resources.devices (or only allow rules) left
    'a *:* rwm', so a root container with CAP_MKNOD could make /dev/kmsg or a disk and use it."""
    def edit(config: dict[str, Any]) -> None:
        caps(config, "CAP_MKNOD", "CAP_SYSLOG")
        if resources is None:
            del config["linux"]["resources"]
        else:
            config["linux"]["resources"] = resources

    bundle = make_bundle(["sleep", "100"], edit=edit)
    c = cid()
    start(runtime, bundle, c)
    pid = runtime.state(c)["pid"]
    rel = next(line.split(":", 2)[2] for line in open(f"/proc/{pid}/cgroup").read().splitlines()
               if line.split(":")[1] == "devices")
    listing = open(f"{CG}/devices{rel}/devices.list").read().split("\n")
    assert "a *:* rwm" not in listing and "c 1:3 rwm" in listing and "c 136:* rwm" in listing
    made = in_container(runtime, c, "mknod /tmp/kmsg c 1 11 && echo made; head -c 1 /tmp/kmsg; echo x > /dev/null")
    assert "made" in made.stdout  # mknod is allowed for every node (runc's default list) ...
    assert "Operation not permitted" in made.stderr  # ... opening one that is not allowed is not
    assert made.returncode == 0, made.stderr  # /dev/null still works


def test_linux_devices_node_is_created_but_denied(runtime: Any, make_bundle: MakeBundle) -> None:
    """runc's dev.bats "device cgroup deny": the node is in /dev, the rules refuse it, also
    after an update that re-applies the limits."""
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        config["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
        caps(config, "CAP_SYSLOG")

    bundle = make_bundle(["sleep", "100"], edit=edit)
    c = cid()
    start(runtime, bundle, c)
    for _ in range(2):
        assert in_container(runtime, c, "test -c /dev/kmsg").returncode == 0
        read = in_container(runtime, c, "head -n 1 /dev/kmsg")
        assert read.returncode == 1 and "Operation not permitted" in read.stderr
        write = in_container(runtime, c, "echo hi > /dev/kmsg")
        assert write.returncode != 0 and "Operation not permitted" in write.stderr
        runtime("update", "--pids-limit", "42", c)


def test_update_never_opens_a_deny_window(runtime: Any, make_bundle: MakeBundle) -> None:
    """runc's update.bats "minimal transition rules": while `update` runs, a container that
    writes /dev/null in a loop never sees it refused (and /dev/kmsg stays refused)."""
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["resources"] = {"devices": [
            {"allow": False, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]}  # 'a' ignored, as runc
        config["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
        caps(config, "CAP_SYSLOG")
        config["root"]["readonly"] = False

    loop = "while :; do head -c 100 /dev/kmsg 2>/dev/null >> /tmp/leak; echo x > /dev/null || echo bad >> /tmp/leak; done"
    bundle = make_bundle(["sh", "-c", loop], edit=edit)
    c = cid()
    start(runtime, bundle, c)
    for _ in range(10):
        runtime("update", "--pids-limit", "30", c)
    time.sleep(0.2)
    assert (bundle / "rootfs/tmp/leak").read_text() == ""


# --- pre-existing cgroups --------------------------------------------------------------------------

def test_non_empty_cgroup_is_a_warning(runtime: Any, make_bundle: MakeBundle, top: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = f"/{top}/shared"

    first, second = cid(), cid()
    start(runtime, make_bundle(["sleep", "100"], edit=edit), first)
    proc = start(runtime, make_bundle(["sleep", "100"], edit=edit), second)
    assert "container's cgroup is not empty: 1 process(es) found" in proc.stderr
    runtime("delete", "-f", second)
    runtime("delete", "-f", first)


def test_frozen_cgroup_is_refused_and_left_as_it_was(runtime: Any, make_bundle: MakeBundle, top: str) -> None:
    freezer = f"{CG}/freezer/{top}/ctr"
    os.makedirs(freezer)
    try:
        with open(f"{freezer}/freezer.state", "w") as f:
            f.write("FROZEN")
        bundle = make_bundle(["true"], edit=lambda cfg: cfg["linux"].update(cgroupsPath=f"/{top}/ctr"))
        for cmd in ("run", "create"):
            c = cid()
            proc = runtime(cmd, "--bundle", str(bundle), c, check=False)
            assert proc.returncode == 1 and "container's cgroup unexpectedly frozen" in proc.stderr
            assert proc.stderr.count("\n") == 1, proc.stderr
            assert runtime("state", c, check=False).returncode != 0
        # the frozen directory is someone else's: still there; nothing of ours is left
        assert os.path.isdir(freezer)
        assert not [d for d in glob.glob(f"{CG}/*/{top}/ctr") if not d.startswith(f"{CG}/freezer/")]
    finally:
        with open(f"{freezer}/freezer.state", "w") as f:
            f.write("THAWED")
        os.rmdir(freezer)
        os.rmdir(os.path.dirname(freezer))


def test_unified_on_v1_is_an_invalid_configuration(runtime: Any, make_bundle: MakeBundle, top: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = f"/{top}/ctr"
        config["linux"]["resources"].update(memory={"limit": 33554432}, unified={"memory.min": "131072"})

    c = cid()
    proc = runtime("run", "-d", "--bundle", str(make_bundle(["true"], edit=edit)), c, check=False)
    assert proc.returncode == 1 and "invalid configuration" in proc.stderr
    assert glob.glob(f"{CG}/*/{top}") == []  # no hierarchy keeps a directory


def test_pod_parent_without_cpus_and_quota(runtime: Any, make_bundle: MakeBundle, top: str) -> None:
    """runc's update.bats "cpu period in a pod cgroup": the pod's v1 cpuset has empty
    cpus/mems (made by mkdir), and its cpu quota caps the container's."""
    for ctl in ("cpu", "cpuset", "memory"):
        os.makedirs(f"{CG}/{ctl}/{top}")
    with open(f"{CG}/cpu/{top}/cpu.cfs_quota_us", "w") as f:
        f.write("50000")
    bundle = make_bundle(["sleep", "100"], edit=lambda cfg: cfg["linux"].update(cgroupsPath=f"/{top}/ctr"))
    c = cid()
    start(runtime, bundle, c)
    assert open(f"{CG}/cpuset/{top}/ctr/cpuset.cpus").read().strip()
    assert runtime("update", "--cpu-quota", "60000", c, check=False).returncode == 1  # above the pod's
    runtime("update", "--cpu-period", "10000", "--cpu-quota", "3000", c)
    assert open(f"{CG}/cpu/{top}/ctr/cpu.cfs_quota_us").read().strip() == "3000"
    runtime("delete", "-f", c)
    for ctl in ("cpu", "cpuset", "memory"):
        assert not os.path.exists(f"{CG}/{ctl}/{top}/ctr")
        os.rmdir(f"{CG}/{ctl}/{top}")  # the pod's, which we did not make, is still there


# --- exec ---------------------------------------------------------------------------------------------

def test_exec_joins_every_hierarchy_and_sub_cgroups(runtime: Any, make_bundle: MakeBundle, top: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = f"/{top}/ctr"
        no_cgroupns(config)

    c = cid()
    start(runtime, make_bundle(["sleep", "100"], edit=edit), c)
    init = open(f"/proc/{runtime.state(c)['pid']}/cgroup").read()
    lines = runtime("exec", c, "cat", "/proc/self/cgroup").stdout
    assert lines == init  # v1 hierarchies, name=systemd and the unified one
    assert all(line.endswith(f":/{top}/ctr") for line in lines.splitlines())
    for arg, word in (("..", " .. is not a sub cgroup path"), ("a/../../x", "is not a sub cgroup path"),
                      ("nonexistent", "/nonexistent/cgroup.procs: no such file "),
                      ("cpu:nonexistent", f"/cpu/{top}/ctr/nonexistent/cgroup.procs: no such file "),
                      ("whaaat:/", "unknown controller "), ("a:b:c", "invalid --cgroup argument")):
        bad = runtime("exec", "--cgroup", arg, c, "true", check=False)
        assert bad.returncode != 0 and word in bad.stderr, (arg, bad.stderr)
    assert runtime("exec", "--cgroup", "/", c, "cat", "/proc/self/cgroup").stdout == init
    for ctl, sub in (("memory", "submem"), ("cpu", "subcpu"), ("cpuacct", "subcpu")):
        os.mkdir(f"{CG}/{ctl}/{top}/ctr/{sub}")
    out = runtime("exec", "--cgroup", "memory:submem", "--cgroup", "cpu,cpuacct:subcpu", c,
                  "cat", "/proc/self/cgroup").stdout
    assert f":memory:/{top}/ctr/submem" in out and f":cpu:/{top}/ctr/subcpu" in out
    assert f":pids:/{top}/ctr\n" in out
    runtime("exec", "-d", "--cgroup", "memory:submem", c, "sleep", "100")
    # delete -f removes the sub-cgroups made inside the container's, and their processes
    runtime("delete", "-f", c)
    assert glob.glob(f"{CG}/*/{top}/ctr") == []


# --- update ---------------------------------------------------------------------------------------------

def test_update_memory_unlimited_and_case_insensitive_keys(runtime: Any, make_bundle: MakeBundle,
                                                          top: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["cgroupsPath"] = f"/{top}/ctr"
        config["linux"]["resources"]["memory"] = {"limit": 33554432, "reservation": 25165824}
        config["linux"]["resources"]["CPU"] = {"Cpus": "0", "Mems": "0"}  # as runc's update.bats writes it

    c = cid()
    start(runtime, make_bundle(["sleep", "100"], edit=edit), c)
    mem = f"{CG}/memory/{top}/ctr"

    def rd(name: str) -> str:
        with open(f"{mem}/{name}") as f:
            return f.read().strip()

    assert open(f"{CG}/cpuset/{top}/ctr/cpuset.cpus").read().strip() == "0"
    unlimited = open(f"{CG}/memory/memory.limit_in_bytes").read().strip()
    runtime("update", "--memory", "50M", c)
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        runtime("update", "--memory-swap", "96468992", c)
        assert rd("memory.memsw.limit_in_bytes") == "96468992"
    runtime("update", "--memory", "-1", c)  # it used to write -1 under the memsw limit: EINVAL
    assert rd("memory.limit_in_bytes") == unlimited
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        assert rd("memory.memsw.limit_in_bytes") == unlimited
        runtime("update", "--memory", "30M", "--memory-swap", "50M", c)
        runtime("update", "--memory", "60M", "--memory-swap", "80M", c)
        assert (rd("memory.limit_in_bytes"), rd("memory.memsw.limit_in_bytes")) == (str(60 << 20), str(80 << 20))
    proc = subprocess.run(runtime.cmd("update", "-r", "-", c), input=json.dumps({"CPU": {"Cpus": "0-1"}}),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        assert open(f"{CG}/cpuset/{top}/ctr/cpuset.cpus").read().strip() == "0-1"
    runtime("delete", "-f", c)


# --- events ------------------------------------------------------------------------------------------------

def test_events_print_compact_json_in_runc_key_order(runtime: Any, make_bundle: MakeBundle) -> None:
    c = cid()
    start(runtime, make_bundle(["sleep", "100"]), c)
    line = runtime("events", "--stats", c).stdout
    assert line.startswith('{"type":"stats","id":"' + c + '","data":{"cpu":{"usage":{')
    assert ": " not in line and ", " not in line
    data = json.loads(line)["data"]
    assert list(data) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"]
    # the stream: first stats after the interval, and the stream ends once the container is gone
    proc = subprocess.Popen(runtime.cmd("events", "--interval", "100ms", c), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        t = time.monotonic()
        first = proc.stdout.readline()
        assert first.startswith('{"type":"stats","id":"' + c + '","data":') and time.monotonic() - t < 3
        runtime("delete", "-f", c)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_events_oom_line(runtime: Any, make_bundle: MakeBundle) -> None:
    def limits(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    bundle = make_bundle(["sh", "-c", "sleep 1; tail /dev/zero"], edit=limits)
    c = cid()
    start(runtime, bundle, c)
    proc = subprocess.run(runtime.cmd("events", c), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '{"type":"oom","id":"' + c + '"}\n' in proc.stdout


def test_update_resources_file_errors_are_one_line(runtime: Any, make_bundle: MakeBundle) -> None:
    c = cid()
    start(runtime, make_bundle(["sleep", "100"]), c)
    for text, word in (('{"memory": ' * 100000 + "1" + "}" * 100000, "nested deeper than"),
                       ("{", "invalid JSON"), ("[]", "must hold a JSON object"),
                       ('{"memory": {"limit": "1g"}}', "linux.resources.memory.limit")):
        proc = subprocess.run(runtime.cmd("update", "-r", "-", c), input=text, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and word in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    # unknown properties are ignored (config.md "Extensibility"), also in update
    proc = subprocess.run(runtime.cmd("update", "-r", "-", c), input='{"vendor": {"x": 1}, "pids": {"limit": 9}}',
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    state = json.loads((runtime.root / c / "state.json").read_text())
    assert open(os.path.join(state["cgroup"]["paths"]["pids"], "pids.max")).read().strip() == "9"


def test_delete_removes_cgroups_nested_deeper_than_python_recursion(runtime, make_bundle):
    # A container may nest cgroups of its own below its cgroup, as deep as the
    # kernel allows; delete must remove them all without recursing (1,200 > 1,000).
    import os

    from support.helpers import unique_id

    cid = unique_id("deepcg")
    path = f"/{cid}"

    def edit(config):
        config["linux"]["cgroupsPath"] = path

    runtime("create", "--bundle", str(make_bundle(["true"], edit=edit)), cid)
    base = f"/sys/fs/cgroup/pids{path}" if os.path.isdir("/sys/fs/cgroup/pids") else f"/sys/fs/cgroup{path}"
    assert os.path.isdir(base)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # relative mkdirs: the full path would pass PATH_MAX
            os.mkdir("c", dir_fd=fd)
            nfd = os.open("c", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    runtime("delete", "-f", cid)
    assert not os.path.exists(base)
