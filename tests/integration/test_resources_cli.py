"""pause, resume, ps, events and update on real containers through the ocipy CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates namespaces, mounts and cgroups"),
]

MakeBundle = Callable[..., Path]
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"


def writable(extra: Callable[[dict[str, Any]], None] | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["root"]["readonly"] = False
        if extra:
            extra(config)
    return edit


def start(runtime: Any, bundle: Path, cid: str) -> None:
    """run -d with stdio on /dev/null (a detached container keeps the runtime's stdio)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as err:  # a pipe would stay open in the container
        proc = subprocess.run(runtime.cmd("run", "-d", "--bundle", str(bundle), cid), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=err, text=True, timeout=60)
        err.seek(0)
        assert proc.returncode == 0, err.read()


def wait_for(cond: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def count(bundle: Path) -> int:
    try:
        return int((bundle / "rootfs/tmp/count").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def cid() -> str:
    return f"res-{uuid.uuid4().hex[:8]}"


def test_pause_resume(runtime: Any, make_bundle: MakeBundle) -> None:
    bundle = make_bundle(["sh", "-c", COUNTER], edit=writable())
    c = cid()
    start(runtime, bundle, c)
    assert wait_for(lambda: count(bundle) > 0)
    runtime("pause", c)
    assert runtime.state(c)["status"] == "paused"
    time.sleep(0.1)
    frozen = count(bundle)
    time.sleep(0.4)
    assert count(bundle) == frozen
    again = runtime("pause", c, check=False)
    assert again.returncode != 0 and "container not running" in again.stderr
    runtime("resume", c)
    assert runtime.state(c)["status"] == "running"
    assert wait_for(lambda: count(bundle) > frozen)
    again = runtime("resume", c, check=False)
    assert again.returncode != 0 and "container not paused" in again.stderr
    # delete -f of a paused container works (kill_all thaws after signalling)
    runtime("pause", c)
    runtime("delete", "-f", c)
    assert runtime("state", c, check=False).returncode != 0


def test_ps_json_and_table(runtime: Any, make_bundle: MakeBundle) -> None:
    bundle = make_bundle(["sh", "-c", "sleep 100 & sleep 200 & wait"])
    c = cid()
    start(runtime, bundle, c)
    init = runtime.state(c)["pid"]
    assert wait_for(lambda: len(json.loads(runtime("ps", "-f", "json", c).stdout)) == 3)
    pids = json.loads(runtime("ps", "--format", "json", c).stdout)
    assert init in pids and all(isinstance(p, int) for p in pids)
    table = runtime("ps", c).stdout.splitlines()
    assert table[0].split()[1] == "PID" and len(table) == 4
    assert any("sleep 200" in line for line in table)
    custom = runtime("ps", c, "--", "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 4
    bad = runtime("ps", "-f", "yaml", c, check=False)
    assert bad.returncode != 0 and "format" in bad.stderr
    missing = runtime("ps", "nosuch", check=False)
    assert missing.returncode != 0 and "container does not exist" in missing.stderr


def test_events_stats_shape(runtime: Any, make_bundle: MakeBundle) -> None:
    def limits(config: dict[str, Any]) -> None:
        config["linux"]["resources"].update({"memory": {"limit": 128 << 20}, "pids": {"limit": 64}})

    bundle = make_bundle(["sleep", "100"], edit=limits)
    c = cid()
    start(runtime, bundle, c)
    out = runtime("events", "--stats", c).stdout.strip().splitlines()
    assert len(out) == 1
    ev = json.loads(out[0])
    assert ev["type"] == "stats" and ev["id"] == c
    data = ev["data"]
    # runc types.Stats field names (containerd parses them)
    for key in ("cpu", "memory", "pids", "blkio", "hugetlb"):
        assert key in data
    assert data["memory"]["usage"]["limit"] == 128 << 20
    assert data["pids"]["limit"] == 64 and data["pids"]["current"] >= 1
    assert "usage" in data["cpu"] and "kernel" in data["cpu"]["usage"]
    # the stream: stats every interval
    proc = subprocess.Popen(runtime.cmd("events", "--interval", "200ms", c), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["type"] == "stats"
    finally:
        proc.kill()
        proc.wait()


def test_events_reports_oom_and_ends(runtime: Any, make_bundle: MakeBundle) -> None:
    def limits(config: dict[str, Any]) -> None:
        config["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    # tail of an endless line keeps allocating until the cgroup's OOM killer stops it
    bundle = make_bundle(["sh", "-c", "sleep 1; tail /dev/zero"], edit=limits)
    c = cid()
    start(runtime, bundle, c)
    proc = subprocess.run(runtime.cmd("events", "--interval", "10s", c), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {"type": "oom", "id": c} in events
    assert runtime.state(c)["status"] == "stopped"


def test_update(runtime: Any, make_bundle: MakeBundle, tmp_path: Path) -> None:
    def limits(config: dict[str, Any]) -> None:
        config["linux"]["resources"].update({"memory": {"limit": 256 << 20}, "pids": {"limit": 100}})

    bundle = make_bundle(["sleep", "100"], edit=limits)
    c = cid()
    start(runtime, bundle, c)
    runtime("update", "--memory", "64m", "--pids-limit", "20", "--cpu-share", "256", "--cpu-quota", "20000",
            "--cpu-period", "100000", c)
    st = json.loads(runtime("events", "--stats", c).stdout)["data"]
    assert st["memory"]["usage"]["limit"] == 64 << 20
    assert st["pids"]["limit"] == 20
    state = json.loads((runtime.root / c / "state.json").read_text())
    res = state["config"]["linux"]["resources"]
    assert res["memory"]["limit"] == 64 << 20 and res["pids"]["limit"] == 20
    assert res["cpu"] == {"shares": 256, "quota": 20000, "period": 100000}
    paths = state["cgroup"]["paths"]
    assert open(os.path.join(paths["cpu"], "cpu.shares")).read().strip() == "256"
    assert open(os.path.join(paths["cpu"], "cpu.cfs_quota_us")).read().strip() == "20000"
    # -r FILE: resources JSON; flags override it
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 30}, "memory": {"limit": 100 << 20}}))
    runtime("update", "-r", str(f), "--pids-limit", "40", c)
    assert open(os.path.join(paths["pids"], "pids.max")).read().strip() == "40"
    assert open(os.path.join(paths["memory"], "memory.limit_in_bytes")).read().strip() == str(100 << 20)
    # -r - reads stdin
    proc = subprocess.run(runtime.cmd("update", "-r", "-", c), input=json.dumps({"pids": {"limit": -1}}),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert open(os.path.join(paths["pids"], "pids.max")).read().strip() == "max"
    # bad values: clear errors, nothing changed
    for args, word in ((["--memory", "lots"], "--memory"), (["--pids-limit", "-5"], "pids.limit"),
                       (["--cpu-share", "1"], "cpu.shares"), (["--l3-cache-schema", "L3:0=f"], "Intel RDT")):
        bad = runtime("update", *args, c, check=False)
        assert bad.returncode != 0 and word in bad.stderr, bad.stderr
    assert open(os.path.join(paths["memory"], "memory.limit_in_bytes")).read().strip() == str(100 << 20)


def test_cgroups_removed_on_delete(runtime: Any, make_bundle: MakeBundle) -> None:
    bundle = make_bundle(["sleep", "100"])
    c = cid()
    start(runtime, bundle, c)
    state = json.loads((runtime.root / c / "state.json").read_text())
    dirs = set(state["cgroup"]["paths"].values())
    assert dirs and all(os.path.isdir(d) for d in dirs)
    runtime("kill", "--all", c, "KILL")
    assert wait_for(lambda: runtime.state(c)["status"] == "stopped")
    runtime("delete", c)
    assert not any(os.path.exists(d) for d in dirs)


def test_stopped_container_wording(runtime: Any, make_bundle: MakeBundle) -> None:
    bundle = make_bundle(["true"])
    c = cid()
    start(runtime, bundle, c)
    assert wait_for(lambda: runtime.state(c)["status"] == "stopped")
    for cmd, word in ((["pause", c], "container not running"), (["resume", c], "container not paused"),
                      (["update", "--memory", "1g", c], "container not running"),
                      (["events", "--stats", c], "is not running")):
        proc = runtime(*cmd, check=False)
        assert proc.returncode != 0 and word in proc.stderr, (cmd, proc.stderr)
    assert json.loads(runtime("ps", "-f", "json", c).stdout) == []
