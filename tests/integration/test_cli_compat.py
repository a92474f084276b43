"""The CLI's output, exit codes and log lines on real containers, as runc 1.1.5's.

Where runc is installed, its output on the same bundle is the reference: the
layout must be the same byte for byte once the values that must differ (pid,
time, id, spec version) are replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from support.helpers import IS_ROOT, unique_id, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces and mounts")]

RUNC = shutil.which("runc") or "/usr/sbin/runc"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)"


def _annotate(config: dict[str, Any]) -> None:
    config["annotations"] = {"zeta": "1", "alpha": "<a&b>", "mid": "caf\u00e9"}


def _mask(text: str, cid: str, pid: int) -> str:
    """The values that must differ, replaced (the layout around them is kept)."""
    text = re.sub(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "TIME", text)
    text = re.sub(rf'"pid":( ?){pid},', r'"pid":\1PID,', text.replace(f'"{cid}"', '"ID"'))
    return re.sub(r'"ociVersion":( ?)"[^"]*"', r'"ociVersion":\1"V"', text)


def _runc(root: str, *args: str) -> str:
    return subprocess.run([RUNC, "--root", root, *args], capture_output=True, text=True, check=True,
                          timeout=60, stdin=subprocess.DEVNULL).stdout  # fmt: skip


def test_state_and_list_are_laid_out_as_runcs(runtime: Any, make_bundle: Any) -> None:
    if not os.path.exists(RUNC):
        pytest.fail("runc is not installed: run `make install` (the reference output)")
    bundle = make_bundle(["sleep", "60"], edit=_annotate)
    cid = unique_id("cli")
    runtime("run", "-d", "-b", str(bundle), cid)
    state = runtime("state", cid).stdout
    listed = runtime("list", "-f", "json").stdout
    table = runtime("list").stdout
    pid = json.loads(state)["pid"]

    runc_root = tempfile.mkdtemp(prefix="cli-runc-")
    rid = unique_id("clr")
    try:
        subprocess.run([RUNC, "--root", runc_root, "run", "-d", "-b", str(bundle), rid], check=True, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        theirs_state = _runc(runc_root, "state", rid)
        theirs_list = _runc(runc_root, "list", "-f", "json")
        theirs_table = _runc(runc_root, "list")
        rpid = json.loads(theirs_state)["pid"]
    finally:
        subprocess.run([RUNC, "--root", runc_root, "delete", "-f", rid], timeout=60, capture_output=True)
        shutil.rmtree(runc_root, ignore_errors=True)

    # same keys, same order, same indentation, no newline after the brace; owner empty in state
    assert _mask(state, cid, pid) == _mask(theirs_state, rid, rpid)
    assert list(json.loads(state)) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                                       "annotations", "owner"]  # fmt: skip
    # list -f json: compact, one line (tools grep `"id":"…"`), owner filled in
    assert _mask(listed, cid, pid) == _mask(theirs_list, rid, rpid)
    assert f'"id":"{cid}"' in listed and '"owner":"root"' in listed
    # the table: Go tabwriter's columns (each as wide as its longest cell + 3, at least 12; OWNER last, unpadded)
    header, row = table.splitlines()
    assert header.split() == theirs_table.splitlines()[0].split()
    cells = row.split()
    assert cells[:4] == [cid, str(pid), "running", str(bundle)] and cells[5] == "root"
    widths = [max(12, max(len(a), len(b)) + 3) for a, b in zip(cells[:5], header.split()[:5], strict=True)]
    assert row == "".join(f"{a:<{w}}" for a, w in zip(cells[:5], widths, strict=True)) + "root"
    assert header == "".join(f"{b:<{w}}" for b, w in zip(header.split()[:5], widths, strict=True)) + "OWNER"
    # created as Go prints it: RFC 3339, no trailing zeros in the fraction
    created = json.loads(state)["created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", created)


def test_kill_all_of_a_stopped_container_succeeds(runtime: Any, make_bundle: Any) -> None:
    cid = unique_id("cli")
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    runtime("kill", cid, "0")  # signal 0: the process exists
    runtime("kill", cid, "KILL")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped", timeout=10)
    assert runtime("kill", "--all", cid, "0").returncode == 0
    assert runtime("kill", "-a", cid, "KILL").returncode == 0
    # without --all a stopped container is an error (runtime.md "Kill")
    plain = runtime("kill", cid, "0", check=False)
    assert plain.returncode == 1 and "container not running" in plain.stderr
    runtime("delete", cid)
    assert runtime("delete", "-f", cid).returncode == 0  # gone already: still fine with --force


def test_exec_failures_exit_255_and_the_process_status_passes(runtime: Any, make_bundle: Any,
                                                            tmp_path: Path) -> None:  # fmt: skip
    cid = unique_id("cli")
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    assert runtime("exec", cid, "false", check=False).returncode == 1
    assert runtime("exec", cid, "sh", "-c", "exit 42", check=False).returncode == 42
    assert runtime("exec", cid, "sh", "-c", "exit 255", check=False).returncode == 255
    nobin = runtime("exec", cid, "no-such-binary", check=False)
    assert nobin.returncode == 255 and "no-such-binary" in nobin.stderr and nobin.stderr.count("\n") == 1
    pidfile = runtime("exec", "--pid-file", str(tmp_path / "no/such/dir/pid"), cid, "sleep", "77", check=False)
    assert pidfile.returncode == 255 and "pid file" in pidfile.stderr
    missing = runtime("exec", "no-such-" + cid, "true", check=False)
    assert missing.returncode == 255 and "container does not exist" in missing.stderr
    # the process of the failed exec was not left running (runc kills it too)
    out = runtime("exec", cid, "ps", "-o", "stat,args").stdout.splitlines()[1:]
    live = [line.split(None, 1)[1] for line in out if not line.startswith("Z")]
    assert sorted(live) == ["ps -o stat,args", "sleep 60"]


def test_exec_into_a_paused_container_exits_255(runtime: Any, make_bundle: Any) -> None:
    if not os.path.isdir("/sys/fs/cgroup/freezer") and not os.path.exists("/sys/fs/cgroup/cgroup.freeze"):
        pytest.fail("no freezer cgroup on this machine")
    cid = unique_id("cli")
    runtime("run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    runtime("pause", cid)
    try:
        started = time.monotonic()
        proc = runtime("exec", cid, "echo", "ok", check=False, timeout=20)
        assert proc.returncode == 255
        assert "cannot exec in a paused container" in proc.stderr
        assert time.monotonic() - started < 10  # refused, not hung on the frozen cgroup
    finally:
        runtime("resume", cid, check=False)


def _debug_lines(text: str, fmt: str) -> list[str]:
    if fmt == "json":
        return [json.loads(line)["msg"] for line in text.splitlines() if line.startswith("{")
                and json.loads(line)["level"] == "debug"]  # fmt: skip
    return [line for line in text.splitlines() if " level=debug " in line]


@pytest.mark.parametrize("fmt", ["text", "json", None])
def test_debug_to_log_file(runtime: Any, make_bundle: Any, tmp_path: Path, fmt: str | None) -> None:
    log_file = tmp_path / "log.out"
    flags = ["--log", str(log_file)] + (["--log-format", fmt] if fmt else [])
    bundle = make_bundle(["echo", "Hello World"])
    cmd = [runtime.binary, "--root", str(runtime.root), *flags, "--debug", "run", "-b", str(bundle), unique_id()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello World\n"
    assert "level=debug" not in proc.stderr and '"level":"debug"' not in proc.stderr  # all in the file
    text = log_file.read_text()
    lines = _debug_lines(text, fmt or "text")
    joined = "\n".join(lines)
    # the steps runc names in its debug output (debug.bats greps for them), in order
    steps = ["nsexec container setup", "child process in init()", "init: closing the pipe to signal completion"]
    positions = [joined.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), joined
    if fmt == "json":
        for line in text.splitlines():
            assert re.fullmatch(rf'\{{"level":"\w+","msg":".*","time":"{STAMP}"\}}', line), line
    else:
        for line in text.splitlines():
            assert re.fullmatch(rf'time="{STAMP}" level=\w+ msg=.*', line), line


def test_debug_to_stderr_from_run_and_exec(runtime: Any, make_bundle: Any) -> None:
    cid = unique_id("cli")
    run = runtime("--debug", "run", "-d", "-b", str(make_bundle(["sleep", "60"])), cid)
    assert "child process in init()" in run.stderr
    assert all(re.fullmatch(rf'time="{STAMP}" level=debug msg=.*', line) for line in run.stderr.splitlines())
    exe = runtime("--debug", "exec", cid, "true")
    lines = _debug_lines(exe.stderr, "text")
    assert any("nsexec container setup" in line for line in lines)
    assert any("setns_init: about to exec" in line for line in lines)
    # an error is still one plain line on stderr
    bad = runtime("--debug", "exec", cid, "no-such-binary", check=False)
    errors = [line for line in bad.stderr.splitlines() if "level=debug" not in line]
    assert bad.returncode == 255 and len(errors) == 1 and errors[0].startswith("ocipy: exec failed:")
    # without --debug nothing but the output
    quiet = runtime("exec", cid, "echo", "hi")
    assert quiet.stdout == "hi\n" and quiet.stderr == ""


def test_config_errors_say_invalid_configuration(runtime: Any, make_bundle: Any) -> None:
    def bad(config: dict[str, Any]) -> None:
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]

    cid = unique_id("cli")
    proc = runtime("run", "-b", str(make_bundle(edit=bad)), cid, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ocipy: invalid configuration: process.rlimits[0]")
    assert proc.stderr.count("\n") == 1
    assert not (runtime.root / cid).exists()


def test_debug_create_does_not_hold_the_callers_stderr(runtime: Any, make_bundle: Any, tmp_path: Path) -> None:
    # With a terminal the init's stdio is the pty: a caller reading our stderr through a
    # pipe must see EOF when `create` exits, not when `start` is run (the init waits for it).
    import socket
    import threading

    def terminal(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True

    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    server.settimeout(20)
    masters: list[int] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 4)
        masters.extend(fds)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cid = unique_id("cli")
    try:
        started = time.monotonic()
        proc = subprocess.run(runtime.cmd("--debug", "create", "--console-socket", str(sock_path), "-b",
                                          str(make_bundle(["sleep", "60"], edit=terminal)), cid),
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 10
        assert "child process in init()" in proc.stderr
        assert runtime.state(cid)["status"] == "created"
    finally:
        thread.join(20)
        server.close()
        for fd in masters:
            os.close(fd)
