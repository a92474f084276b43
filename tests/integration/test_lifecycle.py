"""The container lifecycle on the real kernel (runtime-spec runtime.md).

Every test uses the `runtime` fixture: a private --root whose containers are
force-deleted afterwards, and which must be empty at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.helpers import IS_ROOT, unique_id, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]


def host_cgroup_dirs(cid: str) -> list[str]:
    found = []
    for ctrl in os.listdir("/sys/fs/cgroup"):
        path = f"/sys/fs/cgroup/{ctrl}/{cid}"
        if os.path.isdir(path):
            found.append(path)
    return found


def mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


def test_create_does_not_run_the_user_process_until_start(runtime, make_bundle):
    # runtime.md "Create": process.args MUST NOT be applied until triggered by start.
    bundle = make_bundle(["sh", "-c", "touch /ran; sleep 60"])
    cid = unique_id()
    pid_file = bundle / "pid"
    runtime("create", "-b", str(bundle), "--pid-file", str(pid_file), cid)
    state = runtime.state(cid)
    assert state["status"] == "created"
    assert state["pid"] > 0 and os.path.exists(f"/proc/{state['pid']}")
    assert int(pid_file.read_text()) == state["pid"]
    assert state["bundle"] == str(bundle)
    assert state["id"] == cid and state["ociVersion"].startswith("1.")
    assert state["created"].endswith("Z") and "T" in state["created"]
    time.sleep(0.2)
    assert not (bundle / "rootfs/ran").exists()
    runtime("start", cid)
    assert wait_for(lambda: (bundle / "rootfs/ran").exists())
    assert runtime.state(cid)["status"] == "running"
    # runtime.md "Start": starting a container that is not created MUST generate an error
    again = runtime("start", cid, check=False)
    assert again.returncode != 0 and "running" in again.stderr
    runtime("kill", cid, "KILL")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    assert runtime.state(cid)["pid"] == 0
    runtime("delete", cid)
    assert not (runtime.root / cid).exists()
    assert host_cgroup_dirs(cid) == []


def test_run_returns_exit_status_and_signal_deaths(runtime, make_bundle):
    assert runtime("run", "-b", str(make_bundle(["sh", "-c", "exit 7"])), unique_id(), check=False).returncode == 7
    # Without a pid namespace sh is not an init, so the kernel delivers the signal.
    def no_pidns(c):  # type: ignore[no-untyped-def]
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]

    proc = runtime("run", "-b", str(make_bundle(["sh", "-c", "kill -USR1 $$"], edit=no_pidns)), unique_id(), check=False)
    assert proc.returncode == 128 + signal.SIGUSR1
    out = runtime("run", "-b", str(make_bundle(["echo", "hello"])), unique_id())
    assert out.stdout == "hello\n"
    assert list(runtime.root.iterdir()) == []  # run deletes the container afterwards


def test_run_keep_and_detach(runtime, make_bundle):
    cid = unique_id()
    runtime("run", "--keep", "-b", str(make_bundle(["true"])), cid)
    assert runtime.state(cid)["status"] == "stopped"
    runtime("delete", cid)
    cid2 = unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid2)
    assert runtime.state(cid2)["status"] == "running"


def test_kill_signals_by_name_and_number_and_errors(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "trap 'echo got-term > /sig; exit 0' TERM; while true; do sleep 0.1; done"])
    cid = unique_id()
    runtime("run", "-d", "-b", str(bundle), cid)
    runtime("kill", cid, "TERM")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    assert (bundle / "rootfs/sig").read_text() == "got-term\n"
    # runtime.md "Kill": a container that is not created or running MUST give an error
    proc = runtime("kill", cid, "9", check=False)
    assert proc.returncode != 0 and "container not running" in proc.stderr
    bad = runtime("kill", cid, "NOSUCHSIG", check=False)
    assert bad.returncode != 0
    runtime("delete", cid)


def test_kill_all_signals_every_process(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    cid = unique_id()
    runtime("run", "-d", "-b", str(bundle), cid)
    runtime("kill", "--all", cid, "KILL")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    runtime("delete", cid)


def test_delete_refuses_running_and_force_cleans_everything(runtime, make_bundle):
    cid = unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    pid = runtime.state(cid)["pid"]
    # runtime.md "Delete": deleting a container that is not stopped MUST generate an error
    proc = runtime("delete", cid, check=False)
    assert proc.returncode != 0 and "not stopped" in proc.stderr
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "-f", cid)
    assert not (runtime.root / cid).exists()
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3])
    assert host_cgroup_dirs(cid) == []


def test_errors_use_runc_wording(runtime, make_bundle):
    missing = runtime("state", "nope-" + unique_id(), check=False)
    assert missing.returncode != 0 and "container does not exist" in missing.stderr
    bundle = make_bundle(["sleep", "60"])
    cid = unique_id()
    runtime("create", "-b", str(bundle), cid)
    dup = runtime("create", "-b", str(bundle), cid, check=False)
    assert dup.returncode != 0 and "container with id exists" in dup.stderr
    assert runtime.state(cid)["status"] == "created"  # the first container is untouched
    runtime("delete", cid)  # a created container can be deleted (its init is killed)
    assert not (runtime.root / cid).exists()


@pytest.mark.parametrize("bad_id", ["a/b", "..", "../escape", "", "-x"])
def test_invalid_ids_are_refused_without_state(runtime, make_bundle, bad_id):
    bundle = make_bundle(["true"])
    proc = runtime("create", "-b", str(bundle), "--", bad_id, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert list(runtime.root.iterdir()) == []


def _no_leftovers(runtime, cid: str) -> None:  # type: ignore[no-untyped-def]
    assert not (runtime.root / cid).exists()
    assert host_cgroup_dirs(cid) == []


def test_negative_preserve_fds_is_refused(runtime, make_bundle):
    """--preserve-fds counts fds after stdio: a negative count would close the
    container's stdout/stderr. runc's flag is unsigned; create and exec refuse it."""
    bundle = make_bundle(["sleep", "30"])
    for command in ("create", "run"):
        cid = unique_id()
        proc = runtime(command, "--preserve-fds", "-1", "-b", str(bundle), cid, check=False)
        assert proc.returncode == 1 and "--preserve-fds" in proc.stderr, proc.stderr
        _no_leftovers(runtime, cid)
    cid = unique_id()
    runtime("run", "-d", "-b", str(bundle), cid)
    try:
        proc = runtime("exec", "--preserve-fds", "-2", cid, "true", check=False)
        assert proc.returncode == 255 and "--preserve-fds" in proc.stderr, proc.stderr
    finally:
        runtime("delete", "-f", cid)


def test_malformed_config_is_a_clear_error(runtime, make_bundle):
    bundle = make_bundle(["true"])
    (bundle / "config.json").write_text("{not json")
    cid = unique_id()
    proc = runtime("create", "-b", str(bundle), cid, check=False)
    assert proc.returncode == 1 and "malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    _no_leftovers(runtime, cid)


_SIX_NS = ("pid", "network", "ipc", "uts", "mount", "cgroup")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c.update(ociVersion="2.0.0"), "ociVersion"),
        (lambda c: c["root"].update(path="nope"), "root.path"),
        (lambda c: c["process"].update(args=[]), "process.args"),
        (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
        (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}), "process.rlimits[1].type"),
        (lambda c: c["linux"].update(namespaces=[{"type": t} for t in _SIX_NS + ("pid",)]), "linux.namespaces[6].type"),
        (lambda c: c["linux"].update(namespaces=[{"type": t} for t in _SIX_NS + ("bogus",)]), "linux.namespaces[6].type"),
        (lambda c: c["mounts"].append({"destination": "/x", "type": "bind", "source": "/does/not/exist", "options": ["bind"]}), "mounts[7].source"),
        # a NUL would cut a path or argument short in the kernel
        (lambda c: c["mounts"].append({"destination": "/tmp/x\x00/../..", "type": "tmpfs", "source": "tmpfs"}), "mounts[7].destination"),
        (lambda c: c["process"]["args"].append("a\x00b"), "process.args[1]"),
        (lambda c: c["process"]["env"].append("A=\x00"), "process.env[2]"),
        (lambda c: c.update(hooks={"prestart": [{"path": "relative/hook"}]}), "hooks.prestart[0].path"),
    ],
)
def test_bad_config_names_the_field_and_leaves_nothing(runtime, make_bundle, edit, field):
    bundle = make_bundle(["true"], edit=edit)
    cid = unique_id()
    proc = runtime("create", "-b", str(bundle), cid, check=False)
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    _no_leftovers(runtime, cid)


def test_a_create_that_fails_in_the_init_leaves_no_pid_file(runtime, make_bundle, tmp_path):
    # The pid file is written while the init mounts; when the init then fails
    # (here: a bind mount of a source that does not exist), create removes it
    # with everything else: an engine never finds a pid of a failed create.
    def bad_mount(c):
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(tmp_path / "missing"),
                            "options": ["rbind"]})

    pid_file = tmp_path / "pid"
    cid = unique_id()
    proc = runtime("create", "-b", str(make_bundle(["true"], edit=bad_mount)), "--pid-file", str(pid_file), cid,
                   check=False)
    assert proc.returncode != 0 and "missing" in proc.stderr, proc.stderr
    assert not pid_file.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pid")] == []  # no temp file either
    _no_leftovers(runtime, cid)


def test_unknown_capabilities_warn_and_are_ignored(runtime, make_bundle):
    """config.md: "runtimes SHOULD NOT fail if the container configuration requests
    capabilities that cannot be granted"; runc drops them with one warning."""

    def edit(c):  # type: ignore[no-untyped-def]
        for cap_set in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][cap_set] = ["CAP_KILL", "CAP_NOPE"]

    bundle = make_bundle(["sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status"], edit=edit)
    proc = runtime("run", "-b", str(bundle), unique_id(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ignoring unknown or unavailable capabilities: [CAP_NOPE]" in proc.stderr
    # only CAP_KILL (bit 5) is granted
    assert proc.stdout.split() == ["CapEff:", "0000000000000020", "CapBnd:", "0000000000000020"], proc.stdout


def test_keys_are_matched_as_runc_matches_them(runtime, make_bundle):
    """runc (Go's encoding/json) matches config keys case-insensitively: a config
    written with `Process.Args` and `Hostname` runs as runc runs it."""

    def edit(c):  # type: ignore[no-untyped-def]
        process = c.pop("process")
        process["Args"] = process.pop("args")
        c["Process"] = process
        c["Hostname"] = "folded"
        c.pop("hostname", None)

    proc = runtime("run", "-b", str(make_bundle(["hostname"], edit=edit)), unique_id(), check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "folded", proc.stderr


def test_unknown_properties_are_ignored(runtime, make_bundle):
    # config.md: runtimes MUST ignore unknown properties
    def edit(c):  # type: ignore[no-untyped-def]
        c["somethingNew"] = {"x": 1}
        c["process"]["futureField"] = True
        c["linux"]["futureThing"] = [1, 2]

    assert runtime("run", "-b", str(make_bundle(["true"], edit=edit)), unique_id()).returncode == 0


def test_json_log_format_records_the_error(runtime, make_bundle, tmp_path):
    log = tmp_path / "log.json"
    proc = subprocess.run([runtime.binary, "--root", str(runtime.root), "--log", str(log), "--log-format", "json",
                           "state", "missing-" + unique_id()], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0
    line = json.loads(log.read_text().strip().splitlines()[-1])
    assert line["level"] == "error" and "container does not exist" in line["msg"] and "time" in line


def test_list_formats(runtime, make_bundle):
    cid = unique_id()
    runtime("create", "-b", str(make_bundle(["sleep", "60"])), cid)
    assert runtime("list", "-q").stdout.split() == [cid]
    listed = json.loads(runtime("list", "-f", "json").stdout)
    assert [s["id"] for s in listed] == [cid] and listed[0]["status"] == "created"
    table = runtime("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and cid in table[1]


def test_state_and_annotations(runtime, make_bundle):
    bundle = make_bundle(["sleep", "60"], edit=lambda c: c.update(annotations={"org.example.key": "value"}))
    cid = unique_id()
    runtime("create", "-b", str(bundle), cid)
    state = runtime.state(cid)
    assert state["annotations"] == {"org.example.key": "value"}
    assert state["rootfs"] == str(bundle / "rootfs")


def test_features_is_truthful_json(runtime):
    features = json.loads(runtime("features").stdout)
    assert features["ociVersionMin"] == "1.0.0"
    assert set(features["linux"]["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
    assert "createContainer" in features["hooks"] and "rbind" in features["mountOptions"]


def test_concurrent_creates_of_one_id_serialise(runtime, make_bundle):
    bundle = make_bundle(["sleep", "60"])
    cid = unique_id()
    procs = [subprocess.Popen(runtime.cmd("create", "-b", str(bundle), cid), stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0, 1, 1]
    assert runtime.state(cid)["status"] == "created"


def test_delete_force_after_create_was_killed(runtime, make_bundle, tmp_path):
    # A prestart hook that hangs holds create mid-way; kill create with SIGKILL.
    marker = tmp_path / "hook-started"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}; sleep 60"]}
    bundle = make_bundle(["sleep", "60"], edit=lambda c: c.update(hooks={"prestart": [hook]}))
    cid = unique_id()
    proc = subprocess.Popen(runtime.cmd("create", "-b", str(bundle), cid))
    assert wait_for(marker.exists, 20)
    proc.kill()
    proc.wait()
    assert (runtime.root / cid).exists()
    init_pid = json.loads((runtime.root / cid / "state.json").read_text())["pid"]
    assert init_pid > 0
    runtime("delete", "-f", cid)
    _no_leftovers(runtime, cid)
    assert wait_for(lambda: _gone(init_pid))
    subprocess.run(["pkill", "-f", f"touch {marker}; sleep 60"], check=False)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_state_file_is_private(runtime, make_bundle):
    # The saved config carries the process environment: only root may read it.
    cid = unique_id()
    runtime("create", "-b", str(make_bundle(["sleep", "30"])), cid)
    assert (runtime.root / cid / "state.json").stat().st_mode & 0o077 == 0


def test_container_and_exec_processes_are_in_every_cgroup_hierarchy(runtime, make_bundle, tmp_path):
    # The bootstrap is born in the cgroup2 directory (clone3) and moves itself into v1:
    # the init and exec'd processes must end up in the container's cgroup everywhere.
    cid = unique_id()
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    pid_file = tmp_path / "exec.pid"
    runtime("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "60")
    for pid in (runtime.state(cid)["pid"], int(pid_file.read_text())):
        lines = Path(f"/proc/{pid}/cgroup").read_text().split()
        assert lines and all(line.endswith(f"/{cid}") for line in lines), lines
